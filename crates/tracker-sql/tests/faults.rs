//! A server crash under concurrent writers, on PostgreSQL and on MariaDB: each test starts a
//! private server, runs writers that append to conversations of their own, kills the server
//! with SIGKILL mid-run, starts it again on the same port and data, and lets the writers go
//! on, through the same store object, until each has appended again. Then every append that
//! returned `Ok` must be readable, every append that failed must be stored whole or not at
//! all and never twice, versions must have no gaps, and every error must be a temporary
//! `Unavailable` (or a `Conflict`, which a writer resolves by re-reading).
//!
//! A frozen server (SIGSTOP: connections stay open, nothing answers): connecting and every
//! call that needs a connection give up after `pool_timeout` with a temporary `Unavailable`,
//! and the same store works again once the server goes on.
//!
//! Locks held by another session (the server answers, the statements wait): a read behind a
//! table lock and an append behind an uncommitted row at the version it writes give up after
//! `query_timeout` with a temporary `Unavailable`, the timed-out append is stored whole or
//! not at all, and the store works once the locks are released.
//!
//! Skipped (a failure under `CI`) when the server programs are missing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::servers::{Mariadb, Postgres, Server};
use tracker_sql::diesel;
use tracker_sql::diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, SimpleAsyncConnection,
};
use tracker_sql::tracker_core::{
    Error, ErrorKind, Event, EventData, ExpectedVersion, ReadScope, SenderId, Store, TrackerStore,
};
use tracker_sql::{SqlConfig, SqlStore};

/// Concurrent writers, each on a conversation of its own.
const WRITERS: usize = 8;
/// Successful appends each writer makes before the crash.
const BEFORE: usize = 15;
/// Successful appends each writer must make after the restart.
const AFTER: usize = 10;
/// How long the server stays down.
const DOWN: Duration = Duration::from_millis(1500);
/// Longest a single store call may take before it counts as a hang.
const CALL_BOUND: Duration = Duration::from_secs(30);
/// Longest the store may take to recover after the restart.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// What one append attempt did.
#[derive(Debug, Clone)]
struct Attempt {
    markers: Vec<String>,
    expected: u64,
    started: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    Ok(u64),
    Failed {
        kind: ErrorKind,
        temporary: bool,
        message: String,
    },
    /// The call did not return within `CALL_BOUND` (and was dropped).
    Hung,
}

/// What one writer saw.
#[derive(Debug, Default)]
struct Log {
    attempts: Vec<Attempt>,
    /// Errors of the version reads after a failed append.
    read_errors: Vec<(ErrorKind, bool, String)>,
    read_hangs: usize,
}

/// Shared progress counters.
struct Progress {
    stop: AtomicBool,
    /// When the restarted server was ready, as an offset from `epoch` (0: not yet).
    restarted_at_ms: AtomicUsize,
    oks_before: Vec<AtomicUsize>,
    oks_after: Vec<AtomicUsize>,
    epoch: Instant,
}

impl Progress {
    fn restarted_at(&self) -> Option<Instant> {
        match self.restarted_at_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms as u64)),
        }
    }
}

/// The error's kind, whether it is temporary, and its message with its sources.
fn failure(error: &Error) -> (ErrorKind, bool, String) {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(" <- {cause}"));
        source = cause.source();
    }
    (error.kind(), error.is_temporary(), message)
}

