//! The outbox (see `tracker_core::outbox`), kept in the conversations' head documents.
//!
//! - **Pending**: every write that appends events to a conversation — the insert of a new
//!   head, the push into its tail, a roll-over's commit, an adoption's insert — also sets the
//!   head's `outbox_pending` (`buckets.rs`, `adopt.rs`). It is the same single-document write,
//!   so an append and its pending mark are one atomic step, and a failed append leaves
//!   neither. Relays find pending conversations through the sparse index on that field.
//! - **Checkpoint and lease**: `outbox_published`, `outbox_lease` (the relay's name),
//!   `outbox_lease_at` and `outbox_lease_ms` in the same head. Deleting the conversation
//!   removes (or replaces by a tombstone) the head, and these with it, in the one step that
//!   deletes it; a conversation started again is published from its first event.
//! - **Time**: a lease starts at the server's clock (`$currentDate`) and is compared with the
//!   server's clock (`$$NOW`), so the relays' clocks never matter.
//! - **Checkpointing** is one update guarded by the checkpoint read, the lease being the
//!   relay's and live, and — to take the conversation off the pending list — by `version`
//!   being the checkpoint: an append that lands first makes that guard miss, so the
//!   conversation stays pending.

use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use tracker_core::{Error, Outbox, OutboxEntry, Result, SenderId, async_trait};

use crate::buckets::MAX_ATTEMPTS;
use crate::error::driver_error;
use crate::schema::{self, check_owner, get_opt_u64, get_u64, head};

/// The longest lease taken, whatever is asked: one year, far within the range of a date.
const MAX_LEASE_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// The outbox of a store: its heads collection.
#[derive(Clone)]
pub(crate) struct MongoOutbox {
    heads: Collection<Document>,
}

impl fmt::Debug for MongoOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoOutbox")
            .field("heads", &self.heads.name())
            .finish()
    }
}

/// When the lease ends: `outbox_lease_at + outbox_lease_ms` (null without a lease).
fn lease_end() -> Document {
    doc! { "$add": [
        format!("${}", head::OUTBOX_LEASE_AT),
        format!("${}", head::OUTBOX_LEASE_MS),
    ] }
}

/// An `$expr` of a filter: the head's lease is live by the server's clock.
fn lease_live() -> Document {
    doc! { "$gt": [lease_end(), "$$NOW"] }
}

/// Filter clauses: no relay other than `relay` (if given) holds a live lease on the head.
fn lease_free(relay: Option<&str>) -> Vec<Document> {
    let mut free = vec![
        doc! { head::OUTBOX_LEASE: { "$exists": false } },
        doc! { "$expr": { "$lte": [lease_end(), "$$NOW"] } },
    ];
    if let Some(relay) = relay {
        free.push(doc! { head::OUTBOX_LEASE: relay });
    }
    free
}

/// The update giving the lease back.
fn release() -> Document {
    doc! {
        head::OUTBOX_LEASE: "",
        head::OUTBOX_LEASE_AT: "",
        head::OUTBOX_LEASE_MS: "",
    }
}

impl MongoOutbox {
    /// The outbox in `heads`.
    pub(crate) fn new(heads: Collection<Document>) -> Self {
        Self { heads }
    }

    /// A filter on the head of `sender_id` whose checkpoint is at `from` and whose live lease
    /// is `relay`'s.
    fn held_at(sender_id: &str, relay: &str, from: u64) -> Result<Document> {
        let mut filter = doc! {
            "_id": schema::head_id(sender_id),
            head::SENDER_ID: sender_id,
            head::OUTBOX_LEASE: relay,
        };
        filter.insert("$expr", lease_live());
        if from == 0 {
            // A head written before the outbox was turned on has no checkpoint: 0.
            filter.insert(
                "$or",
                vec![
                    doc! { head::OUTBOX_PUBLISHED: 0_i64 },
                    doc! { head::OUTBOX_PUBLISHED: { "$exists": false } },
                ],
            );
        } else {
            filter.insert(head::OUTBOX_PUBLISHED, schema::to_i64(from)?);
        }
        Ok(filter)
    }

    /// One guarded checkpoint update; whether it matched.
    async fn try_checkpoint(&self, filter: Document, update: Document) -> Result<bool> {
        let result = self
            .heads
            .update_one(filter, update)
            .await
            .map_err(|e| driver_error("checkpointing the outbox", e))?;
        Ok(result.matched_count == 1)
    }

    /// After the guarded updates missed: why — an error, [`Missed::Nothing`] for a checkpoint
    /// at 0 of a conversation that does not exist, or [`Missed::Raced`] when they may match
    /// now (a race with an append, or a delete and re-creation): the caller tries again.
    async fn why_not(&self, sender_id: &str, relay: &str, from: u64, to: u64) -> Result<Missed> {
        let context = "checkpointing the outbox";
        let document = self
            .heads
            .find_one(doc! { "_id": schema::head_id(sender_id) })
            .projection(doc! {
                head::SENDER_ID: 1,
                head::DELETED: 1,
                head::VERSION: 1,
                head::OUTBOX_PUBLISHED: 1,
                head::OUTBOX_LEASE: 1,
            })
            .await
            .map_err(|e| driver_error(context, e))?;
        let document = match document {
            Some(document) => {
                check_owner(&document, head::SENDER_ID, sender_id, "head")?;
                (!schema::is_tombstone(&document)).then_some(document)
            }
            None => None,
        };
        let Some(document) = document else {
            // No conversation: nothing is held and nothing is pending. A relay given the
            // empty entry of a missing conversation settles it at 0.
            return if from == 0 && to == 0 {
                Ok(Missed::Nothing)
            } else {
                Err(Error::conflict(sender_id, from, 0))
            };
        };
        let version = get_u64(&document, head::VERSION, sender_id, "head")?;
        let published =
            get_opt_u64(&document, head::OUTBOX_PUBLISHED, sender_id, "head")?.unwrap_or(0);
        if published != from {
            return Err(Error::conflict(sender_id, from, published));
        }
        let named = matches!(document.get(head::OUTBOX_LEASE), Some(Bson::String(r)) if r == relay);
        let held = named
            && self
                .heads
                .find_one(Self::held_at(sender_id, relay, from)?)
                .projection(doc! { "_id": 1 })
                .await
                .map_err(|e| driver_error(context, e))?
                .is_some();
        if !held {
            return Err(Error::conflict(sender_id, from, published));
        }
        if to < from || to > version {
            return Err(Error::invalid_input(format!(
                "an outbox checkpoint of {sender_id:?} from {from} to {to} at version {version}"
            )));
        }
        Ok(Missed::Raced)
    }
}

