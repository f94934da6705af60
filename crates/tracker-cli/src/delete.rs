//! `delete` and `prune`: each conversation is deleted at the version read just before, so a
//! conversation written to in between is kept ("still live"), and one that fails is reported
//! while the others go on.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tracker_store::{Error, ReadScope, Result, TrackerStore};

use crate::commands::exit_code;
use crate::output::{Summary, conversation_error, iso_time, last_activity, parse_age, progress};

/// What deleting one conversation at the version read came to.
enum Outcome {
    /// Deleted: it held `version` events.
    Deleted { version: u64 },
    /// Not there (any more).
    Absent,
    /// Written to after it was read: kept.
    Live { read: u64, now: u64 },
}

/// Deletes `id` if it is still at `version`.
async fn delete_at(store: &TrackerStore, id: &str, version: u64) -> Result<Outcome> {
    match store.delete_at(id, version).await {
        Ok(true) => Ok(Outcome::Deleted { version }),
        Ok(false) | Err(Error::Conflict { actual: 0, .. }) => Ok(Outcome::Absent),
        Err(Error::Conflict { actual, .. }) => Ok(Outcome::Live {
            read: version,
            now: actual,
        }),
        Err(error) => Err(error),
    }
}

/// The line saying that `id` was kept because it was written to after it was read.
fn still_live(id: &str, read: u64, now: u64) -> String {
    format!("skipped {id}: still live ({now} events now, {read} when read)")
}

/// `delete ID...`: each conversation at the version read just before. A conversation that is
/// absent, written to meanwhile (kept) or fails is reported on standard error and the others
/// go on; the exit code is a failure if any of them was not deleted.
pub async fn delete(store: &TrackerStore, ids: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for id in ids {
        let outcome = match store.version(id).await {
            Ok(0) => Ok(Outcome::Absent),
            Ok(version) => delete_at(store, id, version).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Outcome::Deleted { version }) => println!("deleted {id}: {version} events"),
            Ok(Outcome::Absent) => {
                eprintln!("conversation {id:?} does not exist");
                failed = true;
            }
            Ok(Outcome::Live { read, now }) => {
                eprintln!("{}", still_live(id, read, now));
                failed = true;
            }
            Err(error) => {
                eprintln!("{}", conversation_error(id, &error));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `prune` did with one conversation.
enum Pruned {
    /// Active since the cutoff, empty, or gone: nothing to do.
    Kept,
    /// Deleted (or, in a dry run, would be) at `version`, last active at `activity`.
    Deleted { version: u64, activity: f64 },
    /// Inactive when read, written to before the delete: kept.
    Live { read: u64, now: u64 },
}

/// Reads the latest session of `id` and deletes it at the version read if its last event is
/// older than `cutoff`.
async fn prune_one(store: &TrackerStore, id: &str, cutoff: f64, dry_run: bool) -> Result<Pruned> {
    let Some(latest) = store.read(id, ReadScope::LatestSession).await? else {
        return Ok(Pruned::Kept);
    };
    let Some(activity) = last_activity(&latest.events) else {
        return Ok(Pruned::Kept);
    };
    if activity >= cutoff {
        return Ok(Pruned::Kept);
    }
    let version = latest.version;
    if dry_run {
        return Ok(Pruned::Deleted { version, activity });
    }
    Ok(match delete_at(store, id, version).await? {
        Outcome::Deleted { version } => Pruned::Deleted { version, activity },
        Outcome::Absent => Pruned::Kept,
        Outcome::Live { read, now } => Pruned::Live { read, now },
    })
}

/// `prune --inactive-for AGE [--dry-run]`. A conversation written to between its read and
/// its delete is kept and reported as still live; one that cannot be read or deleted is
/// reported and the others go on; the exit code is a failure if any failed.
pub async fn prune(
    store: &TrackerStore,
    age: &str,
    dry_run: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let age = parse_age(age).map_err(Error::invalid_input)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let cutoff = now - age.as_secs_f64();
    let ids = store.keys().await?;
    let bar = progress(ids.len() as u64, quiet, "pruning");
    let mut summary = Summary::start();
    let verb = if dry_run { "would delete" } else { "deleted" };
    for id in &ids {
        bar.inc(1);
        match prune_one(store, id, cutoff, dry_run).await {
            Ok(Pruned::Kept) => {}
            Ok(Pruned::Deleted { version, activity }) => {
                bar.suspend(|| {
                    println!(
                        "{verb} {id}: {version} events, last activity {}",
                        iso_time(activity)
                    );
                });
                summary.conversations += 1;
                summary.events += version;
            }
            Ok(Pruned::Live { read, now }) => {
                bar.suspend(|| println!("{}", still_live(id, read, now)));
                summary.skipped += 1;
            }
            Err(error) => {
                bar.suspend(|| eprintln!("{}", conversation_error(id, &error)));
                summary.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    summary.print(verb, quiet);
    Ok(exit_code(&summary))
}
