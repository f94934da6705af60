//! `export --to-broker`: Rasa's `rasa export`, publishing a store's conversations to the event
//! broker of an `endpoints.yml`.
//!
//! As Rasa 3.6: the conversations of `keys()` (those requested with `--conversation-ids`, a
//! requested one not in the store warned about), each read in full, every event as
//! `{**event.as_dict(), "sender_id": id}` (`sender_id` after the event's keys), kept when
//! `--minimum-timestamp <= timestamp < --maximum-timestamp`, its timestamp shifted by
//! `--offset-timestamps-by-seconds` in the body only, and on every message the header
//! `rasa-export-process-id` with one random UUID (hex) per run. A RabbitMQ broker is used as
//! Rasa's export uses it, without keeping unpublished messages.
//!
//! Where Rasa 3.6.21 publishes one conversation after another (in the order of a Python set)
//! each sorted by timestamp, this publishes all selected events sorted by timestamp, ties in
//! the order of `keys()` and then of the conversation: each conversation's events come in
//! exactly Rasa's order, and `--minimum-timestamp` of the last published event resumes an
//! interrupted run without skipping anything (Rasa's per-conversation order makes its own
//! resumption command skip events of the conversations it had not reached).
//!
//! Publishing waits for the broker's confirmation of each batch (RabbitMQ publisher
//! confirms, Kafka acknowledgements, the SQL commit, the file write). On a failure the
//! command prints the command that continues from the last confirmed event and exits
//! non-zero. Nothing in the store is written.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use tracker_store::json::python_float_repr;
use tracker_store::{
    BrokerMessage, Error, Event, EventBrokerConfig, ReadScope, Registry, Result, TrackerStore,
};

use crate::output::{error_line, progress_of};

/// The header Rasa's export puts on every message of a run.
pub const EXPORT_PROCESS_ID_HEADER: &str = "rasa-export-process-id";
/// Events handed to the broker at a time; a batch is confirmed before the next is sent.
const BATCH: usize = 500;

/// What to export and where.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The store's `endpoints.yml`, as given on the command line (for the resume command).
    pub endpoints: Option<&'a Path>,
    /// The `endpoints.yml` whose `event_broker:` section names the broker.
    pub broker_endpoints: &'a Path,
    /// Events at or after this timestamp.
    pub minimum_timestamp: Option<f64>,
    /// Events before this timestamp.
    pub maximum_timestamp: Option<f64>,
    /// `--conversation-ids` as given (comma-separated).
    pub conversation_ids: Option<&'a str>,
    /// Seconds added to every published timestamp.
    pub offset_timestamps_by_seconds: Option<i64>,
    /// No progress bars, no summary.
    pub quiet: bool,
}

impl Options<'_> {
    /// The requested conversations: `--conversation-ids` split at commas, as Rasa splits it
    /// (an empty value requests none, that is all).
    fn requested(&self) -> Option<Vec<&str>> {
        self.conversation_ids
            .filter(|ids| !ids.is_empty())
            .map(|ids| ids.split(',').collect())
    }
}

/// One selected event.
struct Selected {
    timestamp: f64,
    conversation: usize,
    seq: u64,
    event: Event,
}

