//! The outbox's Redis side, on a single server and on a cluster: nothing written without it,
//! the outbox hash in the conversation's slot, expiring and deleted with it, `pending`'s
//! order and its removal of stale entries, adoption of Rasa's records, and an append racing
//! a relay's removal never leaving a conversation with unpublished events off the pending
//! set (in a cluster the pending set lives in another slot than the conversations).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestStore, eventually, keys_of, store, store_configured};
use tracker_core::{
    BrokerMessage, ChannelBroker, ErrorKind, Event, Outbox, Relay, SenderId, Store, TrackerStore,
};
use tracker_redis::fred::prelude::*;
use tracker_redis::fred::util::redis_keyslot;
use tracker_redis::{RedisStore, hash_tag, tracker_core};
use tracker_testkit::Service;

on_both!(
    without_the_outbox_nothing_more_is_written,
    the_outbox_hash_lives_and_dies_with_its_conversation,
    pending_is_oldest_first_and_drops_settled_entries,
    an_adopted_conversation_is_published_from_its_first_event,
    an_append_racing_a_removal_stays_pending,
);

const TTL: Duration = Duration::from_secs(30);

fn id(text: &str) -> SenderId {
    SenderId::new(text).expect("a valid id")
}

fn outbox(store: &TestStore) -> &dyn Outbox {
    store.outbox().expect("the outbox is on")
}

fn api(store: &TestStore) -> TrackerStore {
    TrackerStore::new(store.0.clone())
}

fn turn(t: f64) -> Vec<Event> {
    vec![
        Event::user("hi", "greet", 0.9).at(t),
        Event::bot("hello").at(t + 0.1),
    ]
}

async fn exists(store: &RedisStore, key: &str) -> bool {
    let n: i64 = store.client().exists(key).await.expect("EXISTS");
    n == 1
}

async fn is_pending(store: &RedisStore, sender_id: &str) -> bool {
    let score: Option<f64> = store
        .client()
        .zscore(store.layout().outbox_pending(), sender_id)
        .await
        .expect("ZSCORE");
    score.is_some()
}

/// The version and the checkpoint as stored.
async fn stored_state(store: &RedisStore, sender_id: &str) -> (u64, u64) {
    let client = store.client();
    let version: Option<String> = client
        .hget(store.layout().head(sender_id), "version")
        .await
        .expect("HGET");
    let published: Option<String> = client
        .hget(store.layout().outbox(sender_id), "published")
        .await
        .expect("HGET");
    let number = |value: Option<String>| value.map_or(0, |v| v.parse().expect("a number"));
    (number(version), number(published))
}

/// With `outbox: false` (the default) the store has no outbox and writes no outbox key.
async fn without_the_outbox_nothing_more_is_written(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    assert!(!store.keeps_outbox());
    assert!(store.outbox().is_none());
    let api = api(&store);
    api.append("plain", 0, &turn(1_700_000_000.0))
        .await
        .expect("append");
    api.append("plain", 2, &turn(1_700_000_010.0))
        .await
        .expect("append again");
    let _ = api
        .append("plain", 1, &turn(1_700_000_020.0))
        .await
        .expect_err("stale");
    let keys = keys_of(&store).await;
    assert!(
        keys.iter().all(|key| !key.contains("outbox")),
        "outbox keys without the outbox: {keys:?}"
    );
    // Asked anyway, the outbox says it is off.
    let direct: &dyn Outbox = &store.0;
    assert_eq!(direct.pending(10).await.expect("pending"), Vec::new());
    let error = direct
        .lease(&id("plain"), "relay", TTL)
        .await
        .expect_err("no outbox");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(api.delete("plain").await.expect("delete"));
}

