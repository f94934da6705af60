//! Reading conversations that Rasa's own `RedisTrackerStore` wrote.
//!
//! Rasa keeps a conversation as one string key, `tracker:<sender id>` or
//! `<key_prefix>:tracker:<sender id>`, holding `json.dumps({"events": [...], "name": id})`.
//! [`RedisRasaSource`] reads those records with the same connection settings and key prefix,
//! so a Rasa deployment can be moved over with
//! [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from); it never writes.

use std::collections::BTreeSet;
use std::fmt;

use fred::clients::{Client, Pool};
use fred::interfaces::KeysInterface;
use fred::types::Value;
use fred::types::scan::{ScanType, Scanner};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value as Json;
use tracker_core::event::deserialise_events;
use tracker_core::{Error, Event, RasaConversation, RasaSource, Result, async_trait};

use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::error::{driver_error, is_corrupt_reply};
use crate::schema::KeyLayout;
use crate::store::RedisStore;

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: u32 = 1_000;

/// The conversations Rasa's `RedisTrackerStore` stored under a `key_prefix`, read-only: a
/// [`RasaSource`] for [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
///
/// It reads the string keys `tracker:<sender id>` (or `<key_prefix>:tracker:<sender id>`)
/// and never writes, expires or deletes anything. Open it from the same configuration as a
/// [`RedisStore`] ([`RedisRasaSource::connect`]), or on a store's connections
/// ([`RedisRasaSource::from_store`]). Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisRasaSource {
    connection: Connection,
    layout: KeyLayout,
}

impl fmt::Debug for RedisRasaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRasaSource")
            .field("rasa_prefix", &self.layout.rasa_prefix())
            .field("connection", &self.connection)
            .finish()
    }
}

impl RedisRasaSource {
    /// Connects with `config` as [`RedisStore::connect`] does, to read Rasa's keys under its
    /// `key_prefix`. Nothing is written.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or rejected credentials;
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        let connection = Connection::connect(config).await?;
        Ok(Self { connection, layout })
    }

    /// A source on an existing, connected fred client (call `init()` on it first), with the
    /// key prefix of `config` (its connection settings are not used).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_client(client: Client, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        let connection = Connection::from_client(client)?;
        Ok(Self { connection, layout })
    }

    /// A source on an existing, connected fred pool (call `init()` on it first), with the key
    /// prefix of `config` (its connection settings are not used).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_pool(pool: Pool, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        Ok(Self {
            connection: Connection::from_pool(pool),
            layout,
        })
    }

    /// The source of Rasa's keys under `store`'s key prefix, on `store`'s connections.
    pub fn from_store(store: &RedisStore) -> Self {
        Self {
            connection: store.connection().clone(),
            layout: store.layout().clone(),
        }
    }

    /// The key names; Rasa's are [`KeyLayout::rasa`].
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }
}

#[async_trait]
impl RasaSource for RedisRasaSource {
    fn describe(&self) -> String {
        format!("Rasa's Redis keys {}*", self.layout.rasa_prefix())
    }

    /// The sender ids of every conversation Rasa stored under the `key_prefix`: string keys
    /// matching `<rasa prefix>*` found with `SCAN` (on every primary of a cluster), prefix
    /// stripped, sorted and without duplicates. A [`RedisStore`]'s own keys never match (see
    /// the key layout), and neither do keys of another type.
    ///
    /// `SCAN` returns every key that exists for the whole scan; keys written or deleted while
    /// it runs may or may not be included.
    async fn sender_ids(&self) -> Result<Vec<String>> {
        let prefix = self.layout.rasa_prefix().to_owned();
        let pattern = format!("{}*", glob_escape(&prefix));
        let client = self.connection.client();
        let mut pages = if self.connection.is_clustered() {
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

    /// Reads the conversation Rasa stored for `sender_id`, parsing its events as Rasa's
    /// `deserialise_events` does, or `None` if there is no such key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the key when its value is not a Rasa record (or not a
    /// string); [`Error::Unavailable`] / [`Error::Backend`] for Redis failures.
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        let key = self.layout.rasa(sender_id);
        let value: Value = self
            .connection
            .on_key(&key, |client| {
                let key = key.clone();
                async move { client.get(key).await }
            })
            .await
            .map_err(|e| {
                if is_corrupt_reply(&e) {
                    let message = format!("Rasa record at key {key:?} is not a string");
                    Error::corrupt_with(sender_id, None, message, e)
                } else {
                    driver_error(format!("reading Rasa's key {key:?}"), e)
                }
            })?;
        let text = match value {
            Value::Null => return Ok(None),
            Value::String(text) => text.to_string(),
            Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).map_err(|e| {
                let message = format!("Rasa record at key {key:?} is not UTF-8");
                Error::corrupt_with(sender_id, None, message, e)
            })?,
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
            events,
        }))
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
}
