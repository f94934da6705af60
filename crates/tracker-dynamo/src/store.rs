//! The store: [`DynamoStore`], its constructors, and its [`Store`] implementation.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::Client;
use tracker_core::{
    Append, Capabilities, Error, ExpectedVersion, ListPage, ListRequest, Outbox, ReadScope, Result,
    SenderId, Store, StoredConversation, async_trait,
};

use crate::append;
use crate::batch;
use crate::config::{DynamoConfig, redact_url, validate_table_name};
use crate::delete;
use crate::items::Db;
use crate::list;
use crate::migrate::{self, Tables};
use crate::schema::{self, MAX_APPEND_BYTES, MAX_EVENT_BYTES, MAX_EVENTS_PER_APPEND};

/// Attempts of a read whose head and events disagree (a delete ran in between).
const READ_ATTEMPTS: usize = 3;

/// A conversation store on DynamoDB: one item per event and a head item per conversation,
/// appended to with conditional transactions; conversations Rasa's `DynamoTrackerStore`
/// holds are read from Rasa's table and move into this store's with their first append (see
/// the crate documentation). With `outbox` on, it is also its own
/// [`Outbox`](tracker_core::Outbox) ([`Store::outbox`]).
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table_name: Arc<str>,
    adopt_rasa: bool,
    outbox: bool,
    page_size: Option<i32>,
    tables: Arc<OnceLock<Tables>>,
    /// Connected without setup while this store's table beside Rasa's did not exist: reads
    /// take the missing table for an empty one, writes are refused until it exists.
    store_table_pending: Arc<AtomicBool>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table_name", &self.table_name)
            .field("adopt_rasa", &self.adopt_rasa)
            .field("outbox", &self.outbox)
            .field("tables", &self.tables.get())
            .field(
                "store_table_pending",
                &self.store_table_pending.load(Ordering::Relaxed),
            )
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// Connects as configured, with credentials from the standard AWS chain, then creates
    /// this store's table with [`DynamoStore::ensure_schema`] when `config.migrate` is set
    /// (the default), or checks it with [`DynamoStore::check_schema`] otherwise. When
    /// `table_name` is Rasa's table, this store's table is the one beside it (see
    /// [`DynamoStore::tables`]).
    ///
    /// With `migrate: false`, `table_name` naming Rasa's existing table and `adopt_rasa` on,
    /// a missing table beside it is no error: the store connects **for reading** and changes
    /// nothing. Reads, versions and listings find the conversations of Rasa's table (and
    /// none of this store's: it has none yet); an append or a delete is refused with
    /// [`Error::Config`] naming `tracker migrate-schema` and writes nothing, until the table
    /// exists (created by [`DynamoStore::ensure_schema`], `tracker migrate-schema` or a
    /// store connected with `migrate: true`, in this process or another).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, a missing table (with `migrate: false`,
    /// but for the case above), a table of another layout (Rasa 1.x/2.x's, say), or with
    /// `outbox` on and `migrate: false`, a table without the outbox's index;
    /// [`Error::Unavailable`] when DynamoDB cannot be reached.
    pub async fn connect(config: &DynamoConfig) -> Result<Self> {
        Self::connect_with(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// [`DynamoStore::connect`] with AWS settings of your own (credentials provider, retry
    /// and timeout settings, HTTP client, ...). The configuration's region and endpoint are
    /// applied on top of `loader`.
    ///
    /// ```no_run
    /// use tracker_dynamo::aws_config::{self, BehaviorVersion};
    /// use tracker_dynamo::aws_sdk_dynamodb::config::Credentials;
    /// use tracker_dynamo::{DynamoConfig, DynamoStore};
    ///
    /// # async fn demo() -> tracker_dynamo::tracker_core::Result<()> {
    /// let config = DynamoConfig {
    ///     endpoint_url: Some("http://127.0.0.1:8000".to_owned()),
    ///     ..DynamoConfig::with_table("conversations")
    /// };
    /// let loader = aws_config::defaults(BehaviorVersion::latest())
    ///     .credentials_provider(Credentials::new("test", "test", None, None, "static"));
    /// let store = DynamoStore::connect_with(&config, loader).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DynamoStore::connect`].
    pub async fn connect_with(config: &DynamoConfig, loader: ConfigLoader) -> Result<Self> {
        config.validate()?;
        let store = Self::from_client(config.client(loader).await, config)?;
        if config.migrate {
            for change in store.ensure_schema().await? {
                tracing::info!(table_name = %store.table_name, change, "set up the DynamoDB table");
            }
        } else {
            store.check_schema_for_reading().await?;
        }
        let tables = store.resolved().await?;
        tracing::info!(
            table = %tables.store_table,
            rasa_table = ?tables.rasa_table,
            region = %config.region,
            endpoint = ?config.endpoint_url.as_deref().map(redact_url),
            "connected to the DynamoDB tracker store"
        );
        Ok(store)
    }

    /// A store on a client you built (with the re-exported [`aws_sdk_dynamodb`] crate), for
    /// `config.table_name`, `config.adopt_rasa` and `config.outbox`; the other keys are the
    /// client's business and ignored here. Nothing is sent: the first operation finds the
    /// tables (see [`DynamoStore::tables`]); run [`DynamoStore::ensure_schema`] (or
    /// [`DynamoStore::check_schema`]) once if this store's table may be missing.
    ///
    /// ```
    /// use tracker_dynamo::aws_sdk_dynamodb::{self, config::{BehaviorVersion, Region}};
    /// use tracker_dynamo::{DynamoConfig, DynamoStore};
    ///
    /// let sdk_config = aws_sdk_dynamodb::Config::builder()
    ///     .behavior_version(BehaviorVersion::latest())
    ///     .region(Region::new("eu-west-1"))
    ///     .build();
    /// let client = aws_sdk_dynamodb::Client::from_conf(sdk_config);
    /// let store = DynamoStore::from_client(client, &DynamoConfig::with_table("conversations"))
    ///     .expect("a valid table name");
    /// assert_eq!(store.table_name(), "conversations");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a table name DynamoDB does not accept.
    pub fn from_client(client: Client, config: &DynamoConfig) -> Result<Self> {
        validate_table_name(&config.table_name)?;
        Ok(Self {
            client,
            table_name: Arc::from(config.table_name.as_str()),
            adopt_rasa: config.adopt_rasa,
            outbox: config.outbox,
            page_size: None,
            tables: Arc::new(OnceLock::new()),
            store_table_pending: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Sets the `Limit` of every `Query` and `Scan` this store sends (at least 1; default:
    /// none, i.e. DynamoDB's 1 MB pages). Results are complete either way, as every listing
    /// follows `LastEvaluatedKey`; smaller pages mean more requests. For tests and tuning.
    #[must_use]
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(i32::try_from(items.max(1)).unwrap_or(i32::MAX));
        self
    }

    /// Whether the store keeps an outbox (`outbox`): then [`Store::outbox`] gives it.
    pub fn keeps_outbox(&self) -> bool {
        self.outbox
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configured `table_name`: this store's table, or Rasa's table beside which this
    /// store keeps its own (see [`DynamoStore::tables`]).
    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// The tables behind `table_name`: this store's, and Rasa's it adopts conversations from.
    /// Found with one `DescribeTable` the first time it is needed (by this call, setup or any
    /// operation) and remembered by the store and its clones.
    ///
    /// `table_name` is Rasa's table when it has the key of Rasa's `DynamoTrackerStore`
    /// (`sender_id` only), or when it is Rasa's default `states` and does not exist yet; this
    /// store's table is then [`derived_table_name`](crate::schema::derived_table_name)`(table_name)`,
    /// `states_events` by default. Otherwise `table_name` is this store's table.
    ///
    /// # Errors
    /// [`Error::Config`] when `table_name` is a Rasa 1.x/2.x table or has another key schema;
    /// [`Error::Unavailable`] when DynamoDB cannot be reached.
    pub async fn tables(&self) -> Result<Tables> {
        self.resolved().await.cloned()
    }

    /// Creates this store's table if it does not exist — hash key `sender_id` (string),
    /// range key `seq` (number), on-demand billing — and waits until it is `ACTIVE` (at most
    /// 5 minutes). When `table_name` is Rasa's table, that is the table beside it, and Rasa's
    /// table is left as it is (or missing). With `outbox` on, the table gets the index of
    /// pending conversations ([`schema::OUTBOX_INDEX`]): created with a new table, added to
    /// an existing one that lacks it (DynamoDB builds it in the background; this does not
    /// wait for that). Safe to run concurrently and repeatedly; an existing table's key
    /// schema is checked. Returns a description of each change made: one line when this call
    /// created the table or added the index, none when there was nothing to do (or another
    /// process did it meanwhile).
    ///
    /// # Errors
    /// [`Error::Config`] when a table has a key schema neither this store's nor Rasa's (or
    /// Rasa 1.x/2.x's) or is being deleted, or an index of the outbox's name has another key
    /// schema; [`Error::Unavailable`] when the table does not become active in time.
    pub async fn ensure_schema(&self) -> Result<Vec<String>> {
        let tables = self.resolved().await?;
        let mut changes =
            migrate::ensure_schema(&self.client, &tables.store_table, self.outbox).await?;
        if let Some(rasa_table) = &tables.rasa_table {
            for change in &mut changes {
                change.push_str(&format!(", beside Rasa's table {rasa_table:?}"));
            }
        }
        Ok(changes)
    }

    /// Checks that this store's table exists with its key schema (waiting while it is being
    /// created) and, with `outbox` on, has the index of pending conversations (built or
    /// being built), changing nothing.
    ///
    /// # Errors
    /// [`Error::Config`] when it does not exist, has another key schema, or lacks the index.
    pub async fn check_schema(&self) -> Result<()> {
        let tables = self.resolved().await?;
        migrate::check_schema(&self.client, &tables.store_table, self.outbox).await
    }

    /// [`DynamoStore::check_schema`], except that a missing table beside Rasa's existing
    /// table, when adopting, lets the store connect for reading (see
    /// [`DynamoStore::connect`]). Changes nothing.
    async fn check_schema_for_reading(&self) -> Result<()> {
        let tables = self.resolved().await?;
        if migrate::table_ready(&self.client, &tables.store_table).await? {
            return migrate::check_schema(&self.client, &tables.store_table, self.outbox).await;
        }
        let rasa_table = match &tables.rasa_table {
            Some(rasa_table) if migrate::describe(&self.client, rasa_table).await?.is_some() => {
                rasa_table
            }
            // Nothing to read: the table is needed, as it always is.
            _ => {
                return migrate::check_schema(&self.client, &tables.store_table, self.outbox).await;
            }
        };
        self.store_table_pending.store(true, Ordering::Release);
        tracing::warn!(
            table = %tables.store_table,
            rasa_table = %rasa_table,
            "this store's DynamoDB table does not exist yet: reading the conversations of \
             Rasa's table only, and refusing writes until it is created (`tracker \
             migrate-schema`, or connect with `migrate: true`)"
        );
        Ok(())
    }

    /// Succeeds if the store may write: always, unless it connected before its table
    /// existed; then once the table exists (looked at again on every write until then,
    /// since another process may have created it meanwhile).
    pub(crate) async fn check_writable(&self, operation: &str) -> Result<()> {
        if !self.store_table_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let tables = self.resolved().await?;
        if migrate::table_ready(&self.client, &tables.store_table).await? {
            self.store_table_pending.store(false, Ordering::Release);
            tracing::info!(
                table = %tables.store_table,
                "this store's DynamoDB table exists now: writing to it"
            );
            return Ok(());
        }
        let beside = tables
            .rasa_table
            .as_deref()
            .map(|rasa_table| format!(" beside Rasa's table {rasa_table:?}"))
            .unwrap_or_default();
        Err(Error::config(format!(
            "{operation}: this store's DynamoDB table {:?}{beside} does not exist yet, so \
             the store only reads (nothing was written); create it with `tracker \
             migrate-schema` (or `DynamoStore::ensure_schema()`), or connect once with \
             `migrate: true`",
            tables.store_table
        )))
    }

    /// The tables, found once.
    async fn resolved(&self) -> Result<&Tables> {
        if let Some(tables) = self.tables.get() {
            return Ok(tables);
        }
        let tables = migrate::resolve(&self.client, &self.table_name, self.adopt_rasa).await?;
        Ok(self.tables.get_or_init(|| tables))
    }

    /// The client and tables operations work on.
    pub(crate) async fn db(&self) -> Result<Db<'_>> {
        let tables = self.resolved().await?;
        Ok(Db {
            client: &self.client,
            table: &tables.store_table,
            rasa_table: tables.rasa_table.as_deref(),
            page_size: self.page_size,
            store_table_pending: self.store_table_pending.load(Ordering::Acquire),
            outbox: self.outbox,
        })
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn name(&self) -> &str {
        "dynamo"
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.outbox.then_some(self as &dyn Outbox)
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(MAX_EVENTS_PER_APPEND);
        capabilities.max_event_bytes = Some(MAX_EVENT_BYTES);
        capabilities.max_append_bytes = Some(MAX_APPEND_BYTES);
        capabilities.native_latest_session = true;
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        self.db().await?.version(sender_id.as_str()).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        let items = schema::append_items(append)?;
        self.check_writable(&format!("appending to {:?}", append.sender_id().as_str()))
            .await?;
        append::append(&self.db().await?, append, &items).await
    }

    /// Packs the appends of several conversations into each `TransactWriteItems` (up to
    /// DynamoDB's 100 actions and 4 MB), several transactions in flight at once; see the
    /// crate documentation.
    ///
    /// # Errors
    /// Besides a transaction whose outcome is unknown: the store's table not existing yet
    /// (see [`DynamoStore::connect`]), or Rasa's table not answering for appends to new
    /// conversations, before anything is written.
    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        self.check_writable(&format!("appending to {} conversations", appends.len()))
            .await?;
        batch::append_batch(&self.db().await?, appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let db = self.db().await?;
        let id = sender_id.as_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(head) = db.head(id).await? else {
                // Not in this store's table: Rasa's copy, if it has events.
                return Ok(db
                    .rasa_copy(id)
                    .await?
                    .filter(|copy| copy.version() > 0)
                    .map(|copy| {
                        let from = match scope {
                            ReadScope::LatestSession => latest_session_from(copy.session_start()),
                            ReadScope::All => 1,
                        };
                        StoredConversation {
                            version: copy.version(),
                            events: copy.stored_events(from),
                        }
                    }));
            };
            let from = match scope {
                ReadScope::LatestSession => latest_session_from(head.session_start),
                ReadScope::All => 1,
            };
            if from > head.version {
                return Err(Error::corrupt(
                    id,
                    None,
                    format!(
                        "the head's session start {} is beyond its version {}",
                        head.session_start.unwrap_or_default(),
                        head.version
                    ),
                ));
            }
            let events = db.events(id, from, head.version).await?;
            let complete = events.len() as u64 == head.version - from + 1
                && events
                    .iter()
                    .zip(from..)
                    .all(|(event, seq)| event.seq == seq);
            if complete || attempt >= READ_ATTEMPTS {
                if !complete {
                    tracing::warn!(
                        sender_id = id,
                        version = head.version,
                        read = events.len(),
                        "events are missing below the conversation's version"
                    );
                }
                return Ok(Some(StoredConversation {
                    version: head.version,
                    events,
                }));
            }
            // The conversation was deleted (and maybe created anew) between the two reads.
            tracing::debug!(
                sender_id = id,
                "conversation changed while reading; reading again"
            );
        }
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        list::list(&self.db().await?, request).await
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        self.check_writable(&format!("deleting conversation {:?}", sender_id.as_str()))
            .await?;
        delete::delete(&self.db().await?, sender_id.as_str(), expected).await
    }
}

/// Where a latest-session read starts: at the event before the last `session_started` (the
/// `action_session_start` that opened the session), or at 1.
fn latest_session_from(session_start: Option<u64>) -> u64 {
    session_start.map_or(1, |start| start.saturating_sub(1).max(1))
}
