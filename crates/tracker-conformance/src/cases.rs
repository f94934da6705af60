//! The conformance cases. Each takes a store, uses sender ids no other case uses, and panics
//! on the first violation of the contract.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};
use tracker_core::json::to_python_json;
use tracker_core::{
    Error, ErrorKind, Event, EventKind, EventVerbosity, ReadScope, Store, Tracker, TrackerStore,
};

use crate::golden;

mod batch;
mod delete;
mod hostile;
mod import;
mod outbox;
mod races;

pub use batch::{
    append_batch_writes_each_conversation_alone, import_batch_copies_resumes_and_refuses,
};
pub use delete::{delete_at_a_stale_version_conflicts, delete_at_version_of_absent_conversations};
pub use hostile::hostile_input_round_trips;
pub use import::{import_refuses_a_different_prefix, import_resumes_after_an_interruption};
pub use outbox::{
    outbox_failed_appends_and_deletes, outbox_lease_and_checkpoint, outbox_lease_expires,
    relays_deliver_every_event_in_order,
};
pub use races::{race_on_many_conversations, race_on_one_conversation};

/// A sender id prefix no other case (or run) uses.
fn fresh(case: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("conformance-{case}-{}", &id[..12])
}

fn tracker_store<S: Store + 'static>(store: S) -> TrackerStore {
    TrackerStore::new(store)
}

/// Reads every event of a conversation that must exist.
async fn read_all(store: &TrackerStore, id: &str) -> tracker_core::Conversation {
    store
        .read(id, ReadScope::All)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{id:?} must exist"))
}

/// The full tracker of a conversation that must exist.
async fn full_tracker(store: &TrackerStore, id: &str) -> Tracker {
    stored_tracker(store.retrieve_full_tracker(id).await, id)
}

/// The latest-session tracker of a conversation that must exist.
async fn latest_tracker(store: &TrackerStore, id: &str) -> Tracker {
    stored_tracker(store.retrieve(id).await, id)
}

fn stored_tracker(read: Result<Option<Tracker>, Error>, id: &str) -> Tracker {
    read.expect("retrieve")
        .unwrap_or_else(|| panic!("{id:?} must exist"))
}

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

fn expect_kind<T: std::fmt::Debug>(result: Result<T, Error>, kind: ErrorKind, what: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), kind, "{what}: got {error}"),
        Ok(value) => panic!("{what}: expected a {kind:?} error, got Ok({value:?})"),
    }
}

/// Events of one session: `action_session_start`, `session_started`, `action_listen`, then
/// `turns` user/bot turns, with increasing timestamps from `t`.
fn session(t: f64, turns: usize, tag: &str) -> Vec<Event> {
    let mut events = vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.01),
        Event::action("action_listen").at(t + 0.02),
    ];
    for turn in 0..turns {
        let at = t + 1.0 + turn as f64;
        events.push(Event::user(format!("{tag} message {turn}"), "greet", 0.9).at(at));
        events.push(Event::action("utter_greet").at(at + 0.1));
        events.push(Event::bot(format!("{tag} reply {turn}")).at(at + 0.2));
        events.push(Event::action("action_listen").at(at + 0.3));
    }
    events
}

/// A conversation that was never written does not exist.
pub async fn empty_store<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("empty");
    assert_eq!(store.version(&id).await.expect("version"), 0);
    assert!(!store.exists(&id).await.expect("exists"));
    assert!(store.retrieve(&id).await.expect("retrieve").is_none());
    assert!(
        store
            .retrieve_full_tracker(&id)
            .await
            .expect("full")
            .is_none()
    );
    assert!(
        store
            .read(&id, ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert!(!store.delete(&id).await.expect("delete"));
    let keys = store.keys().await.expect("keys");
    assert!(
        !keys.contains(&id),
        "a conversation never written is listed"
    );
    let fresh_tracker = store.get_or_create_tracker(&id).await.expect("create");
    assert!(fresh_tracker.events().is_empty());
    assert_eq!(
        store.save(&mut fresh_tracker.clone()).await.expect("save"),
        0
    );
    assert!(
        !store.exists(&id).await.expect("exists"),
        "an empty save stores nothing"
    );
}

/// Every golden event, appended one by one and all at once, reads back as Rasa's exact text.
pub async fn golden_events_round_trip<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let values = golden::event_values();
    let events: Vec<Event> = values
        .iter()
        .map(|value| Event::from_value(value.clone()).expect("golden event parses"))
        .collect();
    let expected: Vec<String> = values
        .iter()
        .map(|value| to_python_json(value).expect("renders"))
        .collect();

    let batch = fresh("golden-batch");
    let version = store.append(&batch, 0, &events).await.expect("append all");
    assert_eq!(version, events.len() as u64);
    let read = read_all(&store, &batch).await;
    assert_eq!(read.version, version);
    assert_eq!(texts(&read.events), expected);

    let single = fresh("golden-single");
    for (index, event) in events.iter().enumerate() {
        let version = store
            .append(&single, index as u64, std::slice::from_ref(event))
            .await
            .expect("append one");
        assert_eq!(version, index as u64 + 1);
    }
    let read = read_all(&store, &single).await;
    assert_eq!(texts(&read.events), expected);
    for (event, value) in read.events.iter().zip(&values) {
        assert_eq!(
            &event.to_value(),
            value,
            "as_dict differs after a round trip"
        );
    }
}

