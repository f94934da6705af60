//! The bucket algorithm: how a conversation's events are spread over its head document and
//! sealed bucket documents, and the steps that keep every append one atomic single-document
//! write. See the README's "Document layout" and "Appends and crashes" sections for the
//! design; the comments here name the steps.
//!
//! - An append goes into the head's `tail` while it fits (`bucket_events` events and
//!   `bucket_bytes` bytes); one that does not fit *rolls over*: the tail is copied into a
//!   bucket, then the head's tail is replaced by the append's events.
//! - A read takes the buckets of the head's generation ending before the tail, then the tail.
//! - A delete removes the head (that deletes the conversation) or replaces it by a
//!   tombstone, then removes its buckets (`buckets/delete.rs`, with collecting the orphaned
//!   buckets an interrupted delete leaves: maintenance of this algorithm, safe only because
//!   generations are never reused, which is this file's rule).
//! - A tombstone in a conversation's head slot means it does not exist; creating it again
//!   replaces the tombstone.

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use tracker_core::{Append, Error, ReadScope, Result, StoredConversation, StoredEvent};

use crate::error::{driver_error, is_duplicate_key};
use crate::schema::{
    self, Head, MAX_TAIL_BYTES, NewHead, Slot, as_u64, bucket, check_owner, get_u64, head,
    take_events,
};

pub(crate) mod delete;

/// How often an append or a read starts over after losing a race that does not change the
/// conversation's version (it was deleted and re-created meanwhile, or another writer's
/// bucket is not visible yet). Conflicts are never retried.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// A store's two collections and the size of its buckets: what the algorithm works on.
#[derive(Clone)]
pub(crate) struct Collections {
    /// `<collection>.heads`.
    pub(crate) heads: Collection<Document>,
    /// `<collection>.events`: the buckets.
    pub(crate) events: Collection<Document>,
    /// Most events a head keeps before they move to a bucket.
    pub(crate) bucket_events: usize,
    /// Most bytes of events (estimated BSON) a head keeps before they move to a bucket.
    pub(crate) bucket_bytes: usize,
    /// Whether the store keeps an outbox: every write that appends events then also marks
    /// the head pending (`schema::head::OUTBOX_PENDING`), in the same single-document write.
    pub(crate) outbox: bool,
}

/// What reading the sealed buckets found.
enum Sealed {
    /// The events, contiguous up to the head's tail.
    Complete,
    /// Buckets are missing (a delete ran meanwhile, or the data is damaged).
    Gap(String),
}

impl Collections {
    /// Appends the events if the conversation is at the expected version, and returns the new
    /// version: the common cases in one round trip (a new conversation is one insert, an
    /// append that fits the tail one guarded update), else a roll-over.
    pub(crate) async fn append(&self, append: &Append) -> Result<u64> {
        let sender_id = append.sender_id().as_str();
        let expected = append.expected_version();
        let records = append.records();
        let (entries, bytes) = encode(append)?;

        let done = if expected == 0 {
            self.create(append, &entries, bytes, false).await?
        } else {
            self.push(append, &entries, bytes).await?
        };
        if done {
            return Ok(append.new_version());
        }
        for _ in 0..MAX_ATTEMPTS {
            let committed = match self.load_slot(sender_id).await? {
                Slot::Absent if expected == 0 => {
                    self.create(append, &entries, bytes, false).await?
                }
                Slot::Deleted if expected == 0 => self.revive(append, &entries, bytes).await?,
                Slot::Absent | Slot::Deleted => {
                    return Err(Error::conflict(sender_id, expected, 0));
                }
                Slot::Live(current) if current.version != expected => {
                    return Err(Error::conflict(sender_id, expected, current.version));
                }
                Slot::Live(current) => {
                    let fits = (current.tail_count as usize).saturating_add(records.len())
                        <= self.bucket_events
                        && (current.tail_bytes as usize).saturating_add(bytes) <= self.bucket_bytes;
                    if fits {
                        self.push(append, &entries, bytes).await?
                    } else {
                        self.roll_over(&current, append, &entries, bytes).await?
                    }
                }
            };
            if committed {
                return Ok(append.new_version());
            }
        }
        Err(Error::unavailable(format!(
            "the append to {sender_id:?} lost {MAX_ATTEMPTS} races without a change of version \
             (the conversation deleted and re-created repeatedly?); nothing was written"
        )))
    }

