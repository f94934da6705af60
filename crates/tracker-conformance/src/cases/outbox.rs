//! The outbox contract (`tracker_core::outbox`) and the relay on top of it. Each case takes a
//! store of its own with its outbox on: a relay publishes every pending conversation of the
//! store, so a store shared with other cases would hand their conversations to this case's
//! relay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tracker_core::{
    BrokerMessage, ChannelBroker, ErrorKind, EventBroker, Outbox, Relay, RelayOptions, Result,
    SenderId, Store, TrackerStore, async_trait,
};

use super::{expect_kind, fresh, session};

fn outbox_of<S: Store>(store: &S) -> &dyn Outbox {
    store
        .outbox()
        .expect("an outbox case needs a store with its outbox on")
}

fn id(text: &str) -> SenderId {
    SenderId::new(text).expect("a valid id")
}

/// Every pending conversation of the store, asked in pages of `limit`.
async fn pending_ids(outbox: &dyn Outbox) -> Vec<String> {
    let mut ids: Vec<String> = outbox
        .pending(10_000)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    ids.sort();
    ids
}

const TTL: Duration = Duration::from_secs(30);

/// An append makes its conversation pending; a lease gives it to one relay at a time, with
/// its version and checkpoint; a checkpoint moves only from the value read and only under
/// the lease, gives the lease back, and at the version takes the conversation off the list.
pub async fn outbox_lease_and_checkpoint<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let outbox = outbox_of(store.as_ref());
    let trackers = TrackerStore::from_arc(store.clone());
    let (a, b) = (fresh("outbox-a"), fresh("outbox-b"));
    trackers
        .append(&a, 0, &session(1_700_000_000.0, 1, "a"))
        .await
        .expect("append a");
    trackers
        .append(&b, 0, &session(1_700_000_000.0, 2, "b"))
        .await
        .expect("append b");
    let pending = pending_ids(outbox).await;
    assert!(pending.contains(&a) && pending.contains(&b), "{pending:?}");

    let entry = outbox
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published, entry.lag()), (7, 0, 7));
    assert_eq!(
        outbox.lease(&id(&a), "relay-2", TTL).await.expect("lease"),
        None,
        "a lease held by relay-1 is not given to relay-2"
    );
    let renewed = outbox.lease(&id(&a), "relay-1", TTL).await.expect("renew");
    assert_eq!(renewed.map(|entry| entry.published), Some(0));

    expect_kind(
        outbox.checkpoint(&id(&a), "relay-2", 0, 7).await,
        ErrorKind::Conflict,
        "a checkpoint without the lease",
    );
    expect_kind(
        outbox.checkpoint(&id(&a), "relay-1", 1, 7).await,
        ErrorKind::Conflict,
        "a checkpoint from another value",
    );
    outbox
        .checkpoint(&id(&a), "relay-1", 0, 3)
        .await
        .expect("checkpoint part");
    assert!(pending_ids(outbox).await.contains(&a), "4 events left");
    let entry = outbox
        .lease(&id(&a), "relay-2", TTL)
        .await
        .expect("lease")
        .expect("given back by the checkpoint");
    assert_eq!((entry.version, entry.published), (7, 3));
    outbox
        .checkpoint(&id(&a), "relay-2", 3, 7)
        .await
        .expect("checkpoint the rest");
    let pending = pending_ids(outbox).await;
    assert!(!pending.contains(&a), "published whole: {pending:?}");
    assert!(pending.contains(&b), "{pending:?}");

    // An append after the checkpoint makes it pending again, from the checkpoint.
    trackers
        .append(&a, 7, &session(1_700_000_100.0, 0, "a2"))
        .await
        .expect("append again");
    assert!(pending_ids(outbox).await.contains(&a));
    let entry = outbox
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (10, 7));
    outbox
        .checkpoint(&id(&a), "relay-1", 7, 10)
        .await
        .expect("checkpoint");
}

