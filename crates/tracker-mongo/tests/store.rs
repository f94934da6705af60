//! Store behaviour specific to this backend: latest-session reads that skip earlier
//! buckets, stale writers and racing writers at bucket boundaries, appends racing deletes,
//! listing order, the constructors, oversized appends, batches of appends (creations by one
//! insert, conflicts among them, roll-overs, the outbox, adoption and tombstones), and the
//! server properties the design relies on.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{append, bots, buckets_of, head_document, id, number, read_texts, texts};
use tracker_core::{
    Append, ErrorKind, Event, ExpectedVersion, ListRequest, ReadScope, Store, TrackerStore,
};
use tracker_mongo::mongodb::bson::oid::ObjectId;
use tracker_mongo::mongodb::bson::{self, Bson, Document, doc};
use tracker_mongo::schema::{bucket, head};
use tracker_mongo::{MongoConfig, MongoStore};

/// A conversation much longer than any one document: many buckets, and a latest-session read
/// that never touches the buckets of earlier sessions (they are made unreadable to prove it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_session_reads_skip_earlier_buckets() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(10, 1 << 20)).await else {
        return;
    };
    let sender = "long";
    let mut version = 0;
    let mut all = Vec::new();
    for turn in 0..30 {
        let events = bots(&format!("old turn {turn}"), 3);
        version = append(&store, sender, version, &events).await;
        all.extend(events);
    }
    let session = vec![
        Event::action("action_session_start").at(1_800_000_000.0),
        Event::session_started().at(1_800_000_000.1),
    ];
    version = append(&store, sender, version, &session).await;
    all.extend(session.clone());
    let mut latest = session;
    for turn in 0..8 {
        let events = bots(&format!("new turn {turn}"), 3);
        version = append(&store, sender, version, &events).await;
        all.extend(events.clone());
        latest.extend(events);
    }
    assert_eq!(version, 116);
    assert!(buckets_of(&store, sender).await.len() >= 10);
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&all))
    );
    assert_eq!(
        read_texts(&store, sender, ReadScope::LatestSession).await,
        Some(texts(&latest))
    );

    // Damage every bucket that ends before the session's `action_session_start` (seq 91).
    let damaged = store
        .buckets()
        .update_many(
            doc! { bucket::SENDER_ID: sender, bucket::LAST_SEQ: { "$lt": 91_i64 } },
            doc! { "$set": { bucket::EVENTS: "damaged" } },
        )
        .await
        .expect("damage");
    assert!(damaged.modified_count >= 8, "{damaged:?}");
    assert_eq!(
        read_texts(&store, sender, ReadScope::LatestSession).await,
        Some(texts(&latest)),
        "a latest-session read must not read earlier buckets"
    );
    let full = store.read(&id(sender), ReadScope::All).await;
    assert_eq!(
        full.expect_err("a full read meets the damage").kind(),
        ErrorKind::Corrupt
    );
}

/// A stale writer whose append would seal a bucket gets `Conflict` with the current version,
/// and nothing of it is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_writer_at_a_bucket_boundary_conflicts() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(2, 1 << 20)).await else {
        return;
    };
    let sender = "stale";
    let first = bots("a", 2);
    append(&store, sender, 0, &first).await;
    let winner = bots("winner", 1);
    append(&store, sender, 2, &winner).await;
    // The loser still thinks the conversation is at version 2.
    let loser = Append::new(id(sender), 2, &bots("loser", 1)).expect("append");
    let error = store.append(&loser).await.expect_err("stale");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(error.current_version(), Some(3));
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&[first, winner].concat()))
    );
}

