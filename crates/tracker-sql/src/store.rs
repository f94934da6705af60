//! The store: [`SqlStore`], its constructors and setup, and its [`Store`] implementation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel_async::RunQueryDsl;
use tracker_core::{
    Append, Capabilities, Error, EventData, ExpectedVersion, ListPage, ListRequest, ReadScope,
    Result, SenderId, Store, StoredConversation, StoredEvent, async_trait,
};

use crate::append::version_query;
use crate::config::{Dialect, SqlConfig};
use crate::error::driver_error;
use crate::migrate::Found;
use crate::pool::{Connections, SqlClient, with_connection};
use crate::schema::{Layout, events, missing_seq, to_u64};
use crate::target::Target;

mod append;
mod delete;

/// How often a write transaction the server rolled back to break a deadlock is run.
const TX_ATTEMPTS: usize = 5;

/// A conversation store on PostgreSQL, MySQL/MariaDB or SQLite, in Rasa's `events` table.
/// With `outbox` on, it also keeps an outbox for a relay ([`Store::outbox`]; see the crate
/// README's "Outbox" section).
///
/// Cloning shares the connection pool.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) connections: Connections,
    pub(crate) dialect: Dialect,
    pub(crate) display: String,
    /// What the database holds ([`Layout`]), shared by clones.
    layout: Arc<AtomicU8>,
    /// Whether the store keeps an outbox (`outbox`).
    pub(crate) outbox: bool,
    /// Whether the outbox's table and triggers were seen (or created), shared by clones.
    outbox_ready: Arc<AtomicBool>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect)
            .field("database", &self.display)
            .field("outbox", &self.outbox)
            .finish()
    }
}

diesel::define_sql_function! {
    /// SQL `COALESCE` for a nullable sequence number.
    fn coalesce(value: Nullable<BigInt>, fallback: BigInt) -> BigInt;
}

/// The query reading a conversation's events (`seq`, `data`): all of them, or from the
/// event before the last `session_started` on.
macro_rules! events_query {
    ($sender_id:expr, $scope:expr) => {{
        let id: &str = $sender_id;
        let mut query = events::table
            .filter(events::sender_id.eq(id))
            .select((events::seq, events::data))
            .order(events::seq.asc())
            .into_boxed();
        if $scope == ReadScope::LatestSession {
            let starts = diesel::alias!(events as session_starts);
            // Literal SQL so that the partial index's predicate matches in every plan; the
            // newest by ORDER BY ... LIMIT 1 rather than MAX(), see `version_query`.
            let last_session_started = starts
                .filter(starts.field(events::sender_id).eq(id))
                .filter(sql::<Bool>("session_starts.type_name = 'session_started'"))
                .select(starts.field(events::seq))
                .order(starts.field(events::seq).desc())
                .single_value();
            query = query.filter(
                events::seq
                    .assume_not_null()
                    .ge(coalesce(last_session_started - 1_i64, 1_i64)),
            );
        }
        query
    }};
}