    /// A conversation's version, as its head slot says (`_id` lookup).
    pub(crate) async fn version(&self, sender_id: &str) -> Result<Slot<u64>> {
        let Some(document) = self
            .heads
            .find_one(doc! { "_id": schema::head_id(sender_id) })
            .projection(version_projection())
            .await
            .map_err(|e| driver_error("reading a conversation's version", e))?
        else {
            return Ok(Slot::Absent);
        };
        version_of(&document, sender_id)
    }

    /// One page of the ids of live heads after `cursor` in byte order: at most `limit` + 1
    /// (the extra one tells that more follow).
    pub(crate) async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut filter = doc! { head::DELETED: { "$ne": true } };
        if let Some(cursor) = cursor {
            filter.insert(head::SENDER_HEX, doc! { "$gt": schema::sender_hex(cursor) });
        }
        let limit = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let documents: Vec<Document> = self
            .heads
            .find(filter)
            .sort(doc! { head::SENDER_HEX: 1 })
            .limit(limit)
            .projection(doc! { "_id": 0, head::SENDER_ID: 1 })
            .await
            .map_err(|e| driver_error("listing conversations", e))?
            .try_collect()
            .await
            .map_err(|e| driver_error("listing conversations", e))?;
        let mut sender_ids = Vec::with_capacity(documents.len());
        for document in &documents {
            match document.get(head::SENDER_ID) {
                Some(Bson::String(id)) => sender_ids.push(id.clone()),
                other => {
                    return Err(Error::corrupt(
                        format!("{other:?}"),
                        None,
                        "a head's `sender_id` is not a string",
                    ));
                }
            }
        }
        Ok(sender_ids)
    }

    /// Reads a conversation: the head, then (when the scope starts before the tail) the
    /// buckets of its generation, starting over when a delete raced the read.
    pub(crate) async fn read(
        &self,
        sender_id: &str,
        scope: ReadScope,
    ) -> Result<Slot<StoredConversation>> {
        let mut last_gap = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let mut current = match self.load_slot(sender_id).await? {
                Slot::Live(current) => current,
                Slot::Absent => return Ok(Slot::Absent),
                Slot::Deleted => return Ok(Slot::Deleted),
            };
            let from = match (scope, current.session) {
                (ReadScope::LatestSession, Some(session)) => session.saturating_sub(1).max(1),
                _ => 1,
            };
            let mut events = Vec::new();
            if from < current.tail_seq {
                match self
                    .read_buckets(sender_id, &current, from, &mut events)
                    .await?
                {
                    Sealed::Complete => {}
                    Sealed::Gap(message) => {
                        // Deleted (or deleted and re-created) since the head was read: start
                        // over. Otherwise the data is damaged.
                        match self.load_slot(sender_id).await? {
                            Slot::Absent => return Ok(Slot::Absent),
                            Slot::Deleted => return Ok(Slot::Deleted),
                            Slot::Live(now) if now.generation != current.generation => {
                                last_gap = message;
                                continue;
                            }
                            Slot::Live(_) => {
                                return Err(Error::corrupt(sender_id, None, message));
                            }
                        }
                    }
                }
            }
            let tail = std::mem::take(&mut current.tail);
            take_events(&mut events, tail, current.tail_seq, from, sender_id)?;
            return Ok(Slot::Live(StoredConversation {
                version: current.version,
                events,
            }));
        }
        Err(Error::unavailable(format!(
            "reading {sender_id:?} raced with {MAX_ATTEMPTS} deletes: {last_gap}"
        )))
    }

    /// What a conversation's head slot holds.
    pub(crate) async fn load_slot(&self, sender_id: &str) -> Result<Slot<Head>> {
        let Some(document) = self
            .heads
            .find_one(doc! { "_id": schema::head_id(sender_id) })
            .await
            .map_err(|e| driver_error("reading a conversation's head", e))?
        else {
            return Ok(Slot::Absent);
        };
        check_owner(&document, head::SENDER_ID, sender_id, "head")?;
        if schema::is_tombstone(&document) {
            return Ok(Slot::Deleted);
        }
        Head::parse(document, sender_id).map(Slot::Live)
    }

    /// The head of a new conversation holding the append's events (pending in the outbox,
    /// when the store keeps one).
    pub(crate) fn new_head(
        &self,
        append: &Append,
        entries: &[Bson],
        bytes: usize,
        adopted: bool,
    ) -> Result<Document> {
        NewHead {
            sender_id: append.sender_id().as_str(),
            generation: ObjectId::new(),
            version: append.new_version(),
            session: append.last_session_started(),
            tail_seq: 1,
            tail: entries.to_vec(),
            tail_bytes: bytes,
            adopted,
            pending: self.outbox,
        }
        .document()
    }

    /// Creates a conversation with the append's events: one insert, whose derived `_id` makes
    /// it fail if the head slot holds anything. Returns whether it was created.
    async fn create(
        &self,
        append: &Append,
        entries: &[Bson],
        bytes: usize,
        adopted: bool,
    ) -> Result<bool> {
        let document = self.new_head(append, entries, bytes, adopted)?;
        self.insert_head(document).await
    }

    /// Inserts a head document into an empty slot; `false` if the slot holds anything.
    pub(crate) async fn insert_head(&self, document: Document) -> Result<bool> {
        match self.heads.insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(driver_error("creating a conversation", e)),
        }
    }

    /// Creates a conversation in place of its tombstone: one replacement guarded by the
    /// tombstone still being there. The new head stays marked `adopted`, so that deleting it
    /// leaves a tombstone again. Returns whether it was created.
    async fn revive(&self, append: &Append, entries: &[Bson], bytes: usize) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let document = self.new_head(append, entries, bytes, true)?;
        let result = self
            .heads
            .replace_one(
                doc! {
                    "_id": schema::head_id(sender_id),
                    head::SENDER_ID: sender_id,
                    head::DELETED: true,
                },
                document,
            )
            .await
            .map_err(|e| driver_error("creating a conversation", e))?;
        Ok(result.matched_count == 1)
    }

    /// Appends to the head's tail: one update guarded by the expected version (and by the
    /// tail having room). Returns whether it matched.
    async fn push(&self, append: &Append, entries: &[Bson], bytes: usize) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let count = entries.len();
        let (Some(count_room), Some(bytes_room)) = (
            self.bucket_events.checked_sub(count),
            self.bucket_bytes.checked_sub(bytes),
        ) else {
            return Ok(false);
        };
        let filter = doc! {
            "_id": schema::head_id(sender_id),
            head::SENDER_ID: sender_id,
            head::VERSION: schema::to_i64(append.expected_version())?,
            head::TAIL_COUNT: { "$lte": schema::usize_to_i64(count_room) },
            head::TAIL_BYTES: { "$lte": schema::usize_to_i64(bytes_room) },
        };
        let mut set = doc! { head::VERSION: schema::to_i64(append.new_version())? };
        if let Some(session) = append.last_session_started() {
            set.insert(head::SESSION, schema::to_i64(session)?);
        }
        let mut update = doc! {
            "$push": { head::TAIL: { "$each": entries.to_vec() } },
            "$inc": {
                head::TAIL_COUNT: schema::usize_to_i64(count),
                head::TAIL_BYTES: schema::usize_to_i64(bytes),
            },
            "$set": set,
        };
        if self.outbox {
            schema::mark_pending(&mut update);
        }
        let result = self
            .heads
            .update_one(filter, update)
            .await
            .map_err(|e| driver_error("appending to a conversation", e))?;
        Ok(result.matched_count == 1)
    }

    /// Seals the head's tail into a bucket and makes the append's events the new tail.
    /// Returns whether the append was committed.
    ///
    /// Step 1 writes a copy of the tail (events that are already committed) to the bucket
    /// with the derived id for `(generation, tail_seq)`; a copy that is already there is only
    /// ever made longer. Step 2, the commit, replaces the tail in one update guarded by the
    /// version, generation and tail start. A crash between the two leaves only the copy,
    /// which no read looks at (reads take buckets that end before the head's `tail_seq`) and
    /// the next roll-over at that point completes.
    async fn roll_over(
        &self,
        current: &Head,
        append: &Append,
        entries: &[Bson],
        bytes: usize,
    ) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let generation = current.generation;
        let copy_id = schema::bucket_id(sender_id, &generation, current.tail_seq);
        let first_seq = schema::to_i64(current.tail_seq)?;
        let last_seq = schema::to_i64(current.version)?;
        let count = schema::to_i64(current.tail_count)?;
        let copy = schema::bucket_document(
            sender_id,
            generation,
            current.tail_seq,
            current.tail.clone(),
        )?;
        match self.events.insert_one(copy).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                // An earlier copy at this point (from a writer that lost, or crashed): make it
                // complete. It only ever grows, so a slower writer never shortens it.
                let grown = self
                    .events
                    .update_one(
                        doc! {
                            "_id": copy_id,
                            bucket::SENDER_ID: sender_id,
                            bucket::GENERATION: generation,
                            bucket::COUNT: { "$lt": count },
                        },
                        doc! { "$set": {
                            bucket::LAST_SEQ: last_seq,
                            bucket::COUNT: count,
                            bucket::EVENTS: current.tail.clone(),
                        } },
                    )
                    .await
                    .map_err(|e| driver_error("sealing a bucket", e))?;
                if grown.matched_count == 0
                    && !self.copy_is_complete(copy_id, current, sender_id).await?
                {
                    return Ok(false);
                }
            }
            Err(e) => return Err(driver_error("sealing a bucket", e)),
        }
        let mut set = doc! {
            head::VERSION: schema::to_i64(append.new_version())?,
            head::TAIL_SEQ: schema::to_i64(append.expected_version() + 1)?,
            head::TAIL_COUNT: schema::usize_to_i64(entries.len()),
            head::TAIL_BYTES: schema::usize_to_i64(bytes),
            head::TAIL: entries.to_vec(),
        };
        if let Some(session) = append.last_session_started() {
            set.insert(head::SESSION, schema::to_i64(session)?);
        }
        let mut update = doc! { "$set": set };
        if self.outbox {
            schema::mark_pending(&mut update);
        }
        let committed = self
            .heads
            .update_one(
                doc! {
                    "_id": schema::head_id(sender_id),
                    head::SENDER_ID: sender_id,
                    head::GENERATION: generation,
                    head::VERSION: last_seq,
                    head::TAIL_SEQ: first_seq,
                },
                update,
            )
            .await
            .map_err(|e| driver_error("appending to a conversation", e))?;
        if committed.matched_count == 1 {
            tracing::debug!(
                sender_id,
                first_seq = current.tail_seq,
                last_seq = current.version,
                "sealed a bucket"
            );
            return Ok(true);
        }
        // Lost. If the conversation was deleted meanwhile, its generation is gone for good and
        // so is any use of the copy: remove it. Otherwise leave it for the next roll-over.
        let generation_alive = matches!(
            self.load_slot(sender_id).await?,
            Slot::Live(head) if head.generation == generation
        );
        if !generation_alive
            && let Err(e) = self
                .events
                .delete_one(doc! { "_id": copy_id, bucket::GENERATION: generation })
                .await
        {
            tracing::warn!(error = %e, "could not remove a bucket of a deleted conversation");
        }
        Ok(false)
    }

    /// After a duplicate-key insert and an update that changed nothing: whether the bucket at
    /// `copy_id` is this conversation's and holds at least the tail's events. A document of
    /// another conversation under that id (a 96-bit hash collision) is an error.
    async fn copy_is_complete(
        &self,
        copy_id: ObjectId,
        current: &Head,
        sender_id: &str,
    ) -> Result<bool> {
        let Some(document) = self
            .events
            .find_one(doc! { "_id": copy_id })
            .projection(doc! {
                bucket::SENDER_ID: 1, bucket::GENERATION: 1, bucket::COUNT: 1
            })
            .await
            .map_err(|e| driver_error("checking a bucket", e))?
        else {
            return Ok(false);
        };
        check_owner(&document, bucket::SENDER_ID, sender_id, "bucket")?;
        let same_generation =
            document.get(bucket::GENERATION) == Some(&Bson::ObjectId(current.generation));
        let count = document.get(bucket::COUNT).and_then(as_u64);
        Ok(same_generation && count.is_some_and(|count| count >= current.tail_count))
    }

    /// Appends the sealed buckets' events from seq `from` up to (not including) the head's
    /// tail to `out`.
    async fn read_buckets(
        &self,
        sender_id: &str,
        current: &Head,
        from: u64,
        out: &mut Vec<StoredEvent>,
    ) -> Result<Sealed> {
        let context = "reading a conversation's events";
        let filter = doc! {
            bucket::SENDER_ID: sender_id,
            bucket::GENERATION: current.generation,
            bucket::LAST_SEQ: {
                "$gte": schema::to_i64(from)?,
                "$lt": schema::to_i64(current.tail_seq)?,
            },
        };
        let mut cursor = self
            .events
            .find(filter)
            .sort(doc! { bucket::LAST_SEQ: 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        let mut next: Option<u64> = None;
        while let Some(mut document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error(context, e))?
        {
            let first = get_u64(&document, bucket::FIRST_SEQ, sender_id, "bucket")?;
            let last = get_u64(&document, bucket::LAST_SEQ, sender_id, "bucket")?;
            let count = get_u64(&document, bucket::COUNT, sender_id, "bucket")?;
            let entries = match document.remove(bucket::EVENTS) {
                Some(Bson::Array(entries)) => entries,
                other => {
                    return Err(Error::corrupt(
                        sender_id,
                        Some(first),
                        format!("the bucket's `events` is {other:?}, not an array"),
                    ));
                }
            };
            if count == 0
                || first.checked_add(count - 1) != Some(last)
                || entries.len() as u64 != count
            {
                return Err(Error::corrupt(
                    sender_id,
                    Some(first),
                    format!(
                        "the bucket from {first} to {last} says {count} events and holds {}",
                        entries.len()
                    ),
                ));
            }
            let expected_first = next.unwrap_or(from);
            if next.map_or(first > from, |next| first != next) {
                return Ok(Sealed::Gap(format!(
                    "expected a bucket from event {expected_first}, found one from {first}"
                )));
            }
            take_events(out, entries, first, from, sender_id)?;
            next = Some(last + 1);
        }
        match next {
            Some(next) if next == current.tail_seq => Ok(Sealed::Complete),
            Some(next) => Ok(Sealed::Gap(format!(
                "the events from {next} to {} are missing",
                current.tail_seq - 1
            ))),
            None => Ok(Sealed::Gap(format!(
                "the events from {from} to {} are missing",
                current.tail_seq - 1
            ))),
        }
    }
}

/// The entries of an append's events, and their estimated BSON bytes.
///
/// # Errors
/// [`Error::InvalidInput`] when they would not fit in one document.
pub(crate) fn encode(append: &Append) -> Result<(Vec<Bson>, usize)> {
    let records = append.records();
    let bytes: usize = records.iter().map(schema::encoded_len).sum();
    if bytes > MAX_TAIL_BYTES {
        return Err(Error::invalid_input(format!(
            "an append of {} events takes about {bytes} bytes as BSON; a MongoDB document \
             holds at most {MAX_TAIL_BYTES} bytes of events",
            records.len()
        )));
    }
    let entries = records
        .iter()
        .map(schema::event_entry)
        .collect::<Result<_>>()?;
    Ok((entries, bytes))
}

/// The fields of a head that [`version_of`] reads.
pub(crate) fn version_projection() -> Document {
    doc! { head::SENDER_ID: 1, head::VERSION: 1, head::DELETED: 1 }
}

/// What a head document found in `sender_id`'s slot says of its version.
pub(crate) fn version_of(document: &Document, sender_id: &str) -> Result<Slot<u64>> {
    check_owner(document, head::SENDER_ID, sender_id, "head")?;
    if schema::is_tombstone(document) {
        return Ok(Slot::Deleted);
    }
    get_u64(document, head::VERSION, sender_id, "head").map(Slot::Live)
}

#[cfg(test)]
mod tests;