/// Writers at one version whose appends take different paths — some fit the tail (a push),
/// some do not (a roll-over) — still produce exactly one winner, round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_and_roll_overs_racing_at_one_version() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(4, 1 << 20)).await else {
        return;
    };
    let store = Arc::new(store);
    let sender = "mixed";
    let mut history = bots("start", 3);
    append(&store, sender, 0, &history).await;
    for round in 0..6 {
        let version = history.len() as u64;
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let writers: Vec<_> = (0..16)
            .map(|writer| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    // Odd writers append 1 event, even ones 3: with 4 events per head, some
                    // fit and some roll over, depending on the tail.
                    let events = bots(&format!("r{round} w{writer}"), 1 + 2 * (writer % 2));
                    let append = Append::new(id(sender), version, &events).expect("append");
                    barrier.wait().await;
                    (events, store.append(&append).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            let (events, result) = writer.await.expect("writer");
            match result {
                Ok(new) => winners.push((events, new)),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (events, new) = winners.remove(0);
        assert_eq!(new, version + events.len() as u64);
        history.extend(events);
        assert_eq!(
            read_texts(&store, sender, ReadScope::All).await,
            Some(texts(&history)),
            "round {round}"
        );
    }
}

/// Appends and deletes of one conversation racing: every read sees either no conversation or
/// a complete one, every successful append is at the version it expected, and nothing is ever
/// reported corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_deletes() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(2, 1 << 20)).await else {
        return;
    };
    let store = Arc::new(store);
    let sender = "racy";
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0;
            for round in 0..40 {
                let version = store.version(&id(sender)).await.expect("version");
                let events = bots(&format!("w{writer} r{round}"), 1 + round % 3);
                let append = Append::new(id(sender), version, &events).expect("append");
                match store.append(&append).await {
                    Ok(new) => {
                        assert_eq!(new, version + events.len() as u64);
                        appended += 1;
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
                }
                if let Some(read) = store.read(&id(sender), ReadScope::All).await.expect("read") {
                    let seqs: Vec<u64> = read.events.iter().map(|e| e.seq).collect();
                    assert_eq!(seqs, (1..=read.version).collect::<Vec<_>>());
                }
            }
            appended
        }));
    }
    let deleter = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut deleted = 0;
            for _ in 0..15 {
                deleted += usize::from(
                    store
                        .delete(&id(sender), ExpectedVersion::Any)
                        .await
                        .expect("delete"),
                );
                tokio::task::yield_now().await;
            }
            deleted
        })
    };
    let mut appended = 0;
    for task in tasks {
        appended += task.await.expect("writer");
    }
    let deleted = deleter.await.expect("deleter");
    assert!(appended >= 20, "only {appended} appends succeeded");
    assert!(deleted >= 1, "no delete found a conversation");
    if let Some(read) = store.read(&id(sender), ReadScope::All).await.expect("read") {
        assert_eq!(read.events.len() as u64, read.version);
    }
}

/// Listing pages through the ids in UTF-8 byte order on every server (the stand-in sorts text
/// by locale, so the listing key is the id's bytes in hex).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_is_in_byte_order() {
    let Some(store) = common::store().await else {
        return;
    };
    let mut ids = vec![
        "b", "B", "a", "ü", "🍕", "中", "a b", "ab", "Z", "_", "é", "e",
    ];
    for sender in &ids {
        append(&store, sender, 0, &bots("x", 1)).await;
    }
    ids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&ListRequest { cursor, limit: 5 })
            .await
            .expect("list");
        assert!(page.sender_ids.len() <= 5);
        listed.extend(page.sender_ids);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids);
}

/// The constructors from a client and from a database share the client and its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_from_a_client_or_database() {
    let Some(store) = common::store().await else {
        return;
    };
    append(&store, "shared", 0, &bots("x", 2)).await;
    let config = MongoConfig::default()
        .with_db(common::TEST_DB)
        .with_collection(store.collection_name());
    let from_client = MongoStore::from_client(store.client().clone(), &config).expect("client");
    assert_eq!(
        from_client.version(&id("shared")).await.expect("version"),
        2
    );
    let from_database =
        MongoStore::from_database(common::database(&store), &config).expect("database");
    assert_eq!(
        from_database.version(&id("shared")).await.expect("version"),
        2
    );
    let debug = format!("{from_client:?}");
    assert!(debug.contains(store.collection_name()), "{debug}");
    let bad = MongoConfig::default().with_collection("bad$name");
    assert_eq!(
        MongoStore::from_client(store.client().clone(), &bad)
            .expect_err("bad name")
            .kind(),
        ErrorKind::Config
    );
}