/// The outbox hash hashes to the conversation's slot whatever the id holds, takes the
/// conversation's `record_exp` expiry, expires with it, and a delete removes it (and, on a
/// single server, the pending entry) with the conversation.
async fn the_outbox_hash_lives_and_dies_with_its_conversation(service: Service) {
    let Some(store) = store_configured(service, |config| {
        config.outbox = true;
        config.record_exp = Some(2);
    })
    .await
    else {
        return;
    };
    let outbox = outbox(&store);
    let api = api(&store);
    let sender = "out {box} 100%";
    let layout = store.layout();
    let slot = redis_keyslot(hash_tag(sender).as_bytes());
    for key in [
        layout.events(sender),
        layout.head(sender),
        layout.outbox(sender),
    ] {
        assert_eq!(redis_keyslot(key.as_bytes()), slot, "{key}");
    }

    api.append(sender, 0, &turn(1_700_000_000.0))
        .await
        .expect("append");
    assert!(is_pending(&store, sender).await);
    let entry = outbox
        .lease(&id(sender), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (2, 0));
    let ttl: i64 = store
        .client()
        .pttl(layout.outbox(sender))
        .await
        .expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 2_000,
        "the outbox hash expires with its conversation: {ttl}"
    );
    outbox
        .checkpoint(&id(sender), "relay-1", 0, 1)
        .await
        .expect("checkpoint part");
    api.append(sender, 2, &turn(1_700_000_010.0))
        .await
        .expect("append again");
    assert_eq!(stored_state(&store, sender).await, (4, 1));
    let gone = eventually(Duration::from_secs(20), || async {
        !exists(&store, &layout.head(sender)).await && !exists(&store, &layout.outbox(sender)).await
    })
    .await;
    assert!(
        gone,
        "the conversation and its outbox hash did not expire together"
    );
    // Expired: started again, it is published from its first event.
    api.append(sender, 0, &turn(1_700_000_100.0))
        .await
        .expect("start again");
    let entry = outbox
        .lease(&id(sender), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (2, 0));
    outbox
        .checkpoint(&id(sender), "relay-1", 0, 1)
        .await
        .expect("checkpoint part");
    assert!(exists(&store, &layout.outbox(sender)).await);

    assert!(api.delete(sender).await.expect("delete"));
    assert!(
        !exists(&store, &layout.outbox(sender)).await,
        "deleted with it"
    );
    if !store.is_clustered() {
        assert!(
            !is_pending(&store, sender).await,
            "the same script unmarks it"
        );
    }
    // A lease on a conversation that does not exist lasts only as long as the lease.
    let entry = outbox
        .lease(&id(sender), "relay-1", Duration::from_millis(300))
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (0, 0));
    let ttl: i64 = store
        .client()
        .pttl(layout.outbox(sender))
        .await
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    outbox
        .checkpoint(&id(sender), "relay-1", 0, 0)
        .await
        .expect("settle");
    assert!(!exists(&store, &layout.outbox(sender)).await);
    assert!(!is_pending(&store, sender).await);
}

