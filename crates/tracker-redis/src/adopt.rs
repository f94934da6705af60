//! Rasa's records as this store reads them: the string key `tracker:<id>` (or
//! `<key_prefix>:tracker:<id>`) holding `json.dumps({"events": [...], "name": id})`, found
//! with `SCAN`, parsed as Rasa's `deserialise_events` does, and rendered as the events of a
//! conversation of this store when it adopts one.

use std::collections::BTreeSet;

use fred::interfaces::{FredResult, KeysInterface};
use fred::types::Value;
use fred::types::scan::{ScanType, Scanner};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value as Json;
use tracker_core::event::deserialise_events;
use tracker_core::{
    Append, Error, Event, EventData, ReadScope, Result, SenderId, StoredConversation, StoredEvent,
};

use crate::connection::{Command, Connection};
use crate::error::{driver_error, is_corrupt_reply};
use crate::schema::KeyLayout;

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: u32 = 1_000;

/// What is at Rasa's key of a conversation.
pub(crate) enum Fetched {
    /// No key.
    Missing,
    /// A key of another type than string: not a record Rasa wrote.
    NotAString,
    /// A string: Rasa's record.
    Text(String),
}

/// `GET` of Rasa's key of `sender_id`.
pub(crate) async fn fetch(
    connection: &Connection,
    layout: &KeyLayout,
    sender_id: &str,
) -> Result<Fetched> {
    let key = layout.rasa(sender_id);
    let reply = connection
        .on_key(&key, |client| {
            let key = key.clone();
            async move { client.get::<Value, _>(key).await }
        })
        .await;
    fetched(sender_id, &key, reply)
}

/// `GET` of Rasa's keys of `sender_ids`, pipelined (see [`Connection::pipeline`]): what each
/// holds, at its position, or the error of that key alone.
///
/// # Errors
/// When a connection failed, for the whole batch.
pub(crate) async fn fetch_each(
    connection: &Connection,
    layout: &KeyLayout,
    sender_ids: &[&str],
) -> Result<Vec<Result<Fetched>>> {
    let commands: Vec<Command> = sender_ids
        .iter()
        .map(|id| {
            let key = layout.rasa(id);
            Command {
                name: "GET",
                args: vec![Value::from(key.as_str())],
                key,
            }
        })
        .collect();
    let replies = connection
        .pipeline(&commands)
        .await
        .map_err(|e| driver_error("reading Rasa's keys", e))?;
    Ok(sender_ids
        .iter()
        .zip(&commands)
        .zip(replies)
        .map(|((id, command), reply)| fetched(id, &command.key, reply))
        .collect())
}

/// What a `GET` of Rasa's `key` found.
fn fetched(sender_id: &str, key: &str, reply: FredResult<Value>) -> Result<Fetched> {
    let value = match reply {
        Ok(value) => value,
        Err(error) if is_corrupt_reply(&error) => return Ok(Fetched::NotAString),
        Err(error) => return Err(driver_error(format!("reading Rasa's key {key:?}"), error)),
    };
    match record_text(sender_id, key, value)? {
        Some(text) => Ok(Fetched::Text(text)),
        None => Ok(Fetched::Missing),
    }
}

/// The text of a reply holding Rasa's record (`None` for a nil reply).
///
/// # Errors
/// [`Error::Corrupt`] naming the key when the value is not UTF-8 text.
pub(crate) fn record_text(sender_id: &str, key: &str, value: Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.to_string())),
        Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|e| {
            let message = format!("Rasa record at key {key:?} is not UTF-8");
            Error::corrupt_with(sender_id, None, message, e)
        }),
        other => Err(Error::corrupt(
            sender_id,
            None,
            format!("Rasa record at key {key:?} is not text: {other:?}"),
        )),
    }
}

/// Rasa's record of a conversation, parsed, with the SHA-1 of its text (to check, inside a
/// script, that it has not changed since).
#[derive(Debug)]
pub(crate) struct RasaRecord {
    /// SHA-1 of the record's text, in lowercase hex (as Redis' `redis.sha1hex`).
    pub(crate) sha1: String,
    /// The events, as Rasa reads them.
    pub(crate) events: Vec<Event>,
}

