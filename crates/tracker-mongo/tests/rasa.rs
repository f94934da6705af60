//! Conversations stored by Rasa's own `MongoTrackerStore`: documents in exactly Rasa's shape
//! (state fields, then `events` as BSON documents; integer sender ids in very old data),
//! written with the driver into the store's `<collection>` — Rasa's collection under the same
//! settings — by inserts and by Rasa's own save statement. The store adopts them (reads,
//! lists, converts on the first append, deletes; Rasa's documents byte-identical until
//! deleted); `MongoRasaSource` reads them and `TrackerStore::import_from` copies them.

mod common;

use serde_json::Value;
use tracker_conformance::golden;
use tracker_core::json::to_python_json;
use tracker_core::{Error, ErrorKind, Event, Imported, RasaSource, ReadScope, Store, TrackerStore};
use tracker_mongo::mongodb::Collection;
use tracker_mongo::mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use tracker_mongo::schema::{self, bucket, head};
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
    let source = store.rasa_source();
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

/// Copying Rasa's conversations into this store's layout, with adoption off (a store that
/// adopts them already reports Rasa's events as its own, so an import finds them present).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_rasa_conversations() {
    let Some(store) = not_adopting().await else {
        return;
    };
    let (source, golden) = seed(&store).await;
    let before = common::documents(source.collection()).await;
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
    assert_eq!(common::documents(source.collection()).await, before);
}

