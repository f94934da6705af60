//! The store implementation.

use std::fmt;
use std::time::Duration;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use diesel_async::pooled_connection::ManagerConfig;
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
use tracker_core::{
    Append, Capabilities, Error, EventData, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, StoredEvent, async_trait,
};

use crate::config::{DEFAULT_QUERY_TIMEOUT, Dialect, SqlConfig, Target};
use crate::error::{is_seq_conflict, pool_error, query_error};
use crate::schema::events;

#[cfg(feature = "mysql")]
use diesel_async::AsyncMysqlConnection;
#[cfg(feature = "postgres")]
use diesel_async::AsyncPgConnection;

/// An SQLite connection usable from async code (diesel's connection on a blocking thread).
#[cfg(feature = "sqlite")]
pub type SqliteConnection =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

/// A pool of PostgreSQL connections.
#[cfg(feature = "postgres")]
pub type PgPool = DeadPool<AsyncPgConnection>;
/// A pool of MySQL / MariaDB connections.
#[cfg(feature = "mysql")]
pub type MysqlPool = DeadPool<AsyncMysqlConnection>;
/// A pool of SQLite connections.
#[cfg(feature = "sqlite")]
pub type SqlitePool = DeadPool<SqliteConnection>;

/// Rows per INSERT statement: far below every dialect's bound-parameter limit.
pub(crate) const INSERT_CHUNK: usize = 1_000;

#[derive(Clone)]
pub(crate) enum Pool {
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    #[cfg(feature = "mysql")]
    Mysql(MysqlPool),
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
}

/// A conversation store on PostgreSQL, MySQL/MariaDB or SQLite, in Rasa's `events` table.
///
/// Cloning shares the connection pool.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: Pool,
    dialect: Dialect,
    display: String,
    pub(crate) query_timeout: Duration,
    /// What this store's PostgreSQL connections were made with, for cancel requests.
    #[cfg(feature = "postgres")]
    pg_connector: Option<std::sync::Arc<crate::tls::PgConnector>>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect)
            .field("database", &self.display)
            .finish()
    }
}

/// A new row of the `events` table.
#[derive(Insertable)]
#[diesel(table_name = events)]
pub(crate) struct NewEvent {
    pub(crate) sender_id: String,
    type_name: String,
    timestamp: Option<f64>,
    intent_name: Option<String>,
    action_name: Option<String>,
    data: Option<String>,
    seq: i64,
}

fn new_rows(append: &Append) -> Result<Vec<NewEvent>> {
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
                seq: to_i64(record.seq)?,
            })
        })
        .collect()
}

/// Rasa's `VARCHAR(255)` columns hold 255 characters: reject longer names up front instead of
/// failing in the database.
fn check_column_widths(append: &Append) -> Result<()> {
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

fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::invalid_input(format!("version {value} is beyond the SQL range")))
}

fn to_u64(sender_id: &SenderId, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        Error::corrupt(
            sender_id.as_str(),
            None,
            format!("negative sequence number {value}"),
        )
    })
}

diesel::define_sql_function! {
    /// SQL `COALESCE` for a nullable sequence number.
    fn coalesce(value: Nullable<BigInt>, fallback: BigInt) -> BigInt;
}

