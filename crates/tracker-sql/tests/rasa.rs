//! Rasa interop, both ways, on every dialect:
//!
//! - a database Rasa 3.x created and wrote (its DDL, its rows: `data` in Python's JSON text,
//!   conversations interleaved, a row Rasa's count-based save duplicated) is read as it is by
//!   `SqlRasaSource`, without migrating it, and copied elsewhere with
//!   `TrackerStore::import_from` (resumably; never over other events);
//! - the same database is migrated in place and served with the same events in the same
//!   order;
//! - rows this store writes are what Rasa reads: its seven columns, ordered by `id`.

mod common;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;
use tracker_conformance::golden;
use tracker_core::json::to_python_json;
use tracker_core::{ErrorKind, Event, EventVerbosity, RasaSource, ReadScope, TrackerStore};
use tracker_sql::{SqlConfig, SqlRasaSource, SqlStore, diesel, diesel_async};
use tracker_testkit::{Service, service_url};

/// Rasa's `events` table as its SQLAlchemy model declares it (no `seq`).
mod rasa {
    diesel::table! {
        events (id) {
            id -> BigInt,
            sender_id -> Text,
            type_name -> Text,
            timestamp -> Nullable<Double>,
            intent_name -> Nullable<Text>,
            action_name -> Nullable<Text>,
            data -> Nullable<Text>,
        }
    }
}

/// A row as Rasa's `SQLTrackerStore.save` writes it.
#[derive(Insertable, Queryable, Debug, Clone, PartialEq)]
#[diesel(table_name = rasa::events)]
struct RasaRow {
    sender_id: String,
    type_name: String,
    timestamp: Option<f64>,
    intent_name: Option<String>,
    action_name: Option<String>,
    data: Option<String>,
}