/// A lease ends by itself after its time: a relay that died holding one does not stall the
/// conversation.
pub async fn outbox_lease_expires<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let outbox = outbox_of(store.as_ref());
    let trackers = TrackerStore::from_arc(store.clone());
    let a = fresh("outbox-expiry");
    trackers
        .append(&a, 0, &session(1_700_000_000.0, 1, "a"))
        .await
        .expect("append");
    let short = Duration::from_millis(300);
    assert!(
        outbox
            .lease(&id(&a), "dead-relay", short)
            .await
            .expect("lease")
            .is_some()
    );
    assert_eq!(
        outbox.lease(&id(&a), "relay-2", TTL).await.expect("lease"),
        None
    );
    tokio::time::sleep(short * 4).await;
    let entry = outbox
        .lease(&id(&a), "relay-2", TTL)
        .await
        .expect("lease")
        .expect("the dead relay's lease has expired");
    assert_eq!(entry.published, 0);
    expect_kind(
        outbox.checkpoint(&id(&a), "dead-relay", 0, 7).await,
        ErrorKind::Conflict,
        "the dead relay's late checkpoint",
    );
    outbox
        .checkpoint(&id(&a), "relay-2", 0, 7)
        .await
        .expect("checkpoint");
}

/// A failed append leaves nothing to publish, and a delete takes the checkpoint with the
/// conversation: one started again under the same id is published from its first event.
pub async fn outbox_failed_appends_and_deletes<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let outbox = outbox_of(store.as_ref());
    let trackers = TrackerStore::from_arc(store.clone());
    let a = fresh("outbox-delete");
    let events = session(1_700_000_000.0, 1, "a");
    expect_kind(
        trackers.append(&a, 3, &events).await,
        ErrorKind::Conflict,
        "an append to a conversation that does not exist at 3",
    );
    if pending_ids(outbox).await.contains(&a) {
        let entry = outbox
            .lease(&id(&a), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
        assert_eq!(entry.lag(), 0, "a failed append has nothing to publish");
        outbox
            .checkpoint(&id(&a), "relay-1", 0, 0)
            .await
            .expect("settle");
        assert!(!pending_ids(outbox).await.contains(&a));
    }

    trackers.append(&a, 0, &events).await.expect("append");
    let entry = outbox
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    outbox
        .checkpoint(&id(&a), "relay-1", entry.published, entry.version)
        .await
        .expect("checkpoint");
    assert!(trackers.delete(&a).await.expect("delete"));
    trackers
        .append(&a, 0, &events[..2])
        .await
        .expect("start again");
    assert!(pending_ids(outbox).await.contains(&a));
    let entry = outbox
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!(
        (entry.version, entry.published),
        (2, 0),
        "the checkpoint went with the deleted conversation"
    );
    outbox
        .checkpoint(&id(&a), "relay-1", 0, 2)
        .await
        .expect("checkpoint");
}

/// What a consumer received per conversation: sequence numbers in arrival order.
fn by_conversation(messages: &[BrokerMessage]) -> BTreeMap<String, Vec<u64>> {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in messages {
        seen.entry(message.sender_id.clone())
            .or_default()
            .push(message.seq);
    }
    seen
}

/// A broker that refuses every `every`-th publish, in front of a real channel.
#[derive(Debug)]
struct Refusing {
    inner: ChannelBroker,
    every: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl EventBroker for Refusing {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call.is_multiple_of(self.every) {
            // Half the batch reaches the consumer before the broker fails: a publish that
            // fails part-way, as a dropped connection does.
            let half = messages.len() / 2;
            self.inner.publish(&messages[..half]).await?;
            return Err(tracker_core::Error::unavailable(
                "the broker refused the batch",
            ));
        }
        self.inner.publish(messages).await
    }
}

