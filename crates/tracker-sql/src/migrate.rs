//! Embedded, versioned schema migrations (diesel_migrations), one set per dialect, the checks
//! made before them (the MySQL server's version) and without them (what the database holds,
//! read from its catalog), the outbox's table and triggers (`outbox: true`, created after the
//! migrations under the same lock), and the PostgreSQL database bootstrap (`login_db`).

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationVersion;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tracker_core::{BoxError, Error, Result};

use crate::config::Dialect;
use crate::error::driver_error;
use crate::pool::{Connections, SqlClient, acquire, with_connection};
use crate::schema::{Layout, OUTBOX_TABLE, SEQ_TRIGGER, outbox_triggers};

#[cfg(feature = "postgres")]
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
#[cfg(feature = "mysql")]
const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
#[cfg(feature = "sqlite")]
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The outbox's DDL: creates whatever is missing (see `migrations/outbox/`).
#[cfg(feature = "postgres")]
const POSTGRES_OUTBOX: &str = include_str!("../migrations/outbox/postgres.sql");
#[cfg(feature = "mysql")]
const MYSQL_OUTBOX_TABLE: &str = include_str!("../migrations/outbox/mysql_table.sql");
#[cfg(feature = "mysql")]
const MYSQL_OUTBOX_TRIGGERS: [(&str, &str); 2] = [
    (
        crate::schema::OUTBOX_TRIGGER,
        include_str!("../migrations/outbox/mysql_insert_trigger.sql"),
    ),
    (
        crate::schema::OUTBOX_DELETE_TRIGGER,
        include_str!("../migrations/outbox/mysql_delete_trigger.sql"),
    ),
];
#[cfg(feature = "sqlite")]
const SQLITE_OUTBOX: &str = include_str!("../migrations/outbox/sqlite.sql");

/// What `ensure_schema` reports when it created the outbox (or its missing part).
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
fn outbox_created() -> String {
    format!("created the outbox: the {OUTBOX_TABLE} table and its triggers on `events`")
}

/// A fixed key for PostgreSQL's advisory lock, so concurrent migrators wait for each other.
#[cfg(feature = "postgres")]
const PG_LOCK_KEY: i64 = 0x0074_7261_636b_6572; // "tracker" in ASCII

fn names(versions: Vec<MigrationVersion<'_>>) -> Vec<String> {
    versions.into_iter().map(|v| v.to_string()).collect()
}

fn migration_error(error: BoxError) -> Error {
    Error::backend_with("running schema migrations", error)
}

/// Creates or upgrades the schema of the database behind `connections`, with the outbox's
/// table and triggers when `outbox` is set; returns what it changed.
pub(crate) async fn run(connections: &Connections, outbox: bool) -> Result<Vec<String>> {
    match &connections.client {
        #[cfg(feature = "postgres")]
        SqlClient::Postgres(pool) => postgres(pool, outbox).await,
        #[cfg(feature = "mysql")]
        SqlClient::Mysql(pool) => mysql(pool, outbox).await,
        #[cfg(feature = "sqlite")]
        SqlClient::Sqlite(pool) => {
            let mut changes = Vec::new();
            if let Some(path) = &connections.sqlite_file
                && !std::path::Path::new(path).exists()
            {
                create_sqlite_file(path.clone()).await?;
                changes.push(format!("created the SQLite database {path}"));
            }
            changes.extend(sqlite(pool, outbox).await?);
            Ok(changes)
        }
    }
}