fn rasa_row(sender_id: &str, event: &Value) -> RasaRow {
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

/// The golden conversations as Rasa writes them: rows of different conversations
/// interleaved, and one event written twice by Rasa's count-based save.
/// A golden conversation: its sender id, its events and Rasa's `current_state(ALL)`.
type Conversation = (String, Vec<Value>, Value);

fn rasa_rows(prefix: &str) -> (Vec<RasaRow>, Vec<Conversation>) {
    let mut conversations = Vec::new();
    for line in golden::lines(golden::TRACKERS_JSONL) {
        let id = format!("{prefix}{}", line["sender_id"].as_str().expect("id"));
        let events = line["events"].as_array().expect("events").clone();
        let mut state = line["state_all"].clone();
        state["sender_id"] = Value::from(id.clone());
        conversations.push((id, events, state));
    }
    let longest = conversations.iter().map(|c| c.1.len()).max().unwrap_or(0);
    let mut rows = Vec::new();
    for index in 0..longest {
        for (id, events, _) in &conversations {
            if let Some(event) = events.get(index) {
                rows.push(rasa_row(id, event));
            }
        }
    }
    // Rasa's SQL save duplicates an event when the tracker still holds the
    // `action_session_start` before its session (reference §4.1): keep it, as Rasa would.
    let (id, events, _) = &conversations[0];
    let duplicated = rasa_row(id, events.last().expect("event"));
    rows.push(duplicated);
    (rows, conversations)
}

const POSTGRES_DDL: &str = "
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

const MYSQL_DDL: &str = "
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

const SQLITE_DDL: &str = "
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

/// Rasa's read: its seven columns of one conversation, ordered by `id`.
macro_rules! rasa_read {
    ($conn:expr, $sender_id:expr) => {
        rasa::events::table
            .filter(rasa::events::sender_id.eq($sender_id))
            .order(rasa::events::id.asc())
            .select((
                rasa::events::sender_id,
                rasa::events::type_name,
                rasa::events::timestamp,
                rasa::events::intent_name,
                rasa::events::action_name,
                rasa::events::data,
            ))
            .load::<RasaRow>($conn)
            .await
            .expect("Rasa's query")
    };
}

/// Writes Rasa's table and rows through `$conn`, then checks both directions against a store
/// connected with `$config`.
macro_rules! interop {
    ($conn:expr, $ddl:expr, $config:expr, $float_timestamps:expr) => {{
        let conn = $conn;
        conn.batch_execute($ddl).await.expect("Rasa's DDL");
        let (rows, conversations) = rasa_rows("rasa-");
        // One INSERT per row, as Rasa writes them.
        for row in &rows {
            diesel::insert_into(rasa::events::table)
                .values(row)
                .execute(&mut *conn)
                .await
                .expect("Rasa's rows");
        }

        // Read as it is, without migrating, and copied elsewhere.
        let source = SqlRasaSource::connect(&$config)
            .await
            .expect("open Rasa's table");
        assert!(
            source.describe().contains("events"),
            "{}",
            source.describe()
        );
        let ids = source.sender_ids().await.expect("Rasa's sender ids");
        assert_eq!(ids.len(), conversations.len());
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "not sorted: {ids:?}"
        );
        let elsewhere = TrackerStore::new(
            SqlStore::connect(&SqlConfig::sqlite(":memory:"))
                .await
                .expect("a destination"),
        );
        for (id, _, _) in &conversations {
            assert!(ids.contains(id), "{id} not listed");
            let expected: Vec<String> = rasa_read!(&mut *conn, id.as_str())
                .into_iter()
                .map(|row| row.data.expect("data"))
                .collect();
            let read = source.read(id).await.expect("read").expect("exists");
            assert_eq!(&read.sender_id, id);
            let texts: Vec<String> = read.events.iter().map(Event::to_rasa_json).collect();
            assert_eq!(texts, expected, "{id}: Rasa-format read");

            let imported = elsewhere
                .import_from(&source, id)
                .await
                .expect("import")
                .expect("exists");
            let count = expected.len() as u64;
            assert_eq!(
                (imported.already_present, imported.written, imported.version),
                (0, count, count),
                "{id}"
            );
            let copied = elsewhere
                .read(id, ReadScope::All)
                .await
                .expect("read the copy")
                .expect("copied");
            let texts: Vec<String> = copied.events.iter().map(Event::to_rasa_json).collect();
            assert_eq!(texts, expected, "{id}: the copy differs from Rasa's rows");
            // A second run finds everything there and writes nothing.
            let again = elsewhere
                .import_from(&source, id)
                .await
                .expect("import again")
                .expect("exists");
            assert_eq!((again.already_present, again.written), (count, 0), "{id}");
        }
        assert!(source.read("nobody").await.expect("read").is_none());
        assert!(
            elsewhere
                .import_from(&source, "nobody")
                .await
                .expect("import")
                .is_none()
        );
        // Other events under the same id in the destination: nothing is written over them.
        let (id, _, _) = &conversations[1];
        let other = "someone else";
        elsewhere
            .append(other, 0, &[Event::bot("not from Rasa").at(1.0)])
            .await
            .expect("append");
        let rasa_first = source.read(id).await.expect("read").expect("exists");
        let diverged = elsewhere
            .import(other, &rasa_first.events)
            .await
            .expect_err("a different conversation");
        assert_eq!(diverged.kind(), ErrorKind::Diverged, "{diverged}");
        assert_eq!(elsewhere.version(other).await.expect("version"), 1);
        drop(source);

        // The source changed nothing: every migration is still to be run.
        let unmigrated = SqlStore::connect(&SqlConfig {
            migrate: false,
            ..$config.clone()
        })
        .await
        .expect("connect without migrating");
        assert!(
            !unmigrated
                .ensure_schema()
                .await
                .expect("migrate")
                .is_empty(),
            "the source migrated Rasa's table"
        );
        drop(unmigrated);

        let store = SqlStore::connect(&$config)
            .await
            .expect("connect and migrate");
        let trackers = TrackerStore::new(store.clone()).with_domain(golden::domain());

        // Every conversation is served with Rasa's rows, in Rasa's order, nothing lost.
        for (id, _, state) in &conversations {
            let expected: Vec<String> = rasa_read!(&mut *conn, id.as_str())
                .into_iter()
                .map(|row| row.data.expect("data"))
                .collect();
            let read = trackers
                .read(id, ReadScope::All)
                .await
                .expect("read")
                .expect("exists");
            let texts: Vec<String> = read.events.iter().map(Event::to_rasa_json).collect();
            assert_eq!(texts, expected, "{id}: events differ from Rasa's rows");
            if !$float_timestamps && id != &conversations[0].0 {
                let tracker = trackers
                    .retrieve_full_tracker(id)
                    .await
                    .expect("retrieve")
                    .expect("exists");
                assert_eq!(&tracker.current_state(EventVerbosity::All), state, "{id}");
            }
        }
        let keys = trackers.keys().await.expect("keys");
        for (id, _, _) in &conversations {
            assert!(keys.contains(id), "{id} not listed");
        }

        // New events continue each conversation where Rasa left it; Rasa reads them.
        let (id, _, _) = &conversations[1];
        let mut tracker = trackers
            .retrieve(id)
            .await
            .expect("retrieve")
            .expect("exists");
        let before = tracker.version();
        let added = [
            Event::user("noch eine Frage", "chitchat", 0.8).at(1_800_000_000.25),
            Event::slot("cuisine", "thai").at(1_800_000_000.5),
            Event::bot("Gern!").at(1_800_000_001.0),
        ];
        tracker.extend(added.iter().cloned());
        assert_eq!(trackers.save(&mut tracker).await.expect("save"), before + 3);
        let rasa_view = rasa_read!(&mut *conn, id.as_str());
        let tail: Vec<RasaRow> = rasa_view[rasa_view.len() - 3..].to_vec();
        let expected: Vec<RasaRow> = added
            .iter()
            .map(|event| rasa_row(id, &event.to_value()))
            .collect();
        assert_eq!(tail, expected, "Rasa does not read what the store wrote");

        // A conversation written only by this store reads back through Rasa's query.
        let fresh = "written-by-tracker-store ü";
        let events: Vec<Event> = golden::event_values()
            .into_iter()
            .map(|value| Event::from_value(value).expect("golden event"))
            .collect();
        trackers.append(fresh, 0, &events).await.expect("append");
        let rasa_view = rasa_read!(&mut *conn, fresh);
        let expected: Vec<RasaRow> = events
            .iter()
            .map(|event| rasa_row(fresh, &event.to_value()))
            .collect();
        assert_eq!(rasa_view, expected);

        // Migrating again changes nothing.
        assert!(
            store
                .ensure_schema()
                .await
                .expect("migrate again")
                .is_empty()
        );
        // Served in place, the migrated table is what Rasa's layout holds: importing it into
        // the store it belongs to finds every event there.
        let in_place = SqlRasaSource::from_store(&store);
        for (id, _, _) in &conversations {
            let imported = trackers
                .import_from(&in_place, id)
                .await
                .expect("import in place")
                .expect("exists");
            assert_eq!(imported.written, 0, "{id}");
            assert_eq!(imported.already_present, imported.version, "{id}");
        }
        store
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_written_by_rasa() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    let database = format!("rasa_interop_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&service.url, &database);
    // `login_db` creates the database, as Rasa's does.
    let mut admin = diesel_async::AsyncPgConnection::establish(&service.url)
        .await
        .expect("connect");
    let mut conn =
        diesel_async::AsyncPgConnection::establish(&login_created(&url, &database).await)
            .await
            .expect("connect to the new database");
    let store = interop!(&mut conn, POSTGRES_DDL, SqlConfig::from_url(&url), false);
    drop(store);
    drop(conn);
    admin
        .batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
        .await
        .expect("drop the test database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_database_written_by_rasa() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    let database = format!("rasa_interop_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel_async::AsyncMysqlConnection::establish(&service.url)
        .await
        .expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE `{database}`"))
        .await
        .expect("create database");
    let url = with_database(&service.url, &database);
    let mut conn = diesel_async::AsyncMysqlConnection::establish(&url)
        .await
        .expect("connect to the new database");
    // Rasa's MySQL table has single-precision FLOAT timestamps, so Rasa's own state
    // (latest_event_time) cannot be compared exactly; events are.
    let store = interop!(&mut conn, MYSQL_DDL, SqlConfig::from_url(&url), true);
    drop(store);
    drop(conn);
    admin
        .batch_execute(&format!("DROP DATABASE `{database}`"))
        .await
        .expect("drop the test database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_written_by_rasa() {
    let path = common::temp_sqlite_path();
    let mut conn = tracker_sql::SqliteConnection::establish(&path)
        .await
        .expect("create the file");
    interop!(&mut conn, SQLITE_DDL, SqlConfig::sqlite(&path), false);
    drop(conn);
    let _ = std::fs::remove_file(&path);
}

/// `url` with its database replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Creates `database` through Rasa's `login_db` mechanism and returns its URL.
async fn login_created(url: &str, database: &str) -> String {
    let (host, user) = {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        match authority.rsplit_once('@') {
            Some((user, host)) => (
                host.to_owned(),
                Some(user.split(':').next().unwrap_or_default().to_owned()),
            ),
            None => (authority.to_owned(), None),
        }
    };
    let config = SqlConfig {
        dialect: "postgresql".into(),
        url: Some(host),
        db: database.to_owned(),
        username: user,
        login_db: Some("postgres".into()),
        migrate: false,
        ..SqlConfig::default()
    };
    SqlStore::connect(&config)
        .await
        .expect("login_db creates the database");
    url.to_owned()
}