/// An import interrupted after its first batches resumes after them; a conversation the store
/// holds with other events is `Diverged` at the first differing event, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_resume_and_refuse_other_conversations() {
    let Some(store) = not_adopting().await else {
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
    let source = store.rasa_source();
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
    // Adopting, the store reads Rasa's copy, and says it cannot.
    assert_eq!(
        store
            .version(&common::id("bad-event"))
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        store.heads().count_documents(doc! {}).await.expect("count"),
        0,
        "nothing was written"
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

/// A store that ignores Rasa's collection (`adopt_rasa: false`).
async fn not_adopting() -> Option<common::TestStore> {
    common::store_with(|config| config.with_adopt_rasa(false)).await
}

/// A store whose heads keep at most 3 events, so that adopting a conversation writes buckets.
async fn small_buckets() -> Option<common::TestStore> {
    common::small_buckets().await
}

/// The configuration of `store` (same collections, same bucket sizes), for more stores on
/// the same collections.
fn same_config(store: &MongoStore, bucket_events: usize) -> MongoConfig {
    MongoConfig::default()
        .with_db(common::TEST_DB)
        .with_collection(store.collection_name())
        .with_bucket_size(
            bucket_events,
            if bucket_events == 3 { 2048 } else { 512 * 1024 },
        )
}

/// Rasa's documents beside `store`, as their raw BSON bytes, in insertion order.
async fn raw_documents(store: &MongoStore) -> Vec<Vec<u8>> {
    let raw: Collection<RawDocumentBuf> = store.database().collection(store.collection_name());
    common::documents(&raw)
        .await
        .into_iter()
        .map(|document| document.into_bytes())
        .collect()
}

/// What Rasa 3.6's `MongoTrackerStore.save` runs for new events: `update_one({"sender_id":
/// id}, {"$set": <state without events>, "$push": {"events": {"$each": new}}},
/// upsert=True)`.
async fn rasa_save(collection: &Collection<Document>, sender_id: &str, new: &[Value]) {
    let mut state = rasa_document(Bson::String(sender_id.to_owned()), &[]);
    state.remove("sender_id");
    state.remove("events");
    collection
        .update_one(
            doc! { "sender_id": sender_id },
            doc! {
                "$set": state,
                "$push": { "events": { "$each": new.iter().map(to_bson).collect::<Vec<_>>() } },
            },
        )
        .upsert(true)
        .await
        .expect("Rasa's save");
}

/// Rasa's events of a conversation, as Rasa's JSON text.
async fn rasa_texts(source: &MongoRasaSource, sender_id: &str) -> Vec<String> {
    let conversation = source
        .read(sender_id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("Rasa holds {sender_id}"));
    common::texts(&conversation.events)
}

/// Whether an error is a conflict carrying `actual`.
fn is_conflict(result: &Result<u64, Error>, actual: u64) -> bool {
    matches!(result, Err(error) if error.kind() == ErrorKind::Conflict
        && error.current_version() == Some(actual))
}

/// Every id of a listing read in pages of `limit`.
async fn list_in_pages(store: &TrackerStore, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(cursor, limit).await.expect("list");
        assert!(page.sender_ids.len() <= limit);
        ids.extend(page.sender_ids);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Opened with exactly the keys of Rasa's `endpoints.yml` section (through the
/// registration), the store reads Rasa's conversations as its own: their versions, full and
/// latest-session reads, integer ids, documents written by Rasa's own save statement; a
/// document without events is no conversation. Nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_reads_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, golden) = seed(&store).await;
    // Rasa's message processor saves after every message: two saves.
    rasa_save(source.collection(), "bob", &golden[..3]).await;
    rasa_save(source.collection(), "bob", &golden[3..6]).await;
    let before = raw_documents(&store).await;
    let serde_json::Value::Object(keys) = serde_json::json!({
        "url": store.url(), "db": common::TEST_DB, "collection": store.collection_name(),
    }) else {
        unreachable!("an object")
    };
    let registered = (REGISTRATION.connect)("mongod", keys)
        .await
        .expect("connect as Rasa's section says");
    let tracker_store = TrackerStore::new(registered);
    for sender_id in ["alice", "12345", "9876543210123", "bob"] {
        let expected = rasa_texts(&source, sender_id).await;
        assert_eq!(
            tracker_store.version(sender_id).await.expect("version"),
            expected.len() as u64,
            "{sender_id}"
        );
        assert!(tracker_store.exists(sender_id).await.expect("exists"));
        let all = tracker_store
            .read(sender_id, ReadScope::All)
            .await
            .expect("read")
            .expect("Rasa's conversation");
        assert_eq!((all.first_seq, all.version), (1, expected.len() as u64));
        assert_eq!(common::texts(&all.events), expected, "{sender_id}");
        let latest = tracker_store
            .read(sender_id, ReadScope::LatestSession)
            .await
            .expect("read")
            .expect("Rasa's conversation");
        let skipped = expected.len() - latest.events.len();
        assert_eq!(latest.first_seq, skipped as u64 + 1);
        assert_eq!(common::texts(&latest.events), expected[skipped..]);
    }
    assert_eq!(rasa_texts(&source, "bob").await.len(), 6);
    let alice = tracker_store
        .read("alice", ReadScope::LatestSession)
        .await
        .expect("read")
        .expect("alice");
    assert!(
        alice.first_seq > 1
            && alice
                .events
                .iter()
                .any(|e| e.type_name() == "session_started"),
        "the golden events hold sessions: the latest one is read"
    );
    for absent in ["empty", "nobody"] {
        assert_eq!(tracker_store.version(absent).await.expect("version"), 0);
        assert!(
            tracker_store
                .read(absent, ReadScope::All)
                .await
                .expect("read")
                .is_none()
        );
    }
    assert_eq!(
        raw_documents(&store).await,
        before,
        "Rasa's documents untouched"
    );
    assert_eq!(
        store.heads().count_documents(doc! {}).await.expect("count"),
        0
    );
}

/// A listing holds this store's conversations and Rasa's (those with events), each once in
/// every page size — adopted ones included — and no deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_lists_rasa_conversations_once() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let tracker_store = TrackerStore::new(store.clone());
    tracker_store
        .append("ours", 0, &[Event::bot("x")])
        .await
        .expect("append");
    let alice = rasa_texts(&source, "alice").await.len() as u64;
    tracker_store
        .append("alice", alice, &[Event::bot("adopted")])
        .await
        .expect("adopt");
    let expected = ["12345", "9876543210123", "alice", "ours"];
    assert_eq!(tracker_store.keys().await.expect("keys"), expected);
    for limit in [1, 2, 3, 4, 5] {
        assert_eq!(
            list_in_pages(&tracker_store, limit).await,
            expected,
            "pages of {limit}"
        );
    }
    assert!(tracker_store.delete("12345").await.expect("delete"));
    assert!(tracker_store.delete("ours").await.expect("delete"));
    for limit in [1, 2, 3] {
        assert_eq!(
            list_in_pages(&tracker_store, limit).await,
            ["9876543210123", "alice"],
            "pages of {limit}"
        );
    }
}

/// The first append to a conversation only Rasa holds must be at Rasa's number of events; it
/// writes Rasa's events and the new ones into this store's layout (buckets included) and
/// leaves Rasa's document byte-identical. Later appends and reads use this store's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_append_adopts_a_rasa_conversation() {
    let Some(store) = small_buckets().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let before = raw_documents(&store).await;
    let tracker_store = TrackerStore::new(store.clone());
    let rasa = rasa_texts(&source, "alice").await;
    let n = rasa.len() as u64;
    let latest_before = tracker_store
        .read("alice", ReadScope::LatestSession)
        .await
        .expect("read")
        .expect("alice");
    let new = common::bots("after Rasa", 2);
    for stale in [0, n - 1, n + 1] {
        let result = tracker_store.append("alice", stale, &new).await;
        assert!(is_conflict(&result, n), "at {stale}: {result:?}");
    }
    assert_eq!(
        store.heads().count_documents(doc! {}).await.expect("count"),
        0
    );

    assert_eq!(
        tracker_store.append("alice", n, &new).await.expect("adopt"),
        n + 2
    );
    let head_document = common::head_document(&store, "alice").await;
    assert_eq!(head_document.get_bool(head::ADOPTED).ok(), Some(true));
    assert_eq!(common::number(&head_document, head::VERSION), n + 2);
    let buckets = common::buckets_of(&store, "alice").await;
    assert!(buckets.len() > 1, "{} buckets", buckets.len());
    for document in &buckets {
        assert_eq!(
            document.get(bucket::GENERATION),
            head_document.get(head::GENERATION)
        );
        assert!(common::number(document, bucket::COUNT) <= 3);
    }
    let mut expected = rasa.clone();
    expected.extend(common::texts(&new));
    assert_eq!(
        common::read_texts(&store, "alice", ReadScope::All).await,
        Some(expected.clone())
    );
    let mut latest = common::texts(&latest_before.events);
    latest.extend(common::texts(&new));
    assert_eq!(
        common::read_texts(&store, "alice", ReadScope::LatestSession).await,
        Some(latest)
    );
    // The store's copy from now on.
    let more = common::bots("later", 4);
    assert_eq!(common::append(&store, "alice", n + 2, &more).await, n + 6);
    expected.extend(common::texts(&more));
    assert_eq!(
        common::read_texts(&store, "alice", ReadScope::All).await,
        Some(expected)
    );

    // An integer id of very old data.
    assert_eq!(common::append(&store, "12345", 2, &new[..1]).await, 3);
    let mut old = rasa_texts(&source, "12345").await;
    old.extend(common::texts(&new[..1]));
    assert_eq!(
        common::read_texts(&store, "12345", ReadScope::All).await,
        Some(old)
    );
    assert_eq!(
        raw_documents(&store).await,
        before,
        "Rasa's documents untouched"
    );
}

