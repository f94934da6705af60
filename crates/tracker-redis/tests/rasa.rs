//! Rasa's own `RedisTrackerStore` layout — `<prefix><sender id>` string keys holding
//! `json.dumps({"events": [...], "name": id})`, written here exactly as Rasa 3.6 writes them
//! (`SET`, with `EX` when Rasa has `record_exp`) — on a single server and a cluster:
//!
//! - served by the store itself (adoption, the default): read, versioned, listed once,
//!   adopted into the store's layout on the first append with Rasa's key left byte for byte,
//!   raced by two adopters, deleted with and without an expected version;
//! - read through [`RedisRasaSource`] and copied with `TrackerStore::import_from` by stores
//!   that do not adopt (`adopt_rasa: false`).

mod common;

use std::collections::BTreeMap;

use common::{TestStore, store, store_configured};
use serde_json::json;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, RasaSource, ReadScope, TrackerStore};
use tracker_redis::fred::prelude::*;
use tracker_redis::{RedisConfig, RedisRasaSource, RedisStore, tracker_core};
use tracker_testkit::Service;

on_both!(
    reads_and_lists_rasa_records,
    imports_rasa_records,
    import_resumes_after_an_interruption,
    import_refuses_a_different_conversation,
    import_checks_like_any_append,
    import_finds_adopted_conversations_present,
    serves_rasa_conversations,
    lists_rasa_conversations_once,
    adopts_on_the_first_append,
    concurrent_adopters_one_conflict,
    deletes_remove_both_copies,
    prefix_rasa_drops_serves_unprefixed_keys,
);

/// The exact text Rasa stores: Python's `json.dumps` of the dialogue, default separators.
fn rasa_record(sender_id: &str, events: &[Event]) -> String {
    let values: Vec<serde_json::Value> = events
        .iter()
        .map(|event| serde_json::from_str(&event.to_rasa_json()).expect("JSON"))
        .collect();
    to_python_json(&json!({"events": values, "name": sender_id})).expect("renders")
}

/// A conversation of two sessions.
fn conversation(t: f64) -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.01),
        Event::action("action_listen").at(t + 0.02),
        Event::user("Grüß dich 🍕", "greet", 0.97).at(t + 1.0),
        Event::slot("city", json!({"name": "Zürich", "n": 1, "f": 1.0})).at(t + 1.1),
        Event::bot("Hallo!").at(t + 1.2),
        Event::action("action_session_start").at(t + 7200.0),
        Event::session_started().at(t + 7200.01),
        Event::action("action_listen").at(t + 7200.02),
    ]
}

/// Events a bot adds later.
fn more(t: f64, text: &str) -> Vec<Event> {
    vec![
        Event::user(text, "inform", 0.8).at(t),
        Event::bot("Gern!").at(t + 0.5),
    ]
}

async fn set(store: &RedisStore, key: &str, value: &str, ex: Option<i64>) {
    let () = store
        .client()
        .set(key, value, ex.map(Expiration::EX), None, false)
        .await
        .expect("SET");
}

async fn get(store: &RedisStore, key: &str) -> Option<String> {
    store.client().get(key).await.expect("GET")
}

async fn ttl(store: &RedisStore, key: &str) -> i64 {
    store.client().ttl(key).await.expect("TTL")
}

async fn exists(store: &RedisStore, key: &str) -> bool {
    store.client().exists::<i64, _>(key).await.expect("EXISTS") > 0
}

/// Stores `events` as Rasa would for `sender_id`, under the store's prefix.
async fn set_rasa(store: &RedisStore, sender_id: &str, events: &[Event]) {
    set(
        store,
        &store.layout().rasa(sender_id),
        &rasa_record(sender_id, events),
        None,
    )
    .await;
}

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

fn api(store: &TestStore) -> TrackerStore {
    TrackerStore::new(store.0.clone())
}

/// A store that does not adopt Rasa's records (they are only read through the Rasa source).
async fn non_adopting(service: Service) -> Option<TestStore> {
    store_configured(service, |config| config.adopt_rasa = false).await
}

/// The events the store holds for `sender_id`, as Rasa's text.
async fn stored(api: &TrackerStore, sender_id: &str) -> Vec<String> {
    api.read(sender_id, ReadScope::All)
        .await
        .expect("read")
        .map(|conversation| texts(&conversation.events))
        .unwrap_or_default()
}