/// Golden Rasa conversations saved and read back give Rasa's state.
pub async fn golden_trackers_round_trip<S: Store + 'static>(store: S) {
    let store = tracker_store(store).with_domain(golden::domain());
    for line in golden::lines(golden::TRACKERS_JSONL) {
        let id = format!(
            "{}-{}",
            fresh("golden-tracker"),
            line["sender_id"].as_str().expect("sender_id")
        );
        let events: Vec<Event> = line["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|value| Event::from_value(value.clone()).expect("golden event parses"))
            .collect();
        // Save turn by turn, as Rasa's processor does: one save per user message.
        let mut tracker = store.get_or_create_tracker(&id).await.expect("create");
        for event in events {
            let is_user = matches!(event.kind, EventKind::UserUttered(_));
            if is_user {
                store.save(&mut tracker).await.expect("save a turn");
            }
            tracker.update(event);
        }
        store.save(&mut tracker).await.expect("save the last turn");
        let full = full_tracker(&store, &id).await;
        let mut expected = line["state_all"].clone();
        expected["sender_id"] = Value::from(id.clone());
        assert_eq!(
            full.current_state(EventVerbosity::All),
            expected,
            "state of {}",
            line["sender_id"]
        );
    }
}

/// A version is the number of events; sequence numbers run from 1 without gaps.
pub async fn versions_count_events<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("versions");
    let first = session(1_700_000_000.0, 1, "v");
    assert_eq!(store.append(&id, 0, &first).await.expect("append"), 7);
    let more = [
        Event::bot("one").at(1_700_000_100.0),
        Event::bot("two").at(1_700_000_101.0),
    ];
    assert_eq!(store.append(&id, 7, &more).await.expect("append"), 9);
    assert_eq!(store.version(&id).await.expect("version"), 9);
    let read = read_all(&store, &id).await;
    assert_eq!((read.version, read.first_seq, read.events.len()), (9, 1, 9));
    let raw = store
        .store()
        .read(
            &tracker_core::SenderId::new(id.as_str()).expect("id"),
            ReadScope::All,
        )
        .await
        .expect("raw read")
        .expect("exists");
    let seqs: Vec<u64> = raw.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());
}

/// Saving the same tracker twice writes its events once (Rasa's count-based save does not).
pub async fn save_twice_writes_nothing_twice<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("save-twice");
    let mut tracker = store.get_or_create_tracker(&id).await.expect("create");
    tracker.extend(session(1_700_000_000.0, 2, "a"));
    let version = store.save(&mut tracker).await.expect("save");
    assert_eq!(version, 11);
    assert_eq!(store.save(&mut tracker).await.expect("save again"), 11);
    assert_eq!(store.version(&id).await.expect("version"), 11);

    let mut retrieved = latest_tracker(&store, &id).await;
    assert!(retrieved.unsaved_events().is_empty());
    assert_eq!(
        store.save(&mut retrieved).await.expect("save unchanged"),
        11
    );
    retrieved.update(Event::user("again", "greet", 1.0).at(1_700_000_050.0));
    assert_eq!(store.save(&mut retrieved).await.expect("save one more"), 12);
    assert_eq!(store.save(&mut retrieved).await.expect("and again"), 12);
    let full = full_tracker(&store, &id).await;
    assert_eq!(full.events().len(), 12);
}

