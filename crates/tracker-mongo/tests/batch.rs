//! Batches of appends: creations by one insert, conflicts among them, roll-overs, the
//! outbox, adoption of Rasa's conversations and tombstones.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{append, bots, buckets_of, head_document, id, number, read_texts, texts};
use tracker_core::{Append, ErrorKind, Event, ExpectedVersion, ReadScope, Store};
use tracker_mongo::mongodb::bson::{self, Bson, Document, doc};
use tracker_mongo::schema::head;

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
    let rasa_before = common::documents(rasa.collection()).await;
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
    let rasa_after = common::documents(rasa.collection()).await;
    assert_eq!(rasa_after, rasa_before, "Rasa's documents untouched");
}
