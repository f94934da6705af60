//! What Rasa 3.6.21's `SQLTrackerStore` sends to the database, statement for statement: its
//! DDL on each dialect and the statements SQLAlchemy 1.4 renders for `save`, `retrieve`,
//! `retrieve_full_tracker` and `keys` (taken from the statements Rasa's engine executed),
//! driven from Rust through a connection of the test's own.

#![allow(dead_code, unused_imports, unused_macros)]

use serde_json::Value;
use tracker_core::json::to_python_json;
use tracker_sql::diesel;

/// The dialects, for the placeholders of Rasa's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

/// `save`: one INSERT per new event, naming Rasa's columns only (`id` comes from the sequence
/// or auto-increment). On PostgreSQL SQLAlchemy adds `RETURNING events.id`.
pub const INSERT: &str = "INSERT INTO events (sender_id, type_name, timestamp, intent_name, \
                          action_name, data) VALUES (?, ?, ?, ?, ?, ?)";

const COLUMNS: &str = "events.id AS events_id, events.sender_id AS events_sender_id, \
                       events.type_name AS events_type_name, events.timestamp AS events_timestamp, \
                       events.intent_name AS events_intent_name, \
                       events.action_name AS events_action_name, events.data AS events_data";

/// `retrieve_full_tracker`: every row of a conversation, by `id`.
pub fn select_all() -> String {
    format!("SELECT {COLUMNS} \nFROM events \nWHERE events.sender_id = ? ORDER BY events.id")
}

/// The latest-session query of `retrieve` (binds: sender id, `session_started`, sender id),
/// its subquery named `alias`.
fn latest(alias: &str) -> String {
    format!(
        "SELECT {COLUMNS} \nFROM events, (SELECT max(events.timestamp) AS session_start \nFROM \
         events \nWHERE events.sender_id = ? AND events.type_name = ?) AS {alias} \nWHERE \
         events.sender_id = ? AND (events.timestamp >= {alias}.session_start OR \
         {alias}.session_start IS NULL) ORDER BY events.id"
    )
}

/// `retrieve`: the rows from the latest `session_started` on, by timestamp.
pub fn select_latest() -> String {
    latest("anon_1")
}

/// `save`'s count of the rows already stored (the latest session's), before its inserts.
pub fn count_latest() -> String {
    format!(
        "SELECT count(*) AS count_1 \nFROM ({}) AS anon_1",
        latest("anon_2")
    )
}

/// `keys`.
pub const KEYS: &str = "SELECT DISTINCT events.sender_id AS events_sender_id \nFROM events";

/// `sql` for `dialect`: `?` placeholders become `$1`, `$2`, ... on PostgreSQL, where an INSERT
/// also returns the new id, as SQLAlchemy asks for it.
pub fn statement(dialect: Dialect, sql: &str) -> String {
    if dialect != Dialect::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    if sql.starts_with("INSERT") {
        out.push_str(" RETURNING events.id");
    }
    out
}

/// The DDL Rasa's `metadata.create_all` runs on PostgreSQL (SERIAL id, the sender index).
pub const POSTGRES_DDL: &str = "
    CREATE SEQUENCE events_id_seq;
    CREATE TABLE events (
        id INTEGER NOT NULL DEFAULT nextval('events_id_seq'),
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp DOUBLE PRECISION,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT,
        CONSTRAINT events_pkey PRIMARY KEY (id)
    );
    ALTER SEQUENCE events_id_seq OWNED BY events.id;
    CREATE INDEX ix_events_sender_id ON events (sender_id);";

/// The DDL Rasa runs on MySQL / MariaDB.
pub const MYSQL_DDL: &str = "
    CREATE TABLE events (
        id INTEGER NOT NULL AUTO_INCREMENT,
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp FLOAT,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT,
        PRIMARY KEY (id)
    );
    CREATE INDEX ix_events_sender_id ON events (sender_id);";

/// The DDL Rasa runs on SQLite.
pub const SQLITE_DDL: &str = "
    CREATE TABLE events (
        id INTEGER NOT NULL,
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp FLOAT,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT,
        PRIMARY KEY (id)
    );
    CREATE INDEX ix_events_sender_id ON events (sender_id);";

/// A row as Rasa's `SQLTrackerStore.save` writes it, and as its queries read it.
#[derive(diesel::QueryableByName, Debug, Clone, PartialEq)]
pub struct RasaRow {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = events_sender_id)]
    pub sender_id: String,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = events_type_name)]
    pub type_name: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>, column_name = events_timestamp)]
    pub timestamp: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>, column_name = events_intent_name)]
    pub intent_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>, column_name = events_action_name)]
    pub action_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>, column_name = events_data)]
    pub data: Option<String>,
}

/// The row Rasa writes for `event` (its `as_dict()`): `intent_name` from the parse data,
/// `action_name` from `name`, `data` as Python's `json.dumps`.
pub fn rasa_row(sender_id: &str, event: &Value) -> RasaRow {
    RasaRow {
        sender_id: sender_id.to_owned(),
        type_name: event["event"].as_str().expect("tag").to_owned(),
        timestamp: event["timestamp"].as_f64(),
        intent_name: event
            .get("parse_data")
            .and_then(|p| p["intent"]["name"].as_str())
            .map(str::to_owned),
        action_name: event.get("name").and_then(Value::as_str).map(str::to_owned),
        data: Some(to_python_json(event).expect("render")),
    }
}

#[derive(diesel::QueryableByName)]
pub struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub count_1: i64,
}

#[derive(diesel::QueryableByName)]
pub struct Key {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub events_sender_id: String,
}

