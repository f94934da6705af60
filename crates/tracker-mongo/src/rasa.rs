//! Reading conversations that Rasa's own `MongoTrackerStore` wrote, for migration.
//!
//! Rasa keeps one document per conversation in its collection (`conversations` by default):
//! an automatic `_id`, `sender_id` (a string; an integer in very old data), the tracker's state
//! fields (`slots`, `latest_message`, `latest_event_time`, `followup_action`, `paused`,
//! `latest_input_channel`, `active_loop`, `latest_action`, `latest_action_name`) and
//! `events`, an array of event objects stored as BSON documents. These functions read such
//! documents — from any collection, or from the store's own `<collection>` with the
//! [`MongoStore`] methods — and never write them; [`MongoStore::import_rasa`] copies one
//! conversation into the store.
//!
//! The events are BSON, so their JSON is rebuilt ([`bson_to_json`]): key order is kept, and
//! numbers keep their type — a BSON double is a JSON float (`1.0` stays `1.0`), an integer an
//! integer. A server that changes number types on the way (the CongoDB stand-in turns
//! whole-number doubles into integers) changes the events' text accordingly.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Map, Number, Value};
use tracker_core::event::deserialise_events;
use tracker_core::{Append, Error, Event, Result, SenderId, Store};

use crate::MongoStore;
use crate::error::from_driver;
use crate::schema::{MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND};

/// A conversation read from Rasa's format.
#[derive(Debug, Clone, PartialEq)]
pub struct RasaConversation {
    /// The sender id (an integer one as its decimal text, as Rasa migrates it).
    pub sender_id: String,
    /// The document's `_id`.
    pub id: Bson,
    /// Its events, parsed as Rasa's `deserialise_events` does (objects without `event` and
    /// legacy `topic` events are skipped).
    pub events: Vec<Event>,
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
fn sender_id_text(value: Option<&Bson>) -> Option<String> {
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

/// Parses one document of Rasa's `MongoTrackerStore`.
///
/// # Errors
/// [`Error::Corrupt`] when `sender_id` is missing or neither text nor an integer, `events` is
/// not an array, or an event cannot be read (with its position in the array, from 1).
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
    let corrupt =
        |position: Option<u64>, message: String, source: Option<tracker_core::BoxError>| {
            Error::Corrupt {
                sender_id: sender_id.clone(),
                position,
                message: format!("Rasa document {id}: {message}"),
                source,
            }
        };
    let values: Vec<Value> = match document.get("events") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(events)) => events.iter().map(bson_to_json).collect(),
        Some(other) => {
            return Err(corrupt(
                None,
                format!("`events` is {other:?}, not an array"),
                None,
            ));
        }
    };
    let events = deserialise_events(&values).map_err(|error| {
        let position = values
            .iter()
            .position(|value| deserialise_events(std::slice::from_ref(value)).is_err())
            .map(|index| index as u64 + 1);
        corrupt(position, error.message().to_owned(), Some(Box::new(error)))
    })?;
    Ok(RasaConversation {
        sender_id,
        id,
        events,
    })
}

