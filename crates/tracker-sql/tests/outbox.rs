//! The outbox in `tracker_outbox` (`outbox: true`), beyond the conformance cases, on each
//! dialect, each test in a database of its own:
//!
//! - Rasa's own saves on the shared `events` table still succeed, and their rows reach the
//!   outbox through the triggers and the relay, in order with the store's;
//! - the setup: the migration creates the outbox only with `outbox: true`, once, and says
//!   so; a store with the outbox on refuses to write to a database without it (its events
//!   would never reach the relay) until `ensure_schema` creates it; a conversation stored
//!   before is then published whole; a store with `outbox: false` on the same database is
//!   recorded too;
//! - an append between a lease and a checkpoint at the leased version keeps the
//!   conversation pending, from that checkpoint; pending conversations come oldest first;
//! - a batch of appends marks every conversation it wrote to, and only those.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::batch::{fresh, label};
use common::outbox::{Isolated, rasa_mysql, rasa_postgres, rasa_sqlite};
use common::rasa::{Dialect, rasa_row, rasa_save};
use tracker_core::{
    BatchAppend, ChannelBroker, ErrorKind, Event, Relay, RelayOptions, SenderId, Store,
    TrackerStore,
};
use tracker_sql::SqlStore;

const TTL: Duration = Duration::from_secs(30);

fn id(text: &str) -> SenderId {
    SenderId::new(text).expect("a valid id")
}