/// Creates an SQLite database file (for a pool that opens files without creating them).
#[cfg(feature = "sqlite")]
async fn create_sqlite_file(path: String) -> Result<()> {
    use diesel::Connection;
    let context = "creating the SQLite database";
    tokio::task::spawn_blocking(move || diesel::SqliteConnection::establish(&path).map(drop))
        .await
        .map_err(|e| Error::backend_with(context, e))?
        .map_err(|e| crate::error::connection_error(context, e))
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

/// The synchronous form of a pooled connection, for diesel_migrations and the outbox's DDL.
#[cfg(any(feature = "postgres", feature = "mysql"))]
type Blocking<C> = diesel_async::async_connection_wrapper::AsyncConnectionWrapper<C>;

/// Runs `$migrations` on a connection taken from `$pool`, then `$outbox` (the outbox's setup,
/// if any), between the server-side lock and unlock statements, so concurrent migrators wait
/// for each other.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! migrate_locked {
    ($pool:expr, $migrations:expr, $lock:expr, $unlock:expr, $outbox:expr) => {{
        let object = acquire($pool, "running schema migrations").await?;
        let connection = deadpool::managed::Object::take(object);
        let outbox = $outbox;
        run_blocking(connection, move |conn| {
            conn.batch_execute(&$lock)
                .map_err(|e| driver_error("locking for schema migrations", e))?;
            let migrated = conn
                .run_pending_migrations($migrations)
                .map(names)
                .map_err(migration_error);
            let result = match (migrated, outbox) {
                (Ok(mut applied), Some(setup)) => setup(conn).map(|created| {
                    applied.extend(created);
                    applied
                }),
                (migrated, _) => migrated,
            };
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
async fn postgres(pool: &crate::pool::PgPool, outbox: bool) -> Result<Vec<String>> {
    type Setup = fn(&mut Blocking<diesel_async::AsyncPgConnection>) -> Result<Vec<String>>;
    migrate_locked!(
        pool,
        POSTGRES,
        format!("SELECT pg_advisory_lock({PG_LOCK_KEY})"),
        format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})"),
        outbox.then_some(postgres_outbox as Setup)
    )
}

/// Creates what is missing of the outbox in a PostgreSQL database (one `DO` block that looks
/// in the catalog before creating each part).
#[cfg(feature = "postgres")]
fn postgres_outbox(conn: &mut Blocking<diesel_async::AsyncPgConnection>) -> Result<Vec<String>> {
    use diesel::RunQueryDsl;
    let context = "creating the outbox";
    let found: Count = diesel::sql_query(outbox_query(Dialect::Postgres))
        .get_result(conn)
        .map_err(|e| driver_error(context, e))?;
    if found.n == outbox_objects(Dialect::Postgres) {
        return Ok(Vec::new());
    }
    conn.batch_execute(POSTGRES_OUTBOX)
        .map_err(|e| driver_error(context, e))?;
    Ok(vec![outbox_created()])
}

/// Migrates a MySQL / MariaDB database, holding a named lock, once the server is known to
/// support what the migrations use.
#[cfg(feature = "mysql")]
async fn mysql(pool: &crate::pool::MysqlPool, outbox: bool) -> Result<Vec<String>> {
    type Setup = fn(&mut Blocking<diesel_async::AsyncMysqlConnection>) -> Result<Vec<String>>;
    check_mysql_server(pool).await?;
    migrate_locked!(
        pool,
        MYSQL,
        "DO GET_LOCK('tracker_store_migrations', 600)",
        "DO RELEASE_LOCK('tracker_store_migrations')",
        outbox.then_some(mysql_outbox as Setup)
    )
}

#[cfg(feature = "mysql")]
#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// Creates what is missing of the outbox in a MySQL / MariaDB database: the table, with
/// `events.sender_id`'s collation, then each trigger not in the catalog (MySQL before 8.0.29
/// has no `CREATE TRIGGER IF NOT EXISTS`).
#[cfg(feature = "mysql")]
fn mysql_outbox(conn: &mut Blocking<diesel_async::AsyncMysqlConnection>) -> Result<Vec<String>> {
    use diesel::RunQueryDsl;
    let context = "creating the outbox";
    let found: Count = diesel::sql_query(outbox_query(Dialect::Mysql))
        .get_result(conn)
        .map_err(|e| driver_error(context, e))?;
    if found.n == outbox_objects(Dialect::Mysql) {
        return Ok(Vec::new());
    }
    let collation: Name = diesel::sql_query(
        "SELECT COLLATION_NAME AS name FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'events' AND COLUMN_NAME = 'sender_id'",
    )
    .get_result(conn)
    .map_err(|e| driver_error(context, e))?;
    if collation.name.is_empty()
        || !collation
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::config(format!(
            "creating the outbox: `events.sender_id` has the collation {:?}, which is not a \
             collation name",
            collation.name
        )));
    }
    conn.batch_execute(&MYSQL_OUTBOX_TABLE.replace("{collation}", &collation.name))
        .map_err(|e| driver_error(context, e))?;
    let triggers: Vec<Name> = diesel::sql_query(
        "SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'events'",
    )
    .load(conn)
    .map_err(|e| driver_error(context, e))?;
    for (trigger, ddl) in MYSQL_OUTBOX_TRIGGERS {
        if !triggers.iter().any(|found| found.name == trigger) {
            conn.batch_execute(ddl)
                .map_err(|e| driver_error(context, e))?;
        }
    }
    Ok(vec![outbox_created()])
}

/// Refuses a server older than MySQL 8.0 or MariaDB 10.2 before anything is changed: the
/// migrations number existing rows with `ROW_NUMBER() OVER (...)`, which older servers lack.
#[cfg(feature = "mysql")]
async fn check_mysql_server(pool: &crate::pool::MysqlPool) -> Result<()> {
    use diesel_async::RunQueryDsl;
    let context = "reading the MySQL server's version";
    let mut conn = acquire(pool, context).await?;
    let version: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("VERSION()"))
        .get_result(&mut *conn)
        .await
        .map_err(|e| driver_error(context, e))?;
    check_mysql_version(&version)
}