/// Runs the export.
pub async fn export(
    registry: &Registry,
    store: &TrackerStore,
    options: &Options<'_>,
) -> Result<ExitCode> {
    check_timestamps(options)?;
    let config =
        EventBrokerConfig::from_endpoints_file(options.broker_endpoints)?.ok_or_else(|| {
            Error::config(format!(
                "{} has no `event_broker:` section: it names the broker to publish to",
                options.broker_endpoints.display()
            ))
        })?;
    let broker_name = registry
        .broker_registration(config.broker_type.as_deref())
        .map_or_else(
            || {
                config
                    .broker_type
                    .clone()
                    .unwrap_or_else(|| "pika".to_owned())
            },
            |registration| registration.name.to_owned(),
        );
    // Connected first, as Rasa does: a broker that cannot be reached stops the export
    // before anything is read.
    let broker = registry.build_broker(&prepared(registry, config)).await?;
    let ids = conversations(store, options).await?;
    let selected = select(store, &ids, options).await?;

    let process_id = uuid::Uuid::new_v4().simple().to_string();
    if !options.quiet {
        eprintln!(
            "publishing {} events of {} conversations to the `{broker_name}` event broker \
             ({EXPORT_PROCESS_ID_HEADER}: {process_id})",
            selected.len(),
            ids.len()
        );
        if let Some(offset) = options.offset_timestamps_by_seconds {
            eprintln!("every published timestamp is shifted by {offset:+} s");
        }
    }
    let bar = progress_of(selected.len() as u64, options.quiet, "publishing", "events");
    let mut confirmed = 0usize;
    let mut last_confirmed: Option<f64> = None;
    for batch in selected.chunks(BATCH) {
        let messages: Vec<BrokerMessage> = batch
            .iter()
            .map(|item| message(&ids[item.conversation], item, options, &process_id))
            .collect();
        if let Err(error) = broker.publish(&messages).await {
            bar.abandon();
            report_failure(
                &broker_name,
                &error,
                confirmed,
                selected.len(),
                last_confirmed,
                options,
            );
            return Ok(ExitCode::FAILURE);
        }
        confirmed += batch.len();
        last_confirmed = batch.last().map(|item| item.timestamp);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    if !options.quiet {
        eprintln!("published {confirmed} events to the `{broker_name}` event broker");
    }
    Ok(ExitCode::SUCCESS)
}

/// Rasa's check: a maximum below the minimum is an error (an equal one selects nothing).
fn check_timestamps(options: &Options<'_>) -> Result<()> {
    for (name, value) in [
        ("--minimum-timestamp", options.minimum_timestamp),
        ("--maximum-timestamp", options.maximum_timestamp),
    ] {
        if value.is_some_and(|value| !value.is_finite()) {
            return Err(Error::invalid_input(format!(
                "{name} must be a finite number"
            )));
        }
    }
    if let (Some(minimum), Some(maximum)) = (options.minimum_timestamp, options.maximum_timestamp)
        && maximum < minimum
    {
        return Err(Error::invalid_input(format!(
            "the maximum timestamp {} is smaller than the minimum timestamp {}",
            python_float_repr(maximum),
            python_float_repr(minimum)
        )));
    }
    Ok(())
}

/// The broker configuration as Rasa's export uses it, and the relay too: a RabbitMQ broker
/// keeps no unpublished messages and fails a publish as soon as the connection fails (the
/// outbox, or the export's resume command, is what keeps them).
pub(crate) fn prepared(registry: &Registry, mut config: EventBrokerConfig) -> EventBrokerConfig {
    let is_rabbitmq = registry
        .broker_registration(config.broker_type.as_deref())
        .is_some_and(|registration| registration.name == "pika");
    if is_rabbitmq {
        config.keys.insert(
            "should_keep_unpublished_messages".to_owned(),
            Value::Bool(false),
        );
        config
            .keys
            .insert("raise_on_failure".to_owned(), Value::Bool(true));
    }
    config
}

/// The conversations to export, in the order of `keys()`.
async fn conversations(store: &TrackerStore, options: &Options<'_>) -> Result<Vec<String>> {
    let keys = store.keys().await?;
    if keys.is_empty() {
        return Err(Error::not_found(
            "conversations: the tracker store has none (check the `tracker_store:` section of \
             --endpoints)",
        ));
    }
    let Some(requested) = options.requested() else {
        return Ok(keys);
    };
    let present: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut missing: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        eprintln!(
            "warning: requested conversations not in the tracker store: {}",
            missing.join(", ")
        );
    }
    let wanted: HashSet<&str> = requested.into_iter().collect();
    let ids: Vec<String> = keys
        .into_iter()
        .filter(|id| wanted.contains(id.as_str()))
        .collect();
    if ids.is_empty() {
        return Err(Error::not_found(
            "conversations: none of the requested conversations is in the tracker store",
        ));
    }
    Ok(ids)
}