/// Eight stores adopting the same Rasa conversations at once: for each, one append wins and
/// every other is a `Conflict` with the winner's version; the conversation holds Rasa's events
/// and the winner's, and the losers' buckets are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_adopters_give_one_conflict_each() {
    let Some(store) = small_buckets().await else {
        return;
    };
    let golden = golden::event_values();
    let ids: Vec<String> = (0..3).map(|i| format!("race-{i}")).collect();
    let source = store.rasa_source();
    for id in &ids {
        source
            .collection()
            .insert_one(rasa_document(Bson::String(id.clone()), &golden[..7]))
            .await
            .expect("insert");
    }
    let before = raw_documents(&store).await;
    let n = rasa_texts(&source, &ids[0]).await.len() as u64;
    let config = same_config(&store, 3);
    for id in &ids {
        let mut writers = Vec::new();
        for writer in 0..8 {
            let other = MongoStore::from_client(store.client().clone(), &config).expect("store");
            let (id, events) = (id.clone(), common::bots(&format!("writer {writer}"), 2));
            writers.push(tokio::spawn(async move {
                let result = TrackerStore::new(other).append(&id, n, &events).await;
                (result, events)
            }));
        }
        let mut winners = Vec::new();
        for writer in writers {
            let (result, events) = writer.await.expect("writer");
            match result {
                Ok(version) => {
                    assert_eq!(version, n + 2);
                    winners.push(events);
                }
                Err(_) => assert!(is_conflict(&result, n + 2), "{result:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{id}: one adopter wins");
        let mut expected = rasa_texts(&source, id).await;
        expected.extend(common::texts(&winners[0]));
        assert_eq!(
            common::read_texts(&store, id, ReadScope::All).await,
            Some(expected)
        );
        let generation = common::head_document(&store, id)
            .await
            .get(head::GENERATION)
            .cloned();
        for document in common::buckets_of(&store, id).await {
            assert_eq!(
                document.get(bucket::GENERATION).cloned(),
                generation,
                "{id}"
            );
        }
    }
    assert_eq!(
        raw_documents(&store).await,
        before,
        "Rasa's documents untouched"
    );
}

/// Deleting removes Rasa's copy as well, checked against the version the store reports; the
/// conversation stays gone (no read of Rasa's copy again), and can be created anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_remove_rasa_copies() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let tracker_store = TrackerStore::new(store.clone());
    let before = raw_documents(&store).await;

    // Only Rasa holds it.
    let stale = tracker_store.delete_at("12345", 1).await;
    assert!(
        matches!(&stale, Err(e) if e.current_version() == Some(2)),
        "{stale:?}"
    );
    assert_eq!(raw_documents(&store).await, before, "nothing deleted");
    assert!(tracker_store.delete_at("12345", 2).await.expect("delete"));
    assert_eq!(tracker_store.version("12345").await.expect("version"), 0);
    assert!(
        source.read("12345").await.expect("read").is_none(),
        "Rasa's copy is gone"
    );
    assert!(!tracker_store.delete_at("12345", 0).await.expect("absent"));
    let gone = tracker_store.delete_at("12345", 2).await;
    assert!(
        matches!(&gone, Err(e) if e.current_version() == Some(0)),
        "{gone:?}"
    );
    // Created anew, then deleted again.
    let anew = common::bots("new", 1);
    tracker_store
        .append("12345", 0, &anew)
        .await
        .expect("create");
    assert_eq!(
        common::read_texts(&store, "12345", ReadScope::All).await,
        Some(common::texts(&anew))
    );
    assert!(tracker_store.delete("12345").await.expect("delete"));
    assert_eq!(tracker_store.version("12345").await.expect("version"), 0);

    // Adopted: this store's copy, its buckets and Rasa's.
    let n = rasa_texts(&source, "alice").await.len() as u64;
    tracker_store
        .append("alice", n, &[Event::bot("adopted")])
        .await
        .expect("adopt");
    let stale = tracker_store.delete_at("alice", n).await;
    assert!(
        matches!(&stale, Err(e) if e.current_version() == Some(n + 1)),
        "{stale:?}"
    );
    assert!(source.read("alice").await.expect("read").is_some());
    assert!(
        tracker_store
            .delete_at("alice", n + 1)
            .await
            .expect("delete")
    );
    assert_eq!(tracker_store.version("alice").await.expect("version"), 0);
    assert!(
        tracker_store
            .read("alice", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert!(source.read("alice").await.expect("read").is_none());
    assert!(common::buckets_of(&store, "alice").await.is_empty());

    // Unconditionally; a document without events; nothing at all.
    assert!(tracker_store.delete("9876543210123").await.expect("delete"));
    assert!(!tracker_store.delete("empty").await.expect("delete"));
    assert!(!tracker_store.delete("nobody").await.expect("delete"));
    assert!(
        raw_documents(&store).await.is_empty(),
        "every Rasa document deleted"
    );
    assert!(tracker_store.keys().await.expect("keys").is_empty());
}

/// A delete and an adopting append racing on a Rasa-only conversation (each at the version
/// both read) serialise: exactly one succeeds, the other conflicts with the version the
/// winner left, and the conversation is as the winner left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_and_adoptions_racing_serialise() {
    let Some(store) = common::store().await else {
        return;
    };
    let golden = golden::event_values();
    let source = store.rasa_source();
    let config = same_config(&store, 500);
    let (mut deletes, mut appends) = (0, 0);
    for round in 0..8 {
        let id = format!("race-{round}");
        source
            .collection()
            .insert_one(rasa_document(Bson::String(id.clone()), &golden[..4]))
            .await
            .expect("insert");
        let n = rasa_texts(&source, &id).await.len() as u64;
        let deleter = TrackerStore::new(
            MongoStore::from_client(store.client().clone(), &config).expect("store"),
        );
        let appender = TrackerStore::new(
            MongoStore::from_client(store.client().clone(), &config).expect("store"),
        );
        let (delete_id, append_id) = (id.clone(), id.clone());
        let deleted = tokio::spawn(async move { deleter.delete_at(&delete_id, n).await });
        let appended =
            tokio::spawn(
                async move { appender.append(&append_id, n, &[Event::bot("late")]).await },
            );
        let (deleted, appended) = (
            deleted.await.expect("deleter"),
            appended.await.expect("appender"),
        );
        let tracker_store = TrackerStore::new(store.clone());
        match (deleted, appended) {
            (Ok(true), Err(error)) => {
                assert_eq!(error.current_version(), Some(0), "{error}");
                assert_eq!(tracker_store.version(&id).await.expect("version"), 0);
                assert!(source.read(&id).await.expect("read").is_none());
                deletes += 1;
            }
            (Err(error), Ok(version)) => {
                assert_eq!((error.current_version(), version), (Some(n + 1), n + 1));
                assert_eq!(tracker_store.version(&id).await.expect("version"), n + 1);
                appends += 1;
            }
            other => panic!("{id}: not one winner: {other:?}"),
        }
    }
    // Which one wins is up to the scheduler; both outcomes are checked when they occur.
    assert_eq!(deletes + appends, 8);
}

/// What a delete interrupted after its deciding step leaves — the tombstone, and Rasa's
/// document still there — is no conversation: not read, not listed, not adoptable; creating
/// it anew works, and deleting again removes Rasa's document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_delete_leaves_nothing_visible() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let n = rasa_texts(&source, "alice").await.len() as u64;
    store
        .heads()
        .insert_one(doc! {
            "_id": schema::head_id("alice"),
            head::SENDER_ID: "alice",
            head::SENDER_HEX: schema::sender_hex("alice"),
            head::DELETED: true,
        })
        .await
        .expect("a tombstone");
    let tracker_store = TrackerStore::new(store.clone());
    assert_eq!(tracker_store.version("alice").await.expect("version"), 0);
    assert!(
        tracker_store
            .read("alice", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        !tracker_store
            .keys()
            .await
            .expect("keys")
            .contains(&"alice".to_owned())
    );
    let result = tracker_store.append("alice", n, &[Event::bot("x")]).await;
    assert!(is_conflict(&result, 0), "{result:?}");
    assert!(!tracker_store.delete("alice").await.expect("delete"));
    assert!(
        source.read("alice").await.expect("read").is_none(),
        "Rasa's copy removed"
    );
    assert_eq!(
        tracker_store
            .append("alice", 0, &[Event::bot("anew")])
            .await
            .expect("create"),
        1
    );
}

/// With `adopt_rasa: false` the store ignores Rasa's collection: no versions, no listing,
/// creating the same id works and deleting it leaves Rasa's document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_adoption_rasa_documents_are_ignored() {
    let Some(store) = not_adopting().await else {
        return;
    };
    assert!(!store.adopts_rasa());
    let (source, _) = seed(&store).await;
    let before = raw_documents(&store).await;
    let tracker_store = TrackerStore::new(store.clone());
    assert_eq!(tracker_store.version("alice").await.expect("version"), 0);
    assert!(tracker_store.keys().await.expect("keys").is_empty());
    tracker_store
        .append("alice", 0, &[Event::bot("ours")])
        .await
        .expect("create");
    assert!(tracker_store.delete("alice").await.expect("delete"));
    assert!(source.read("alice").await.expect("read").is_some());
    assert_eq!(raw_documents(&store).await, before);
}

/// A store that adopts serves Rasa's conversations as they are, so importing them finds them
/// present and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopting_store_already_holds_rasa_conversations() {
    let Some(store) = common::store().await else {
        return;
    };
    let (source, _) = seed(&store).await;
    let n = rasa_texts(&source, "alice").await.len() as u64;
    let imported = TrackerStore::new(store.clone())
        .import_from(&source, "alice")
        .await
        .expect("import")
        .expect("alice");
    assert_eq!(
        imported,
        Imported {
            already_present: n,
            written: 0,
            version: n
        }
    );
    assert_eq!(
        store.heads().count_documents(doc! {}).await.expect("count"),
        0
    );
}
