//! Publishing saved events to an event broker, as Rasa streams them to Kafka, RabbitMQ, SQL or
//! Pika brokers.
//!
//! [`TrackerStore::save`](crate::TrackerStore::save) publishes the events a save appended,
//! **after** the append succeeded, in order, each as Rasa's broker message: the event's JSON
//! with the sender id first (`{"sender_id": ..., "event": ..., "timestamp": ..., ...}`).
//!
//! # Delivery guarantee
//!
//! At most once. The store is the source of truth and the append is durable before anything is
//! published; if the process dies between the append and the publish, or the broker fails, the
//! broker misses those events (the save still succeeds; the failure is logged with `tracing`
//! at error level and counted by [`PublishStats`]). A consumer that must see every event reads
//! the store: a conversation's events are numbered, so the `seq` in each message (the
//! `version` the event brought the conversation to) tells a consumer where to resume with
//! [`TrackerStore::read`](crate::TrackerStore::read).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::event::{Event, JsonMap};

/// One published event: Rasa's broker body plus its position in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerMessage {
    /// The conversation.
    pub sender_id: String,
    /// The event's sequence number (the conversation's version after it).
    pub seq: u64,
    /// Rasa's broker body: `{"sender_id": ..., <every key of the event's JSON>}`.
    pub body: Value,
}

impl BrokerMessage {
    /// The message for `event` of `sender_id` at position `seq`.
    pub fn new(sender_id: &str, seq: u64, event: &Event) -> Self {
        let mut body = JsonMap::new();
        body.insert("sender_id".to_owned(), Value::String(sender_id.to_owned()));
        if let Value::Object(fields) = event.to_value() {
            for (key, value) in fields {
                body.insert(key, value);
            }
        }
        Self {
            sender_id: sender_id.to_owned(),
            seq,
            body: Value::Object(body),
        }
    }
}

/// Where saved events are published. Implement it for Kafka, RabbitMQ, ... or use the
/// in-process [`ChannelBroker`].
#[async_trait]
pub trait EventBroker: Send + Sync + std::fmt::Debug {
    /// Publishes the events one save appended, in order.
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()>;
}

/// Counts of publish outcomes, for monitoring the at-most-once delivery.
#[derive(Debug, Default)]
pub struct PublishStats {
    published: AtomicU64,
    failed: AtomicU64,
}

impl PublishStats {
    /// Events published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events whose publish failed (they are stored, but the broker missed them).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, count: usize, ok: bool) {
        let counter = if ok { &self.published } else { &self.failed };
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// An in-process broker: messages go to a bounded tokio channel. A full channel makes saves
/// wait for the consumer (back-pressure); a dropped receiver makes publishes fail.
#[derive(Debug, Clone)]
pub struct ChannelBroker {
    sender: mpsc::Sender<BrokerMessage>,
}

impl ChannelBroker {
    /// A broker and the receiver of its messages, holding at most `capacity` unread messages.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<BrokerMessage>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl EventBroker for ChannelBroker {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        for message in messages {
            self.sender
                .send(message.clone())
                .await
                .map_err(|_| Error::unavailable("the event channel's receiver is gone"))?;
        }
        Ok(())
    }
}

/// A broker with its statistics, as the tracker store holds it.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) broker: Arc<dyn EventBroker>,
    pub(crate) stats: Arc<PublishStats>,
}
