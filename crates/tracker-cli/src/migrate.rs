//! `migrate --to` and `migrate --from-rasa`: copying every conversation, verifying the copy,
//! and refusing a destination that is the source's own SQL database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::StreamExt;

use tracker_store::sql::{Dialect, SqlConfig};
use tracker_store::{
    Domain, Error, Event, RasaSource, ReadScope, Registry, Result, StoreConfig, TrackerStore,
    first_difference,
};

use crate::commands::{Access, exit_code, open};
use crate::output::{Summary, conversation_error, error_line, progress};

/// The flags of `migrate`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Compare every conversation afterwards.
    pub verify: bool,
    /// No progress bars and no summary.
    pub quiet: bool,
}

/// Conversations `migrate` copies per batch into the destination.
const MIGRATE_BATCH: usize = 128;

/// Conversations `migrate` reads from the source at once.
const SOURCE_READS: usize = 8;

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
}

/// `migrate --to OTHER.yml`: reads the store of `config` (opened without any setup) into
/// the store of `to` (opened as configured).
pub async fn to(
    registry: &Registry,
    config: &StoreConfig,
    domain: Option<&Domain>,
    to: &Path,
    options: Options,
) -> Result<ExitCode> {
    let destination_config = StoreConfig::from_endpoints_file(to)?;
    refuse_same_database(registry, config, &destination_config, "the source")?;
    let source = open(registry, config, Access::Read, domain).await?;
    let destination = open(registry, &destination_config, Access::Write, None).await?;
    migrate(Source::Store(&source), &destination, options, "migrating").await
}

/// `migrate --from-rasa RASA.yml`: reads what Rasa's own store of `rasa` wrote (opened
/// read-only) into the store of `config` (opened as configured).
pub async fn from_rasa(
    registry: &Registry,
    config: &StoreConfig,
    domain: Option<&Domain>,
    rasa: &Path,
    options: Options,
) -> Result<ExitCode> {
    let rasa_config = StoreConfig::from_endpoints_file(rasa)?;
    refuse_same_database(registry, &rasa_config, config, "Rasa's database")?;
    let source = registry.open_rasa_source(&rasa_config).await?;
    let destination = open(
        registry,
        &without_adoption(registry, config),
        Access::Write,
        domain,
    )
    .await?;
    migrate(
        Source::Rasa(source.as_ref()),
        &destination,
        options,
        "migrating from Rasa",
    )
    .await
}

/// `config` with adoption of Rasa's data turned off for backends that adopt (`adopt_rasa`):
/// a store that adopts already reads Rasa's copy of a conversation, so copying into it would
/// find every event present and write nothing; a migration must write its own layout.
fn without_adoption(registry: &Registry, config: &StoreConfig) -> StoreConfig {
    let mut config = config.clone();
    let adopts = config
        .store_type
        .as_deref()
        .and_then(|name| registry.registration(name))
        .is_some_and(|registration| (registration.keys)().contains(&ADOPT_RASA));
    if adopts {
        config
            .keys
            .insert(ADOPT_RASA.to_owned(), serde_json::Value::Bool(false));
    }
    config
}

/// The key of the backends that adopt Rasa's conversations.
const ADOPT_RASA: &str = "adopt_rasa";

/// Where an SQL section's database is, as far as its keys tell.
#[derive(Debug, PartialEq, Eq)]
enum SqlDatabase {
    /// An SQLite file, by its canonical path (or absolute, when it does not exist yet).
    File(PathBuf),
    /// A server's database: the dialect and the URL or the keys naming it, as written.
    Server(Dialect, String),
}