/// Why an append transaction did not commit.
pub(crate) enum TxError {
    /// The conversation is at this version, not the expected one.
    Stale(u64),
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

/// A pool's connection manager whose every connection is made by `connect` with the one
/// `connector` the store built (its TLS settings and certificate files, read once).
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn manager<C, K, F, Connect>(
    url: &str,
    connector: std::sync::Arc<K>,
    connect: F,
) -> AsyncDieselConnectionManager<C>
where
    C: AsyncConnection + 'static,
    K: Send + Sync + 'static,
    F: Fn(std::sync::Arc<K>) -> Connect + Send + Sync + 'static,
    Connect: Future<Output = diesel::ConnectionResult<C>> + Send + 'static,
{
    let mut config = ManagerConfig::<C>::default();
    config.custom_setup = Box::new(move |_url| Box::pin(connect(connector.clone())));
    AsyncDieselConnectionManager::new_with_config(url, config)
}

/// Builds a deadpool of `max_size` connections from a manager, every wait bounded by
/// `timeout`: for a free connection, for a new one, and for checking an idle one.
macro_rules! build_pool {
    ($manager:expr, $target:expr) => {
        DeadPool::builder($manager)
            .max_size($target.pool_size)
            .wait_timeout(Some($target.pool_timeout))
            .create_timeout(Some($target.pool_timeout))
            .recycle_timeout(Some($target.pool_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config_with("building the connection pool", e))?
    };
}

/// Takes a connection from `pool`. The whole wait, however many idle connections fail their
/// check on the way, is bounded by the pool's wait timeout ([`SqlConfig::pool_timeout`] for
/// pools this crate builds): past it, the error is a temporary [`Error::Unavailable`].
pub(crate) async fn acquire<M>(
    pool: &deadpool::managed::Pool<M>,
    context: &str,
) -> Result<deadpool::managed::Object<M>>
where
    M: deadpool::managed::Manager<Error = diesel_async::pooled_connection::PoolError>,
{
    let connection = match pool.timeouts().wait {
        Some(bound) => tokio::time::timeout(bound, pool.get())
            .await
            .map_err(|elapsed| {
                Error::unavailable(
                    format!("{context}: no connection within {bound:?}"),
                    elapsed,
                )
            })?,
        None => pool.get().await,
    };
    connection.map_err(|e| pool_error(context, e))
}

/// Evaluates `$body` (a `Result` future using the pooled connection `$conn` of a server
/// dialect) within `$bound`. Past it, the connection is dropped rather than returned to the
/// pool, since what it was doing is unknown, and `$cancel` (a future) asks the server to
/// cancel the statement, so that the session stops waiting and rolls back what it left open.
/// The error is then a temporary [`Error::Unavailable`](tracker_core::Error::Unavailable).
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! bounded {
    ($bound:expr, $conn:ident, $context:expr, $cancel:expr, $body:expr) => {{
        let bound: std::time::Duration = $bound;
        // Made before the body borrows the connection; sent only on a timeout.
        let cancel = $cancel;
        match tokio::time::timeout(bound, $body).await {
            Ok(result) => result,
            Err(elapsed) => {
                drop(::deadpool::managed::Object::take($conn));
                tokio::spawn(cancel);
                Err(tracker_core::Error::unavailable(
                    format!("{}: no answer within {bound:?}", $context),
                    elapsed,
                ))
            }
        }
    }};
}
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use bounded;

/// Runs `$body` with `$conn` bound to a pooled connection of whichever dialect the store
/// uses. The body is the same diesel code for every dialect. On PostgreSQL and MySQL the
/// body is bounded by the store's query timeout, or by none with `unbounded` (for bulk
/// reads such as those of a Rasa table); SQLite has no server to wait for (its lock waits
/// are bounded by its busy timeout), and dropping an in-memory database's only connection
/// would lose the database.
macro_rules! with_connection {
    ($store:expr, $context:expr, |$conn:ident| $body:expr) => {
        crate::store::with_connection!($store, $context, Some($store.query_timeout), |$conn| $body)
    };
    ($store:expr, $context:expr, unbounded, |$conn:ident| $body:expr) => {
        crate::store::with_connection!($store, $context, None, |$conn| $body)
    };
    ($store:expr, $context:expr, $bound:expr, |$conn:ident| $body:expr) => {
        match &$store.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let mut $conn = crate::store::acquire(pool, $context).await?;
                let bound: Option<std::time::Duration> = $bound;
                crate::store::bounded!(
                    bound.unwrap_or(std::time::Duration::MAX),
                    $conn,
                    $context,
                    $store.pg_cancel(&$conn),
                    async { Ok::<_, tracker_core::Error>($body) }
                )?
            }
            #[cfg(feature = "mysql")]
            Pool::Mysql(pool) => {
                let mut $conn = crate::store::acquire(pool, $context).await?;
                let bound: Option<std::time::Duration> = $bound;
                crate::store::bounded!(
                    bound.unwrap_or(std::time::Duration::MAX),
                    $conn,
                    $context,
                    crate::store::SqlStore::mysql_cancel(&$conn),
                    async { Ok::<_, tracker_core::Error>($body) }
                )?
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let mut $conn = crate::store::acquire(pool, $context).await?;
                $body
            }
        }
    };
}
pub(crate) use with_connection;

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
            query = query.filter(events::seq.ge(coalesce(last_session_started - 1_i64, 1_i64)));
        }
        query
    }};
}

