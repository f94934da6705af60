//! The subcommands.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use indicatif::ProgressBar;
use serde_json::Value;
use tracker_store::json::to_python_json;
use tracker_store::{
    Domain, Error, Event, EventVerbosity, JsonMap, ReadScope, Registry, Result, StoreConfig,
    TrackerStore, event,
};

use crate::output::{
    Summary, conversation_error, error_line, iso_time, last_activity, progress, transcript,
};
use crate::{Cli, Command, broker_export, delete, migrate, relay};

/// What a command may do to the store of `--endpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: the store is opened without any setup (no migration, no index, no table
    /// or database created), whatever its configuration says.
    Read,
    /// Write: the store is opened as configured (migrating when `migrate` is on, ...).
    Write,
}

/// The `tracker_store:` section of `--endpoints`, or the default: Rasa's SQLite file
/// `rasa.db` in the current directory.
fn store_config(endpoints: Option<&Path>) -> Result<StoreConfig> {
    match endpoints {
        Some(path) => StoreConfig::from_endpoints_file(path),
        None => Ok(StoreConfig {
            store_type: Some("sqlite".to_owned()),
            keys: JsonMap::new(),
        }),
    }
}

/// The store `config` describes, opened for `access`, with the slots of `domain`.
pub async fn open(
    registry: &Registry,
    config: &StoreConfig,
    access: Access,
    domain: Option<&Domain>,
) -> Result<TrackerStore> {
    let store = match access {
        Access::Read => registry.build_unchanged(config).await?,
        Access::Write => registry.build(config).await?,
    };
    let store = TrackerStore::from_arc(store);
    Ok(match domain {
        Some(domain) => store.with_domain(domain.clone()),
        None => store,
    })
}

/// Reads `--domain`.
fn read_domain(path: &Path) -> Result<Domain> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config_with(format!("reading {}", path.display()), e))?;
    serde_norway::from_str(&text)
        .map_err(|e| Error::config_with(format!("{} is not a domain", path.display()), e))
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let registry = Registry::with_builtins();
    let config = store_config(cli.endpoints.as_deref())?;
    let domain = cli.domain.as_deref().map(read_domain).transpose()?;
    let domain = domain.as_ref();
    let quiet = cli.quiet;
    let open = |access| open(&registry, &config, access, domain);
    match cli.command {
        Command::List { limit, cursor, all } => {
            list(&open(Access::Read).await?, limit, cursor, all).await
        }
        Command::Show {
            id,
            include_events,
            transcript: as_transcript,
        } => {
            show(
                &open(Access::Read).await?,
                &id,
                &include_events,
                as_transcript,
            )
            .await
        }
        Command::Export {
            output,
            to_broker: Some(broker_endpoints),
            minimum_timestamp,
            maximum_timestamp,
            conversation_ids,
            offset_timestamps_by_seconds,
        } => {
            debug_assert!(
                output.is_none(),
                "clap: --output conflicts with --to-broker"
            );
            let options = broker_export::Options {
                endpoints: cli.endpoints.as_deref(),
                broker_endpoints: &broker_endpoints,
                minimum_timestamp,
                maximum_timestamp,
                conversation_ids: conversation_ids.as_deref(),
                offset_timestamps_by_seconds,
                quiet,
            };
            broker_export::export(&registry, &open(Access::Read).await?, &options).await
        }
        Command::Export { output, .. } => {
            export(&open(Access::Read).await?, output.as_deref(), quiet).await
        }
        Command::Import { file } => import(&open(Access::Write).await?, &file, quiet).await,
        Command::Migrate {
            to,
            from_rasa,
            verify,
        } => {
            let options = migrate::Options { verify, quiet };
            match (to, from_rasa) {
                (Some(to), None) => migrate::to(&registry, &config, domain, &to, options).await,
                (None, Some(rasa)) => {
                    migrate::from_rasa(&registry, &config, domain, &rasa, options).await
                }
                _ => Err(Error::invalid_input(
                    "migrate needs --to OTHER.yml or --from-rasa RASA_ENDPOINTS.yml",
                )),
            }
        }
        Command::MigrateSchema => migrate_schema(&registry, &config, quiet).await,
        Command::Relay {
            broker,
            name,
            until_idle,
            batch,
            lease,
        } => {
            let broker_endpoints = broker.or(cli.endpoints).ok_or_else(|| {
                Error::invalid_input(
                    "relay needs --endpoints (its `tracker_store:` and `event_broker:` \
                     sections) or --broker ENDPOINTS.yml",
                )
            })?;
            let options = relay::Options {
                broker_endpoints: &broker_endpoints,
                name,
                until_idle,
                batch,
                lease_seconds: lease,
                quiet,
            };
            relay::relay(&registry, &config, &options).await
        }
        Command::Delete { ids } => delete::delete(&open(Access::Write).await?, &ids).await,
        Command::Prune {
            inactive_for,
            dry_run,
        } => {
            let access = if dry_run { Access::Read } else { Access::Write };
            delete::prune(&open(access).await?, &inactive_for, dry_run, quiet).await
        }
    }
}

