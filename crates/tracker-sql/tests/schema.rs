//! Schema setup:
//!
//! - a PostgreSQL schema (`schema`, which defaults to `POSTGRESQL_SCHEMA` as in Rasa): the
//!   store's table lives in that schema (the connection's `search_path`), whether the database
//!   is given as a full URL or by its parts, a mixed-case name is kept, and a schema that does
//!   not exist is a `Config` error at connect;
//! - read-only means read-only: on every dialect, a store with `migrate: false` (and a Rasa
//!   source) reading, listing and counting — and refusing to write to a table Rasa created —
//!   leaves the schema and every row byte-identical (SQLite: the whole file), whether the
//!   table is Rasa's as Rasa created it or migrated; changes happen only in `ensure_schema`,
//!   which says what it changed.

mod common;

use common::rasa::{Dialect, rasa_insert, rasa_row};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tracker_core::{ErrorKind, Event, RasaSource, ReadScope, SenderId, Store, TrackerStore};
use tracker_sql::{SqlConfig, SqlRasaSource, SqlStore, diesel, diesel_async};
use tracker_testkit::{Service, service_url};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The parts of a `postgres://user@host:port/db` URL as Rasa's separate keys.
fn parts(url: &str) -> serde_json::Value {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.split('?').next().unwrap_or_default();
    let (user, rest) = rest.split_once('@').expect("a user in the test URL");
    let (host, db) = rest.split_once('/').expect("a database in the test URL");
    let (user, password) = match user.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (user, None),
    };
    serde_json::json!({
        "dialect": "postgresql", "url": host, "db": db, "username": user, "password": password,
    })
}

async fn rows_in(admin: &mut AsyncPgConnection, schema: &str, sender: &str) -> i64 {
    let found: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM \"{schema}\".events WHERE sender_id = $1"
    ))
    .bind::<diesel::sql_types::Text, _>(sender)
    .get_result(admin)
    .await
    .expect("count the rows in the schema");
    found.n
}

#[tokio::test]
async fn postgresql_schema_holds_the_table() {
    let Some(url) = service_url(Service::Postgres).await else {
        return;
    };
    let url = url.url;
    let mut admin = AsyncPgConnection::establish(&url)
        .await
        .expect("connect to the test server");
    let schema = format!(
        "Tracker Schema {}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .expect("create the schema");
    let mut by_parts: SqlConfig = serde_json::from_value(parts(&url)).expect("config");
    by_parts.schema = Some(schema.clone());
    let full = SqlConfig {
        schema: Some(schema.clone()),
        ..SqlConfig::from_url(&url)
    };
    for (form, config) in [("full URL", full), ("parts", by_parts)] {
        let sql = SqlStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{form}: connect: {e}"));
        let store = TrackerStore::new(sql.clone());
        let sender = format!("schema-{}", uuid::Uuid::new_v4().simple());
        store
            .append(
                &sender,
                0,
                &[Event::bot(form).at(1.0), Event::bot("two").at(2.0)],
            )
            .await
            .unwrap_or_else(|e| panic!("{form}: append: {e}"));
        assert_eq!(rows_in(&mut admin, &schema, &sender).await, 2, "{form}");
        let read = sql
            .read(&SenderId::new(&sender).expect("id"), ReadScope::All)
            .await
            .expect("read")
            .expect("the conversation");
        assert_eq!(read.version, 2, "{form}");
    }

    // Not the same schema: names are taken literally, not folded to lower case.
    let missing = SqlConfig {
        schema: Some(schema.to_lowercase()),
        ..SqlConfig::from_url(&url)
    };
    let error = SqlStore::connect(&missing)
        .await
        .expect_err("a schema that does not exist");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        error.to_string().contains(&schema.to_lowercase()),
        "{error}"
    );

    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the schema");
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

/// Queries listing the schema (tables, columns, indexes, triggers) and every row of
/// `events` as text, one line per item.
fn dump_queries(dialect: Dialect, migrated: bool) -> Vec<String> {
    let mut columns = vec![
        "id",
        "sender_id",
        "type_name",
        "timestamp",
        "intent_name",
        "action_name",
        "data",
    ];
    if migrated {
        columns.push("seq");
    }
    let text = match dialect {
        Dialect::Mysql => "CHAR",
        _ => "TEXT",
    };
    let fields: Vec<String> = columns
        .iter()
        .map(|column| format!("COALESCE(CAST({column} AS {text}), '<null>')"))
        .collect();
    let row = match dialect {
        Dialect::Mysql => format!("CONCAT_WS(' | ', {})", fields.join(", ")),
        _ => fields.join(" || ' | ' || "),
    };
    let rows = format!("SELECT {row} AS line FROM events ORDER BY id");
    match dialect {
        Dialect::Postgres => vec![
            "SELECT concat_ws(' ', table_name, column_name, data_type, is_nullable, \
             column_default) AS line FROM information_schema.columns \
             WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
                .to_owned(),
            "SELECT indexdef AS line FROM pg_indexes WHERE schemaname = current_schema() \
             ORDER BY indexname"
                .to_owned(),
            "SELECT tgname || ' ' || CAST(tgenabled AS TEXT) AS line FROM pg_trigger WHERE NOT tgisinternal \
             ORDER BY tgname"
                .to_owned(),
            "SELECT proname || ' ' || md5(prosrc) AS line FROM pg_proc \
             WHERE pronamespace = current_schema()::regnamespace ORDER BY proname"
                .to_owned(),
            "SELECT CAST(last_value AS TEXT) || ' ' || CAST(is_called AS TEXT) AS line \
             FROM events_id_seq"
                .to_owned(),
            rows,
        ],
        Dialect::Mysql => vec![
            "SELECT CONCAT_WS(' ', TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
             COLLATION_NAME) AS line FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"
                .to_owned(),
            "SELECT CONCAT_WS(' ', TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE) \
             AS line FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
                .to_owned(),
            "SELECT CONCAT_WS(' ', TRIGGER_NAME, ACTION_TIMING, ACTION_STATEMENT) AS line \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
             ORDER BY TRIGGER_NAME"
                .to_owned(),
            rows,
        ],
        Dialect::Sqlite => vec![
            "SELECT type || ' ' || name || ' ' || coalesce(sql, '') AS line FROM sqlite_master \
             ORDER BY type, name"
                .to_owned(),
            rows,
        ],
    }
}