/// Latest-session reads return the last session from its `action_session_start`; full reads
/// return everything; saving a latest-session tracker keeps earlier sessions.
pub async fn latest_session_and_full_reads<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("sessions");
    let first = session(1_700_000_000.0, 2, "first");
    let mut second = session(1_700_100_000.0, 1, "second");
    // A restart inside the second session does not start a session.
    second.push(Event::restarted().at(1_700_100_010.0));
    second.push(Event::user("after restart", "greet", 1.0).at(1_700_100_011.0));
    // Back-dated events stay in their position (Rasa's SQL store loses them by timestamp).
    let mut third = session(1_700_200_000.0, 1, "third");
    third.push(Event::bot("back-dated").at(1_600_000_000.0));
    let mut tracker = store.get_or_create_tracker(&id).await.expect("create");
    for part in [&first, &second, &third] {
        tracker.extend(part.iter().cloned());
        store.save(&mut tracker).await.expect("save a session");
    }
    let total = (first.len() + second.len() + third.len()) as u64;

    let latest = latest_tracker(&store, &id).await;
    assert_eq!(texts(latest.events()), texts(&third));
    assert_eq!(latest.version(), total);
    assert_eq!(latest.first_seq(), total - third.len() as u64 + 1);
    assert!(latest.events()[0].is_action("action_session_start"));

    let full = full_tracker(&store, &id).await;
    let all: Vec<Event> = [first.clone(), second.clone(), third.clone()].concat();
    assert_eq!(texts(full.events()), texts(&all));
    assert_eq!(full.sessions().len(), 3);

    // Saving the latest-session tracker appends; earlier sessions stay.
    let mut latest = latest;
    let extra = Event::user("more", "greet", 1.0).at(1_700_200_100.0);
    latest.update(extra.clone());
    assert_eq!(store.save(&mut latest).await.expect("save"), total + 1);
    let full = full_tracker(&store, &id).await;
    let mut all = all;
    all.push(extra);
    assert_eq!(texts(full.events()), texts(&all));

    // A conversation without sessions: the latest session is everything.
    let plain = fresh("no-sessions");
    let events = [
        Event::user("hi", "greet", 1.0).at(1_700_000_000.0),
        Event::bot("hey").at(1_700_000_001.0),
    ];
    store.append(&plain, 0, &events).await.expect("append");
    let latest = latest_tracker(&store, &plain).await;
    assert_eq!(texts(latest.events()), texts(&events));

    // A `session_started` without `action_session_start` before it starts the session itself.
    let bare = fresh("bare-session");
    let events = [
        Event::user("hi", "greet", 1.0).at(1_700_000_000.0),
        Event::action("utter_greet").at(1_700_000_001.0),
        Event::session_started().at(1_700_000_002.0),
        Event::bot("new session").at(1_700_000_003.0),
    ];
    store.append(&bare, 0, &events).await.expect("append");
    let latest = latest_tracker(&store, &bare).await;
    assert_eq!(texts(latest.events()), texts(&events[2..]));
    assert_eq!(latest.first_seq(), 3);

    for id in [&id, &plain, &bare] {
        read_json_as_read(&store, id).await;
    }
    assert!(
        store
            .read_json(&fresh("absent"), ReadScope::All)
            .await
            .expect("read_json")
            .is_none()
    );
}

/// Both scopes of [`TrackerStore::read_json`] give what [`TrackerStore::read`] gives, as
/// Rasa's JSON text.
async fn read_json_as_read(store: &TrackerStore, id: &str) {
    for scope in [ReadScope::All, ReadScope::LatestSession] {
        let read = store.read(id, scope).await.expect("read").expect("exists");
        let json = store
            .read_json(id, scope)
            .await
            .expect("read_json")
            .expect("exists");
        assert_eq!(
            (json.version, json.first_seq),
            (read.version, read.first_seq),
            "{id} {scope:?}"
        );
        assert_eq!(json.events, texts(&read.events), "{id} {scope:?}");
    }
}

/// The `action_session_start` / `session_started` pair split over two appends still opens the
/// latest session at `action_session_start`.
pub async fn session_start_split_across_appends<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("split-session");
    let old = session(1_700_000_000.0, 1, "old");
    let new = session(1_700_100_000.0, 1, "new");
    let mut version = store.append(&id, 0, &old).await.expect("append");
    version = store.append(&id, version, &new[..1]).await.expect("append");
    store.append(&id, version, &new[1..]).await.expect("append");
    let latest = latest_tracker(&store, &id).await;
    assert_eq!(texts(latest.events()), texts(&new));
}

