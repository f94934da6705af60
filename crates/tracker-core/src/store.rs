//! The contract every backend implements.
//!
//! A [`Store`] keeps, per conversation, an append-only list of events numbered 1, 2, 3, ...
//! (their *sequence numbers*). A conversation's *version* is its number of events: 0 for a
//! conversation that does not exist. Everything Rasa-facing (saving only new events, reading
//! the latest session, rebuilding tracker state) is written once, in
//! [`TrackerStore`](crate::TrackerStore), on top of this narrow trait.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::outbox::Outbox;
pub use crate::sender_id::{MAX_SENDER_ID_BYTES, SenderId};

/// One event ready to be written: its sequence number, the columns Rasa's SQL store fills,
/// and its JSON in Rasa's exact text form.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Position in the conversation, from 1.
    pub seq: u64,
    /// The event's tag (Rasa's `type_name`).
    pub type_name: String,
    /// Epoch seconds; always finite.
    pub timestamp: f64,
    /// The intent of a user message.
    pub intent_name: Option<String>,
    /// The event's `name` (action, slot, loop, ...), as Rasa's `action_name` column.
    pub action_name: Option<String>,
    /// Python `json.dumps` text of the event, exactly as Rasa writes it.
    pub json: String,
}

impl EventRecord {
    /// Whether this event starts a session (`session_started`).
    pub fn is_session_started(&self) -> bool {
        self.type_name == "session_started"
    }
}

/// A validated append: the events to add to one conversation, if it is at the expected
/// version.
///
/// Built only through [`Append::new`], so a store can rely on it: the sender id is valid,
/// there is at least one event, every timestamp is finite, and the records are numbered
/// `expected_version + 1 ..= new_version`.
#[derive(Debug, Clone)]
pub struct Append {
    sender_id: SenderId,
    expected_version: u64,
    records: Vec<EventRecord>,
}

impl Append {
    /// Validates and renders an append.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty event list, a non-finite timestamp, or a sequence
    /// number past `u64::MAX`.
    pub fn new<'a>(
        sender_id: SenderId,
        expected_version: u64,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Self> {
        let mut records = Vec::new();
        for (offset, event) in events.into_iter().enumerate() {
            if !event.timestamp.is_finite() {
                return Err(Error::invalid_input(format!(
                    "event {} ({}) of the append has a non-finite timestamp",
                    offset + 1,
                    event.type_name()
                )));
            }
            let seq = u64::try_from(offset)
                .ok()
                .and_then(|offset| expected_version.checked_add(offset))
                .and_then(|seq| seq.checked_add(1))
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "event {} of an append at version {expected_version} would be numbered \
                         past the largest sequence number",
                        offset + 1
                    ))
                })?;
            records.push(EventRecord {
                seq,
                type_name: event.type_name().to_owned(),
                timestamp: event.timestamp,
                intent_name: event.intent_name().map(str::to_owned),
                action_name: event.name().map(str::to_owned),
                json: event.to_rasa_json(),
            });
        }
        if records.is_empty() {
            return Err(Error::invalid_input("an append needs at least one event"));
        }
        Ok(Self {
            sender_id,
            expected_version,
            records,
        })
    }

    /// The conversation.
    pub fn sender_id(&self) -> &SenderId {
        &self.sender_id
    }

    /// The version the conversation must be at for the append to succeed.
    pub fn expected_version(&self) -> u64 {
        self.expected_version
    }

    /// The version after the append.
    pub fn new_version(&self) -> u64 {
        self.expected_version + self.records.len() as u64
    }

    /// The events, numbered from `expected_version + 1`.
    pub fn records(&self) -> &[EventRecord] {
        &self.records
    }

    /// Sequence number of the last `session_started` event in this append, if any. Stores
    /// remember the latest one so that a latest-session read need not scan the conversation.
    pub fn last_session_started(&self) -> Option<u64> {
        self.records
            .iter()
            .rev()
            .find(|record| record.is_session_started())
            .map(|record| record.seq)
    }

    /// Total size of the events' JSON text, in bytes.
    pub fn json_bytes(&self) -> usize {
        self.records.iter().map(|record| record.json.len()).sum()
    }
}

/// Which events of a conversation to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadScope {
    /// Every event.
    All,
    /// The latest session. A store returns every event with a sequence number of at least
    /// `S - 1`, where `S` is the sequence number of the conversation's last
    /// `session_started` event (every event if there is none); the caller trims the one
    /// extra event unless it is the `action_session_start` that opened the session. A store
    /// that can find `S` without reading earlier events must do so.
    LatestSession,
}

/// A stored event as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the conversation, from 1.
    pub seq: u64,
    /// The event's JSON.
    pub data: EventData,
}

/// An event's JSON as a store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// JSON text.
    Text(String),
    /// A parsed JSON value (stores that keep documents).
    Json(Value),
}

