//! Faults: what a crash between two steps leaves (written exactly as the crash would leave
//! it), damaged documents, and how a driver failure is classified.

mod common;

use std::time::{Duration, Instant};

use common::{append, bots, buckets_of, head_document, id, number, read_texts, texts};
use tracker_core::{ErrorKind, Event, ExpectedVersion, ListRequest, ReadScope, Store};
use tracker_mongo::mongodb::bson::doc;
use tracker_mongo::schema::{self, bucket, head};
use tracker_mongo::{MongoConfig, MongoStore};

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on the loopback: nothing listens there.
    let config = MongoConfig::from_url(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
    );
    let started = Instant::now();
    let error = MongoStore::connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_temporary());
    assert!(
        std::error::Error::source(&error).is_some(),
        "the driver error is kept"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A writer that crashed after copying the tail into a bucket and before committing leaves
/// only that copy: reads ignore it and the next roll-over completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_between_seal_and_commit_is_invisible() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(4, 1 << 20)).await else {
        return;
    };
    let sender = "crash";
    let first = bots("a", 3);
    let second = bots("b", 2);
    let third = bots("c", 1);
    append(&store, sender, 0, &first).await;
    append(&store, sender, 3, &second).await; // seals 1..=3; the tail is 4..=5
    append(&store, sender, 5, &third).await; // the tail is 4..=6
    let head = head_document(&store, sender).await;
    assert_eq!(number(&head, head::TAIL_SEQ), 4);
    let generation = head.get_object_id(head::GENERATION).expect("generation");
    let tail = head.get_array(head::TAIL).expect("tail").clone();
    // What a roll-over at version 5 (tail 4..=5) that crashed before its commit left.
    store
        .buckets()
        .insert_one(doc! {
            "_id": schema::bucket_id(sender, &generation, 4),
            bucket::SENDER_ID: sender,
            bucket::GENERATION: generation,
            bucket::FIRST_SEQ: 4_i64,
            bucket::LAST_SEQ: 5_i64,
            bucket::COUNT: 2_i64,
            bucket::EVENTS: tail[..2].to_vec(),
        })
        .await
        .expect("left-over copy");
    let so_far: Vec<Event> = [first.clone(), second.clone(), third.clone()].concat();
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&so_far))
    );
    assert_eq!(store.version(&id(sender)).await.expect("version"), 6);

    // The tail holds 3 events; this append does not fit and seals 4..=6 over the copy.
    let fourth = bots("d", 2);
    assert_eq!(append(&store, sender, 6, &fourth).await, 8);
    let buckets = buckets_of(&store, sender).await;
    assert_eq!(buckets.len(), 2);
    assert_eq!(
        (
            number(&buckets[1], bucket::FIRST_SEQ),
            number(&buckets[1], bucket::COUNT)
        ),
        (4, 3),
        "the copy was completed"
    );
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&[so_far, fourth].concat()))
    );
}

/// Deleting only the head — what a crash right after a delete's first step leaves — deletes
/// the conversation: its buckets are never read again, and it can be created anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_deleting_the_head() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(2, 1 << 20)).await else {
        return;
    };
    let sender = "half-deleted";
    let mut version = 0;
    for turn in 0..3 {
        version = append(&store, sender, version, &bots(&format!("old {turn}"), 2)).await;
    }
    assert_eq!(buckets_of(&store, sender).await.len(), 2);
    store
        .heads()
        .delete_one(doc! { "_id": schema::head_id(sender) })
        .await
        .expect("delete the head only");
    assert_eq!(store.version(&id(sender)).await.expect("version"), 0);
    assert!(
        store
            .read(&id(sender), ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    let page = store
        .list(&ListRequest {
            cursor: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert!(!page.sender_ids.contains(&sender.to_owned()));

    let fresh = bots("new", 5);
    let mut version = append(&store, sender, 0, &fresh[..2]).await;
    version = append(&store, sender, version, &fresh[2..4]).await;
    version = append(&store, sender, version, &fresh[4..]).await;
    assert_eq!(version, 5);
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&fresh)),
        "the old generation's buckets are not read"
    );

    // Collecting removes the old generation's buckets and nothing of a live conversation.
    let other = "whole";
    let mut version = 0;
    for turn in 0..3 {
        version = append(&store, other, version, &bots(&format!("kept {turn}"), 2)).await;
    }
    let (live, others) = (
        buckets_of(&store, sender).await.len(),
        buckets_of(&store, other).await.len(),
    );
    assert!(live > 2 && others > 0, "{live} {others}");
    assert_eq!(store.collect_orphaned_buckets().await.expect("collect"), 2);
    assert_eq!(buckets_of(&store, sender).await.len(), live - 2);
    assert_eq!(buckets_of(&store, other).await.len(), others);
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&fresh))
    );
    assert_eq!(store.collect_orphaned_buckets().await.expect("again"), 0);

    assert!(
        store
            .delete(&id(sender), ExpectedVersion::Any)
            .await
            .expect("delete")
    );
    assert!(buckets_of(&store, sender).await.is_empty());
}

/// Stored data this store cannot read is `Corrupt`, naming the conversation and the event;
/// other conversations are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_data_is_reported_for_its_conversation() {
    let Some(store) = common::store().await else {
        return;
    };
    append(&store, "healthy", 0, &bots("fine", 2)).await;
    append(&store, "broken", 0, &bots("fine", 2)).await;
    store
        .heads()
        .update_one(
            doc! { "_id": schema::head_id("broken") },
            doc! { "$set": { "tail.1.data": 42 } },
        )
        .await
        .expect("damage");
    let error = store
        .read(&id("broken"), ReadScope::All)
        .await
        .expect_err("corrupt");
    match error {
        tracker_core::Error::Corrupt {
            sender_id,
            position,
            ..
        } => assert_eq!((sender_id.as_str(), position), ("broken", Some(2))),
        other => panic!("{other}"),
    }
    store
        .heads()
        .update_one(
            doc! { "_id": schema::head_id("broken") },
            doc! { "$set": { head::VERSION: "seven" } },
        )
        .await
        .expect("damage");
    assert_eq!(
        store
            .version(&id("broken"))
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        read_texts(&store, "healthy", ReadScope::All)
            .await
            .map(|t| t.len()),
        Some(2)
    );
}