/// An append at a stale (or future) version is a Conflict carrying the current version, and
/// writes nothing.
pub async fn stale_version_conflicts<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("stale");
    let events = session(1_700_000_000.0, 1, "s");
    let version = store.append(&id, 0, &events).await.expect("append");
    for expected in [0, version - 1, version + 1, version + 100] {
        let error = store
            .append(&id, expected, &[Event::bot("stale").at(1_700_000_100.0)])
            .await
            .expect_err("a stale append must fail");
        assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
        assert_eq!(error.current_version(), Some(version));
    }
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), texts(&events));

    // Two trackers read at the same version: the second save conflicts and writes nothing.
    let mut a = latest_tracker(&store, &id).await;
    let mut b = a.clone();
    a.update(Event::bot("from a").at(1_700_000_200.0));
    b.update(Event::bot("from b").at(1_700_000_201.0));
    store.save(&mut a).await.expect("first writer wins");
    let error = store
        .save(&mut b)
        .await
        .expect_err("second writer conflicts");
    assert_eq!(error.current_version(), Some(version + 1));
    assert_eq!(
        b.unsaved_events().len(),
        1,
        "a failed save leaves the tracker unsaved"
    );
    let full = full_tracker(&store, &id).await;
    assert_eq!(full.events().len() as u64, version + 1);
    assert_eq!(
        full.events().last().map(Event::to_rasa_json),
        Some(Event::bot("from a").at(1_700_000_200.0).to_rasa_json())
    );
}

/// 32 writers append at the same expected version: exactly one succeeds, the others get a
/// Conflict, and the stored history is exactly the winner's. Checked for a new conversation
/// and for an existing one.
pub async fn concurrent_writers_one_wins<S: Store + 'static>(store: S) {
    const WRITERS: usize = 32;
    let store = tracker_store(store);
    let id = fresh("race");
    let mut stored: Vec<String> = Vec::new();
    for round in 0..2u64 {
        let expected = stored.len() as u64;
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            let id = id.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let events = vec![
                    Event::user(format!("writer {writer} round {round}"), "greet", 1.0)
                        .at(1_700_000_000.0 + round as f64),
                    Event::bot(format!("reply to {writer}")).at(1_700_000_000.5 + round as f64),
                ];
                barrier.wait().await;
                let result = store.append(&id, expected, &events).await;
                (events, result)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (events, result) = task.await.expect("writer task");
            match result {
                Ok(version) => winners.push((events, version)),
                Err(error) => {
                    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one writer must win round {round}"
        );
        let (events, version) = winners.remove(0);
        assert_eq!(version, expected + 2);
        stored.extend(texts(&events));
        let read = read_all(&store, &id).await;
        assert_eq!(texts(&read.events), stored);
    }
}

/// 1,000 conversations are listed completely, with no id twice across pages.
pub async fn list_pages_are_complete<S: Store + 'static>(store: S) {
    const CONVERSATIONS: usize = 1_000;
    let store = tracker_store(store);
    let prefix = fresh("list");
    let ids: Vec<String> = (0..CONVERSATIONS)
        .map(|n| format!("{prefix}-{n:04}"))
        .collect();
    let results: Vec<_> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let store = store.clone();
            async move {
                store
                    .append(&id, 0, &[Event::bot("listed").at(1_700_000_000.0)])
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result.expect("append");
    }

    let mut seen = HashSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store.list(cursor, 97).await.expect("list");
        assert!(page.sender_ids.len() <= 97, "a page exceeds its limit");
        for id in page.sender_ids {
            assert!(seen.insert(id.clone()), "{id} listed twice");
        }
        pages += 1;
        assert!(pages < 100_000, "listing does not end");
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for id in &ids {
        assert!(seen.contains(id), "{id} missing from the listing");
    }
    let keys: HashSet<String> = store.keys().await.expect("keys").into_iter().collect();
    for id in &ids {
        assert!(keys.contains(id), "{id} missing from keys()");
    }
    expect_kind(
        store.list(None, 0).await,
        ErrorKind::InvalidInput,
        "page size 0",
    );
}

/// A deleted conversation reads as absent, its version is 0, it can be written anew, and
/// other conversations are untouched.
pub async fn delete_then_read<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("delete");
    let other = fresh("delete-other");
    let events = session(1_700_000_000.0, 1, "d");
    store.append(&id, 0, &events).await.expect("append");
    store.append(&other, 0, &events).await.expect("append");
    assert!(store.delete(&id).await.expect("delete"));
    assert!(store.retrieve(&id).await.expect("retrieve").is_none());
    assert!(
        store
            .retrieve_full_tracker(&id)
            .await
            .expect("full")
            .is_none()
    );
    assert_eq!(store.version(&id).await.expect("version"), 0);
    assert!(!store.exists(&id).await.expect("exists"));
    assert!(!store.delete(&id).await.expect("delete again"));
    assert!(!store.keys().await.expect("keys").contains(&id));
    expect_kind(
        store.append(&id, 7, &events).await,
        ErrorKind::Conflict,
        "append at the old version",
    );
    assert_eq!(
        store.append(&id, 0, &events[..2]).await.expect("re-create"),
        2
    );
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), texts(&events[..2]));
    let untouched = read_all(&store, &other).await;
    assert_eq!(texts(&untouched.events), texts(&events));
}

