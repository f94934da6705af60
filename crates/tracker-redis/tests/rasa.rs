//! Reading what Rasa's own `RedisTrackerStore` writes — `<prefix><sender id>` string keys
//! holding `json.dumps({"events": [...], "name": id})` — through [`RedisRasaSource`], and
//! importing it with `TrackerStore::import_from`, on a single server and a cluster.

mod common;

use common::{TestStore, store};
use serde_json::json;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, RasaSource, ReadScope, TrackerStore};
use tracker_redis::fred::prelude::*;
use tracker_redis::{RedisRasaSource, tracker_core};
use tracker_testkit::Service;

on_both!(
    reads_and_lists_rasa_records,
    imports_rasa_records,
    import_resumes_after_an_interruption,
    import_refuses_a_different_conversation,
    import_checks_like_any_append,
);

/// The exact text Rasa stores: Python's `json.dumps` of the dialogue, default separators.
fn rasa_record(sender_id: &str, events: &[Event]) -> String {
    let texts: Vec<String> = events.iter().map(Event::to_rasa_json).collect();
    format!(
        "{{\"events\": [{}], \"name\": {}}}",
        texts.join(", "),
        to_python_json(&json!(sender_id)).expect("renders")
    )
}

fn conversation(t: f64) -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.01),
        Event::action("action_listen").at(t + 0.02),
        Event::user("Grüß dich 🍕", "greet", 0.97).at(t + 1.0),
        Event::slot("city", json!({"name": "Zürich", "n": 1, "f": 1.0})).at(t + 1.1),
        Event::bot("Hallo!").at(t + 1.2),
    ]
}

async fn set(store: &TestStore, key: &str, value: &str) {
    let () = store
        .client()
        .set(key, value, None, None, false)
        .await
        .expect("SET");
}

/// Stores `events` as Rasa would for `sender_id`, under the store's prefix.
async fn set_rasa(store: &TestStore, sender_id: &str, events: &[Event]) {
    set(
        store,
        &store.layout().rasa(sender_id),
        &rasa_record(sender_id, events),
    )
    .await;
}

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

fn api(store: &TestStore) -> TrackerStore {
    TrackerStore::new(store.0.clone())
}

/// The events the store holds for `sender_id`, as Rasa's text.
async fn stored(api: &TrackerStore, sender_id: &str) -> Vec<String> {
    api.read(sender_id, ReadScope::All)
        .await
        .expect("read")
        .map(|conversation| texts(&conversation.events))
        .unwrap_or_default()
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
    )
    .await;
    set(
        &store,
        &layout.rasa("bad event"),
        "{\"events\": [{\"event\": \"bot\", \"timestamp\": 1.0}, {\"event\": \"user\", \"metadata\": 3}], \"name\": \"bad event\"}",
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
}

async fn imports_rasa_records(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let events = conversation(1_700_000_000.0);
    set_rasa(&store, "alice", &events).await;
    set_rasa(&store, "carol", &[]).await;
    let source = RedisRasaSource::from_store(&store);
    let api = api(&store);

    let imported = api
        .import_from(&source, "alice")
        .await
        .expect("import")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (0, 6, 6)
    );
    assert_eq!(stored(&api, "alice").await, texts(&events));
    let latest = api
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("imported");
    assert_eq!(latest.events().len(), 6);
    // Importing again finds every event there and writes nothing.
    let again = api
        .import_from(&source, "alice")
        .await
        .expect("import again")
        .expect("Rasa has it");
    assert_eq!(
        (again.already_present, again.written, again.version),
        (6, 0, 6)
    );
    assert_eq!(api.version("alice").await.expect("version"), 6);
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
    let Some(store) = store(service).await else {
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
        (2, 4, 6)
    );
    assert_eq!(stored(&api, "alice").await, texts(&events));

    // Rasa kept the conversation going: the next copy appends only the new events.
    let mut longer = events.clone();
    longer.push(Event::user("noch was", "inform", 0.8).at(1_700_000_010.0));
    longer.push(Event::bot("Gern!").at(1_700_000_011.0));
    set_rasa(&store, "alice", &longer).await;
    let imported = api
        .import_from(&source, "alice")
        .await
        .expect("resume")
        .expect("Rasa has it");
    assert_eq!(
        (imported.already_present, imported.written, imported.version),
        (6, 2, 8)
    );
    assert_eq!(stored(&api, "alice").await, texts(&longer));
}

/// A conversation the store holds with other events than Rasa's is `Diverged`, naming the
/// first differing event, and nothing is written.
async fn import_refuses_a_different_conversation(service: Service) {
    let Some(store) = store(service).await else {
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
    longer.push(Event::bot("only here").at(1_700_000_020.0));
    api.append("bob", 0, &longer).await.expect("append");
    set_rasa(&store, "bob", &events).await;
    let error = api
        .import_from(&source, "bob")
        .await
        .expect_err("the store has more");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error:?}");
    assert_eq!(api.version("bob").await.expect("version"), 7);
}

/// Imported events are checked like any other append: a sender id this store cannot hold
/// (Rasa accepts any) is `InvalidInput`, and nothing is written.
async fn import_checks_like_any_append(service: Service) {
    let Some(store) = store(service).await else {
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
