//! The table layout: key and attribute names, DynamoDB's limits and the store's limits
//! derived from them, and how items are built.
//!
//! One table, hash key [`HASH_KEY`] (`sender_id`, string) and range key [`RANGE_KEY`]
//! (`seq`, number). Each conversation is one item collection:
//!
//! | item | `seq` | other attributes |
//! |---|---|---|
//! | head | [`HEAD_SEQ`] (0) | [`VERSION`] (number of events), [`SESSION_START`] (seq of the last `session_started`, absent when there is none); with the outbox on, [`OUTBOX_SHARD`], [`OUTBOX_PENDING`], [`OUTBOX_PUBLISHED`], [`OUTBOX_LEASE`], [`OUTBOX_LEASE_UNTIL`] |
//! | event | 1, 2, 3, ... | [`DATA`] (Rasa's JSON text), [`TYPE_NAME`], [`TIMESTAMP`], [`INTENT_NAME`], [`ACTION_NAME`] |
//!
//! With the outbox on, the table also has the global secondary index [`OUTBOX_INDEX`]: hash
//! key [`OUTBOX_SHARD`], range key [`OUTBOX_PENDING`] (both numbers), keys only. It is
//! sparse: only heads marked pending are in it.
//!
//! When the configured `table_name` is Rasa's table, this table is
//! [`derived_table_name`]`(table_name)` beside it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tracker_core::{Append, Error, EventRecord, Result};

use crate::config::RASA_HASH_KEY;

/// What is appended to Rasa's `table_name` to name this store's table beside it.
pub const DERIVED_TABLE_SUFFIX: &str = "_events";

/// This store's table beside Rasa's table `rasa_table`: `states_events` for `states`.
///
/// ```
/// assert_eq!(tracker_dynamo::schema::derived_table_name("states"), "states_events");
/// ```
pub fn derived_table_name(rasa_table: &str) -> String {
    format!("{rasa_table}{DERIVED_TABLE_SUFFIX}")
}

/// The hash key: the conversation's sender id (string).
pub const HASH_KEY: &str = "sender_id";
/// The range key: 0 for the head item, the event's sequence number (1, 2, ...) otherwise.
pub const RANGE_KEY: &str = "seq";
/// The range key of a conversation's head item.
pub const HEAD_SEQ: u64 = 0;
/// Head attribute: the conversation's version (number of events).
pub const VERSION: &str = "version";
/// Head attribute: sequence number of the last `session_started` event; absent when the
/// conversation has none.
pub const SESSION_START: &str = "session_start";
/// Event attribute: the event's JSON, exactly as Rasa writes it (Python `json.dumps` text).
pub const DATA: &str = "data";
/// Event attribute: the event's tag (Rasa's `type_name`); omitted above
/// [`MAX_NAME_BYTES`].
pub const TYPE_NAME: &str = "type_name";
/// Event attribute: the event's timestamp in epoch seconds (number); omitted for values
/// DynamoDB numbers cannot hold exactly enough (outside `1e-9..1e15`, zero excepted).
pub const TIMESTAMP: &str = "timestamp";
/// Event attribute: a user message's intent; omitted when absent or above
/// [`MAX_NAME_BYTES`].
pub const INTENT_NAME: &str = "intent_name";
/// Event attribute: the event's `name` (action, slot, loop, ...); omitted when absent or
/// above [`MAX_NAME_BYTES`].
pub const ACTION_NAME: &str = "action_name";

/// Head attribute, with the outbox on: when the oldest append not yet published was made
/// (epoch milliseconds, the appending client's clock; only an order). Present while the
/// conversation may have events to publish: the range key of [`OUTBOX_INDEX`].
pub const OUTBOX_PENDING: &str = "outbox_pending";
/// Head attribute, with the outbox on: the conversation's shard of [`OUTBOX_INDEX`], from
/// 0 to [`OUTBOX_SHARDS`]` - 1` ([`outbox_shard`]); the hash key of the index.
pub const OUTBOX_SHARD: &str = "outbox_shard";
/// Head attribute, with the outbox on: the checkpoint, the sequence number up to which every
/// event has been published (absent: 0).
pub const OUTBOX_PUBLISHED: &str = "outbox_published";
/// Head attribute, with the outbox on: the name of the relay holding the lease, while one
/// does.
pub const OUTBOX_LEASE: &str = "outbox_lease";
/// Head attribute, with the outbox on: when the lease ends (epoch milliseconds, the clock of
/// the relay that took it).
pub const OUTBOX_LEASE_UNTIL: &str = "outbox_lease_until";
/// The global secondary index of pending heads, with the outbox on: hash key
/// [`OUTBOX_SHARD`], range key [`OUTBOX_PENDING`], keys only.
pub const OUTBOX_INDEX: &str = "outbox_pending";
/// How many shards [`OUTBOX_INDEX`] spreads pending heads over, so that no single index
/// partition takes every write (DynamoDB writes at most 1,000 units per second to one
/// partition). Part of the stored layout: changing it strands marks in other shards.
pub const OUTBOX_SHARDS: u64 = 8;

