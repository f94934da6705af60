//! The `events` table: Rasa's seven columns plus the per-conversation sequence number, and
//! the rows the store writes into it.
//!
//! The DDL for each dialect is in `migrations/<dialect>/`; see the crate README for the
//! exact schema.

use tracker_core::{Append, Error, Result, SenderId};

diesel::table! {
    /// One row per event, as Rasa's `SQLTrackerStore` writes it, plus `seq`.
    events (id) {
        /// Insertion order (Rasa orders by it).
        id -> BigInt,
        /// The conversation.
        sender_id -> Text,
        /// The event's tag.
        type_name -> Text,
        /// Epoch seconds.
        timestamp -> Nullable<Double>,
        /// Intent of a user message.
        intent_name -> Nullable<Text>,
        /// The event's `name` (action, slot, loop, ...).
        action_name -> Nullable<Text>,
        /// The event's JSON in Rasa's text form.
        data -> Nullable<Text>,
        /// Position in the conversation, from 1; unique per conversation. NOT NULL on
        /// PostgreSQL and MySQL; on SQLite a row inserted without it gets it from the trigger
        /// right after, so a NULL is corrupt data.
        seq -> Nullable<BigInt>,
    }
}

/// The unique constraint that makes appends safe: two writers can't store the same `seq`.
pub const SEQ_CONSTRAINT: &str = "ux_events_sender_seq";

/// The trigger that numbers rows inserted without `seq` (Rasa's inserts name only its own
/// columns): the conversation's next position.
pub const SEQ_TRIGGER: &str = "tracker_events_seq";

/// The outbox's table (with `outbox: true`): one row per conversation with its version, the
/// checkpoint up to which a relay has published it, and the relay's lease.
pub const OUTBOX_TABLE: &str = "tracker_outbox";

/// The trigger that records every insert into `events` in the outbox, in the same statement.
pub const OUTBOX_TRIGGER: &str = "tracker_events_outbox";

/// The trigger that removes a conversation's outbox row when its events are deleted, in the
/// same statement.
pub const OUTBOX_DELETE_TRIGGER: &str = "tracker_events_outbox_delete";

/// SQLite only: the trigger that records in the outbox a row Rasa inserted, once
/// `tracker_events_seq` has numbered it (SQLite numbers such rows after the insert).
pub const OUTBOX_NUMBERED_TRIGGER: &str = "tracker_events_outbox_numbered";

/// The outbox's triggers on `events` in `dialect`.
pub(crate) fn outbox_triggers(dialect: crate::config::Dialect) -> &'static [&'static str] {
    match dialect {
        crate::config::Dialect::Sqlite => &[
            OUTBOX_TRIGGER,
            OUTBOX_NUMBERED_TRIGGER,
            OUTBOX_DELETE_TRIGGER,
        ],
        _ => &[OUTBOX_TRIGGER, OUTBOX_DELETE_TRIGGER],
    }
}

/// What the database holds, as far as this store is concerned; found without changing
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Not looked at yet.
    Unknown,
    /// No `events` table.
    Absent,
    /// Rasa's table as Rasa created it: no `seq` column. Read in Rasa's order (by `id`).
    Rasa,
    /// Migrated: `seq` numbers every conversation's events.
    Sequenced,
}

impl Layout {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Absent => 1,
            Self::Rasa => 2,
            Self::Sequenced => 3,
        }
    }

    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Absent,
            2 => Self::Rasa,
            3 => Self::Sequenced,
            _ => Self::Unknown,
        }
    }
}

/// A new row of the `events` table.
pub(crate) struct NewEvent {
    pub(crate) sender_id: String,
    pub(crate) type_name: String,
    pub(crate) timestamp: Option<f64>,
    pub(crate) intent_name: Option<String>,
    pub(crate) action_name: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) seq: Option<i64>,
}

impl NewEvent {
    /// Bytes of text the row carries (its JSON and names), for sizing statements.
    pub(crate) fn text_bytes(&self) -> usize {
        self.sender_id.len()
            + self.type_name.len()
            + self.intent_name.as_ref().map_or(0, String::len)
            + self.action_name.as_ref().map_or(0, String::len)
            + self.data.as_ref().map_or(0, String::len)
    }
}

/// The rows of an append, as Rasa fills its columns.
pub(crate) fn new_rows(append: &Append) -> Result<Vec<NewEvent>> {
    append
        .records()
        .iter()
        .map(|record| {
            Ok(NewEvent {
                sender_id: append.sender_id().as_str().to_owned(),
                type_name: record.type_name.clone(),
                timestamp: Some(record.timestamp),
                intent_name: record.intent_name.clone(),
                action_name: record.action_name.clone(),
                data: Some(record.json.clone()),
                seq: Some(to_i64(record.seq)?),
            })
        })
        .collect()
}

/// Rasa's `VARCHAR(255)` columns hold 255 characters: reject longer names up front instead of
/// failing in the database.
pub(crate) fn check_column_widths(append: &Append) -> Result<()> {
    for record in append.records() {
        for (column, value) in [
            ("type_name", Some(record.type_name.as_str())),
            ("intent_name", record.intent_name.as_deref()),
            ("action_name", record.action_name.as_deref()),
        ] {
            if let Some(value) = value
                && value.chars().count() > 255
            {
                return Err(Error::invalid_input(format!(
                    "event {} has a {column} of {} characters; the SQL store's column holds 255",
                    record.seq,
                    value.chars().count()
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::invalid_input(format!("version {value} is beyond the SQL range")))
}

/// A stored `seq` as a position; a missing (`NULL`) or non-positive one is corrupt data.
pub(crate) fn to_u64(sender_id: &SenderId, value: Option<i64>) -> Result<u64> {
    match value {
        Some(value) if value >= 1 => Ok(value.unsigned_abs()),
        Some(value) => Err(Error::corrupt(
            sender_id.as_str(),
            None,
            format!("sequence number {value} (positions start at 1)"),
        )),
        None => Err(missing_seq(sender_id)),
    }
}

/// The error for a row without `seq`, naming the conversation.
pub(crate) fn missing_seq(sender_id: &SenderId) -> Error {
    Error::corrupt(
        sender_id.as_str(),
        None,
        format!(
            "a row has no sequence number (`seq` is NULL): it was inserted without the \
             `{SEQ_TRIGGER}` trigger, which `ensure_schema` (`tracker migrate-schema`) creates"
        ),
    )
}
