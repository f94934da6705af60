//! The store: [`RedisStore`] and its [`Store`] implementation.

use std::fmt;
use std::sync::Arc;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, HashesInterface, KeysInterface, SortedSetsInterface};
use fred::types::{Key, Value};
use tracker_core::{
    Append, Capabilities, Error, EventData, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, StoredEvent, async_trait,
};

use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::error::{conversation_error, driver_error};
use crate::index::Index;
use crate::schema::KeyLayout;
use crate::scripts::{APPEND, DELETE, READ};

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
    connection: Connection,
    layout: KeyLayout,
    record_exp: Option<u64>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.layout.namespace())
            .field("record_exp", &self.inner.record_exp)
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

    /// The connections, to share them (with a Rasa source, say).
    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    fn index(&self) -> Index<'_> {
        Index::new(
            &self.inner.connection,
            &self.inner.layout,
            self.inner.record_exp,
        )
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
            .connection()
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
        let clustered = self.is_clustered();
        let mut keys = vec![layout.events(id), layout.head(id)];
        if clustered {
            // The index lives in another slot: add the id before the conversation can exist,
            // so the index always holds every conversation.
            if creating {
                self.index().touch(&[id]).await?;
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
            .connection()
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
        if creating && (clustered || self.inner.record_exp.is_some()) {
            // The append is stored. Set the expiry hint, and in a cluster add the id again in
            // case a listing pruned it between our first add and the append; then check a
            // few conversations that may have expired.
            let index = self.index();
            match index.touch(&[id]).await {
                Ok(candidates) => index.prune(candidates).await,
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
            .connection()
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
                Value::Bytes(bytes) => String::from_utf8(bytes.to_vec())
                    .map_err(|e| Error::corrupt_with(id, Some(seq), "the event is not UTF-8", e))?,
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
                .connection()
                .on_key(&index, |client| {
                    let (index, lower) = (index.clone(), lower.clone());
                    async move {
                        client
                            .zrangebylex(&index, lower.as_str(), "+", Some((0, want as i64)))
                            .await
                    }
                })
                .await
                .map_err(|e| driver_error("listing conversations", e))?;
            let exists = self.index().exist(&batch).await?;
            let mut stale = Vec::new();
            for (id, exists) in batch.iter().zip(exists) {
                if !exists {
                    stale.push(id.clone());
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
        if !self.is_clustered() {
            let existed = self
                .connection()
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
            .connection()
            .on_key(&head, |client| {
                let keys = vec![Key::from(events.as_str()), Key::from(head.as_str())];
                async move { client.del(keys).await }
            })
            .await
            .map_err(|e| conversation_error(id, "delete", e))?;
        let ids = [id.to_owned()];
        let index = self.index();
        index.forget(&ids).await?;
        index.restore_recreated(&ids).await?;
        Ok(deleted > 0)
    }
}

fn unexpected_reply(sender_id: &str, operation: &str, reply: &Value) -> Error {
    Error::backend(format!(
        "{operation} of conversation {sender_id:?}: unexpected reply {reply:?}"
    ))
}