/// Sets up the schema and prints each change on standard output.
async fn migrate_schema(
    registry: &Registry,
    config: &StoreConfig,
    quiet: bool,
) -> Result<ExitCode> {
    let changes = registry.ensure_schema(config).await?;
    for change in &changes {
        println!("{change}");
    }
    if !quiet {
        if changes.is_empty() {
            eprintln!("the schema is up to date: nothing changed");
        } else {
            eprintln!("made {} schema changes", changes.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(
    store: &TrackerStore,
    limit: usize,
    mut cursor: Option<String>,
    all: bool,
) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<40} {:>8}  last activity", "conversation", "events");
    let mut failed = false;
    loop {
        let page = store.list(cursor, limit).await?;
        for id in &page.sender_ids {
            match store.read(id, ReadScope::LatestSession).await {
                Ok(Some(latest)) => {
                    let activity = last_activity(&latest.events).map_or("-".to_owned(), iso_time);
                    let _ = writeln!(out, "{id:<40} {:>8}  {activity}", latest.version);
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = writeln!(out, "{id:<40} {:>8}  unreadable", "?");
                    eprintln!("{}", conversation_error(id, &error));
                    failed = true;
                }
            }
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
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
        let conversation = match store.read(id, ReadScope::All).await {
            Ok(Some(conversation)) => conversation,
            Ok(None) => continue,
            Err(error) => {
                bar.suspend(|| eprintln!("{}", conversation_error(id, &error)));
                summary.failed += 1;
                continue;
            }
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
    Ok(exit_code(&summary))
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

/// Conversations `import` copies per batch, and the JSON text after which a batch is sent
/// even if it has fewer: large enough that a batch costs few round trips and commits, small
/// enough to hold in memory and to stay well inside every store's statement limits.
const IMPORT_BATCH: usize = 256;
const IMPORT_BATCH_BYTES: usize = 8 << 20;

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
    // Parsed conversations waiting for their batch: (line number, name, events).
    let mut batch: Vec<(usize, String, Vec<Event>)> = Vec::new();
    let mut batch_bytes = 0;
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::backend_with("reading the import", e))?;
        if line.trim().is_empty() {
            continue;
        }
        bar.inc(1);
        match parse_dialogue(&line) {
            Ok((name, events)) => {
                // A conversation named again is copied after the first (and compared with it).
                if batch.iter().any(|(_, queued, _)| *queued == name) {
                    import_batch(store, &mut batch, &mut summary, &bar).await;
                    batch_bytes = 0;
                }
                batch_bytes += line.len();
                batch.push((number + 1, name, events));
            }
            Err(error) => {
                bar.suspend(|| eprintln!("line {}: {}", number + 1, error_line(&error)));
                summary.failed += 1;
            }
        }
        if batch.len() >= IMPORT_BATCH || batch_bytes >= IMPORT_BATCH_BYTES {
            import_batch(store, &mut batch, &mut summary, &bar).await;
            batch_bytes = 0;
        }
    }
    import_batch(store, &mut batch, &mut summary, &bar).await;
    bar.finish_and_clear();
    summary.print("imported", quiet);
    Ok(exit_code(&summary))
}

/// Copies the parsed conversations of `batch` and empties it, counting each outcome.
async fn import_batch(
    store: &TrackerStore,
    batch: &mut Vec<(usize, String, Vec<Event>)>,
    summary: &mut Summary,
    bar: &ProgressBar,
) {
    let conversations: Vec<(&str, &[Event])> = batch
        .iter()
        .map(|(_, name, events)| (name.as_str(), events.as_slice()))
        .collect();
    let results = store.import_batch(&conversations).await;
    for ((number, _, _), outcome) in batch.iter().zip(results) {
        match outcome {
            Ok(imported) => {
                summary.conversations += 1;
                summary.events += imported.written;
            }
            Err(error) => {
                bar.suspend(|| eprintln!("line {number}: {}", error_line(&error)));
                summary.failed += 1;
            }
        }
    }
    batch.clear();
}

/// Failure when any conversation failed.
pub fn exit_code(summary: &Summary) -> ExitCode {
    if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