/// Writers append to many conversations while two relays publish, through a broker that
/// fails every third publish part-way: afterwards every event has been delivered, in order
/// per conversation once a consumer drops what it has seen (a message whose `seq` is not
/// above the last it processed), and the relays leave nothing pending.
pub async fn relays_deliver_every_event_in_order<S: Store + 'static>(store: S) {
    const CONVERSATIONS: usize = 12;
    const TURNS: usize = 6;
    let store = Arc::new(store);
    let trackers = TrackerStore::from_arc(store.clone());
    let (channel, mut receiver) = ChannelBroker::new(100_000);
    let broker = Arc::new(Refusing {
        inner: channel,
        every: 3,
        calls: AtomicUsize::new(0),
    });
    let relay = |name: &str| {
        let mut options = RelayOptions::default();
        options.name = name.to_owned();
        options.messages_per_batch = 5;
        options.idle_wait = Duration::from_millis(20);
        options.max_backoff = Duration::from_millis(100);
        Relay::new(store.clone(), broker.clone())
            .expect("the store has an outbox")
            .with_options(options)
    };
    let relays = [relay("relay-1"), relay("relay-2")];
    let stop = Arc::new(tokio::sync::Notify::new());
    let running: Vec<_> = relays
        .iter()
        .map(|relay| {
            let (relay, stop) = (relay.clone(), stop.clone());
            tokio::spawn(async move { relay.run(stop.notified()).await })
        })
        .collect();

    let ids: Vec<String> = (0..CONVERSATIONS)
        .map(|n| fresh(&format!("relay-{n}")))
        .collect();
    let mut writers = Vec::new();
    for sender in ids.clone() {
        let trackers = trackers.clone();
        writers.push(tokio::spawn(async move {
            let mut version = 0;
            for turn in 0..TURNS {
                let events = session(1_700_000_000.0 + turn as f64 * 100.0, 1, "r");
                version = trackers
                    .append(&sender, version, &events)
                    .await
                    .expect("append");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            version
        }));
    }
    let mut versions = BTreeMap::new();
    for (writer, sender) in writers.into_iter().zip(&ids) {
        versions.insert(sender.clone(), writer.await.expect("writer"));
    }

    // Consume until every conversation's last event has arrived (bounded).
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let received = by_conversation(&messages);
        let done = versions.iter().all(|(sender, version)| {
            received
                .get(sender)
                .is_some_and(|seqs| seqs.iter().max() == Some(version))
        });
        if done {
            break;
        }
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => panic!("the channel closed"),
            Err(_) => panic!("not every event arrived within 60 s: {received:?}"),
        }
    }
    stop.notify_waiters();
    for task in running {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the relay stops")
            .expect("relay task")
            .expect("relay");
    }
    while let Ok(message) = receiver.try_recv() {
        messages.push(message);
    }
    let outbox = outbox_of(store.as_ref());
    let pending = pending_ids(outbox).await;
    assert!(
        !ids.iter().any(|id| pending.contains(id)),
        "delivered, yet pending: {pending:?}"
    );

    let received = by_conversation(&messages);
    let mut duplicates = 0;
    for sender in &ids {
        let seqs = received.get(sender).cloned().unwrap_or_default();
        let mut last = 0;
        let mut processed = Vec::new();
        for seq in seqs {
            if seq <= last {
                duplicates += 1;
                continue;
            }
            processed.push(seq);
            last = seq;
        }
        let expected: Vec<u64> = (1..=versions[sender]).collect();
        assert_eq!(
            processed, expected,
            "{sender}: delivered in order, every event"
        );
    }
    let refused = broker.calls.load(Ordering::Relaxed) / 3;
    assert!(refused > 0, "the broker refused no batch");
    assert!(
        relays
            .iter()
            .map(|relay| relay.stats().failed_batches())
            .sum::<u64>()
            > 0,
        "the relays counted no failure"
    );
    eprintln!(
        "{} messages for {} events, {duplicates} duplicates after {refused} refused batches",
        messages.len(),
        versions.values().sum::<u64>()
    );
}
