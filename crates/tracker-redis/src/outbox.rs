//! The store's outbox (see `tracker_core::outbox`), with `outbox` on.
//!
//! Each conversation keeps its checkpoint and a relay's lease in its outbox hash
//! (`N{<tag>}:outbox`), in its own slot, so a lease and a checkpoint are each one script
//! that sees the conversation's version, and a delete removes them with the conversation.
//! Lease times come from the server's clock (`TIME` inside the scripts).
//!
//! The conversations with events to publish are in the pending set (`N{outbox}:pending`). On
//! a single server the append script adds to it and the checkpoint script removes from it,
//! each in the same step as the version it checks, so the set is exact. In a cluster the set
//! lives in another slot than the conversations and no script can see both, so the set is a
//! superset instead, as the index is (see `crate::index`): an append marks the conversation
//! before it runs (and again after it, when the conversation had been published whole), and
//! a checkpoint at the version removes the entry, then checks the conversation again and
//! puts the entry back if an append came in meanwhile.
//!
//! [`Outbox::pending`] returns only conversations with events past their checkpoint, and
//! takes the entries of those published whole off the set as it meets them (entries left by
//! a failed append, a delete, an expiry, or a relay stopped before its removal): in the
//! status script on a single server, by the same remove-then-check steps in a cluster.

use std::collections::HashSet;
use std::time::Duration;

use fred::interfaces::SortedSetsInterface;
use fred::types::Value;
use tracker_core::{Error, Outbox, OutboxEntry, Result, SenderId, async_trait};

use crate::error::{conversation_error, driver_error, unexpected_reply};
use crate::schema::parse_version;
use crate::scripts::{OUTBOX_CHECKPOINT, OUTBOX_LEASE, OUTBOX_STATUS, OUTBOX_UNSETTLED};
use crate::store::RedisStore;

/// Pending-set entries examined per round trip.
const PENDING_BATCH: usize = 500;

