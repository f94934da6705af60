//! The roll-over's guards, with the interleavings a race produces made deterministic: a
//! writer holding a head it read earlier commits after others changed the conversation.

use mongodb::Client;
use tracker_core::{Event, EventData, ExpectedVersion, SenderId};

use super::*;

/// Collections of their own in the test database, with heads of 4 events; dropped by
/// [`Fixture::drop_collections`].
struct Fixture {
    collections: Collections,
}

impl Fixture {
    async fn new() -> Option<Self> {
        let url = tracker_testkit::service_url(tracker_testkit::Service::Mongo).await?;
        let client = Client::with_uri_str(&url.url).await.expect("client");
        let database = client.database("tracker_mongo_test");
        let base = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let collections = Collections {
            heads: database.collection(&format!("{base}{}", schema::HEADS_SUFFIX)),
            events: database.collection(&format!("{base}{}", schema::EVENTS_SUFFIX)),
            bucket_events: 4,
            bucket_bytes: 1 << 20,
            outbox: false,
        };
        Some(Self { collections })
    }

    async fn drop_collections(self) {
        self.collections.heads.drop().await.expect("drop heads");
        self.collections.events.drop().await.expect("drop buckets");
    }

    async fn append(&self, append: &Append) -> u64 {
        self.collections.append(append).await.expect("append")
    }

    async fn head(&self, sender: &str) -> Head {
        match self.collections.load_slot(sender).await.expect("head") {
            Slot::Live(head) => head,
            Slot::Absent | Slot::Deleted => panic!("{sender} does not exist"),
        }
    }

    async fn texts(&self, sender: &str) -> Vec<String> {
        let Slot::Live(conversation) = self
            .collections
            .read(sender, ReadScope::All)
            .await
            .expect("read")
        else {
            panic!("{sender} does not exist");
        };
        conversation
            .events
            .into_iter()
            .map(|event| match event.data {
                EventData::Text(text) => text,
                EventData::Json(value) => value.to_string(),
            })
            .collect()
    }

    /// `late`, prepared against the head `stale`, rolled over now.
    async fn roll_over(&self, stale: &Head, late: &Append) -> bool {
        let entries = late
            .records()
            .iter()
            .map(schema::event_entry)
            .collect::<Result<Vec<_>>>()
            .expect("entries");
        let bytes = late.records().iter().map(schema::encoded_len).sum();
        self.collections
            .roll_over(stale, late, &entries, bytes)
            .await
            .expect("roll over")
    }
}

fn append(sender: &str, version: u64, tag: &str, n: usize) -> Append {
    let events: Vec<Event> = (0..n)
        .map(|i| Event::bot(format!("{tag} {i}")).at(1_700_000_000.0 + i as f64))
        .collect();
    Append::new(SenderId::new(sender).expect("id"), version, &events).expect("append")
}

/// A conversation deleted into a tombstone: a roll-over prepared before does not commit and
/// removes its copy; pushes conflict at version 0; creating it again replaces the tombstone
/// with a head still marked `adopted`; a delete at a stale version deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_stop_late_writers_and_make_way_for_creation() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture.append(&append("s", 0, "old", 4)).await;
    let stale = fixture.head("s").await;
    assert!(
        fixture
            .collections
            .remove("s", &stale, ExpectedVersion::Exact(4), true)
            .await
            .expect("delete into a tombstone")
    );
    assert!(matches!(
        fixture.collections.load_slot("s").await.expect("slot"),
        Slot::Deleted
    ));
    assert!(!fixture.roll_over(&stale, &append("s", 4, "late", 2)).await);
    let copies = fixture
        .collections
        .events
        .count_documents(doc! { bucket::SENDER_ID: "s" })
        .await
        .expect("count");
    assert_eq!(copies, 0, "the late copy was removed");
    let pushed = fixture.collections.append(&append("s", 4, "late", 1)).await;
    assert_eq!(
        pushed.expect_err("deleted").current_version(),
        Some(0),
        "a tombstone is version 0"
    );
    assert!(
        !fixture
            .collections
            .delete("s", ExpectedVersion::Any)
            .await
            .expect("delete a tombstone")
    );
    fixture.append(&append("s", 0, "new", 2)).await;
    let revived = fixture.head("s").await;
    assert!(revived.adopted);
    let error = fixture
        .collections
        .delete("s", ExpectedVersion::Exact(1))
        .await
        .expect_err("stale delete");
    assert_eq!(error.current_version(), Some(2));
    assert_eq!(fixture.texts("s").await.len(), 2);
    assert!(
        fixture
            .collections
            .delete("s", ExpectedVersion::Exact(2))
            .await
            .expect("delete")
    );
    assert!(matches!(
        fixture.collections.load_slot("s").await.expect("slot"),
        Slot::Deleted
    ));
    fixture.drop_collections().await;
}