/// `pending` returns conversations with events to publish, longest waiting first, without
/// those under a live lease; entries of conversations with nothing to publish (a deleted or
/// expired conversation's, or one published whole) are skipped and taken off the set, even
/// when they fill whole pages.
async fn pending_is_oldest_first_and_drops_settled_entries(service: Service) {
    let Some(store) = store_configured(service, |config| config.outbox = true).await else {
        return;
    };
    let outbox = outbox(&store);
    let api = api(&store);
    let ids: Vec<String> = (0..6).map(|n| format!("p{n}")).collect();
    // Appended in reverse name order, so that oldest first is not the order of the names.
    for sender in ids.iter().rev() {
        api.append(sender, 0, &turn(1_700_000_000.0))
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    api.append("settled", 0, &turn(1_700_000_000.0))
        .await
        .expect("append");
    let entry = outbox
        .lease(&id("settled"), "relay", TTL)
        .await
        .expect("lease")
        .expect("free");
    outbox
        .checkpoint(&id("settled"), "relay", 0, entry.version)
        .await
        .expect("checkpoint");
    assert!(!is_pending(&store, "settled").await);
    // Stale entries ahead of every real one: conversations that do not exist, and one
    // published whole.
    let stale = ["ghost a", "ghost b", "ghost c", "settled"];
    for sender in stale {
        let _: i64 = store
            .client()
            .zadd(
                store.layout().outbox_pending(),
                None,
                None,
                false,
                false,
                (0.0, sender),
            )
            .await
            .expect("ZADD");
    }
    // Another relay holds p4.
    assert!(
        outbox
            .lease(&id("p4"), "other", TTL)
            .await
            .expect("lease")
            .is_some()
    );

    let first = outbox.pending(1).await.expect("pending");
    assert_eq!(first, vec![id("p5")], "the longest waiting");
    for sender in stale {
        assert!(
            !is_pending(&store, sender).await,
            "{sender} was left in the set"
        );
    }
    let all: Vec<String> = outbox
        .pending(100)
        .await
        .expect("pending")
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert_eq!(all, ["p5", "p3", "p2", "p1", "p0"]);
    assert!(
        is_pending(&store, "p4").await,
        "a leased conversation stays in the set"
    );
    let two = outbox.pending(2).await.expect("pending");
    assert_eq!(two, vec![id("p5"), id("p3")]);
}

/// A conversation only Rasa's own store holds is not pending; its first append through this
/// store adopts it like any other append, marks it, and a relay publishes it from its first
/// event, Rasa's events included.
async fn an_adopted_conversation_is_published_from_its_first_event(service: Service) {
    let Some(store) = store_configured(service, |config| config.outbox = true).await else {
        return;
    };
    assert!(store.adopts_rasa());
    let sender = "from rasa";
    let rasa_events = turn(1_700_000_000.0);
    let values: Vec<serde_json::Value> = rasa_events
        .iter()
        .map(|event| serde_json::from_str(&event.to_rasa_json()).expect("JSON"))
        .collect();
    let record =
        tracker_core::json::to_python_json(&serde_json::json!({"events": values, "name": sender}))
            .expect("renders");
    let () = store
        .client()
        .set(store.layout().rasa(sender), record, None, None, false)
        .await
        .expect("SET");
    let api = api(&store);
    assert_eq!(api.version(sender).await.expect("version"), 2);
    let outbox = outbox(&store);
    assert_eq!(outbox.pending(100).await.expect("pending"), Vec::new());

    let added = turn(1_700_000_100.0);
    assert_eq!(api.append(sender, 2, &added).await.expect("adopt"), 4);
    assert_eq!(
        outbox.pending(100).await.expect("pending"),
        vec![id(sender)]
    );
    let (broker, mut received) = ChannelBroker::new(100);
    let relay = Relay::new(Arc::new(store.0.clone()), Arc::new(broker)).expect("an outbox");
    let round = relay.run_once().await.expect("a round");
    assert_eq!((round.published, round.failure), (4, None));
    let mut messages = Vec::new();
    while let Ok(message) = received.try_recv() {
        messages.push(message);
    }
    let seqs: Vec<u64> = messages.iter().map(|message| message.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    for (message, event) in messages.iter().zip(rasa_events.iter().chain(&added)) {
        assert_eq!(message, &BrokerMessage::new(sender, message.seq, event));
    }
    assert_eq!(outbox.pending(100).await.expect("pending"), Vec::new());
    assert_eq!(stored_state(&store, sender).await, (4, 4));
}

/// An append racing a relay that takes its conversation off the pending set leaves the
/// conversation pending. The append carries a large event, so that its script reaches the
/// server well after its first mark; meanwhile a relay on connections of its own settles
/// the conversation at its old version again and again, each time taking it off the pending
/// set — in a cluster, where the set lives in another slot than the conversation, that
/// removes the append's first mark. Afterwards the appended event must be pending, and
/// `pending` returns the conversation. Rounds go on until the race took place in a few of
/// them (the relay saw the first mark and removed it before the append was in); on a single
/// server, where the mark is in the append's own script, a few rounds.
async fn an_append_racing_a_removal_stays_pending(service: Service) {
    const MAX_ROUNDS: usize = 30;
    const RACES: usize = 2;
    const EVENT_BYTES: usize = 16 * 1024 * 1024;
    let Some(writer) = store_configured(service, |config| config.outbox = true).await else {
        return;
    };
    let prefix = writer.layout().key_prefix().expect("a prefix").to_owned();
    let relay_store = RedisStore::connect(
        &common::config(service, &prefix)
            .await
            .expect("the service answered")
            .with_outbox(true),
    )
    .await
    .expect("a second store on the same keys");
    let writer = Arc::new(writer);
    let trackers = TrackerStore::from_arc(writer.clone());
    let big = "x".repeat(EVENT_BYTES);
    let mut raced = 0;
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && raced < RACES && (writer.is_clustered() || rounds < RACES) {
        let round = rounds;
        rounds += 1;
        let sender = format!("raced {round}");
        trackers
            .append(&sender, 0, &[Event::bot("first").at(1_700_000_000.0)])
            .await
            .expect("append");
        let relay: &dyn Outbox = &relay_store;
        let entry = relay
            .lease(&id(&sender), "relay", TTL)
            .await
            .expect("lease")
            .expect("free");
        relay
            .checkpoint(&id(&sender), "relay", 0, entry.version)
            .await
            .expect("checkpoint");
        assert!(!is_pending(&relay_store, &sender).await);

        let done = Arc::new(AtomicBool::new(false));
        let append = {
            let (trackers, sender, big, done) =
                (trackers.clone(), sender.clone(), big.clone(), done.clone());
            tokio::spawn(async move {
                let version = trackers
                    .append(&sender, 1, &[Event::bot(big).at(1_700_000_001.0)])
                    .await
                    .expect("the large append");
                done.store(true, Ordering::SeqCst);
                version
            })
        };
        // Settle the conversation at version 1 until the append is in, noting whether its
        // first mark was seen and removed meanwhile.
        let mut removed_a_mark = false;
        while !done.load(Ordering::SeqCst) {
            let marked = is_pending(&relay_store, &sender).await;
            let entry = relay
                .lease(&id(&sender), "relay", TTL)
                .await
                .expect("lease")
                .expect("only this relay leases");
            relay
                .checkpoint(&id(&sender), "relay", 1, 1)
                .await
                .expect("settle at version 1");
            if entry.version > 1 {
                break;
            }
            removed_a_mark |= marked && !done.load(Ordering::SeqCst);
        }
        assert_eq!(append.await.expect("append task"), 2);
        raced += usize::from(removed_a_mark);
        assert_eq!(stored_state(&relay_store, &sender).await, (2, 1));
        assert!(
            is_pending(&relay_store, &sender).await,
            "round {round}: event 2 is not published, yet its conversation is not pending"
        );
        let pending = relay.pending(1_000).await.expect("pending");
        assert_eq!(pending, vec![id(&sender)], "round {round}");
        let entry = relay
            .lease(&id(&sender), "relay", TTL)
            .await
            .expect("lease")
            .expect("free");
        relay
            .checkpoint(&id(&sender), "relay", 1, entry.version)
            .await
            .expect("publish it");
        assert_eq!(relay.pending(1_000).await.expect("pending"), Vec::new());
    }
    eprintln!("a relay removed the append's first mark in {raced} of {rounds} rounds");
    if writer.is_clustered() {
        assert!(
            raced > 0,
            "the relay never removed an append's first mark: no race took place"
        );
    }
}
