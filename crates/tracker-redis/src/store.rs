//! The store: [`RedisStore`] and its [`Store`] implementation.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, HashesInterface, SortedSetsInterface};
use fred::types::Value;
use tracker_core::{
    Append, Capabilities, Error, ExpectedVersion, ListPage, ListRequest, Outbox, ReadScope, Result,
    SenderId, Store, StoredConversation, async_trait,
};

use crate::adopt::{RasaRecord, record_text};
use crate::append::Appending;
use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::delete::Deletion;
use crate::error::{conversation_error, driver_error, unexpected_reply};
use crate::index::Index;
use crate::read::Reading;
use crate::schema::{KeyLayout, parse_version};
use crate::scripts::VERSION;

/// Largest event and largest append this store accepts, in bytes of JSON text: 512 MiB, the
/// largest string Redis takes (`proto-max-bulk-len`). A whole append is held to the same
/// bound, which keeps it well under Redis' 1 GiB client query buffer.
pub const MAX_EVENT_BYTES: usize = 512 * 1024 * 1024;

/// Most index entries a listing examines per round trip.
const LIST_BATCH: usize = 1_000;

/// A conversation store on Redis, Redis Cluster or Redis Sentinel, through [fred].
///
/// Each conversation is a list of its events' JSON text and a small head hash (version and
/// last session start) in one cluster slot; an append is one Lua script, a read one
/// transaction (`MULTI`/`EXEC`) or one script (a short latest session) or both (a long one),
/// so both are atomic. Conversations that only Rasa's own store holds under the same prefix
/// are read from Rasa's record and adopted into this layout on their first append (unless
/// `adopt_rasa` is off). With `outbox` on, it keeps what a relay needs to
/// publish every event to a broker (its [`Outbox`] implementation). Cloning is cheap and
/// shares the connections. See the crate documentation for the key layout, the adoption and
/// the outbox.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    layout: KeyLayout,
    record_exp: Option<u64>,
    adopt: bool,
    outbox: bool,
    /// The ids of Rasa's records found by the last listing's first page (with adoption).
    rasa_ids: Mutex<Option<Arc<[String]>>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.layout.namespace())
            .field("record_exp", &self.inner.record_exp)
            .field("adopt_rasa", &self.inner.adopt)
            .field("outbox", &self.inner.outbox)
            .field("clustered", &self.inner.connection.is_clustered())
            .field("connections", &self.inner.connection.pool().size())
            .finish()
    }
}