impl RasaRecord {
    /// Parses the record found at `key`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] as [`parse_rasa_record`].
    pub(crate) fn parse(sender_id: &str, key: &str, text: &str) -> Result<Self> {
        Ok(Self {
            sha1: fred::util::sha1_hash(text),
            events: parse_rasa_record(sender_id, key, text)?,
        })
    }

    /// Reads the record of `sender_id`, if Rasa's key holds a string.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the string is not a Rasa record; Redis failures as
    /// [`driver_error`].
    pub(crate) async fn read(
        connection: &Connection,
        layout: &KeyLayout,
        sender_id: &str,
    ) -> Result<Option<Self>> {
        match fetch(connection, layout, sender_id).await? {
            Fetched::Text(text) => Self::parse(sender_id, &layout.rasa(sender_id), &text).map(Some),
            Fetched::Missing | Fetched::NotAString => Ok(None),
        }
    }

    /// The conversation's version: its number of events.
    pub(crate) fn version(&self) -> u64 {
        self.events.len() as u64
    }

    /// The events as this store keeps them: each one's JSON text, and the sequence number of
    /// the last `session_started` (`None` for a record without events).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an event this store could not take (a non-finite timestamp).
    pub(crate) fn texts(&self, sender_id: &SenderId) -> Result<(Vec<String>, Option<u64>)> {
        if self.events.is_empty() {
            return Ok((Vec::new(), None));
        }
        let append = Append::new(sender_id.clone(), 0, &self.events).map_err(|error| {
            Error::corrupt(
                sender_id.as_str(),
                None,
                format!("Rasa's record cannot be adopted: {error}"),
            )
            .with_source(error)
        })?;
        let session = append.last_session_started();
        let texts = append
            .records()
            .iter()
            .map(|record| record.json.clone())
            .collect();
        Ok((texts, session))
    }

    /// The conversation as a read of `scope` returns it: the events numbered from 1, the
    /// latest session from the event before its `session_started`; `None` without events.
    pub(crate) fn stored(&self, scope: ReadScope) -> Option<StoredConversation> {
        if self.events.is_empty() {
            return None;
        }
        let first = match scope {
            ReadScope::All => 1,
            ReadScope::LatestSession => self
                .events
                .iter()
                .rposition(|event| event.type_name() == "session_started")
                .map_or(1, |index| index.max(1)),
        };
        let events = self
            .events
            .iter()
            .zip(1u64..)
            .skip(first - 1)
            .map(|(event, seq)| StoredEvent {
                seq,
                data: EventData::Text(event.to_rasa_json()),
            })
            .collect();
        Some(StoredConversation {
            version: self.version(),
            events,
        })
    }
}

/// Parses the value Rasa stores for a conversation (`{"events": [...], "name": id}`; a
/// missing `events` is an empty list, as in Rasa's `Dialogue.from_parameters`).
///
/// # Errors
/// [`Error::Corrupt`] naming `sender_id` and `key` when the text is not JSON, not an object,
/// `events` is not a list, or an event cannot be read (with its position in the list,
/// from 1).
pub fn parse_rasa_record(sender_id: &str, key: &str, text: &str) -> Result<Vec<Event>> {
    let corrupt = |position: Option<u64>, message: String| {
        Error::corrupt(
            sender_id,
            position,
            format!("Rasa record at key {key:?}: {message}"),
        )
    };
    let value: Json = serde_json::from_str(text)
        .map_err(|e| corrupt(None, format!("not JSON ({e})")).with_source(e))?;
    let Json::Object(record) = value else {
        return Err(corrupt(None, "not a JSON object".to_owned()));
    };
    let values = match record.get("events") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(values)) => values,
        Some(_) => return Err(corrupt(None, "`events` is not a list".to_owned())),
    };
    deserialise_events(values).map_err(|error| {
        // Find the event at fault, to name its position.
        let position = values
            .iter()
            .position(|value| deserialise_events(std::slice::from_ref(value)).is_err())
            .map(|index| index as u64 + 1);
        corrupt(position, error.message().to_owned()).with_source(error)
    })
}

