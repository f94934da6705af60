//! The outbox in the head documents (`outbox: true`), beyond the conformance cases: the
//! pending mark is written by the append's own single-document write (creation, push,
//! roll-over, adoption) and by nothing else; the checkpoint and the lease live in the head;
//! an append between a lease and its checkpoint keeps the conversation pending; pending
//! conversations come oldest first; and with the outbox off the head holds none of it.

mod common;

use std::time::Duration;

use common::{append, bots, head_document, id, number};
use tracker_core::{Append, ErrorKind, Event, Store};
use tracker_mongo::mongodb::bson::{self, Bson, Document, doc};
use tracker_mongo::schema::head;

const TTL: Duration = Duration::from_secs(30);

/// Every field the outbox keeps in a head.
const OUTBOX_FIELDS: [&str; 5] = [
    head::OUTBOX_PENDING,
    head::OUTBOX_PUBLISHED,
    head::OUTBOX_LEASE,
    head::OUTBOX_LEASE_AT,
    head::OUTBOX_LEASE_MS,
];

/// A store with its outbox on; with `small` heads of 3 events, so appends roll over.
async fn outbox_store(small: bool) -> Option<common::TestStore> {
    common::store_with(|config| {
        let config = config.with_outbox(true);
        if small {
            config.with_bucket_size(3, 2048)
        } else {
            config
        }
    })
    .await
}

fn outbox(store: &common::TestStore) -> &dyn tracker_core::Outbox {
    store.outbox().expect("the outbox is on")
}

async fn pending(store: &common::TestStore) -> Vec<String> {
    outbox(store)
        .pending(1000)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect()
}

fn outbox_fields(head: &Document) -> Vec<&str> {
    OUTBOX_FIELDS
        .into_iter()
        .filter(|field| head.contains_key(field))
        .collect()
}

/// Creation, a push into the tail and a roll-over's commit each leave the head pending; a
/// lease and the checkpoint are fields of the same head, and checkpointing at the version
/// clears the mark and the lease in one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_head_holds_the_mark_the_checkpoint_and_the_lease() {
    for small in [false, true] {
        let Some(store) = outbox_store(small).await else {
            return;
        };
        let outbox = outbox(&store);
        append(&store, "a", 0, &bots("a", 2)).await;
        let document = head_document(&store, "a").await;
        assert!(
            matches!(document.get(head::OUTBOX_PENDING), Some(Bson::DateTime(_))),
            "created pending: {document}"
        );
        assert_eq!(outbox_fields(&document), [head::OUTBOX_PENDING]);

        let entry = outbox
            .lease(&id("a"), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!((entry.version, entry.published), (2, 0));
        let document = head_document(&store, "a").await;
        assert_eq!(document.get_str(head::OUTBOX_LEASE).ok(), Some("relay-1"));
        assert!(
            matches!(document.get(head::OUTBOX_LEASE_AT), Some(Bson::DateTime(_))),
            "{document}"
        );
        assert_eq!(number(&document, head::OUTBOX_LEASE_MS), 30_000);

        outbox
            .checkpoint(&id("a"), "relay-1", 0, 2)
            .await
            .expect("checkpoint");
        let document = head_document(&store, "a").await;
        assert_eq!(outbox_fields(&document), [head::OUTBOX_PUBLISHED]);
        assert_eq!(number(&document, head::OUTBOX_PUBLISHED), 2);
        assert!(!pending(&store).await.contains(&"a".to_owned()));

        // A push (default heads) or a roll-over (heads of 3: 2 + 3 events do not fit).
        append(&store, "a", 2, &bots("b", 3)).await;
        let document = head_document(&store, "a").await;
        assert_eq!(
            outbox_fields(&document),
            [head::OUTBOX_PENDING, head::OUTBOX_PUBLISHED],
            "small heads: {small}"
        );
        if small {
            assert_eq!(number(&document, head::TAIL_SEQ), 3, "rolled over");
        }
        assert!(pending(&store).await.contains(&"a".to_owned()));
        let entry = outbox
            .lease(&id("a"), "relay-2", TTL)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!((entry.version, entry.published), (5, 2));
        outbox
            .checkpoint(&id("a"), "relay-2", 2, 5)
            .await
            .expect("checkpoint");
    }
}

/// With the outbox off (the default) the store has none, and appends write no outbox field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_outbox_heads_hold_none_of_it() {
    let Some(store) = common::store_with(|config| config.with_bucket_size(3, 2048)).await else {
        return;
    };
    assert!(store.outbox().is_none());
    append(&store, "a", 0, &bots("a", 2)).await;
    append(&store, "a", 2, &bots("b", 1)).await;
    append(&store, "a", 3, &bots("c", 3)).await;
    let document = head_document(&store, "a").await;
    assert_eq!(number(&document, head::TAIL_SEQ), 4, "rolled over");
    assert!(outbox_fields(&document).is_empty(), "{document}");
}

