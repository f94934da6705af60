//! Batches of appends (`Store::append_batch`) racing each other, single appends and Rasa's
//! own saves on the same conversations, on every dialect.

mod common;

use std::collections::HashMap;

use common::batch::{assert_conflict, batch, bots, fresh, label, stored, texts};
use common::rasa::{Dialect, RasaRow, rasa_row, rasa_save, rasa_select, select_all};
use tracker_core::{BatchAppend, ErrorKind, Event, ReadScope, TrackerStore};
use tracker_testkit::{Service, service_url};

/// Two batches over overlapping conversations (new ones and existing ones, at the same
/// expected versions) and a writer of single appends on some of them, started together,
/// several times: every conversation ends with exactly one writer's events, stored once and
/// whole after what it held, and every other writer got a `Conflict` for it.
macro_rules! overlapping_batches_race {
    ($store:expr) => {{
        const ROUNDS: usize = 10;
        const CONVERSATIONS: usize = 400;
        const EXISTING: std::ops::Range<usize> = 140..200;
        // Writer 0 batches 0..260, writer 1 batches 140..400 in even rounds and 200..400 in
        // odd ones (listed backwards), writer 2 appends 190..210 alone; 140..200 exist before
        // the round (in even rounds the batches queue for their rows), 200..260 are created by
        // whichever comes first (the other collides with it on the unique constraint).
        let covers = |round: usize, writer: usize, n: usize| match writer {
            0 => n < 260,
            1 => n >= if round % 2 == 0 { 140 } else { 200 },
            _ => (190..210).contains(&n),
        };
        let store = TrackerStore::new($store);
        for round in 0..ROUNDS {
            let prefix = fresh(&format!("batch-race-{round}"));
            let ids: Vec<String> = (0..CONVERSATIONS)
                .map(|n| format!("{prefix}-{n:03}"))
                .collect();
            let before = |n: usize| {
                if EXISTING.contains(&n) {
                    bots("before", 2)
                } else {
                    Vec::new()
                }
            };
            for n in EXISTING {
                store
                    .append(&ids[n], 0, &before(n))
                    .await
                    .expect("existing");
            }
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(3));
            let mut tasks = Vec::new();
            for writer in 0..3 {
                let mut entries: Vec<(String, u64, Vec<Event>)> = (0..CONVERSATIONS)
                    .filter(|&n| covers(round, writer, n))
                    .map(|n| {
                        let events = bots(&format!("writer {writer} {n}"), 1 + (n + writer) % 3);
                        (ids[n].clone(), before(n).len() as u64, events)
                    })
                    .collect();
                if writer == 1 {
                    entries.reverse();
                }
                let (store, barrier) = (store.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let results = if writer < 2 {
                        store.append_batch(&batch(&entries)).await.expect("a batch")
                    } else {
                        let mut results = Vec::new();
                        for (id, expected, events) in &entries {
                            results.push(store.append(id, *expected, events).await);
                        }
                        results
                    };
                    let outcomes: HashMap<String, (Vec<Event>, tracker_core::Result<u64>)> =
                        entries
                            .into_iter()
                            .zip(results)
                            .map(|((id, _, events), result)| (id, (events, result)))
                            .collect();
                    outcomes
                }));
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("a writer"));
            }
            for (n, id) in ids.iter().enumerate() {
                let tried: Vec<&(Vec<Event>, tracker_core::Result<u64>)> = outcomes
                    .iter()
                    .filter_map(|outcome| outcome.get(id))
                    .collect();
                let winners: Vec<&Vec<Event>> = tried
                    .iter()
                    .filter(|(_, result)| result.is_ok())
                    .map(|(events, _)| events)
                    .collect();
                assert_eq!(
                    winners.len(),
                    1,
                    "round {round}, conversation {n}: {tried:?}"
                );
                let mut expected = texts(&before(n));
                expected.extend(texts(winners[0]));
                for (events, result) in &tried {
                    match result {
                        Ok(version) => assert_eq!(*version, expected.len() as u64),
                        Err(_) => assert_conflict(
                            result,
                            expected.len() as u64,
                            &format!("round {round}, conversation {n}, {} events", events.len()),
                        ),
                    }
                }
                assert_eq!(
                    stored(&store, id).await,
                    expected,
                    "round {round}, conversation {n}"
                );
            }
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_race_postgres() {
    if let Some(store) = common::postgres().await {
        overlapping_batches_race!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_race_mysql() {
    if let Some(store) = common::mysql().await {
        overlapping_batches_race!(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_race_sqlite() {
    if let Some(store) = common::sqlite_file().await {
        overlapping_batches_race!(store);
    }
}

/// Rasa's saves (its own statements: the count, then one INSERT per event, in one
/// transaction) race batches on the same 30 conversations: Rasa's saves succeed (on MySQL
/// InnoDB may end one as a deadlock, which rolls it back whole), every write that succeeded
/// is stored once, whole and in order, Rasa's order (`id`) and the store's (`seq`) agree, and
/// a batch's failures are `Conflict`s that left nothing.
macro_rules! rasa_saves_race_batches {
    ($dialect:expr, $store:expr, $connect:expr) => {{
        const CONVERSATIONS: usize = 30;
        const ROUNDS: usize = 8;
        let dialect: Dialect = $dialect;
        let store = TrackerStore::new($store);
        let prefix = fresh("rasa-batch");
        let ids: Vec<String> = (0..CONVERSATIONS)
            .map(|n| format!("{prefix}-{n:02}"))
            .collect();
        for id in &ids {
            store
                .append(id, 0, &bots("start", 1))
                .await
                .expect("create");
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        // (sender id, texts, whether it is stored, the error otherwise).
        type Write = (String, [String; 2], Result<(), String>);
        let mut rasa = Vec::new();
        for writer in 0..2 {
            let (ids, barrier) = (ids.clone(), barrier.clone());
            let mut conn = $connect.await;
            rasa.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut writes: Vec<Write> = Vec::new();
                for round in 0..ROUNDS * 4 {
                    let id = &ids[(round * 7 + writer * 3) % CONVERSATIONS];
                    let texts = [
                        format!("rasa {writer}.{round} a"),
                        format!("rasa {writer}.{round} b"),
                    ];
                    let rows: Vec<RasaRow> = texts
                        .iter()
                        .map(|text| rasa_row(id, &Event::bot(text.clone()).at(2.0).to_value()))
                        .collect();
                    let result = rasa_save!(&mut conn, dialect, &rows).map_err(|e| e.to_string());
                    writes.push((id.clone(), texts, result));
                }
                writes
            }));
        }
        let mut batches = Vec::new();
        for writer in 0..2 {
            let (ids, barrier, store) = (ids.clone(), barrier.clone(), store.clone());
            batches.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut writes: Vec<Write> = Vec::new();
                for round in 0..ROUNDS {
                    let mut entries = Vec::new();
                    for id in &ids {
                        let version = store.version(id).await.expect("version");
                        let texts = [
                            format!("store {writer}.{round} a"),
                            format!("store {writer}.{round} b"),
                        ];
                        let events: Vec<Event> = texts
                            .iter()
                            .map(|text| Event::bot(text.clone()).at(3.0))
                            .collect();
                        entries.push((id.clone(), version, events, texts));
                    }
                    let batch: Vec<BatchAppend<'_>> = entries
                        .iter()
                        .map(|(sender_id, expected_version, events, _)| BatchAppend {
                            sender_id,
                            expected_version: *expected_version,
                            events,
                        })
                        .collect();
                    let results = store.append_batch(&batch).await.expect("a batch");
                    for ((id, _, _, texts), result) in entries.into_iter().zip(results) {
                        if let Err(error) = &result {
                            // As a single append: InnoDB may end a race with Rasa's insert
                            // as a deadlock, run again a few times.
                            let deadlock = dialect == Dialect::Mysql
                                && error.kind() == ErrorKind::Unavailable
                                && format!("{error:?}")
                                    .to_ascii_lowercase()
                                    .contains("deadlock");
                            assert!(error.kind() == ErrorKind::Conflict || deadlock, "{error:?}");
                        }
                        writes.push((id, texts, result.map(|_| ()).map_err(|e| e.to_string())));
                    }
                }
                writes
            }));
        }
        let mut writes = Vec::new();
        let (mut rasa_ok, mut rasa_failed, mut store_ok) = (0, Vec::new(), 0);
        for task in rasa {
            for write in task.await.expect("Rasa") {
                match &write.2 {
                    Ok(()) => rasa_ok += 1,
                    Err(error) => rasa_failed.push(error.clone()),
                }
                writes.push(write);
            }
        }
        for task in batches {
            let done = task.await.expect("a batch writer");
            store_ok += done.iter().filter(|write| write.2.is_ok()).count();
            writes.extend(done);
        }
        eprintln!(
            "{dialect:?}: {rasa_ok} Rasa saves, {store_ok} batch appends; Rasa failed: {:?}",
            rasa_failed.iter().take(3).collect::<Vec<_>>()
        );
        assert!(rasa_ok > 0 && store_ok > 0, "one side never got through");
        if dialect != Dialect::Mysql {
            assert!(
                rasa_failed.is_empty(),
                "Rasa's saves failed: {rasa_failed:?}"
            );
        } else {
            for error in &rasa_failed {
                assert!(
                    error.to_ascii_lowercase().contains("deadlock"),
                    "Rasa's save failed: {error}"
                );
            }
        }
        let mut conn = $connect.await;
        for id in &ids {
            let read = store
                .read(id, ReadScope::All)
                .await
                .expect("read")
                .expect("exists");
            let labels: Vec<String> = read
                .events
                .iter()
                .map(|event| label(&event.to_value()))
                .collect();
            let rasa_order: Vec<String> = rasa_select!(&mut conn, dialect, select_all(), id)
                .into_iter()
                .map(|row| label(&serde_json::from_str(&row.data.expect("data")).expect("JSON")))
                .collect();
            assert_eq!(
                labels, rasa_order,
                "{id}: Rasa's order (id) and the store's (seq) differ"
            );
            let mut ok = 0;
            for (_, texts, result) in writes.iter().filter(|write| &write.0 == id) {
                let at: Vec<usize> = labels
                    .iter()
                    .enumerate()
                    .filter(|(_, label)| texts.contains(label))
                    .map(|(index, _)| index)
                    .collect();
                if result.is_ok() {
                    ok += 1;
                    assert_eq!(at.len(), 2, "{id}: {texts:?} stored {} times", at.len());
                    assert_eq!(
                        (labels[at[0]].as_str(), at[1]),
                        (texts[0].as_str(), at[0] + 1),
                        "{id}: {texts:?}"
                    );
                } else {
                    assert!(at.is_empty(), "{id}: {texts:?} failed but is stored");
                }
            }
            assert_eq!(labels.len(), 1 + 2 * ok, "{id}: rows nobody wrote");
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_batches_postgres() {
    let Some(service) = service_url(Service::Postgres).await else {
        return;
    };
    rasa_saves_race_batches!(
        Dialect::Postgres,
        common::connect(&service.url).await,
        common::rasa::connect_postgres(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_batches_mysql() {
    let Some(service) = service_url(Service::Mysql).await else {
        return;
    };
    rasa_saves_race_batches!(
        Dialect::Mysql,
        common::connect(&service.url).await,
        common::rasa::connect_mysql(&service.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rasa_saves_race_batches_sqlite() {
    let path = common::temp_sqlite_path();
    let store = tracker_sql::SqlStore::connect(&tracker_sql::SqlConfig::sqlite(&path))
        .await
        .expect("open");
    rasa_saves_race_batches!(Dialect::Sqlite, store, common::rasa::connect_sqlite(&path));
}
