//! Reading conversations that Rasa's own `DynamoTrackerStore` wrote, for migration.
//!
//! Rasa keeps a conversation as one item of its table (default `states`, hash key
//! `sender_id`): `{"events": [...], "name": <sender id>, "sender_id": <sender id>}`, the events
//! being maps whose numbers are DynamoDB numbers (Python `Decimal`s, floats rounded to 9
//! decimals). Rasa 1.x/2.x tables also have a range key `session_date`, and Rasa reads the
//! newest item of a conversation; so do these functions. They never write Rasa's table.
//!
//! Numbers are read as Rasa reads them (`replace_decimals_with_floats`): every number becomes
//! a float, so an integer slot value `3` that Rasa stored comes back as `3.0`, exactly as Rasa
//! itself would load it. DynamoDB maps keep no key order; keys are read in sorted order, which
//! only shows in the text of events of unknown types.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};
use tracker_core::event::deserialise_events;
use tracker_core::{Append, Error, Event, ReadScope, Result, SenderId, Store};

use crate::DynamoStore;
use crate::error::sdk_error;
use crate::schema::{Item, MAX_APPEND_BYTES, MAX_EVENT_BYTES, MAX_EVENTS_PER_APPEND};

/// Rasa's hash key.
pub const RASA_HASH_KEY: &str = "sender_id";
/// The attribute holding Rasa's event list.
pub const RASA_EVENTS: &str = "events";

/// A conversation read from Rasa's table.
#[derive(Debug, Clone, PartialEq)]
pub struct RasaConversation {
    /// The sender id.
    pub sender_id: String,
    /// Its events, parsed as Rasa's `deserialise_events` does (maps without `event` and
    /// legacy `topic` events are skipped).
    pub events: Vec<Event>,
}

/// Converts a DynamoDB value to JSON as Rasa reads it: numbers become floats, `NULL` is
/// `null`, lists and maps are converted recursively (map keys sorted).
///
/// # Errors
/// A description of the value when it has no JSON form: binary values and sets (boto3 turns
/// them into `bytes` and `set`, which Rasa's `json.dumps` rejects), or a number out of the
/// float range.
pub fn attribute_to_json(value: &AttributeValue) -> std::result::Result<Value, String> {
    Ok(match value {
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(text) => {
            let float: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("the number {text:?} cannot be read"))?;
            Value::Number(
                Number::from_f64(float)
                    .ok_or_else(|| format!("the number {text:?} is out of the float range"))?,
            )
        }
        AttributeValue::Bool(flag) => Value::Bool(*flag),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => Value::Array(
            values
                .iter()
                .map(attribute_to_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        AttributeValue::M(map) => {
            let sorted: BTreeMap<&String, &AttributeValue> = map.iter().collect();
            let mut object = Map::with_capacity(sorted.len());
            for (key, value) in sorted {
                object.insert(key.clone(), attribute_to_json(value)?);
            }
            Value::Object(object)
        }
        AttributeValue::B(_) | AttributeValue::Bs(_) => {
            return Err("binary values have no JSON form".to_owned());
        }
        AttributeValue::Ss(_) | AttributeValue::Ns(_) => {
            return Err("sets have no JSON form".to_owned());
        }
        other => return Err(format!("unsupported DynamoDB value {other:?}")),
    })
}

/// Parses one item of Rasa's table (a missing `events` is an empty list, as in Rasa).
///
/// # Errors
/// [`Error::Corrupt`] naming `sender_id` when `events` is not a list or an event cannot be
/// read (with its position in the list, from 1).
pub fn parse_rasa_item(sender_id: &str, item: &Item) -> Result<Vec<Event>> {
    let corrupt = |position: Option<u64>, message: String| {
        Error::corrupt(sender_id, position, format!("Rasa item: {message}"))
    };
    let values = match item.get(RASA_EVENTS) {
        None | Some(AttributeValue::Null(_)) => return Ok(Vec::new()),
        Some(AttributeValue::L(values)) => values,
        Some(_) => return Err(corrupt(None, "`events` is not a list".to_owned())),
    };
    let mut json = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        json.push(attribute_to_json(value).map_err(|e| corrupt(Some(index as u64 + 1), e))?);
    }
    deserialise_events(&json).map_err(|error| {
        let position = json
            .iter()
            .position(|value| deserialise_events(std::slice::from_ref(value)).is_err())
            .map(|index| index as u64 + 1);
        Error::Corrupt {
            sender_id: sender_id.to_owned(),
            position,
            message: format!("Rasa item: {}", error.message()),
            source: Some(Box::new(error)),
        }
    })
}