impl SqlStore {
    /// Connects as configured; runs pending migrations ([`SqlStore::ensure_schema`]) when
    /// `config.migrate` is set (the default). With `login_db` (PostgreSQL), connects there
    /// first and creates `db` if it is missing.
    ///
    /// With `migrate` off the store changes nothing: it looks at what the database holds,
    /// reads a table Rasa created and this store never migrated as Rasa does (by `id`),
    /// refuses to write until the table is migrated, and creates no SQLite file (a missing
    /// one holds no conversation until [`SqlStore::ensure_schema`] creates it).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or a dialect this build does not enable,
    /// [`Error::Unsupported`] for a dialect diesel has no backend for (Oracle),
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let target = if config.migrate {
            config.target()?
        } else {
            config.target()?.without_creating()
        };
        let store = Self::build(&target, config.outbox)?;
        if let Some((login_url, database)) = &target.login {
            #[cfg(feature = "postgres")]
            crate::migrate::ensure_postgres_database(login_url, database, target.pool_timeout)
                .await?;
            #[cfg(not(feature = "postgres"))]
            let _ = (login_url, database);
        }
        if !target.sqlite_file_missing() {
            store.check(&target).await?;
        }
        if config.migrate {
            store.ensure_schema().await?;
        } else {
            let found = store.inspect().await?;
            if found.layout != Layout::Sequenced {
                tracing::warn!(
                    store = %store.display,
                    "{}; reading only",
                    not_migrated(found.layout)
                );
            } else if store.outbox && !found.outbox {
                tracing::warn!(store = %store.display, "{}", outbox_missing());
            }
        }
        tracing::info!(store = %store.display, "connected to the SQL tracker store");
        Ok(store)
    }

    /// Connects as configured and changes nothing: no database is created (`login_db` is not
    /// used), no migration is run, whatever `config.migrate` says.
    ///
    /// # Errors
    /// As [`SqlStore::connect`].
    pub(crate) async fn connect_unchanged(config: &SqlConfig) -> Result<Self> {
        let target = config.target()?.without_creating();
        if target.sqlite_file_missing() {
            return Err(Error::config(format!(
                "the SQLite database {} does not exist",
                target.display
            )));
        }
        let store = Self::build(&target, config.outbox)?;
        store.check(&target).await?;
        Ok(store)
    }

    /// A store on an existing pool of any enabled dialect (a `PgPool`, `MysqlPool` or
    /// `SqlitePool`, or a [`SqlClient`]). Of `config` only `query_timeout` and `outbox` are
    /// used: the pool brings its own connections, dialect and pool settings. Touches no
    /// server: run [`SqlStore::ensure_schema`] once before writing if the schema (or, with
    /// `outbox`, the outbox) may be missing or old (until then the store reads the database as
    /// it finds it, as with `migrate: false`).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero `query_timeout`.
    pub fn from_client(client: impl Into<SqlClient>, config: &SqlConfig) -> Result<Self> {
        if config.query_timeout.is_zero() {
            return Err(Error::config("`query_timeout` must be more than zero"));
        }
        let client = client.into();
        let dialect = client.dialect();
        Ok(Self {
            connections: Connections::from_client(client, config.query_timeout),
            dialect,
            display: format!("{dialect} (existing pool)"),
            layout: Arc::new(AtomicU8::new(Layout::Unknown.to_u8())),
            outbox: config.outbox,
            outbox_ready: Arc::default(),
        })
    }

    fn build(target: &Target, outbox: bool) -> Result<Self> {
        Ok(Self {
            connections: Connections::build(target)?,
            dialect: target.dialect,
            display: target.display.clone(),
            layout: Arc::new(AtomicU8::new(Layout::Unknown.to_u8())),
            outbox,
            outbox_ready: Arc::default(),
        })
    }

    /// Looks at what the database holds (without changing anything) and remembers it.
    async fn inspect(&self) -> Result<Found> {
        let found = crate::migrate::inspect(&self.connections, &self.display).await?;
        self.layout.store(found.layout.to_u8(), Ordering::Relaxed);
        if found.outbox {
            self.outbox_ready.store(true, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// The layout to read: as last seen, looked at again while unknown or absent (Rasa may
    /// create its table at any time).
    async fn layout(&self) -> Result<Layout> {
        match Layout::from_u8(AtomicU8::load(&self.layout, Ordering::Relaxed)) {
            layout @ (Layout::Sequenced | Layout::Rasa) => Ok(layout),
            Layout::Unknown | Layout::Absent => Ok(self.inspect().await?.layout),
        }
    }

    /// Succeeds if the store may write: the table is migrated and, with `outbox` on, the
    /// outbox's table and triggers exist, so that no event is stored without being recorded
    /// for the relay (looked at again if not, since another process may have migrated it
    /// meanwhile).
    pub(crate) async fn check_writable(&self) -> Result<()> {
        let migrated =
            Layout::from_u8(AtomicU8::load(&self.layout, Ordering::Relaxed)) == Layout::Sequenced;
        if migrated && (!self.outbox || AtomicBool::load(&self.outbox_ready, Ordering::Relaxed)) {
            return Ok(());
        }
        let found = self.inspect().await?;
        if found.layout != Layout::Sequenced {
            return Err(Error::config(format!(
                "{}: {}; this store writes only to a migrated table: run `tracker \
                 migrate-schema`, or connect once with `migrate: true`",
                self.display,
                not_migrated(found.layout)
            )));
        }
        if self.outbox && !found.outbox {
            return Err(Error::config(format!(
                "{}: {}",
                self.display,
                outbox_missing()
            )));
        }
        Ok(())
    }

    /// Succeeds if the store keeps an outbox and its table and triggers exist (looked at
    /// again if they were not seen yet).
    pub(crate) async fn require_outbox(&self) -> Result<()> {
        if !self.outbox {
            return Err(Error::config(format!(
                "{}: the store keeps no outbox: set `outbox: true` in its configuration",
                self.display
            )));
        }
        if AtomicBool::load(&self.outbox_ready, Ordering::Relaxed) || self.inspect().await?.outbox {
            return Ok(());
        }
        Err(Error::config(format!(
            "{}: {}",
            self.display,
            outbox_missing()
        )))
    }

    /// Whether the store keeps an outbox (`outbox`): then [`Store::outbox`] gives it.
    pub fn keeps_outbox(&self) -> bool {
        self.outbox
    }

    /// Checks that the server answers and, on PostgreSQL, that the configured schema exists.
    async fn check(&self, target: &Target) -> Result<()> {
        self.check_connection().await?;
        #[cfg(feature = "postgres")]
        if let (SqlClient::Postgres(pool), Some(schema)) =
            (&self.connections.client, &target.schema)
        {
            crate::migrate::check_postgres_schema(pool, schema).await?;
        }
        #[cfg(not(feature = "postgres"))]
        let _ = target;
        Ok(())
    }

    /// The dialect this store speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The longest one operation may wait for a PostgreSQL or MySQL server once it has a
    /// connection ([`SqlConfig::query_timeout`]).
    pub fn query_timeout(&self) -> Duration {
        self.connections.query_timeout
    }

    /// The store with another query timeout (see [`SqlStore::query_timeout`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a zero timeout.
    pub fn with_query_timeout(mut self, timeout: Duration) -> Result<Self> {
        if timeout.is_zero() {
            return Err(Error::invalid_input(
                "the query timeout must be more than zero",
            ));
        }
        self.connections.query_timeout = timeout;
        Ok(self)
    }

    #[allow(irrefutable_let_patterns)]
    async fn check_connection(&self) -> Result<()> {
        with_connection!(self.connections, "connecting to the database", |conn| {
            diesel::sql_query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(|e| driver_error("connecting to the database", e))?;
        });
        Ok(())
    }

    /// Creates or upgrades the schema — the only place the store changes it: Rasa's `events`
    /// table (kept as is when Rasa created it), then the sequence column, its unique
    /// constraint and the indexes, numbering the existing events of each conversation in
    /// Rasa's order, and the trigger that numbers rows Rasa inserts; on an SQLite file, WAL
    /// journal mode; with `outbox` on, the outbox's table `tracker_outbox` and its triggers
    /// on `events` (whatever of them is missing). Safe to run concurrently and repeatedly.
    /// Returns what it changed: the migrations applied now, the journal mode set and the
    /// outbox created (empty when the schema was current).
    ///
    /// # Errors
    /// [`Error::Config`] for a MySQL server older than 8.0 or a MariaDB older than 10.2
    /// (nothing is changed then), [`Error::Unavailable`] when the server cannot be reached,
    /// [`Error::Backend`] when a migration fails.
    pub async fn ensure_schema(&self) -> Result<Vec<String>> {
        let applied = crate::migrate::run(&self.connections, self.outbox).await?;
        self.layout
            .store(Layout::Sequenced.to_u8(), Ordering::Relaxed);
        if self.outbox {
            self.outbox_ready.store(true, Ordering::Relaxed);
        }
        if !applied.is_empty() {
            tracing::info!(store = %self.display, changes = ?applied, "changed the schema");
        }
        Ok(applied)
    }

    pub(crate) async fn current_version(&self, sender_id: &SenderId) -> Result<u64> {
        let context = "reading a conversation's version";
        let version: Option<Option<i64>> = with_connection!(self.connections, context, |conn| {
            version_query!(sender_id.as_str())
                .first(&mut *conn)
                .await
                .optional()
                .map_err(|e| driver_error(context, e))?
        });
        match version {
            None => Ok(0),
            Some(seq) => to_u64(sender_id, seq),
        }
    }

    /// PostgreSQL's `EXPLAIN ANALYZE` of the query a read with `scope` runs, one line per
    /// plan line. For checking that latest-session reads use the indexes.
    #[cfg(feature = "postgres")]
    #[doc(hidden)]
    #[allow(irrefutable_let_patterns)]
    pub async fn explain_read(&self, sender_id: &str, scope: ReadScope) -> Result<Vec<String>> {
        let SqlClient::Postgres(pool) = &self.connections.client else {
            return Err(Error::unsupported(self.dialect.name(), "EXPLAIN"));
        };
        let mut conn = crate::pool::acquire(pool, "explain").await?;
        crate::explain::Explain(events_query!(sender_id, scope))
            .load::<String>(&mut *conn)
            .await
            .map_err(|e| driver_error("explain", e))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn name(&self) -> &str {
        self.dialect.name()
    }

    fn outbox(&self) -> Option<&dyn tracker_core::outbox::Outbox> {
        self.outbox
            .then_some(self as &dyn tracker_core::outbox::Outbox)
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.native_latest_session = true;
        capabilities.max_event_bytes = Some(match self.dialect {
            // PostgreSQL TEXT: 1 GB; MySQL LONGTEXT: 4 GB (bounded by max_allowed_packet);
            // SQLite: 1 GB by default.
            Dialect::Postgres | Dialect::Sqlite => 1_000_000_000,
            Dialect::Mysql => 1_000_000_000,
        });
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        match self.layout().await? {
            Layout::Rasa => crate::unmigrated::count(&self.connections, sender_id.as_str()).await,
            Layout::Absent => Ok(0),
            Layout::Sequenced | Layout::Unknown => self.current_version(sender_id).await,
        }
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        self.append_one(append).await
    }

    /// Many conversations in one transaction, committed once, with statements that each
    /// cover many conversations (see the crate README's "How it works"); each append is still
    /// checked against its own version and written whole or not at all.
    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        self.append_many(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        match self.layout().await? {
            Layout::Rasa => {
                return crate::unmigrated::read(&self.connections, sender_id.as_str(), scope).await;
            }
            Layout::Absent => return Ok(None),
            Layout::Sequenced | Layout::Unknown => {}
        }
        let context = "reading a conversation";
        let id = sender_id.as_str();
        // SQLite's `seq` may be NULL (a row inserted while the numbering trigger was
        // missing); a latest-session read does not reach such a row, so look for one (one
        // index entry: NULLs come first).
        let nullable_seq = self.dialect == Dialect::Sqlite && scope == ReadScope::LatestSession;
        let (rows, unnumbered): (Vec<(Option<i64>, Option<String>)>, Option<i64>) =
            with_connection!(self.connections, context, |conn| {
                let rows = events_query!(id, scope)
                    .load(&mut *conn)
                    .await
                    .map_err(|e| driver_error(context, e))?;
                let unnumbered = if nullable_seq {
                    events::table
                        .filter(events::sender_id.eq(id))
                        .filter(events::seq.is_null())
                        .select(events::id)
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(|e| driver_error(context, e))?
                } else {
                    None
                };
                (rows, unnumbered)
            });
        if unnumbered.is_some() {
            return Err(missing_seq(sender_id));
        }
        let Some(&(last, _)) = rows.last() else {
            return Ok(None);
        };
        // ORDER BY seq puts a NULL first on MySQL and SQLite: name it before any gap.
        if rows.iter().any(|(seq, _)| seq.is_none()) {
            return Err(missing_seq(sender_id));
        }
        let events = rows
            .into_iter()
            .map(|(seq, data)| {
                let seq = to_u64(sender_id, seq)?;
                let text = data.ok_or_else(|| {
                    Error::corrupt(id, Some(seq), "the row's `data` column is NULL")
                })?;
                Ok(StoredEvent {
                    seq,
                    data: EventData::Text(text),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(StoredConversation {
            version: to_u64(sender_id, last)?,
            events,
        }))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let context = "listing conversations";
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX - 1);
        match self.layout().await? {
            Layout::Rasa => {
                let sender_ids = crate::unmigrated::sender_ids(
                    &self.connections,
                    request.cursor.as_deref(),
                    Some(limit + 1),
                    crate::unmigrated::Bound::QueryTimeout,
                )
                .await?;
                return Ok(ListPage::from_lookahead(sender_ids, request.limit));
            }
            Layout::Absent => return Ok(ListPage::from_lookahead(Vec::new(), request.limit)),
            Layout::Sequenced | Layout::Unknown => {}
        }
        let sender_ids: Vec<String> = with_connection!(self.connections, context, |conn| {
            // One row per conversation: its first event. Literal SQL so that the partial
            // index's predicate matches in every plan.
            let mut query = events::table
                .filter(sql::<Bool>("seq = 1"))
                .select(events::sender_id)
                .order(events::sender_id.asc())
                .limit(limit + 1)
                .into_boxed();
            if let Some(cursor) = &request.cursor {
                query = query.filter(events::sender_id.gt(cursor.as_str()));
            }
            query
                .load(&mut *conn)
                .await
                .map_err(|e| driver_error(context, e))?
        });
        Ok(ListPage::from_lookahead(sender_ids, request.limit))
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        self.delete_one(sender_id, expected).await
    }
}

/// Why a store with `outbox` on may not write or relay.
fn outbox_missing() -> String {
    format!(
        "`outbox` is on but the database has no outbox (the `{}` table and its triggers on \
         `events`): run `tracker migrate-schema` with `outbox: true`, or connect once with \
         `migrate: true`",
        crate::schema::OUTBOX_TABLE
    )
}

/// Why a store may not write to a database it found in `layout`.
fn not_migrated(layout: Layout) -> &'static str {
    match layout {
        Layout::Absent => "the database has no `events` table",
        Layout::Rasa => {
            "the `events` table is Rasa's, not migrated for this store (it has no `seq` column)"
        }
        Layout::Sequenced | Layout::Unknown => "the `events` table is not migrated",
    }
}
