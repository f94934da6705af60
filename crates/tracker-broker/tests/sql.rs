//! The SQL broker on SQLite (a temporary file), PostgreSQL (`TRACKER_TEST_POSTGRES_URL`) and
//! MariaDB/MySQL (`TRACKER_TEST_MYSQL_URL`). The server tests work in their own database,
//! `tracker_broker_test`, one table per test, dropped at the end.

mod common;

use diesel::sql_types::{Integer, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

type SqliteConnection =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

const DATABASE: &str = "tracker_broker_test";

#[derive(Debug, diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    sender_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    data: Option<String>,
}

#[derive(Debug, diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The server URL of the environment variable with its database replaced by ours (created if
/// missing), or `None` after saying the test did not run.
async fn database(variable: &str, test: &str) -> Option<String> {
    let Ok(url) = std::env::var(variable) else {
        common::not_run(test, &format!("{variable} is not set"));
        return None;
    };
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let ours = format!("{base}/{DATABASE}");
    if url.starts_with("postgres") {
        let mut connection = match AsyncPgConnection::establish(&url).await {
            Ok(connection) => connection,
            Err(error) => {
                common::not_run(test, &format!("no PostgreSQL: {error}"));
                return None;
            }
        };
        let exists: Vec<Column> = diesel::sql_query(format!(
            "SELECT datname::text AS name FROM pg_database WHERE datname = '{DATABASE}'"
        ))
        .load(&mut connection)
        .await
        .expect("pg_database");
        if exists.is_empty() {
            // Two tests may create it at once: a failure is fine if it exists afterwards.
            let _ = diesel::sql_query(format!("CREATE DATABASE {DATABASE}"))
                .execute(&mut connection)
                .await;
        }
    } else {
        let mut connection = match AsyncMysqlConnection::establish(&url).await {
            Ok(connection) => connection,
            Err(error) => {
                common::not_run(test, &format!("no MySQL: {error}"));
                return None;
            }
        };
        diesel::sql_query(format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
            .execute(&mut connection)
            .await
            .expect("create database");
    }
    Some(ours)
}

/// Every row of `table`, by id.
async fn rows(url: &str, table: &str) -> Vec<Row> {
    let query = format!("SELECT id, sender_id, data FROM {table} ORDER BY id");
    if url.starts_with("postgres") {
        let mut connection = AsyncPgConnection::establish(url).await.expect("connect");
        diesel::sql_query(query)
            .load(&mut connection)
            .await
            .expect("rows")
    } else if url.starts_with("mysql") {
        let mut connection = AsyncMysqlConnection::establish(url).await.expect("connect");
        diesel::sql_query(query)
            .load(&mut connection)
            .await
            .expect("rows")
    } else {
        let mut connection = SqliteConnection::establish(url).await.expect("connect");
        diesel::sql_query(query)
            .load(&mut connection)
            .await
            .expect("rows")
    }
}

async fn drop_table(url: &str, table: &str) {
    let statement = format!("DROP TABLE IF EXISTS {table}");
    if url.starts_with("postgres") {
        let mut connection = AsyncPgConnection::establish(url).await.expect("connect");
        diesel::sql_query(statement)
            .execute(&mut connection)
            .await
            .expect("drop");
    } else {
        let mut connection = AsyncMysqlConnection::establish(url).await.expect("connect");
        diesel::sql_query(statement)
            .execute(&mut connection)
            .await
            .expect("drop");
    }
}

/// Publishes the golden messages twice (a second broker on the same table continues it) and
/// checks every row: the sender, Rasa's body text byte for byte, ids in publishing order.
async fn publishes_rasas_rows(section: serde_json::Value, read_url: &str, table: &str) {
    let goldens = common::golden();
    let messages: Vec<_> = goldens.iter().map(|g| g.message.clone()).collect();
    let broker = tracker_broker::connect(common::section(section.clone()))
        .await
        .expect("connects");
    for batch in messages.chunks(9) {
        broker.publish(batch).await.expect("published");
    }
    broker
        .publish(&[])
        .await
        .expect("an empty batch is nothing");
    drop(broker);
    let again = tracker_broker::connect(common::section(section))
        .await
        .expect("an existing table is used as it is");
    again.publish(&messages).await.expect("published again");

    let rows = rows(read_url, table).await;
    assert_eq!(rows.len(), 2 * goldens.len());
    for (index, (row, golden)) in rows.iter().zip(goldens.iter().chain(&goldens)).enumerate() {
        assert_eq!(
            row.sender_id.as_deref(),
            Some(golden.message.sender_id.as_str()),
            "{}",
            golden.what
        );
        assert_eq!(
            row.data.as_deref(),
            Some(golden.body.as_str()),
            "{}",
            golden.what
        );
        if index > 0 {
            assert!(row.id > rows[index - 1].id, "ids in publishing order");
        }
    }
}

#[tokio::test]
async fn sqlite_rows_are_rasas() {
    let directory = std::env::temp_dir().join(common::unique("tracker_broker_sqlite"));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let path = directory.join("events.db");
    let path_text = path.to_str().expect("UTF-8 path");
    publishes_rasas_rows(json!({"type": "sql", "db": path_text}), path_text, "events").await;
    // The table has Rasa's columns.
    let mut connection = SqliteConnection::establish(path_text)
        .await
        .expect("connect");
    let columns: Vec<Column> = diesel::sql_query("SELECT name FROM pragma_table_info('events')")
        .load(&mut connection)
        .await
        .expect("columns");
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "sender_id", "data"]);
    drop(connection);
    std::fs::remove_dir_all(&directory).expect("cleanup");
}

