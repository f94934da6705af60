//! Appending to one conversation or to many at once ([`Store::append`] and
//! [`Store::append_batch`] of the store), through the adoption of Rasa's conversations
//! (`adopt.rs`) when it is on, else straight on this store's layout (`buckets.rs`).
//!
//! A batch keeps every append its own atomic single-document write, as a single append does,
//! and saves round trips where the server can tell each write's outcome:
//!
//! - New conversations (expected version 0) are created by **one unordered `insert_many`**
//!   of their heads, each the document a single append's creation inserts (pending in the
//!   outbox when it is on). The server inserts each on its own; one whose derived `_id` is
//!   taken fails alone with a duplicate key, at its index. Its slot then holds a conversation
//!   (that append's `Conflict`, with the versions of all of them read back in one query), or a
//!   tombstone, or nothing any more (deleted meanwhile): those take the single append's path,
//!   which replaces a tombstone or creates again. With adoption on, a new conversation Rasa's
//!   collection may hold (one query for all) takes the single append's path too, which
//!   decides between a conflict and a creation.
//! - Every other append (to an existing conversation, a roll-over included, or an adoption)
//!   takes the single append's path, [`CONCURRENCY`] at a time. A batched update would need
//!   each statement's own outcome (did its version guard match?), which the `update` command
//!   does not report (only totals); the `bulkWrite` command, which does, needs MongoDB 8.0.
//!
//! [`Store::append`]: tracker_core::Store::append
//! [`Store::append_batch`]: tracker_core::Store::append_batch

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt, stream};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use tracker_core::{Append, Error, Result};

use crate::adopt::Adoption;
use crate::buckets::{self, Collections};
use crate::error::{DUPLICATE_KEY, driver_error, indexed_write_error, insert_many_write_errors};
use crate::schema::{self, Slot};

/// Most appends of a batch that take the single append's path at once.
pub(crate) const CONCURRENCY: usize = 16;

/// An append's result, at its position in the batch.
type Placed = (usize, Result<u64>);

/// Where appends are written: this store's collections, through the adoption of Rasa's
/// conversations when it is on.
#[derive(Clone, Copy)]
pub(crate) struct Appender<'a> {
    /// This store's layout.
    pub(crate) collections: &'a Collections,
    /// The adoption of Rasa's conversations, when it is on.
    pub(crate) adoption: Option<&'a Adoption>,
}