#[async_trait]
impl Outbox for RedisStore {
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        if !self.keeps_outbox() || limit == 0 {
            return Ok(Vec::new());
        }
        let pending = self.layout().outbox_pending();
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        loop {
            let batch = (limit - found.len()).clamp(1, PENDING_BATCH);
            let start = offset as i64;
            let stop = (offset + batch - 1) as i64;
            let ids: Vec<String> = self
                .connection()
                .on_key(&pending, |client| {
                    let pending = pending.clone();
                    async move {
                        client
                            .zrange(pending, start, stop, None, false, None, false)
                            .await
                    }
                })
                .await
                .map_err(|e| driver_error("listing the outbox's pending conversations", e))?;
            let statuses = self.statuses(&ids).await?;
            // Entries taken off the set: the next page starts that much earlier.
            let mut removed = 0;
            for (id, status) in ids.iter().zip(statuses) {
                match status {
                    Status::Publish => {}
                    Status::Leased => continue,
                    Status::Settled if !self.is_clustered() => {
                        // The status script took it off the set.
                        removed += 1;
                        continue;
                    }
                    Status::Settled => {
                        match self.unmark(id).await {
                            Ok(true) => removed += 1,
                            Ok(false) => {}
                            Err(error) => tracing::warn!(
                                store = "redis",
                                sender_id = id.as_str(),
                                %error,
                                "could not put a conversation back on the outbox's pending set \
                                 after taking it off"
                            ),
                        }
                        continue;
                    }
                }
                if !seen.insert(id.clone()) {
                    // Met again: the set changed under the paging.
                    continue;
                }
                match SenderId::new(id.as_str()) {
                    Ok(sender_id) => found.push(sender_id),
                    Err(error) => tracing::warn!(
                        store = "redis",
                        sender_id = id.as_str(),
                        %error,
                        "the outbox's pending set holds an id that is not a valid sender id"
                    ),
                }
                if found.len() == limit {
                    return Ok(found);
                }
            }
            if ids.len() < batch {
                return Ok(found);
            }
            offset += batch - removed;
        }
    }

    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>> {
        self.require_outbox()?;
        let id = sender_id.as_str();
        let layout = self.layout();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply = self
            .connection()
            .run(
                &OUTBOX_LEASE,
                vec![layout.head(id), layout.outbox(id)],
                vec![Value::from(relay), Value::from(ttl_ms.to_string())],
            )
            .await
            .map_err(|e| conversation_error(id, "outbox lease", e))?;
        let Value::Array(items) = &reply else {
            return Err(unexpected_reply(id, "outbox lease", &reply));
        };
        match (
            items.first().and_then(Value::as_i64),
            items.get(1),
            items.get(2),
        ) {
            (Some(0), None, None) => Ok(None),
            (Some(1), Some(version), Some(published)) => Ok(Some(OutboxEntry {
                sender_id: sender_id.clone(),
                version: parse_version(id, version)?,
                published: parse_checkpoint(id, published)?,
            })),
            _ => Err(unexpected_reply(id, "outbox lease", &reply)),
        }
    }

    async fn checkpoint(
        &self,
        sender_id: &SenderId,
        relay: &str,
        from: u64,
        to: u64,
    ) -> Result<()> {
        self.require_outbox()?;
        let id = sender_id.as_str();
        let layout = self.layout();
        let clustered = self.is_clustered();
        let mut keys = vec![layout.head(id), layout.outbox(id)];
        if !clustered {
            keys.push(layout.outbox_pending());
        }
        let reply = self
            .connection()
            .run(
                &OUTBOX_CHECKPOINT,
                keys,
                vec![
                    Value::from(relay),
                    Value::from(from.to_string()),
                    Value::from(to.to_string()),
                    Value::from(id),
                ],
            )
            .await
            .map_err(|e| conversation_error(id, "outbox checkpoint", e))?;
        let Value::Array(items) = &reply else {
            return Err(unexpected_reply(id, "outbox checkpoint", &reply));
        };
        let whole = match (items.first().and_then(Value::as_i64), items.get(1)) {
            (Some(1), Some(whole)) => whole.as_i64() == Some(1),
            (Some(0), Some(published)) => {
                let published = parse_checkpoint(id, published)?;
                tracing::debug!(
                    store = "redis",
                    sender_id = id,
                    relay,
                    from,
                    published,
                    "outbox checkpoint conflicts (another checkpoint, or the lease is not the \
                     relay's)"
                );
                return Err(Error::conflict(id, from, published));
            }
            (Some(2), Some(version)) => {
                let version = parse_version(id, version)?;
                return Err(Error::invalid_input(format!(
                    "an outbox checkpoint of {id} from {from} to {to} at version {version}"
                )));
            }
            _ => return Err(unexpected_reply(id, "outbox checkpoint", &reply)),
        };
        if whole && clustered {
            // The checkpoint is recorded either way; an entry that stays is taken off by a
            // later `pending`.
            self.unmark(id).await?;
        }
        Ok(())
    }
}

impl RedisStore {
    /// The error of an outbox operation on a store that keeps no outbox.
    fn require_outbox(&self) -> Result<()> {
        if self.keeps_outbox() {
            Ok(())
        } else {
            Err(Error::config(
                "this Redis store keeps no outbox (`outbox: true` turns it on)",
            ))
        }
    }

