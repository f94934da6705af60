//! The [`Store`] implementation: the store type, its constructors, and the trait operations,
//! which run the bucket algorithm of `buckets.rs` on the store's collections — through the
//! adoption of Rasa's conversations (`adopt.rs`) unless `adopt_rasa` is off. Appends, one or
//! a batch, go through `batch.rs`.

use std::fmt;

use mongodb::bson::{Document, doc};
use mongodb::{Client, Collection, Database};
use tracker_core::{
    Append, Capabilities, Error, ExpectedVersion, ListPage, ListRequest, Outbox, ReadScope, Result,
    SenderId, Store, StoredConversation, async_trait,
};

use crate::adopt::Adoption;
use crate::batch::Appender;
use crate::buckets::Collections;
use crate::config::{MongoConfig, validate_bucket, validate_collection_name, validate_db_name};
use crate::error::driver_error;
use crate::migrate;
use crate::outbox::MongoOutbox;
use crate::rasa::MongoRasaSource;
use crate::schema::{EVENTS_SUFFIX, HEADS_SUFFIX, MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, Slot};

/// The MongoDB store: a [`Store`] keeping each conversation in a head document (its version,
/// session start and newest events) and bucket documents (older events, sealed).
///
/// Cloning is cheap and shares the client (its connection pool). All operations are safe to
/// call from many tasks and processes at once; every append is one atomic single-document
/// write, so it needs neither transactions nor a replica set. With `outbox` on, the same
/// write marks the conversation pending for a relay ([`Store::outbox`]).
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    database: Database,
    collections: Collections,
    /// Rasa's collection and this store's, when it adopts Rasa's conversations.
    adoption: Option<Adoption>,
    /// The outbox, when the store keeps one.
    outbox: Option<MongoOutbox>,
    collection: String,
    /// Where it is connected, without credentials.
    display: String,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("server", &self.display)
            .field("db", &self.database.name())
            .field("collection", &self.collection)
            .field("bucket_events", &self.collections.bucket_events)
            .field("bucket_bytes", &self.collections.bucket_bytes)
            .field("adopt_rasa", &self.adoption.is_some())
            .field("outbox", &self.outbox.is_some())
            .finish()
    }
}