/// Reads every conversation in full and keeps the events in the time range, sorted by
/// timestamp (stable: ties in conversation order, then event order).
async fn select(
    store: &TrackerStore,
    ids: &[String],
    options: &Options<'_>,
) -> Result<Vec<Selected>> {
    let bar = progress_of(ids.len() as u64, options.quiet, "reading", "conversations");
    let mut selected = Vec::new();
    for (conversation, id) in ids.iter().enumerate() {
        bar.inc(1);
        let Some(read) = store.read(id, ReadScope::All).await? else {
            tracing::info!(sender_id = %id, "conversation gone since it was listed; skipped");
            continue;
        };
        for (event, seq) in read.events.into_iter().zip(read.first_seq..) {
            let timestamp = event.timestamp;
            let after_minimum = options.minimum_timestamp.is_none_or(|min| timestamp >= min);
            let before_maximum = options.maximum_timestamp.is_none_or(|max| timestamp < max);
            if after_minimum && before_maximum {
                selected.push(Selected {
                    timestamp,
                    conversation,
                    seq,
                    event,
                });
            }
        }
    }
    bar.finish_and_clear();
    selected.sort_by(|a, b| {
        a.timestamp
            .partial_cmp(&b.timestamp)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(selected)
}

/// The message Rasa's export publishes for `item`: the event's JSON with `sender_id` added
/// after its keys, the timestamp shifted by the offset, and the run's process id header.
fn message(
    sender_id: &str,
    item: &Selected,
    options: &Options<'_>,
    process_id: &str,
) -> BrokerMessage {
    let mut body = match item.event.to_value() {
        Value::Object(fields) => fields,
        _ => tracker_store::JsonMap::new(),
    };
    if let Some(offset) = options.offset_timestamps_by_seconds {
        // Python: `event["timestamp"] += offset`, a float plus an int.
        let shifted = item.timestamp + offset as f64;
        if let Some(number) = serde_json::Number::from_f64(shifted) {
            body.insert("timestamp".to_owned(), Value::Number(number));
        }
    }
    body.insert("sender_id".to_owned(), Value::String(sender_id.to_owned()));
    BrokerMessage::from_body(sender_id, item.seq, Value::Object(body))
        .with_header(EXPORT_PROCESS_ID_HEADER, process_id)
}

/// Prints what failed and the command that continues the export.
fn report_failure(
    broker_name: &str,
    error: &Error,
    confirmed: usize,
    total: usize,
    last_confirmed: Option<f64>,
    options: &Options<'_>,
) {
    eprintln!(
        "error: publishing to the `{broker_name}` event broker failed: {}",
        error_line(error)
    );
    match last_confirmed {
        Some(timestamp) => eprintln!(
            "{confirmed} of {total} events were published and confirmed, the last with \
             timestamp {}.",
            python_float_repr(timestamp)
        ),
        None => eprintln!("none of the {total} events was confirmed."),
    }
    eprintln!(
        "To continue where the export stopped, run:\n\n    {}\n",
        resume_command(last_confirmed.or(options.minimum_timestamp), options)
    );
    if last_confirmed.is_some() {
        eprintln!(
            "Events with that timestamp already published are published again: consumers drop \
             the copies by their `sender_id` and `seq` headers or their body."
        );
    }
}

/// The command line that exports again from `minimum_timestamp`, with the other options of
/// this run.
pub fn resume_command(minimum_timestamp: Option<f64>, options: &Options<'_>) -> String {
    let mut words = vec!["tracker".to_owned()];
    if let Some(endpoints) = options.endpoints {
        words.push("--endpoints".to_owned());
        words.push(shell_quote(&endpoints.display().to_string()));
    }
    words.push("export".to_owned());
    words.push("--to-broker".to_owned());
    words.push(shell_quote(&options.broker_endpoints.display().to_string()));
    if let Some(minimum) = minimum_timestamp {
        words.push(format!(
            "--minimum-timestamp={}",
            python_float_repr(minimum)
        ));
    }
    if let Some(maximum) = options.maximum_timestamp {
        words.push(format!(
            "--maximum-timestamp={}",
            python_float_repr(maximum)
        ));
    }
    if let Some(ids) = options.requested() {
        words.push("--conversation-ids".to_owned());
        words.push(shell_quote(&ids.join(",")));
    }
    if let Some(offset) = options.offset_timestamps_by_seconds {
        words.push(format!("--offset-timestamps-by-seconds={offset}"));
    }
    words.join(" ")
}

/// `text` as one word of a POSIX shell command: as is when it is plain, else single-quoted.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options<'a>(broker: &'a Path) -> Options<'a> {
        Options {
            endpoints: None,
            broker_endpoints: broker,
            minimum_timestamp: None,
            maximum_timestamp: None,
            conversation_ids: None,
            offset_timestamps_by_seconds: None,
            quiet: true,
        }
    }

    #[test]
    fn the_resume_command_keeps_every_option_and_quotes_words() {
        let broker = Path::new("my broker.yml");
        let store = Path::new("endpoints.yml");
        let mut options = options(broker);
        options.endpoints = Some(store);
        options.maximum_timestamp = Some(1_700_000_200.0);
        options.conversation_ids = Some("a,it's");
        options.offset_timestamps_by_seconds = Some(-3600);
        assert_eq!(
            resume_command(Some(1_700_000_101.75), &options),
            "tracker --endpoints endpoints.yml export --to-broker 'my broker.yml' \
             --minimum-timestamp=1700000101.75 --maximum-timestamp=1700000200.0 \
             --conversation-ids 'a,it'\\''s' --offset-timestamps-by-seconds=-3600"
        );
        assert_eq!(
            resume_command(None, &self::options(Path::new("b.yml"))),
            "tracker export --to-broker b.yml"
        );
    }

    #[test]
    fn conversation_ids_are_split_as_rasa_splits_them() {
        let broker = Path::new("b.yml");
        let mut options = options(broker);
        options.conversation_ids = Some("a,,b");
        assert_eq!(options.requested(), Some(vec!["a", "", "b"]));
        options.conversation_ids = Some("");
        assert_eq!(options.requested(), None);
    }

    #[test]
    fn timestamps_are_checked_as_rasa_checks_them() {
        let broker = Path::new("b.yml");
        let mut options = options(broker);
        options.minimum_timestamp = Some(2.0);
        options.maximum_timestamp = Some(2.0);
        assert!(
            check_timestamps(&options).is_ok(),
            "equal bounds select nothing"
        );
        options.maximum_timestamp = Some(1.5);
        let error = check_timestamps(&options).expect_err("maximum below minimum");
        assert!(error.to_string().contains("1.5"), "{error}");
        options.maximum_timestamp = Some(f64::NAN);
        assert!(check_timestamps(&options).is_err());
    }
}