async fn writer(index: usize, sender: String, store: TrackerStore, progress: Arc<Progress>) -> Log {
    let mut log = Log::default();
    let id = SenderId::new(&sender).expect("sender id");
    let mut version = 0;
    let mut stale = false;
    let mut failures_in_a_row = 0u32;
    let mut number = 0usize;
    while !progress.stop.load(Ordering::SeqCst) {
        if stale {
            match tokio::time::timeout(CALL_BOUND, store.store().version(&id)).await {
                Ok(Ok(current)) => {
                    version = current;
                    stale = false;
                }
                Ok(Err(error)) => {
                    log.read_errors.push(failure(&error));
                    failures_in_a_row += 1;
                    backoff(failures_in_a_row).await;
                    continue;
                }
                Err(_) => {
                    log.read_hangs += 1;
                    continue;
                }
            }
        }
        number += 1;
        let count = 2 + number % 2;
        let markers: Vec<String> = (0..count)
            .map(|part| format!("{sender}/{number}/{part}"))
            .collect();
        let events: Vec<Event> = markers
            .iter()
            .map(|marker| Event::bot(marker.clone()).at(1_700_000_000.0 + number as f64))
            .collect();
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(CALL_BOUND, store.append(&sender, version, &events)).await {
                Ok(Ok(new_version)) => Outcome::Ok(new_version),
                Ok(Err(error)) => {
                    let (kind, temporary, message) = failure(&error);
                    Outcome::Failed {
                        kind,
                        temporary,
                        message,
                    }
                }
                Err(_) => Outcome::Hung,
            };
        log.attempts.push(Attempt {
            markers,
            expected: version,
            started,
            outcome: outcome.clone(),
        });
        match outcome {
            Outcome::Ok(new_version) => {
                version = new_version;
                failures_in_a_row = 0;
                match progress.restarted_at() {
                    Some(restarted) if started >= restarted => {
                        progress.oks_after[index].fetch_add(1, Ordering::SeqCst);
                    }
                    Some(_) => {}
                    None => {
                        progress.oks_before[index].fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Outcome::Failed { .. } | Outcome::Hung => {
                // The append may have been committed before the connection broke: re-read.
                stale = true;
                failures_in_a_row += 1;
                backoff(failures_in_a_row).await;
            }
        }
    }
    log
}

/// 20, 40, 80, ... up to 200 ms.
async fn backoff(failures: u32) {
    let ms = (20u64 << failures.min(4)).min(200);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Waits until `condition` holds, up to `bound`; false if it never did.
async fn wait_for(bound: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The stored events of a conversation as (seq, bot text).
async fn stored(store: &SqlStore, sender: &str) -> Vec<(u64, String)> {
    let id = SenderId::new(sender).expect("sender id");
    let Some(conversation) = store.read(&id, ReadScope::All).await.expect("read") else {
        return Vec::new();
    };
    conversation
        .events
        .into_iter()
        .map(|event| {
            let EventData::Text(text) = event.data else {
                panic!("SQL rows are text");
            };
            let json: serde_json::Value = serde_json::from_str(&text).expect("event JSON");
            let marker = json["text"].as_str().expect("a bot text").to_owned();
            (event.seq, marker)
        })
        .collect()
}

/// Checks one writer's conversation against what it saw; returns the problems found and how
/// many failed appends are stored (committed before the connection broke).
fn check(sender: &str, log: &Log, rows: &[(u64, String)]) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    for (position, (seq, _)) in rows.iter().enumerate() {
        if *seq != position as u64 + 1 {
            problems.push(format!("{sender}: event {position} has seq {seq} (a gap)"));
            break;
        }
    }
    let mut where_stored: HashMap<&str, u64> = HashMap::new();
    for (seq, marker) in rows {
        if where_stored.insert(marker.as_str(), *seq).is_some() {
            problems.push(format!("{sender}: {marker} is stored twice"));
        }
    }
    let mut known = 0;
    let mut failed_but_stored = 0;
    for attempt in &log.attempts {
        let positions: Vec<Option<u64>> = attempt
            .markers
            .iter()
            .map(|marker| where_stored.get(marker.as_str()).copied())
            .collect();
        let present = positions.iter().filter(|p| p.is_some()).count();
        known += present;
        let contiguous = |first: u64| {
            positions
                .iter()
                .enumerate()
                .all(|(offset, p)| *p == Some(first + offset as u64))
        };
        match &attempt.outcome {
            Outcome::Ok(version) => {
                let first = version + 1 - attempt.markers.len() as u64;
                if first != attempt.expected + 1 || !contiguous(first) {
                    problems.push(format!(
                        "{sender}: append at {} returned Ok({version}) but is stored at {positions:?}",
                        attempt.expected
                    ));
                }
            }
            Outcome::Failed { .. } | Outcome::Hung => {
                if present == 0 {
                    continue;
                }
                failed_but_stored += 1;
                let first = positions[0].unwrap_or(0);
                if present != attempt.markers.len()
                    || first != attempt.expected + 1
                    || !contiguous(first)
                {
                    problems.push(format!(
                        "{sender}: failed append at {} is partly or misplaced: {positions:?}",
                        attempt.expected
                    ));
                }
            }
        }
    }
    if known != rows.len() {
        problems.push(format!(
            "{sender}: {} stored events, {known} of them written by the writer",
            rows.len()
        ));
    }
    (problems, failed_but_stored)
}

async fn crash_under_writers(mut server: impl Server + 'static) {
    server.start();
    let config = SqlConfig {
        pool_size: Some(16),
        ..SqlConfig::from_url(server.url())
    };
    let sql = SqlStore::connect(&config).await.expect("connect");
    let store = TrackerStore::new(sql.clone());
    let progress = Arc::new(Progress {
        stop: AtomicBool::new(false),
        restarted_at_ms: AtomicUsize::new(0),
        oks_before: (0..WRITERS).map(|_| AtomicUsize::new(0)).collect(),
        oks_after: (0..WRITERS).map(|_| AtomicUsize::new(0)).collect(),
        epoch: Instant::now(),
    });
    let run = uuid::Uuid::new_v4().simple().to_string();
    let senders: Vec<String> = (0..WRITERS)
        .map(|index| format!("fault-{}-{index}", &run[..12]))
        .collect();
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(index, sender)| {
            tokio::spawn(writer(
                index,
                sender.clone(),
                store.clone(),
                progress.clone(),
            ))
        })
        .collect();

    let everyone = |counters: &[AtomicUsize], at_least: usize| {
        counters
            .iter()
            .all(|counter| counter.load(Ordering::SeqCst) >= at_least)
    };
    let started = wait_for(Duration::from_secs(60), || {
        everyone(&progress.oks_before, BEFORE)
    })
    .await;
    // The crash, while the writers are appending.
    let killed = Instant::now();
    tokio::task::block_in_place(|| server.kill());
    tokio::time::sleep(DOWN).await;
    tokio::task::block_in_place(|| server.start());
    let restarted = Instant::now();
    let ms = restarted.duration_since(progress.epoch).as_millis().max(1);
    progress
        .restarted_at_ms
        .store(usize::try_from(ms).expect("ms"), Ordering::SeqCst);
    let recovered = wait_for(RECOVERY_BOUND, || everyone(&progress.oks_after, AFTER)).await;
    progress.stop.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await.expect("writer"));
    }
    assert!(started, "the writers did not get going before the crash");

    // Figures.
    let attempts: Vec<&Attempt> = logs.iter().flat_map(|log| &log.attempts).collect();
    let oks = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Ok(_)))
        .count();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut errors_before_crash = 0;
    for attempt in &attempts {
        match &attempt.outcome {
            Outcome::Ok(_) => {}
            Outcome::Hung => {
                *by_kind.entry("hung".to_owned()).or_default() += 1;
                bad.push(format!("an append did not return within {CALL_BOUND:?}"));
            }
            Outcome::Failed {
                kind,
                temporary,
                message,
            } => {
                *by_kind.entry(format!("{kind:?}")).or_default() += 1;
                if attempt.started < killed {
                    errors_before_crash += 1;
                }
                let fine =
                    (*kind == ErrorKind::Unavailable && *temporary) || *kind == ErrorKind::Conflict;
                if !fine {
                    bad.push(format!(
                        "append error {kind:?} (temporary: {temporary}): {message}"
                    ));
                }
            }
        }
    }
    let mut read_errors: BTreeMap<String, usize> = BTreeMap::new();
    for log in &logs {
        for (kind, temporary, message) in &log.read_errors {
            *read_errors.entry(format!("{kind:?}")).or_default() += 1;
            if !(*kind == ErrorKind::Unavailable && *temporary) {
                bad.push(format!("version read error {kind:?}: {message}"));
            }
        }
        if log.read_hangs > 0 {
            bad.push(format!("{} version reads hung", log.read_hangs));
        }
    }
    let first_ok_after = |attempts: &[Attempt]| {
        attempts
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Ok(_)) && a.started >= restarted)
            .map(|a| a.started.duration_since(restarted))
            .min()
    };
    let recovery: Vec<Option<Duration>> = logs
        .iter()
        .map(|log| first_ok_after(&log.attempts))
        .collect();
    let first_recovered = recovery.iter().flatten().min();
    let all_recovered = recovery
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|all| all.into_iter().max());
    let mut messages: Vec<&str> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .chain(
            logs.iter()
                .flat_map(|log| log.read_errors.iter().map(|e| e.2.as_str())),
        )
        .collect();
    messages.sort_unstable();
    messages.dedup();
    eprintln!(
        "{}: {} appends, {oks} Ok, {} failed {by_kind:?} ({errors_before_crash} of them started before the kill); \
         version reads failed {read_errors:?}; server down (kill to ready) {:?}; \
         first Ok append {first_recovered:?} after the server was ready, every writer {all_recovered:?}; \
         every writer {AFTER} Ok appends after the restart: {recovered}",
        server.name(),
        attempts.len(),
        attempts.len() - oks,
        restarted.duration_since(killed),
    );

    // Every append is stored whole or not at all, exactly where its version says.
    let mut problems = Vec::new();
    let mut failed_but_stored = 0;
    for (sender, log) in senders.iter().zip(&logs) {
        let rows = stored(&sql, sender).await;
        let (found, stored_anyway) = check(sender, log, &rows);
        problems.extend(found);
        failed_but_stored += stored_anyway;
        let version = sql
            .version(&SenderId::new(sender).expect("id"))
            .await
            .expect("version");
        assert_eq!(version, rows.len() as u64, "{sender}: version and events");
        for (seq, _) in &rows {
            assert!(*seq <= version);
        }
    }
    eprintln!(
        "{}: {failed_but_stored} failed appends were committed (stored whole); distinct error messages: {messages:#?}",
        server.name()
    );
    for sender in &senders {
        sql.delete(&SenderId::new(sender).expect("id"), ExpectedVersion::Any)
            .await
            .expect("delete");
    }
    assert!(
        recovered,
        "{}: the writers did not all append {AFTER} times within {RECOVERY_BOUND:?} of the restart",
        server.name()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        attempts.len() > oks,
        "the crash caused no failed append: the test did not test it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_under_concurrent_writers() {
    let Some(server) = Postgres::init("postgres-faults") else {
        return;
    };
    crash_under_writers(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_crash_under_concurrent_writers() {
    let Some(server) = Mariadb::init("mariadb-faults") else {
        return;
    };
    crash_under_writers(server).await;
}

/// How long the frozen-server tests let the pool wait.
const POOL_TIMEOUT: Duration = Duration::from_millis(1500);
/// Connections in the frozen-server tests' pool.
const POOL_SIZE: usize = 8;
/// Longest a call may take against a frozen server before it counts as a hang: the pool
/// timeout and scheduling slack on a loaded machine.
const FROZEN_BOUND: Duration = Duration::from_secs(10);

/// Runs `call`, failing the test if it takes longer than `FROZEN_BOUND`; returns its result
/// and how long it took.
async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(FROZEN_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {FROZEN_BOUND:?} against a frozen server"));
    (result, started.elapsed())
}

fn assert_timed_out(what: &str, error: &Error, took: Duration) {
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{what}: {error}");
    assert!(error.is_temporary(), "{what}: {error}");
    assert!(
        took >= POOL_TIMEOUT,
        "{what} gave up after {took:?}, before the pool timeout: {error}"
    );
}

async fn frozen_server(mut server: impl Server + 'static) {
    server.start();
    let config = SqlConfig {
        pool_size: Some(POOL_SIZE),
        pool_timeout: POOL_TIMEOUT,
        ..SqlConfig::from_url(server.url())
    };
    let sql = SqlStore::connect(&config).await.expect("connect");
    let store = TrackerStore::new(sql.clone());
    let name = format!("frozen-{}", uuid::Uuid::new_v4().simple());
    let sender = SenderId::new(&name).expect("sender id");
    let event = |text: &str| Event::bot(text).at(1_700_000_000.0);
    store
        .append(&name, 0, &[event("before")])
        .await
        .expect("append before the freeze");
    // Fill the pool with idle connections: each would fail its check only after the pool
    // timeout, so without one bound on the whole wait, a call would take POOL_SIZE times it.
    let reads = (0..POOL_SIZE).map(|_| sql.read(&sender, ReadScope::All));
    for read in futures::future::join_all(reads).await {
        read.expect("read before the freeze");
    }

    server.freeze();
    // A new store: the server accepts the connection and never answers.
    let (connect, took) = bounded("connecting", SqlStore::connect(&config)).await;
    let error = connect.expect_err("connecting to a frozen server");
    assert_timed_out("connecting", &error, took);
    // The existing store: its idle connections fail their check, new ones cannot be opened.
    let (read, took) = bounded("reading", sql.read(&sender, ReadScope::All)).await;
    assert_timed_out(
        "reading",
        &read.expect_err("reading from a frozen server"),
        took,
    );
    let (append, took) = bounded("appending", store.append(&name, 1, &[event("frozen")])).await;
    assert_timed_out(
        "appending",
        &append.expect_err("appending to a frozen server"),
        took,
    );
    server.thaw();

    // The same store object, once the server goes on.
    let (append, _) = bounded("appending after the thaw", async {
        loop {
            match store.append(&name, 1, &[event("after")]).await {
                Err(error) if error.is_temporary() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other,
            }
        }
    })
    .await;
    assert_eq!(append.expect("append after the thaw"), 2);
    assert_eq!(
        stored(&sql, &name).await,
        [(1, "before".to_owned()), (2, "after".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_server_times_out() {
    let Some(server) = Postgres::init("postgres-frozen") else {
        return;
    };
    frozen_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_frozen_server_times_out() {
    let Some(server) = Mariadb::init("mariadb-frozen") else {
        return;
    };
    frozen_server(server).await;
}

/// How long the locked-table tests let one operation wait.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Another session holding a lock on the store's table until it is dropped.
enum Lock {
    Postgres(Box<AsyncPgConnection>),
    Mariadb(Box<AsyncMysqlConnection>),
}

impl Lock {
    /// The whole table: reads wait.
    async fn table(server: &(impl Server + 'static)) -> Self {
        Self::take(
            server,
            "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLES events WRITE",
        )
        .await
    }

    /// An uncommitted event `seq` of `sender`: reads go on, and an append at `seq - 1` gets
    /// past its version check and waits at its insert.
    async fn row(server: &(impl Server + 'static), sender: &str, seq: u64) -> Self {
        let insert = format!(
            "INSERT INTO events (sender_id, type_name, data, seq) VALUES ('{sender}', 'bot', '{{}}', {seq})"
        );
        Self::take(
            server,
            &format!("BEGIN; {insert}"),
            &format!("START TRANSACTION; {insert}"),
        )
        .await
    }

    async fn take(server: &(impl Server + 'static), postgres: &str, mariadb: &str) -> Self {
        let url = server.url();
        if server.name() == "postgres" {
            let mut conn = AsyncPgConnection::establish(&url).await.expect("connect");
            conn.batch_execute(postgres).await.expect("take the lock");
            Self::Postgres(Box::new(conn))
        } else {
            let mut conn = AsyncMysqlConnection::establish(&url)
                .await
                .expect("connect");
            conn.batch_execute(mariadb).await.expect("take the lock");
            Self::Mariadb(Box::new(conn))
        }
    }

    async fn release(self) {
        match self {
            Self::Postgres(mut conn) => conn.batch_execute("ROLLBACK").await,
            Self::Mariadb(mut conn) => conn.batch_execute("ROLLBACK; UNLOCK TABLES").await,
        }
        .expect("release the lock");
    }
}

/// Sessions of the server waiting for a lock, seen from a new connection.
async fn waiting(server: &(impl Server + 'static)) -> i64 {
    use tracker_sql::diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let url = server.url();
    let count: Count = if server.name() == "postgres" {
        let mut conn = AsyncPgConnection::establish(&url).await.expect("connect");
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .get_result(&mut conn)
        .await
        .expect("count the waiting sessions")
    } else {
        let mut conn = AsyncMysqlConnection::establish(&url)
            .await
            .expect("connect");
        diesel::sql_query(
            "SELECT CAST(count(*) AS SIGNED) AS n FROM information_schema.processlist \
             WHERE state LIKE '%lock%' OR id IN (SELECT trx_mysql_thread_id \
             FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT')",
        )
        .get_result(&mut conn)
        .await
        .expect("count the waiting sessions")
    };
    count.n
}

/// Within a few seconds of a timeout, the server has cancelled the statement: no session
/// waits for the lock that is still held.
async fn assert_nobody_waits(server: &(impl Server + 'static), what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = waiting(server).await;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = waiting(server).await;
    }
    assert_eq!(left, 0, "{what} still waits on the server");
}

fn assert_query_timed_out(what: &str, error: &Error, took: Duration) {
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{what}: {error}");
    assert!(error.is_temporary(), "{what}: {error}");
    assert!(
        error.to_string().contains("no answer within"),
        "{what}: {error}"
    );
    assert!(
        took >= QUERY_TIMEOUT,
        "{what} gave up after {took:?}: {error}"
    );
}

async fn locked_table(mut server: impl Server + 'static) {
    server.start();
    let config = SqlConfig {
        pool_size: Some(4),
        query_timeout: QUERY_TIMEOUT,
        ..SqlConfig::from_url(server.url())
    };
    let sql = SqlStore::connect(&config).await.expect("connect");
    let store = TrackerStore::new(sql.clone());
    let name = format!("locked-{}", uuid::Uuid::new_v4().simple());
    let sender = SenderId::new(&name).expect("sender id");
    let event = |text: &str| Event::bot(text).at(1_700_000_000.0);
    store
        .append(&name, 0, &[event("before")])
        .await
        .expect("append before the lock");

    let lock = Lock::table(&server).await;
    let (read, took) = bounded("reading", sql.read(&sender, ReadScope::All)).await;
    assert_query_timed_out("reading", &read.expect_err("reading a locked table"), took);
    assert_nobody_waits(&server, "the timed-out read").await;
    lock.release().await;
    let lock = Lock::row(&server, &name, 2).await;
    let (append, took) = bounded(
        "appending",
        store.append(&name, 1, &[event("locked"), event("locked")]),
    )
    .await;
    assert_query_timed_out(
        "appending",
        &append.expect_err("appending to a locked table"),
        took,
    );
    assert_nobody_waits(&server, "the timed-out append").await;
    lock.release().await;

    // The timed-out append is whole or absent; the same store goes on from there.
    let rows = stored(&sql, &name).await;
    let texts: Vec<&str> = rows.iter().map(|(_, text)| text.as_str()).collect();
    assert!(
        texts == ["before"] || texts == ["before", "locked", "locked"],
        "{rows:?}"
    );
    let version = rows.len() as u64;
    assert_eq!(
        store
            .append(&name, version, &[event("after")])
            .await
            .expect("append after the lock"),
        version + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_locked_table_times_out() {
    let Some(server) = Postgres::init("postgres-locked") else {
        return;
    };
    locked_table(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_locked_table_times_out() {
    let Some(server) = Mariadb::init("mariadb-locked") else {
        return;
    };
    locked_table(server).await;
}
