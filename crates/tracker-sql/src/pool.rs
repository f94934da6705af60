//! Connection pools: their types per dialect, how this crate builds them, taking a connection
//! within the pool's timeout, and running statements within the query timeout.

use std::fmt;
use std::time::Duration;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::AsyncConnection;
#[cfg(feature = "mysql")]
use diesel_async::AsyncMysqlConnection;
#[cfg(feature = "postgres")]
use diesel_async::AsyncPgConnection;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use diesel_async::pooled_connection::{ManagerConfig, RecyclingMethod};
use tracker_core::{Error, Result};

use crate::config::Dialect;
use crate::error::pool_error;
use crate::target::Target;

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

/// A diesel-async connection pool of one of the dialects this build enables, for
/// [`SqlStore::from_client`](crate::SqlStore::from_client). Each pool type converts into it
/// with `From`.
#[derive(Clone)]
#[non_exhaustive]
pub enum SqlClient {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    /// MySQL or MariaDB.
    #[cfg(feature = "mysql")]
    Mysql(MysqlPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
}

impl SqlClient {
    /// The dialect the pool's connections speak.
    pub fn dialect(&self) -> Dialect {
        match *self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            Self::Mysql(_) => Dialect::Mysql,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

impl fmt::Debug for SqlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlClient").field(&self.dialect()).finish()
    }
}

#[cfg(feature = "postgres")]
impl From<PgPool> for SqlClient {
    fn from(pool: PgPool) -> Self {
        Self::Postgres(pool)
    }
}

#[cfg(feature = "mysql")]
impl From<MysqlPool> for SqlClient {
    fn from(pool: MysqlPool) -> Self {
        Self::Mysql(pool)
    }
}

#[cfg(feature = "sqlite")]
impl From<SqlitePool> for SqlClient {
    fn from(pool: SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

/// A store's pool, the bound on its statements, and what cancels a statement past it.
#[derive(Clone)]
pub(crate) struct Connections {
    pub(crate) client: SqlClient,
    /// The longest one operation waits for a PostgreSQL or MySQL server.
    pub(crate) query_timeout: Duration,
    /// What this store's PostgreSQL connections were made with, for cancel requests; `None`
    /// for a pool this crate did not build.
    #[cfg(feature = "postgres")]
    pg_connector: Option<std::sync::Arc<crate::tls::PgConnector>>,
    /// An SQLite file the pool opens without creating it: its path, created only by
    /// `ensure_schema`.
    pub(crate) sqlite_file: Option<String>,
    /// SQLite has one writer at a time: this store's writers take turns here, in the order
    /// they came (a fair lock), before they take a connection, instead of polling SQLite's
    /// lock from several connections (its busy handler sleeps between tries, and a writer can
    /// lose every try). The busy timeout still bounds waits for other processes' writers.
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A pooled connection idle for longer than this is checked with a query (`SELECT 1`) before
/// it is handed out, and replaced if the check fails; one used more recently is handed out
/// after the checks that need no round trip (no broken transaction; on PostgreSQL, the socket
/// still open). A check per operation would double the round trips of every append and read;
/// a connection that failed its operation is not returned to the pool (`bounded!`).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const VERIFY_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A pool's connection manager whose every connection is made by `connect` with the one
/// `connector` the store built (its TLS settings and certificate files, read once). It checks
/// a connection it takes back for reuse without a round trip; the pool's `pre_recycle` hook
/// ([`verify_idle`]) queries the idle ones.
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
    config.recycling_method = RecyclingMethod::Fast;
    AsyncDieselConnectionManager::new_with_config(url, config)
}

/// The pool hook that checks, with a query, a connection idle for longer than
/// [`VERIFY_IDLE_AFTER`] before it is reused; a failed check drops the connection and the
/// pool takes another or opens a new one.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn verify_idle<C>() -> deadpool::managed::Hook<AsyncDieselConnectionManager<C>>
where
    C: diesel_async::pooled_connection::PoolableConnection + Send + 'static,
    AsyncDieselConnectionManager<C>:
        deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    for<'a> diesel::dsl::select<diesel::dsl::AsExprOf<i32, diesel::sql_types::Integer>>:
        diesel_async::methods::LoadQuery<'a, C, i32>,
    diesel::query_builder::SqlQuery: diesel_async::methods::ExecuteDsl<C>,
{
    deadpool::managed::Hook::async_fn(|conn: &mut C, metrics| {
        Box::pin(async move {
            if metrics.last_used() <= VERIFY_IDLE_AFTER {
                return Ok(());
            }
            conn.ping(&RecyclingMethod::Verified)
                .await
                .map_err(|error| {
                    tracing::debug!(%error, "an idle pooled connection failed its check");
                    deadpool::managed::HookError::Backend(
                        diesel_async::pooled_connection::PoolError::QueryError(error),
                    )
                })
        })
    })
}

/// Builds a deadpool of `max_size` connections from a manager, every wait bounded by
/// `timeout`: for a free connection, for a new one, and for checking an idle one. The most
/// recently used connection is handed out first (LIFO): under a light load the same few
/// connections serve, with their prepared statements, and the others stay idle.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
macro_rules! build_pool {
    ($manager:expr, $target:expr $(, $hook:expr)?) => {
        DeadPool::builder($manager)
            .max_size($target.pool_size)
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .wait_timeout(Some($target.pool_timeout))
            .create_timeout(Some($target.pool_timeout))
            .recycle_timeout(Some($target.pool_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            $(.pre_recycle($hook))?
            .build()
            .map_err(|e| Error::config_with("building the connection pool", e))?
    };
}

impl Connections {
    /// The pool of an existing client, its statements bounded by `query_timeout`.
    pub(crate) fn from_client(client: SqlClient, query_timeout: Duration) -> Self {
        Self {
            client,
            query_timeout,
            #[cfg(feature = "postgres")]
            pg_connector: None,
            sqlite_file: None,
            #[cfg(feature = "sqlite")]
            sqlite_writer: std::sync::Arc::default(),
        }
    }

    /// A new pool for `target`. Opens no connection.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid URL or TLS parameter, an unreadable certificate file,
    /// or a dialect this build does not enable.
    pub(crate) fn build(target: &Target) -> Result<Self> {
        // Set by the PostgreSQL arm; built with only that dialect, nothing else reads `None`.
        #[cfg(feature = "postgres")]
        #[allow(unused_assignments)]
        let mut pg_connector = None;
        let client = match target.dialect {
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
                SqlClient::Postgres(build_pool!(manager, target, verify_idle()))
            }
            #[cfg(feature = "mysql")]
            Dialect::Mysql => {
                // Every connection through one connector: the MySQL client's `ssl_*`
                // parameters and certificate files, read once here.
                let connector =
                    std::sync::Arc::new(crate::tls::mysql::MysqlConnector::from_url(&target.url)?);
                let manager = manager(&target.url, connector, |connector| async move {
                    connector.connect().await
                });
                SqlClient::Mysql(build_pool!(manager, target, verify_idle()))
            }
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => {
                // Nothing to check before reuse: no server, no socket.
                let mut manager_config = ManagerConfig::<SqliteConnection>::default();
                manager_config.custom_setup = Box::new(establish_sqlite);
                manager_config.recycling_method = RecyclingMethod::Fast;
                let manager = AsyncDieselConnectionManager::<SqliteConnection>::new_with_config(
                    &target.url,
                    manager_config,
                );
                SqlClient::Sqlite(build_pool!(manager, target))
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::config(format!(
                    "tracker-sql was built without the `{other}` feature"
                )));
            }
        };
        Ok(Self {
            client,
            query_timeout: target.query_timeout,
            #[cfg(feature = "postgres")]
            pg_connector,
            sqlite_file: target.sqlite_file.clone(),
            #[cfg(feature = "sqlite")]
            sqlite_writer: std::sync::Arc::default(),
        })
    }

    /// What cancels, on the server, the statement `conn` is running: a cancel request made
    /// like this pool's connections (plaintext for a pool this crate did not build).
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
}

/// How long an SQLite connection waits for another connection's lock before it fails with
/// "database is locked" (its busy timeout).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens an SQLite connection that waits for locks instead of failing at once. (WAL mode,
/// which lets readers go on while one connection writes, is kept in the file: setting it up
/// is a change to the database, made by `ensure_schema`.)
#[cfg(feature = "sqlite")]
fn establish_sqlite(
    url: &str,
) -> futures::future::BoxFuture<'_, diesel::ConnectionResult<SqliteConnection>> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    use futures::FutureExt;
    async move {
        let mut conn = SqliteConnection::establish(url).await?;
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};",
            SQLITE_BUSY_TIMEOUT.as_millis()
        ))
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
    .boxed()
}

