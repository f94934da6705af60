//! The subcommands.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracker_store::json::to_python_json;
use tracker_store::sql::{SqlConfig, SqlStore};
use tracker_store::{
    Error, Event, EventVerbosity, Imported, RasaSource, ReadScope, Registry, Result, SenderId,
    StoreConfig, TrackerStore, event, first_difference,
};

use crate::output::{
    Summary, error_line, iso_time, last_activity, parse_age, progress, transcript,
};
use crate::{Cli, Command};

/// Opens the store of `--endpoints`, or the default SQLite file.
async fn open(endpoints: Option<&Path>) -> Result<TrackerStore> {
    match endpoints {
        Some(path) => tracker_store::from_endpoints_file(path).await,
        None => Ok(TrackerStore::new(
            SqlStore::connect(&SqlConfig::default()).await?,
        )),
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let mut store = open(cli.endpoints.as_deref()).await?;
    if let Some(path) = &cli.domain {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config_with(format!("reading {}", path.display()), e))?;
        let domain: tracker_store::Domain = serde_norway::from_str(&text)
            .map_err(|e| Error::config_with(format!("{} is not a domain", path.display()), e))?;
        store = store.with_domain(domain);
    }
    let quiet = cli.quiet;
    match cli.command {
        Command::List { limit, cursor, all } => list(&store, limit, cursor, all).await,
        Command::Show {
            id,
            include_events,
            transcript: as_transcript,
        } => show(&store, &id, &include_events, as_transcript).await,
        Command::Export { output } => export(&store, output.as_deref(), quiet).await,
        Command::Import { file } => import(&store, &file, quiet).await,
        Command::Migrate {
            to,
            from_rasa,
            verify,
        } => match (to, from_rasa) {
            (Some(to), None) => migrate_to(&store, &to, verify, quiet).await,
            (None, Some(rasa)) => migrate_from_rasa(&store, &rasa, verify, quiet).await,
            _ => Err(Error::invalid_input(
                "migrate needs --to OTHER.yml or --from-rasa RASA_ENDPOINTS.yml",
            )),
        },
        Command::Delete { ids } => delete(&store, &ids).await,
        Command::Prune {
            inactive_for,
            dry_run,
        } => prune(&store, &inactive_for, dry_run, quiet).await,
    }
}

async fn list(
    store: &TrackerStore,
    limit: usize,
    mut cursor: Option<String>,
    all: bool,
) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<40} {:>8}  last activity", "conversation", "events");
    loop {
        let page = store.list(cursor, limit).await?;
        for id in &page.sender_ids {
            let Some(latest) = store.read(id, ReadScope::LatestSession).await? else {
                continue;
            };
            let activity = last_activity(&latest.events).map_or("-".to_owned(), iso_time);
            let _ = writeln!(out, "{id:<40} {:>8}  {activity}", latest.version);
        }
        match page.next_cursor {
            Some(next) if all => cursor = Some(next),
            Some(next) => {
                let _ = writeln!(out, "more: --cursor {next}");
                break;
            }
            None => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    store: &TrackerStore,
    id: &str,
    include_events: &str,
    as_transcript: bool,
) -> Result<ExitCode> {
    let verbosity: EventVerbosity = include_events.parse().map_err(Error::invalid_input)?;
    let Some(tracker) = store.retrieve_full_tracker(id).await? else {
        return Err(Error::not_found(format!("conversation {id:?}")));
    };
    if as_transcript {
        print!("{}", transcript(&tracker));
    } else {
        let state = tracker.current_state(verbosity);
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| Error::backend_with("rendering the tracker", e))?;
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of the export format: Rasa's `Dialogue.as_dict()`.
fn dialogue_line(sender_id: &str, events: &[Event]) -> Result<String> {
    let mut map = tracker_store::JsonMap::new();
    map.insert(
        "events".to_owned(),
        Value::Array(events.iter().map(Event::to_value).collect()),
    );
    map.insert("name".to_owned(), Value::String(sender_id.to_owned()));
    to_python_json(&Value::Object(map))
        .map_err(|e| Error::backend_with("rendering a conversation", e))
}

async fn export(store: &TrackerStore, output: Option<&Path>, quiet: bool) -> Result<ExitCode> {
    let ids = store.keys().await?;
    let mut writer: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| {
                Error::invalid_input(format!("cannot write {}: {e}", path.display()))
            })?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress(ids.len() as u64, quiet || output.is_none(), "exporting");
    let mut summary = Summary::start();
    for id in &ids {
        bar.inc(1);
        let Some(conversation) = store.read(id, ReadScope::All).await? else {
            continue;
        };
        let line = dialogue_line(id, &conversation.events)?;
        writeln!(writer, "{line}").map_err(|e| Error::backend_with("writing the export", e))?;
        summary.conversations += 1;
        summary.events += conversation.events.len() as u64;
    }
    writer
        .flush()
        .map_err(|e| Error::backend_with("writing the export", e))?;
    bar.finish_and_clear();
    summary.print("exported", quiet);
    Ok(ExitCode::SUCCESS)
}

/// Parses one export line: `{"events": [...], "name": id}` (or `sender_id`).
fn parse_dialogue(line: &str) -> Result<(String, Vec<Event>)> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| Error::invalid_input(format!("not JSON: {e}")))?;
    let name = value
        .get("name")
        .or_else(|| value.get("sender_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_input("a conversation needs a string `name`"))?
        .to_owned();
    let events = match value.get("events") {
        Some(Value::Array(items)) => event::deserialise_events(items)
            .map_err(|e| Error::invalid_input(format!("conversation {name:?}: {e}")))?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(Error::invalid_input(format!(
                "conversation {name:?}: `events` must be a list"
            )));
        }
    };
    Ok((name, events))
}