/// Why a checkpoint's guarded updates matched nothing, when it is not an error.
enum Missed {
    /// The conversation does not exist, and the checkpoint is from 0 to 0: nothing to do.
    Nothing,
    /// The head changed between the updates and the look at it: try again.
    Raced,
}

#[async_trait]
impl Outbox for MongoOutbox {
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let context = "listing the outbox's pending conversations";
        let filter = doc! {
            head::OUTBOX_PENDING: { "$exists": true },
            "$or": lease_free(None),
        };
        let documents: Vec<Document> = self
            .heads
            .find(filter)
            .sort(doc! { head::OUTBOX_PENDING: 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .projection(doc! { "_id": 0, head::SENDER_ID: 1 })
            .await
            .map_err(|e| driver_error(context, e))?
            .try_collect()
            .await
            .map_err(|e| driver_error(context, e))?;
        documents
            .iter()
            .map(|document| match document.get(head::SENDER_ID) {
                Some(Bson::String(id)) => SenderId::new(id.as_str()).map_err(|e| {
                    Error::corrupt(id.as_str(), None, format!("a head's sender id: {e}"))
                }),
                other => Err(Error::corrupt(
                    format!("{other:?}"),
                    None,
                    "a head's `sender_id` is not a string",
                )),
            })
            .collect()
    }

    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>> {
        let id = sender_id.as_str();
        let context = "taking an outbox lease";
        let ttl_ms = i64::try_from(ttl.as_millis()).map_or(MAX_LEASE_MS, |ms| ms.min(MAX_LEASE_MS));
        let leased = self
            .heads
            .find_one_and_update(
                doc! {
                    "_id": schema::head_id(id),
                    head::SENDER_ID: id,
                    head::DELETED: { "$ne": true },
                    "$or": lease_free(Some(relay)),
                },
                doc! {
                    "$set": { head::OUTBOX_LEASE: relay, head::OUTBOX_LEASE_MS: ttl_ms },
                    "$currentDate": { head::OUTBOX_LEASE_AT: true },
                },
            )
            .return_document(ReturnDocument::After)
            .projection(doc! { head::VERSION: 1, head::OUTBOX_PUBLISHED: 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        if let Some(document) = leased {
            return Ok(Some(OutboxEntry {
                sender_id: sender_id.clone(),
                version: get_u64(&document, head::VERSION, id, "head")?,
                published: get_opt_u64(&document, head::OUTBOX_PUBLISHED, id, "head")?.unwrap_or(0),
            }));
        }
        // Not leased: another relay holds it, or there is no conversation.
        let slot = self
            .heads
            .find_one(doc! { "_id": schema::head_id(id) })
            .projection(doc! { head::SENDER_ID: 1, head::DELETED: 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        match slot {
            Some(document) => {
                check_owner(&document, head::SENDER_ID, id, "head")?;
                Ok(schema::is_tombstone(&document).then(|| empty(sender_id)))
            }
            None => Ok(Some(empty(sender_id))),
        }
    }

    async fn checkpoint(
        &self,
        sender_id: &SenderId,
        relay: &str,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let id = sender_id.as_str();
        for _ in 0..MAX_ATTEMPTS {
            if to >= from {
                let published = schema::to_i64(to)?;
                // Published up to the version: off the pending list, unless an append came
                // first (then `version` misses and the next update moves only the checkpoint).
                let mut whole = Self::held_at(id, relay, from)?;
                whole.insert(head::VERSION, published);
                let mut unset = release();
                unset.insert(head::OUTBOX_PENDING, "");
                let update = doc! {
                    "$set": { head::OUTBOX_PUBLISHED: published },
                    "$unset": unset,
                };
                if self.try_checkpoint(whole, update).await? {
                    return Ok(());
                }
                let mut part = Self::held_at(id, relay, from)?;
                part.insert(head::VERSION, doc! { "$gt": published });
                let update = doc! {
                    "$set": { head::OUTBOX_PUBLISHED: published },
                    "$unset": release(),
                };
                if self.try_checkpoint(part, update).await? {
                    return Ok(());
                }
            }
            match self.why_not(id, relay, from, to).await? {
                Missed::Nothing => return Ok(()),
                Missed::Raced => {}
            }
        }
        Err(Error::unavailable(format!(
            "the outbox checkpoint of {id:?} lost {MAX_ATTEMPTS} races; nothing was changed"
        )))
    }
}

/// The entry of a conversation that does not exist: nothing to publish.
fn empty(sender_id: &SenderId) -> OutboxEntry {
    OutboxEntry {
        sender_id: sender_id.clone(),
        version: 0,
        published: 0,
    }
}
