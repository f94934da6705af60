//! Reading conversations that Rasa's own `MongoTrackerStore` wrote, for migration:
//! [`MongoRasaSource`], a [`RasaSource`] for
//! [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
//!
//! Rasa keeps one document per conversation in its collection (`conversations` by default):
//! an automatic `_id`, `sender_id` (a string; an integer in very old data), the tracker's state
//! fields (`slots`, `latest_message`, `latest_event_time`, `followup_action`, `paused`,
//! `latest_input_channel`, `active_loop`, `latest_action`, `latest_action_name`) and
//! `events`, an array of event objects stored as BSON documents. A source reads such
//! documents and never writes anything: no index, no rewritten `sender_id`.
//!
//! The events are BSON, so their JSON is rebuilt ([`bson_to_json`]): key order is kept, and
//! numbers keep their type — a BSON double is a JSON float (`1.0` stays `1.0`), an integer an
//! integer. A server that changes number types on the way (the CongoDB stand-in turns
//! whole-number doubles into integers) changes the events' text accordingly.

use std::collections::BTreeSet;
use std::fmt;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Collection};
use serde_json::{Map, Number, Value};
use tracker_core::event::deserialise_events;
use tracker_core::{Error, RasaConversation, RasaSource, Result, async_trait};

use crate::config::{MongoConfig, validate_collection_name, validate_db_name};
use crate::error::driver_error;

/// The conversations Rasa's `MongoTrackerStore` stored in one collection, read-only.
///
/// With the configuration of a store, the collection is `<collection>` itself (Rasa's), beside
/// the store's `<collection>.heads` and `<collection>.events`;
/// [`MongoStore::rasa_source`](crate::MongoStore::rasa_source) opens it on a store's client.
///
/// ```no_run
/// use tracker_mongo::tracker_core::{RasaSource, TrackerStore};
/// use tracker_mongo::{MongoConfig, MongoRasaSource, MongoStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tracker_mongo::tracker_core::Result<()> {
/// let config = MongoConfig::default();
/// let rasa = MongoRasaSource::connect(&config).await?;
/// let store = TrackerStore::new(MongoStore::connect(&config).await?);
/// for sender_id in rasa.sender_ids().await? {
///     // Resumes a copy an earlier run left half done; `Diverged` if the store holds
///     // other events for this conversation.
///     store.import_from(&rasa, &sender_id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MongoRasaSource {
    collection: Collection<Document>,
    /// Where it is connected, without credentials.
    display: String,
}

impl fmt::Debug for MongoRasaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoRasaSource")
            .field("server", &self.display)
            .field("namespace", &self.collection.namespace().to_string())
            .finish()
    }
}

impl MongoRasaSource {
    /// Connects with the store's configuration and pings the server; reads the collection
    /// `config.collection` of the database `config.db`. Creates nothing, whatever
    /// `ensure_indexes` says.
    ///
    /// # Errors
    /// As [`MongoStore::connect`](crate::MongoStore::connect).
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let client = config.client().await?;
        let mut source = Self::from_client(client, config)?;
        source.display = config.display_url();
        source
            .collection
            .client()
            .database(&config.db)
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| driver_error(format!("pinging MongoDB at {}", source.display), e))?;
        Ok(source)
    }

    /// A source on a client you built, reading the collection `config.collection` of the
    /// database `config.db`; the other keys are ignored. Touches no server.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid database or collection name.
    pub fn from_client(client: Client, config: &MongoConfig) -> Result<Self> {
        validate_db_name(&config.db)?;
        validate_collection_name(&config.collection)?;
        Ok(Self {
            collection: client.database(&config.db).collection(&config.collection),
            display: "<client given>".to_owned(),
        })
    }

    /// A source reading any collection in Rasa's format.
    pub fn from_collection(collection: Collection<Document>) -> Self {
        Self {
            collection,
            display: "<collection given>".to_owned(),
        }
    }

    /// A source reading `collection`, described as being at `display` (a URL without
    /// credentials).
    pub(crate) fn described(collection: Collection<Document>, display: String) -> Self {
        Self {
            collection,
            display,
        }
    }

    /// The collection read, for inspection.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }
}

#[async_trait]
impl RasaSource for MongoRasaSource {
    fn describe(&self) -> String {
        format!(
            "Rasa's MongoDB documents in {} at {}",
            self.collection.namespace(),
            self.display
        )
    }