async fn import(store: &TrackerStore, file: &Path, quiet: bool) -> Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(file).map_err(|e| {
            Error::invalid_input(format!("cannot read {}: {e}", file.display()))
        })?))
    };
    let bar = progress(0, quiet, "importing");
    let mut summary = Summary::start();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::backend_with("reading the import", e))?;
        if line.trim().is_empty() {
            continue;
        }
        bar.inc(1);
        let outcome = match parse_dialogue(&line) {
            Ok((name, events)) => store.import(&name, &events).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(imported) => {
                summary.conversations += 1;
                summary.events += imported.written;
            }
            Err(error) => {
                bar.suspend(|| eprintln!("line {}: {}", number + 1, error_line(&error)));
                summary.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    summary.print("imported", quiet);
    Ok(exit_code(&summary))
}

fn exit_code(summary: &Summary) -> ExitCode {
    if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Where `migrate` reads conversations.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Another store of this project (`migrate --to` reads the store of `--endpoints`).
    Store(&'a TrackerStore),
    /// A database Rasa's own tracker store wrote (`migrate --from-rasa`).
    Rasa(&'a dyn RasaSource),
}

impl Source<'_> {
    /// Every conversation id of the source.
    async fn sender_ids(self) -> Result<Vec<String>> {
        match self {
            Self::Store(store) => store.keys().await,
            Self::Rasa(source) => source.sender_ids().await,
        }
    }

    /// One conversation's events, in order.
    async fn read(self, sender_id: &str) -> Result<Option<Vec<Event>>> {
        match self {
            Self::Store(store) => Ok(store
                .read(sender_id, ReadScope::All)
                .await?
                .map(|conversation| conversation.events)),
            Self::Rasa(source) => Ok(source
                .read(sender_id)
                .await?
                .map(|conversation| conversation.events)),
        }
    }

    /// Copies one conversation into `destination`, resuming after what an earlier run
    /// copied; `None` when the source has no such conversation.
    async fn copy(self, destination: &TrackerStore, sender_id: &str) -> Result<Option<Imported>> {
        match self {
            Self::Store(_) => match self.read(sender_id).await? {
                Some(events) => destination.import(sender_id, &events).await.map(Some),
                None => Ok(None),
            },
            Self::Rasa(source) => destination.import_from(source, sender_id).await,
        }
    }
}

async fn migrate_to(
    source: &TrackerStore,
    to: &Path,
    verify: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let destination = tracker_store::from_endpoints_file(to).await?;
    migrate(
        Source::Store(source),
        &destination,
        verify,
        quiet,
        "migrating",
    )
    .await
}

async fn migrate_from_rasa(
    destination: &TrackerStore,
    rasa: &Path,
    verify: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let config = StoreConfig::from_endpoints_file(rasa)?;
    let source = Registry::with_builtins().open_rasa_source(&config).await?;
    migrate(
        Source::Rasa(source.as_ref()),
        destination,
        verify,
        quiet,
        "migrating from Rasa",
    )
    .await
}

/// Copies every conversation of `source` into `destination`, then verifies them if asked.
/// A conversation that fails (one the destination holds with other events, say) is reported
/// and the rest continue; the exit code says whether any failed.
async fn migrate(
    source: Source<'_>,
    destination: &TrackerStore,
    verify: bool,
    quiet: bool,
    what: &str,
) -> Result<ExitCode> {
    let ids = source.sender_ids().await?;
    let bar = progress(ids.len() as u64, quiet, what);
    let mut summary = Summary::start();
    for id in &ids {
        bar.inc(1);
        match source.copy(destination, id).await {
            Ok(Some(imported)) => {
                summary.conversations += 1;
                summary.events += imported.written;
            }
            Ok(None) => {}
            Err(error) => {
                bar.suspend(|| eprintln!("{}", conversation_error(id, &error)));
                summary.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    summary.print("migrated", quiet);
    if verify {
        summary.failed += verify_all(&ids, source, destination, quiet).await?;
    }
    Ok(exit_code(&summary))
}

/// The line reporting that conversation `id` failed: the error, after the conversation
/// unless the error names it first.
fn conversation_error(id: &str, error: &Error) -> String {
    let line = error_line(error);
    let name = format!("conversation {id:?}");
    if line.starts_with(&name) {
        line
    } else {
        format!("{name}: {line}")
    }
}

/// How the events `stored` in the destination differ from the `source`'s, or `None` when
/// they are the same.
fn difference(source: &[Event], stored: &[Event]) -> Option<String> {
    match first_difference(stored, source) {
        Some(position) if position <= source.len().min(stored.len()) as u64 => {
            Some(format!("event {position} differs"))
        }
        _ if source.len() != stored.len() => Some(format!(
            "{} events in the source, {} in the destination",
            source.len(),
            stored.len()
        )),
        _ => None,
    }
}

/// Compares every conversation of the source with the destination; returns the number that
/// differ.
async fn verify_all(
    ids: &[String],
    source: Source<'_>,
    destination: &TrackerStore,
    quiet: bool,
) -> Result<u64> {
    let bar = progress(ids.len() as u64, quiet, "verifying");
    let mut mismatches = 0;
    for id in ids {
        bar.inc(1);
        let compared = async {
            let expected = source.read(id).await?.unwrap_or_default();
            let stored = destination
                .read(id, ReadScope::All)
                .await?
                .map(|conversation| conversation.events)
                .unwrap_or_default();
            Ok::<_, Error>(difference(&expected, &stored))
        };
        let problem = match compared.await {
            Ok(difference) => difference,
            Err(error) => Some(error_line(&error)),
        };
        if let Some(problem) = problem {
            bar.suspend(|| eprintln!("verify: conversation {id:?}: {problem}"));
            mismatches += 1;
        }
    }
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "verified {} conversations: {}",
            ids.len(),
            if mismatches == 0 {
                "all identical".to_owned()
            } else {
                format!("{mismatches} differ")
            }
        );
    }
    Ok(mismatches)
}

async fn delete(store: &TrackerStore, ids: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for id in ids {
        match store.delete(id).await {
            Ok(true) => println!("deleted {id}"),
            Ok(false) => {
                eprintln!("conversation {id:?} does not exist");
                failed = true;
            }
            Err(error) => {
                eprintln!("conversation {id:?}: {}", error_line(&error));
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

async fn prune(store: &TrackerStore, age: &str, dry_run: bool, quiet: bool) -> Result<ExitCode> {
    let age = parse_age(age).map_err(Error::invalid_input)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let cutoff = now - age.as_secs_f64();
    let ids = store.keys().await?;
    let bar = progress(ids.len() as u64, quiet, "pruning");
    let mut summary = Summary::start();
    for id in &ids {
        bar.inc(1);
        SenderId::new(id.as_str())?;
        let Some(latest) = store.read(id, ReadScope::LatestSession).await? else {
            continue;
        };
        let Some(activity) = last_activity(&latest.events) else {
            continue;
        };
        if activity >= cutoff {
            continue;
        }
        if dry_run {
            bar.suspend(|| println!("would delete {id} (last activity {})", iso_time(activity)));
        } else if store.delete(id).await? {
            bar.suspend(|| println!("deleted {id} (last activity {})", iso_time(activity)));
        }
        summary.conversations += 1;
        summary.events += latest.version;
    }
    bar.finish_and_clear();
    summary.print(if dry_run { "would delete" } else { "deleted" }, quiet);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_event_or_the_counts() {
        let events: Vec<Event> = (0..4).map(|n| Event::bot(format!("{n}")).at(1.0)).collect();
        assert_eq!(difference(&events, &events), None);
        let mut altered = events.clone();
        altered[2] = Event::bot("else").at(1.0);
        assert_eq!(
            difference(&events, &altered).as_deref(),
            Some("event 3 differs")
        );
        assert_eq!(
            difference(&events, &events[..2]).as_deref(),
            Some("4 events in the source, 2 in the destination")
        );
        assert_eq!(
            difference(&events[..1], &events).as_deref(),
            Some("1 events in the source, 4 in the destination")
        );
    }
}
