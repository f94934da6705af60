//! Store behaviour specific to this backend: latest-session reads that skip earlier
//! buckets, stale writers and racing writers at bucket boundaries, appends racing deletes,
//! listing order, the constructors, oversized appends, and the server properties the design
//! relies on.

mod common;

use std::sync::Arc;

use common::{append, bots, buckets_of, id, read_texts, texts};
use tracker_core::{
    Append, ErrorKind, Event, ExpectedVersion, ListRequest, ReadScope, Store, TrackerStore,
};
use tracker_mongo::mongodb::bson::oid::ObjectId;
use tracker_mongo::mongodb::bson::{Document, doc};
use tracker_mongo::schema::bucket;
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
