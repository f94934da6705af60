//! Batches of appends (`Store::append_batch`: one transaction for many conversations) on
//! every dialect: each conversation checked against its own version and written whole or not
//! at all, and batches larger than one statement's bound parameters (races: see
//! `batch_races.rs`).

mod common;

use common::batch::{assert_conflict, batch, bots, fresh, session, stored, texts};
use diesel_async::AsyncConnection;
use futures::FutureExt;
use tracker_core::{BatchAppend, Event, ReadScope, TrackerStore};
use tracker_sql::diesel_async;
use tracker_testkit::{Service, service_url};

/// 300 conversations in one batch: 150 new, 147 existing at their version, and three at a
/// wrong one (below the current version, above it, and expected to exist but missing). The
/// right ones are written whole, each wrong one is a `Conflict` with the current version and
/// is left untouched, and everything reads back as single appends would have left it.
macro_rules! writes_each_conversation_alone {
    ($store:expr) => {{
        const LOWER: usize = 298;
        const HIGHER: usize = 299;
        const MISSING: usize = 0;
        let store = TrackerStore::new($store);
        let prefix = fresh("batch");
        let ids: Vec<String> = (0..300).map(|n| format!("{prefix}-{n:03}")).collect();
        let before: Vec<Vec<Event>> = (0..300)
            .map(|n| match n {
                150.. => session(1_700_000_000.0 + n as f64, 1 + n % 2, &format!("old {n}")),
                _ => Vec::new(),
            })
            .collect();
        for n in 150..300 {
            store
                .append(&ids[n], 0, &before[n])
                .await
                .expect("an existing conversation");
        }
        let entries: Vec<(String, u64, Vec<Event>)> = (0..300)
            .map(|n| {
                let mut added = session(1_700_100_000.0 + n as f64, 1 + n % 4, &format!("new {n}"));
                if n % 7 == 0 {
                    added.extend(session(1_700_200_000.0, 1, &format!("second {n}")));
                }
                let expected = match n {
                    LOWER => before[n].len() - 1,
                    HIGHER => before[n].len() + 2,
                    MISSING => 3,
                    _ => before[n].len(),
                };
                (ids[n].clone(), expected as u64, added)
            })
            .collect();
        let results = store
            .append_batch(&batch(&entries))
            .await
            .expect("the batch");
        assert_eq!(results.len(), 300);
        for (n, result) in results.iter().enumerate() {
            match n {
                LOWER | HIGHER | MISSING => {
                    assert_conflict(result, before[n].len() as u64, &format!("conversation {n}"))
                }
                _ => assert_eq!(
                    result.as_ref().ok(),
                    Some(&((before[n].len() + entries[n].2.len()) as u64)),
                    "conversation {n}: {result:?}"
                ),
            }
        }
        for n in 0..300 {
            let mut expected = texts(&before[n]);
            if !matches!(n, LOWER | HIGHER | MISSING) {
                expected.extend(texts(&entries[n].2));
            }
            assert_eq!(stored(&store, &ids[n]).await, expected, "conversation {n}");
            if n % 7 == 0 && !matches!(n, LOWER | HIGHER | MISSING) {
                let latest = store
                    .read(&ids[n], ReadScope::LatestSession)
                    .await
                    .expect("latest session")
                    .expect("exists");
                assert_eq!(
                    latest.events.len(),
                    5,
                    "conversation {n}: the second session"
                );
            }
        }
        assert_eq!(store.version(&ids[MISSING]).await.expect("version"), 0);
        // The conflicting ones go on from where they are.
        let next = bots("after", 2);
        let again = store
            .append_batch(&[
                BatchAppend {
                    sender_id: &ids[LOWER],
                    expected_version: before[LOWER].len() as u64,
                    events: &next,
                },
                BatchAppend {
                    sender_id: &ids[HIGHER],
                    expected_version: before[HIGHER].len() as u64,
                    events: &next,
                },
            ])
            .await
            .expect("the batch");
        assert_eq!(
            again[0].as_ref().ok(),
            Some(&(before[LOWER].len() as u64 + 2))
        );
        assert_eq!(
            again[1].as_ref().ok(),
            Some(&(before[HIGHER].len() as u64 + 2))
        );
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_each_conversation_alone_postgres() {
    if let Some(store) = common::postgres().await {
        writes_each_conversation_alone!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_each_conversation_alone_mysql() {
    if let Some(store) = common::mysql().await {
        writes_each_conversation_alone!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_each_conversation_alone_sqlite() {
    if let Some(store) = common::sqlite_file().await {
        writes_each_conversation_alone!(store);
    }
    if let Some(store) = common::sqlite_memory().await {
        writes_each_conversation_alone!(store);
    }
}

/// A batch of 700 conversations and about 19,000 events — some 133,000 values, twice the
/// 65,535 bound parameters one statement may have on PostgreSQL and MySQL and four times
/// SQLite's 32,766 — among them one conversation of 5,000 events: split into statements in
/// one transaction, and every event is stored once, in order. A reader polling meanwhile (on
/// a connection of its own, `$observer`) sees the batch's conversations all before it or all
/// after it, never some committed and others not.
macro_rules! crosses_the_bind_parameter_limit {
    ($store:expr, $observer:expr) => {{
        const EXISTING: usize = 600;
        const LONG: usize = 650;
        let store = TrackerStore::new($store);
        let prefix = fresh("large-batch");
        let ids: Vec<String> = (0..700).map(|n| format!("{prefix}-{n:03}")).collect();
        let first: Vec<(String, u64, Vec<Event>)> = ids[..EXISTING]
            .iter()
            .map(|id| (id.clone(), 0, bots("first", 1)))
            .collect();
        let created = store
            .append_batch(&batch(&first))
            .await
            .expect("the first batch");
        assert!(
            created.iter().all(|result| matches!(result, Ok(1))),
            "{created:?}"
        );
        let entries: Vec<(String, u64, Vec<Event>)> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let count = if n == LONG { 5_000 } else { 20 };
                let expected = u64::from(n < EXISTING);
                (id.clone(), expected, bots(&format!("{n}"), count))
            })
            .collect();
        let rows: usize = entries.iter().map(|(_, _, events)| events.len()).sum();
        assert!(rows * 7 > 2 * 65_535, "{rows} rows");
        // Conversations from the batch's first position to its last: appended one by one,
        // they would be committed far apart.
        let watched = [0, 300, EXISTING - 1, LONG, 699];
        let (before, after): (u64, u64) = (
            watched.iter().map(|&n| u64::from(n < EXISTING)).sum(),
            watched
                .iter()
                .map(|&n| u64::from(n < EXISTING) + entries[n].2.len() as u64)
                .sum(),
        );
        let count = format!(
            "SELECT count(*) AS count_1 FROM events WHERE sender_id IN ({})",
            watched.map(|n| format!("'{}'", ids[n])).join(", ")
        );
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut observer = $observer.await;
        let reader = {
            let done = done.clone();
            tokio::spawn(async move {
                use tracker_sql::diesel_async::RunQueryDsl;
                let mut seen = Vec::new();
                loop {
                    let finished = std::sync::atomic::AtomicBool::load(
                        &done,
                        std::sync::atomic::Ordering::SeqCst,
                    );
                    let rows = tracker_sql::diesel::sql_query(&count)
                        .get_result::<common::rasa::Count>(&mut observer)
                        .await
                        .expect("count")
                        .count_1;
                    seen.push(rows.unsigned_abs());
                    if finished {
                        return seen;
                    }
                }
            })
        };
        let results = store
            .append_batch(&batch(&entries))
            .await
            .expect("the batch");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut seen = reader.await.expect("the reader");
        eprintln!("{} reads during the batch", seen.len());
        seen.dedup();
        assert!(
            seen.iter().all(|&rows| rows == before || rows == after),
            "a reader saw part of the batch ({before} rows before, {after} after): {seen:?}"
        );
        assert_eq!(seen.last(), Some(&after));
        for (n, result) in results.iter().enumerate() {
            let (_, expected, events) = &entries[n];
            assert_eq!(
                result.as_ref().ok(),
                Some(&(expected + events.len() as u64)),
                "conversation {n}: {result:?}"
            );
        }
        for (n, (id, _, events)) in entries.iter().enumerate() {
            let mut expected = if n < EXISTING {
                texts(&bots("first", 1))
            } else {
                Vec::new()
            };
            expected.extend(texts(events));
            assert_eq!(stored(&store, id).await, expected, "conversation {n}");
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosses_the_bind_parameter_limit_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    crosses_the_bind_parameter_limit!(
        common::connect(&service.url).await,
        common::rasa::connect_postgres(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosses_the_bind_parameter_limit_mysql() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    crosses_the_bind_parameter_limit!(
        common::connect(&service.url).await,
        common::rasa::connect_mysql(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosses_the_bind_parameter_limit_sqlite() {
    let path = common::temp_sqlite_path();
    let store = tracker_sql::SqlStore::connect(&tracker_sql::SqlConfig::sqlite(&path))
        .await
        .expect("open");
    crosses_the_bind_parameter_limit!(
        store,
        tracker_sql::SqliteConnection::establish(&path).map(|c| c.expect("open"))
    );
}