/// The database an SQL section names; `None` for other stores, in-memory SQLite and
/// sections that do not parse (building the store reports those).
fn sql_database(registry: &Registry, config: &StoreConfig) -> Option<SqlDatabase> {
    let name = config.store_type.as_deref()?;
    let registration = registry.registration(name)?;
    if registration.name != "sql" {
        return None;
    }
    let known = (registration.keys)();
    let mut keys = config.keys.clone();
    keys.retain(|key, _| known.contains(&key.as_str()));
    let sql: SqlConfig = tracker_store::sql::config_from_section(name, keys).ok()?;
    let (dialect, name) = match sql.url.as_deref().and_then(|url| url.split_once("://")) {
        Some((scheme, rest)) => {
            let dialect = Dialect::parse(scheme).ok()?;
            match dialect {
                Dialect::Sqlite => (dialect, rest.strip_prefix('/').unwrap_or(rest).to_owned()),
                _ => (dialect, format!("{rest} schema={:?}", sql.schema)),
            }
        }
        None => {
            let dialect = Dialect::parse(&sql.dialect).ok()?;
            match dialect {
                Dialect::Sqlite => (dialect, sql.db.clone()),
                _ => (
                    dialect,
                    format!(
                        "{:?} port={:?} db={:?} schema={:?}",
                        sql.url, sql.port, sql.db, sql.schema
                    ),
                ),
            }
        }
    };
    if dialect != Dialect::Sqlite {
        return Some(SqlDatabase::Server(dialect, name));
    }
    if name.is_empty() || name == ":memory:" || name.starts_with("file::memory:") {
        return None;
    }
    let path = Path::new(&name);
    let path = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    Some(SqlDatabase::File(path))
}

/// Refuses to migrate when `source` and `destination` name the same SQL database: the
/// destination's setup would migrate the source's table in place, and the source of a
/// migration is never changed.
fn refuse_same_database(
    registry: &Registry,
    source: &StoreConfig,
    destination: &StoreConfig,
    what: &str,
) -> Result<()> {
    match (
        sql_database(registry, source),
        sql_database(registry, destination),
    ) {
        (Some(a), Some(b)) if a == b => Err(Error::invalid_input(format!(
            "the destination is {what} itself: migrating it into itself would change it; name \
             another store with --endpoints (or --to), or run `tracker migrate-schema` to set \
             up this database for tracker-store in place"
        ))),
        _ => Ok(()),
    }
}

/// Copies every conversation of `source` into `destination`, then verifies them if asked.
/// A conversation that fails (one the destination holds with other events, say) is reported
/// and the rest continue; the exit code says whether any failed.
async fn migrate(
    source: Source<'_>,
    destination: &TrackerStore,
    options: Options,
    what: &str,
) -> Result<ExitCode> {
    let Options { verify, quiet } = options;
    let ids = source.sender_ids().await?;
    let bar = progress(ids.len() as u64, quiet, what);
    let mut summary = Summary::start();
    for chunk in ids.chunks(MIGRATE_BATCH) {
        // Read the chunk from the source (a few conversations at a time), then copy what was
        // read in one batch; a conversation the source no longer has is skipped.
        let read: Vec<(&String, Result<Option<Vec<Event>>>)> = futures::stream::iter(chunk)
            .map(|id| async move { (id, source.read(id).await) })
            .buffered(SOURCE_READS)
            .collect()
            .await;
        let mut copies: Vec<(&str, &[Event])> = Vec::with_capacity(read.len());
        for (id, events) in &read {
            match events {
                Ok(Some(events)) => copies.push((id.as_str(), events.as_slice())),
                Ok(None) => {}
                Err(error) => {
                    bar.suspend(|| eprintln!("{}", conversation_error(id, error)));
                    summary.failed += 1;
                }
            }
        }
        for ((id, _), outcome) in copies.iter().zip(destination.import_batch(&copies).await) {
            match outcome {
                Ok(imported) => {
                    summary.conversations += 1;
                    summary.events += imported.written;
                }
                Err(error) => {
                    bar.suspend(|| eprintln!("{}", conversation_error(id, &error)));
                    summary.failed += 1;
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    summary.print("migrated", quiet);
    if verify {
        summary.failed += verify_all(&ids, source, destination, quiet).await?;
    }
    Ok(exit_code(&summary))
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
