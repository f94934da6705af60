//! The Rasa-facing API, written once for every store.

use std::sync::Arc;

use futures::{Stream, TryStreamExt};

use crate::broker::{BrokerMessage, EventBroker, PublishStats, Publisher};
use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::observe::{Operation, Outcome, observe};
use crate::store::{
    Append, Capabilities, EventData, ExpectedVersion, ListPage, ListRequest, ReadScope, SenderId,
    Store, StoredConversation,
};
use crate::tracker::{Tracker, latest_session_start};

/// Largest page [`TrackerStore::list`] accepts.
pub const MAX_PAGE_SIZE: usize = 10_000;
const KEYS_PAGE_SIZE: usize = 1_000;

/// Events of a conversation read from a store, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The conversation.
    pub sender_id: SenderId,
    /// Its version: its total number of events.
    pub version: u64,
    /// Sequence number of the first event in `events` (1 for a full read).
    pub first_seq: u64,
    /// The events read.
    pub events: Vec<Event>,
}

/// Events of a conversation read from a store as Rasa's JSON text, checked as
/// [`TrackerStore::read`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationJson {
    /// The conversation.
    pub sender_id: SenderId,
    /// Its version: its total number of events.
    pub version: u64,
    /// Sequence number of the first event in `events` (1 for a full read).
    pub first_seq: u64,
    /// Each event's JSON object, as the store holds it when it holds text (Rasa's
    /// `json.dumps(event.as_dict())`, or what Rasa itself wrote), otherwise as
    /// [`Event::to_rasa_json`] writes it.
    pub events: Vec<String>,
}

/// Rasa's tracker store API (`save`, `retrieve`, `retrieve_full_tracker`, `keys`, `exists`,
/// `delete`) on top of any [`Store`], with the domain whose slots trackers start with.
///
/// Cloning is cheap and shares the store.
///
/// ```
/// # use tracker_core::{Domain, Event, Store, TrackerStore, Tracker};
/// # async fn demo(backend: impl Store + 'static) -> tracker_core::Result<()> {
/// let store = TrackerStore::new(backend).with_domain(Domain::empty());
/// let mut tracker = store.get_or_create_tracker("alice").await?;
/// tracker.update(Event::user("hi", "greet", 0.98));
/// store.save(&mut tracker).await?;
/// let again = store.retrieve("alice").await?.expect("saved");
/// assert_eq!(again.events().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TrackerStore {
    store: Arc<dyn Store>,
    domain: Arc<Domain>,
    publisher: Option<Publisher>,
}