/// Whether this store's own layout holds `sender_id` (rather than only Rasa's key).
async fn own(store: &RedisStore, sender_id: &str) -> bool {
    exists(store, &store.layout().head(sender_id)).await
        || exists(store, &store.layout().events(sender_id)).await
}

fn conflict(result: tracker_core::Result<impl std::fmt::Debug>, actual: u64, what: &str) {
    match result {
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Conflict, "{what}: {error:?}");
            assert_eq!(error.current_version(), Some(actual), "{what}: {error:?}");
        }
        Ok(value) => panic!("{what}: expected a Conflict, got {value:?}"),
    }
}

/// Rasa's text, as built here, is what joining the events' own `json.dumps` text gives.
#[test]
fn records_are_built_as_rasa_writes_them() {
    let events = conversation(1_700_000_000.0);
    let joined = format!(
        "{{\"events\": [{}], \"name\": {}}}",
        texts(&events).join(", "),
        to_python_json(&json!("a \"b\" ü")).expect("renders")
    );
    assert_eq!(rasa_record("a \"b\" ü", &events), joined);
    assert!(joined.contains("\\u00fc") && joined.contains("1700000000.0"));
}

async fn reads_and_lists_rasa_records(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let Some(other) = common::store(service).await else {
        return;
    };
    let layout = store.layout();
    let alice = conversation(1_700_000_000.0);
    let odd_id = "bob {x} % \"quoted\" ü";
    let bob = conversation(1_700_100_000.0);
    set_rasa(&store, "alice", &alice).await;
    set_rasa(&store, odd_id, &bob).await;
    // Rasa's first `get_or_create_tracker` stores an empty record.
    set(
        &store,
        &layout.rasa("carol"),
        "{\"events\": [], \"name\": \"carol\"}",
        None,
    )
    .await;
    // Not Rasa's: this store's own conversation, a key of another type under Rasa's prefix,
    // and a Rasa record under another prefix.
    api(&store).append("dave", 0, &alice).await.expect("append");
    let _: i64 = store
        .client()
        .rpush(layout.rasa("a list"), "x")
        .await
        .expect("RPUSH");
    set_rasa(&other, "eve", &alice).await;

    let source = RedisRasaSource::from_store(&store);
    let prefix = layout.key_prefix().expect("tests use a prefix");
    assert_eq!(
        source.describe(),
        format!("Rasa's Redis keys {prefix}:tracker:*")
    );
    assert_eq!(
        source.sender_ids().await.expect("list"),
        ["alice", odd_id, "carol"]
    );
    let other_source = RedisRasaSource::from_store(&other);
    assert_eq!(other_source.sender_ids().await.expect("list"), ["eve"]);
    // A source opened from the configuration alone reads the same keys.
    let config = common::config(service, prefix)
        .await
        .expect("the service answered above");
    let connected = RedisRasaSource::connect(&config).await.expect("connect");
    assert_eq!(
        connected.sender_ids().await.expect("list"),
        ["alice", odd_id, "carol"]
    );

    let read = source.read("alice").await.expect("read").expect("exists");
    assert_eq!(read.sender_id, "alice");
    assert_eq!(texts(&read.events), texts(&alice));
    let read = connected.read(odd_id).await.expect("read").expect("exists");
    assert_eq!(texts(&read.events), texts(&bob));
    let read = source.read("carol").await.expect("read").expect("exists");
    assert!(read.events.is_empty());
    assert!(source.read("nobody").await.expect("read").is_none());
    assert!(source.read("eve").await.expect("read").is_none());
    // This store's conversation is not a Rasa record.
    assert!(source.read("dave").await.expect("read").is_none());

    // Unreadable records are Corrupt, naming the key; the others stay readable.
    set(
        &store,
        &layout.rasa("broken"),
        "{\"events\": [{\"event\": 7}]",
        None,
    )
    .await;
    set(
        &store,
        &layout.rasa("bad event"),
        "{\"events\": [{\"event\": \"bot\", \"timestamp\": 1.0}, {\"event\": \"user\", \"metadata\": 3}], \"name\": \"bad event\"}",
        None,
    )
    .await;
    for (id, position) in [("broken", None), ("bad event", Some(2)), ("a list", None)] {
        match source.read(id).await {
            Err(Error::Corrupt {
                sender_id,
                position: at,
                message,
                ..
            }) => {
                assert_eq!(sender_id, id);
                assert_eq!(at, position, "{message}");
                assert!(message.contains(&layout.rasa(id)), "{message}");
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
    }
    assert!(source.read("alice").await.expect("still fine").is_some());
    // The store reports Rasa's unreadable records as Corrupt too.
    let error = api(&store).version("broken").await.expect_err("unreadable");
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error:?}");
}

async fn imports_rasa_records(service: Service) {
    let Some(store) = non_adopting(service).await else {
        return;
    };
    let events = conversation(1_700_000_000.0);
    set_rasa(&store, "alice", &events).await;
    set_rasa(&store, "carol", &[]).await;
    let source = RedisRasaSource::from_store(&store);
    let api = api(&store);
    // Without adoption the store does not see Rasa's records.
    assert_eq!(api.version("alice").await.expect("version"), 0);
    assert!(api.keys().await.expect("keys").is_empty());

    let imported = api
        .import_from(&source, "alice")
        .await
        .expect("import")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (0, 9, 9)
    );
    assert_eq!(stored(&api, "alice").await, texts(&events));
    let latest = api
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("imported");
    assert_eq!(latest.events().len(), 3);
    // Importing again finds every event there and writes nothing.
    let again = api
        .import_from(&source, "alice")
        .await
        .expect("import again")
        .expect("Rasa has it");
    assert_eq!(
        (again.already_present, again.written, again.version),
        (9, 0, 9)
    );
    assert_eq!(api.version("alice").await.expect("version"), 9);
    // Rasa's key is left alone.
    assert!(source.read("alice").await.expect("read").is_some());
    // Rasa's empty record writes nothing; a conversation Rasa lacks is None.
    let empty = api
        .import_from(&source, "carol")
        .await
        .expect("empty")
        .expect("Rasa has it");
    assert_eq!((empty.written, empty.version), (0, 0));
    assert!(!api.exists("carol").await.expect("exists"));
    assert!(
        api.import_from(&source, "nobody")
            .await
            .expect("absent")
            .is_none()
    );
}