/// The query for a conversation's version: its highest sequence number, read with `.first()`
/// (`LIMIT 1`) and `.optional()`. `ORDER BY seq DESC LIMIT 1` reads one index entry in every
/// plan; `MAX(seq)` does too only when the planner rewrites it, and a prepared statement's
/// generic plan made while the table was small aggregates every row of the conversation
/// instead (seen on PostgreSQL: saves grew slower with the conversation's length).
macro_rules! version_query {
    ($sender_id:expr) => {
        events::table
            .filter(events::sender_id.eq($sender_id))
            .select(events::seq)
            .order(events::seq.desc())
    };
}

/// The append transaction for dialects with async drivers: check the version, insert the
/// rows. The unique `(sender_id, seq)` constraint guards the gap between the check and the
/// insert.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! append_in_transaction {
    ($conn:expr, $append:expr, $rows:expr) => {{
        let sender_id = $append.sender_id().as_str();
        let expected = $append.expected_version();
        let rows: &[NewEvent] = $rows;
        $conn
            .transaction::<(), TxError, _>(async |conn| {
                let current: Option<i64> =
                    version_query!(sender_id).first(conn).await.optional()?;
                let current = u64::try_from(current.unwrap_or(0)).unwrap_or(0);
                if current != expected {
                    return Err(TxError::Stale(current));
                }
                for chunk in rows.chunks(INSERT_CHUNK) {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
    }};
}

impl SqlStore {
    /// Connects as configured; runs pending migrations when `config.migrate` is set (the
    /// default). With `login_db` (PostgreSQL), connects there first and creates `db` if it is
    /// missing.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::Unsupported`] for a dialect
    /// diesel has no backend for (Oracle), [`Error::Unavailable`] when the server cannot be
    /// reached.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let target = config.target()?;
        let store = Self::build(&target)?;
        if let Some((login_url, database)) = &target.login {
            #[cfg(feature = "postgres")]
            crate::migrate::ensure_postgres_database(login_url, database, target.pool_timeout)
                .await?;
            #[cfg(not(feature = "postgres"))]
            let _ = (login_url, database);
        }
        store.check_connection().await?;
        #[cfg(feature = "postgres")]
        if let (Pool::Postgres(pool), Some(schema)) = (&store.pool, &target.schema) {
            crate::migrate::check_postgres_schema(pool, schema).await?;
        }
        if config.migrate {
            store.migrate().await?;
        }
        tracing::info!(store = %store.display, "connected to the SQL tracker store");
        Ok(store)
    }

    fn build(target: &Target) -> Result<Self> {
        // Set by the PostgreSQL arm; built with only that dialect, nothing else reads `None`.
        #[cfg(feature = "postgres")]
        #[allow(unused_assignments)]
        let mut pg_connector = None;
        let pool = match target.dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => {
                // Every connection through one connector: libpq's `sslmode` and certificate
                // files, read once here.
                let connector =
                    std::sync::Arc::new(crate::tls::PgConnector::from_url(&target.url)?);
                pg_connector = Some(connector.clone());
                let manager = manager(&target.url, connector, |connector| async move {
                    connector.connect().await
                });
                Pool::Postgres(build_pool!(manager, target))
            }
            #[cfg(feature = "mysql")]
            Dialect::Mysql => {
                // Every connection through one connector: the MySQL client's `ssl_*`
                // parameters and certificate files, read once here.
                let connector =
                    std::sync::Arc::new(crate::mysql_tls::MysqlConnector::from_url(&target.url)?);
                let manager = manager(&target.url, connector, |connector| async move {
                    connector.connect().await
                });
                Pool::Mysql(build_pool!(manager, target))
            }
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => {
                let mut manager_config = ManagerConfig::<SqliteConnection>::default();
                manager_config.custom_setup = Box::new(crate::migrate::establish_sqlite);
                let manager = AsyncDieselConnectionManager::<SqliteConnection>::new_with_config(
                    &target.url,
                    manager_config,
                );
                Pool::Sqlite(build_pool!(manager, target))
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::config(format!(
                    "tracker-sql was built without the `{other}` feature"
                )));
            }
        };
        Ok(Self {
            pool,
            dialect: target.dialect,
            display: target.display.clone(),
            query_timeout: target.query_timeout,
            #[cfg(feature = "postgres")]
            pg_connector,
        })
    }

    /// A store on an existing PostgreSQL pool. Run [`SqlStore::migrate`] once before use if
    /// the schema may be missing or old.
    #[cfg(feature = "postgres")]
    pub fn from_pg_pool(pool: PgPool) -> Self {
        Self {
            pool: Pool::Postgres(pool),
            dialect: Dialect::Postgres,
            display: "postgres (existing pool)".to_owned(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            #[cfg(feature = "postgres")]
            pg_connector: None,
        }
    }

    /// A store on an existing MySQL / MariaDB pool.
    #[cfg(feature = "mysql")]
    pub fn from_mysql_pool(pool: MysqlPool) -> Self {
        Self {
            pool: Pool::Mysql(pool),
            dialect: Dialect::Mysql,
            display: "mysql (existing pool)".to_owned(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            #[cfg(feature = "postgres")]
            pg_connector: None,
        }
    }

    /// A store on an existing SQLite pool.
    #[cfg(feature = "sqlite")]
    pub fn from_sqlite_pool(pool: SqlitePool) -> Self {
        Self {
            pool: Pool::Sqlite(pool),
            dialect: Dialect::Sqlite,
            display: "sqlite (existing pool)".to_owned(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            #[cfg(feature = "postgres")]
            pg_connector: None,
        }
    }

    /// The dialect this store speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// What cancels, on the server, the statement `conn` is running: a cancel request made
    /// like this store's connections (plaintext for a store on an existing pool).
    #[cfg(feature = "postgres")]
    pub(crate) fn pg_cancel(
        &self,
        conn: &AsyncPgConnection,
    ) -> impl Future<Output = ()> + Send + 'static {
        let token = conn.cancel_token();
        let connector = self.pg_connector.clone();
        async move {
            match connector {
                Some(connector) => connector.cancel(token).await,
                None => {
                    if let Err(error) = token.cancel_query(tokio_postgres::NoTls).await {
                        tracing::debug!(%error, "could not cancel a timed-out statement");
                    }
                }
            }
        }
    }

    /// What cancels, on the server, the statement `conn` is running: `KILL QUERY` over a
    /// new connection with the same options.
    #[cfg(feature = "mysql")]
    pub(crate) fn mysql_cancel(
        conn: &AsyncMysqlConnection,
    ) -> impl Future<Output = ()> + Send + 'static {
        let token = conn.cancel_token();
        async move {
            if let Err(error) = token.cancel_query().await {
                tracing::debug!(%error, "could not cancel a timed-out statement");
            }
        }
    }

    /// The longest one operation may wait for a PostgreSQL or MySQL server once it has a
    /// connection ([`SqlConfig::query_timeout`]; [`DEFAULT_QUERY_TIMEOUT`] for a store on an
    /// existing pool).
    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
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
        self.query_timeout = timeout;
        Ok(self)
    }

    #[allow(irrefutable_let_patterns)]
    async fn check_connection(&self) -> Result<()> {
        with_connection!(self, "connecting to the database", |conn| {
            diesel::sql_query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(|e| query_error("connecting to the database", e))?;
        });
        Ok(())
    }

    /// Creates or upgrades the schema: Rasa's `events` table (kept as is when Rasa created
    /// it), then the sequence column, its unique constraint and the indexes, numbering the
    /// existing events of each conversation in Rasa's order. Safe to run concurrently and
    /// repeatedly. Returns the migrations applied now.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let applied = match &self.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => crate::migrate::postgres(pool).await?,
            #[cfg(feature = "mysql")]
            Pool::Mysql(pool) => crate::migrate::mysql(pool).await?,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => crate::migrate::sqlite(pool).await?,
        };
        if !applied.is_empty() {
            tracing::info!(store = %self.display, migrations = ?applied, "applied schema migrations");
        }
        Ok(applied)
    }

    async fn current_version(&self, sender_id: &SenderId) -> Result<u64> {
        let context = "reading a conversation's version";
        let version: Option<i64> = with_connection!(self, context, |conn| {
            version_query!(sender_id.as_str())
                .first(&mut *conn)
                .await
                .optional()
                .map_err(|e| query_error(context, e))?
        });
        to_u64(sender_id, version.unwrap_or(0))
    }

    /// PostgreSQL's `EXPLAIN ANALYZE` of the query a read with `scope` runs, one line per
    /// plan line. For checking that latest-session reads use the indexes.
    #[cfg(feature = "postgres")]
    #[doc(hidden)]
    #[allow(irrefutable_let_patterns)]
    pub async fn explain_read(&self, sender_id: &str, scope: ReadScope) -> Result<Vec<String>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Err(Error::unsupported(self.dialect.name(), "EXPLAIN"));
        };
        let mut conn = acquire(pool, "explain").await?;
        crate::explain::Explain(events_query!(sender_id, scope))
            .load::<String>(&mut *conn)
            .await
            .map_err(|e| query_error("explain", e))
    }

    fn finish_append(
        &self,
        append: &Append,
        outcome: std::result::Result<(), TxError>,
    ) -> std::result::Result<u64, Option<Error>> {
        match outcome {
            Ok(()) => Ok(append.new_version()),
            Err(TxError::Stale(actual)) => Err(Some(Error::conflict(
                append.sender_id().as_str(),
                append.expected_version(),
                actual,
            ))),
            // Another writer stored the same position first: report its version.
            Err(TxError::Query(error)) if is_seq_conflict(&error) => Err(None),
            Err(TxError::Query(error)) => Err(Some(query_error("appending events", error))),
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn name(&self) -> &str {
        self.dialect.name()
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
        self.current_version(sender_id).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        check_column_widths(append)?;
        let rows = new_rows(append)?;
        let context = "appending events";
        let outcome = match &self.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let mut conn = acquire(pool, context).await?;
                bounded!(
                    self.query_timeout,
                    conn,
                    context,
                    self.pg_cancel(&conn),
                    async { Ok(append_in_transaction!(conn, append, &rows)) }
                )?
            }
            #[cfg(feature = "mysql")]
            Pool::Mysql(pool) => {
                let mut conn = acquire(pool, context).await?;
                bounded!(
                    self.query_timeout,
                    conn,
                    context,
                    Self::mysql_cancel(&conn),
                    async { Ok(append_in_transaction!(conn, append, &rows)) }
                )?
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let mut conn = acquire(pool, context).await?;
                crate::sqlite::append(&mut conn, append.expected_version(), rows).await
            }
        };
        match self.finish_append(append, outcome) {
            Ok(version) => Ok(version),
            Err(Some(error)) => Err(error),
            Err(None) => {
                let actual = self.current_version(append.sender_id()).await?;
                Err(Error::conflict(
                    append.sender_id().as_str(),
                    append.expected_version(),
                    actual,
                ))
            }
        }
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let context = "reading a conversation";
        let id = sender_id.as_str();
        let rows: Vec<(i64, Option<String>)> = with_connection!(self, context, |conn| {
            events_query!(id, scope)
                .load(&mut *conn)
                .await
                .map_err(|e| query_error(context, e))?
        });
        let Some(&(last, _)) = rows.last() else {
            return Ok(None);
        };
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
        let sender_ids: Vec<String> = with_connection!(self, context, |conn| {
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
                .map_err(|e| query_error(context, e))?
        });
        Ok(ListPage::from_lookahead(sender_ids, request.limit))
    }

    async fn delete(&self, sender_id: &SenderId) -> Result<bool> {
        let context = "deleting a conversation";
        let deleted = with_connection!(self, context, |conn| {
            diesel::delete(events::table.filter(events::sender_id.eq(sender_id.as_str())))
                .execute(&mut *conn)
                .await
                .map_err(|e| query_error(context, e))?
        });
        Ok(deleted > 0)
    }
}