/// Rasa's INSERT of `$row` through `$conn` (a diesel-async connection of `$dialect`).
macro_rules! rasa_insert {
    ($conn:expr, $dialect:expr, $row:expr) => {{
        use tracker_sql::diesel::sql_types::{Double, Nullable, Text};
        use tracker_sql::diesel_async::RunQueryDsl;
        let row: &crate::common::rasa::RasaRow = $row;
        tracker_sql::diesel::sql_query(crate::common::rasa::statement(
            $dialect,
            crate::common::rasa::INSERT,
        ))
        .bind::<Text, _>(&row.sender_id)
        .bind::<Text, _>(&row.type_name)
        .bind::<Nullable<Double>, _>(row.timestamp)
        .bind::<Nullable<Text>, _>(&row.intent_name)
        .bind::<Nullable<Text>, _>(&row.action_name)
        .bind::<Nullable<Text>, _>(&row.data)
        .execute($conn)
        .await
    }};
}
pub(crate) use rasa_insert;

/// Rasa's latest-session count of `$sender_id` (the first statement of its `save`).
macro_rules! rasa_count {
    ($conn:expr, $dialect:expr, $sender_id:expr) => {{
        use tracker_sql::diesel::sql_types::Text;
        use tracker_sql::diesel_async::RunQueryDsl;
        let sender_id: &str = $sender_id;
        tracker_sql::diesel::sql_query(crate::common::rasa::statement(
            $dialect,
            &crate::common::rasa::count_latest(),
        ))
        .bind::<Text, _>(sender_id)
        .bind::<Text, _>("session_started")
        .bind::<Text, _>(sender_id)
        .get_result::<crate::common::rasa::Count>($conn)
        .await
        .map(|count| count.count_1)
    }};
}
pub(crate) use rasa_count;

/// Rasa's `save` of `$rows` (all of one conversation): the count, then one INSERT per row, in
/// one transaction. (pysqlite opens SQLite's transaction at the first INSERT.)
macro_rules! rasa_save {
    ($conn:expr, $dialect:expr, $rows:expr) => {{
        use tracker_sql::diesel_async::AsyncConnection;
        let rows: &[crate::common::rasa::RasaRow] = $rows;
        let dialect: crate::common::rasa::Dialect = $dialect;
        let sender_id = rows
            .first()
            .map(|row| row.sender_id.clone())
            .unwrap_or_default();
        async {
            if dialect == crate::common::rasa::Dialect::Sqlite {
                crate::common::rasa::rasa_count!(&mut *$conn, dialect, &sender_id)?;
            }
            $conn
                .transaction::<(), tracker_sql::diesel::result::Error, _>(async |conn| {
                    if dialect != crate::common::rasa::Dialect::Sqlite {
                        crate::common::rasa::rasa_count!(&mut *conn, dialect, &sender_id)?;
                    }
                    for row in rows {
                        crate::common::rasa::rasa_insert!(&mut *conn, dialect, row)?;
                    }
                    Ok(())
                })
                .await
        }
        .await
    }};
}
pub(crate) use rasa_save;

/// Rasa's read of one conversation with `$sql` (`select_all()` or `select_latest()`).
macro_rules! rasa_select {
    ($conn:expr, $dialect:expr, $sql:expr, $sender_id:expr) => {{
        use tracker_sql::diesel::sql_types::Text;
        use tracker_sql::diesel_async::RunQueryDsl;
        let sql: String = $sql;
        let sender_id: &str = $sender_id;
        let query = tracker_sql::diesel::sql_query(crate::common::rasa::statement($dialect, &sql))
            .bind::<Text, _>(sender_id)
            .into_boxed();
        let query = if sql.contains("session_start") {
            query
                .bind::<Text, _>("session_started")
                .bind::<Text, _>(sender_id)
        } else {
            query
        };
        query
            .load::<crate::common::rasa::RasaRow>($conn)
            .await
            .expect("Rasa's query")
    }};
}
pub(crate) use rasa_select;

/// Rasa's `keys`.
macro_rules! rasa_keys {
    ($conn:expr, $dialect:expr) => {{
        use tracker_sql::diesel_async::RunQueryDsl;
        let mut keys: Vec<String> = tracker_sql::diesel::sql_query(crate::common::rasa::KEYS)
            .load::<crate::common::rasa::Key>($conn)
            .await
            .expect("Rasa's keys")
            .into_iter()
            .map(|key| key.events_sender_id)
            .collect();
        keys.sort();
        keys
    }};
}
pub(crate) use rasa_keys;

/// A connection as Rasa's to the PostgreSQL database at `url`.
#[cfg(feature = "postgres")]
pub async fn connect_postgres(url: &str) -> tracker_sql::diesel_async::AsyncPgConnection {
    use tracker_sql::diesel_async::AsyncConnection;
    tracker_sql::diesel_async::AsyncPgConnection::establish(url)
        .await
        .expect("connect")
}

/// A connection as Rasa's to the MariaDB/MySQL database at `url`.
#[cfg(feature = "mysql")]
pub async fn connect_mysql(url: &str) -> tracker_sql::diesel_async::AsyncMysqlConnection {
    use tracker_sql::diesel_async::AsyncConnection;
    tracker_sql::diesel_async::AsyncMysqlConnection::establish(url)
        .await
        .expect("connect")
}

/// A connection as Rasa's (pysqlite's 5 s busy timeout) to the SQLite file at `path`.
#[cfg(feature = "sqlite")]
pub async fn connect_sqlite(path: &str) -> tracker_sql::SqliteConnection {
    use tracker_sql::diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let mut conn = tracker_sql::SqliteConnection::establish(path)
        .await
        .expect("open");
    // pysqlite's default: wait up to 5 s for the lock.
    conn.batch_execute("PRAGMA busy_timeout = 5000")
        .await
        .expect("busy timeout");
    conn
}
