//! The SQL layout itself: unreadable rows, the query plan of latest-session reads, column
//! widths, SQLite's lock waits, stores on existing pools.

mod common;

use common::batch::{fresh, session_saying};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use tracker_core::{ErrorKind, Event, ReadScope, TrackerStore};
use tracker_sql::{SqlConfig, SqlStore, diesel_async};
use tracker_testkit::{Service, service_url};

/// A session: its start, then `turns` user and bot turns.
fn session(t: f64, turns: usize) -> Vec<Event> {
    session_saying(t, turns, "turn", "reply")
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
        let error = store.read_json(&bad, ReadScope::All).await.expect_err("corrupt row");
        assert!(matches!(error, tracker_core::Error::Corrupt { position: Some(4), .. }), "{error}");
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
    let changes = store.ensure_schema().await.expect("migrate");
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(changes[0].contains("journal mode"), "{changes:?}");
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

/// Appends race deletes at the version the deleter read (`delete_at`) and unconditional ones
/// on one conversation: a delete either removes every row of the version it saw or is a
/// `Conflict` and removes nothing; an append either lands before a delete (and goes with it,
/// whole) or after it (and starts the conversation again); readers meanwhile never see a
/// partial conversation, and what is left is numbered from 1 without gaps.
macro_rules! deletes_race_appends {
    ($store:expr) => {{
        const WRITERS: usize = 4;
        // At least this many rounds each, and more until the deleter has seen both outcomes
        // (on SQLite the deleter waits for the single writer and may get few turns), for at
        // most `DEADLINE`.
        const ROUNDS: usize = 25;
        const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
        let store = TrackerStore::new($store);
        let id = fresh("delete-race");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raced = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::time::Instant::now();
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (store, id, raced) = (store.clone(), id.clone(), raced.clone());
            writers.push(tokio::spawn(async move {
                let mut stored = Vec::new();
                let more = |round: usize| {
                    round < ROUNDS
                        || (!raced.load(std::sync::atomic::Ordering::Relaxed)
                            && started.elapsed() < DEADLINE)
                };
                let mut round = 0;
                while more(round) {
                    round += 1;
                    let texts = [format!("{writer}.{round} a"), format!("{writer}.{round} b")];
                    let events: Vec<Event> = texts
                        .iter()
                        .map(|t| Event::bot(t.clone()).at(1.0))
                        .collect();
                    let version = store.version(&id).await.expect("version");
                    match store.append(&id, version, &events).await {
                        Ok(new) => {
                            assert_eq!(new, version + 2);
                            stored.push((version, texts));
                        }
                        Err(error) => assert_eq!(error.kind(), ErrorKind::Conflict, "{error}"),
                    }
                }
                stored
            }));
        }
        let deleter = {
            let (store, id, stop, raced) = (store.clone(), id.clone(), stop.clone(), raced.clone());
            tokio::spawn(async move {
                let (mut exact, mut any, mut conflicts) = (0, 0, 0);
                let mut turn = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    turn += 1;
                    if turn % 3 == 0 {
                        store.delete(&id).await.expect("delete whatever is there");
                        any += 1;
                        continue;
                    }
                    let version = store.version(&id).await.expect("version");
                    match store.delete_at(&id, version).await {
                        Ok(_) => exact += 1,
                        Err(error) => {
                            assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
                            assert_ne!(error.current_version(), Some(version), "{error}");
                            conflicts += 1;
                        }
                    }
                    if exact > 0 && conflicts > 0 {
                        raced.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                }
                (exact, any, conflicts)
            })
        };
        let reader = {
            let (store, id, stop) = (store.clone(), id.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A partial delete would leave rows not numbered from 1: Corrupt.
                    if let Some(read) = store.read(&id, ReadScope::All).await.expect("read") {
                        assert_eq!(read.first_seq, 1);
                        assert_eq!(read.events.len() as u64, read.version);
                    }
                    reads += 1;
                }
                reads
            })
        };
        let mut appended = Vec::new();
        for writer in writers {
            appended.extend(writer.await.expect("writer"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (exact, any, conflicts) = deleter.await.expect("deleter");
        let reads = reader.await.expect("reader");
        let left: Vec<String> = match store.read(&id, ReadScope::All).await.expect("read") {
            Some(read) => read
                .events
                .iter()
                .map(|event| {
                    event.to_value()["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect(),
            None => Vec::new(),
        };
        // Each acknowledged append is there whole, where it was written, or gone whole.
        for (version, texts) in &appended {
            let at: Vec<usize> = left
                .iter()
                .enumerate()
                .filter(|(_, text)| texts.contains(text))
                .map(|(index, _)| index)
                .collect();
            assert!(
                at.is_empty() || at == [*version as usize, *version as usize + 1],
                "{texts:?} appended at {version} is left at {at:?}"
            );
        }
        eprintln!(
            "{} appends, {exact} deletes at a version, {any} unconditional, {conflicts} \
             conflicts, {reads} reads; {} events left",
            appended.len(),
            left.len()
        );
        assert!(
            exact > 0 && conflicts > 0,
            "the deletes did not race the appends"
        );
        store.delete(&id).await.expect("clean up");
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_race_appends_postgres() {
    if let Some(store) = common::postgres().await {
        deletes_race_appends!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_race_appends_mysql() {
    if let Some(store) = common::mysql().await {
        deletes_race_appends!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_race_appends_sqlite() {
    if let Some(store) = common::sqlite_file().await {
        deletes_race_appends!(store);
    }
}

/// SQLite keeps `seq` nullable. A row that has none (inserted while the numbering trigger was
/// missing, as Rasa's inserts were before it existed) makes its conversation `Corrupt`, named,
/// not a driver error, and other conversations stay readable; the migration that creates the
/// trigger numbers such rows in Rasa's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_seq_sqlite() {
    use common::rasa::{Dialect, rasa_insert, rasa_row, rasa_select, select_all};

    let path = common::temp_sqlite_path();
    let sql = SqlStore::connect(&SqlConfig::sqlite(&path))
        .await
        .expect("open");
    let store = TrackerStore::new(sql.clone());
    let (bad, good) = (fresh("no-seq"), fresh("intact"));
    for id in [&bad, &good] {
        store
            .append(id, 0, &session(1_700_000_000.0, 0))
            .await
            .expect("append");
    }
    let mut conn = tracker_sql::SqliteConnection::establish(&path)
        .await
        .expect("open");
    conn.batch_execute("DROP TRIGGER tracker_events_seq")
        .await
        .expect("drop the trigger");
    let by_rasa = Event::bot("written by Rasa").at(1_700_000_001.0);
    rasa_insert!(
        &mut conn,
        Dialect::Sqlite,
        &rasa_row(&bad, &by_rasa.to_value())
    )
    .expect("Rasa's INSERT");
    for scope in [ReadScope::All, ReadScope::LatestSession] {
        let error = store
            .read(&bad, scope)
            .await
            .expect_err("a row without seq");
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
        match &error {
            tracker_core::Error::Corrupt { sender_id, .. } => assert_eq!(sender_id, &bad),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(error.to_string().contains("seq"), "{error}");
    }
    assert_eq!(
        store
            .read(&good, ReadScope::All)
            .await
            .expect("read")
            .expect("exists")
            .version,
        3
    );
    // The store goes on after its own rows meanwhile.
    let after = Event::bot("written by the store").at(1_700_000_002.0);
    assert_eq!(
        store
            .append(&bad, 3, std::slice::from_ref(&after))
            .await
            .expect("append"),
        4
    );

    // Running the migration again numbers the conversation in Rasa's order (by id).
    conn.batch_execute("DELETE FROM __diesel_schema_migrations WHERE version LIKE '%000003'")
        .await
        .expect("forget the migration");
    assert_eq!(sql.ensure_schema().await.expect("migrate").len(), 1);
    let read = store
        .read(&bad, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.version, 5);
    let texts: Vec<String> = read.events.iter().map(Event::to_rasa_json).collect();
    assert_eq!(texts[3], by_rasa.to_rasa_json());
    assert_eq!(texts[4], after.to_rasa_json());
    let rasa_order: Vec<String> = rasa_select!(&mut conn, Dialect::Sqlite, select_all(), &bad)
        .into_iter()
        .map(|row| row.data.expect("data"))
        .collect();
    assert_eq!(texts, rasa_order);
    // And the trigger is back: Rasa's next row is numbered at once.
    rasa_insert!(
        &mut conn,
        Dialect::Sqlite,
        &rasa_row(&bad, &by_rasa.to_value())
    )
    .expect("Rasa's INSERT");
    assert_eq!(store.version(&bad).await.expect("version"), 6);
    let _ = std::fs::remove_file(&path);
}