/// The store's pending conversations, in the order it gives them.
async fn pending(store: &Isolated) -> Vec<String> {
    store
        .outbox()
        .expect("the outbox is on")
        .pending(1000)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// With `outbox: true` on a table Rasa shares: Rasa's own saves (its count and INSERTs)
/// still succeed, and the rows they add reach the outbox in the same statement, as the
/// store's appends do — on a conversation the store writes and on one only Rasa writes — so
/// a relay publishes them in order with the store's (none is lost; a consumer that also gets
/// Rasa's own broker messages drops them by `sender_id` and `seq`); a Rasa insert after a
/// checkpoint makes the conversation pending again from there; a delete takes the outbox row
/// with it, and a conversation Rasa then starts again is published from its first event.
macro_rules! rasa_inserts_reach_the_outbox {
    ($dialect:expr, $isolated:expr, $connect:ident) => {{
        let Some(isolated) = $isolated.await else {
            return;
        };
        let dialect: Dialect = $dialect;
        let mut conn = $connect(&isolated.place).await;
        let store = Arc::new(isolated);
        let trackers = TrackerStore::from_arc(store.clone());
        let outbox = store.outbox().expect("the outbox is on");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (shared, rasa_only) = (format!("shared-{suffix}"), format!("rasa-{suffix}"));
        let row = |id: &str, text: &str| rasa_row(id, &Event::bot(text).at(2.0).to_value());
        trackers
            .append(
                &shared,
                0,
                &[
                    Event::action("action_listen").at(1.0),
                    Event::bot("store 1").at(1.5),
                ],
            )
            .await
            .expect("the store's append");
        rasa_save!(
            &mut conn,
            dialect,
            &[row(&shared, "rasa 1"), row(&shared, "rasa 2")]
        )
        .expect("Rasa's save on the store's conversation");
        rasa_save!(
            &mut conn,
            dialect,
            &[
                row(&rasa_only, "only rasa 1"),
                row(&rasa_only, "only rasa 2")
            ]
        )
        .expect("Rasa's save of a conversation of its own");
        assert_eq!(trackers.version(&shared).await.expect("version"), 4);
        let mut pending: Vec<String> = outbox
            .pending(100)
            .await
            .expect("pending")
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .collect();
        pending.sort();
        let mut expected = vec![shared.clone(), rasa_only.clone()];
        expected.sort();
        assert_eq!(
            pending, expected,
            "Rasa's inserts made their conversations pending"
        );

        let (broker, mut received) = ChannelBroker::new(100);
        let mut options = RelayOptions::default();
        options.name = "relay-rasa".to_owned();
        let relay = Relay::new(store.clone(), Arc::new(broker))
            .expect("the store has an outbox")
            .with_options(options);
        let round = relay.run_once().await.expect("a relay round");
        assert_eq!(round.failure, None);
        assert_eq!(round.published, 6);
        let mut messages = Vec::new();
        while let Ok(message) = received.try_recv() {
            messages.push((message.sender_id.clone(), message.seq, label(&message.body)));
        }
        let of = |id: &str| -> Vec<(u64, String)> {
            messages
                .iter()
                .filter(|(sender, _, _)| sender == id)
                .map(|(_, seq, text)| (*seq, text.clone()))
                .collect()
        };
        let labelled = |items: &[(u64, &str)]| -> Vec<(u64, String)> {
            items
                .iter()
                .map(|(seq, text)| (*seq, (*text).to_owned()))
                .collect()
        };
        assert_eq!(
            of(&shared),
            labelled(&[
                (1, "action_listen"),
                (2, "store 1"),
                (3, "rasa 1"),
                (4, "rasa 2")
            ])
        );
        assert_eq!(
            of(&rasa_only),
            labelled(&[(1, "only rasa 1"), (2, "only rasa 2")])
        );
        assert!(
            outbox.pending(100).await.expect("pending").is_empty(),
            "all published"
        );

        // A Rasa insert after the checkpoint: pending again, from the checkpoint.
        rasa_save!(&mut conn, dialect, &[row(&shared, "rasa 3")]).expect("Rasa's save");
        let id = SenderId::new(shared.as_str()).expect("an id");
        let ttl = std::time::Duration::from_secs(30);
        let entry = outbox
            .lease(&id, "relay-rasa", ttl)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!((entry.version, entry.published), (5, 4));
        outbox
            .checkpoint(&id, "relay-rasa", 4, 5)
            .await
            .expect("checkpoint");

        // A delete takes the outbox row; Rasa starting the conversation again is published
        // from its first event.
        assert!(trackers.delete(&shared).await.expect("delete"));
        assert!(outbox.pending(100).await.expect("pending").is_empty());
        rasa_save!(&mut conn, dialect, &[row(&shared, "again")]).expect("Rasa's save");
        let entry = outbox
            .lease(&id, "relay-rasa", ttl)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!((entry.version, entry.published), (1, 0));
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasa_inserts_reach_the_outbox_postgres() {
    rasa_inserts_reach_the_outbox!(Dialect::Postgres, common::outbox::postgres(), rasa_postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasa_inserts_reach_the_outbox_mysql() {
    rasa_inserts_reach_the_outbox!(Dialect::Mysql, common::outbox::mysql(), rasa_mysql);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasa_inserts_reach_the_outbox_sqlite() {
    rasa_inserts_reach_the_outbox!(Dialect::Sqlite, common::outbox::sqlite_file(), rasa_sqlite);
}

/// The outbox's setup, from a database migrated without it (see the module docs).
async fn setup(plain: Isolated) {
    assert!(plain.outbox().is_none());
    assert!(!plain.keeps_outbox());
    let trackers = TrackerStore::new(plain.store.clone());
    let before = fresh("before");
    trackers
        .append(
            &before,
            0,
            &[Event::bot("b1").at(1.0), Event::bot("b2").at(2.0)],
        )
        .await
        .expect("append without the outbox");

    // The outbox on, without migrating: refused until the outbox exists.
    let mut config = plain.config.clone().with_outbox(true);
    config.migrate = false;
    let outboxed = SqlStore::connect(&config).await.expect("connect");
    assert!(outboxed.keeps_outbox());
    let refused = TrackerStore::new(outboxed.clone())
        .append(&before, 2, &[Event::bot("b3").at(3.0)])
        .await
        .expect_err("an append the relay would never see");
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
    assert!(refused.to_string().contains("migrate-schema"), "{refused}");
    let outbox = outboxed.outbox().expect("the outbox is on");
    let refused = outbox.pending(10).await.expect_err("no outbox yet");
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");

    // Created once, and said so.
    let changes = outboxed.ensure_schema().await.expect("create the outbox");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains("tracker_outbox"), "{changes:?}");
    assert!(outboxed.ensure_schema().await.expect("again").is_empty());
    assert!(
        plain
            .ensure_schema()
            .await
            .expect("without outbox")
            .is_empty()
    );

    // A conversation stored before is pending whole from its next insert on.
    assert!(outbox.pending(10).await.expect("pending").is_empty());
    let with_outbox = TrackerStore::new(outboxed.clone());
    with_outbox
        .append(&before, 2, &[Event::bot("b3").at(3.0)])
        .await
        .expect("append");
    let entry = outbox
        .lease(&id(&before), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (3, 0));

    // A store with the outbox off on the same database is recorded by the triggers too.
    let other = fresh("other");
    trackers
        .append(&other, 0, &[Event::bot("o1").at(1.0)])
        .await
        .expect("append through a store without the outbox");
    let listed: Vec<String> = outbox
        .pending(10)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert_eq!(listed, [other], "the leased one is left out");
    drop(plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_postgres() {
    if let Some(plain) = common::outbox::postgres_with(false).await {
        setup(plain).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_mysql() {
    if let Some(plain) = common::outbox::mysql_with(false).await {
        setup(plain).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sqlite() {
    if let Some(plain) = common::outbox::sqlite_file_with(false).await {
        setup(plain).await;
    }
}

/// An append that lands between a lease and the checkpoint at the leased version keeps the
/// conversation pending, from that checkpoint (the append raised the outbox row's version in
/// its own statement, and the checkpoint clears the pending mark only at the version); the
/// pending list is oldest first, not alphabetical.
async fn appends_between_lease_and_checkpoint(store: Isolated) {
    let outbox = store.outbox().expect("the outbox is on");
    let trackers = TrackerStore::new(store.store.clone());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (first, second) = (format!("z-first-{suffix}"), format!("a-second-{suffix}"));
    for sender in [&first, &second] {
        trackers
            .append(
                sender,
                0,
                &[Event::bot("1").at(1.0), Event::bot("2").at(2.0)],
            )
            .await
            .expect("append");
        // Distinct times on every clock (SQLite's in milliseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pending(&store).await, [first.clone(), second.clone()]);

    let entry = outbox
        .lease(&id(&first), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (2, 0));
    assert_eq!(
        pending(&store).await,
        vec![second.clone()],
        "leased: left out"
    );
    trackers
        .append(&first, 2, &[Event::bot("3").at(3.0)])
        .await
        .expect("an append under the lease");
    outbox
        .checkpoint(&id(&first), "relay-1", 0, 2)
        .await
        .expect("checkpoint at the leased version");
    assert_eq!(
        pending(&store).await,
        [first.clone(), second.clone()],
        "still pending, in its place"
    );
    let entry = outbox
        .lease(&id(&first), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (3, 2));
    let beyond = outbox
        .checkpoint(&id(&first), "relay-1", 2, 4)
        .await
        .expect_err("beyond the version");
    assert_eq!(beyond.kind(), ErrorKind::InvalidInput, "{beyond}");
    let back = outbox
        .checkpoint(&id(&first), "relay-1", 2, 1)
        .await
        .expect_err("backwards");
    assert_eq!(back.kind(), ErrorKind::InvalidInput, "{back}");
    outbox
        .checkpoint(&id(&first), "relay-1", 2, 3)
        .await
        .expect("checkpoint at the version");
    assert_eq!(pending(&store).await, vec![second.clone()]);
    let lost = outbox
        .checkpoint(&id(&first), "relay-1", 3, 3)
        .await
        .expect_err("the lease was given back");
    assert_eq!(lost.kind(), ErrorKind::Conflict, "{lost}");

    // A conversation that does not exist: an empty entry, settled at 0.
    let nobody = id(&fresh("nobody"));
    let entry = outbox
        .lease(&nobody, "relay-1", TTL)
        .await
        .expect("lease")
        .expect("nothing held");
    assert_eq!((entry.version, entry.published), (0, 0));
    outbox
        .checkpoint(&nobody, "relay-1", 0, 0)
        .await
        .expect("settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_between_lease_and_checkpoint_postgres() {
    if let Some(store) = common::outbox::postgres().await {
        appends_between_lease_and_checkpoint(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_between_lease_and_checkpoint_mysql() {
    if let Some(store) = common::outbox::mysql().await {
        appends_between_lease_and_checkpoint(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_between_lease_and_checkpoint_sqlite() {
    if let Some(store) = common::outbox::sqlite_file().await {
        appends_between_lease_and_checkpoint(store).await;
    }
}

/// A batch (one transaction, statements across conversations) marks in the outbox every
/// conversation it wrote to, at its new version and from its last checkpoint, and none it
/// did not: 20 new conversations, 10 existing ones already published, and one at a stale
/// version.
async fn batches_mark_every_conversation(store: Isolated) {
    const EXISTING: usize = 11;
    const STALE: usize = 10;
    let outbox = store.outbox().expect("the outbox is on");
    let trackers = TrackerStore::new(store.store.clone());
    let prefix = fresh("outbox-batch");
    let ids: Vec<String> = (0..31).map(|n| format!("{prefix}-{n:02}")).collect();
    let bots = |tag: &str, count: usize| -> Vec<Event> {
        (0..count)
            .map(|n| Event::bot(format!("{tag} {n}")).at(1.0 + n as f64))
            .collect()
    };
    for sender in &ids[..EXISTING] {
        trackers
            .append(sender, 0, &bots("before", 3))
            .await
            .expect("append");
    }
    for sender in pending(&store).await {
        let entry = outbox
            .lease(&id(&sender), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        outbox
            .checkpoint(&id(&sender), "relay-1", entry.published, entry.version)
            .await
            .expect("checkpoint");
    }
    assert!(pending(&store).await.is_empty(), "all published");

    let events: Vec<Vec<Event>> = (0..31).map(|n| bots("batch", 1 + n % 4)).collect();
    let batch: Vec<BatchAppend<'_>> = ids
        .iter()
        .enumerate()
        .map(|(n, sender_id)| BatchAppend {
            sender_id,
            expected_version: match n {
                STALE => 2,
                0..EXISTING => 3,
                _ => 0,
            },
            events: &events[n],
        })
        .collect();
    let results = trackers.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.iter().enumerate() {
        match (n, result) {
            (STALE, Err(error)) => assert_eq!(error.kind(), ErrorKind::Conflict, "{error}"),
            (STALE, Ok(version)) => panic!("a stale append was written: {version}"),
            (_, result) => assert!(result.is_ok(), "conversation {n}: {result:?}"),
        }
    }
    let mut marked = pending(&store).await;
    marked.sort();
    let mut written: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|&(n, _)| n != STALE)
        .map(|(_, sender)| sender.clone())
        .collect();
    written.sort();
    assert_eq!(marked, written, "the conversations the batch wrote to");
    for (n, sender) in ids.iter().enumerate().filter(|&(n, _)| n != STALE) {
        let entry = outbox
            .lease(&id(sender), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        let before = if n < EXISTING { 3 } else { 0 };
        assert_eq!(
            (entry.version, entry.published),
            (before + events[n].len() as u64, before),
            "conversation {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_mark_every_conversation_postgres() {
    if let Some(store) = common::outbox::postgres().await {
        batches_mark_every_conversation(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_mark_every_conversation_mysql() {
    if let Some(store) = common::outbox::mysql().await {
        batches_mark_every_conversation(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_mark_every_conversation_sqlite() {
    if let Some(store) = common::outbox::sqlite_file().await {
        batches_mark_every_conversation(store).await;
    }
    if let Some(store) = common::outbox::sqlite_memory().await {
        batches_mark_every_conversation(store).await;
    }
}
