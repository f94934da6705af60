//! The store's outbox (see `tracker_core::outbox`): a checkpoint and a lease per conversation
//! and the set of conversations with events to publish, changed under the same lock as the
//! conversations, so an append and its outbox entry are one step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracker_core::{Error, OutboxEntry, SenderId};

/// A relay's lease.
#[derive(Debug)]
struct Lease {
    relay: String,
    until: Instant,
}

/// The outbox of one store.
#[derive(Debug, Default)]
pub(crate) struct OutboxState {
    /// Checkpoints of conversations published at least once, and leases.
    checkpoints: BTreeMap<String, (u64, Option<Lease>)>,
    /// Conversations with events appended since their checkpoint.
    pending: BTreeSet<String>,
}

impl OutboxState {
    /// An append reached `sender_id` (called under the conversations' write lock).
    pub(crate) fn appended(&mut self, sender_id: &str) {
        self.pending.insert(sender_id.to_owned());
    }

    /// `sender_id` was deleted: its checkpoint goes with it.
    pub(crate) fn deleted(&mut self, sender_id: &str) {
        self.pending.remove(sender_id);
        self.checkpoints.remove(sender_id);
    }

    pub(crate) fn pending(&self, limit: usize, now: Instant) -> Vec<SenderId> {
        self.pending
            .iter()
            .filter(|id| !self.leased(id, None, now))
            .filter_map(|id| SenderId::new(id.as_str()).ok())
            .take(limit)
            .collect()
    }

    /// Whether a live lease on `sender_id` belongs to another relay than `relay`.
    fn leased(&self, sender_id: &str, relay: Option<&str>, now: Instant) -> bool {
        matches!(
            self.checkpoints.get(sender_id),
            Some((_, Some(lease))) if lease.until > now && Some(lease.relay.as_str()) != relay
        )
    }

    pub(crate) fn lease(
        &mut self,
        sender_id: &SenderId,
        version: u64,
        relay: &str,
        ttl: Duration,
        now: Instant,
    ) -> Option<OutboxEntry> {
        if self.leased(sender_id.as_str(), Some(relay), now) {
            return None;
        }
        let (published, lease) = self
            .checkpoints
            .entry(sender_id.as_str().to_owned())
            .or_insert((0, None));
        *lease = Some(Lease {
            relay: relay.to_owned(),
            until: now + ttl,
        });
        Some(OutboxEntry {
            sender_id: sender_id.clone(),
            version,
            published: *published,
        })
    }

    pub(crate) fn checkpoint(
        &mut self,
        sender_id: &SenderId,
        version: u64,
        relay: &str,
        from: u64,
        to: u64,
        now: Instant,
    ) -> tracker_core::Result<()> {
        let id = sender_id.as_str();
        let Some((published, lease)) = self.checkpoints.get_mut(id) else {
            return Err(Error::conflict(id, from, 0));
        };
        let held = matches!(lease, Some(lease) if lease.relay == relay && lease.until > now);
        if !held || *published != from {
            return Err(Error::conflict(id, from, *published));
        }
        if to < from || to > version {
            return Err(Error::invalid_input(format!(
                "an outbox checkpoint of {id} from {from} to {to} at version {version}"
            )));
        }
        *published = to;
        *lease = None;
        if to == version {
            self.pending.remove(id);
        }
        Ok(())
    }
}