/// The shard of [`OUTBOX_INDEX`] a conversation's head is in: the 64-bit FNV-1a hash of its
/// sender id's UTF-8 bytes, modulo [`OUTBOX_SHARDS`] (stable across processes and versions).
///
/// ```
/// use tracker_dynamo::schema::{OUTBOX_SHARDS, outbox_shard};
/// assert_eq!(outbox_shard("alice"), outbox_shard("alice"));
/// assert!(outbox_shard("bob") < OUTBOX_SHARDS);
/// ```
pub fn outbox_shard(sender_id: &str) -> u64 {
    let hash = sender_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    hash % OUTBOX_SHARDS
}

/// DynamoDB's largest item: 400 KB, attribute names included.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's most actions in one `TransactWriteItems`.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// DynamoDB's largest `TransactWriteItems`: 4 MB of items (counted here as 4,000,000 bytes
/// to stay clear of the limit whichever megabyte is meant).
pub const MAX_TRANSACTION_BYTES: usize = 4_000_000;
/// Bytes counted per item of a transaction for its key and attributes other than [`DATA`]
/// (at most 1.3 KB are used: a 255-byte sender id and names of at most [`MAX_NAME_BYTES`]).
pub const ITEM_OVERHEAD_BYTES: usize = 4 * 1024;
/// Names (`type_name`, `intent_name`, `action_name`) longer than this are not stored as
/// attributes (they stay in the event's JSON).
pub const MAX_NAME_BYTES: usize = 255;

/// Most events per append: one transaction, whose first action is the head.
pub const MAX_EVENTS_PER_APPEND: usize = MAX_TRANSACTION_ACTIONS - 1;
/// Largest event's JSON: 400,000 bytes, which leaves 9,600 bytes of DynamoDB's 400 KB item
/// for the key and the other attributes (and fits the 405,000 bytes moto allows).
pub const MAX_EVENT_BYTES: usize = 400_000;
/// Largest append's JSON: a transaction less the overhead of 100 items (3,590,400 bytes).
pub const MAX_APPEND_BYTES: usize =
    MAX_TRANSACTION_BYTES - MAX_TRANSACTION_ACTIONS * ITEM_OVERHEAD_BYTES;
/// Most events of an adoption: Rasa's events and the appended ones together, in the one
/// transaction that also holds the head and the check that Rasa's item is unchanged.
pub const MAX_ADOPTION_EVENTS: usize = MAX_TRANSACTION_ACTIONS - 2;

/// An item's attributes.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// A DynamoDB number.
pub(crate) fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The primary key of item `seq` of a conversation.
pub(crate) fn key(sender_id: &str, seq: u64) -> Item {
    HashMap::from([
        (HASH_KEY.to_owned(), AttributeValue::S(sender_id.to_owned())),
        (RANGE_KEY.to_owned(), number(seq)),
    ])
}

/// A timestamp as a DynamoDB number, when it is in the range stored (see [`TIMESTAMP`]).
pub(crate) fn timestamp_number(timestamp: f64) -> Option<String> {
    if timestamp == 0.0 {
        return Some("0".to_owned());
    }
    let magnitude = timestamp.abs();
    // Rust prints finite floats without an exponent: in this range that is at most 17
    // significant digits and 25 characters, well inside DynamoDB's 38 digits.
    ((1e-9..1e15).contains(&magnitude)).then(|| format!("{timestamp}"))
}