/// A copy that stopped midway (or a Rasa conversation that went on after a first copy) is
/// completed: the events already stored are compared, the rest appended.
async fn import_resumes_after_an_interruption(service: Service) {
    let Some(store) = non_adopting(service).await else {
        return;
    };
    let events = conversation(1_700_000_000.0);
    let api = api(&store);
    api.append("alice", 0, &events[..2])
        .await
        .expect("the first part of an earlier copy");
    set_rasa(&store, "alice", &events).await;
    let source = RedisRasaSource::from_store(&store);
    let imported = api
        .import_from(&source, "alice")
        .await
        .expect("resume")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (2, 7, 9)
    );
    assert_eq!(stored(&api, "alice").await, texts(&events));

    // Rasa kept the conversation going: the next copy appends only the new events.
    let mut longer = events.clone();
    longer.extend(more(1_700_010_000.0, "noch was"));
    set_rasa(&store, "alice", &longer).await;
    let imported = api
        .import_from(&source, "alice")
        .await
        .expect("resume")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (9, 2, 11)
    );
    assert_eq!(stored(&api, "alice").await, texts(&longer));
}

/// A conversation the store holds with other events than Rasa's is `Diverged`, naming the
/// first differing event, and nothing is written.
async fn import_refuses_a_different_conversation(service: Service) {
    let Some(store) = non_adopting(service).await else {
        return;
    };
    let events = conversation(1_700_000_000.0);
    let api = api(&store);
    let mut different = events[..3].to_vec();
    different.push(Event::bot("something else").at(1_700_000_000.5));
    api.append("alice", 0, &different).await.expect("append");
    set_rasa(&store, "alice", &events).await;
    let source = RedisRasaSource::from_store(&store);
    let error = api
        .import_from(&source, "alice")
        .await
        .expect_err("different events");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error:?}");
    match &error {
        Error::Diverged {
            sender_id,
            position,
            ..
        } => {
            assert_eq!(sender_id, "alice");
            assert_eq!(*position, 4);
        }
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert_eq!(stored(&api, "alice").await, texts(&different));

    // A store that holds more events than Rasa's record differs too.
    let mut longer = events.clone();
    longer.push(Event::bot("only here").at(1_700_020_000.0));
    api.append("bob", 0, &longer).await.expect("append");
    set_rasa(&store, "bob", &events).await;
    let error = api
        .import_from(&source, "bob")
        .await
        .expect_err("the store has more");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error:?}");
    assert_eq!(api.version("bob").await.expect("version"), 10);
}