impl MongoStore {
    /// Connects with Rasa's configuration keys: checks the configuration, connects and pings
    /// the server, and creates the indexes ([`ensure_schema`](Self::ensure_schema)) unless
    /// `ensure_indexes` is off.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or connection string, or rejected
    /// credentials; [`Error::Unavailable`] when no server answers (after the driver's server
    /// selection timeout, 30 s unless the URL sets `serverSelectionTimeoutMS`).
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let client = config.client().await?;
        let mut store = Self::from_client(client, config)?;
        store.display = config.display_url();
        store.ping().await?;
        if config.ensure_indexes {
            store.ensure_schema().await?;
        }
        tracing::debug!(store = ?store, "connected to MongoDB");
        Ok(store)
    }

    /// A store on a client you built (with the re-exported [`mongodb`] crate), in the
    /// database `config.db`. Uses `db`, `collection`, `bucket_events`, `bucket_bytes`,
    /// `adopt_rasa` and `outbox` of `config`; the connection keys and `ensure_indexes` are
    /// ignored.
    /// Touches no server: call [`ensure_schema`](Self::ensure_schema) yourself.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid database name, collection name or bucket size.
    pub fn from_client(client: Client, config: &MongoConfig) -> Result<Self> {
        validate_db_name(&config.db)?;
        Self::from_database(client.database(&config.db), config)
    }

    /// A store in a database handle you built. Uses `collection`, `bucket_events`,
    /// `bucket_bytes`, `adopt_rasa` and `outbox` of `config`; the other keys are ignored.
    /// Touches no server: call [`ensure_schema`](Self::ensure_schema) yourself.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid collection name or bucket size.
    pub fn from_database(database: Database, config: &MongoConfig) -> Result<Self> {
        validate_collection_name(&config.collection)?;
        validate_bucket(config.bucket_events, config.bucket_bytes)?;
        let collections = Collections {
            heads: database.collection(&format!("{}{HEADS_SUFFIX}", config.collection)),
            events: database.collection(&format!("{}{EVENTS_SUFFIX}", config.collection)),
            bucket_events: config.bucket_events,
            bucket_bytes: config.bucket_bytes,
            outbox: config.outbox,
        };
        let outbox = config
            .outbox
            .then(|| MongoOutbox::new(collections.heads.clone()));
        let adoption = config
            .adopt_rasa
            .then(|| Adoption::new(collections.clone(), database.collection(&config.collection)));
        Ok(Self {
            client: database.client().clone(),
            database,
            collections,
            adoption,
            outbox,
            collection: config.collection.clone(),
            display: "<client given>".to_owned(),
        })
    }

    /// Creates the indexes this store uses that are missing — heads by listing key, buckets
    /// by conversation and position, and with the outbox on pending heads by age — and
    /// returns a description of each one created (empty when all were there). Existing
    /// indexes are kept; correctness never depends on them.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Config`] (no permission) / [`Error::Backend`].
    pub async fn ensure_schema(&self) -> Result<Vec<String>> {
        migrate::ensure_schema(
            &self.collections.heads,
            &self.collections.events,
            self.outbox.is_some(),
        )
        .await
    }

    /// Removes the buckets that no conversation refers to any more, and returns how many
    /// it removed. They are left by a delete interrupted between its two steps (the head is
    /// gone, its buckets not yet) and are never read, only taking space. Safe while the
    /// store is in use: a bucket is removed only when no head has its sender id with its
    /// generation, and a generation is never reused (a re-created conversation gets a new
    /// one). It reads every bucket's key, so run it now and then, not per request.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Backend`] from the server; what was removed before
    /// the error stays removed.
    pub async fn collect_orphaned_buckets(&self) -> Result<u64> {
        self.collections.collect_orphans().await
    }

    /// Checks that the server answers (`ping`).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not, [`Error::Config`] for rejected credentials.
    pub async fn ping(&self) -> Result<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(|e| driver_error(format!("pinging MongoDB at {}", self.display), e))
    }

    /// The client (shares its connection pool with this store).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The base name of the collections (`collection` in the configuration), which is also
    /// the name of Rasa's collection.
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// Whether the store adopts the conversations Rasa keeps in `<collection>`
    /// (`adopt_rasa` in the configuration).
    pub fn adopts_rasa(&self) -> bool {
        self.adoption.is_some()
    }

    /// A reader of Rasa's collection beside this store's (`<collection>`), on its client;
    /// for copying with `TrackerStore::import_from`.
    pub fn rasa_source(&self) -> MongoRasaSource {
        MongoRasaSource::described(
            self.database.collection(&self.collection),
            self.display.clone(),
        )
    }

    /// The collection of head documents, `<collection>.heads`, for inspection. Writing to it
    /// bypasses every guarantee of this store.
    pub fn heads(&self) -> &Collection<Document> {
        &self.collections.heads
    }

    /// The collection of bucket documents, `<collection>.events`, for inspection. Writing to
    /// it bypasses every guarantee of this store.
    pub fn buckets(&self) -> &Collection<Document> {
        &self.collections.events
    }

    /// Where appends are written.
    fn appender(&self) -> Appender<'_> {
        Appender {
            collections: &self.collections,
            adoption: self.adoption.as_ref(),
        }
    }
}

#[async_trait]
impl Store for MongoStore {
    fn name(&self) -> &str {
        "mongo"
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.outbox.as_ref().map(|outbox| outbox as &dyn Outbox)
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(MAX_EVENTS_PER_APPEND);
        capabilities.max_event_bytes = Some(MAX_APPEND_BYTES);
        capabilities.max_append_bytes = Some(MAX_APPEND_BYTES);
        capabilities.native_latest_session = true;
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        let sender_id = sender_id.as_str();
        if let Some(adoption) = &self.adoption {
            return adoption.version(sender_id).await;
        }
        match self.collections.version(sender_id).await? {
            Slot::Live(version) => Ok(version),
            Slot::Absent | Slot::Deleted => Ok(0),
        }
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        self.appender().one(append).await
    }

    /// New conversations are created by one unordered insert of their heads; the other
    /// appends run as single appends, several at a time. Each append stays one atomic
    /// single-document write (see the README's "Appends and crashes").
    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        self.appender().batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let sender_id = sender_id.as_str();
        if let Some(adoption) = &self.adoption {
            return adoption.read(sender_id, scope).await;
        }
        match self.collections.read(sender_id, scope).await? {
            Slot::Live(conversation) => Ok(Some(conversation)),
            Slot::Absent | Slot::Deleted => Ok(None),
        }
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        if request.limit == 0 {
            return Err(Error::invalid_input("page size 0"));
        }
        let cursor = request.cursor.as_deref();
        let sender_ids = match &self.adoption {
            Some(adoption) => adoption.list(cursor, request.limit).await?,
            None => self.collections.list(cursor, request.limit).await?,
        };
        Ok(ListPage::from_lookahead(sender_ids, request.limit))
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        match &self.adoption {
            Some(adoption) => adoption.delete(sender_id.as_str(), expected).await,
            None => self.collections.delete(sender_id.as_str(), expected).await,
        }
    }
}