/// Splits events into appends that fit the store's limits (count and bytes).
fn chunks(sender_id: &str, events: &[Event]) -> Result<Vec<std::ops::Range<usize>>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, event) in events.iter().enumerate() {
        let size = event.to_rasa_json().len();
        if size > MAX_EVENT_BYTES {
            return Err(Error::invalid_input(format!(
                "event {} of Rasa's conversation {sender_id:?} is {size} bytes; this store's limit is {MAX_EVENT_BYTES}",
                index + 1
            )));
        }
        if index - start == MAX_EVENTS_PER_APPEND || bytes + size > MAX_APPEND_BYTES {
            ranges.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        ranges.push(start..events.len());
    }
    Ok(ranges)
}

impl DynamoStore {
    /// Reads the conversation Rasa's `DynamoTrackerStore` stored for `sender_id` in the table
    /// `rasa_table` (a consistent read), or `None` if there is none. Of several items (Rasa
    /// 1.x/2.x tables with a `session_date` range key) the newest is read, as Rasa does.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the conversation when the item is not Rasa's;
    /// [`Error::Config`] when the table does not exist; [`Error::Unavailable`] /
    /// [`Error::Backend`] for DynamoDB failures.
    pub async fn read_rasa(
        &self,
        rasa_table: &str,
        sender_id: &str,
    ) -> Result<Option<RasaConversation>> {
        // Limit 1, newest first: the one item of a Rasa 3 table, or the latest of a legacy one.
        let output = self
            .client()
            .query()
            .table_name(rasa_table)
            .consistent_read(true)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", RASA_HASH_KEY)
            .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    format!("reading Rasa's conversation {sender_id:?} in table {rasa_table:?}"),
                    e,
                )
            })?;
        let Some(item) = output.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let events = parse_rasa_item(sender_id, &item)?;
        Ok(Some(RasaConversation {
            sender_id: sender_id.to_owned(),
            events,
        }))
    }

    /// The sender ids of every conversation in Rasa's table `rasa_table`: a consistent `Scan`
    /// of the hash key, following `LastEvaluatedKey` to the end; sorted, without duplicates.
    /// Conversations written or deleted during the scan may or may not be included.
    ///
    /// # Errors
    /// [`Error::Config`] when the table does not exist; [`Error::Unavailable`] /
    /// [`Error::Backend`] for DynamoDB failures.
    pub async fn rasa_sender_ids(&self, rasa_table: &str) -> Result<Vec<String>> {
        let mut ids = BTreeSet::new();
        let mut start = None;
        loop {
            let output = self
                .client()
                .scan()
                .table_name(rasa_table)
                .consistent_read(true)
                .projection_expression("#k")
                .expression_attribute_names("#k", RASA_HASH_KEY)
                .set_limit(self.page_size())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(format!("listing Rasa's table {rasa_table:?}"), e))?;
            for item in output.items.unwrap_or_default() {
                match item.get(RASA_HASH_KEY) {
                    Some(AttributeValue::S(id)) => {
                        ids.insert(id.clone());
                    }
                    other => tracing::debug!(
                        value = ?other,
                        "skipping an item of Rasa's table without a string sender_id"
                    ),
                }
            }
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if start.is_none() {
                return Ok(ids.into_iter().collect());
            }
        }
    }

    /// Copies the conversation Rasa stored for `sender_id` in `rasa_table` into this store.
    /// Rasa's item is left as it is.
    ///
    /// Conversations of more than 99 events (or 3.5 MB) take several appends, each atomic but
    /// not together; an import that stopped half-way is resumed by importing again: when this
    /// store already holds a prefix of Rasa's events, only the rest is appended. Importing a
    /// conversation already copied completely writes nothing.
    ///
    /// Returns `None` when Rasa has no item for it, else the conversation's version here (0
    /// for a Rasa item without events, which writes nothing).
    ///
    /// # Errors
    /// [`Error::Conflict`] when this store holds other events for that sender id (nothing is
    /// written); [`Error::InvalidInput`] for a sender id this store cannot hold (over 255 bytes
    /// or with NUL), a non-finite timestamp or an event over 400,000 bytes;
    /// [`Error::Corrupt`] for an unreadable Rasa item.
    pub async fn import_rasa(&self, rasa_table: &str, sender_id: &str) -> Result<Option<u64>> {
        let Some(conversation) = self.read_rasa(rasa_table, sender_id).await? else {
            return Ok(None);
        };
        let id = SenderId::new(sender_id)?;
        let events = conversation.events;
        let mut version = self.version(&id).await?;
        if version > 0 {
            let stored = self
                .read(&id, ReadScope::All)
                .await?
                .map(|conversation| conversation.events)
                .unwrap_or_default();
            let is_prefix = stored.len() as u64 == version
                && stored.len() <= events.len()
                && stored
                    .iter()
                    .zip(&events)
                    .all(|(stored, event)| match &stored.data {
                        tracker_core::EventData::Text(text) => *text == event.to_rasa_json(),
                        tracker_core::EventData::Json(value) => *value == event.to_value(),
                    });
            if !is_prefix {
                return Err(Error::conflict(sender_id, 0, version));
            }
            if stored.len() < events.len() {
                tracing::info!(
                    sender_id,
                    imported = version,
                    total = events.len(),
                    "resuming an interrupted import of Rasa's conversation"
                );
            }
        }
        let start = usize::try_from(version)
            .unwrap_or(usize::MAX)
            .min(events.len());
        let rest = &events[start..];
        for range in chunks(sender_id, rest)? {
            let append = Append::new(id.clone(), version, &rest[range])?;
            version = self.append(&append).await?;
        }
        Ok(Some(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn n(text: &str) -> AttributeValue {
        AttributeValue::N(text.to_owned())
    }

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    fn m(pairs: &[(&str, AttributeValue)]) -> AttributeValue {
        AttributeValue::M(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn numbers_become_floats_as_in_rasa() {
        assert_eq!(attribute_to_json(&n("1")), Ok(serde_json::json!(1.0)));
        assert_eq!(
            attribute_to_json(&n("1700000000.123456789")),
            Ok(serde_json::json!(1_700_000_000.123_456_8))
        );
        assert_eq!(attribute_to_json(&n("-0.5")), Ok(serde_json::json!(-0.5)));
        assert!(attribute_to_json(&n("1E+400")).is_err());
        assert!(attribute_to_json(&n("x")).is_err());
        let nested = m(&[
            (
                "b",
                AttributeValue::L(vec![n("2"), AttributeValue::Null(true)]),
            ),
            ("a", AttributeValue::Bool(true)),
            ("c", s("text")),
        ]);
        let json = attribute_to_json(&nested).expect("converts");
        assert_eq!(
            serde_json::to_string(&json).expect("renders"),
            r#"{"a":true,"b":[2.0,null],"c":"text"}"#
        );
        assert!(attribute_to_json(&AttributeValue::Ss(vec!["x".to_owned()])).is_err());
    }

    #[test]
    fn parses_items() {
        let item: Item = HashMap::from([
            ("sender_id".to_owned(), s("x")),
            ("name".to_owned(), s("x")),
            (
                "events".to_owned(),
                AttributeValue::L(vec![
                    m(&[
                        ("event", s("action")),
                        ("timestamp", n("1.5")),
                        ("name", s("action_listen")),
                    ]),
                    m(&[("no", s("event"))]),
                ]),
            ),
        ]);
        let events = parse_rasa_item("x", &item).expect("valid");
        assert_eq!(events.len(), 1);
        assert!(events[0].is_action("action_listen"));
        let empty: Item = HashMap::from([("sender_id".to_owned(), s("x"))]);
        assert!(parse_rasa_item("x", &empty).expect("no events").is_empty());
        let bad: Item = HashMap::from([("events".to_owned(), s("nope"))]);
        assert_eq!(
            parse_rasa_item("x", &bad).expect_err("not a list").kind(),
            tracker_core::ErrorKind::Corrupt
        );
        let bad_event: Item = HashMap::from([(
            "events".to_owned(),
            AttributeValue::L(vec![
                m(&[("event", s("bot")), ("timestamp", n("1"))]),
                m(&[("event", n("7"))]),
            ]),
        )]);
        match parse_rasa_item("x", &bad_event).expect_err("bad event") {
            Error::Corrupt { position, .. } => assert_eq!(position, Some(2)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn chunks_respect_the_limits() {
        let small: Vec<Event> = (0..250)
            .map(|i| Event::bot(format!("{i}")).at(1.0))
            .collect();
        let ranges = chunks("x", &small).expect("chunks");
        assert_eq!(ranges, vec![0..99, 99..198, 198..250]);
        let big: Vec<Event> = (0..20)
            .map(|_| Event::bot("x".repeat(390_000)).at(1.0))
            .collect();
        let ranges = chunks("x", &big).expect("chunks");
        assert_eq!(ranges.len(), 3);
        for range in &ranges {
            let bytes: usize = big[range.clone()]
                .iter()
                .map(|e| e.to_rasa_json().len())
                .sum();
            assert!(bytes <= MAX_APPEND_BYTES);
        }
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 20);
        let huge = [Event::bot("x".repeat(MAX_EVENT_BYTES)).at(1.0)];
        assert!(chunks("x", &huge).is_err());
        assert!(chunks("x", &[]).expect("empty").is_empty());
    }
}
