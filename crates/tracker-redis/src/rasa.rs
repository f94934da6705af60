//! Reading conversations that Rasa's own `RedisTrackerStore` wrote.
//!
//! Rasa keeps a conversation as one string key, `tracker:<sender id>` or
//! `<key_prefix>:tracker:<sender id>`, holding `json.dumps({"events": [...], "name": id})`.
//! These functions read those records with the store's connection and key prefix, so a Rasa
//! deployment can be moved over (see [`RedisStore::import_rasa`]); they never write Rasa's
//! keys.

use std::collections::BTreeSet;

use fred::interfaces::KeysInterface;
use fred::types::Value;
use fred::types::scan::{ScanType, Scanner};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value as Json;
use tracker_core::event::deserialise_events;
use tracker_core::{Append, Error, Event, Result, SenderId, Store};

use crate::RedisStore;
use crate::error::from_fred;

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: u32 = 1_000;

/// A conversation read from Rasa's format.
#[derive(Debug, Clone, PartialEq)]
pub struct RasaConversation {
    /// The sender id (the key without Rasa's prefix).
    pub sender_id: String,
    /// The Redis key it was read from.
    pub key: String,
    /// Its events, parsed as Rasa's `deserialise_events` does (objects without `event` and
    /// legacy `topic` events are skipped).
    pub events: Vec<Event>,
}

/// Parses the value Rasa stores for a conversation (`{"events": [...], "name": id}`; a
/// missing `events` is an empty list, as in Rasa's `Dialogue.from_parameters`).
///
/// # Errors
/// [`Error::Corrupt`] naming `sender_id` and `key` when the text is not JSON, not an object,
/// `events` is not a list, or an event cannot be read (with its position in the list,
/// from 1).
pub fn parse_rasa_record(sender_id: &str, key: &str, text: &str) -> Result<Vec<Event>> {
    let corrupt =
        |position: Option<u64>, message: String, source: Option<tracker_core::BoxError>| {
            Error::Corrupt {
                sender_id: sender_id.to_owned(),
                position,
                message: format!("Rasa record at key {key:?}: {message}"),
                source,
            }
        };
    let value: Json = serde_json::from_str(text)
        .map_err(|e| corrupt(None, format!("not JSON ({e})"), Some(Box::new(e))))?;
    let Json::Object(record) = value else {
        return Err(corrupt(None, "not a JSON object".to_owned(), None));
    };
    let values = match record.get("events") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(values)) => values,
        Some(_) => return Err(corrupt(None, "`events` is not a list".to_owned(), None)),
    };
    deserialise_events(values).map_err(|error| {
        // Find the event at fault, to name its position.
        let position = values
            .iter()
            .position(|value| deserialise_events(std::slice::from_ref(value)).is_err())
            .map(|index| index as u64 + 1);
        corrupt(position, error.message().to_owned(), Some(Box::new(error)))
    })
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

impl RedisStore {
    /// Reads the conversation Rasa's `RedisTrackerStore` stored for `sender_id` (under this
    /// store's `key_prefix`), or `None` if there is no such key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the key when its value is not a Rasa record (or not a
    /// string); [`Error::Unavailable`] / [`Error::Backend`] for Redis failures.
    pub async fn read_rasa(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        let key = self.layout().rasa(sender_id);
        let value: Value = self
            .on_key(&key, |client| {
                let key = key.clone();
                async move { client.get(key).await }
            })
            .await
            .map_err(|e| {
                if crate::error::is_corrupt_reply(&e) {
                    Error::Corrupt {
                        sender_id: sender_id.to_owned(),
                        position: None,
                        message: format!("Rasa record at key {key:?} is not a string"),
                        source: Some(Box::new(e)),
                    }
                } else {
                    from_fred(format!("reading Rasa's key {key:?}"), e)
                }
            })?;
        let text = match value {
            Value::Null => return Ok(None),
            Value::String(text) => text.to_string(),
            Value::Bytes(bytes) => {
                String::from_utf8(bytes.to_vec()).map_err(|e| Error::Corrupt {
                    sender_id: sender_id.to_owned(),
                    position: None,
                    message: format!("Rasa record at key {key:?} is not UTF-8"),
                    source: Some(Box::new(e)),
                })?
            }
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("Rasa record at key {key:?} is not text: {other:?}"),
                ));
            }
        };
        let events = parse_rasa_record(sender_id, &key, &text)?;
        Ok(Some(RasaConversation {
            sender_id: sender_id.to_owned(),
            key,
            events,
        }))
    }

    /// The sender ids of every conversation Rasa stored under this store's `key_prefix`:
    /// string keys matching `<rasa prefix>*` found with `SCAN` (on every primary of a
    /// cluster), prefix stripped, sorted and without duplicates. This store's own keys never
    /// match (see the key layout), and neither do keys of another type.
    ///
    /// `SCAN` returns every key that exists for the whole scan; keys written or deleted while
    /// it runs may or may not be included.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Backend`] for Redis failures.
    pub async fn rasa_sender_ids(&self) -> Result<Vec<String>> {
        let prefix = self.layout().rasa_prefix().to_owned();
        let pattern = format!("{}*", glob_escape(&prefix));
        let client = self.client();
        let mut pages = if self.is_clustered() {
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
            .map_err(|e| from_fred("scanning for Rasa's keys", e))?
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

    /// Copies the conversation Rasa stored for `sender_id` into this store, as a new
    /// conversation. Rasa's key is left as it is.
    ///
    /// Returns `None` when Rasa has no record for it, else the new version (0 for Rasa's empty
    /// record, which writes nothing).
    ///
    /// # Errors
    /// [`Error::Conflict`] when this store already has the conversation (nothing is
    /// written); [`Error::InvalidInput`] for a sender id this store cannot hold (over 255
    /// bytes or with NUL) or an event with a non-finite timestamp; [`Error::Corrupt`] for an
    /// unreadable Rasa record.
    pub async fn import_rasa(&self, sender_id: &str) -> Result<Option<u64>> {
        let Some(conversation) = self.read_rasa(sender_id).await? else {
            return Ok(None);
        };
        if conversation.events.is_empty() {
            return Ok(Some(0));
        }
        let append = Append::new(SenderId::new(sender_id)?, 0, &conversation.events)?;
        self.append(&append).await.map(Some)
    }
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
}
