//! Reading conversations that Rasa's own `DynamoTrackerStore` wrote, for migration:
//! [`DynamoRasaSource`], a [`RasaSource`] for
//! [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
//!
//! Rasa keeps a conversation as one item of its table (default
//! [`RASA_DEFAULT_TABLE_NAME`], `states`; hash key `sender_id`):
//! `{"events": [...], "name": <sender id>, "sender_id": <sender id>}`, the events being maps
//! whose numbers are DynamoDB numbers (Python `Decimal`s, floats rounded to 9 decimals). Rasa
//! 1.x/2.x tables also have a range key `session_date`, and Rasa reads the newest item of a
//! conversation; so does this reader. It never writes, creates or changes a table.
//!
//! Numbers are read as Rasa reads them (`replace_decimals_with_floats`): every number becomes
//! a float, so an integer slot value `3` that Rasa stored comes back as `3.0`, exactly as Rasa
//! itself would load it. DynamoDB maps keep no key order; keys are read in sorted order, which
//! only shows in the text of events of unknown types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use serde_json::{Map, Number, Value};
use tracker_core::event::deserialise_events;
use tracker_core::{Error, Event, RasaConversation, RasaSource, Result, async_trait};

use crate::config::{DynamoConfig, redact_url, validate_table_name};
pub use crate::config::{
    RASA_DEFAULT_TABLE_NAME, RASA_EVENTS, RASA_HASH_KEY, RASA_LEGACY_RANGE_KEY,
};
use crate::error::driver_error;
use crate::migrate::{describe, describe_keys, key_schema};
use crate::schema::{Item, continuation};

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
        let message = format!("Rasa item: {}", error.message());
        Error::corrupt_with(sender_id, position, message, error)
    })
}

/// Rasa's DynamoDB table, read as Rasa's `DynamoTrackerStore` reads it: a
/// [`RasaSource`] for [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
///
/// It only reads (`DescribeTable` when connecting, `Query` and `Scan`, all consistent): no
/// table is created, changed or written. Cloning is cheap and shares the client.
///
/// ```no_run
/// use tracker_dynamo::{DynamoConfig, DynamoRasaSource, DynamoStore, RASA_DEFAULT_TABLE_NAME};
/// use tracker_dynamo::tracker_core::{RasaSource, TrackerStore};
///
/// # async fn demo() -> tracker_dynamo::tracker_core::Result<()> {
/// let rasa = DynamoRasaSource::connect(&DynamoConfig::with_table(RASA_DEFAULT_TABLE_NAME)).await?;
/// let store = TrackerStore::new(DynamoStore::connect(&DynamoConfig::with_table("conversations")).await?);
/// for id in rasa.sender_ids().await? {
///     store.import_from(&rasa, &id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DynamoRasaSource {
    client: Client,
    table: Arc<str>,
    page_size: Option<i32>,
}

