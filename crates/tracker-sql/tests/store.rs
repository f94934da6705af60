//! The SQL layout itself: unreadable rows, the query plan of latest-session reads, column
//! widths, SQLite's lock waits, stores on existing pools.

mod common;

use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use tracker_core::{ErrorKind, Event, ReadScope, TrackerStore};
use tracker_sql::{SqlConfig, SqlStore, diesel_async};
use tracker_testkit::{Service, service_url};

fn fresh(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn session(t: f64, turns: usize) -> Vec<Event> {
    let mut events = vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t),
        Event::action("action_listen").at(t),
    ];
    for turn in 0..turns {
        events.push(Event::user(format!("turn {turn}"), "greet", 0.9).at(t + turn as f64));
        events.push(Event::bot(format!("reply {turn}")).at(t + turn as f64 + 0.5));
    }
    events
}

/// Corrupts one row of `bad` through `$conn`, then checks that only `bad` is affected.
macro_rules! corrupt_rows_are_reported {
    ($store:expr, $conn:expr) => {{
        let store = TrackerStore::new($store);
        let (bad, good) = (fresh("corrupt"), fresh("intact"));
        for id in [&bad, &good] {
            store.append(id, 0, &session(1_700_000_000.0, 2)).await.expect("append");
        }
        $conn
            .batch_execute(&format!(
                "UPDATE events SET data = '{{\"event\": \"user\", \"timestamp\": tru' WHERE sender_id = '{bad}' AND seq = 4"
            ))
            .await
            .expect("corrupt a row");
        let error = store.read(&bad, ReadScope::All).await.expect_err("corrupt row");
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
        match &error {
            tracker_core::Error::Corrupt { sender_id, position, .. } => {
                assert_eq!((sender_id.as_str(), *position), (bad.as_str(), Some(4)));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(store.retrieve(&bad).await.expect_err("corrupt").kind(), ErrorKind::Corrupt);
        let intact = store.read(&good, ReadScope::All).await.expect("read").expect("exists");
        assert_eq!(intact.events.len(), 7);

        $conn
            .batch_execute(&format!(
                "UPDATE events SET data = NULL WHERE sender_id = '{good}' AND seq = 2"
            ))
            .await
            .expect("null a row");
        let error = store.read(&good, ReadScope::All).await.expect_err("NULL data");
        assert!(matches!(error, tracker_core::Error::Corrupt { position: Some(2), .. }), "{error}");
        // The latest session starts at seq 1, so the NULL row is read there too.
        assert!(store.retrieve(&good).await.is_err());
        for id in [&bad, &good] {
            assert!(store.delete(id).await.expect("delete"));
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    let mut conn = diesel_async::AsyncPgConnection::establish(&service.url)
        .await
        .expect("connect");
    corrupt_rows_are_reported!(common::connect(&service.url).await, conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_mysql() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    let mut conn = diesel_async::AsyncMysqlConnection::establish(&service.url)
        .await
        .expect("connect");
    corrupt_rows_are_reported!(common::connect(&service.url).await, conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_sqlite() {
    let path = common::temp_sqlite_path();
    let store = SqlStore::connect(&SqlConfig::sqlite(&path))
        .await
        .expect("open");
    let mut conn = tracker_sql::SqliteConnection::establish(&path)
        .await
        .expect("open");
    corrupt_rows_are_reported!(store, conn);
    let _ = std::fs::remove_file(&path);
}

/// Latest-session reads go through the indexes and touch only the latest session's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_session_reads_use_the_indexes_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    let sql = common::connect(&service.url).await;
    let store = TrackerStore::new(sql.clone());
    let id = fresh("plan");
    let mut version = 0;
    for (n, turns) in [(0, 400), (1, 400), (2, 5)] {
        let events = session(1_700_000_000.0 + n as f64 * 100_000.0, turns);
        version = store.append(&id, version, &events).await.expect("append");
    }
    let mut conn = diesel_async::AsyncPgConnection::establish(&service.url)
        .await
        .expect("connect");
    conn.batch_execute("ANALYZE events").await.expect("analyze");

    let plan = sql
        .explain_read(&id, ReadScope::LatestSession)
        .await
        .expect("explain")
        .join("\n");
    assert!(
        !plan.contains("Seq Scan"),
        "a latest-session read scans the table:\n{plan}"
    );
    assert!(
        plan.contains("ix_events_session_starts"),
        "no session index:\n{plan}"
    );
    let main_scan = plan
        .lines()
        .find(|line| line.contains("ux_events_sender_seq") && line.contains("actual"))
        .unwrap_or_else(|| panic!("events are not read through (sender_id, seq):\n{plan}"));
    // 13 events in the last session plus the one before it at most.
    let rows: u64 = main_scan
        .split("rows=")
        .nth(2)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no actual row count in {main_scan:?}"));
    assert!(
        rows <= 14,
        "read {rows} rows for a 13-event session:\n{plan}"
    );

    let latest = store
        .retrieve(&id)
        .await
        .expect("retrieve")
        .expect("exists");
    assert_eq!(latest.events().len(), 13);
    assert_eq!(latest.version(), version);
}

/// Names longer than Rasa's VARCHAR(255) columns are InvalidInput, not a database error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_wider_than_the_columns_are_rejected() {
    let store = TrackerStore::new(common::sqlite_memory().await.expect("store"));
    let long_slot = "s".repeat(256);
    let error = store
        .append("wide", 0, &[Event::slot(long_slot, 1).at(1_700_000_000.0)])
        .await
        .expect_err("too wide");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let ok_slot = "é".repeat(255);
    store
        .append("wide", 0, &[Event::slot(ok_slot, 1).at(1_700_000_000.0)])
        .await
        .expect("255 characters fit");
}

/// Many writers on one SQLite file wait for the lock instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_writers_wait_for_each_other() {
    let path = common::temp_sqlite_path();
    // 16 writers share 8 connections: on a machine stalled by other work (fsyncs behind a
    // build), a writer can wait for a connection longer than the default pool timeout.
    let config = SqlConfig {
        pool_timeout: std::time::Duration::from_secs(300),
        ..SqlConfig::sqlite(&path)
    };
    let store = TrackerStore::new(SqlStore::connect(&config).await.expect("open"));
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("writer-{writer}");
            let mut version = 0;
            for turn in 0..20 {
                let event = Event::bot(format!("{turn}")).at(1_700_000_000.0 + turn as f64);
                version = store.append(&id, version, &[event]).await.expect("append");
            }
            version
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("writer"), 20);
    }
    let _ = std::fs::remove_file(&path);
}

/// A store on a pool the application built, sharing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_existing_pools() {
    use tracker_sql::diesel_async::pooled_connection::AsyncDieselConnectionManager;
    use tracker_sql::diesel_async::pooled_connection::deadpool::Pool;

    let path = common::temp_sqlite_path();
    let manager = AsyncDieselConnectionManager::<tracker_sql::SqliteConnection>::new(&path);
    let pool = Pool::builder(manager).max_size(2).build().expect("pool");
    let store = SqlStore::from_client(pool, &SqlConfig::default()).expect("a store");
    assert_eq!(store.dialect(), tracker_sql::Dialect::Sqlite);
    assert_eq!(store.ensure_schema().await.expect("migrate").len(), 2);
    assert!(store.ensure_schema().await.expect("again").is_empty());
    let trackers = TrackerStore::new(store);
    trackers
        .append("pooled", 0, &session(1_700_000_000.0, 1))
        .await
        .expect("append");
    assert_eq!(trackers.version("pooled").await.expect("version"), 5);
    let _ = std::fs::remove_file(&path);

    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    let manager =
        AsyncDieselConnectionManager::<diesel_async::AsyncPgConnection>::new(&service.url);
    let pool = Pool::builder(manager).max_size(2).build().expect("pool");
    let config = SqlConfig {
        query_timeout: std::time::Duration::ZERO,
        ..SqlConfig::default()
    };
    let zero = SqlStore::from_client(pool.clone(), &config).expect_err("a zero query timeout");
    assert_eq!(zero.kind(), ErrorKind::Config);
    let store = SqlStore::from_client(tracker_sql::SqlClient::from(pool), &SqlConfig::default())
        .expect("a store");
    assert_eq!(store.dialect(), tracker_sql::Dialect::Postgres);
    assert_eq!(store.query_timeout(), tracker_sql::DEFAULT_QUERY_TIMEOUT);
    let zero = store.clone().with_query_timeout(std::time::Duration::ZERO);
    assert_eq!(zero.expect_err("zero").kind(), ErrorKind::InvalidInput);
    let store = store
        .with_query_timeout(std::time::Duration::from_secs(5))
        .expect("a query timeout");
    assert_eq!(store.query_timeout(), std::time::Duration::from_secs(5));
    store.ensure_schema().await.expect("migrate");
    let trackers = TrackerStore::new(store);
    let id = fresh("pooled");
    trackers
        .append(&id, 0, &session(1_700_000_000.0, 1))
        .await
        .expect("append");
    let debug = format!("{:?}", trackers.store());
    assert!(debug.contains("postgres"), "{debug}");
}