impl RedisStore {
    /// Connects with `config`: builds a fred pool of `pool_size` connections, with
    /// reconnection (exponential back-off) and the configured timeouts, and waits until it
    /// is connected. In a cluster the store also opens its own connection to each primary
    /// when it first needs it (see the crate documentation).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or rejected credentials;
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        let connection = Connection::connect(config).await?;
        Ok(Self::on(connection, layout, config))
    }

    /// A store on an existing, connected fred client (call `init()` on it first), with the
    /// key prefix and expiry of `config` (its connection settings are not used).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_client(client: Client, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        Ok(Self::on(Connection::from_client(client)?, layout, config))
    }

    /// A store on an existing, connected fred pool (call `init()` on it first), with the key
    /// prefix and expiry of `config` (its connection settings are not used). In a cluster,
    /// the store's connections to each primary copy the pool's configuration (credentials,
    /// TLS, timeouts, reconnection policy).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_pool(pool: Pool, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        Ok(Self::on(Connection::from_pool(pool), layout, config))
    }

    fn on(connection: Connection, layout: KeyLayout, config: &RedisConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                layout,
                record_exp: config.record_exp,
                adopt: config.adopt_rasa,
                outbox: config.outbox,
                rasa_ids: Mutex::new(None),
            }),
        }
    }

    /// Sets up what the store needs on the server and returns a description of each change.
    /// Redis needs nothing set up (keys come into being with the first write), so this only
    /// checks that the server answers — in a cluster, the primary holding the conversation
    /// index — and returns an empty list. It exists so that every store is set up the same
    /// way.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server does not answer; [`Error::Config`] for rejected
    /// credentials.
    pub async fn ensure_schema(&self) -> Result<Vec<String>> {
        let index = self.inner.layout.index();
        self.inner
            .connection
            .on_key(
                &index,
                |client| async move { client.ping::<()>(None).await },
            )
            .await
            .map_err(|e| driver_error("checking that Redis answers", e))?;
        Ok(Vec::new())
    }

    /// The key names this store uses.
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// The fred connections, e.g. to inspect keys or share them with other code.
    pub fn pool(&self) -> &Pool {
        self.inner.connection.pool()
    }

    /// One client of the pool.
    pub fn client(&self) -> &Client {
        self.inner.connection.client()
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.inner.connection.is_clustered()
    }

    /// `record_exp`, in seconds.
    pub fn record_exp(&self) -> Option<u64> {
        self.inner.record_exp
    }

    /// Whether the store serves and adopts the conversations Rasa's own store keeps under the
    /// same prefix (`adopt_rasa`).
    pub fn adopts_rasa(&self) -> bool {
        self.inner.adopt
    }

    /// Whether the store keeps an outbox (`outbox`): then [`Store::outbox`] gives it.
    pub fn keeps_outbox(&self) -> bool {
        self.inner.outbox
    }

    /// The connections, to share them (with a Rasa source, say).
    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    /// The sorted ids of Rasa's records for a listing: scanned when `fresh` (a listing's
    /// first page) or when this instance has none yet, else the ones of the last scan.
    async fn rasa_ids(&self, fresh: bool) -> Result<Arc<[String]>> {
        if !self.inner.adopt {
            return Ok(Arc::from(Vec::new()));
        }
        if !fresh {
            let cached = self
                .inner
                .rasa_ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(ids) = cached {
                return Ok(ids);
            }
        }
        let ids: Arc<[String]> = Arc::from(self.index().rasa_ids().await?);
        *self
            .inner
            .rasa_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&ids));
        Ok(ids)
    }

    fn index(&self) -> Index<'_> {
        Index::new(
            &self.inner.connection,
            &self.inner.layout,
            self.inner.record_exp,
            self.inner.adopt,
        )
    }

    /// Rasa's record of `sender_id`, when Rasa's key holds one.
    async fn rasa_record(&self, sender_id: &str) -> Result<Option<RasaRecord>> {
        RasaRecord::read(self.connection(), &self.inner.layout, sender_id).await
    }

    /// What an append works with.
    fn appending(&self) -> Appending<'_> {
        Appending {
            connection: self.connection(),
            layout: &self.inner.layout,
            index: self.index(),
            record_exp: self.inner.record_exp,
            adopt: self.inner.adopt,
            outbox: self.inner.outbox,
        }
    }

    /// Adds conversations to the outbox's pending set, keeping the place of those already in
    /// it (in a cluster, where the append script cannot reach the set).
    pub(crate) async fn mark_pending(&self, sender_ids: &[&str]) -> Result<()> {
        self.appending().mark_pending(sender_ids).await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &str {
        "redis"
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.inner.outbox.then_some(self as &dyn Outbox)
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.max_event_bytes = Some(MAX_EVENT_BYTES);
        capabilities.max_append_bytes = Some(MAX_EVENT_BYTES);
        capabilities.native_latest_session = true;
        capabilities.expiry = self.inner.record_exp.is_some();
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        let id = sender_id.as_str();
        let layout = &self.inner.layout;
        let head = layout.head(id);
        if self.inner.adopt && !self.is_clustered() {
            // One script: this store's version, else Rasa's record.
            let reply = self
                .connection()
                .run(&VERSION, vec![head, layout.rasa(id)], Vec::new())
                .await
                .map_err(|e| conversation_error(id, "version", e))?;
            let Value::Array(mut items) = reply else {
                return Err(unexpected_reply(id, "version", &reply));
            };
            let value = (items.len() == 2).then(|| items.remove(1));
            return match (items.first().and_then(Value::as_str).as_deref(), value) {
                (Some("own"), Some(version)) => parse_version(id, &version),
                (Some("rasa"), Some(text)) => {
                    let key = layout.rasa(id);
                    let text = record_text(id, &key, text)?.unwrap_or_default();
                    Ok(RasaRecord::parse(id, &key, &text)?.version())
                }
                (Some("none"), None) => Ok(0),
                _ => Err(Error::corrupt(id, None, "version: unexpected reply")),
            };
        }
        let version: Value = self
            .connection()
            .on_key(&head, |client| {
                let head = head.clone();
                async move { client.hget(head, "version").await }
            })
            .await
            .map_err(|e| conversation_error(id, "version", e))?;
        match version {
            Value::Null if self.inner.adopt => Ok(self
                .rasa_record(id)
                .await?
                .map_or(0, |record| record.version())),
            Value::Null => Ok(0),
            value => parse_version(id, &value),
        }
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        self.appending().one(append).await
    }

    /// Appends to every conversation of the batch with one pipeline of append scripts (one
    /// per primary in a cluster); see the crate documentation.
    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        self.appending().batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        Reading {
            connection: self.connection(),
            layout: &self.inner.layout,
            adopt: self.inner.adopt,
        }
        .run(sender_id.as_str(), scope)
        .await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.limit.max(1);
        // With adoption a listing pages through the index merged with the ids of Rasa's
        // records. Those are scanned at a listing's first page and kept for its later pages
        // (scanned again when another store instance continues the listing): never written.
        let rasa_ids = self.rasa_ids(request.cursor.is_none()).await?;
        let index = self.inner.layout.index();
        let mut lower = request.cursor.clone();
        let mut sender_ids: Vec<String> = Vec::new();
        loop {
            // One more than still needed, to tell whether another page follows.
            let want = (limit - sender_ids.len()).min(LIST_BATCH) + 1;
            let from = match &lower {
                Some(cursor) => format!("({cursor}"),
                None => "-".to_owned(),
            };
            let indexed: Vec<String> = self
                .connection()
                .on_key(&index, |client| {
                    let (index, from) = (index.clone(), from.clone());
                    async move {
                        client
                            .zrangebylex(&index, from.as_str(), "+", Some((0, want as i64)))
                            .await
                    }
                })
                .await
                .map_err(|e| driver_error("listing conversations", e))?;
            let start = match &lower {
                Some(cursor) => rasa_ids.partition_point(|id| id <= cursor),
                None => 0,
            };
            let rasa = &rasa_ids[start..(start + want).min(rasa_ids.len())];
            let merged = merge_batches(&indexed, rasa, want);
            let exists = self.index().exist(&merged.ids).await?;
            let mut stale = Vec::new();
            for (id, exists) in merged.ids.iter().zip(exists) {
                if !exists {
                    if indexed.binary_search(id).is_ok() {
                        stale.push(id.clone());
                    }
                } else if sender_ids.len() == limit {
                    self.index().prune(stale).await;
                    let next_cursor = sender_ids.last().cloned();
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor,
                    });
                } else {
                    sender_ids.push(id.clone());
                }
            }
            self.index().prune(stale).await;
            match merged.bound {
                Some(bound) => lower = Some(bound),
                None => {
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor: None,
                    });
                }
            }
        }
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        Deletion {
            connection: self.connection(),
            layout: &self.inner.layout,
            index: self.index(),
            adopt: self.inner.adopt,
            outbox: self.inner.outbox,
        }
        .run(sender_id.as_str(), expected)
        .await
    }
}