/// A roll-over prepared at version 3 must not commit after a push took the conversation
/// to version 4 with the same tail start: the version guard stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_over_after_a_push_conflicts() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture.append(&append("s", 0, "start", 3)).await;
    let stale = fixture.head("s").await;
    fixture.append(&append("s", 3, "pushed", 1)).await;
    let before = fixture.texts("s").await;
    assert_eq!(before.len(), 4);

    let committed = fixture.roll_over(&stale, &append("s", 3, "late", 3)).await;
    assert!(!committed, "a stale roll-over must not commit");
    assert_eq!(fixture.texts("s").await, before, "nothing of it is visible");
    fixture.drop_collections().await;
}

/// A roll-over prepared before the conversation was deleted and re-created must not
/// commit into the new conversation (the generation guard), and removes its copy, which
/// belongs to a generation that is gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_over_after_a_delete_conflicts_and_cleans_up() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture.append(&append("s", 0, "old", 4)).await;
    let stale = fixture.head("s").await;
    assert!(
        fixture
            .collections
            .delete("s", tracker_core::ExpectedVersion::Any)
            .await
            .expect("delete")
    );
    fixture.append(&append("s", 0, "new", 4)).await;
    let before = fixture.texts("s").await;

    let committed = fixture.roll_over(&stale, &append("s", 4, "late", 2)).await;
    assert!(
        !committed,
        "a roll-over of a deleted generation must not commit"
    );
    assert_eq!(fixture.texts("s").await, before);
    let copies = fixture
        .collections
        .events
        .count_documents(doc! { bucket::GENERATION: stale.generation })
        .await
        .expect("count");
    assert_eq!(copies, 0, "the dead generation's copy was removed");
    fixture.drop_collections().await;
}

/// A roll-over prepared before the tail grew and was sealed finds the sealed bucket at
/// its key and must not shorten it (copies only ever grow), nor commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_roll_over_never_shortens_a_sealed_bucket() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture.append(&append("s", 0, "start", 2)).await;
    let stale = fixture.head("s").await;
    fixture.append(&append("s", 2, "more", 1)).await;
    fixture.append(&append("s", 3, "seal", 2)).await; // seals 1..=3
    let before = fixture.texts("s").await;
    assert_eq!(before.len(), 5);

    let committed = fixture.roll_over(&stale, &append("s", 2, "late", 3)).await;
    assert!(!committed);
    assert_eq!(
        fixture.texts("s").await,
        before,
        "the sealed bucket is intact"
    );
    fixture.drop_collections().await;
}

/// Two roll-overs prepared at the same version: the first commits, the second does not,
/// and the bucket both copied is complete and single.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_roll_overs_share_one_bucket() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture.append(&append("s", 0, "start", 4)).await;
    let head = fixture.head("s").await;
    assert!(fixture.roll_over(&head, &append("s", 4, "first", 2)).await);
    assert!(!fixture.roll_over(&head, &append("s", 4, "second", 1)).await);
    assert_eq!(
        fixture
            .collections
            .events
            .count_documents(doc! {})
            .await
            .expect("count"),
        1
    );
    assert_eq!(fixture.texts("s").await.len(), 6);
    fixture.drop_collections().await;
}

/// Orphaned buckets — a generation no head has any more — are collected; a live
/// conversation's are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_buckets_are_collected() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    let mut version = 0;
    for turn in 0..3 {
        version = fixture
            .append(&append("gone", version, &format!("t{turn}"), 3))
            .await;
    }
    fixture.append(&append("kept", 0, "a", 3)).await;
    fixture.append(&append("kept", 3, "b", 3)).await;
    let sealed = |sender: &'static str| {
        let events = fixture.collections.events.clone();
        async move {
            events
                .count_documents(doc! { bucket::SENDER_ID: sender })
                .await
                .expect("count")
        }
    };
    assert_eq!((sealed("gone").await, sealed("kept").await), (2, 1));
    // What a delete interrupted after its first step leaves.
    fixture
        .collections
        .heads
        .delete_one(doc! { "_id": schema::head_id("gone") })
        .await
        .expect("delete the head only");
    assert_eq!(
        fixture
            .collections
            .collect_orphans()
            .await
            .expect("collect"),
        2
    );
    assert_eq!((sealed("gone").await, sealed("kept").await), (0, 1));
    assert_eq!(fixture.texts("kept").await.len(), 6);
    assert_eq!(
        fixture.collections.collect_orphans().await.expect("again"),
        0
    );
    fixture.drop_collections().await;
}