    /// What a relay should do with each conversation of the pending set: one script on a
    /// single server (which also takes those published whole off the set); in a cluster one
    /// per conversation, concurrently, each on its primary.
    async fn statuses(&self, sender_ids: &[String]) -> Result<Vec<Status>> {
        if sender_ids.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.layout();
        let statuses = |reply: Value| match reply {
            Value::Array(items) => items.iter().map(Status::from_reply).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let found = if self.is_clustered() {
            let checks = sender_ids.iter().map(|id| async move {
                let reply = self
                    .connection()
                    .run(
                        &OUTBOX_STATUS,
                        vec![layout.head(id), layout.outbox(id)],
                        vec![Value::from("0"), Value::from(id.as_str())],
                    )
                    .await?;
                Ok::<_, fred::error::Error>(
                    statuses(reply).first().copied().unwrap_or(Status::Leased),
                )
            });
            futures::future::try_join_all(checks).await
        } else {
            let mut keys = Vec::with_capacity(2 * sender_ids.len() + 1);
            let mut args = Vec::with_capacity(sender_ids.len() + 1);
            keys.push(layout.outbox_pending());
            args.push(Value::from("1"));
            for id in sender_ids {
                keys.push(layout.head(id));
                keys.push(layout.outbox(id));
                args.push(Value::from(id.as_str()));
            }
            self.connection()
                .run(&OUTBOX_STATUS, keys, args)
                .await
                .map(statuses)
        }
        .map_err(|e| driver_error("checking the pending conversations", e))?;
        // A reply too short leaves the rest out, as if leased: they come in a later call.
        Ok((0..sender_ids.len())
            .map(|i| found.get(i).copied().unwrap_or(Status::Leased))
            .collect())
    }

    /// Takes a conversation published whole off the pending set, in a cluster: the set is in
    /// another slot, so remove the entry, then check the conversation again and put the entry
    /// back if an append came in after the checkpoint (the append's own marks may have come
    /// before the removal). Returns whether the entry was removed (`false`: the removal
    /// failed, logged, and the entry stays, for a later `pending` to take off).
    ///
    /// # Errors
    /// When the entry was removed but could not be put back, or checked and put back, while
    /// the conversation may have events to publish.
    async fn unmark(&self, id: &str) -> Result<bool> {
        let layout = self.layout();
        let pending = layout.outbox_pending();
        let removed = self
            .connection()
            .on_key(&pending, |client| {
                let pending = pending.clone();
                async move { client.zrem::<i64, _, _>(pending, id).await }
            })
            .await;
        if let Err(error) = removed {
            tracing::warn!(
                store = "redis",
                sender_id = id,
                %error,
                "could not take a conversation published whole off the outbox's pending set"
            );
            return Ok(false);
        }
        let unsettled = self
            .connection()
            .run(
                &OUTBOX_UNSETTLED,
                vec![layout.head(id), layout.outbox(id)],
                Vec::new(),
            )
            .await;
        match unsettled {
            Ok(reply) if reply.as_i64() == Some(0) => {}
            Ok(_) => self.mark_pending(&[id]).await?,
            Err(error) => {
                // Unknown whether an append came in: put the entry back, so that a relay
                // looks at the conversation again.
                tracing::debug!(
                    store = "redis",
                    sender_id = id,
                    %error,
                    "could not check a conversation again after taking it off the pending set"
                );
                self.mark_pending(&[id]).await?;
            }
        }
        Ok(true)
    }
}

/// What a relay should do with a conversation of the pending set (`scripts/outbox_status.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Events past its checkpoint, no live lease: publish them.
    Publish,
    /// Another relay's lease is live (or the reply was not understood): leave it.
    Leased,
    /// Published whole: nothing to do (an entry left by a failed append, a delete, an expiry
    /// or a relay stopped between its checkpoint and the removal).
    Settled,
}

impl Status {
    fn from_reply(value: &Value) -> Self {
        match value.as_i64() {
            Some(1) => Self::Publish,
            Some(2) => Self::Settled,
            _ => Self::Leased,
        }
    }
}

/// A checkpoint as stored or returned by a script.
///
/// # Errors
/// [`Error::Corrupt`] naming the conversation when it is not a number.
fn parse_checkpoint(sender_id: &str, value: &Value) -> Result<u64> {
    value
        .as_str()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                sender_id,
                None,
                format!("the stored outbox checkpoint {value:?} is not a number"),
            )
        })
}