/// The sender ids of every string key under Rasa's prefix, found with `SCAN ... MATCH
/// <prefix>* TYPE string` (on every primary of a cluster), prefix stripped, sorted and
/// without duplicates. This store's own keys never match (see the key layout).
///
/// `SCAN` returns every key that exists for the whole scan; keys written or deleted while it
/// runs may or may not be included.
pub(crate) async fn scan_ids(connection: &Connection, layout: &KeyLayout) -> Result<Vec<String>> {
    let prefix = layout.rasa_prefix().to_owned();
    let pattern = format!("{}*", glob_escape(&prefix));
    let client = connection.client();
    let mut pages = if connection.is_clustered() {
        client
            .scan_cluster(pattern, Some(SCAN_COUNT), Some(ScanType::String))
            .boxed()
    } else {
        client
            .scan(pattern, Some(SCAN_COUNT), Some(ScanType::String))
            .boxed()
    };
    let mut ids = BTreeSet::new();
    while let Some(mut page) = pages
        .try_next()
        .await
        .map_err(|e| driver_error("scanning for Rasa's keys", e))?
    {
        for key in page.take_results().unwrap_or_default() {
            match key
                .as_str()
                .and_then(|key| key.strip_prefix(prefix.as_str()))
            {
                Some(id) => {
                    ids.insert(id.to_owned());
                }
                None => tracing::debug!(
                    key = ?key,
                    "skipping a key that is not UTF-8 or lacks Rasa's prefix"
                ),
            }
        }
        page.next();
    }
    Ok(ids.into_iter().collect())
}

/// `text` with the glob characters of `SCAN ... MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_globs() {
        assert_eq!(glob_escape("tracker:"), "tracker:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn parses_records() {
        let text = r#"{"events": [{"event": "action", "timestamp": 1.5, "name": "action_listen"}, {"no": "event"}], "name": "x"}"#;
        let events = parse_rasa_record("x", "tracker:x", text).expect("valid");
        assert_eq!(events.len(), 1);
        assert!(events[0].is_action("action_listen"));
        assert!(
            parse_rasa_record("x", "tracker:x", r#"{"name": "x"}"#)
                .expect("no events")
                .is_empty()
        );
        for bad in ["not json", "[]", r#"{"events": 3}"#] {
            let error = parse_rasa_record("x", "tracker:x", bad).expect_err(bad);
            assert_eq!(error.kind(), tracker_core::ErrorKind::Corrupt);
            assert!(error.to_string().contains("tracker:x"), "{error}");
        }
        let error = parse_rasa_record(
            "x",
            "tracker:x",
            r#"{"events": [{"event": "bot", "timestamp": 1.0}, {"event": 7}]}"#,
        )
        .expect_err("bad event");
        match error {
            Error::Corrupt { position, .. } => assert_eq!(position, Some(2)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn records_as_stored() {
        let events = [
            Event::action("action_session_start").at(1.0),
            Event::session_started().at(1.1),
            Event::action("action_listen").at(1.2),
            Event::user("hi", "greet", 0.9).at(2.0),
            Event::action("action_session_start").at(9.0),
            Event::session_started().at(9.1),
        ];
        let texts: Vec<String> = events.iter().map(Event::to_rasa_json).collect();
        let text = format!("{{\"events\": [{}], \"name\": \"x\"}}", texts.join(", "));
        let record = RasaRecord::parse("x", "tracker:x", &text).expect("valid");
        assert_eq!(record.version(), 6);
        assert_eq!(record.sha1, fred::util::sha1_hash(&text));
        let id = SenderId::new("x").expect("valid");
        let (rendered, session) = record.texts(&id).expect("renders");
        assert_eq!(rendered, texts);
        assert_eq!(session, Some(6));
        let all = record.stored(ReadScope::All).expect("events");
        assert_eq!(all.version, 6);
        assert_eq!(all.events.len(), 6);
        assert_eq!(all.events[3].data, EventData::Text(texts[3].clone()));
        let latest = record.stored(ReadScope::LatestSession).expect("events");
        assert_eq!(latest.version, 6);
        assert_eq!(
            latest.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [5, 6]
        );
        let empty =
            RasaRecord::parse("x", "tracker:x", &KeyLayout::rasa_empty_record("x")).expect("valid");
        assert!(empty.stored(ReadScope::All).is_none());
        assert_eq!(empty.texts(&id).expect("nothing"), (Vec::new(), None));
    }
}