/// Takes a connection from `pool`. The whole wait, however many idle connections fail their
/// check on the way, is bounded by the pool's wait timeout ([`SqlConfig::pool_timeout`] for
/// pools this crate builds): past it, the error is a temporary [`Error::Unavailable`].
///
/// [`SqlConfig::pool_timeout`]: crate::SqlConfig::pool_timeout
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
                Error::unavailable_with(
                    format!("{context}: no connection within {bound:?}"),
                    elapsed,
                )
            })?,
        None => pool.get().await,
    };
    connection.map_err(|e| pool_error(context, e))
}

/// A pooled connection of a server dialect while an operation runs on it (`bounded!`).
/// If the operation is abandoned part-way — its future dropped while a statement is in
/// flight, as when a caller's own timeout or a relay's shutdown drops it — the connection's
/// state is unknown (MySQL's protocol would read the rest of the abandoned reply as the next
/// statement's: "packet out of order"), so it is closed instead of returned to the pool.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) struct InFlight<M: deadpool::managed::Manager> {
    object: Option<deadpool::managed::Object<M>>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<M: deadpool::managed::Manager> InFlight<M> {
    /// Marks `object` busy until [`InFlight::settle`] or [`InFlight::discard`].
    pub(crate) fn new(object: deadpool::managed::Object<M>) -> Self {
        Self {
            object: Some(object),
        }
    }

    /// The operation finished: the connection goes back to the pool.
    pub(crate) fn settle(mut self) {
        drop(self.object.take());
    }

    /// The connection is closed instead of returned to the pool.
    pub(crate) fn discard(mut self) {
        if let Some(object) = self.object.take() {
            drop(deadpool::managed::Object::take(object));
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<M: deadpool::managed::Manager> Drop for InFlight<M> {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            tracing::debug!("an operation was abandoned part-way; closing its connection");
            drop(deadpool::managed::Object::take(object));
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<M: deadpool::managed::Manager> std::ops::Deref for InFlight<M> {
    type Target = M::Type;

    fn deref(&self) -> &M::Type {
        self.object
            .as_deref()
            .expect("an in-flight connection is held until settled or discarded")
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<M: deadpool::managed::Manager> std::ops::DerefMut for InFlight<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        self.object
            .as_deref_mut()
            .expect("an in-flight connection is held until settled or discarded")
    }
}

/// Evaluates `$body` (a `Result` future using the pooled connection `$conn` of a server
/// dialect) within `$bound`. Past it, the connection is dropped rather than returned to the
/// pool, since what it was doing is unknown, and `$cancel` (a future) asks the server to
/// cancel the statement, so that the session stops waiting and rolls back what it left open.
/// The error is then a temporary [`Error::Unavailable`](tracker_core::Error::Unavailable).
/// A connection whose body failed with a temporary error is dropped too, and so is one whose
/// body was abandoned part-way (the caller's future dropped: see [`InFlight`]).
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! bounded {
    ($bound:expr, $conn:ident, $context:expr, $cancel:expr, $body:expr) => {{
        let bound: std::time::Duration = $bound;
        #[allow(unused_mut)]
        let mut $conn = crate::pool::InFlight::new($conn);
        // Made before the body borrows the connection; sent only on a timeout.
        let cancel = $cancel;
        match tokio::time::timeout(bound, $body).await {
            Ok(Err(error)) if error.is_temporary() => {
                // The connection may be gone (pooled connections are not checked with a
                // query when recently used): not reused.
                $conn.discard();
                Err(error)
            }
            Ok(result) => {
                $conn.settle();
                result
            }
            Err(elapsed) => {
                $conn.discard();
                tokio::spawn(cancel);
                Err(tracker_core::Error::unavailable_with(
                    format!("{}: no answer within {bound:?}", $context),
                    elapsed,
                ))
            }
        }
    }};
}
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use bounded;

/// Runs `$body` with `$conn` bound to a pooled connection of `$connections` (a
/// [`Connections`]), whichever dialect it is. The body is the same diesel code for every
/// dialect. On PostgreSQL and MySQL the body is bounded by the query timeout, or by none with
/// `unbounded` (for bulk reads such as those of a Rasa table); SQLite has no server to wait
/// for (its lock waits are bounded by its busy timeout), and dropping an in-memory database's
/// only connection would lose the database.
macro_rules! with_connection {
    ($connections:expr, $context:expr, |$conn:ident| $body:expr) => {
        crate::pool::with_connection!(
            $connections,
            $context,
            Some($connections.query_timeout),
            |$conn| $body
        )
    };
    ($connections:expr, $context:expr, unbounded, |$conn:ident| $body:expr) => {
        crate::pool::with_connection!($connections, $context, None, |$conn| $body)
    };
    ($connections:expr, $context:expr, $bound:expr, |$conn:ident| $body:expr) => {
        match &$connections.client {
            #[cfg(feature = "postgres")]
            crate::pool::SqlClient::Postgres(pool) => {
                let $conn = crate::pool::acquire(pool, $context).await?;
                let bound: Option<std::time::Duration> = $bound;
                crate::pool::bounded!(
                    bound.unwrap_or(std::time::Duration::MAX),
                    $conn,
                    $context,
                    $connections.pg_cancel(&$conn),
                    async { Ok::<_, tracker_core::Error>($body) }
                )?
            }
            #[cfg(feature = "mysql")]
            crate::pool::SqlClient::Mysql(pool) => {
                let $conn = crate::pool::acquire(pool, $context).await?;
                let bound: Option<std::time::Duration> = $bound;
                crate::pool::bounded!(
                    bound.unwrap_or(std::time::Duration::MAX),
                    $conn,
                    $context,
                    crate::pool::Connections::mysql_cancel(&$conn),
                    async { Ok::<_, tracker_core::Error>($body) }
                )?
            }
            #[cfg(feature = "sqlite")]
            crate::pool::SqlClient::Sqlite(pool) => {
                let mut $conn = crate::pool::acquire(pool, $context).await?;
                $body
            }
        }
    };
}
pub(crate) use with_connection;

/// Runs a write with `$conn` bound to a pooled connection of `$connections` (a
/// [`Connections`]): `$postgres` or `$mysql` bounded by the query timeout, with a temporary
/// driver error as the outer error (`lost`: the connection is dropped); `$sqlite` holding the
/// store's writer lock (`Connections::sqlite_writer`), so that its writers queue in the
/// process. Each body is the write's outcome, `Result<T, TxError>`.
macro_rules! write_with_connection {
    (
        $connections:expr,
        $context:expr,
        |$conn:ident| {
            postgres: $postgres:expr,
            mysql: $mysql:expr,
            sqlite: $sqlite:expr $(,)?
        }
    ) => {
        match &$connections.client {
            #[cfg(feature = "postgres")]
            crate::pool::SqlClient::Postgres(pool) => {
                let $conn = crate::pool::acquire(pool, $context).await?;
                crate::pool::bounded!(
                    $connections.query_timeout,
                    $conn,
                    $context,
                    $connections.pg_cancel(&$conn),
                    async { crate::append::lost($context, $postgres) }
                )?
            }
            #[cfg(feature = "mysql")]
            crate::pool::SqlClient::Mysql(pool) => {
                let $conn = crate::pool::acquire(pool, $context).await?;
                crate::pool::bounded!(
                    $connections.query_timeout,
                    $conn,
                    $context,
                    crate::pool::Connections::mysql_cancel(&$conn),
                    async { crate::append::lost($context, $mysql) }
                )?
            }
            #[cfg(feature = "sqlite")]
            crate::pool::SqlClient::Sqlite(pool) => {
                let _writer = $connections.sqlite_writer.lock().await;
                let mut $conn = crate::pool::acquire(pool, $context).await?;
                $sqlite
            }
        }
    };
}
pub(crate) use write_with_connection;