/// Imported events are checked like any other append: a sender id this store cannot hold
/// (Rasa accepts any) is `InvalidInput`, and nothing is written.
async fn import_checks_like_any_append(service: Service) {
    let Some(store) = non_adopting(service).await else {
        return;
    };
    let long_id = "x".repeat(300);
    set_rasa(&store, &long_id, &conversation(1_700_000_000.0)).await;
    let source = RedisRasaSource::from_store(&store);
    assert_eq!(source.sender_ids().await.expect("list"), [long_id.as_str()]);
    let error = api(&store)
        .import_from(&source, &long_id)
        .await
        .expect_err("over 255 bytes");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error:?}");
    assert!(api(&store).keys().await.expect("keys").is_empty());
}

/// An adopting store already serves Rasa's conversations: importing one finds every event
/// present and writes nothing (the conversation moves into the store's layout on its next
/// append).
async fn import_finds_adopted_conversations_present(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let events = conversation(1_700_000_000.0);
    set_rasa(&store, "alice", &events).await;
    let source = RedisRasaSource::from_store(&store);
    let imported = api(&store)
        .import_from(&source, "alice")
        .await
        .expect("import")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (9, 0, 9)
    );
    assert!(!own(&store, "alice").await);
}

/// `version` and `read` of a conversation only Rasa holds are Rasa's: its events numbered
/// from 1, the latest session from the event before its `session_started`. Rasa's empty
/// record and keys of another type hold no conversation. Reading writes nothing.
async fn serves_rasa_conversations(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    assert!(store.adopts_rasa());
    let layout = store.layout();
    let events = conversation(1_700_000_000.0);
    set_rasa(&store, "alice", &events).await;
    set(
        &store,
        &layout.rasa("carol"),
        &rasa_record("carol", &[]),
        None,
    )
    .await;
    let _: i64 = store
        .client()
        .rpush(layout.rasa("a list"), "x")
        .await
        .expect("RPUSH");
    let before = get(&store, &layout.rasa("alice")).await;
    let api = api(&store);

    assert_eq!(api.version("alice").await.expect("version"), 9);
    assert!(api.exists("alice").await.expect("exists"));
    let all = api
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("Rasa's");
    assert_eq!((all.version, all.first_seq), (9, 1));
    assert_eq!(texts(&all.events), texts(&events));
    let latest = api
        .read("alice", ReadScope::LatestSession)
        .await
        .expect("read")
        .expect("Rasa's");
    assert_eq!((latest.version, latest.first_seq), (9, 7));
    assert_eq!(texts(&latest.events), texts(&events[6..]));
    let tracker = api
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("Rasa's");
    assert_eq!(tracker.events().len(), 3);

    for id in ["carol", "a list", "nobody"] {
        assert_eq!(api.version(id).await.expect("version"), 0, "{id}");
        assert!(
            api.read(id, ReadScope::All).await.expect("read").is_none(),
            "{id}"
        );
    }
    // Nothing was written: no key of this store, Rasa's record as it was.
    assert!(!own(&store, "alice").await);
    assert_eq!(get(&store, &layout.rasa("alice")).await, before);
    assert!(
        !exists(&store, &layout.index()).await,
        "reads do not touch the index"
    );

    // Until adopted, a conversation follows Rasa's record.
    let mut longer = events.clone();
    longer.extend(more(1_700_010_000.0, "weiter"));
    set_rasa(&store, "alice", &longer).await;
    assert_eq!(api.version("alice").await.expect("version"), 11);
    assert_eq!(stored(&api, "alice").await, texts(&longer));
    // A writer that read version 9 before Rasa went on conflicts with Rasa's new version.
    conflict(
        api.append("alice", 9, &more(1_700_020_000.0, "late")).await,
        11,
        "Rasa went on",
    );
    assert!(!own(&store, "alice").await);
}

