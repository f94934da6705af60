//! Reading and importing conversations stored by Rasa's own `MongoTrackerStore`: documents in
//! exactly Rasa's shape (state fields, then `events` as BSON documents; integer sender ids in
//! very old data), inserted with the driver into the store's scratch `<collection>`.

mod common;

use serde_json::Value;
use tracker_conformance::golden;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, ReadScope, Store, TrackerStore};
use tracker_mongo::MongoStore;
use tracker_mongo::mongodb::bson::{Bson, Document, doc};

/// A JSON value as PyMongo stores it: integers as `Int32` when they fit, else `Int64`; floats
/// as doubles; objects as documents with their key order.
fn to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            (None, Some(f)) => Bson::Double(f),
            (None, None) => Bson::Null,
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.iter()
                .map(|(key, value)| (key.clone(), to_bson(value)))
                .collect(),
        ),
    }
}

/// A document as Rasa's `MongoTrackerStore.save` leaves it: `sender_id`, the state fields of
/// `current_state(ALL)` without `events`, in Rasa's order, then `events`.
fn rasa_document(sender_id: Bson, events: &[Value]) -> Document {
    doc! {
        "sender_id": sender_id,
        "slots": { "session_started_metadata": Bson::Null },
        "latest_message": {
            "intent": { "name": "greet", "confidence": 0.98 },
            "entities": [],
            "text": "hi",
            "message_id": "7f1e0c",
            "metadata": {},
        },
        "latest_event_time": 1_700_000_123.456_789,
        "followup_action": Bson::Null,
        "paused": false,
        "latest_input_channel": "rest",
        "active_loop": {},
        "latest_action": { "action_name": "action_listen" },
        "latest_action_name": "action_listen",
        "events": events.iter().map(to_bson).collect::<Vec<_>>(),
    }
}

/// Numbers compared by value, so that a server that narrows `1.0` to `1` (the stand-in) still
/// compares equal; everything else exactly, key order included.
fn by_value(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .map_or(Value::Null, |f| Value::String(format!("{f:e}"))),
        Value::Array(items) => Value::Array(items.iter().map(by_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), by_value(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn values(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|event| by_value(&event.to_value()))
        .collect()
}

/// Fills the store's Rasa collection with: `alice` (every golden event), an `Int32` and an
/// `Int64` sender id, and a conversation without events.
async fn seed(store: &MongoStore) -> Vec<Value> {
    let golden = golden::event_values();
    let rasa = store.rasa_collection();
    rasa.insert_many([
        rasa_document(Bson::String("alice".to_owned()), &golden),
        rasa_document(Bson::Int32(12345), &golden[..2]),
        rasa_document(Bson::Int64(9_876_543_210_123), &golden[2..3]),
        rasa_document(Bson::String("empty".to_owned()), &[]),
    ])
    .await
    .expect("insert Rasa documents");
    golden
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_rasa_documents() {
    let Some(store) = common::store().await else {
        return;
    };
    let golden = seed(&store).await;
    let alice = store
        .read_rasa("alice")
        .await
        .expect("read")
        .expect("alice exists");
    assert_eq!(alice.sender_id, "alice");
    assert!(matches!(alice.id, Bson::ObjectId(_)));
    assert_eq!(
        values(&alice.events),
        golden.iter().map(by_value).collect::<Vec<_>>()
    );

    let old = store
        .read_rasa("12345")
        .await
        .expect("read")
        .expect("int id");
    assert_eq!(old.sender_id, "12345");
    assert_eq!(old.events.len(), 2);
    let long = store
        .read_rasa("9876543210123")
        .await
        .expect("read")
        .expect("long id");
    assert_eq!(long.events.len(), 1);
    assert!(store.read_rasa("nobody").await.expect("read").is_none());
    // As in Rasa (`int("012345")`), leading zeros still find the integer id.
    let zeros = store
        .read_rasa("012345")
        .await
        .expect("read")
        .expect("int id");
    assert_eq!(
        (zeros.sender_id.as_str(), zeros.events.len()),
        ("012345", 2)
    );
    assert!(store.read_rasa("1234").await.expect("read").is_none());
    let empty = store
        .read_rasa("empty")
        .await
        .expect("read")
        .expect("empty");
    assert!(empty.events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    seed(&store).await;
    // This store's own conversations live in other collections and are not Rasa's.
    TrackerStore::new(store.clone())
        .append("ours", 0, &[Event::bot("x")])
        .await
        .expect("append");
    assert_eq!(
        store.rasa_sender_ids().await.expect("list"),
        ["12345", "9876543210123", "alice", "empty"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let golden = seed(&store).await;
    let alice = store
        .read_rasa("alice")
        .await
        .expect("read")
        .expect("alice");
    let version = store
        .import_rasa("alice")
        .await
        .expect("import")
        .expect("alice exists");
    assert_eq!(version, alice.events.len() as u64);
    let tracker_store = TrackerStore::new(store.clone());
    let imported = tracker_store
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("imported");
    assert_eq!(
        imported
            .events
            .iter()
            .map(Event::to_rasa_json)
            .collect::<Vec<_>>(),
        alice
            .events
            .iter()
            .map(Event::to_rasa_json)
            .collect::<Vec<_>>(),
        "the store keeps exactly what was read"
    );
    assert_eq!(
        values(&imported.events),
        golden.iter().map(by_value).collect::<Vec<_>>()
    );

    let again = store.import_rasa("alice").await.expect_err("exists");
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert_eq!(store.import_rasa("12345").await.expect("import"), Some(2));
    assert_eq!(store.import_rasa("empty").await.expect("import"), Some(0));
    assert!(!tracker_store.exists("empty").await.expect("exists"));
    assert_eq!(store.import_rasa("nobody").await.expect("import"), None);
    // Rasa's documents are left as they were.
    assert_eq!(
        store
            .rasa_collection()
            .count_documents(doc! {})
            .await
            .expect("count"),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_not_in_rasa_format_are_corrupt() {
    let Some(store) = common::store().await else {
        return;
    };
    store
        .rasa_collection()
        .insert_many([
            doc! { "sender_id": "bad-events", "events": "not a list" },
            doc! { "sender_id": "bad-event", "events": [{"event": "bot", "timestamp": 1.5}, {"event": 7}] },
        ])
        .await
        .expect("insert");
    let error = store.read_rasa("bad-events").await.expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    match store.read_rasa("bad-event").await.expect_err("corrupt") {
        Error::Corrupt {
            sender_id,
            position,
            ..
        } => assert_eq!((sender_id.as_str(), position), ("bad-event", Some(2))),
        other => panic!("{other}"),
    }
    assert_eq!(
        store
            .import_rasa("bad-event")
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        store
            .version(&tracker_core::SenderId::new("bad-event").expect("id"))
            .await
            .expect("version"),
        0
    );
}

/// On a real MongoDB, BSON keeps every number's type, so Rasa's events read back as Rasa's
/// exact text (`1.0` stays `1.0`, 64-bit integers stay integers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_server_rasa_events_keep_their_exact_text() {
    let Some(store) = common::store().await else {
        return;
    };
    if !common::real_server(
        &store,
        "rasa::real_server_rasa_events_keep_their_exact_text",
    )
    .await
    {
        return;
    }
    let golden = seed(&store).await;
    let alice = store
        .read_rasa("alice")
        .await
        .expect("read")
        .expect("alice");
    let expected: Vec<String> = golden
        .iter()
        .map(|value| to_python_json(value).expect("renders"))
        .collect();
    assert_eq!(
        alice
            .events
            .iter()
            .map(Event::to_rasa_json)
            .collect::<Vec<_>>(),
        expected
    );
}