    /// The sender ids of every document (integers as decimal text), sorted by bytes and each
    /// once. Reads only the `sender_id` field of each document, in one cursor; documents
    /// without a usable `sender_id` are skipped.
    async fn sender_ids(&self) -> Result<Vec<String>> {
        let context = "listing Rasa conversations";
        let mut cursor = self
            .collection
            .find(doc! {})
            .projection(doc! { "_id": 0, "sender_id": 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        let mut ids = BTreeSet::new();
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error(context, e))?
        {
            match sender_id_text(document.get("sender_id")) {
                Some(id) => {
                    ids.insert(id);
                }
                None => tracing::debug!(
                    sender_id = ?document.get("sender_id"),
                    "skipping a document without a usable sender_id"
                ),
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// The conversation as Rasa's `retrieve` finds it: `find_one({"sender_id": id})`, and for
    /// an all-digit id not found that way, the document whose `sender_id` is that integer
    /// (Rasa then rewrites it as a string; this writes nothing). Its events are parsed as by
    /// [`parse_rasa_document`].
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        read_conversation(&self.collection, sender_id).await
    }
}

/// The integer an all-digit sender id stands for in very old Rasa data, where Rasa's
/// `retrieve` looks it up when the text is not found (`int("012")` is 12).
pub(crate) fn integer_sender_id(sender_id: &str) -> Option<i64> {
    if sender_id.is_empty() || !sender_id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    sender_id.parse::<i64>().ok()
}

/// Finds a conversation's document in a collection of Rasa's format as Rasa's `retrieve`
/// does: by `sender_id` as text, else (for an all-digit id) as an integer; parses it with
/// [`parse_rasa_document`], naming the conversation `sender_id`.
pub(crate) async fn read_conversation(
    collection: &Collection<Document>,
    sender_id: &str,
) -> Result<Option<RasaConversation>> {
    let find = |filter: Document| async move {
        collection
            .find_one(filter)
            .await
            .map_err(|e| driver_error("reading a Rasa conversation", e))
    };
    let mut document = find(doc! { "sender_id": sender_id }).await?;
    if document.is_none()
        && let Some(number) = integer_sender_id(sender_id)
    {
        document = find(doc! { "sender_id": number }).await?;
    }
    let Some(document) = document else {
        return Ok(None);
    };
    let mut conversation = parse_rasa_document(&document)?;
    conversation.sender_id = sender_id.to_owned();
    Ok(Some(conversation))
}

/// A BSON value as the JSON value Rasa had before storing it: documents keep their key
/// order; doubles become JSON floats and integers JSON integers. Rasa never stores other BSON
/// types in events; if present, an ObjectId becomes its hex text, a date its epoch seconds,
/// a Decimal128 a number, `undefined` and non-finite doubles `null`, and anything else its
/// relaxed Extended JSON form.
pub fn bson_to_json(value: &Bson) -> Value {
    match value {
        Bson::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Bson::Int32(n) => Value::from(*n),
        Bson::Int64(n) => Value::from(*n),
        Bson::String(text) => Value::String(text.clone()),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Array(items) => Value::Array(items.iter().map(bson_to_json).collect()),
        Bson::Document(document) => Value::Object(document_to_json(document)),
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        Bson::DateTime(at) => Number::from_f64(at.timestamp_millis() as f64 / 1000.0)
            .map_or(Value::Null, Value::Number),
        Bson::Decimal128(decimal) => decimal
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(decimal.to_string()), Value::Number),
        other => other.clone().into_relaxed_extjson(),
    }
}

/// A BSON document as a JSON object, keys in order (see [`bson_to_json`]).
pub fn document_to_json(document: &Document) -> Map<String, Value> {
    document
        .iter()
        .map(|(key, value)| (key.clone(), bson_to_json(value)))
        .collect()
}

/// A `sender_id` as Rasa reads it: a string, or an integer (very old data) as its decimal
/// text. Whole-number doubles count as integers (a server may widen large integers).
pub(crate) fn sender_id_text(value: Option<&Bson>) -> Option<String> {
    match value? {
        Bson::String(text) => Some(text.clone()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.3e18 => {
            Some(format!("{}", *f as i64))
        }
        _ => None,
    }
}

/// Parses one document of Rasa's `MongoTrackerStore`: its `sender_id` (an integer one as its
/// decimal text, as Rasa migrates it) and its events, read as Rasa's `deserialise_events` does
/// (objects without `event` and legacy `topic` events are skipped).
///
/// # Errors
/// [`Error::Corrupt`] when `sender_id` is missing or neither text nor an integer, `events` is
/// not an array, or an event cannot be read (with its position in the array, from 1); the
/// message names the document's `_id`.
pub fn parse_rasa_document(document: &Document) -> Result<RasaConversation> {
    let id = document.get("_id").cloned().unwrap_or(Bson::Null);
    let Some(sender_id) = sender_id_text(document.get("sender_id")) else {
        return Err(Error::corrupt(
            format!("{id}"),
            None,
            format!(
                "Rasa document {id}: `sender_id` is {:?}, not text or an integer",
                document.get("sender_id")
            ),
        ));
    };
    let values: Vec<Value> = match document.get("events") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(events)) => events.iter().map(bson_to_json).collect(),
        Some(other) => {
            return Err(Error::corrupt(
                sender_id,
                None,
                format!("Rasa document {id}: `events` is {other:?}, not an array"),
            ));
        }
    };
    let events = deserialise_events(&values).map_err(|error| {
        let position = values
            .iter()
            .position(|value| deserialise_events(std::slice::from_ref(value)).is_err())
            .map(|index| index as u64 + 1);
        Error::corrupt_with(
            sender_id.clone(),
            position,
            format!("Rasa document {id}: {}", error.message()),
            error,
        )
    })?;
    Ok(RasaConversation { sender_id, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn bson_becomes_json_with_types_and_order() {
        let document = doc! {
            "event": "user", "timestamp": 1_700_000_000.0, "confidence": 1.0, "n": 3_i32,
            "big": 9_007_199_254_740_993_i64, "z": Bson::Null, "a": [1.5, "x", {"b": false}],
        };
        let json = Value::Object(document_to_json(&document));
        assert_eq!(
            serde_json::to_string(&json).expect("renders"),
            r#"{"event":"user","timestamp":1700000000.0,"confidence":1.0,"n":3,"big":9007199254740993,"z":null,"a":[1.5,"x",{"b":false}]}"#
        );
        assert_eq!(bson_to_json(&Bson::Double(f64::NAN)), Value::Null);
        let id = ObjectId::from_bytes([1; 12]);
        assert_eq!(
            bson_to_json(&Bson::ObjectId(id)),
            Value::String("010101010101010101010101".to_owned())
        );
    }

    #[test]
    fn sender_ids_as_rasa_reads_them() {
        assert_eq!(
            sender_id_text(Some(&Bson::String("a".into()))),
            Some("a".into())
        );
        assert_eq!(sender_id_text(Some(&Bson::Int32(42))), Some("42".into()));
        assert_eq!(
            sender_id_text(Some(&Bson::Int64(1 << 40))),
            Some("1099511627776".into())
        );
        assert_eq!(sender_id_text(Some(&Bson::Double(42.0))), Some("42".into()));
        assert_eq!(sender_id_text(Some(&Bson::Double(4.5))), None);
        assert_eq!(sender_id_text(Some(&Bson::Null)), None);
        assert_eq!(sender_id_text(None), None);
    }

    #[test]
    fn parses_documents() {
        let document = doc! {
            "_id": ObjectId::from_bytes([3; 12]),
            "sender_id": 7_i32,
            "slots": {},
            "events": [
                {"event": "action", "timestamp": 1.5, "name": "action_listen"},
                {"no": "event"},
            ],
        };
        let conversation = parse_rasa_document(&document).expect("valid");
        assert_eq!(conversation.sender_id, "7");
        assert_eq!(conversation.events.len(), 1);
        assert!(conversation.events[0].is_action("action_listen"));
        let no_events = parse_rasa_document(&doc! {"sender_id": "x"}).expect("no events");
        assert!(no_events.events.is_empty());
        for bad in [
            doc! {"events": []},
            doc! {"sender_id": "x", "events": 3},
            doc! {"sender_id": ["x"]},
        ] {
            let error = parse_rasa_document(&bad).expect_err("bad");
            assert_eq!(error.kind(), tracker_core::ErrorKind::Corrupt, "{bad}");
        }
        let error = parse_rasa_document(&doc! {
            "sender_id": "x",
            "events": [{"event": "bot", "timestamp": 1.0}, {"event": 7}],
        })
        .expect_err("bad event");
        match error {
            Error::Corrupt { position, .. } => assert_eq!(position, Some(2)),
            other => panic!("{other}"),
        }
    }
}