impl TrackerStore {
    /// Wraps a store; trackers start with [`Domain::empty`]'s slots.
    pub fn new(store: impl Store + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            domain: Arc::new(Domain::empty()),
            publisher: None,
        }
    }

    /// Sets the domain whose slots new and read trackers start with.
    #[must_use]
    pub fn with_domain(mut self, domain: Domain) -> Self {
        self.domain = Arc::new(domain);
        self
    }

    /// Publishes the events every save appends to `broker`, after the append succeeded (see
    /// [`crate::broker`] for the delivery guarantee).
    #[must_use]
    pub fn with_event_broker(mut self, broker: Arc<dyn EventBroker>) -> Self {
        self.publisher = Some(Publisher {
            broker,
            stats: Arc::new(PublishStats::default()),
        });
        self
    }

    /// Publish counts of the event broker, if one is set.
    pub fn publish_stats(&self) -> Option<&PublishStats> {
        self.publisher.as_ref().map(|p| p.stats.as_ref())
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store's capabilities and limits.
    pub fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    /// A new, empty tracker for `sender_id` with the domain's slots (not stored until saved).
    pub fn create_tracker(&self, sender_id: impl Into<String>) -> Tracker {
        Tracker::new(sender_id, &self.domain)
    }

    /// Writes the events added to `tracker` since it was read or last saved, and marks them
    /// saved. Saving again without new events writes nothing, so events are never duplicated.
    /// Returns the conversation's version.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another writer appended since the tracker was read: nothing is
    /// written and the tracker is unchanged; re-read and re-apply. [`Error::InvalidInput`]
    /// for an invalid sender id, a non-finite timestamp, or events over the store's limits.
    pub async fn save(&self, tracker: &mut Tracker) -> Result<u64> {
        let sender_id = SenderId::new(tracker.sender_id())?;
        if tracker.unsaved_events().is_empty() {
            return Ok(tracker.version());
        }
        let version = self
            .append_to(sender_id, tracker.version(), tracker.unsaved_events())
            .await?;
        self.publish(tracker.sender_id(), version, tracker.unsaved_events())
            .await;
        tracker.mark_saved(version);
        Ok(version)
    }

    /// Appends `events` to a conversation at `expected_version` (0 creates it), all or
    /// nothing, publishes them to the event broker if one is set, and returns the new version.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the conversation is at another version.
    pub async fn append(
        &self,
        sender_id: &str,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64> {
        let id = SenderId::new(sender_id)?;
        let version = self.append_to(id, expected_version, events).await?;
        self.publish(sender_id, version, events).await;
        Ok(version)
    }

    /// Publishes `events`, which brought the conversation to `version`, if a broker is set.
    pub(crate) async fn publish(&self, sender_id: &str, version: u64, events: &[Event]) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let first = version + 1 - events.len() as u64;
        let messages: Vec<BrokerMessage> = events
            .iter()
            .zip(first..)
            .map(|(event, seq)| BrokerMessage::new(sender_id, seq, event))
            .collect();
        match publisher.broker.publish(&messages).await {
            Ok(()) => publisher.stats.record(messages.len(), true),
            Err(error) => {
                publisher.stats.record(messages.len(), false);
                tracing::error!(
                    sender_id,
                    events = messages.len(),
                    first_seq = first,
                    error = %error,
                    "the events are stored but the event broker missed them"
                );
            }
        }
    }

    async fn append_to(
        &self,
        sender_id: SenderId,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64> {
        let operation = Operation {
            store: self.store.name(),
            name: "append",
            sender_id: Some(sender_id.as_str()),
            events: events.len(),
        };
        observe(operation, async {
            let append = Append::new(sender_id.clone(), expected_version, events)?;
            check_limits(&self.store.capabilities(), &append)?;
            self.store.append(&append).await
        })
        .await
    }

    /// Reads and parses a conversation's events: all of them, or only the latest session.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the conversation and event when stored data cannot be read.
    pub async fn read(&self, sender_id: &str, scope: ReadScope) -> Result<Option<Conversation>> {
        let names = ["read", "read_latest_session"];
        self.read_checked(sender_id, scope, names, false, |sender_id, checked| {
            Conversation {
                sender_id,
                version: checked.version,
                first_seq: checked.first_seq,
                events: checked.events,
            }
        })
        .await
    }

    /// Reads a conversation's events as JSON text, or `None` if it does not exist: what a
    /// reader that passes the events on (to Python, over HTTP) needs. Every event is parsed
    /// and checked as [`read`](Self::read) does, so corrupt data is the same
    /// [`Error::Corrupt`], but the text is the stored one, not written again.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn read_json(
        &self,
        sender_id: &str,
        scope: ReadScope,
    ) -> Result<Option<ConversationJson>> {
        let names = ["read_json", "read_json_latest_session"];
        self.read_checked(sender_id, scope, names, true, |sender_id, checked| {
            ConversationJson {
                sender_id,
                version: checked.version,
                first_seq: checked.first_seq,
                events: checked.texts,
            }
        })
        .await
    }

    /// Reads and checks a conversation (see [`check_conversation`]) as the operation named
    /// `names[0]` for a full read and `names[1]` for the latest session.
    async fn read_checked<T: Outcome>(
        &self,
        sender_id: &str,
        scope: ReadScope,
        names: [&'static str; 2],
        keep_texts: bool,
        finish: impl FnOnce(SenderId, Checked) -> T,
    ) -> Result<Option<T>> {
        let operation = Operation {
            store: self.store.name(),
            name: match scope {
                ReadScope::All => names[0],
                ReadScope::LatestSession => names[1],
            },
            sender_id: Some(sender_id),
            events: 0,
        };
        observe(operation, async {
            let sender_id = SenderId::new(sender_id)?;
            let Some(stored) = self.store.read(&sender_id, scope).await? else {
                return Ok(None);
            };
            let checked = check_conversation(&sender_id, stored, scope, keep_texts)?;
            Ok(Some(finish(sender_id, checked)))
        })
        .await
    }

    /// The tracker of the conversation's latest session, or `None` if it does not exist
    /// (Rasa's `retrieve`). Saving it appends after the stored events; earlier sessions stay.
    pub async fn retrieve(&self, sender_id: &str) -> Result<Option<Tracker>> {
        self.retrieve_scope(sender_id, ReadScope::LatestSession)
            .await
    }

    /// The tracker with every session, or `None` if the conversation does not exist (Rasa's
    /// `retrieve_full_tracker`).
    pub async fn retrieve_full_tracker(&self, sender_id: &str) -> Result<Option<Tracker>> {
        self.retrieve_scope(sender_id, ReadScope::All).await
    }

    async fn retrieve_scope(&self, sender_id: &str, scope: ReadScope) -> Result<Option<Tracker>> {
        let Some(conversation) = self.read(sender_id, scope).await? else {
            return Ok(None);
        };
        let mut tracker = Tracker::from_events(
            conversation.sender_id.as_str(),
            conversation.events,
            &self.domain,
        );
        tracker.mark_loaded(conversation.version, conversation.first_seq);
        Ok(Some(tracker))
    }

    /// The latest session's tracker, or a new empty one (Rasa's `get_or_create_tracker`; the
    /// new tracker is stored by its first save).
    pub async fn get_or_create_tracker(&self, sender_id: &str) -> Result<Tracker> {
        self.get_or_create(sender_id, ReadScope::LatestSession)
            .await
    }

    /// The full tracker, or a new empty one (Rasa's `get_or_create_full_tracker`).
    pub async fn get_or_create_full_tracker(&self, sender_id: &str) -> Result<Tracker> {
        self.get_or_create(sender_id, ReadScope::All).await
    }

    async fn get_or_create(&self, sender_id: &str, scope: ReadScope) -> Result<Tracker> {
        Ok(match self.retrieve_scope(sender_id, scope).await? {
            Some(tracker) => tracker,
            None => self.create_tracker(sender_id),
        })
    }

    /// Whether the conversation has any event.
    pub async fn exists(&self, sender_id: &str) -> Result<bool> {
        Ok(self.version(sender_id).await? > 0)
    }

    /// The conversation's version: its number of events, 0 if it does not exist.
    pub async fn version(&self, sender_id: &str) -> Result<u64> {
        let operation = Operation {
            store: self.store.name(),
            name: "version",
            sender_id: Some(sender_id),
            events: 0,
        };
        observe(operation, async {
            self.store.version(&SenderId::new(sender_id)?).await
        })
        .await
    }

    /// Deletes a conversation whatever it holds (Rasa's `delete`); returns whether it
    /// existed. A caller that read the conversation first should use
    /// [`TrackerStore::delete_at`], which cannot delete events it has not seen.
    pub async fn delete(&self, sender_id: &str) -> Result<bool> {
        self.delete_expecting(sender_id, ExpectedVersion::Any).await
    }

    /// Deletes a conversation if it is still at `version`, the version the caller read;
    /// returns whether it existed. `version` 0 deletes nothing and succeeds if the
    /// conversation does not exist.
    ///
    /// # Errors
    /// [`Error::Conflict`] with the current version when another writer appended since (or
    /// the conversation is gone); nothing is deleted then.
    pub async fn delete_at(&self, sender_id: &str, version: u64) -> Result<bool> {
        self.delete_expecting(sender_id, ExpectedVersion::Exact(version))
            .await
    }

    async fn delete_expecting(&self, sender_id: &str, expected: ExpectedVersion) -> Result<bool> {
        let operation = Operation {
            store: self.store.name(),
            name: "delete",
            sender_id: Some(sender_id),
            events: 0,
        };
        observe(operation, async {
            self.store
                .delete(&SenderId::new(sender_id)?, expected)
                .await
        })
        .await
    }

    /// One page of conversation ids; pass the previous page's `next_cursor` to continue.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `limit` is 0 or over [`MAX_PAGE_SIZE`].
    pub async fn list(&self, cursor: Option<String>, limit: usize) -> Result<ListPage> {
        let operation = Operation {
            store: self.store.name(),
            name: "list",
            sender_id: None,
            events: 0,
        };
        observe(operation, async {
            if limit == 0 || limit > MAX_PAGE_SIZE {
                return Err(Error::invalid_input(format!(
                    "page size {limit} is outside 1..={MAX_PAGE_SIZE}"
                )));
            }
            self.store.list(&ListRequest { cursor, limit }).await
        })
        .await
    }

    /// Every conversation id, as a stream read page by page.
    pub fn keys_stream(&self) -> impl Stream<Item = Result<String>> + Send + 'static {
        let this = self.clone();
        futures::stream::try_unfold(Some(None), move |cursor: Option<Option<String>>| {
            let this = this.clone();
            async move {
                let Some(cursor) = cursor else {
                    return Ok(None);
                };
                let page = this.list(cursor, KEYS_PAGE_SIZE).await?;
                let next = page.next_cursor.map(Some);
                let ids = futures::stream::iter(page.sender_ids.into_iter().map(Ok));
                Ok::<_, Error>(Some((ids, next)))
            }
        })
        .try_flatten()
    }

    /// Every conversation id (Rasa's `keys()`), read page by page.
    pub async fn keys(&self) -> Result<Vec<String>> {
        self.keys_stream().try_collect().await
    }
}