/// The server's version string (`8.0.36`, `5.7.44-log`, `10.11.6-MariaDB-1`, or through a
/// proxy `5.5.5-10.11.6-MariaDB`) checked against the oldest supported releases.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
fn check_mysql_version(version: &str) -> Result<()> {
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    // MariaDB's replication protocol puts a fake 5.5.5- before the real version.
    let text = match version.strip_prefix("5.5.5-") {
        Some(rest) if mariadb => rest,
        _ => version,
    };
    let mut numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let (server, minimum) = if mariadb {
        ("MariaDB", (10, 2))
    } else {
        ("MySQL", (8, 0))
    };
    let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) else {
        return Err(Error::config(format!(
            "cannot tell the version of the MySQL server (it says {version:?}); the SQL store \
             needs MySQL 8.0 or later, or MariaDB 10.2 or later"
        )));
    };
    if (major, minor) < minimum {
        return Err(Error::config(format!(
            "{server} {major}.{minor} is not supported: the SQL store's migrations need \
             window functions (MySQL 8.0 or later, MariaDB 10.2 or later); nothing was changed"
        )));
    }
    Ok(())
}

/// Migrates an SQLite database inside one immediate transaction, so concurrent migrators
/// wait for each other; with `outbox`, creates what is missing of the outbox in the same
/// transaction.
#[cfg(feature = "sqlite")]
async fn sqlite(pool: &crate::pool::SqlitePool, outbox: bool) -> Result<Vec<String>> {
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
    let journal = conn
        .spawn_blocking(|conn: &mut diesel::SqliteConnection| wal_journal(conn))
        .await
        .map_err(|e| driver_error("setting SQLite's journal mode", e))?;
    let outcome = conn
        .spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
            Ok(conn.immediate_transaction::<_, Failure, _>(|conn| {
                let mut applied = conn
                    .run_pending_migrations(SQLITE)
                    .map(names)
                    .map_err(Failure::Migration)?;
                if outbox {
                    use diesel::RunQueryDsl;
                    use diesel::connection::SimpleConnection;
                    let found: Count =
                        diesel::sql_query(outbox_query(Dialect::Sqlite)).get_result(conn)?;
                    if found.n != outbox_objects(Dialect::Sqlite) {
                        conn.batch_execute(SQLITE_OUTBOX)?;
                        applied.push(outbox_created());
                    }
                }
                Ok(applied)
            }))
        })
        .await
        .map_err(|e| driver_error("running schema migrations", e))?;
    let mut applied = journal.into_iter().collect::<Vec<_>>();
    match outcome {
        Ok(migrations) => applied.extend(migrations),
        Err(Failure::Migration(error)) => return Err(migration_error(error)),
        Err(Failure::Query(error)) => {
            return Err(driver_error("running schema migrations", error));
        }
    }
    Ok(applied)
}

