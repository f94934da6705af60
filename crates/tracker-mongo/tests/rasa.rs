//! Reading and importing conversations stored by Rasa's own `MongoTrackerStore`: documents in
//! exactly Rasa's shape (state fields, then `events` as BSON documents; integer sender ids in
//! very old data), inserted with the driver into the store's scratch `<collection>`, read by
//! `MongoRasaSource` and copied with `TrackerStore::import_from`.

mod common;

use serde_json::Value;
use tracker_conformance::golden;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, Imported, RasaSource, ReadScope, Store, TrackerStore};
use tracker_mongo::mongodb::bson::{Bson, Document, doc};
use tracker_mongo::{MongoConfig, MongoRasaSource, MongoStore, REGISTRATION};

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

/// Fills the Rasa collection beside `store` with: `alice` (every golden event), an `Int32`
/// and an `Int64` sender id, and a conversation without events. Returns the source reading
/// it, and the golden events.
async fn seed(store: &MongoStore) -> (MongoRasaSource, Vec<Value>) {
    let golden = golden::event_values();
    let source = MongoRasaSource::from_store(store);
    source
        .collection()
        .insert_many([
            rasa_document(Bson::String("alice".to_owned()), &golden),
            rasa_document(Bson::Int32(12345), &golden[..2]),
            rasa_document(Bson::Int64(9_876_543_210_123), &golden[2..3]),
            rasa_document(Bson::String("empty".to_owned()), &[]),
        ])
        .await
        .expect("insert Rasa documents");
    (source, golden)
}