impl Outcome for Conversation {
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
    fn events(&self) -> usize {
        self.events.len()
    }
}

impl Outcome for ConversationJson {
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
    fn events(&self) -> usize {
        self.events.len()
    }
}

pub(crate) fn check_limits(capabilities: &Capabilities, append: &Append) -> Result<()> {
    if let Some(max) = capabilities.max_events_per_append
        && append.records().len() > max
    {
        return Err(Error::invalid_input(format!(
            "an append of {} events exceeds the store's limit of {max} events per append",
            append.records().len()
        )));
    }
    if let Some(max) = capabilities.max_event_bytes
        && let Some(record) = append.records().iter().find(|r| r.json.len() > max)
    {
        return Err(Error::invalid_input(format!(
            "event {} ({}) is {} bytes; the store's limit is {max} bytes per event",
            record.seq,
            record.type_name,
            record.json.len()
        )));
    }
    if let Some(max) = capabilities.max_append_bytes {
        let total = append.json_bytes();
        if total > max {
            return Err(Error::invalid_input(format!(
                "an append of {total} bytes exceeds the store's limit of {max} bytes per append"
            )));
        }
    }
    Ok(())
}

/// A stored conversation, parsed and checked.
struct Checked {
    version: u64,
    first_seq: u64,
    events: Vec<Event>,
    /// Each event's JSON text, when asked for: the stored text, or the event written again
    /// when the store keeps documents.
    texts: Vec<String>,
}

