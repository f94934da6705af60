//! The store implementation.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tracker_core::{
    Append, Capabilities, Error, EventData, ExpectedVersion, ListPage, ListRequest, Outbox,
    OutboxEntry, ReadScope, Result, SenderId, Store, StoredConversation, StoredEvent, async_trait,
};

use crate::MemoryConfig;
use crate::outbox::OutboxState;

/// One conversation: its events' JSON text, in sequence order (event `seq` is at index
/// `seq - 1`), and the sequence number of its last `session_started` event.
#[derive(Debug, Default)]
struct Conversation {
    events: Vec<Arc<str>>,
    last_session_started: Option<u64>,
}

impl Conversation {
    fn version(&self) -> u64 {
        self.events.len() as u64
    }
}

/// A conversation store in process memory: the reference implementation of the
/// [`Store`] contract.
///
/// Cloning shares the conversations. Appends add to the conversation's list (no copy of the
/// history); reads copy out only the events asked for. All operations are safe to call from
/// many tasks at once.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    conversations: Arc<RwLock<BTreeMap<String, Conversation>>>,
    /// The outbox, when on; locked only while holding `conversations`' lock.
    outbox: Option<Arc<Mutex<OutboxState>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with its outbox on (see `tracker_core::outbox`).
    pub fn with_outbox() -> Self {
        Self {
            outbox: Some(Arc::default()),
            ..Self::default()
        }
    }

    /// An empty store from its configuration.
    pub fn from_config(config: &MemoryConfig) -> Self {
        if config.outbox {
            Self::with_outbox()
        } else {
            Self::new()
        }
    }

    fn outbox_state(&self) -> Option<std::sync::MutexGuard<'_, OutboxState>> {
        self.outbox
            .as_ref()
            .map(|outbox| outbox.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// An empty store from its configuration; `async` and fallible like every backend's
    /// `connect`, so code generic over backends builds this one the same way. It never fails.
    ///
    /// # Errors
    /// None.
    pub async fn connect(config: &MemoryConfig) -> tracker_core::Result<Self> {
        Ok(Self::from_config(config))
    }

    /// Number of conversations stored.
    pub fn len(&self) -> usize {
        self.conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no conversation is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.outbox.as_ref().map(|_| self as &dyn Outbox)
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.native_latest_session = true;
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        let conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(conversations
            .get(sender_id.as_str())
            .map_or(0, Conversation::version))
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        // Render outside the lock; the critical section only checks and pushes.
        let texts: Vec<Arc<str>> = append
            .records()
            .iter()
            .map(|record| Arc::from(record.json.as_str()))
            .collect();
        let mut conversations = self
            .conversations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let current = conversations
            .get(append.sender_id().as_str())
            .map_or(0, Conversation::version);
        if current != append.expected_version() {
            return Err(Error::conflict(
                append.sender_id().as_str(),
                append.expected_version(),
                current,
            ));
        }
        let conversation = conversations
            .entry(append.sender_id().as_str().to_owned())
            .or_default();
        conversation.events.extend(texts);
        if let Some(seq) = append.last_session_started() {
            conversation.last_session_started = Some(seq);
        }
        let version = conversation.version();
        if let Some(mut outbox) = self.outbox_state() {
            outbox.appended(append.sender_id().as_str());
        }
        Ok(version)
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(conversation) = conversations.get(sender_id.as_str()) else {
            return Ok(None);
        };
        let first_seq = match (scope, conversation.last_session_started) {
            (ReadScope::LatestSession, Some(seq)) => seq.saturating_sub(1).max(1),
            _ => 1,
        };
        let events = conversation.events[(first_seq - 1) as usize..]
            .iter()
            .zip(first_seq..)
            .map(|(text, seq)| StoredEvent {
                seq,
                data: EventData::Text(String::from(&**text)),
            })
            .collect();
        Ok(Some(StoredConversation {
            version: conversation.version(),
            events,
        }))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let lower = match &request.cursor {
            Some(cursor) => Bound::Excluded(cursor.as_str()),
            None => Bound::Unbounded,
        };
        let sender_ids = conversations
            .range::<str, _>((lower, Bound::Unbounded))
            .take(request.limit.saturating_add(1))
            .map(|(id, _)| id.clone())
            .collect();
        Ok(ListPage::from_lookahead(sender_ids, request.limit))
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        let mut conversations = self
            .conversations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let ExpectedVersion::Exact(expected) = expected {
            let actual = conversations
                .get(sender_id.as_str())
                .map_or(0, |conversation| conversation.events.len() as u64);
            if actual != expected {
                return Err(Error::conflict(sender_id.as_str(), expected, actual));
            }
        }
        if let Some(mut outbox) = self.outbox_state() {
            outbox.deleted(sender_id.as_str());
        }
        Ok(conversations.remove(sender_id.as_str()).is_some())
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        let _conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(self
            .outbox_state()
            .map(|outbox| outbox.pending(limit, Instant::now()))
            .unwrap_or_default())
    }

    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>> {
        let conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let version = conversations
            .get(sender_id.as_str())
            .map_or(0, Conversation::version);
        let mut outbox = self.outbox_state().ok_or_else(no_outbox)?;
        Ok(outbox.lease(sender_id, version, relay, ttl, Instant::now()))
    }

    async fn checkpoint(
        &self,
        sender_id: &SenderId,
        relay: &str,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let conversations = self
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let version = conversations
            .get(sender_id.as_str())
            .map_or(0, Conversation::version);
        let mut outbox = self.outbox_state().ok_or_else(no_outbox)?;
        outbox.checkpoint(sender_id, version, relay, from, to, Instant::now())
    }
}

fn no_outbox() -> Error {
    Error::config("this memory store keeps no outbox (`outbox: true` turns it on)")
}