impl Appender<'_> {
    /// Appends to one conversation (see [`Collections::append`] and [`Adoption::append`]).
    pub(crate) async fn one(&self, append: &Append) -> Result<u64> {
        match self.adoption {
            Some(adoption) => adoption.append(append).await,
            None => self.collections.append(append).await,
        }
    }

    /// Appends to several distinct conversations, each all or nothing and independently of
    /// the others; the results are at the appends' positions.
    ///
    /// # Errors
    /// For the whole batch only when it cannot tell what the creations' insert did (the
    /// connection was lost, a write-concern error), or the look-up of Rasa's conversations
    /// failed (before anything was written).
    pub(crate) async fn batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        let mut results: Vec<Option<Result<u64>>> = appends.iter().map(|_| None).collect();
        let mut creations: Vec<(usize, Document)> = Vec::new();
        let mut singles: Vec<usize> = Vec::new();
        for (position, append) in appends.iter().enumerate() {
            if append.expected_version() != 0 {
                singles.push(position);
                continue;
            }
            let head = buckets::encode(append).and_then(|(entries, bytes)| {
                self.collections.new_head(append, &entries, bytes, false)
            });
            match head {
                Ok(document) => creations.push((position, document)),
                Err(error) => results[position] = Some(Err(error)),
            }
        }
        if let Some(adoption) = self.adoption
            && !creations.is_empty()
        {
            let sender_ids: Vec<&str> = creations
                .iter()
                .map(|(position, _)| appends[*position].sender_id().as_str())
                .collect();
            let held = adoption.held_by_rasa(&sender_ids).await?;
            let mut kept = Vec::with_capacity(creations.len());
            for (creation, held) in creations.into_iter().zip(held) {
                if held {
                    singles.push(creation.0);
                } else {
                    kept.push(creation);
                }
            }
            creations = kept;
        }
        let (created, appended) =
            futures::join!(self.create(appends, creations), self.each(appends, singles));
        for (position, result) in created?.into_iter().chain(appended) {
            results[position] = Some(result);
        }
        tracing::debug!(appends = appends.len(), "appended a batch");
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(Error::backend("an append of the batch was lost")))
            })
            .collect())
    }

    /// The single append's path for the appends at `positions`, [`CONCURRENCY`] at a time.
    async fn each(&self, appends: &[Append], positions: Vec<usize>) -> Vec<Placed> {
        stream::iter(positions)
            .map(|position| async move { (position, self.one(&appends[position]).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }

    /// Creates the conversations of `creations` (position in the batch, new head) by one
    /// unordered insert; those whose head slot is taken conflict or take the single
    /// append's path.
    ///
    /// # Errors
    /// When the insert failed otherwise than for some documents alone: then each head was
    /// inserted or not, unknown which.
    async fn create(
        &self,
        appends: &[Append],
        creations: Vec<(usize, Document)>,
    ) -> Result<Vec<Placed>> {
        if creations.is_empty() {
            return Ok(Vec::new());
        }
        let (positions, documents): (Vec<usize>, Vec<Document>) = creations.into_iter().unzip();
        let mut results: Vec<Option<Result<u64>>> = positions.iter().map(|_| None).collect();
        let mut taken: Vec<usize> = Vec::new();
        let inserted = self
            .collections
            .heads
            .insert_many(documents)
            .ordered(false)
            .await;
        if let Err(error) = inserted {
            let write_errors = insert_many_write_errors(error)
                .map_err(|e| driver_error("creating conversations", e))?;
            for write_error in write_errors {
                let index = write_error.index;
                let Some(result) = results.get_mut(index) else {
                    return Err(Error::backend(format!(
                        "the server reported an error for document {index} of an insert of {}",
                        positions.len()
                    )));
                };
                if write_error.code == DUPLICATE_KEY {
                    taken.push(index);
                } else {
                    *result = Some(Err(indexed_write_error(
                        "creating a conversation",
                        write_error,
                    )));
                }
            }
        }
        let mut retry = Vec::new();
        let mut retried = vec![false; positions.len()];
        if !taken.is_empty() {
            let sender_ids: Vec<&str> = taken
                .iter()
                .map(|&index| appends[positions[index]].sender_id().as_str())
                .collect();
            let slots = match self.versions(&sender_ids).await {
                Ok(slots) => slots.into_iter().map(Some).collect(),
                Err(error) => {
                    // Not written: the single append's path tells each one's outcome.
                    tracing::debug!(%error, "could not read the versions of taken head slots");
                    sender_ids.iter().map(|_| None).collect::<Vec<_>>()
                }
            };
            for ((index, sender_id), slot) in taken.into_iter().zip(sender_ids).zip(slots) {
                match slot {
                    Some(Ok(Slot::Live(version))) => {
                        results[index] = Some(Err(Error::conflict(sender_id, 0, version)));
                    }
                    Some(Err(error)) => results[index] = Some(Err(error)),
                    // A tombstone, a slot emptied meanwhile, or unknown.
                    Some(Ok(Slot::Deleted | Slot::Absent)) | None => {
                        retried[index] = true;
                        retry.push(positions[index]);
                    }
                }
            }
        }
        let mut placed: Vec<Placed> = positions
            .iter()
            .zip(results)
            .zip(retried)
            .filter_map(|((&position, result), retried)| match result {
                Some(result) => Some((position, result)),
                None if retried => None,
                None => Some((position, Ok(appends[position].new_version()))),
            })
            .collect();
        placed.extend(self.each(appends, retry).await);
        Ok(placed)
    }

    /// What the head slots of `sender_ids` hold, in one query: for each, its version (or that
    /// it is empty or a tombstone), or the error of a head that cannot be read.
    async fn versions(&self, sender_ids: &[&str]) -> Result<Vec<Result<Slot<u64>>>> {
        let context = "reading conversations' versions";
        let ids: HashMap<ObjectId, usize> = sender_ids
            .iter()
            .enumerate()
            .map(|(index, sender_id)| (schema::head_id(sender_id), index))
            .collect();
        let keys: Vec<Bson> = ids.keys().map(|id| Bson::ObjectId(*id)).collect();
        let documents: Vec<Document> = self
            .collections
            .heads
            .find(doc! { "_id": { "$in": keys } })
            .projection(buckets::version_projection())
            .await
            .map_err(|e| driver_error(context, e))?
            .try_collect()
            .await
            .map_err(|e| driver_error(context, e))?;
        let mut slots: Vec<Result<Slot<u64>>> =
            sender_ids.iter().map(|_| Ok(Slot::Absent)).collect();
        for document in &documents {
            let index = match document.get("_id") {
                Some(Bson::ObjectId(id)) => ids.get(id),
                _ => None,
            };
            if let Some(&index) = index {
                slots[index] = buckets::version_of(document, sender_ids[index]);
            }
        }
        Ok(slots)
    }
}