impl fmt::Debug for DynamoRasaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoRasaSource")
            .field("table", &self.table)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl DynamoRasaSource {
    /// Opens Rasa's table `config.table_name` (Rasa's default: `states`) in `config.region`
    /// (at `config.endpoint_url`, if set), with credentials from the standard AWS chain, and
    /// checks that it has Rasa's key schema. `config.migrate` plays no part: nothing is
    /// created.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, a missing table or a table of another
    /// layout (this store's own, say); [`Error::Unavailable`] when DynamoDB cannot be
    /// reached.
    pub async fn connect(config: &DynamoConfig) -> Result<Self> {
        Self::connect_with(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// [`DynamoRasaSource::connect`] with AWS settings of your own; the configuration's
    /// region and endpoint are applied on top of `loader`.
    ///
    /// # Errors
    /// As [`DynamoRasaSource::connect`].
    pub async fn connect_with(config: &DynamoConfig, loader: ConfigLoader) -> Result<Self> {
        config.validate()?;
        let source = Self::from_client(config.client(loader).await, config)?;
        source.check_schema().await?;
        tracing::debug!(
            table = %source.table,
            region = %config.region,
            endpoint = ?config.endpoint_url.as_deref().map(redact_url),
            "opened Rasa's DynamoDB table"
        );
        Ok(source)
    }

    /// Rasa's table `config.table_name` through a client you built (such as
    /// [`DynamoStore::client`](crate::DynamoStore::client)); the other keys are ignored.
    /// Nothing is sent.
    ///
    /// # Errors
    /// [`Error::Config`] for a table name DynamoDB does not accept.
    pub fn from_client(client: Client, config: &DynamoConfig) -> Result<Self> {
        validate_table_name(&config.table_name)?;
        Ok(Self {
            client,
            table: Arc::from(config.table_name.as_str()),
            page_size: None,
        })
    }

    /// Sets the `Limit` of every `Scan` of [`RasaSource::sender_ids`] (at least 1; default:
    /// none, i.e. DynamoDB's 1 MB pages). The listing is complete either way.
    #[must_use]
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(i32::try_from(items.max(1)).unwrap_or(i32::MAX));
        self
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The name of Rasa's table.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Checks that Rasa's table exists with the key schema of Rasa 3 (`sender_id` only) or
    /// of Rasa 1.x/2.x (`sender_id`, `session_date`). Changes nothing.
    ///
    /// # Errors
    /// [`Error::Config`] when it does not exist or has another key schema.
    pub async fn check_schema(&self) -> Result<()> {
        let Some(description) = describe(&self.client, &self.table).await? else {
            return Err(Error::config(format!(
                "Rasa's DynamoDB table {:?} does not exist (`table_name` names Rasa's table, \
                 default `{RASA_DEFAULT_TABLE_NAME}`)",
                self.table
            )));
        };
        let keys = key_schema(&description);
        match keys.as_slice() {
            [(RASA_HASH_KEY, KeyType::Hash)]
            | [
                (RASA_HASH_KEY, KeyType::Hash),
                (RASA_LEGACY_RANGE_KEY, KeyType::Range),
            ] => Ok(()),
            _ => Err(Error::config(format!(
                "DynamoDB table {:?} has the key [{}], not that of Rasa's DynamoTrackerStore \
                 (`{RASA_HASH_KEY}` HASH, and `{RASA_LEGACY_RANGE_KEY}` RANGE before Rasa 3)",
                self.table,
                describe_keys(&keys)
            ))),
        }
    }
}

#[async_trait]
impl RasaSource for DynamoRasaSource {
    fn describe(&self) -> String {
        format!("Rasa's DynamoDB table {:?}", self.table)
    }

    /// The sender ids of every conversation in Rasa's table: a consistent `Scan` of the hash
    /// key, following `LastEvaluatedKey` to the end; sorted, without duplicates.
    /// Conversations written or deleted during the scan may or may not be included.
    async fn sender_ids(&self) -> Result<Vec<String>> {
        let mut ids = BTreeSet::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&*self.table)
                .consistent_read(true)
                .projection_expression("#k")
                .expression_attribute_names("#k", RASA_HASH_KEY)
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| driver_error(format!("listing Rasa's table {:?}", self.table), e))?;
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
            start = continuation(output.last_evaluated_key);
            if start.is_none() {
                return Ok(ids.into_iter().collect());
            }
        }
    }

    /// The conversation Rasa stored for `sender_id` (a consistent read), or `None` if there
    /// is none. Of several items (Rasa 1.x/2.x tables with a `session_date` range key) the
    /// newest is read, as Rasa does.
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        // Limit 1, newest first: the one item of a Rasa 3 table, or the latest of a legacy one.
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .consistent_read(true)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", RASA_HASH_KEY)
            .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                driver_error(
                    format!(
                        "reading Rasa's conversation {sender_id:?} in table {:?}",
                        self.table
                    ),
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
}
