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

use common::batch::label;
use common::rasa::{
    self as r, Dialect, RasaRow, rasa_count, rasa_insert, rasa_keys, rasa_row, rasa_save,
    rasa_select,
};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use serde_json::Value;
use tracker_conformance::golden;
use tracker_core::{ErrorKind, Event, EventVerbosity, RasaSource, ReadScope, TrackerStore};
use tracker_sql::{SqlConfig, SqlRasaSource, SqlStore, diesel_async};
use tracker_testkit::{Service, service_url};

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

/// Writes Rasa's table and rows through `$conn`, then checks both directions against a store
/// connected with `$config`.
macro_rules! interop {
    ($conn:expr, $dialect:expr, $ddl:expr, $config:expr, $float_timestamps:expr) => {{
        let conn = $conn;
        let dialect: Dialect = $dialect;
        conn.batch_execute($ddl).await.expect("Rasa's DDL");
        let (rows, conversations) = rasa_rows("rasa-");
        // Rasa's own INSERT, one per row.
        for row in &rows {
            rasa_insert!(&mut *conn, dialect, row).expect("Rasa's INSERT");
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
            let expected: Vec<String> =
                rasa_select!(&mut *conn, dialect, r::select_all(), id.as_str())
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

        // A store that may not migrate serves Rasa's table as it is, in Rasa's order, and
        // refuses to write to it, naming the migration step.
        let read_only = TrackerStore::new(
            SqlStore::connect(&SqlConfig {
                migrate: false,
                ..$config.clone()
            })
            .await
            .expect("connect without migrating"),
        );
        let mut latest_sessions = Vec::new();
        for (id, _, _) in &conversations {
            let expected: Vec<String> =
                rasa_select!(&mut *conn, dialect, r::select_all(), id.as_str())
                    .into_iter()
                    .map(|row| row.data.expect("data"))
                    .collect();
            let count = expected.len() as u64;
            assert_eq!(read_only.version(id).await.expect("version"), count, "{id}");
            let read = read_only
                .read(id, ReadScope::All)
                .await
                .expect("read Rasa's table")
                .expect("exists");
            let texts: Vec<String> = read.events.iter().map(Event::to_rasa_json).collect();
            assert_eq!((read.version, texts), (count, expected.clone()), "{id}");
            let latest = read_only
                .read(id, ReadScope::LatestSession)
                .await
                .expect("read the latest session")
                .expect("exists");
            let texts: Vec<String> = latest.events.iter().map(Event::to_rasa_json).collect();
            assert!(expected.ends_with(&texts), "{id}: not the latest session");
            assert_eq!(latest.first_seq + texts.len() as u64 - 1, count, "{id}");
            latest_sessions.push((latest.first_seq, texts));
        }
        let mut keys = read_only.keys().await.expect("keys of Rasa's table");
        keys.sort();
        assert_eq!(keys, rasa_keys!(&mut *conn, dialect), "Rasa's keys");
        let (first, _, _) = &conversations[0];
        let version = read_only.version(first).await.expect("version");
        for refused in [
            read_only
                .append(first, version, &[Event::bot("not written").at(1.0)])
                .await
                .expect_err("an append to Rasa's table"),
            read_only
                .delete_at(first, version)
                .await
                .expect_err("a delete in Rasa's table"),
        ] {
            assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
            let message = refused.to_string();
            assert!(
                message.contains("tracker migrate-schema") && message.contains("migrate: true"),
                "{message}"
            );
        }
        assert_eq!(read_only.version(first).await.expect("version"), version);

        // Nothing changed: every migration is still to be run.
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
            "Rasa's table was migrated before it was asked for"
        );
        drop(unmigrated);

        let store = SqlStore::connect(&$config)
            .await
            .expect("connect and migrate");
        let trackers = TrackerStore::new(store.clone()).with_domain(golden::domain());

        // Every conversation is served with Rasa's rows, in Rasa's order, nothing lost.
        for (id, _, state) in &conversations {
            let expected: Vec<String> =
                rasa_select!(&mut *conn, dialect, r::select_all(), id.as_str())
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
        // The latest sessions are those read from Rasa's layout before the migration.
        for ((id, _, _), (first_seq, texts)) in conversations.iter().zip(&latest_sessions) {
            let latest = trackers
                .read(id, ReadScope::LatestSession)
                .await
                .expect("read")
                .expect("exists");
            let read: Vec<String> = latest.events.iter().map(Event::to_rasa_json).collect();
            assert_eq!((&latest.first_seq, &read), (first_seq, texts), "{id}");
        }
        // The store that read Rasa's layout writes once the table is migrated.
        let version = read_only.version(first).await.expect("version");
        assert_eq!(
            read_only
                .append(first, version, &[Event::bot("after the migration").at(1.0)])
                .await
                .expect("append once migrated"),
            version + 1
        );
        drop(read_only);

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
        let rasa_view = rasa_select!(&mut *conn, dialect, r::select_all(), id.as_str());
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
        let rasa_view = rasa_select!(&mut *conn, dialect, r::select_all(), fresh);
        let expected: Vec<RasaRow> = events
            .iter()
            .map(|event| rasa_row(fresh, &event.to_value()))
            .collect();
        assert_eq!(rasa_view, expected);

        // Rasa goes on writing after the migration, with its own statements: each row it
        // inserts gets its conversation's next position, and both read the same order.
        let (id, events, _) = &conversations[2];
        let before = trackers.version(id).await.expect("version");
        assert_eq!(
            rasa_count!(&mut *conn, dialect, id).expect("Rasa's count") as usize,
            rasa_select!(&mut *conn, dialect, r::select_latest(), id).len()
        );
        let rasa_rows: Vec<RasaRow> = [
            Event::user("eine Frage von Rasa", "ask", 0.7).at(1_800_000_100.25),
            Event::bot("Rasa antwortet").at(1_800_000_100.5),
        ]
        .iter()
        .map(|event| rasa_row(id, &event.to_value()))
        .collect();
        rasa_save!(&mut *conn, dialect, &rasa_rows).expect("Rasa's save after the migration");
        let read = trackers
            .read(id, ReadScope::All)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            read.version,
            before + 2,
            "{id}: Rasa's rows are not counted"
        );
        let texts: Vec<String> = read.events.iter().map(Event::to_rasa_json).collect();
        let rasa_texts: Vec<String> = rasa_select!(&mut *conn, dialect, r::select_all(), id)
            .into_iter()
            .map(|row| row.data.expect("data"))
            .collect();
        assert_eq!(
            texts, rasa_texts,
            "{id}: Rasa's order and the store's differ"
        );
        assert_eq!(texts.len(), events.len() + 2, "{id}");
        let expected: Vec<String> = rasa_rows
            .iter()
            .map(|row| row.data.clone().expect("data"))
            .collect();
        assert_eq!(
            texts[texts.len() - 2..],
            expected[..],
            "{id}: Rasa's rows are not last"
        );
        // The store goes on after Rasa's rows.
        assert_eq!(
            trackers
                .append(
                    id,
                    before + 2,
                    &[Event::bot("und weiter").at(1_800_000_101.0)]
                )
                .await
                .expect("append after Rasa's rows"),
            before + 3
        );
        assert_eq!(
            rasa_select!(&mut *conn, dialect, r::select_all(), id)
                .last()
                .and_then(|row| row.data.clone()),
            Some(Event::bot("und weiter").at(1_800_000_101.0).to_rasa_json())
        );
        assert!(rasa_keys!(&mut *conn, dialect).contains(&fresh.to_owned()));

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
    let url = common::with_database(&service.url, &database);
    // `login_db` creates the database, as Rasa's does.
    let mut admin = diesel_async::AsyncPgConnection::establish(&service.url)
        .await
        .expect("connect");
    let mut conn =
        diesel_async::AsyncPgConnection::establish(&login_created(&url, &database).await)
            .await
            .expect("connect to the new database");
    let store = interop!(
        &mut conn,
        Dialect::Postgres,
        r::POSTGRES_DDL,
        SqlConfig::from_url(&url),
        false
    );
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
    let url = common::with_database(&service.url, &database);
    let mut conn = diesel_async::AsyncMysqlConnection::establish(&url)
        .await
        .expect("connect to the new database");
    // Rasa's MySQL table has single-precision FLOAT timestamps, so Rasa's own state
    // (latest_event_time) cannot be compared exactly; events are.
    let store = interop!(
        &mut conn,
        Dialect::Mysql,
        r::MYSQL_DDL,
        SqlConfig::from_url(&url),
        true
    );
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
    interop!(
        &mut conn,
        Dialect::Sqlite,
        r::SQLITE_DDL,
        SqlConfig::sqlite(&path),
        false
    );
    drop(conn);
    let _ = std::fs::remove_file(&path);
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

/// Rasa's saves (its own statements: the count, then one INSERT per event, in one
/// transaction) race this store's appends on one conversation: whatever succeeds is stored
/// once, whole and in order, Rasa's order (`id`) and the store's (`seq`) agree, a failed write
/// leaves nothing, and a failed append is a `Conflict` (or, on MySQL, an InnoDB deadlock
/// between the two, rolled back).
macro_rules! rasa_races_appends {
    ($dialect:expr, $config:expr, $connect:expr) => {{
        const RASA_WRITERS: usize = 3;
        const STORE_WRITERS: usize = 3;
        // At least this many rounds each, and more until an append got through between
        // Rasa's saves (Rasa's writers, looping without a pause, win most races), for at most
        // `DEADLINE`.
        const ROUNDS: usize = 12;
        const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
        let appended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::time::Instant::now();
        let more = {
            let appended = appended.clone();
            move |round: usize| {
                round < ROUNDS
                    || (!appended.load(std::sync::atomic::Ordering::Relaxed)
                        && started.elapsed() < DEADLINE)
            }
        };
        let dialect: Dialect = $dialect;
        let store = TrackerStore::new(SqlStore::connect(&$config).await.expect("connect"));
        let id = format!("rasa-race-{}", uuid::Uuid::new_v4().simple());
        store
            .append(&id, 0, &[Event::action("action_listen").at(1.0)])
            .await
            .expect("create the conversation");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RASA_WRITERS + STORE_WRITERS));
        type Outcome = (bool, [String; 2], Result<(), String>);
        let mut tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>> = Vec::new();
        for writer in 0..RASA_WRITERS {
            let (id, barrier, more) = (id.clone(), barrier.clone(), more.clone());
            let mut conn = $connect.await;
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut outcomes = Vec::new();
                let mut round = 0;
                while more(round) {
                    round += 1;
                    let texts = [
                        format!("rasa {writer}.{round} a"),
                        format!("rasa {writer}.{round} b"),
                    ];
                    let rows: Vec<RasaRow> = texts
                        .iter()
                        .map(|text| rasa_row(&id, &Event::bot(text.clone()).at(2.0).to_value()))
                        .collect();
                    let result = rasa_save!(&mut conn, dialect, &rows).map_err(|e| e.to_string());
                    outcomes.push((true, texts, result));
                }
                outcomes
            }));
        }
        for writer in 0..STORE_WRITERS {
            let (id, barrier, store, more, appended) = (
                id.clone(),
                barrier.clone(),
                store.clone(),
                more.clone(),
                appended.clone(),
            );
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut outcomes = Vec::new();
                let mut round = 0;
                while more(round) {
                    round += 1;
                    let texts = [
                        format!("store {writer}.{round} a"),
                        format!("store {writer}.{round} b"),
                    ];
                    let events: Vec<Event> = texts
                        .iter()
                        .map(|text| Event::bot(text.clone()).at(3.0))
                        .collect();
                    let version = store.version(&id).await.expect("version");
                    let result = store.append(&id, version, &events).await;
                    if result.is_ok() {
                        appended.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Err(error) = &result {
                        let deadlock = dialect == Dialect::Mysql
                            && error.kind() == ErrorKind::Unavailable
                            && format!("{error:?}")
                                .to_ascii_lowercase()
                                .contains("deadlock");
                        assert!(
                            error.kind() == ErrorKind::Conflict || deadlock,
                            "an append failed otherwise: {error:?}"
                        );
                    }
                    outcomes.push((false, texts, result.map(|_| ()).map_err(|e| e.to_string())));
                }
                outcomes
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.extend(task.await.expect("writer"));
        }
        let read = store
            .read(&id, ReadScope::All)
            .await
            .expect("read the raced conversation")
            .expect("exists");
        let stored: Vec<String> = read.events.iter().map(|e| label(&e.to_value())).collect();
        let mut conn = $connect.await;
        let rasa_order: Vec<String> = rasa_select!(&mut conn, dialect, r::select_all(), &id)
            .into_iter()
            .map(|row| label(&serde_json::from_str(&row.data.expect("data")).expect("JSON")))
            .collect();
        assert_eq!(
            stored, rasa_order,
            "Rasa's order (id) and the store's (seq) differ"
        );
        let (mut rasa_ok, mut store_ok, mut failures) = (0, 0, Vec::new());
        for (from_rasa, texts, result) in &outcomes {
            let at: Vec<usize> = stored
                .iter()
                .enumerate()
                .filter(|(_, text)| texts.contains(text))
                .map(|(index, _)| index)
                .collect();
            match result {
                Ok(()) => {
                    assert_eq!(at.len(), 2, "{texts:?} stored {} times", at.len());
                    assert_eq!(at[1], at[0] + 1, "{texts:?} split");
                    assert_eq!(stored[at[0]], texts[0], "{texts:?} out of order");
                    if *from_rasa {
                        rasa_ok += 1
                    } else {
                        store_ok += 1
                    }
                }
                Err(error) => {
                    assert!(at.is_empty(), "{texts:?} failed ({error}) but is stored");
                    failures.push(error.clone());
                }
            }
        }
        assert_eq!(
            stored.len(),
            1 + 2 * (rasa_ok + store_ok),
            "rows nobody wrote"
        );
        eprintln!(
            "{dialect:?}: {rasa_ok} of Rasa's saves and {store_ok} appends stored; failures: {:?}",
            failures.iter().take(4).collect::<Vec<_>>()
        );
        assert!(rasa_ok > 0 && store_ok > 0, "one side never got through");
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    rasa_races_appends!(
        Dialect::Postgres,
        SqlConfig::from_url(&service.url),
        common::rasa::connect_postgres(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_mysql() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    rasa_races_appends!(
        Dialect::Mysql,
        SqlConfig::from_url(&service.url),
        common::rasa::connect_mysql(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_sqlite() {
    let path = common::temp_sqlite_path();
    rasa_races_appends!(
        Dialect::Sqlite,
        SqlConfig::sqlite(&path),
        common::rasa::connect_sqlite(&path)
    );
}

/// After a race on a store with its outbox on: every conversation is pending, and its outbox
/// version is its version — no insert, Rasa's or the store's, was left out of the outbox.
async fn outbox_matches_the_conversations(isolated: &common::outbox::Isolated) {
    use tracker_core::{ListRequest, Store};

    let outbox = isolated.outbox().expect("the outbox is on");
    let page = isolated
        .list(&ListRequest {
            cursor: None,
            limit: 100,
        })
        .await
        .expect("list");
    assert!(!page.sender_ids.is_empty());
    let pending = outbox.pending(100).await.expect("pending");
    assert_eq!(pending.len(), page.sender_ids.len(), "{pending:?}");
    for id in pending {
        let entry = outbox
            .lease(&id, "relay-check", std::time::Duration::from_secs(30))
            .await
            .expect("lease")
            .expect("free");
        let version = isolated.version(&id).await.expect("version");
        assert_eq!(
            (entry.version, entry.published),
            (version, 0),
            "{id}: the outbox's version is the conversation's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_with_outbox_postgres() {
    let Some(isolated) = common::outbox::postgres().await else {
        return;
    };
    rasa_races_appends!(
        Dialect::Postgres,
        isolated.config.clone(),
        common::outbox::rasa_postgres(&isolated.place)
    );
    outbox_matches_the_conversations(&isolated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_with_outbox_mysql() {
    let Some(isolated) = common::outbox::mysql().await else {
        return;
    };
    rasa_races_appends!(
        Dialect::Mysql,
        isolated.config.clone(),
        common::outbox::rasa_mysql(&isolated.place)
    );
    outbox_matches_the_conversations(&isolated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_appends_with_outbox_sqlite() {
    let Some(isolated) = common::outbox::sqlite_file().await else {
        return;
    };
    rasa_races_appends!(
        Dialect::Sqlite,
        isolated.config.clone(),
        common::outbox::rasa_sqlite(&isolated.place)
    );
    outbox_matches_the_conversations(&isolated).await;
}