/// An append whose BSON would not fit in one document is `InvalidInput` up front, even when
/// it skips the caller-side limit checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_appends_are_rejected_before_writing() {
    let Some(store) = common::store().await else {
        return;
    };
    let huge = Event::bot("x".repeat(16 * 1024 * 1024)).at(1_700_000_000.0);
    let append = Append::new(id("huge"), 0, std::slice::from_ref(&huge)).expect("append");
    let error = store.append(&append).await.expect_err("too big");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.version(&id("huge")).await.expect("version"), 0);
    // Through the Rasa-facing API the declared limit catches it first.
    let tracker_store = TrackerStore::new(store.clone());
    let error = tracker_store
        .append("huge", 0, &[huge])
        .await
        .expect_err("over the declared limit");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

/// The server properties the design relies on, checked on the server under test: `_id`
/// uniqueness decides between concurrent inserts, and an update guarded by a field's value is
/// atomic (exactly one of 20 concurrent writers wins each).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_guarantees_the_design_relies_on() {
    let Some(store) = common::store().await else {
        return;
    };
    let scratch = store
        .database()
        .collection::<Document>(&format!("{}.probe", store.collection_name()));
    let oid = ObjectId::new();
    let inserts: Vec<_> = (0..20)
        .map(|writer| {
            let scratch = scratch.clone();
            tokio::spawn(async move {
                scratch
                    .insert_one(doc! { "_id": oid, "writer": writer, "version": 0_i64 })
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for insert in inserts {
        won += usize::from(insert.await.expect("task"));
    }
    assert_eq!(won, 1, "exactly one insert of an _id may succeed");
    let updates: Vec<_> = (0..20)
        .map(|writer| {
            let scratch = scratch.clone();
            tokio::spawn(async move {
                scratch
                    .update_one(
                        doc! { "_id": oid, "version": 0_i64 },
                        doc! { "$set": { "version": 1_i64, "by": writer }, "$push": { "log": writer } },
                    )
                    .await
                    .expect("update")
                    .matched_count
            })
        })
        .collect();
    let mut won = 0;
    for update in updates {
        won += update.await.expect("task");
    }
    assert_eq!(won, 1, "exactly one guarded update may match");
    let document = scratch
        .find_one(doc! { "_id": oid })
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(document.get_array("log").expect("log").len(), 1);
    let _ = scratch.drop().await;
}

/// What a batch entry of [`batch_of_300`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A new conversation (expected version 0).
    New,
    /// An existing conversation at its version; with 8 events before, the batch's 3 roll over.
    Existing,
    /// Expected to be new, but it exists (4 events).
    AlreadyThere,
    /// An existing conversation (4 events), expected at version 2.
    WrongVersion,
}

/// The batch of [`batch_of_300`]: entry `n`'s kind, its events before the batch and the
/// batch's events for it.
fn batch_plan(n: usize) -> (Kind, Vec<Event>, Vec<Event>) {
    let tag = |what: &str| format!("{what} {n}");
    match n {
        0..150 => (Kind::New, Vec::new(), bots(&tag("new"), 1 + n % 5)),
        // More events than a head keeps: created whole in the head, as a single append does.
        150..160 => (Kind::New, Vec::new(), bots(&tag("long new"), 25)),
        160..290 => {
            let before = bots(&tag("before"), if n.is_multiple_of(2) { 8 } else { 3 });
            (Kind::Existing, before, bots(&tag("added"), 3))
        }
        // Long enough to seal several buckets of 10 events on the way there, and one more now.
        290 => (
            Kind::Existing,
            bots(&tag("long"), 47),
            bots(&tag("added"), 9),
        ),
        291..295 => (
            Kind::AlreadyThere,
            bots(&tag("there"), 4),
            bots(&tag("lost"), 2),
        ),
        _ => (
            Kind::WrongVersion,
            bots(&tag("there"), 4),
            bots(&tag("lost"), 2),
        ),
    }
}

/// A batch of 300 appends on a store whose heads keep 10 events: new conversations (some
/// longer than a head keeps), existing ones at their version (half of them rolling over, one
/// with many buckets), new ones that already exist and existing ones at a wrong version.
/// Every right append is written whole and reads back exactly; every wrong one is that
/// conversation's `Conflict` with its version and leaves it untouched. With the outbox on,
/// every conversation the batch wrote is pending, and the conflicting ones (published before
/// the batch) are not.
async fn batch_of_300(outbox: bool) {
    let Some(store) =
        common::store_with(|c| c.with_bucket_size(10, 1 << 20).with_outbox(outbox)).await
    else {
        return;
    };
    let sender = |n: usize| format!("batch {n:03}");
    let plans: Vec<_> = (0..300).map(batch_plan).collect();
    for (n, (_, before, _)) in plans.iter().enumerate() {
        let mut version = 0;
        for chunk in before.chunks(5) {
            version = append(&store, &sender(n), version, chunk).await;
        }
        if outbox && !before.is_empty() {
            // Published: not pending until the next append.
            let relay = store.outbox().expect("outbox");
            relay
                .lease(&id(&sender(n)), "relay", Duration::from_secs(60))
                .await
                .expect("lease")
                .expect("free");
            relay
                .checkpoint(&id(&sender(n)), "relay", 0, version)
                .await
                .expect("checkpoint");
        }
    }
    assert!(buckets_of(&store, &sender(290)).await.len() >= 4);
    let appends: Vec<Append> = plans
        .iter()
        .enumerate()
        .map(|(n, (kind, before, added))| {
            let expected = match kind {
                Kind::New | Kind::AlreadyThere => 0,
                Kind::Existing => before.len() as u64,
                Kind::WrongVersion => 2,
            };
            Append::new(id(&sender(n)), expected, added).expect("append")
        })
        .collect();

    let results = store.append_batch(&appends).await.expect("the batch");
    assert_eq!(results.len(), 300);
    for (n, ((kind, before, added), result)) in plans.iter().zip(&results).enumerate() {
        match kind {
            Kind::New | Kind::Existing => assert_eq!(
                result.as_ref().ok(),
                Some(&((before.len() + added.len()) as u64)),
                "entry {n}: {result:?}"
            ),
            Kind::AlreadyThere | Kind::WrongVersion => {
                let error = result.as_ref().expect_err("a conflict");
                assert_eq!(error.kind(), ErrorKind::Conflict, "entry {n}: {error}");
                assert_eq!(error.current_version(), Some(4), "entry {n}: {error}");
            }
        }
    }

    let pending: HashSet<String> = match store.outbox() {
        Some(relay) => relay
            .pending(1000)
            .await
            .expect("pending")
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        None => HashSet::new(),
    };
    for (n, (kind, before, added)) in plans.iter().enumerate() {
        let written = matches!(kind, Kind::New | Kind::Existing);
        let expected: Vec<Event> = if written {
            before.iter().chain(added).cloned().collect()
        } else {
            before.clone()
        };
        assert_eq!(
            read_texts(&store, &sender(n), ReadScope::All).await,
            Some(texts(&expected)),
            "entry {n} ({kind:?})"
        );
        assert_eq!(
            store.version(&id(&sender(n))).await.expect("version"),
            expected.len() as u64
        );
        if outbox {
            assert_eq!(pending.contains(&sender(n)), written, "entry {n} pending");
        }
    }
    // Half of the existing ones rolled over: their 8 events are a bucket now.
    let document = head_document(&store, &sender(160)).await;
    assert_eq!(number(&document, head::TAIL_SEQ), 9);
    assert_eq!(buckets_of(&store, &sender(160)).await.len(), 1);
    // The conversations created by the batch are heads like any single append's.
    let document = head_document(&store, &sender(150)).await;
    assert_eq!(number(&document, head::TAIL_COUNT), 25);
    assert_eq!(
        document.contains_key(head::OUTBOX_PENDING),
        outbox,
        "{document}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_300_conversations() {
    batch_of_300(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_300_conversations_with_the_outbox() {
    batch_of_300(true).await;
}

/// Events for Rasa's collection, with timestamps that are not whole numbers (the stand-in
/// turns whole doubles into integers).
fn rasa_events(tag: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::bot(format!("{tag} {i}")).at(1_600_000_000.25 + i as f64))
        .collect()
}

/// A document as Rasa's `MongoTrackerStore` keeps one (the fields this store reads).
fn rasa_document(sender_id: Bson, events: &[Event]) -> Document {
    let events: Vec<Bson> = events
        .iter()
        .map(|event| bson::to_bson(&event.to_value()).expect("to BSON"))
        .collect();
    doc! { "sender_id": sender_id, "latest_event_time": 1_600_000_100.5, "events": events }
}

/// A batch on an adopting store with heads of 3 events: an append at the number of events
/// of a conversation only Rasa holds adopts it (buckets included), by text and by an integer
/// sender id; a new conversation Rasa holds conflicts with Rasa's number of events; a new
/// conversation whose slot holds a tombstone (a deleted Rasa conversation) is created again;
/// a plain new one is inserted. Rasa's documents are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_adopts_rasa_conversations() {
    let Some(store) = common::small_buckets().await else {
        return;
    };
    assert!(store.adopts_rasa());
    let rasa = store.rasa_source();
    rasa.collection()
        .insert_many([
            rasa_document(Bson::String("adopted".to_owned()), &rasa_events("a", 5)),
            rasa_document(Bson::Int32(4242), &rasa_events("n", 2)),
            rasa_document(Bson::String("held".to_owned()), &rasa_events("h", 2)),
            rasa_document(Bson::String("gone".to_owned()), &rasa_events("g", 2)),
        ])
        .await
        .expect("Rasa's documents");
    assert!(
        store
            .delete(&id("gone"), ExpectedVersion::Exact(2))
            .await
            .expect("delete")
    );
    let rasa_before: Vec<Document> = {
        use futures::TryStreamExt;
        rasa.collection()
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    };
    let adopted_before = read_texts(&store, "adopted", ReadScope::All)
        .await
        .expect("Rasa's copy");
    let number_before = read_texts(&store, "4242", ReadScope::All)
        .await
        .expect("Rasa's copy");
    let held_before = read_texts(&store, "held", ReadScope::All)
        .await
        .expect("Rasa's copy");
    assert_eq!(read_texts(&store, "gone", ReadScope::All).await, None);

    let added = bots("added", 2);
    let entries = [
        ("adopted", 5),
        ("4242", 2),
        ("held", 0),
        ("gone", 0),
        ("fresh", 0),
    ];
    let appends: Vec<Append> = entries
        .iter()
        .map(|(sender, version)| Append::new(id(sender), *version, &added).expect("append"))
        .collect();
    let results = store.append_batch(&appends).await.expect("the batch");
    assert_eq!(results[0].as_ref().ok(), Some(&7), "{:?}", results[0]);
    assert_eq!(results[1].as_ref().ok(), Some(&4), "{:?}", results[1]);
    let error = results[2].as_ref().expect_err("Rasa holds it");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(2));
    assert_eq!(results[3].as_ref().ok(), Some(&2), "{:?}", results[3]);
    assert_eq!(results[4].as_ref().ok(), Some(&2), "{:?}", results[4]);

    let with_added = |before: Vec<String>| [before, texts(&added)].concat();
    assert_eq!(
        read_texts(&store, "adopted", ReadScope::All).await,
        Some(with_added(adopted_before))
    );
    let document = head_document(&store, "adopted").await;
    assert_eq!(document.get_bool(head::ADOPTED).ok(), Some(true));
    assert!(buckets_of(&store, "adopted").await.len() >= 2);
    assert_eq!(
        read_texts(&store, "4242", ReadScope::All).await,
        Some(with_added(number_before))
    );
    assert_eq!(
        read_texts(&store, "held", ReadScope::All).await,
        Some(held_before)
    );
    for sender in ["gone", "fresh"] {
        assert_eq!(
            read_texts(&store, sender, ReadScope::All).await,
            Some(texts(&added)),
            "{sender}"
        );
    }
    // The re-created conversation keeps leaving a tombstone when deleted.
    let document = head_document(&store, "gone").await;
    assert_eq!(document.get_bool(head::ADOPTED).ok(), Some(true));
    let rasa_after: Vec<Document> = {
        use futures::TryStreamExt;
        rasa.collection()
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    };
    assert_eq!(rasa_after, rasa_before, "Rasa's documents untouched");
}
