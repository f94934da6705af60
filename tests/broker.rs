//! Saved events reach the event broker after the append, in order, once, in Rasa's shape.

use std::sync::Arc;

use tracker_core::json::to_python_json;
use tracker_core::{
    BrokerMessage, ChannelBroker, Error, ErrorKind, Event, EventBroker, Result, TrackerStore,
};
use tracker_memory::MemoryStore;

#[tokio::test]
async fn saves_publish_their_new_events_once_in_order() {
    let (broker, mut received) = ChannelBroker::new(64);
    let store = TrackerStore::new(MemoryStore::new()).with_event_broker(Arc::new(broker));
    let mut tracker = store.get_or_create_tracker("bob").await.expect("tracker");
    tracker.update(Event::user("hi", "greet", 1.0).at(1_700_000_000.0));
    tracker.update(Event::bot("hello").at(1_700_000_001.0));
    store.save(&mut tracker).await.expect("save");
    store
        .save(&mut tracker)
        .await
        .expect("save again: nothing new");
    tracker.update(Event::action("action_listen").at(1_700_000_002.0));
    store.save(&mut tracker).await.expect("save");

    let mut messages = Vec::new();
    while let Ok(message) = received.try_recv() {
        messages.push(message);
    }
    assert_eq!(messages.len(), 3, "each event once");
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Rasa's body: the sender id, then every key of the event.
    assert_eq!(
        to_python_json(&messages[1].body).expect("render"),
        r#"{"sender_id": "bob", "event": "bot", "timestamp": 1700000001.0, "text": "hello", "data": {}, "metadata": {}}"#
    );
    assert_eq!(store.publish_stats().expect("stats").published(), 3);

    // A conflicting save publishes nothing.
    let mut stale = store.retrieve("bob").await.expect("read").expect("exists");
    let mut winner = stale.clone();
    winner.update(Event::bot("first").at(1_700_000_003.0));
    stale.update(Event::bot("second").at(1_700_000_004.0));
    store.save(&mut winner).await.expect("save");
    let error = store.save(&mut stale).await.expect_err("conflict");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    let message = received.try_recv().expect("the winner's event");
    assert_eq!(message.body["text"], "first");
    assert!(
        received.try_recv().is_err(),
        "nothing published for the loser"
    );
}

#[derive(Debug)]
struct Down;

#[async_trait::async_trait]
impl EventBroker for Down {
    async fn publish(&self, _: &[BrokerMessage]) -> Result<()> {
        Err(Error::unavailable("broker down"))
    }
}

#[tokio::test]
async fn a_failing_broker_does_not_fail_or_undo_the_save() {
    let store = TrackerStore::new(MemoryStore::new()).with_event_broker(Arc::new(Down));
    let mut tracker = store.get_or_create_tracker("carol").await.expect("tracker");
    tracker.update(Event::bot("stored anyway").at(1_700_000_000.0));
    assert_eq!(store.save(&mut tracker).await.expect("save"), 1);
    assert_eq!(store.version("carol").await.expect("version"), 1);
    let stats = store.publish_stats().expect("stats");
    assert_eq!((stats.published(), stats.failed()), (0, 1));
}