/// Unicode, punctuation and 255-byte sender ids are stored and listed verbatim.
pub async fn unusual_sender_ids<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let prefix = fresh("ids");
    let mut ids = vec![
        format!("{prefix} ü 🍕 中文"),
        format!("{prefix}'; DROP TABLE events; --"),
        format!("{prefix}{{tag}}*?[x]$gt.%_\\\"/"),
        format!("{prefix}\ttab\nnewline"),
    ];
    // Exactly 255 bytes, mostly two-byte characters.
    let mut long = prefix.clone();
    while long.len() + 2 <= 255 {
        long.push('é');
    }
    while long.len() < 255 {
        long.push('x');
    }
    assert_eq!(long.len(), 255);
    ids.push(long);
    for (n, id) in ids.iter().enumerate() {
        let events = [Event::bot(format!("for id {n}")).at(1_700_000_000.0)];
        store.append(id, 0, &events).await.expect("append");
        let tracker = latest_tracker(&store, id).await;
        assert_eq!(tracker.sender_id(), id);
        assert_eq!(texts(tracker.events()), texts(&events));
    }
    let keys: HashSet<String> = store.keys().await.expect("keys").into_iter().collect();
    for id in &ids {
        assert!(keys.contains(id), "{id:?} missing from keys()");
    }
}

/// A 1 MiB event round-trips, or is rejected up front with InvalidInput when the store
/// declares a lower limit.
pub async fn large_event<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("large");
    let text: String = "large event ".repeat(1024 * 1024 / 12 + 1);
    let event = Event::bot(text).at(1_700_000_000.0);
    let size = event.to_rasa_json().len();
    assert!(size > 1024 * 1024);
    let limit = store.capabilities().max_event_bytes;
    let result = store.append(&id, 0, std::slice::from_ref(&event)).await;
    match limit {
        Some(max) if size > max => {
            expect_kind(result, ErrorKind::InvalidInput, "an event over the limit");
            assert_eq!(store.version(&id).await.expect("version"), 0);
        }
        _ => {
            assert_eq!(result.expect("append a large event"), 1);
            let read = read_all(&store, &id).await;
            assert_eq!(texts(&read.events), vec![event.to_rasa_json()]);
        }
    }
}

/// Invalid sender ids and non-finite timestamps are InvalidInput, and nothing is written.
pub async fn invalid_input_is_rejected<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let valid_event = [Event::bot("ok").at(1_700_000_000.0)];
    let too_long = "x".repeat(256);
    let with_nul = format!("{}\0nul", fresh("nul"));
    for id in ["", too_long.as_str(), with_nul.as_str()] {
        expect_kind(
            store.append(id, 0, &valid_event).await,
            ErrorKind::InvalidInput,
            "append",
        );
        expect_kind(
            store.retrieve(id).await,
            ErrorKind::InvalidInput,
            "retrieve",
        );
        expect_kind(
            store.retrieve_full_tracker(id).await,
            ErrorKind::InvalidInput,
            "full",
        );
        expect_kind(store.version(id).await, ErrorKind::InvalidInput, "version");
        expect_kind(store.exists(id).await, ErrorKind::InvalidInput, "exists");
        expect_kind(store.delete(id).await, ErrorKind::InvalidInput, "delete");
        let mut tracker = Tracker::without_domain(id);
        tracker.update(Event::bot("x"));
        expect_kind(
            store.save(&mut tracker).await,
            ErrorKind::InvalidInput,
            "save",
        );
    }
    let id = fresh("invalid");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let events = [
            Event::bot("fine").at(1_700_000_000.0),
            Event::bot("bad").at(bad),
        ];
        expect_kind(
            store.append(&id, 0, &events).await,
            ErrorKind::InvalidInput,
            "timestamp",
        );
        assert_eq!(
            store.version(&id).await.expect("version"),
            0,
            "nothing written"
        );
    }
    expect_kind(
        store.append(&id, 0, &[]).await,
        ErrorKind::InvalidInput,
        "empty append",
    );
    assert!(store.retrieve(&id).await.expect("retrieve").is_none());
    // The JSON of unusual content is written verbatim.
    let content = json!({"$gt": 1, "a.b": "\u{0}nul", "{x}": [null, 1e300]});
    let event = Event::slot("payload", content).at(1_700_000_000.0);
    store
        .append(&id, 0, std::slice::from_ref(&event))
        .await
        .expect("append odd content");
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), vec![event.to_rasa_json()]);
}
