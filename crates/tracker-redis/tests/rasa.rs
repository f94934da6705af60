//! Reading what Rasa's own `RedisTrackerStore` writes: `<prefix><sender id>` string keys
//! holding `json.dumps({"events": [...], "name": id})`, on a single server and a cluster.

mod common;

use common::{TestStore, store};
use serde_json::json;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, ReadScope, TrackerStore};
use tracker_redis::fred::prelude::*;
use tracker_redis::tracker_core;
use tracker_testkit::Service;

on_both!(reads_and_lists_rasa_records, imports_rasa_records);

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

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
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
    set(&store, &layout.rasa("alice"), &rasa_record("alice", &alice)).await;
    set(&store, &layout.rasa(odd_id), &rasa_record(odd_id, &bob)).await;
    // Rasa's first `get_or_create_tracker` stores an empty record.
    set(
        &store,
        &layout.rasa("carol"),
        "{\"events\": [], \"name\": \"carol\"}",
    )
    .await;
    // Not Rasa's: this store's own conversation, a key of another type under Rasa's prefix,
    // and a Rasa record under another prefix.
    TrackerStore::new(store.0.clone())
        .append("dave", 0, &alice)
        .await
        .expect("append");
    let _: i64 = store
        .client()
        .rpush(layout.rasa("a list"), "x")
        .await
        .expect("RPUSH");
    set(
        &other,
        &other.layout().rasa("eve"),
        &rasa_record("eve", &alice),
    )
    .await;

    assert_eq!(
        store.rasa_sender_ids().await.expect("list"),
        ["alice", odd_id, "carol"]
    );
    assert_eq!(other.rasa_sender_ids().await.expect("list"), ["eve"]);

    let read = store
        .read_rasa("alice")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.sender_id, "alice");
    assert_eq!(read.key, layout.rasa("alice"));
    assert_eq!(texts(&read.events), texts(&alice));
    let read = store
        .read_rasa(odd_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&bob));
    let read = store
        .read_rasa("carol")
        .await
        .expect("read")
        .expect("exists");
    assert!(read.events.is_empty());
    assert!(store.read_rasa("nobody").await.expect("read").is_none());
    assert!(store.read_rasa("eve").await.expect("read").is_none());
    // This store's conversation is not a Rasa record.
    assert!(store.read_rasa("dave").await.expect("read").is_none());

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
        match store.read_rasa(id).await {
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
    assert!(
        store
            .read_rasa("alice")
            .await
            .expect("still fine")
            .is_some()
    );
}

async fn imports_rasa_records(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let layout = store.layout();
    let events = conversation(1_700_000_000.0);
    set(
        &store,
        &layout.rasa("alice"),
        &rasa_record("alice", &events),
    )
    .await;
    set(&store, &layout.rasa("carol"), &rasa_record("carol", &[])).await;

    assert_eq!(store.import_rasa("alice").await.expect("import"), Some(6));
    let api = TrackerStore::new(store.0.clone());
    let read = api
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("imported");
    assert_eq!(texts(&read.events), texts(&events));
    let latest = api
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("imported");
    assert_eq!(latest.events().len(), 6);
    // Importing again would append twice: it conflicts and writes nothing.
    let error = store.import_rasa("alice").await.expect_err("exists");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(api.version("alice").await.expect("version"), 6);
    // Rasa's key is left alone.
    assert!(store.read_rasa("alice").await.expect("read").is_some());
    assert_eq!(store.import_rasa("carol").await.expect("empty"), Some(0));
    assert!(!api.exists("carol").await.expect("exists"));
    assert_eq!(store.import_rasa("nobody").await.expect("absent"), None);
}
