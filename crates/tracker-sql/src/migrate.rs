//! Embedded, versioned schema migrations (diesel_migrations), one set per dialect, and the
//! PostgreSQL database bootstrap (`login_db`).

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationVersion;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tracker_core::{BoxError, Error, Result};

use crate::error::driver_error;
use crate::pool::{SqlClient, acquire};

#[cfg(feature = "postgres")]
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
#[cfg(feature = "mysql")]
const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
#[cfg(feature = "sqlite")]
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A fixed key for PostgreSQL's advisory lock, so concurrent migrators wait for each other.
#[cfg(feature = "postgres")]
const PG_LOCK_KEY: i64 = 0x0074_7261_636b_6572; // "tracker" in ASCII

fn names(versions: Vec<MigrationVersion<'_>>) -> Vec<String> {
    versions.into_iter().map(|v| v.to_string()).collect()
}

fn migration_error(error: BoxError) -> Error {
    Error::backend_with("running schema migrations", error)
}

/// Creates or upgrades the schema of the database behind `client`; returns the migrations
/// applied now.
pub(crate) async fn run(client: &SqlClient) -> Result<Vec<String>> {
    match client {
        #[cfg(feature = "postgres")]
        SqlClient::Postgres(pool) => postgres(pool).await,
        #[cfg(feature = "mysql")]
        SqlClient::Mysql(pool) => mysql(pool).await,
        #[cfg(feature = "sqlite")]
        SqlClient::Sqlite(pool) => sqlite(pool).await,
    }
}

/// Runs `task` on a blocking thread with the connection wrapped as a synchronous diesel
/// connection (diesel_migrations is synchronous).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn run_blocking<C, T>(
    connection: C,
    task: impl FnOnce(
        &mut diesel_async::async_connection_wrapper::AsyncConnectionWrapper<C>,
    ) -> Result<T>
    + Send
    + 'static,
) -> Result<T>
where
    C: diesel_async::AsyncConnection + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut wrapper =
            diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<C>::from(connection);
        task(&mut wrapper)
    })
    .await
    .map_err(|e| Error::backend_with("running schema migrations", e))?
}

/// Runs `$migrations` on a connection taken from `$pool`, between the server-side lock and
/// unlock statements, so concurrent migrators wait for each other.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! migrate_locked {
    ($pool:expr, $migrations:expr, $lock:expr, $unlock:expr) => {{
        let object = acquire($pool, "running schema migrations").await?;
        let connection = deadpool::managed::Object::take(object);
        run_blocking(connection, |conn| {
            conn.batch_execute(&$lock)
                .map_err(|e| driver_error("locking for schema migrations", e))?;
            let result = conn
                .run_pending_migrations($migrations)
                .map(names)
                .map_err(migration_error);
            let unlock = conn.batch_execute(&$unlock);
            let applied = result?;
            unlock.map_err(|e| driver_error("unlocking after schema migrations", e))?;
            Ok(applied)
        })
        .await
    }};
}

/// Migrates a PostgreSQL database, holding an advisory lock.
#[cfg(feature = "postgres")]
async fn postgres(pool: &crate::pool::PgPool) -> Result<Vec<String>> {
    migrate_locked!(
        pool,
        POSTGRES,
        format!("SELECT pg_advisory_lock({PG_LOCK_KEY})"),
        format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})")
    )
}

/// Migrates a MySQL / MariaDB database, holding a named lock.
#[cfg(feature = "mysql")]
async fn mysql(pool: &crate::pool::MysqlPool) -> Result<Vec<String>> {
    migrate_locked!(
        pool,
        MYSQL,
        "DO GET_LOCK('tracker_store_migrations', 600)",
        "DO RELEASE_LOCK('tracker_store_migrations')"
    )
}

/// Migrates an SQLite database inside one immediate transaction, so concurrent migrators
/// wait for each other.
#[cfg(feature = "sqlite")]
async fn sqlite(pool: &crate::pool::SqlitePool) -> Result<Vec<String>> {
    enum Failure {
        Migration(BoxError),
        Query(diesel::result::Error),
    }
    impl From<diesel::result::Error> for Failure {
        fn from(error: diesel::result::Error) -> Self {
            Self::Query(error)
        }
    }
    let mut conn = acquire(pool, "running schema migrations").await?;
    let outcome = conn
        .spawn_blocking(|conn: &mut diesel::SqliteConnection| {
            Ok(conn.immediate_transaction::<_, Failure, _>(|conn| {
                conn.run_pending_migrations(SQLITE)
                    .map(names)
                    .map_err(Failure::Migration)
            }))
        })
        .await
        .map_err(|e| driver_error("running schema migrations", e))?;
    match outcome {
        Ok(applied) => Ok(applied),
        Err(Failure::Migration(error)) => Err(migration_error(error)),
        Err(Failure::Query(error)) => Err(driver_error("running schema migrations", error)),
    }
}

#[cfg(feature = "postgres")]
#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[cfg(feature = "postgres")]
async fn database_count(
    conn: &mut diesel_async::AsyncPgConnection,
    database: &str,
) -> diesel::QueryResult<i64> {
    use diesel_async::RunQueryDsl;
    let found: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_catalog.pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(database)
            .get_result(conn)
            .await?;
    Ok(found.n)
}

/// Connects to `login_url` and creates `database` unless it exists (Rasa's `login_db`),
/// giving up after `timeout`.
#[cfg(feature = "postgres")]
pub(crate) async fn ensure_postgres_database(
    login_url: &str,
    database: &str,
    timeout: std::time::Duration,
) -> Result<()> {
    let context = "connecting to `login_db`";
    tokio::time::timeout(
        timeout,
        create_postgres_database(login_url, database, context),
    )
    .await
    .map_err(|elapsed| Error::unavailable_with(context, elapsed))?
}

#[cfg(feature = "postgres")]
async fn create_postgres_database(login_url: &str, database: &str, context: &str) -> Result<()> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = crate::tls::PgConnector::from_url(login_url)?
        .connect()
        .await
        .map_err(|e| crate::error::connection_error(context, e))?;
    let found = database_count(&mut conn, database)
        .await
        .map_err(|e| driver_error("looking for the database", e))?;
    if found > 0 {
        return Ok(());
    }
    let quoted = database.replace('"', "\"\"");
    if let Err(error) = conn
        .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
        .await
    {
        // Another process may have created it meanwhile.
        let found = database_count(&mut conn, database)
            .await
            .map_err(|e| driver_error("looking for the database", e))?;
        if found == 0 {
            return Err(driver_error("creating the database", error));
        }
    }
    tracing::info!(database, "created the database");
    Ok(())
}

/// Checks once that `schema` (`schema` or `POSTGRESQL_SCHEMA`) exists (Rasa checks on every
/// operation and exits the process).
#[cfg(feature = "postgres")]
pub(crate) async fn check_postgres_schema(pool: &crate::pool::PgPool, schema: &str) -> Result<()> {
    use diesel_async::RunQueryDsl;
    let context = "checking the PostgreSQL schema";
    let mut conn = acquire(pool, context).await?;
    let found: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind::<diesel::sql_types::Text, _>(schema)
    .get_result(&mut *conn)
    .await
    .map_err(|e| driver_error(context, e))?;
    if found.n == 0 {
        return Err(Error::config(format!(
            "the PostgreSQL schema {schema:?} (`schema` or POSTGRESQL_SCHEMA) does not exist"
        )));
    }
    Ok(())
}