/// A listing holds this store's conversations and those only Rasa holds, each once (also
/// once adopted, when both layouts hold it), and never Rasa's empty records or keys of
/// another type; pages never overlap.
async fn lists_rasa_conversations_once(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let layout = store.layout();
    let api = api(&store);
    let events = conversation(1_700_000_000.0);
    let rasa_ids: Vec<String> = (0..25).map(|i| format!("rasa {i:02} {{x}}")).collect();
    for id in &rasa_ids {
        set_rasa(&store, id, &events).await;
    }
    let own_ids: Vec<String> = (0..5).map(|i| format!("own {i}")).collect();
    for id in &own_ids {
        api.append(id, 0, &events[..2]).await.expect("append");
    }
    set(
        &store,
        &layout.rasa("empty"),
        &rasa_record("empty", &[]),
        None,
    )
    .await;
    let _: i64 = store
        .client()
        .rpush(layout.rasa("a list"), "x")
        .await
        .expect("RPUSH");
    // Rasa takes sender ids this store cannot hold: not listed.
    set_rasa(&store, &"x".repeat(300), &events).await;
    // Adopt some: both layouts hold them now.
    for id in &rasa_ids[..10] {
        api.append(id, 9, &more(1_700_010_000.0, "x"))
            .await
            .expect("adopt");
    }
    let mut expected: Vec<String> = rasa_ids.iter().chain(&own_ids).cloned().collect();
    expected.sort();

    let mut listed = api.keys().await.expect("keys");
    listed.sort();
    assert_eq!(listed, expected);
    // In pages of 7: every id once.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = api.list(cursor, 7).await.expect("page");
        assert!(page.sender_ids.len() <= 7);
        paged.extend(page.sender_ids);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &paged {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    paged.sort();
    assert_eq!(paged, expected);

    // A Rasa record that goes away leaves the listing.
    let _: i64 = store
        .client()
        .del(layout.rasa(&rasa_ids[20]))
        .await
        .expect("DEL");
    let listed = api.keys().await.expect("keys");
    assert!(!listed.contains(&rasa_ids[20]));
    assert_eq!(listed.len(), expected.len() - 1);
}

/// The first append to a conversation only Rasa holds must be at Rasa's version; it writes
/// Rasa's events and the new ones into this store's layout in one step, with this store's
/// expiry, and leaves Rasa's key byte for byte (and its expiry) as it was. From then on the
/// store's layout is the conversation.
async fn adopts_on_the_first_append(service: Service) {
    let Some(store) = common::store_with(service, Some(500)).await else {
        return;
    };
    let layout = store.layout();
    let api = api(&store);
    let events = conversation(1_700_000_000.0);
    // Rasa with `record_exp: 1000`: SET ... EX 1000.
    let rasa_key = layout.rasa("alice");
    set(
        &store,
        &rasa_key,
        &rasa_record("alice", &events),
        Some(1000),
    )
    .await;
    let before = get(&store, &rasa_key).await.expect("Rasa's record");

    let added = more(1_700_010_000.0, "weiter");
    for stale in [0, 1, 8, 10] {
        conflict(
            api.append("alice", stale, &added).await,
            9,
            &format!("append at {stale}"),
        );
    }
    assert!(!own(&store, "alice").await, "a conflict writes nothing");

    assert_eq!(api.append("alice", 9, &added).await.expect("adopt"), 11);
    assert!(own(&store, "alice").await);
    let mut all = events.clone();
    all.extend(added.iter().cloned());
    assert_eq!(stored(&api, "alice").await, texts(&all));
    let raw: Vec<String> = store
        .client()
        .lrange(layout.events("alice"), 0, -1)
        .await
        .expect("LRANGE");
    assert_eq!(raw, texts(&all), "Rasa's events are stored as Rasa's text");
    // The latest session starts where Rasa's last one did.
    let latest = api
        .read("alice", ReadScope::LatestSession)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!((latest.version, latest.first_seq), (11, 7));
    // Rasa's key: the same bytes, its own expiry still counting down from 1000 s.
    assert_eq!(
        get(&store, &rasa_key).await.as_deref(),
        Some(before.as_str())
    );
    let rasa_ttl = ttl(&store, &rasa_key).await;
    assert!(rasa_ttl > 500 && rasa_ttl <= 1000, "{rasa_ttl}");
    // This store's keys follow this store's record_exp.
    for key in [layout.events("alice"), layout.head("alice")] {
        let own_ttl = ttl(&store, &key).await;
        assert!(own_ttl > 0 && own_ttl <= 500, "{key}: {own_ttl}");
    }

    // From now on Rasa's record is not read: a still-running Rasa's writes are not seen.
    let mut rasa_went_on = events.clone();
    rasa_went_on.extend(more(1_700_020_000.0, "bei Rasa"));
    set_rasa(&store, "alice", &rasa_went_on).await;
    assert_eq!(api.version("alice").await.expect("version"), 11);
    conflict(api.append("alice", 9, &added).await, 11, "Rasa's version");
    assert_eq!(
        api.append("alice", 11, &more(1_700_030_000.0, "und weiter"))
            .await
            .expect("append"),
        13
    );

    // Rasa's empty record: the first append creates the conversation at version 0.
    set(
        &store,
        &layout.rasa("carol"),
        &rasa_record("carol", &[]),
        None,
    )
    .await;
    conflict(api.append("carol", 9, &added).await, 0, "empty record");
    assert_eq!(api.append("carol", 0, &added).await.expect("create"), 2);
    assert_eq!(stored(&api, "carol").await, texts(&added));
    assert_eq!(
        get(&store, &layout.rasa("carol")).await,
        Some(rasa_record("carol", &[]))
    );
}

/// Two processes appending to the same Rasa-only conversation at once: exactly one adopts
/// it, the other gets a `Conflict` and writes nothing.
async fn concurrent_adopters_one_conflict(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let prefix = store.layout().key_prefix().expect("a prefix").to_owned();
    let config: RedisConfig = common::config(service, &prefix)
        .await
        .expect("the service answered above");
    // A second process: its own connections, the same namespace.
    let other = TrackerStore::new(RedisStore::connect(&config).await.expect("connect"));
    let api = api(&store);
    let events = conversation(1_700_000_000.0);
    for round in 0..8 {
        let id = format!("race {round}");
        set_rasa(&store, &id, &events).await;
        let mine = more(1_700_010_000.0, "mine");
        let theirs = more(1_700_010_000.0, "theirs");
        let (a, b) = tokio::join!(api.append(&id, 9, &mine), other.append(&id, 9, &theirs));
        let winner = match (&a, &b) {
            (Ok(11), Err(error)) | (Err(error), Ok(11)) => {
                assert_eq!(error.kind(), ErrorKind::Conflict, "{error:?}");
                assert!(matches!(error.current_version(), Some(9 | 11)), "{error:?}");
                if a.is_ok() { &mine } else { &theirs }
            }
            other => panic!("round {round}: expected one success and one conflict: {other:?}"),
        };
        let mut all = events.clone();
        all.extend(winner.iter().cloned());
        assert_eq!(stored(&api, &id).await, texts(&all), "round {round}");
        assert_eq!(
            get(&store, &store.layout().rasa(&id)).await,
            Some(rasa_record(&id, &events))
        );
    }
}

/// A delete removes this store's copy and Rasa's; with an expected version it checks the
/// version `version()` reports (Rasa's, for a conversation only Rasa holds) and deletes
/// nothing on a mismatch.
async fn deletes_remove_both_copies(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let layout = store.layout();
    let api = api(&store);
    let events = conversation(1_700_000_000.0);
    let added = more(1_700_010_000.0, "x");

    // Adopted: both layouts hold it.
    set_rasa(&store, "alice", &events).await;
    api.append("alice", 9, &added).await.expect("adopt");
    conflict(api.delete_at("alice", 9).await, 11, "Rasa's version");
    conflict(api.delete_at("alice", 0).await, 11, "absent");
    assert!(own(&store, "alice").await);
    assert!(exists(&store, &layout.rasa("alice")).await);
    assert!(api.delete_at("alice", 11).await.expect("delete"));
    assert!(!own(&store, "alice").await);
    assert!(!exists(&store, &layout.rasa("alice")).await);
    assert_eq!(api.version("alice").await.expect("version"), 0);

    // Only Rasa holds it: its version is Rasa's.
    set_rasa(&store, "bob", &events).await;
    for stale in [0, 8, 10] {
        conflict(
            api.delete_at("bob", stale).await,
            9,
            &format!("delete at {stale}"),
        );
    }
    assert_eq!(
        get(&store, &layout.rasa("bob")).await,
        Some(rasa_record("bob", &events)),
        "a conflict deletes nothing"
    );
    assert!(api.delete_at("bob", 9).await.expect("delete"));
    assert!(!exists(&store, &layout.rasa("bob")).await);
    assert!(!own(&store, "bob").await);

    // Without an expected version.
    set_rasa(&store, "dan", &events).await;
    assert!(api.delete("dan").await.expect("delete"));
    assert!(!exists(&store, &layout.rasa("dan")).await);
    set_rasa(&store, "erin", &events).await;
    api.append("erin", 9, &added).await.expect("adopt");
    assert!(api.delete("erin").await.expect("delete"));
    assert!(!exists(&store, &layout.rasa("erin")).await);
    assert!(!own(&store, "erin").await);

    // Rasa's empty record is no conversation: version 0, and it goes too.
    set(
        &store,
        &layout.rasa("carol"),
        &rasa_record("carol", &[]),
        None,
    )
    .await;
    conflict(api.delete_at("carol", 3).await, 0, "empty record");
    assert!(!api.delete_at("carol", 0).await.expect("delete at 0"));
    assert!(!exists(&store, &layout.rasa("carol")).await);

    // A record this store cannot read: a versioned delete is Corrupt and deletes nothing, a
    // delete without a version removes it.
    set(&store, &layout.rasa("broken"), "{\"events\": [{", None).await;
    let error = api.delete_at("broken", 1).await.expect_err("unreadable");
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error:?}");
    assert!(exists(&store, &layout.rasa("broken")).await);
    assert!(api.delete("broken").await.expect("delete"));
    assert!(!exists(&store, &layout.rasa("broken")).await);

    // Nothing anywhere.
    conflict(api.delete_at("nobody", 3).await, 0, "absent");
    assert!(!api.delete_at("nobody", 0).await.expect("absent at 0"));
    assert!(!api.delete("nobody").await.expect("absent"));

    // A key of another type at Rasa's name is not Rasa's: left alone.
    let _: i64 = store
        .client()
        .rpush(layout.rasa("a list"), "x")
        .await
        .expect("RPUSH");
    assert!(!api.delete("a list").await.expect("delete"));
    assert!(exists(&store, &layout.rasa("a list")).await);

    assert_eq!(api.keys().await.expect("keys"), Vec::<String>::new());
}