/// The schema and rows of the database behind `$conn`, as text.
macro_rules! dump {
    ($conn:expr, $dialect:expr, $migrated:expr) => {{
        let mut lines = Vec::new();
        for query in dump_queries($dialect, $migrated) {
            lines.push(format!("-- {query}"));
            let found: Vec<Line> = diesel::sql_query(&query)
                .load($conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            lines.extend(found.into_iter().map(|found| found.line));
        }
        lines
    }};
}

/// Rows of three conversations, as Rasa writes them.
fn rasa_rows() -> Vec<common::rasa::RasaRow> {
    let mut rows = Vec::new();
    for conversation in 0..3 {
        let id = format!("read-only-{conversation}");
        let t = 1_700_000_000.0 + f64::from(conversation) * 100.0;
        for session in 0..2 {
            let t = t + f64::from(session) * 10.0;
            for event in [
                Event::action("action_session_start").at(t),
                Event::session_started().at(t),
                Event::action("action_listen").at(t),
                Event::user(format!("hi {session}"), "greet", 0.9).at(t + 1.0),
                Event::bot(format!("hello {session}")).at(t + 2.0),
            ] {
                rows.push(rasa_row(&id, &event.to_value()));
            }
        }
    }
    rows
}

/// Every read-only operation of a store connected with `$config` and `migrate: false`, and of
/// a Rasa source, on a database that has the conversations of [`rasa_rows`]; writes to a table
/// the store may not migrate are refused.
macro_rules! read_only_operations {
    ($config:expr, $migrated:expr) => {{
        let config = SqlConfig {
            migrate: false,
            ..$config.clone()
        };
        let sql = SqlStore::connect(&config)
            .await
            .expect("connect without migrating");
        let store = TrackerStore::new(sql.clone());
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list(cursor, 2).await.expect("a page of ids");
            listed.extend(page.sender_ids);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ["read-only-0", "read-only-1", "read-only-2"]);
        for id in &listed {
            let version = store.version(id).await.expect("version");
            assert!(version >= 10, "{id}: {version}");
            assert!(store.exists(id).await.expect("exists"));
            let all = store
                .read(id, ReadScope::All)
                .await
                .expect("read")
                .expect("exists");
            assert_eq!(all.version, version);
            let latest = store
                .read(id, ReadScope::LatestSession)
                .await
                .expect("read the latest session")
                .expect("exists");
            assert_eq!(
                latest.first_seq, 6,
                "{id}: the second session starts at its 6th event"
            );
            store
                .retrieve(id)
                .await
                .expect("retrieve")
                .expect("a tracker");
            store
                .retrieve_full_tracker(id)
                .await
                .expect("retrieve the full tracker")
                .expect("a tracker");
            if !$migrated {
                let refused = store
                    .append(id, version, &[Event::bot("refused").at(1.0)])
                    .await
                    .expect_err("an append to Rasa's table");
                assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
                assert!(
                    refused.to_string().contains("tracker migrate-schema"),
                    "{refused}"
                );
                let refused = store
                    .delete(id)
                    .await
                    .expect_err("a delete in Rasa's table");
                assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
            }
        }
        assert!(
            store
                .read("nobody", ReadScope::All)
                .await
                .expect("read")
                .is_none()
        );
        assert_eq!(store.version("nobody").await.expect("version"), 0);
        let source = SqlRasaSource::connect(&$config)
            .await
            .expect("a Rasa source");
        assert_eq!(source.sender_ids().await.expect("ids"), listed);
        for id in &listed {
            source.read(id).await.expect("read").expect("exists");
        }
        drop((store, sql, source));
    }};
}

