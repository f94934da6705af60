//! The store implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use fred::clients::{Client, Pool};
use fred::interfaces::{
    ClientLike, FredResult, HashesInterface, KeysInterface, SortedSetsInterface,
};
use fred::types::{Builder, Key, Value};
use tracker_core::{
    Append, Capabilities, Error, EventData, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, StoredEvent, async_trait,
};

use crate::error::{conversation_error, from_fred};
use crate::keys::KeyLayout;
use crate::nodes::{Nodes, is_redirection, reconnect_policy};
use crate::scripts::{APPEND, DELETE, FORGET, PRUNE, READ, Script, TOUCH};
use crate::{RedisConfig, RedisOptions};

/// Largest event and largest append this store accepts, in bytes of JSON text: 512 MiB, the
/// largest string Redis takes (`proto-max-bulk-len`). A whole append is held to the same
/// bound, which keeps it well under Redis' 1 GiB client query buffer.
pub const MAX_EVENT_BYTES: usize = 512 * 1024 * 1024;

/// Most index entries a listing examines per round trip.
const LIST_BATCH: usize = 1_000;

/// A conversation store on Redis, Redis Cluster or Redis Sentinel, through [fred].
///
/// Each conversation is a list of its events' JSON text and a small head hash (version and
/// last session start) in one cluster slot; appends and reads are single Lua scripts, so they
/// are atomic and take one round trip. Cloning is cheap and shares the connections. See the
/// crate documentation for the key layout.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// In a cluster, the store's own connection to each primary (see [`crate::nodes`]).
    nodes: Option<Nodes>,
    layout: KeyLayout,
    record_exp: Option<u64>,
    clustered: bool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.layout.namespace())
            .field("record_exp", &self.inner.record_exp)
            .field("clustered", &self.inner.clustered)
            .field("connections", &self.inner.pool.size())
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
        let options = config.store_options()?;
        let fred_config = config.fred_config()?;
        let timeout = config.timeout();
        let mut builder = Builder::from_config(fred_config);
        builder
            .with_connection_config(|connection| {
                if let Some(timeout) = timeout {
                    connection.connection_timeout = timeout;
                    connection.internal_command_timeout = timeout;
                }
            })
            .with_performance_config(|performance| {
                if let Some(timeout) = timeout {
                    performance.default_command_timeout = timeout;
                }
            })
            .set_policy(reconnect_policy());
        let pool = builder
            .build_pool(config.pool_size)
            .map_err(|e| from_fred("building the Redis client", e))?;
        pool.init()
            .await
            .map_err(|e| from_fred("connecting to Redis", e))?;
        tracing::debug!(
            config = ?config,
            clustered = pool.is_clustered(),
            "connected to Redis"
        );
        Self::from_pool(pool, options)
    }

    /// A store on an existing, connected fred client (call `init()` on it first).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options.
    pub fn from_client(client: Client, options: RedisOptions) -> Result<Self> {
        let pool = Pool::from_clients(vec![client])
            .map_err(|e| from_fred("wrapping the Redis client", e))?;
        Self::from_pool(pool, options)
    }

    /// A store on an existing, connected fred pool (call `init()` on it first). In a
    /// cluster, the store's connections to each primary copy the pool's configuration
    /// (credentials, TLS, timeouts, reconnection policy).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options.
    pub fn from_pool(pool: Pool, options: RedisOptions) -> Result<Self> {
        options.validate()?;
        let layout = KeyLayout::new(options.key_prefix.as_deref())?;
        let clustered = pool.is_clustered();
        let nodes = clustered.then(|| Nodes::new(&pool));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                nodes,
                layout,
                record_exp: options.record_exp,
                clustered,
            }),
        })
    }

    /// The key names this store uses.
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// The fred connections, e.g. to inspect keys or share them with other code.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// One client of the pool.
    pub fn client(&self) -> &Client {
        self.inner.pool.next()
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.inner.clustered
    }

    /// `record_exp`, in seconds.
    pub fn record_exp(&self) -> Option<u64> {
        self.inner.record_exp
    }

    /// Runs `command` on the client for `key`: in a cluster, the store's connection to the
    /// primary that owns the key's slot (see [`crate::nodes`]), or the cluster client when
    /// that primary is not known yet or answers with a redirection; else one of the pool's
    /// connections. `command` may run twice (after a redirection, which executes nothing).
    pub(crate) async fn on_key<T, F, Fut>(&self, key: &str, command: F) -> FredResult<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = FredResult<T>>,
    {
        if let Some(nodes) = &self.inner.nodes
            && let Some(client) = nodes.for_key(self.client(), key)
        {
            match command(client).await {
                Err(error) if is_redirection(&error) => tracing::debug!(
                    store = "redis",
                    key,
                    %error,
                    "the slot has moved; sending through the cluster client"
                ),
                result => return result,
            }
        }
        command(self.client().clone()).await
    }

    /// Runs a script; all its keys are in one slot.
    async fn run(&self, script: &Script, keys: Vec<String>, args: Vec<Value>) -> FredResult<Value> {
        let first = keys.first().cloned().unwrap_or_default();
        self.on_key(&first, |client| {
            let (keys, args) = (keys.clone(), args.clone());
            async move { script.run(&client, keys, args).await }
        })
        .await
    }

    /// `record_exp` in milliseconds, as a script argument (`''` without expiry).
    fn record_exp_ms(&self) -> Value {
        Value::from(
            self.inner
                .record_exp
                .map(|seconds| seconds.saturating_mul(1000).to_string())
                .unwrap_or_default(),
        )
    }

    /// Adds ids to the index (with expiry hints when conversations expire) and returns up to
    /// 16 ids whose expiry hint has passed.
    async fn touch(&self, sender_ids: &[&str]) -> Result<Vec<String>> {
        let layout = &self.inner.layout;
        let mut args = Vec::with_capacity(sender_ids.len() + 1);
        args.push(self.record_exp_ms());
        args.extend(sender_ids.iter().map(|id| Value::from(*id)));
        let reply = self
            .run(&TOUCH, vec![layout.index(), layout.index_expiry()], args)
            .await
            .map_err(|e| from_fred("adding to the conversation index", e))?;
        Ok(strings(reply))
    }

    /// For each id, whether its conversation exists (one pipelined round trip).
    async fn exist(&self, sender_ids: &[String]) -> Result<Vec<bool>> {
        if sender_ids.is_empty() {
            return Ok(Vec::new());
        }
        if self.inner.clustered {
            // The heads are in different slots: one EXISTS each, concurrently, each to its
            // primary.
            let checks = sender_ids.iter().map(|id| {
                let head = self.inner.layout.head(id);
                async move {
                    self.on_key(&head, |client| {
                        let head = head.clone();
                        async move { client.exists::<i64, _>(head).await }
                    })
                    .await
                }
            });
            let found = futures::future::try_join_all(checks)
                .await
                .map_err(|e| from_fred("checking conversations", e))?;
            return Ok(found.into_iter().map(|n| n > 0).collect());
        }
        let pipeline = self.client().pipeline();
        for id in sender_ids {
            let () = pipeline
                .exists(self.inner.layout.head(id))
                .await
                .map_err(|e| from_fred("checking conversations", e))?;
        }
        let found: Vec<i64> = pipeline
            .all()
            .await
            .map_err(|e| from_fred("checking conversations", e))?;
        Ok(found.into_iter().map(|n| n > 0).collect())
    }

    /// Drops the index entries of those ids whose conversation no longer exists (expired, or
    /// deleted by a writer that stopped before removing the entry), and moves the expiry
    /// hint of the others. Best effort: failures are logged, stale entries stay and are
    /// skipped by listings.
    async fn prune(&self, candidates: Vec<String>) {
        if candidates.is_empty() {
            return;
        }
        let result = if self.inner.clustered {
            self.prune_clustered(candidates).await
        } else {
            let layout = &self.inner.layout;
            let mut keys = Vec::with_capacity(candidates.len() + 2);
            keys.push(layout.index());
            keys.push(layout.index_expiry());
            keys.extend(candidates.iter().map(|id| layout.head(id)));
            let mut args = Vec::with_capacity(candidates.len() + 1);
            args.push(self.record_exp_ms());
            args.extend(candidates.iter().map(|id| Value::from(id.as_str())));
            self.run(&PRUNE, keys, args)
                .await
                .map(|removed| removed.as_u64().unwrap_or_default())
                .map_err(|e| from_fred("pruning the conversation index", e))
        };
        match result {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(
                store = "redis",
                removed,
                "removed index entries of conversations that no longer exist"
            ),
            Err(error) => tracing::warn!(
                store = "redis",
                %error,
                "could not prune the conversation index; stale entries stay and are skipped"
            ),
        }
    }

    /// In a cluster the index and the conversations are in different slots, so no script
    /// can check and remove at once: check, remove the missing ones, then put back any that
    /// a writer created meanwhile (it may have added its id before our removal).
    async fn prune_clustered(&self, candidates: Vec<String>) -> Result<u64> {
        let exists = self.exist(&candidates).await?;
        let (live, missing): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .zip(exists)
            .partition(|(_, exists)| *exists);
        if self.inner.record_exp.is_some() && !live.is_empty() {
            let live: Vec<&str> = live.iter().map(|(id, _)| id.as_str()).collect();
            self.touch(&live).await?;
        }
        let missing: Vec<String> = missing.into_iter().map(|(id, _)| id).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let layout = &self.inner.layout;
        let args = missing.iter().map(|id| Value::from(id.as_str())).collect();
        let removed = self
            .run(&FORGET, vec![layout.index(), layout.index_expiry()], args)
            .await
            .map_err(|e| from_fred("pruning the conversation index", e))?
            .as_u64()
            .unwrap_or_default();
        self.restore_recreated(&missing).await?;
        Ok(removed)
    }

    /// Puts the index entries of conversations that exist back (cluster, after removing them).
    async fn restore_recreated(&self, sender_ids: &[String]) -> Result<()> {
        let exists = self.exist(sender_ids).await?;
        let back: Vec<&str> = sender_ids
            .iter()
            .zip(exists)
            .filter(|(_, exists)| *exists)
            .map(|(id, _)| id.as_str())
            .collect();
        if !back.is_empty() {
            self.touch(&back).await?;
        }
        Ok(())
    }

    fn parse_version(sender_id: &str, what: &str, value: &Value) -> Result<u64> {
        value
            .as_str()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::corrupt(
                    sender_id,
                    None,
                    format!("the {what} {value:?} is not a version number"),
                )
            })
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &str {
        "redis"
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
        let head = self.inner.layout.head(id);
        let version: Value = self
            .on_key(&head, |client| {
                let head = head.clone();
                async move { client.hget(head, "version").await }
            })
            .await
            .map_err(|e| conversation_error(id, "version", e))?;
        match version {
            Value::Null => Ok(0),
            value => Self::parse_version(id, "stored version", &value),
        }
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        let id = append.sender_id().as_str();
        let layout = &self.inner.layout;
        let creating = append.expected_version() == 0;
        let mut keys = vec![layout.events(id), layout.head(id)];
        if self.inner.clustered {
            // The index lives in another slot: add the id before the conversation can exist,
            // so the index always holds every conversation.
            if creating {
                self.touch(&[id]).await?;
            }
        } else {
            // On one server the script adds the id itself, atomically with the events.
            keys.push(layout.index());
        }
        let mut args = Vec::with_capacity(append.records().len() + 5);
        args.push(Value::from(append.expected_version().to_string()));
        args.push(Value::from(append.new_version().to_string()));
        args.push(Value::from(
            append
                .last_session_started()
                .map(|seq| seq.to_string())
                .unwrap_or_default(),
        ));
        args.push(Value::from(
            self.inner
                .record_exp
                .map(|seconds| seconds.to_string())
                .unwrap_or_default(),
        ));
        args.push(Value::from(id));
        args.extend(
            append
                .records()
                .iter()
                .map(|record| Value::from(record.json.as_str())),
        );
        let reply = self
            .run(&APPEND, keys, args)
            .await
            .map_err(|e| conversation_error(id, "append", e))?;
        let Value::Array(mut items) = reply else {
            return Err(unexpected_reply(id, "append", &reply));
        };
        let (Some(version), Some(status)) = (items.pop(), items.pop()) else {
            return Err(Error::corrupt(id, None, "append: unexpected reply"));
        };
        let version = Self::parse_version(id, "stored version", &version)?;
        if status.as_i64() != Some(1) {
            tracing::debug!(
                store = "redis",
                sender_id = id,
                expected = append.expected_version(),
                actual = version,
                "append conflicts"
            );
            return Err(Error::conflict(id, append.expected_version(), version));
        }
        if creating && (self.inner.clustered || self.inner.record_exp.is_some()) {
            // The append is stored. Set the expiry hint, and in a cluster add the id again in
            // case a listing pruned it between our first add and the append; then check a
            // few conversations that may have expired.
            match self.touch(&[id]).await {
                Ok(candidates) => self.prune(candidates).await,
                Err(error) => tracing::warn!(
                    store = "redis",
                    sender_id = id,
                    %error,
                    "could not update the index after creating a conversation"
                ),
            }
        }
        Ok(version)
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let id = sender_id.as_str();
        let layout = &self.inner.layout;
        let scope_arg = match scope {
            ReadScope::All => "all",
            ReadScope::LatestSession => "latest",
        };
        let reply = self
            .run(
                &READ,
                vec![layout.events(id), layout.head(id)],
                vec![Value::from(scope_arg)],
            )
            .await
            .map_err(|e| conversation_error(id, "read", e))?;
        let items = match reply {
            Value::Null => return Ok(None),
            Value::Array(items) if items.len() == 3 => items,
            other => return Err(unexpected_reply(id, "read", &other)),
        };
        let mut items = items.into_iter();
        let (Some(version), Some(first), Some(texts)) = (items.next(), items.next(), items.next())
        else {
            return Err(Error::corrupt(id, None, "read: unexpected reply"));
        };
        let version = Self::parse_version(id, "stored version", &version)?;
        let first = first.as_u64().filter(|first| *first >= 1).ok_or_else(|| {
            Error::corrupt(id, None, "read: the first sequence number is not a number")
        })?;
        let texts = match texts {
            Value::Array(texts) => texts,
            Value::Null => Vec::new(),
            other => return Err(unexpected_reply(id, "read", &other)),
        };
        let expected = (version + 1).saturating_sub(first);
        if texts.len() as u64 != expected {
            return Err(Error::corrupt(
                id,
                None,
                format!(
                    "the head says version {version} but {} events were found from event {first}",
                    texts.len()
                ),
            ));
        }
        let mut events = Vec::with_capacity(texts.len());
        for (text, seq) in texts.into_iter().zip(first..) {
            let text = match text {
                Value::String(text) => text.to_string(),
                Value::Bytes(bytes) => {
                    String::from_utf8(bytes.to_vec()).map_err(|e| Error::Corrupt {
                        sender_id: id.to_owned(),
                        position: Some(seq),
                        message: "the event is not UTF-8".to_owned(),
                        source: Some(Box::new(e)),
                    })?
                }
                other => {
                    return Err(Error::corrupt(
                        id,
                        Some(seq),
                        format!("the event is not text: {other:?}"),
                    ));
                }
            };
            events.push(StoredEvent {
                seq,
                data: EventData::Text(text),
            });
        }
        Ok(Some(StoredConversation { version, events }))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.limit.max(1);
        let index = self.inner.layout.index();
        let mut lower = match &request.cursor {
            Some(cursor) => format!("({cursor}"),
            None => "-".to_owned(),
        };
        let mut sender_ids: Vec<String> = Vec::new();
        loop {
            // One more than still needed, to tell whether another page follows.
            let want = (limit - sender_ids.len()).min(LIST_BATCH) + 1;
            let batch: Vec<String> = self
                .on_key(&index, |client| {
                    let (index, lower) = (index.clone(), lower.clone());
                    async move {
                        client
                            .zrangebylex(&index, lower.as_str(), "+", Some((0, want as i64)))
                            .await
                    }
                })
                .await
                .map_err(|e| from_fred("listing conversations", e))?;
            let exists = self.exist(&batch).await?;
            let mut stale = Vec::new();
            for (id, exists) in batch.iter().zip(exists) {
                if !exists {
                    stale.push(id.clone());
                } else if sender_ids.len() == limit {
                    self.prune(stale).await;
                    let next_cursor = sender_ids.last().cloned();
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor,
                    });
                } else {
                    sender_ids.push(id.clone());
                }
            }
            self.prune(stale).await;
            match batch.last() {
                Some(last) if batch.len() == want => lower = format!("({last}"),
                _ => {
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor: None,
                    });
                }
            }
        }
    }

    async fn delete(&self, sender_id: &SenderId) -> Result<bool> {
        let id = sender_id.as_str();
        let layout = &self.inner.layout;
        if !self.inner.clustered {
            let existed = self
                .run(
                    &DELETE,
                    vec![
                        layout.events(id),
                        layout.head(id),
                        layout.index(),
                        layout.index_expiry(),
                    ],
                    vec![Value::from(id)],
                )
                .await
                .map_err(|e| conversation_error(id, "delete", e))?;
            return Ok(existed.as_i64() == Some(1));
        }
        // Cluster: the conversation's keys (one slot), then the index entry (another slot),
        // then put the entry back if a writer re-created the conversation meanwhile.
        let head = layout.head(id);
        let events = layout.events(id);
        let deleted: i64 = self
            .on_key(&head, |client| {
                let keys = vec![Key::from(events.as_str()), Key::from(head.as_str())];
                async move { client.del(keys).await }
            })
            .await
            .map_err(|e| conversation_error(id, "delete", e))?;
        self.run(
            &FORGET,
            vec![layout.index(), layout.index_expiry()],
            vec![Value::from(id)],
        )
        .await
        .map_err(|e| from_fred("removing from the conversation index", e))?;
        self.restore_recreated(&[id.to_owned()]).await?;
        Ok(deleted > 0)
    }
}

/// The strings of an array reply (others are skipped).
fn strings(reply: Value) -> Vec<String> {
    match reply {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| item.as_string())
            .collect(),
        _ => Vec::new(),
    }
}

fn unexpected_reply(sender_id: &str, operation: &str, reply: &Value) -> Error {
    Error::Backend {
        message: format!("{operation} of conversation {sender_id:?}: unexpected reply {reply:?}"),
        source: None,
    }
}