/// Events read from a store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredConversation {
    /// The conversation's version: its total number of events.
    pub version: u64,
    /// The events read, in sequence order.
    pub events: Vec<StoredEvent>,
}

/// A request for one page of conversation ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// Where to continue: the `next_cursor` of the previous page, `None` for the first page.
    pub cursor: Option<String>,
    /// At most this many ids (1 or more).
    pub limit: usize,
}

/// One page of conversation ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The ids on this page. A listing returns every conversation that exists for its whole
    /// duration exactly once; the order is the store's.
    pub sender_ids: Vec<String>,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl ListPage {
    /// A page from the ids a store read in listing order after the cursor, asking for one
    /// more than `limit`: the extra id is not returned, it only tells that more follow (the
    /// next cursor is then the page's last id, for stores that page by id).
    pub fn from_lookahead(mut sender_ids: Vec<String>, limit: usize) -> Self {
        let next_cursor = if sender_ids.len() > limit {
            sender_ids.truncate(limit);
            sender_ids.last().cloned()
        } else {
            None
        };
        Self {
            sender_ids,
            next_cursor,
        }
    }
}

/// The version a delete requires the conversation to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Delete whatever the conversation holds (Rasa's `delete`).
    Any,
    /// Delete only if the conversation is at this version (0: it does not exist, and nothing
    /// is deleted); otherwise [`Error::Conflict`] with the current version, and nothing is
    /// deleted.
    Exact(u64),
}

/// What a store can do and its limits. Callers are checked against the limits before the
/// store is called, so a too-large append is an [`Error::InvalidInput`], never a partial
/// write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Most events one append may carry.
    pub max_events_per_append: Option<usize>,
    /// Largest event, in bytes of its JSON text.
    pub max_event_bytes: Option<usize>,
    /// Largest append, in bytes of JSON text.
    pub max_append_bytes: Option<usize>,
    /// Whether a latest-session read fetches only that session (without reading earlier
    /// events).
    pub native_latest_session: bool,
    /// Whether conversations can expire on their own (e.g. Redis `record_exp`).
    pub expiry: bool,
}

impl Capabilities {
    /// No limits, nothing optional.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The contract every backend implements: a narrow, append-only event store with optimistic
/// concurrency. Only [`Store::append_batch`] has a default body (a loop over
/// [`Store::append`]); a store that cannot do something returns [`Error::Unsupported`].
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// A short name for logs and errors, such as `"memory"` or `"postgres"`.
    fn name(&self) -> &str;

    /// What the store can do and its limits.
    fn capabilities(&self) -> Capabilities;

    /// The store's outbox, when it keeps one (its `outbox` setting): what a
    /// [`Relay`](crate::relay::Relay) publishes gap-free to an event broker. See
    /// [`crate::outbox`].
    fn outbox(&self) -> Option<&dyn Outbox>;

    /// The conversation's version: its number of events, 0 if it does not exist.
    async fn version(&self, sender_id: &SenderId) -> Result<u64>;

    /// Appends `append.records()` if the conversation is at `append.expected_version()`, all
    /// or nothing, and returns the new version.
    ///
    /// # Errors
    /// [`Error::Conflict`] with the current version when the conversation is at another
    /// version; nothing is written then.
    async fn append(&self, append: &Append) -> Result<u64>;

    /// Appends to several conversations at once. Each append is checked against its own
    /// expected version and written all or nothing, independently of the others; its result
    /// (the new version, or the error of that append alone, such as [`Error::Conflict`]) is
    /// returned at its position. The appends name distinct conversations (the caller checks
    /// this).
    ///
    /// The default appends one after another. Stores that can write many conversations in
    /// one round trip or one commit override it; the conformance suite checks both.
    ///
    /// # Errors
    /// An error for the whole batch when the store cannot tell each append's outcome (the
    /// connection was lost mid-batch, say): each append is then either wholly written or not
    /// at all, as after a failed [`Store::append`], and reading the versions tells which.
    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        let mut results = Vec::with_capacity(appends.len());
        for append in appends {
            results.push(self.append(append).await);
        }
        Ok(results)
    }

    /// Reads a conversation; `None` if it does not exist.
    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>>;

    /// One page of conversation ids.
    async fn list(&self, request: &ListRequest) -> Result<ListPage>;

    /// Deletes a conversation if it is at `expected` (atomically: an append that lands first
    /// makes the delete a conflict, never a partial delete); returns whether it existed. Its
    /// version is 0 afterwards.
    ///
    /// # Errors
    /// [`Error::Conflict`] with the current version when `expected` is
    /// [`ExpectedVersion::Exact`] and the conversation is at another version; nothing is
    /// deleted then.
    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool>;
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        (**self).outbox()
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        (**self).version(sender_id).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        (**self).append(append).await
    }

    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        (**self).append_batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        (**self).read(sender_id, scope).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        (**self).list(request).await
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        (**self).delete(sender_id, expected).await
    }
}