/// The item of one event.
pub(crate) fn event_item(sender_id: &str, record: &EventRecord) -> Item {
    let mut item = key(sender_id, record.seq);
    item.insert(DATA.to_owned(), AttributeValue::S(record.json.clone()));
    let names = [
        (TYPE_NAME, Some(record.type_name.as_str())),
        (INTENT_NAME, record.intent_name.as_deref()),
        (ACTION_NAME, record.action_name.as_deref()),
    ];
    for (attribute, value) in names {
        if let Some(value) = value
            && value.len() <= MAX_NAME_BYTES
        {
            item.insert(attribute.to_owned(), AttributeValue::S(value.to_owned()));
        }
    }
    if let Some(timestamp) = timestamp_number(record.timestamp) {
        item.insert(TIMESTAMP.to_owned(), AttributeValue::N(timestamp));
    }
    item
}

/// Reads a number attribute as `u64` (`None` when the item has no such attribute).
pub(crate) fn read_number(
    sender_id: &str,
    item: &Item,
    name: &str,
    seq: Option<u64>,
) -> Result<Option<u64>> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|_| {
            Error::corrupt(
                sender_id,
                seq,
                format!("attribute `{name}` is {text:?}, not a sequence number"),
            )
        }),
        Some(other) => Err(Error::corrupt(
            sender_id,
            seq,
            format!("attribute `{name}` is not a number: {other:?}"),
        )),
    }
}

/// Reads a primary key (`sender_id`, `seq`).
pub(crate) fn read_key(item: &Item) -> Result<(String, u64)> {
    let sender_id = match item.get(HASH_KEY) {
        Some(AttributeValue::S(id)) => id.clone(),
        other => {
            return Err(Error::backend(format!(
                "an item key without a string `{HASH_KEY}`: {other:?}"
            )));
        }
    };
    let seq = read_number(&sender_id, item, RANGE_KEY, None)?.ok_or_else(|| {
        Error::corrupt(&sender_id, None, format!("an item without `{RANGE_KEY}`"))
    })?;
    Ok((sender_id, seq))
}

/// `Some(key)` unless DynamoDB said the listing is complete (`LastEvaluatedKey` absent or
/// empty).
pub(crate) fn continuation(key: Option<Item>) -> Option<Item> {
    key.filter(|key| !key.is_empty())
}

/// The key of a conversation's item in Rasa's table.
pub(crate) fn rasa_key(sender_id: &str) -> Item {
    HashMap::from([(
        RASA_HASH_KEY.to_owned(),
        AttributeValue::S(sender_id.to_owned()),
    )])
}

/// An item's size by DynamoDB's rules (attribute names plus values; a number counts at most
/// 21 bytes), for strings, numbers and the types this store writes.
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(_) => 21,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(values) => values.iter().map(String::len).sum(),
        AttributeValue::Ns(values) => values.len() * 21,
        AttributeValue::Bs(values) => values.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// The event items of an append, checked against DynamoDB's limits before anything is sent
/// (see [`check_append`]).
pub(crate) fn append_items(append: &Append) -> Result<Vec<Item>> {
    let sender_id = append.sender_id().as_str();
    let items: Vec<Item> = append
        .records()
        .iter()
        .map(|record| event_item(sender_id, record))
        .collect();
    check_append(append, &items)?;
    Ok(items)
}

