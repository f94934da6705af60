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
//!
//! # Message headers
//!
//! A [`BrokerMessage`] may carry [`headers`](BrokerMessage::headers) of its own, name and text
//! value, in addition to those a broker always sends. Brokers with headers send them (the
//! RabbitMQ broker as AMQP long strings, the Kafka broker as UTF-8 record headers); brokers
//! without (SQL, file) publish the body only. A message's own header never replaces one the
//! broker sends itself (`sender_id`, `seq`, Kafka's `RASA_ENVIRONMENT`). Messages built by
//! [`BrokerMessage::new`] have none; `tracker export --to-broker` sends Rasa's
//! `rasa-export-process-id` this way.
//!
//! # Registering a broker type
//!
//! A [`BrokerRegistration`] describes a broker type to a registry the way a
//! [`Registration`](crate::Registration) describes a store: its name in `endpoints.yml`, the
//! keys it reads and a factory from the `event_broker:` section.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::future::BoxFuture;
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
    /// Headers of this message, in order, sent by the brokers that have headers in addition
    /// to their own (see the [module documentation](self#message-headers)); empty unless set
    /// with [`BrokerMessage::with_header`].
    pub headers: Vec<(String, String)>,
}

impl BrokerMessage {
    /// The message for `event` of `sender_id` at position `seq`: the body a save publishes,
    /// `{"sender_id": ..., **event.as_dict()}`, and no headers of its own.
    pub fn new(sender_id: &str, seq: u64, event: &Event) -> Self {
        let mut body = JsonMap::new();
        body.insert("sender_id".to_owned(), Value::String(sender_id.to_owned()));
        if let Value::Object(fields) = event.to_value() {
            for (key, value) in fields {
                body.insert(key, value);
            }
        }
        Self::from_body(sender_id, seq, Value::Object(body))
    }

    /// A message whose body is `body` as given (for bodies built differently from a save's,
    /// such as Rasa's `rasa export`, which puts `sender_id` after the event's keys), without
    /// headers of its own.
    ///
    /// ```
    /// use serde_json::json;
    /// use tracker_core::BrokerMessage;
    ///
    /// let message = BrokerMessage::from_body("alice", 3, json!({"event": "restart", "sender_id": "alice"}))
    ///     .with_header("rasa-export-process-id", "6f1c0b0e2c8d4bb4a0f5f0d1c9e3a7b2");
    /// assert_eq!(message.header("rasa-export-process-id"), Some("6f1c0b0e2c8d4bb4a0f5f0d1c9e3a7b2"));
    /// ```
    pub fn from_body(sender_id: &str, seq: u64, body: Value) -> Self {
        Self {
            sender_id: sender_id.to_owned(),
            seq,
            body,
            headers: Vec::new(),
        }
    }

    /// The message with the header `name` set to `value` (replacing an earlier value of the
    /// same name).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let value = value.into();
        match self
            .headers
            .iter_mut()
            .find(|(existing, _)| *existing == name)
        {
            Some((_, existing)) => *existing = value,
            None => self.headers.push((name, value)),
        }
        self
    }

    /// The value of this message's own header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Where saved events are published. Implement it for Kafka, RabbitMQ, ... or use the
/// in-process [`ChannelBroker`].
#[async_trait]
pub trait EventBroker: Send + Sync + std::fmt::Debug {
    /// Publishes the events one save appended, in order.
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()>;

    /// Publishes `messages` in order like [`EventBroker::publish`], and on a failure also
    /// tells how many of the leading messages the broker acknowledged before it. The
    /// [`Relay`](crate::Relay) checkpoints after those, so that a message the broker refused
    /// is published again and one it acknowledged is not.
    ///
    /// The default calls `publish` and reports none acknowledged on a failure (the whole
    /// batch is published again); a broker that confirms message by message, as the RabbitMQ
    /// broker does, overrides it.
    ///
    /// # Errors
    /// [`PublishFailure`]: the failure and the count of messages acknowledged before it.
    async fn publish_with_progress(
        &self,
        messages: &[BrokerMessage],
    ) -> std::result::Result<(), PublishFailure> {
        self.publish(messages)
            .await
            .map_err(|error| PublishFailure {
                acknowledged: 0,
                error,
            })
    }
}

/// A publish that failed part-way: see [`EventBroker::publish_with_progress`].
#[derive(Debug)]
#[non_exhaustive]
pub struct PublishFailure {
    /// How many of the leading messages the broker acknowledged before the failure.
    pub acknowledged: usize,
    /// The failure.
    pub error: Error,
}

impl PublishFailure {
    /// A failure after `acknowledged` leading messages were acknowledged.
    pub fn new(acknowledged: usize, error: Error) -> Self {
        Self {
            acknowledged,
            error,
        }
    }
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {} acknowledged messages)",
            self.error, self.acknowledged
        )
    }
}

impl std::error::Error for PublishFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What a broker factory returns: a future of the connected broker.
pub type BrokerFuture = BoxFuture<'static, Result<Arc<dyn EventBroker>>>;

/// A broker type as a registry sees it: the counterpart of a store's
/// [`Registration`](crate::Registration) for the `event_broker:` section of `endpoints.yml`.
///
/// `tracker-broker` exports one per built-in broker (`pika`, `kafka`, `sql`, `file`); the
/// `tracker-store` registry holds them and builds the broker a section names.
#[derive(Clone, Copy)]
pub struct BrokerRegistration {
    /// The type name, as Rasa spells it in `endpoints.yml` (`pika`, `kafka`, `sql`, `file`).
    pub name: &'static str,
    /// Every name that selects this broker, lower case, the type name included; matched
    /// case-insensitively.
    pub aliases: &'static [&'static str],
    /// Whether a section without a type selects this broker (Rasa: RabbitMQ).
    pub default: bool,
    /// The configuration keys the broker reads (derived from its configuration struct).
    pub keys: fn() -> &'static [&'static str],
    /// Builds and connects the broker from the section's keys (`type` removed, `${...}`
    /// expanded). A broker that cannot be reached is an error, never a broker that drops
    /// what it is given.
    pub connect: fn(JsonMap) -> BrokerFuture,
}

impl BrokerRegistration {
    /// Whether `name` selects this broker (case-insensitively).
    pub fn matches(&self, name: &str) -> bool {
        self.aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for BrokerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerRegistration")
            .field("name", &self.name)
            .field("aliases", &self.aliases)
            .field("default", &self.default)
            .field("keys", &(self.keys)())
            .finish_non_exhaustive()
    }
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