/// Reads the conversation of `sender_id` from a collection Rasa's `MongoTrackerStore` wrote,
/// as Rasa's `retrieve` finds it: `find_one({"sender_id": id})`, and for an all-digit id not
/// found that way, the document whose `sender_id` is that integer (Rasa then rewrites it as a
/// string; this function writes nothing). `None` if there is no document.
///
/// # Errors
/// [`Error::Corrupt`] for a document that is not Rasa's format; [`Error::Unavailable`] /
/// [`Error::Backend`] for server failures.
pub async fn read(
    collection: &Collection<Document>,
    sender_id: &str,
) -> Result<Option<RasaConversation>> {
    let find = |filter: Document| async move {
        collection
            .find_one(filter)
            .await
            .map_err(|e| from_driver("reading a Rasa conversation", e))
    };
    let mut document = find(doc! { "sender_id": sender_id }).await?;
    if document.is_none()
        && !sender_id.is_empty()
        && sender_id.bytes().all(|b| b.is_ascii_digit())
        && let Ok(number) = sender_id.parse::<i64>()
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

/// The sender ids of every conversation in a collection Rasa's `MongoTrackerStore` wrote
/// (integers as decimal text), sorted by bytes and each once. Reads only the `sender_id`
/// field of each document, in one cursor; documents without a usable `sender_id` are skipped.
///
/// # Errors
/// [`Error::Unavailable`] / [`Error::Backend`] for server failures.
pub async fn sender_ids(collection: &Collection<Document>) -> Result<Vec<String>> {
    let mut cursor = collection
        .find(doc! {})
        .projection(doc! { "_id": 0, "sender_id": 1 })
        .await
        .map_err(|e| from_driver("listing Rasa conversations", e))?;
    let mut ids = BTreeSet::new();
    while let Some(document) = cursor
        .try_next()
        .await
        .map_err(|e| from_driver("listing Rasa conversations", e))?
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

/// Splits events into appends that fit the store's limits.
fn chunks(events: &[Event]) -> Result<Vec<&[Event]>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, event) in events.iter().enumerate() {
        let size = event.to_rasa_json().len() + event.type_name().len();
        if size > MAX_APPEND_BYTES {
            return Err(Error::invalid_input(format!(
                "event {} ({}) is {size} bytes; the store's limit is {MAX_APPEND_BYTES} bytes",
                index + 1,
                event.type_name()
            )));
        }
        if index > start
            && (bytes + size > MAX_APPEND_BYTES || index - start >= MAX_EVENTS_PER_APPEND)
        {
            chunks.push(&events[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    Ok(chunks)
}

impl MongoStore {
    /// The collection Rasa's `MongoTrackerStore` uses with the same configuration:
    /// `<collection>` itself, beside this store's `<collection>.heads` and
    /// `<collection>.events`.
    pub fn rasa_collection(&self) -> Collection<Document> {
        self.database().collection(self.collection_name())
    }

    /// Reads the conversation Rasa stored for `sender_id` in [`rasa_collection`]
    /// (see [`read`]).
    ///
    /// [`rasa_collection`]: Self::rasa_collection
    ///
    /// # Errors
    /// As [`read`].
    pub async fn read_rasa(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        read(&self.rasa_collection(), sender_id).await
    }

    /// The sender ids of the conversations Rasa stored in [`rasa_collection`]
    /// (see [`sender_ids`]).
    ///
    /// [`rasa_collection`]: Self::rasa_collection
    ///
    /// # Errors
    /// As [`sender_ids`].
    pub async fn rasa_sender_ids(&self) -> Result<Vec<String>> {
        sender_ids(&self.rasa_collection()).await
    }

    /// Copies the conversation Rasa stored for `sender_id` in [`rasa_collection`] into this
    /// store as a new conversation; Rasa's document is left as it is.
    ///
    /// Returns `None` when Rasa has no document for it, else the new version (0 for a document
    /// without events, which writes nothing). A conversation is written in one append when it
    /// fits the store's per-append limits (nearly always: Rasa's whole conversation fits in
    /// one 16 MiB document), else in several, in order; if such an import is interrupted,
    /// [`delete`](Store::delete) the conversation and import it again.
    ///
    /// [`rasa_collection`]: Self::rasa_collection
    ///
    /// # Errors
    /// [`Error::Conflict`] when this store already has the conversation (nothing is
    /// written); [`Error::InvalidInput`] for a sender id this store cannot hold (over 255
    /// bytes or with NUL) or an event over the store's limits; [`Error::Corrupt`] for an
    /// unreadable Rasa document.
    pub async fn import_rasa(&self, sender_id: &str) -> Result<Option<u64>> {
        let Some(conversation) = self.read_rasa(sender_id).await? else {
            return Ok(None);
        };
        let sender = SenderId::new(sender_id)?;
        let mut version = 0;
        for chunk in chunks(&conversation.events)? {
            let append = Append::new(sender.clone(), version, chunk)?;
            version = self.append(&append).await?;
        }
        Ok(Some(version))
    }
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

    #[test]
    fn chunks_fit_the_limits() {
        let events: Vec<Event> = (0..25_000).map(|n| Event::bot(format!("m{n}"))).collect();
        let parts = chunks(&events).expect("chunks");
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|part| part.len() <= MAX_EVENTS_PER_APPEND));
        assert_eq!(parts.iter().map(|part| part.len()).sum::<usize>(), 25_000);
        assert!(chunks(&[]).expect("empty").is_empty());
    }
}