/// Rasa drops a `key_prefix` that is not alphanumeric and writes `tracker:<id>`: a store
/// configured with that prefix finds those keys, and keeps its own without a prefix too.
async fn prefix_rasa_drops_serves_unprefixed_keys(service: Service) {
    let Some(mut config) = common::config(service, "bot-1").await else {
        return;
    };
    if service == Service::Redis {
        // A database of its own: this test works in the namespace of no prefix.
        config.db = 7;
    }
    let store = RedisStore::connect(&config).await.expect("connect");
    let layout = store.layout().clone();
    assert_eq!(layout.key_prefix(), None);
    let id = format!("trtest {}", uuid::Uuid::new_v4().simple());
    // The namespace of no prefix is shared: remove this test's keys however it ends.
    let _cleanup = Cleanup {
        store: store.clone(),
        id: id.clone(),
    };
    let rasa_key = format!("tracker:{id}");
    assert_eq!(layout.rasa(&id), rasa_key);
    let events = conversation(1_700_000_000.0);
    let record = rasa_record(&id, &events);
    set(&store, &rasa_key, &record, None).await;
    let api = TrackerStore::new(store.clone());

    assert_eq!(api.version(&id).await.expect("version"), 9);
    if service == Service::Redis {
        assert!(api.keys().await.expect("keys").contains(&id));
    }
    api.append(&id, 9, &more(1_700_010_000.0, "x"))
        .await
        .expect("adopt");
    assert!(exists(&store, &format!("ts:{{{id}}}:head")).await);
    assert_eq!(get(&store, &rasa_key).await, Some(record));
    assert!(api.delete_at(&id, 11).await.expect("delete"));
    assert!(!exists(&store, &rasa_key).await);
    assert!(!own(&store, &id).await);
}

/// Removes one conversation's keys in the namespace of no prefix when dropped (at the end of
/// a test, passed or failed).
struct Cleanup {
    store: RedisStore,
    id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let layout = self.store.layout();
        let keys = [
            layout.rasa(&self.id),
            layout.events(&self.id),
            layout.head(&self.id),
        ];
        let index = layout.index();
        let client = self.store.client().clone();
        let id = self.id.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for key in keys {
                    let _: Result<i64, _> = client.del(key).await;
                }
                let _: Result<i64, _> = client.zrem(index, id).await;
            })
        });
    }
}