#[cfg(feature = "sqlite")]
#[derive(diesel::QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    journal_mode: String,
}

/// Puts an SQLite file in WAL mode (kept in the file: readers then do not block the writer);
/// returns the change made, if any. An in-memory database keeps its memory journal.
#[cfg(feature = "sqlite")]
fn wal_journal(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<Option<String>> {
    use diesel::RunQueryDsl;
    let mode = |conn: &mut diesel::SqliteConnection, statement: &str| {
        diesel::sql_query(statement)
            .get_result::<JournalMode>(conn)
            .map(|row| row.journal_mode.to_ascii_lowercase())
    };
    let before = mode(conn, "PRAGMA journal_mode")?;
    if before == "wal" || before == "memory" {
        return Ok(None);
    }
    // The switch reads the file's header and then upgrades to an exclusive lock, and SQLite
    // does not call the busy handler for an upgrade (two connections doing so could wait for
    // each other for ever): another connection reading or setting up at that moment makes it
    // fail at once with "database is locked". It is tried again, for as long as the busy
    // timeout lets any other statement wait.
    let deadline = std::time::Instant::now() + crate::pool::SQLITE_BUSY_TIMEOUT;
    let after = loop {
        match mode(conn, "PRAGMA journal_mode = WAL") {
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked")
                    && std::time::Instant::now() < deadline =>
            {
                tracing::debug!("SQLite's file is locked; trying the switch to WAL again");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            outcome => break outcome?,
        }
    };
    Ok((after != before).then(|| format!("SQLite journal mode {before} -> {after}")))
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
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

#[derive(diesel::QueryableByName)]
struct Catalog {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    has_table: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    has_seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    has_trigger: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    outbox_objects: i64,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) layout: Layout,
    /// The outbox's table and every one of its triggers exist.
    pub(crate) outbox: bool,
}

/// The number of objects the outbox is made of in `dialect`: its table and its triggers.
fn outbox_objects(dialect: Dialect) -> i64 {
    1 + outbox_triggers(dialect).len() as i64
}

/// `'a', 'b'`: names as an SQL list of string literals (the names are constants).
fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An expression counting the outbox's objects that exist (the table that the connection's
/// search path finds, on PostgreSQL, and the triggers on `events`).
fn outbox_count(dialect: Dialect) -> String {
    let triggers = quoted_list(outbox_triggers(dialect));
    match dialect {
        Dialect::Postgres => format!(
            "(SELECT count(*) FROM pg_catalog.pg_class WHERE oid = to_regclass('{OUTBOX_TABLE}')) \
             + (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass('events') \
             AND tgname IN ({triggers}))"
        ),
        Dialect::Mysql => format!(
            "CAST((SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = '{OUTBOX_TABLE}') + (SELECT count(*) FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'events' \
             AND TRIGGER_NAME IN ({triggers})) AS SIGNED)"
        ),
        Dialect::Sqlite => format!(
            "(SELECT count(*) FROM sqlite_master WHERE (type = 'table' AND name = '{OUTBOX_TABLE}') \
             OR (type = 'trigger' AND tbl_name = 'events' AND name IN ({triggers})))"
        ),
    }
}

/// The query counting the outbox's objects that exist, as `n`.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
fn outbox_query(dialect: Dialect) -> String {
    format!("SELECT {} AS n", outbox_count(dialect))
}

/// What the database behind `connections` holds, read from its catalog without changing
/// anything; warns when the table is migrated but rows Rasa inserts would not be numbered.
pub(crate) async fn inspect(connections: &Connections, store: &str) -> Result<Found> {
    use diesel_async::RunQueryDsl;
    if let Some(path) = &connections.sqlite_file
        && !std::path::Path::new(path).exists()
    {
        return Ok(Found {
            layout: Layout::Absent,
            outbox: false,
        });
    }
    let context = "reading the database's catalog";
    let catalog: Catalog = with_connection!(connections, context, |conn| {
        diesel::sql_query(catalog_query(connections.client.dialect()))
            .get_result(&mut *conn)
            .await
            .map_err(|e| driver_error(context, e))?
    });
    let dialect = connections.client.dialect();
    let outbox = catalog.outbox_objects == outbox_objects(dialect);
    let layout = match (catalog.has_table > 0, catalog.has_seq > 0) {
        (false, _) => Layout::Absent,
        (true, false) => Layout::Rasa,
        (true, true) => {
            if catalog.has_trigger == 0 {
                tracing::warn!(
                    store,
                    "the `events` table has no `{SEQ_TRIGGER}` trigger: rows Rasa inserts will \
                     not be numbered; run `tracker migrate-schema` or connect with `migrate: true`"
                );
            }
            Layout::Sequenced
        }
    };
    Ok(Found { layout, outbox })
}

/// The query for [`Catalog`]: whether the `events` table (the one the connection's search
/// path finds, on PostgreSQL), its `seq` column and the numbering trigger exist, and how many
/// of the outbox's objects.
fn catalog_query(dialect: Dialect) -> String {
    let outbox = outbox_count(dialect);
    match dialect {
        Dialect::Postgres => format!(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE oid = to_regclass('events')) \
             AS has_table, \
             (SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('events') \
             AND attname = 'seq' AND NOT attisdropped) AS has_seq, \
             (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass('events') \
             AND tgname = '{SEQ_TRIGGER}') AS has_trigger, {outbox} AS outbox_objects"
        ),
        Dialect::Mysql => format!(
            "SELECT CAST((SELECT count(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'events') AS SIGNED) AS has_table, \
             CAST((SELECT count(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = 'events' AND COLUMN_NAME = 'seq') AS SIGNED) AS has_seq, \
             CAST((SELECT count(*) FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'events' \
             AND TRIGGER_NAME = '{SEQ_TRIGGER}') AS SIGNED) AS has_trigger, \
             {outbox} AS outbox_objects"
        ),
        Dialect::Sqlite => format!(
            "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events') \
             AS has_table, \
             (SELECT count(*) FROM pragma_table_info('events') WHERE name = 'seq') AS has_seq, \
             (SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
             AND name = '{SEQ_TRIGGER}') AS has_trigger, {outbox} AS outbox_objects"
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_server_versions() {
        for supported in [
            "8.0.36",
            "8.4.0-log",
            "9.1.0",
            "10.2.44-MariaDB",
            "10.11.19-MariaDB-0+deb12u1",
            "5.5.5-10.11.6-MariaDB",
            "11.4.2-MariaDB-ubu2404",
        ] {
            check_mysql_version(supported).unwrap_or_else(|e| panic!("{supported}: {e}"));
        }
        for (refused, named) in [
            ("5.7.44-log", "MySQL 5.7"),
            ("5.6.51", "MySQL 5.6"),
            ("10.1.48-MariaDB", "MariaDB 10.1"),
            ("5.5.5-10.0.38-MariaDB", "MariaDB 10.0"),
        ] {
            let error = check_mysql_version(refused).expect_err(refused);
            assert_eq!(error.kind(), tracker_core::ErrorKind::Config, "{error}");
            assert!(error.to_string().contains(named), "{error}");
        }
        let unknown = check_mysql_version("unknown").expect_err("no version");
        assert_eq!(unknown.kind(), tracker_core::ErrorKind::Config);
    }
}