#[tokio::test]
async fn sqlite_by_url_and_custom_table() {
    let directory = std::env::temp_dir().join(common::unique("tracker_broker_sqlite"));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let path = directory.join("broker.db");
    let path_text = path.to_str().expect("UTF-8 path");
    // SQLAlchemy's absolute-path form: four slashes.
    publishes_rasas_rows(
        json!({"type": "SQL", "url": format!("sqlite:///{path_text}"), "table": "broker_events"}),
        path_text,
        "broker_events",
    )
    .await;
    std::fs::remove_dir_all(&directory).expect("cleanup");
}

#[tokio::test]
async fn postgres_rows_are_rasas() {
    let Some(url) = database("TRACKER_TEST_POSTGRES_URL", "postgres_rows_are_rasas").await else {
        return;
    };
    let table = common::unique("broker_events");
    // Rasa's keys: the host in `url`, the rest beside it.
    let (host, port) = host_port(&url, 5432);
    let (username, password) = userinfo(&url);
    publishes_rasas_rows(
        json!({
            "type": "sql", "dialect": "postgresql", "url": host, "port": port.to_string(),
            "db": DATABASE, "username": username, "password": password, "table": table,
        }),
        &url,
        &table,
    )
    .await;
    drop_table(&url, &table).await;
}

#[tokio::test]
async fn mysql_rows_are_rasas() {
    let Some(url) = database("TRACKER_TEST_MYSQL_URL", "mysql_rows_are_rasas").await else {
        return;
    };
    let table = common::unique("broker_events");
    // A whole URL in `url`, with SQLAlchemy's driver suffix.
    let whole = url.replacen("mysql://", "mysql+pymysql://", 1);
    publishes_rasas_rows(
        json!({"type": "sql", "url": whole, "table": table}),
        &url,
        &table,
    )
    .await;
    drop_table(&url, &table).await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_at_start_up() {
    let error = tracker_broker::connect(common::section(json!({
        "type": "sql", "dialect": "postgresql", "url": "127.0.0.1", "port": 1,
        "db": "nothing", "username": "nobody",
    })))
    .await
    .expect_err("nothing listens on port 1");
    assert_eq!(
        error.kind(),
        tracker_core::ErrorKind::Unavailable,
        "{error}"
    );
}

/// Host and port of a server URL.
fn host_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let netloc = rest.split('/').next().unwrap_or(rest);
    let host_port = netloc.rsplit_once('@').map_or(netloc, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().expect("port")),
        None => (host_port.to_owned(), default_port),
    }
}

/// User and password of a server URL.
fn userinfo(url: &str) -> (Option<String>, Option<String>) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let netloc = rest.split('/').next().unwrap_or(rest);
    match netloc.rsplit_once('@') {
        Some((userinfo, _)) => match userinfo.split_once(':') {
            Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
            None => (Some(userinfo.to_owned()), None),
        },
        None => (None, None),
    }
}
