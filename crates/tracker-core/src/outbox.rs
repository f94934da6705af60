//! Gap-free delivery to an event broker: what a store keeps so that a [`Relay`] can publish
//! every appended event at least once, in order per conversation.
//!
//! # The contract
//!
//! A store with its outbox on keeps, per conversation and in the same atomic write as every
//! append (the same transaction, script or conditional write), two facts: the conversation's
//! version, and that it has events still to publish. Next to them it keeps the conversation's
//! *checkpoint* — the sequence number up to which a relay has had every event acknowledged by
//! the broker — and a *lease*: which relay may publish the conversation, until when.
//!
//! - [`Outbox::pending`] finds conversations that may have unpublished events. It may return
//!   a conversation with nothing left to publish (a relay then checkpoints it at its version,
//!   which takes it off the list), never miss one that has some.
//! - [`Outbox::lease`] gives one relay the conversation for a while; another relay asking
//!   meanwhile gets `None`. A relay publishes only what it holds the lease of, so relays
//!   running side by side never publish a conversation's events out of order.
//! - [`Outbox::checkpoint`] moves the checkpoint after the broker acknowledged, only from the
//!   value the relay read and only under its lease, and gives the lease back.
//!
//! Deleting a conversation deletes its checkpoint with it: a conversation started again under
//! the same id is published again from its first event.
//!
//! [`Relay`]: crate::relay::Relay

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::sender_id::SenderId;

/// A conversation as a relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The conversation.
    pub sender_id: SenderId,
    /// Its version (0: it does not exist, e.g. deleted since it was appended to).
    pub version: u64,
    /// The checkpoint: every event up to this sequence number has been published.
    pub published: u64,
}

impl OutboxEntry {
    /// Events still to publish.
    pub fn lag(&self) -> u64 {
        self.version.saturating_sub(self.published)
    }
}

/// The outbox side of a [`Store`](crate::Store), reached with
/// [`Store::outbox`](crate::Store::outbox): see the [module documentation](self).
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Up to `limit` conversations that may hold events not published yet and whose lease is
    /// not held by another relay, oldest first where the store keeps an order.
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>>;

    /// Takes (or renews) `relay`'s lease on a conversation for `ttl` and returns its version
    /// and checkpoint, or `None` while another relay's lease on it is live.
    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>>;

    /// Records that every event up to `to` has been published, if the checkpoint is at `from`
    /// and `relay` holds the lease, and gives the lease back. When `to` is the conversation's
    /// version, the conversation stops being pending (an append meanwhile keeps it pending).
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) when the checkpoint is not at `from` or the
    /// lease is not `relay`'s (it expired and another relay took it): nothing is changed.
    async fn checkpoint(&self, sender_id: &SenderId, relay: &str, from: u64, to: u64)
    -> Result<()>;
}

/// The lease a relay takes when it does not say otherwise: long against one batch's publish
/// (which the brokers bound by their own timeouts), short against a relay that died holding
/// it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