/// The ids of one listing round: the index batch and the batch of Rasa's ids merged, up to
/// the point where both are known complete.
#[derive(Debug, PartialEq, Eq)]
struct Merged {
    /// Sorted, without duplicates: every id of either batch up to `bound`.
    ids: Vec<String>,
    /// The last id of `ids` when a batch was full (more may follow it); `None` when both
    /// batches are exhausted.
    bound: Option<String>,
}

/// Merges two sorted batches of at most `want` ids each. A full batch may continue past
/// its last id, so only ids up to the smaller last id of the full batches are known
/// complete; an id present in both batches is listed once.
fn merge_batches(indexed: &[String], rasa: &[String], want: usize) -> Merged {
    let limit_of = |batch: &[String]| {
        if batch.len() >= want {
            batch.last().cloned()
        } else {
            None
        }
    };
    let bound = match (limit_of(indexed), limit_of(rasa)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut ids: Vec<String> = indexed
        .iter()
        .chain(rasa)
        .filter(|id| bound.as_ref().is_none_or(|bound| *id <= bound))
        .cloned()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Merged { ids, bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn merging_stops_at_the_first_full_batchs_end() {
        let merged = merge_batches(&ids(&["a", "c", "e"]), &ids(&["b", "c", "d"]), 3);
        assert_eq!(merged.ids, ids(&["a", "b", "c", "d"]));
        assert_eq!(merged.bound.as_deref(), Some("d"));
        let merged = merge_batches(&ids(&["a", "b"]), &ids(&["c", "d", "e"]), 3);
        assert_eq!(merged.ids, ids(&["a", "b", "c", "d", "e"]));
        assert_eq!(merged.bound.as_deref(), Some("e"));
    }

    #[test]
    fn merging_exhausted_batches_lists_everything_once() {
        let merged = merge_batches(&ids(&["b", "x"]), &ids(&["a", "b"]), 3);
        assert_eq!(merged.ids, ids(&["a", "b", "x"]));
        assert_eq!(merged.bound, None);
        assert_eq!(merge_batches(&[], &[], 1).ids, Vec::<String>::new());
    }
}
