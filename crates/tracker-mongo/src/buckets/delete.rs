//! Deleting a conversation of this store's layout, and collecting the buckets an interrupted
//! delete leaves.
//!
//! A delete reads the head, checks the expected version, then removes the head in one
//! single-document write guarded by what it read (the generation, and the version when one is
//! expected) — or replaces it by a tombstone when the conversation has a copy in Rasa's
//! layout — and only then removes the buckets of that generation, which no read reaches any
//! more.

use futures::TryStreamExt;
use mongodb::bson::doc;
use tracker_core::{Error, ExpectedVersion, Result};

use super::{Collections, MAX_ATTEMPTS};
use crate::error::{driver_error, is_duplicate_key};
use crate::schema::{self, Head, Slot, bucket, head};

/// Checks a delete's expected version against the conversation's.
///
/// # Errors
/// [`Error::Conflict`] with `actual` when `expected` is another exact version.
pub(crate) fn check_expected(
    sender_id: &str,
    expected: ExpectedVersion,
    actual: u64,
) -> Result<()> {
    match expected {
        ExpectedVersion::Exact(expected) if expected != actual => {
            Err(Error::conflict(sender_id, expected, actual))
        }
        _ => Ok(()),
    }
}

impl Collections {
    /// Deletes a conversation of this store's layout if it is at `expected`; returns whether
    /// it existed. A tombstone counts as absent and stays.
    pub(crate) async fn delete(&self, sender_id: &str, expected: ExpectedVersion) -> Result<bool> {
        for _ in 0..MAX_ATTEMPTS {
            match self.load_slot(sender_id).await? {
                Slot::Absent | Slot::Deleted => {
                    check_expected(sender_id, expected, 0)?;
                    return Ok(false);
                }
                Slot::Live(current) => {
                    check_expected(sender_id, expected, current.version)?;
                    if self
                        .remove(sender_id, &current, expected, current.adopted)
                        .await?
                    {
                        return Ok(true);
                    }
                }
            }
        }
        Err(Error::unavailable(format!(
            "the delete of {sender_id:?} lost {MAX_ATTEMPTS} races with deletes and \
             re-creations; nothing was deleted"
        )))
    }

    /// The deleting step: removes the head read as `current` — or replaces it by a tombstone
    /// with `tombstone` — in one write guarded by its generation (and by the version when
    /// `expected` is exact), then its generation's buckets. Returns whether the guarded
    /// write matched; when it did not, the conversation changed since `current` was read and
    /// nothing was deleted.
    pub(crate) async fn remove(
        &self,
        sender_id: &str,
        current: &Head,
        expected: ExpectedVersion,
        tombstone: bool,
    ) -> Result<bool> {
        let mut filter = doc! {
            "_id": schema::head_id(sender_id),
            head::SENDER_ID: sender_id,
            head::GENERATION: current.generation,
        };
        if let ExpectedVersion::Exact(version) = expected {
            filter.insert(head::VERSION, schema::to_i64(version)?);
        }
        let context = "deleting a conversation";
        let matched = if tombstone {
            self.heads
                .replace_one(filter, schema::tombstone(sender_id))
                .await
                .map_err(|e| driver_error(context, e))?
                .matched_count
        } else {
            self.heads
                .delete_one(filter)
                .await
                .map_err(|e| driver_error(context, e))?
                .deleted_count
        };
        if matched == 0 {
            return Ok(false);
        }
        let cleanup = self
            .events
            .delete_many(doc! {
                bucket::SENDER_ID: sender_id,
                bucket::GENERATION: current.generation,
            })
            .await;
        if let Err(e) = cleanup {
            // The conversation is deleted all the same; its buckets are never read again.
            tracing::warn!(
                error = %e,
                sender_id,
                "deleted a conversation but could not remove its buckets"
            );
        }
        Ok(true)
    }

    /// Puts a tombstone into an empty head slot. Returns `false` when the slot holds anything
    /// (a conversation, or a tombstone already).
    pub(crate) async fn bury(&self, sender_id: &str) -> Result<bool> {
        match self.heads.insert_one(schema::tombstone(sender_id)).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(driver_error("deleting a conversation", e)),
        }
    }

    /// Removes the buckets whose generation no head has (what a delete interrupted between
    /// its two steps leaves), and returns how many it removed. Safe while the store is in
    /// use, because a generation is never reused: a re-created conversation gets a new one.
    pub(crate) async fn collect_orphans(&self) -> Result<u64> {
        let context = "collecting orphaned buckets";
        let mut keys = self
            .events
            .find(doc! {})
            .projection(doc! { bucket::SENDER_ID: 1, bucket::GENERATION: 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        let mut seen = std::collections::HashSet::new();
        let mut removed = 0;
        while let Some(key) = keys
            .try_next()
            .await
            .map_err(|e| driver_error(context, e))?
        {
            let (Ok(sender_id), Some(generation)) =
                (key.get_str(bucket::SENDER_ID), key.get(bucket::GENERATION))
            else {
                continue;
            };
            if !seen.insert((sender_id.to_owned(), generation.to_string())) {
                continue;
            }
            let live = self
                .heads
                .find_one(doc! {
                    "_id": schema::head_id(sender_id),
                    head::SENDER_ID: sender_id,
                    head::GENERATION: generation.clone(),
                })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(|e| driver_error(context, e))?;
            if live.is_none() {
                let result = self
                    .events
                    .delete_many(doc! {
                        bucket::SENDER_ID: sender_id,
                        bucket::GENERATION: generation.clone(),
                    })
                    .await
                    .map_err(|e| driver_error(context, e))?;
                removed += result.deleted_count;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                collection = %self.events.name(),
                "removed orphaned buckets"
            );
        }
        Ok(removed)
    }
}