async fn rasa_documents(source: &MongoRasaSource) -> Vec<Document> {
    use futures::TryStreamExt;

    source
        .collection()
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_rasa_documents() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, golden) = seed(&store).await;
    let alice = source
        .read("alice")
        .await
        .expect("read")
        .expect("alice exists");
    assert_eq!(alice.sender_id, "alice");
    assert_eq!(
        values(&alice.events),
        golden.iter().map(by_value).collect::<Vec<_>>()
    );

    let old = source.read("12345").await.expect("read").expect("int id");
    assert_eq!(old.sender_id, "12345");
    assert_eq!(old.events.len(), 2);
    let long = source
        .read("9876543210123")
        .await
        .expect("read")
        .expect("long id");
    assert_eq!(long.events.len(), 1);
    assert!(source.read("nobody").await.expect("read").is_none());
    // As in Rasa (`int("012345")`), leading zeros still find the integer id.
    let zeros = source.read("012345").await.expect("read").expect("int id");
    assert_eq!(
        (zeros.sender_id.as_str(), zeros.events.len()),
        ("012345", 2)
    );
    assert!(source.read("1234").await.expect("read").is_none());
    let empty = source.read("empty").await.expect("read").expect("empty");
    assert!(empty.events.is_empty());
    assert!(
        source.describe().contains(store.collection_name()),
        "{}",
        source.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    // This store's own conversations live in other collections and are not Rasa's.
    TrackerStore::new(store.clone())
        .append("ours", 0, &[Event::bot("x")])
        .await
        .expect("append");
    assert_eq!(
        source.sender_ids().await.expect("list"),
        ["12345", "9876543210123", "alice", "empty"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, golden) = seed(&store).await;
    let before = rasa_documents(&source).await;
    let alice = source.read("alice").await.expect("read").expect("alice");
    let count = alice.events.len() as u64;
    let tracker_store = TrackerStore::new(store.clone());
    let imported = tracker_store
        .import_from(&source, "alice")
        .await
        .expect("import")
        .expect("alice exists");
    assert_eq!(
        imported,
        Imported {
            already_present: 0,
            written: count,
            version: count
        }
    );
    let stored = tracker_store
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("imported");
    assert_eq!(
        common::texts(&stored.events),
        common::texts(&alice.events),
        "the store keeps exactly what was read"
    );
    assert_eq!(
        values(&stored.events),
        golden.iter().map(by_value).collect::<Vec<_>>()
    );

    // Again: everything is there already, nothing is written.
    let again = tracker_store
        .import_from(&source, "alice")
        .await
        .expect("import again")
        .expect("alice exists");
    assert_eq!(
        again,
        Imported {
            already_present: count,
            written: 0,
            version: count
        }
    );
    assert_eq!(
        tracker_store.version("alice").await.expect("version"),
        count
    );

    let old = tracker_store
        .import_from(&source, "12345")
        .await
        .expect("import")
        .expect("int id");
    assert_eq!(old.version, 2);
    let empty = tracker_store
        .import_from(&source, "empty")
        .await
        .expect("import")
        .expect("empty");
    assert_eq!(empty, Imported::default());
    assert!(!tracker_store.exists("empty").await.expect("exists"));
    assert_eq!(
        tracker_store
            .import_from(&source, "nobody")
            .await
            .expect("import"),
        None
    );
    // Rasa's documents are left exactly as they were (the integer ids included).
    assert_eq!(rasa_documents(&source).await, before);
}

/// An import interrupted after its first batches resumes after them; a conversation the store
/// holds with other events is `Diverged` at the first differing event, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_resume_and_refuse_other_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let alice = source.read("alice").await.expect("read").expect("alice");
    let count = alice.events.len() as u64;
    assert!(count > 3);
    let tracker_store = TrackerStore::new(store.clone());
    // What an interrupted copy left: the first three events.
    tracker_store
        .append("alice", 0, &alice.events[..3])
        .await
        .expect("partial copy");
    let resumed = tracker_store
        .import_from(&source, "alice")
        .await
        .expect("resume")
        .expect("alice exists");
    assert_eq!(
        resumed,
        Imported {
            already_present: 3,
            written: count - 3,
            version: count
        }
    );
    assert_eq!(
        read_all(&tracker_store, "alice").await,
        common::texts(&alice.events)
    );

    // `12345` in the store, but with other events from the second on.
    let old = source.read("12345").await.expect("read").expect("int id");
    let mut other = old.events[..1].to_vec();
    other.extend(common::bots("not Rasa's", 2));
    tracker_store
        .append("12345", 0, &other)
        .await
        .expect("another conversation");
    match tracker_store.import_from(&source, "12345").await {
        Err(Error::Diverged {
            sender_id,
            position,
            ..
        }) => assert_eq!((sender_id.as_str(), position), ("12345", 2)),
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert_eq!(
        read_all(&tracker_store, "12345").await,
        common::texts(&other)
    );
}

async fn read_all(store: &TrackerStore, sender_id: &str) -> Vec<String> {
    let conversation = store
        .read(sender_id, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    common::texts(&conversation.events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_not_in_rasa_format_are_corrupt() {
    let Some(store) = common::store().await else {
        return;
    };
    let source = MongoRasaSource::from_store(&store);
    source
        .collection()
        .insert_many([
            doc! { "sender_id": "bad-events", "events": "not a list" },
            doc! { "sender_id": "bad-event", "events": [{"event": "bot", "timestamp": 1.5}, {"event": 7}] },
        ])
        .await
        .expect("insert");
    let error = source.read("bad-events").await.expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    match source.read("bad-event").await.expect_err("corrupt") {
        Error::Corrupt {
            sender_id,
            position,
            ..
        } => assert_eq!((sender_id.as_str(), position), ("bad-event", Some(2))),
        other => panic!("{other}"),
    }
    let tracker_store = TrackerStore::new(store.clone());
    assert_eq!(
        tracker_store
            .import_from(&source, "bad-event")
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        store
            .version(&common::id("bad-event"))
            .await
            .expect("version"),
        0
    );
}

/// A source opened from a configuration — directly or through the registration, with
/// `ensure_indexes` on — reads Rasa's collection and creates nothing: no index on it, none of
/// the store's collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_creates_nothing() {
    let Some(url) = common::url().await else {
        return;
    };
    let collection = common::fresh_collection();
    let config = MongoConfig::from_url(url.clone())
        .with_db(common::TEST_DB)
        .with_collection(collection.clone());
    assert!(config.ensure_indexes);
    let source = MongoRasaSource::connect(&config).await.expect("connect");
    let database = source.collection().client().database(common::TEST_DB);
    source
        .collection()
        .insert_one(rasa_document(Bson::String("bob".to_owned()), &[]))
        .await
        .expect("insert");
    let Some(open) = REGISTRATION.rasa_source else {
        panic!("the registration opens Rasa sources");
    };
    let serde_json::Value::Object(keys) = serde_json::json!({
        "url": url, "db": common::TEST_DB, "collection": collection,
    }) else {
        unreachable!("an object")
    };
    let registered = open("mongod", keys).await.expect("open");
    for source in [&source as &dyn RasaSource, registered.as_ref()] {
        assert_eq!(source.sender_ids().await.expect("list"), ["bob"]);
        assert!(source.read("bob").await.expect("read").is_some());
    }
    let names = database.list_collection_names().await.expect("collections");
    let ours: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with(&collection))
        .collect();
    assert_eq!(
        ours,
        [&collection],
        "no collection of the store was created"
    );
    let indexes = source
        .collection()
        .list_index_names()
        .await
        .expect("indexes");
    assert_eq!(indexes, ["_id_"], "no index was created");
    source.collection().drop().await.expect("drop");
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
    let (source, golden) = seed(&store).await;
    let alice = source.read("alice").await.expect("read").expect("alice");
    let expected: Vec<String> = golden
        .iter()
        .map(|value| to_python_json(value).expect("renders"))
        .collect();
    assert_eq!(common::texts(&alice.events), expected);
}
