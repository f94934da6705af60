//! Races at scale: many writers on one conversation, and many conversations written at once,
//! checked against what every writer was told.

use std::collections::HashMap;
use std::time::Duration;

use tracker_core::{ErrorKind, Event, ReadScope, SenderId, Store, TrackerStore};

use super::{fresh, texts, tracker_store};

/// Concurrent writers in each race.
const WRITERS: usize = 64;
/// Successful appends each writer makes.
const APPENDS: usize = 50;
/// Events in each append: more than one, so that a torn append would show.
const EVENTS_PER_APPEND: u64 = 2;
/// Conflicts one append may meet before the race is declared a livelock.
const MAX_ATTEMPTS: u32 = 100_000;

/// One acknowledged append: its events (as Rasa text) and the version the store returned.
#[derive(Debug)]
struct Acknowledged {
    writer: usize,
    index: usize,
    texts: Vec<String>,
    version: u64,
}

/// What one writer did.
#[derive(Debug, Default)]
struct WriterLog {
    acknowledged: Vec<Acknowledged>,
    conflicts: u64,
}

/// The events of a writer's `index`-th append.
fn append_events(writer: usize, index: usize) -> Vec<Event> {
    let at = 1_700_000_000.0 + index as f64;
    vec![
        Event::user(format!("writer {writer} append {index}"), "race", 1.0).at(at),
        Event::bot(format!("ack {writer}/{index}")).at(at + 0.5),
    ]
}

/// A random pause of up to `2^attempt` ms (at most 1 s), so that writers that lost a race
/// spread out instead of colliding again in lock step (exponential backoff, full jitter).
async fn back_off(attempt: u32) {
    let cap_ms = 1u64 << attempt.min(10);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    tokio::time::sleep(Duration::from_micros(random % (cap_ms * 1000 + 1))).await;
}

/// Appends `APPENDS` times to `id` as writer `writer`, re-reading the version after every
/// Conflict. Any other error fails the race.
async fn write(store: TrackerStore, id: String, writer: usize) -> WriterLog {
    let mut log = WriterLog::default();
    let mut version = store.version(&id).await.expect("read the version");
    for index in 0..APPENDS {
        let events = append_events(writer, index);
        let mut attempt = 0;
        loop {
            match store.append(&id, version, &events).await {
                Ok(new_version) => {
                    assert_eq!(
                        new_version,
                        version + EVENTS_PER_APPEND,
                        "writer {writer}: an append at {version} returned {new_version}"
                    );
                    log.acknowledged.push(Acknowledged {
                        writer,
                        index,
                        texts: texts(&events),
                        version: new_version,
                    });
                    version = new_version;
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Conflict => {
                    log.conflicts += 1;
                    attempt += 1;
                    assert!(
                        attempt < MAX_ATTEMPTS,
                        "writer {writer} made no progress in {MAX_ATTEMPTS} attempts"
                    );
                    back_off(attempt).await;
                    version = store.version(&id).await.expect("re-read the version");
                }
                Err(error) => panic!("writer {writer}, append {index}: {error:?}"),
            }
        }
    }
    log
}

/// Reads a conversation through the backend itself and checks that its events are numbered
/// 1..=version without gaps, then returns their texts.
async fn stored_texts(store: &TrackerStore, id: &str) -> Vec<String> {
    let sender_id = SenderId::new(id).expect("a valid sender id");
    let stored = store
        .store()
        .read(&sender_id, ReadScope::All)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{id:?} must exist"));
    let seqs: Vec<u64> = stored.events.iter().map(|event| event.seq).collect();
    let expected: Vec<u64> = (1..=stored.version).collect();
    assert_eq!(
        seqs, expected,
        "{id:?}: sequence numbers must run from 1 to the version without gaps"
    );
    let conversation = store
        .read(id, ReadScope::All)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{id:?} must exist"));
    texts(&conversation.events)
}

/// Checks that the stored history of `id` is exactly the acknowledged appends: each at the
/// version it was acknowledged with, each writer's appends in its own order, nothing else.
async fn check_history(store: &TrackerStore, id: &str, acknowledged: &[Acknowledged]) {
    let stored = stored_texts(store, id).await;
    let total: u64 = acknowledged.len() as u64 * EVENTS_PER_APPEND;
    assert_eq!(
        stored.len() as u64,
        total,
        "{id:?}: {} events stored for {} acknowledged appends",
        stored.len(),
        acknowledged.len()
    );
    let mut owner: HashMap<u64, (usize, usize)> = HashMap::new();
    for ack in acknowledged {
        if let Some(other) = owner.insert(ack.version, (ack.writer, ack.index)) {
            panic!(
                "{id:?}: version {} acknowledged twice: to writer {} append {} and to {other:?}",
                ack.version, ack.writer, ack.index
            );
        }
        let end = usize::try_from(ack.version).expect("version fits in usize");
        let start = end - ack.texts.len();
        assert_eq!(
            stored[start..end],
            ack.texts[..],
            "{id:?}: writer {} append {} acknowledged at version {} is not stored there",
            ack.writer,
            ack.index,
            ack.version
        );
    }
    let mut last_version: HashMap<usize, u64> = HashMap::new();
    let mut in_order: Vec<&Acknowledged> = acknowledged.iter().collect();
    in_order.sort_by_key(|ack| ack.version);
    for ack in in_order {
        let previous = last_version.insert(ack.writer, ack.version);
        assert!(
            previous.is_none_or(|previous| previous < ack.version),
            "{id:?}: writer {}'s appends are out of order",
            ack.writer
        );
    }
}

/// 64 writers append 50 times each to one conversation, each re-reading the version after a
/// Conflict: the stored history is exactly the 3,200 acknowledged appends, each at the
/// version it was acknowledged with, in version order, with no event lost or duplicated and
/// sequence numbers without gaps.
pub async fn race_on_one_conversation<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("race-one");
    let started = std::time::Instant::now();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            write(store, id, writer).await
        }));
    }
    let mut acknowledged = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let log = task.await.expect("writer task");
        assert_eq!(log.acknowledged.len(), APPENDS);
        conflicts += log.conflicts;
        acknowledged.extend(log.acknowledged);
    }
    // Shown with `--nocapture`: how hard the writers raced.
    eprintln!(
        "race on one conversation ({}): {} appends acknowledged, {conflicts} conflicts, {:.1} s",
        store.store().name(),
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
    check_history(&store, &id, &acknowledged).await;
    assert_eq!(
        store.version(&id).await.expect("version"),
        (WRITERS * APPENDS) as u64 * EVENTS_PER_APPEND
    );
}

/// 64 writers append 50 times each at once, each to a conversation of its own: no writer
/// meets a Conflict, and every conversation holds exactly its writer's appends.
pub async fn race_on_many_conversations<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let prefix = fresh("race-many");
    let started = std::time::Instant::now();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let id = format!("{prefix}-{writer}");
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let log = write(store, id.clone(), writer).await;
            (id, log)
        }));
    }
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await.expect("writer task"));
    }
    eprintln!(
        "race on {WRITERS} conversations ({}): {} appends acknowledged, {:.1} s",
        store.store().name(),
        WRITERS * APPENDS,
        started.elapsed().as_secs_f64()
    );
    for (id, log) in &logs {
        assert_eq!(
            log.conflicts, 0,
            "{id:?} has one writer, yet it met a Conflict"
        );
        check_history(&store, id, &log.acknowledged).await;
    }
}