/// Rasa's table, then the same table migrated: read-only operations change nothing.
macro_rules! read_only_changes_nothing {
    ($conn:expr, $dialect:expr, $ddl:expr, $config:expr, $file:expr) => {{
        let conn = $conn;
        let dialect: Dialect = $dialect;
        let file: Option<String> = $file;
        let bytes = |file: &Option<String>| {
            file.as_ref()
                .map(|path| std::fs::read(path).expect("read the file"))
        };
        conn.batch_execute($ddl).await.expect("Rasa's DDL");
        let rows = rasa_rows();
        for row in &rows {
            rasa_insert!(&mut *conn, dialect, row).expect("Rasa's INSERT");
        }
        for migrated in [false, true] {
            if migrated {
                let store = SqlStore::connect(&$config)
                    .await
                    .expect("connect and migrate");
                let changes = store.ensure_schema().await.expect("migrate again");
                assert!(changes.is_empty(), "{changes:?}");
                TrackerStore::new(store)
                    .append(
                        "read-only-1",
                        10,
                        &[Event::bot("by the store").at(1_700_000_200.0)],
                    )
                    .await
                    .expect("append");
                let row = rasa_row(
                    "read-only-2",
                    &Event::bot("by Rasa").at(1_700_000_300.0).to_value(),
                );
                rasa_insert!(&mut *conn, dialect, &row).expect("Rasa's INSERT after the migration");
            }
            let before = dump!(&mut *conn, dialect, migrated);
            let file_before = bytes(&file);
            read_only_operations!($config, migrated);
            let after = dump!(&mut *conn, dialect, migrated);
            assert_eq!(
                before, after,
                "{dialect:?}: the schema or rows changed (migrated: {migrated})"
            );
            assert!(
                before
                    .iter()
                    .filter(|line| line.contains("read-only-"))
                    .count()
                    >= rows.len(),
                "the dump shows no rows"
            );
            assert!(
                file_before == bytes(&file),
                "{dialect:?}: the SQLite file changed"
            );
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_changes_nothing_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    let database = format!("read_only_{}", uuid::Uuid::new_v4().simple());
    let mut admin = AsyncPgConnection::establish(&service.url)
        .await
        .expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await
        .expect("create the database");
    let url = common::with_database(&service.url, &database);
    let mut conn = AsyncPgConnection::establish(&url).await.expect("connect");
    read_only_changes_nothing!(
        &mut conn,
        Dialect::Postgres,
        common::rasa::POSTGRES_DDL,
        SqlConfig::from_url(&url),
        None
    );
    drop(conn);
    admin
        .batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
        .await
        .expect("drop the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_changes_nothing_mysql() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    let database = format!("read_only_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel_async::AsyncMysqlConnection::establish(&service.url)
        .await
        .expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE `{database}`"))
        .await
        .expect("create the database");
    let url = common::with_database(&service.url, &database);
    let mut conn = diesel_async::AsyncMysqlConnection::establish(&url)
        .await
        .expect("connect");
    read_only_changes_nothing!(
        &mut conn,
        Dialect::Mysql,
        common::rasa::MYSQL_DDL,
        SqlConfig::from_url(&url),
        None
    );
    drop(conn);
    admin
        .batch_execute(&format!("DROP DATABASE `{database}`"))
        .await
        .expect("drop the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_changes_nothing_sqlite() {
    let path = common::temp_sqlite_path();
    // A store that changes nothing creates no file: a missing one holds nothing, and writes
    // are refused.
    let missing = TrackerStore::new(
        SqlStore::connect(&SqlConfig {
            migrate: false,
            ..SqlConfig::sqlite(&path)
        })
        .await
        .expect("a store on a file that does not exist"),
    );
    assert!(missing.keys().await.expect("keys").is_empty());
    assert_eq!(missing.version("nobody").await.expect("version"), 0);
    assert!(
        missing
            .read("nobody", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    let refused = missing
        .append("nobody", 0, &[Event::bot("refused").at(1.0)])
        .await
        .expect_err("an append without a table");
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
    assert!(
        refused.to_string().contains("tracker migrate-schema"),
        "{refused}"
    );
    let source = SqlRasaSource::connect(&SqlConfig::sqlite(&path))
        .await
        .expect_err("a Rasa source on a file that does not exist");
    assert_eq!(source.kind(), ErrorKind::Config, "{source}");
    assert!(
        !std::path::Path::new(&path).exists(),
        "the file was created"
    );
    drop(missing);
    let mut conn = tracker_sql::SqliteConnection::establish(&path)
        .await
        .expect("create the file");
    read_only_changes_nothing!(
        &mut conn,
        Dialect::Sqlite,
        common::rasa::SQLITE_DDL,
        SqlConfig::sqlite(&path),
        Some(path.clone())
    );
    drop(conn);
    let _ = std::fs::remove_file(&path);
}

/// `ensure_schema` is where the schema changes, and it says what it changed: every migration
/// on a new database (and, for an SQLite file, its creation and journal mode), nothing the
/// second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_schema_says_what_it_changed() {
    let path = common::temp_sqlite_path();
    let store = SqlStore::connect(&SqlConfig {
        migrate: false,
        ..SqlConfig::sqlite(":memory:")
    })
    .await
    .expect("an in-memory database");
    let changes = store.ensure_schema().await.expect("migrate");
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(store.ensure_schema().await.expect("again").is_empty());
    // A file: its creation and journal mode too.
    let file = SqlStore::connect(&SqlConfig {
        migrate: false,
        ..SqlConfig::sqlite(&path)
    })
    .await
    .expect("a file that does not exist yet");
    assert!(!std::path::Path::new(&path).exists());
    let changes = file.ensure_schema().await.expect("migrate");
    assert!(
        changes[0].contains("created the SQLite database"),
        "{changes:?}"
    );
    assert!(changes[1].contains("journal mode"), "{changes:?}");
    assert_eq!(changes.len(), 5, "{changes:?}");
    TrackerStore::new(file.clone())
        .append("now", 0, &[Event::bot("written").at(1.0)])
        .await
        .expect("append once set up");
    assert!(file.ensure_schema().await.expect("again").is_empty());
    drop(file);
    let _ = std::fs::remove_file(&path);
}

/// Several processes starting at once on a new SQLite file (here: threads, each with its own
/// runtime and store) all set it up and write, while the others are setting up, reading and
/// writing. Switching the file to WAL needs an exclusive lock that SQLite does not wait for
/// by its busy handler while another connection reads.
#[test]
fn stores_starting_together_on_a_new_sqlite_file() {
    const STORES: usize = 6;
    // Enough rounds that a switch to WAL not tried again fails about one run in two.
    for _ in 0..50 {
        let path = common::temp_sqlite_path();
        let start = std::sync::Arc::new(std::sync::Barrier::new(STORES));
        let threads: Vec<_> = (0..STORES)
            .map(|n| {
                let path = path.clone();
                let start = std::sync::Arc::clone(&start);
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async move {
                        start.wait();
                        let store =
                            TrackerStore::new(SqlStore::connect(&SqlConfig::sqlite(&path)).await?);
                        for turn in 0..5_u64 {
                            let events = [Event::bot(format!("store {n} turn {turn}")).at(1.0)];
                            store.append(&format!("c{n}"), turn, &events).await?;
                            store
                                .read(&format!("c{}", (n + 1) % STORES), ReadScope::All)
                                .await?;
                        }
                        store.version(&format!("c{n}")).await
                    })
                })
            })
            .collect();
        for thread in threads {
            let version = thread.join().expect("a store's thread");
            assert_eq!(version.expect("set up and written to"), 5);
        }
        let _ = std::fs::remove_file(&path);
    }
}