/// Parses every event of `stored` (corrupt data is [`Error::Corrupt`] naming the event),
/// checks that sequence numbers are contiguous and end at the version, and trims a
/// latest-session read to the session boundary; with `keep_texts`, also the events' text.
fn check_conversation(
    sender_id: &SenderId,
    stored: StoredConversation,
    scope: ReadScope,
    keep_texts: bool,
) -> Result<Checked> {
    let StoredConversation { version, events } = stored;
    let first_seq = events.first().map_or(version + 1, |event| event.seq);
    if scope == ReadScope::All && !events.is_empty() && first_seq != 1 {
        return Err(Error::corrupt(
            sender_id.as_str(),
            Some(first_seq),
            "a full read does not start at the first event",
        ));
    }
    let mut parsed = Vec::with_capacity(events.len());
    let mut texts = Vec::with_capacity(if keep_texts { events.len() } else { 0 });
    for (offset, stored_event) in events.into_iter().enumerate() {
        let expected_seq = first_seq + offset as u64;
        if stored_event.seq != expected_seq {
            return Err(Error::corrupt(
                sender_id.as_str(),
                Some(stored_event.seq),
                format!("expected event {expected_seq}; events are missing or out of order"),
            ));
        }
        let (result, text) = match stored_event.data {
            EventData::Text(text) => (Event::from_json(&text), Some(text)),
            EventData::Json(value) => (Event::from_value(value), None),
        };
        let event = result.map_err(|e| {
            Error::corrupt_with(
                sender_id.as_str(),
                Some(stored_event.seq),
                e.message().to_owned(),
                e,
            )
        })?;
        if keep_texts {
            texts.push(text.unwrap_or_else(|| event.to_rasa_json()));
        }
        parsed.push(event);
    }
    let last_seq = first_seq + parsed.len() as u64 - 1;
    if !parsed.is_empty() && last_seq != version {
        return Err(Error::corrupt(
            sender_id.as_str(),
            Some(last_seq),
            format!(
                "the last event read is {last_seq} but the conversation's version is {version}"
            ),
        ));
    }
    let start = match scope {
        ReadScope::LatestSession => latest_session_start(&parsed),
        ReadScope::All => 0,
    };
    if start > 0 {
        parsed.drain(..start);
        if keep_texts {
            texts.drain(..start);
        }
    }
    Ok(Checked {
        version,
        first_seq: first_seq + start as u64,
        events: parsed,
        texts,
    })
}