/// Checks an append against DynamoDB's limits before anything is sent (core checks the
/// declared capabilities already; this also guards direct [`tracker_core::Store`] callers and
/// the attributes besides the JSON).
fn check_append(append: &Append, items: &[Item]) -> Result<()> {
    if items.len() > MAX_EVENTS_PER_APPEND {
        return Err(Error::invalid_input(format!(
            "an append of {} events exceeds DynamoDB's transaction limit of {MAX_EVENTS_PER_APPEND} events (plus the head)",
            items.len()
        )));
    }
    let mut total = 0;
    for (record, item) in append.records().iter().zip(items) {
        let size = item_size(item);
        if size > MAX_ITEM_BYTES {
            return Err(Error::invalid_input(format!(
                "event {} ({}) makes an item of {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}",
                record.seq, record.type_name
            )));
        }
        total += size;
    }
    // The head item is well under 1 KB.
    if total + 1024 > MAX_TRANSACTION_BYTES {
        return Err(Error::invalid_input(format!(
            "an append of {total} bytes of items exceeds DynamoDB's transaction limit of {MAX_TRANSACTION_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::{Event, SenderId};

    #[test]
    fn declared_limits() {
        assert_eq!(MAX_EVENTS_PER_APPEND, 99);
        assert_eq!(MAX_EVENT_BYTES, 400_000);
        assert_eq!(MAX_APPEND_BYTES, 3_590_400);
        const {
            assert!(MAX_EVENT_BYTES + 1_300 <= 405_000 && 405_000 < MAX_ITEM_BYTES);
            assert!(MAX_APPEND_BYTES + MAX_TRANSACTION_ACTIONS * ITEM_OVERHEAD_BYTES <= 4_000_000);
        }
    }

    #[test]
    fn worst_case_overhead_fits_the_budget() {
        let sender_id = "é".repeat(127) + "x";
        assert_eq!(sender_id.len(), 255);
        let name = "n".repeat(MAX_NAME_BYTES);
        let record = EventRecord {
            seq: u64::MAX,
            type_name: name.clone(),
            timestamp: 1_700_000_000.123_456_7,
            intent_name: Some(name.clone()),
            action_name: Some(name),
            json: String::new(),
        };
        let item = event_item(&sender_id, &record);
        assert_eq!(item.len(), 7);
        assert!(item_size(&item) < 1_300, "{}", item_size(&item));
        assert!(item_size(&item) < ITEM_OVERHEAD_BYTES);
        // Longer names are left out; the JSON keeps them.
        let long = EventRecord {
            type_name: "t".repeat(MAX_NAME_BYTES + 1),
            intent_name: None,
            action_name: Some("a".repeat(1_000)),
            ..record
        };
        let item = event_item(&sender_id, &long);
        assert!(!item.contains_key(TYPE_NAME) && !item.contains_key(ACTION_NAME));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_number(0.0).as_deref(), Some("0"));
        assert_eq!(timestamp_number(-0.0).as_deref(), Some("0"));
        assert_eq!(
            timestamp_number(1_700_000_000.5).as_deref(),
            Some("1700000000.5")
        );
        assert_eq!(timestamp_number(-12.25).as_deref(), Some("-12.25"));
        assert_eq!(timestamp_number(1e300), None);
        assert_eq!(timestamp_number(5e-324), None);
        assert_eq!(timestamp_number(1e15), None);
    }

    #[test]
    fn oversized_appends_are_rejected() {
        let id = SenderId::new("a").expect("id");
        let big = Event::bot("x".repeat(MAX_ITEM_BYTES)).at(1.0);
        let append = Append::new(id.clone(), 0, [&big]).expect("append");
        let items: Vec<Item> = append
            .records()
            .iter()
            .map(|r| event_item("a", r))
            .collect();
        assert!(check_append(&append, &items).is_err());
        let small = Event::bot("hi").at(1.0);
        let many = vec![small; 100];
        let append = Append::new(id, 0, &many).expect("append");
        let items: Vec<Item> = append
            .records()
            .iter()
            .map(|r| event_item("a", r))
            .collect();
        let error = check_append(&append, &items).expect_err("100 events");
        assert_eq!(error.kind(), tracker_core::ErrorKind::InvalidInput);
        check_append(&append, &items[..99]).expect("99 events fit");
    }

    #[test]
    fn outbox_shards_are_stable() {
        // FNV-1a 64 of the UTF-8 bytes: fixed values, so every process and version agrees.
        assert_eq!(outbox_shard(""), 0xcbf2_9ce4_8422_2325 % OUTBOX_SHARDS);
        assert_eq!(outbox_shard("a"), 0xaf63_dc4c_8601_ec8c % OUTBOX_SHARDS);
        assert_eq!(
            outbox_shard("foobar"),
            0x8594_4171_f739_67e8 % OUTBOX_SHARDS
        );
        let mut seen = [0_usize; OUTBOX_SHARDS as usize];
        for n in 0..800 {
            seen[outbox_shard(&format!("user-{n}")) as usize] += 1;
        }
        assert!(seen.iter().all(|count| *count > 50), "{seen:?}");
    }

    #[test]
    fn derived_tables() {
        assert_eq!(derived_table_name("states"), "states_events");
        assert_eq!(MAX_ADOPTION_EVENTS, 98);
    }
}