/// A relay leases at version 3 and publishes up to 3; an append lands before its checkpoint:
/// the checkpoint moves to 3, and the conversation stays pending for the new events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_before_the_checkpoint_keeps_the_conversation_pending() {
    for small in [false, true] {
        let Some(store) = outbox_store(small).await else {
            return;
        };
        let outbox = outbox(&store);
        append(&store, "a", 0, &bots("a", 3)).await;
        let entry = outbox
            .lease(&id("a"), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!((entry.version, entry.published), (3, 0));
        append(&store, "a", 3, &bots("b", 2)).await;
        outbox
            .checkpoint(&id("a"), "relay-1", 0, 3)
            .await
            .expect("checkpoint");
        assert!(pending(&store).await.contains(&"a".to_owned()));
        let document = head_document(&store, "a").await;
        assert_eq!(
            outbox_fields(&document),
            [head::OUTBOX_PENDING, head::OUTBOX_PUBLISHED]
        );
        assert_eq!(number(&document, head::OUTBOX_PUBLISHED), 3);
        let entry = outbox
            .lease(&id("a"), "relay-2", TTL)
            .await
            .expect("lease")
            .expect("given back by the checkpoint");
        assert_eq!((entry.version, entry.published), (5, 3));
        // Beyond the version: refused, nothing changed.
        let beyond = outbox.checkpoint(&id("a"), "relay-2", 3, 6).await;
        assert_eq!(
            beyond.expect_err("beyond the version").kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            number(&head_document(&store, "a").await, head::OUTBOX_PUBLISHED),
            3
        );
        outbox
            .checkpoint(&id("a"), "relay-2", 3, 5)
            .await
            .expect("checkpoint");
        assert!(!pending(&store).await.contains(&"a".to_owned()));
    }
}

/// An append that conflicts writes no mark: a conversation published whole stays off the
/// pending list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_append_marks_nothing() {
    for small in [false, true] {
        let Some(store) = outbox_store(small).await else {
            return;
        };
        let outbox = outbox(&store);
        append(&store, "a", 0, &bots("a", 3)).await;
        outbox
            .lease(&id("a"), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        outbox
            .checkpoint(&id("a"), "relay-1", 0, 3)
            .await
            .expect("checkpoint");
        for stale in [0, 1, 2, 4] {
            let result = store
                .append(&Append::new(id("a"), stale, &bots("x", 2)).expect("append"))
                .await;
            assert_eq!(
                result.expect_err("stale").kind(),
                ErrorKind::Conflict,
                "{stale}"
            );
        }
        assert!(!pending(&store).await.contains(&"a".to_owned()));
        let document = head_document(&store, "a").await;
        assert_eq!(outbox_fields(&document), [head::OUTBOX_PUBLISHED]);
    }
}

/// A lease another relay holds hides the conversation from `pending` until it runs out (by
/// the server's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_leaves_out_conversations_leased_elsewhere() {
    let Some(store) = outbox_store(false).await else {
        return;
    };
    let outbox = outbox(&store);
    append(&store, "a", 0, &bots("a", 1)).await;
    append(&store, "b", 0, &bots("b", 1)).await;
    outbox
        .lease(&id("a"), "relay-1", Duration::from_millis(400))
        .await
        .expect("lease")
        .expect("free");
    assert_eq!(pending(&store).await, ["b"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut now = pending(&store).await;
    now.sort();
    assert_eq!(now, ["a", "b"], "the lease ran out");
}

/// Pending conversations come oldest first: by their oldest append not yet published, which
/// later appends do not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_conversations_come_oldest_first() {
    let Some(store) = outbox_store(false).await else {
        return;
    };
    let outbox = outbox(&store);
    for sender in ["c", "a", "b"] {
        append(&store, sender, 0, &bots(sender, 1)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    append(&store, "c", 1, &bots("c", 1)).await;
    let first: Vec<String> = outbox
        .pending(2)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert_eq!(first, ["c", "a"]);
    assert!(outbox.pending(0).await.expect("pending").is_empty());
}

/// The first append to a conversation only Rasa's collection holds adopts it: the head it
/// inserts is pending, with every event (Rasa's included) still to publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_conversation_is_pending_from_its_first_event() {
    let Some(store) = outbox_store(true).await else {
        return;
    };
    let rasa_events: Vec<Bson> = [
        Event::action("action_session_start").at(1_700_000_000.0),
        Event::session_started().at(1_700_000_000.5),
        Event::action("action_listen").at(1_700_000_001.0),
        Event::user("hi", "greet", 0.98).at(1_700_000_002.0),
    ]
    .iter()
    .map(|event| {
        let value: serde_json::Value =
            serde_json::from_str(&event.to_rasa_json()).expect("event JSON");
        bson::to_bson(&value).expect("BSON")
    })
    .collect();
    store
        .database()
        .collection::<Document>(store.collection_name())
        .insert_one(doc! { "sender_id": "rasa-1", "events": rasa_events })
        .await
        .expect("Rasa's document");
    assert!(
        pending(&store).await.is_empty(),
        "Rasa's copy is not pending"
    );
    append(&store, "rasa-1", 4, &bots("new", 1)).await;
    assert_eq!(pending(&store).await, ["rasa-1"]);
    let entry = outbox(&store)
        .lease(&id("rasa-1"), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (5, 0));
}

/// A conversation that does not exist (never created, or deleted) has nothing to publish: its
/// lease is empty and settles at 0; a checkpoint past 0 is a conflict. A delete takes the
/// checkpoint and the lease with the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_conversations_have_nothing_to_publish() {
    let Some(store) = outbox_store(false).await else {
        return;
    };
    let outbox = outbox(&store);
    let entry = outbox
        .lease(&id("nobody"), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("nothing held");
    assert_eq!((entry.version, entry.published), (0, 0));
    outbox
        .checkpoint(&id("nobody"), "relay-1", 0, 0)
        .await
        .expect("settled");

    append(&store, "a", 0, &bots("a", 2)).await;
    outbox
        .lease(&id("a"), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    let trackers = tracker_core::TrackerStore::new(store.clone());
    assert!(trackers.delete("a").await.expect("delete"));
    assert!(!pending(&store).await.contains(&"a".to_owned()));
    let late = outbox.checkpoint(&id("a"), "relay-1", 0, 2).await;
    assert_eq!(
        late.expect_err("deleted meanwhile").kind(),
        ErrorKind::Conflict
    );
}
