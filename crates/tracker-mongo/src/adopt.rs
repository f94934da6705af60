//! Adoption of the conversations Rasa's own `MongoTrackerStore` keeps in `<collection>`, the
//! collection beside this store's `<collection>.heads` and `<collection>.events`. See the
//! README's "Adopting Rasa's conversations" section for the rules; in short:
//!
//! - A conversation's **head slot** (its derived `_id` in the heads collection) decides: a
//!   live head is the conversation and Rasa's copy is not read; a tombstone means it was
//!   deleted; an empty slot means Rasa's copy, if any, is the conversation (version = its
//!   number of events).
//! - The first append to a Rasa-only conversation writes Rasa's events and the new ones into
//!   this store's layout: the buckets first (invisible: no head names their generation yet),
//!   then the head, inserted into the empty slot — the one atomic step, which a second adopter
//!   loses with a duplicate key. Rasa's document is never written.
//! - Deleting removes Rasa's copy too. Where Rasa's copy could otherwise be read again (a
//!   Rasa-only or adopted conversation) the slot is left holding a tombstone: a Rasa-only
//!   conversation is deleted by putting the tombstone into its empty slot, the same atomic
//!   step an adopter needs, so a delete and an adoption racing each other serialise there.

use std::collections::{BTreeSet, HashSet};

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use tracker_core::{
    Append, Error, ErrorKind, Event, EventData, EventRecord, ExpectedVersion, ReadScope, Result,
    StoredConversation, StoredEvent,
};

use crate::buckets::delete::check_expected;
use crate::buckets::{Collections, MAX_ATTEMPTS};
use crate::error::driver_error;
use crate::rasa::{integer_sender_id, read_conversation, sender_id_text};
use crate::schema::{self, MAX_TAIL_BYTES, NewHead, Slot, bucket, head};

/// Most sender ids looked up in one query of the heads while listing.
const LOOKUP_BATCH: usize = 500;

/// This store's collections, and Rasa's collection whose conversations it adopts.
#[derive(Clone)]
pub(crate) struct Adoption {
    /// This store's layout.
    collections: Collections,
    /// Rasa's collection (`<collection>`), read, and written only by deletes.
    rasa: Collection<Document>,
}

impl Adoption {
    /// Adoption of the conversations in `rasa` into `collections`.
    pub(crate) fn new(collections: Collections, rasa: Collection<Document>) -> Self {
        Self { collections, rasa }
    }

    /// The version: the head's, 0 for a tombstone, else the number of events of Rasa's copy
    /// (0 if there is none).
    pub(crate) async fn version(&self, sender_id: &str) -> Result<u64> {
        match self.collections.version(sender_id).await? {
            Slot::Live(version) => Ok(version),
            Slot::Deleted => Ok(0),
            Slot::Absent => Ok(self
                .rasa_events(sender_id)
                .await?
                .map_or(0, |events| events.len() as u64)),
        }
    }

    /// Reads a conversation: this store's copy if it has one, else Rasa's events numbered
    /// from 1 (read, not converted).
    pub(crate) async fn read(
        &self,
        sender_id: &str,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        match self.collections.read(sender_id, scope).await? {
            Slot::Live(conversation) => Ok(Some(conversation)),
            Slot::Deleted => Ok(None),
            Slot::Absent => Ok(self
                .rasa_events(sender_id)
                .await?
                .and_then(|events| stored(&events, scope))),
        }
    }

    /// Appends; the first append to a conversation only Rasa holds adopts it.
    pub(crate) async fn append(&self, append: &Append) -> Result<u64> {
        let sender_id = append.sender_id().as_str();
        let expected = append.expected_version();
        if expected == 0 {
            // Creating: Rasa must not hold the conversation, unless this store's head slot
            // already decides it (a live head conflicts below, a tombstone is replaced).
            if let Some(events) = self.rasa_events(sender_id).await?
                && !events.is_empty()
                && matches!(self.collections.load_slot(sender_id).await?, Slot::Absent)
            {
                return Err(Error::conflict(sender_id, 0, events.len() as u64));
            }
            return self.collections.append(append).await;
        }
        for _ in 0..MAX_ATTEMPTS {
            match self.collections.append(append).await {
                // No head at all (or a tombstone): Rasa's copy may be the conversation.
                Err(error)
                    if error.kind() == ErrorKind::Conflict
                        && error.current_version() == Some(0) => {}
                other => return other,
            }
            if let Some(version) = self.adopt(append).await? {
                return Ok(version);
            }
        }
        Err(Error::unavailable(format!(
            "the append to {sender_id:?} lost {MAX_ATTEMPTS} races adopting Rasa's copy; \
             nothing was written"
        )))
    }

    /// Writes Rasa's events and the append's into this store's layout, if the head slot is
    /// empty and Rasa's copy has exactly the expected number of events. Returns the new
    /// version, or `None` when the slot was taken meanwhile by a conversation at the expected
    /// version (the caller then appends to it).
    async fn adopt(&self, append: &Append) -> Result<Option<u64>> {
        let sender_id = append.sender_id().as_str();
        let expected = append.expected_version();
        let rasa = self.rasa_events(sender_id).await?.unwrap_or_default();
        if rasa.len() as u64 != expected {
            return Err(Error::conflict(sender_id, expected, rasa.len() as u64));
        }
        let copied = Append::new(append.sender_id().clone(), 0, &rasa)?;
        let records: Vec<&EventRecord> = copied.records().iter().chain(append.records()).collect();
        let chunks = plan(
            &records,
            self.collections.bucket_events,
            self.collections.bucket_bytes,
        )?;
        let generation = ObjectId::new();
        let Some((tail, sealed)) = chunks.split_last() else {
            return Err(Error::invalid_input("an append needs at least one event"));
        };
        let mut buckets = Vec::with_capacity(sealed.len());
        for chunk in sealed {
            let entries = entries(&records[chunk.clone()])?;
            let first_seq = records[chunk.start].seq;
            buckets.push(schema::bucket_document(
                sender_id, generation, first_seq, entries,
            )?);
        }
        if !buckets.is_empty() {
            // Invisible until the head below names their generation.
            self.collections
                .events
                .insert_many(buckets)
                .await
                .map_err(|e| driver_error("adopting Rasa's conversation", e))?;
        }
        let tail_records = &records[tail.clone()];
        let head = NewHead {
            sender_id,
            generation,
            version: append.new_version(),
            session: records
                .iter()
                .rev()
                .find(|record| record.is_session_started())
                .map(|record| record.seq),
            tail_seq: records[tail.start].seq,
            tail: entries(tail_records)?,
            tail_bytes: tail_records.iter().map(|r| schema::encoded_len(r)).sum(),
            adopted: true,
            pending: self.collections.outbox,
        }
        .document()?;
        if self.collections.insert_head(head).await? {
            tracing::info!(
                sender_id,
                rasa_events = rasa.len(),
                buckets = sealed.len(),
                "adopted a conversation from Rasa's collection"
            );
            return Ok(Some(append.new_version()));
        }
        // Lost: the slot holds another head (another adopter, a tombstone). Our buckets are
        // of a generation no head will ever name.
        if !sealed.is_empty()
            && let Err(e) = self
                .collections
                .events
                .delete_many(doc! { bucket::SENDER_ID: sender_id, bucket::GENERATION: generation })
                .await
        {
            tracing::warn!(error = %e, sender_id, "could not remove a lost adoption's buckets");
        }
        match self.collections.version(sender_id).await? {
            Slot::Live(version) if version == expected => Ok(None),
            Slot::Live(version) => Err(Error::conflict(sender_id, expected, version)),
            Slot::Deleted => Err(Error::conflict(sender_id, expected, 0)),
            Slot::Absent => Ok(None),
        }
    }

    /// Deletes a conversation — this store's copy and Rasa's — if it is at `expected` (the
    /// version [`version`](Self::version) reports).
    pub(crate) async fn delete(&self, sender_id: &str, expected: ExpectedVersion) -> Result<bool> {
        for _ in 0..MAX_ATTEMPTS {
            match self.collections.load_slot(sender_id).await? {
                Slot::Live(current) => {
                    check_expected(sender_id, expected, current.version)?;
                    // Rasa's copy first: while the head is there, nobody reads it.
                    let removed = self.delete_rasa(sender_id).await?;
                    let tombstone = current.adopted || removed > 0;
                    if self
                        .collections
                        .remove(sender_id, &current, expected, tombstone)
                        .await?
                    {
                        return Ok(true);
                    }
                }
                Slot::Deleted => {
                    check_expected(sender_id, expected, 0)?;
                    // What an interrupted delete may have left of Rasa's copy.
                    self.delete_rasa(sender_id).await?;
                    return Ok(false);
                }
                Slot::Absent => {
                    let Some(events) = self.rasa_events(sender_id).await? else {
                        check_expected(sender_id, expected, 0)?;
                        return Ok(false);
                    };
                    check_expected(sender_id, expected, events.len() as u64)?;
                    if events.is_empty() {
                        self.delete_rasa(sender_id).await?;
                        return Ok(false);
                    }
                    // The deleting step: the tombstone takes the empty slot (an adopter
                    // that gets there first makes this start over, and conflict).
                    if self.collections.bury(sender_id).await? {
                        self.delete_rasa(sender_id).await?;
                        return Ok(true);
                    }
                }
            }
        }
        Err(Error::unavailable(format!(
            "the delete of {sender_id:?} lost {MAX_ATTEMPTS} races; nothing was deleted"
        )))
    }

    /// One page of ids after `cursor` in byte order, at most `limit` + 1: this store's
    /// conversations and those only Rasa holds (with events, and no head slot taken here).
    pub(crate) async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let own = self.collections.list(cursor, limit).await?;
        // Past the own page's look-ahead nothing can be among the first `limit` + 1.
        let bound = (own.len() > limit).then(|| own[limit].clone());
        let candidates: Vec<String> = self
            .rasa_ids()
            .await?
            .into_iter()
            .filter(|id| cursor.is_none_or(|cursor| id.as_str() > cursor))
            .filter(|id| bound.as_ref().is_none_or(|bound| id < bound))
            .collect();
        let mut page: BTreeSet<String> = own.into_iter().collect();
        for batch in candidates.chunks(LOOKUP_BATCH) {
            if page.len() > limit && page.iter().nth(limit).is_some_and(|last| &batch[0] > last) {
                break;
            }
            let taken = self.taken_slots(batch).await?;
            page.extend(batch.iter().filter(|id| !taken.contains(*id)).cloned());
        }
        Ok(page.into_iter().take(limit.saturating_add(1)).collect())
    }

    /// For each of `sender_ids`, whether Rasa's collection has a document that may be its
    /// conversation (by `sender_id` as text, or for an all-digit id as an integer, as
    /// [`read_conversation`] looks them up), in one query. An append creating one of them
    /// goes through [`append`](Self::append), which decides; the others cannot conflict with
    /// a copy in Rasa's layout.
    pub(crate) async fn held_by_rasa(&self, sender_ids: &[&str]) -> Result<Vec<bool>> {
        let context = "looking up Rasa's conversations";
        let mut keys = Vec::with_capacity(sender_ids.len());
        for sender_id in sender_ids {
            keys.push(Bson::String((*sender_id).to_owned()));
            if let Some(number) = integer_sender_id(sender_id) {
                keys.push(Bson::Int64(number));
            }
        }
        let mut cursor = self
            .rasa
            .find(doc! { "sender_id": { "$in": keys } })
            .projection(doc! { "_id": 0, "sender_id": 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        let (mut texts, mut numbers) = (HashSet::new(), HashSet::new());
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error(context, e))?
        {
            match document.get("sender_id") {
                Some(Bson::String(text)) => {
                    texts.insert(text.clone());
                }
                other => {
                    if let Some(number) = sender_id_text(other).and_then(|t| t.parse::<i64>().ok())
                    {
                        numbers.insert(number);
                    }
                }
            }
        }
        Ok(sender_ids
            .iter()
            .map(|sender_id| {
                texts.contains(*sender_id)
                    || integer_sender_id(sender_id).is_some_and(|n| numbers.contains(&n))
            })
            .collect())
    }

    /// Of `sender_ids`, those whose head slot holds anything (a conversation or a tombstone).
    async fn taken_slots(&self, sender_ids: &[String]) -> Result<BTreeSet<String>> {
        let context = "listing conversations";
        let ids: Vec<Bson> = sender_ids
            .iter()
            .map(|id| Bson::ObjectId(schema::head_id(id)))
            .collect();
        let documents: Vec<Document> = self
            .collections
            .heads
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 0, head::SENDER_ID: 1 })
            .await
            .map_err(|e| driver_error(context, e))?
            .try_collect()
            .await
            .map_err(|e| driver_error(context, e))?;
        Ok(documents
            .iter()
            .filter_map(|document| document.get_str(head::SENDER_ID).ok())
            .map(str::to_owned)
            .collect())
    }

    /// The sender ids of Rasa's documents that hold events (integer ids as decimal text),
    /// sorted by bytes, each once. Reads only `sender_id`.
    async fn rasa_ids(&self) -> Result<BTreeSet<String>> {
        let context = "listing Rasa's conversations";
        let mut cursor = self
            .rasa
            .find(doc! { "events.0": { "$exists": true } })
            .projection(doc! { "_id": 0, "sender_id": 1 })
            .await
            .map_err(|e| driver_error(context, e))?;
        let mut ids = BTreeSet::new();
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error(context, e))?
        {
            if let Some(id) = sender_id_text(document.get("sender_id")) {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    /// Rasa's events of a conversation, if Rasa has a document for it.
    async fn rasa_events(&self, sender_id: &str) -> Result<Option<Vec<Event>>> {
        Ok(read_conversation(&self.rasa, sender_id)
            .await?
            .map(|conversation| conversation.events))
    }

    /// Deletes Rasa's documents of a conversation (by text, and for an all-digit id by the
    /// integer Rasa's `retrieve` would find); returns how many.
    async fn delete_rasa(&self, sender_id: &str) -> Result<u64> {
        let filter = match integer_sender_id(sender_id) {
            Some(number) => doc! { "$or": [{ "sender_id": sender_id }, { "sender_id": number }] },
            None => doc! { "sender_id": sender_id },
        };
        let result = self
            .rasa
            .delete_many(filter)
            .await
            .map_err(|e| driver_error("deleting Rasa's copy of a conversation", e))?;
        Ok(result.deleted_count)
    }
}

/// Rasa's events as a stored conversation (`None` without events): numbered from 1, as much
/// of them as `scope` asks for.
fn stored(events: &[Event], scope: ReadScope) -> Option<StoredConversation> {
    if events.is_empty() {
        return None;
    }
    let from = match scope {
        ReadScope::All => 1,
        ReadScope::LatestSession => events
            .iter()
            .rposition(|event| event.type_name() == "session_started")
            .map_or(1, |index| (index as u64).max(1)),
    };
    let events: Vec<StoredEvent> = (1..)
        .zip(events)
        .filter(|(seq, _)| *seq >= from)
        .map(|(seq, event)| StoredEvent {
            seq,
            data: EventData::Text(event.to_rasa_json()),
        })
        .collect();
    let version = events.last().map_or(0, |event| event.seq);
    Some(StoredConversation { version, events })
}

/// The entries of some events.
fn entries(records: &[&EventRecord]) -> Result<Vec<Bson>> {
    records
        .iter()
        .map(|record| schema::event_entry(record))
        .collect()
}

/// Splits the events of an adopted conversation into documents as appends would have: runs
/// of at most `max_events` events and `max_bytes` bytes (a larger single event alone); the
/// last run becomes the head's tail, the others sealed buckets.
///
/// # Errors
/// [`Error::InvalidInput`] for an event larger than one document of this store holds.
fn plan(
    records: &[&EventRecord],
    max_events: usize,
    max_bytes: usize,
) -> Result<Vec<std::ops::Range<usize>>> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        let size = schema::encoded_len(record);
        if size > MAX_TAIL_BYTES {
            return Err(Error::invalid_input(format!(
                "event {} of the conversation takes about {size} bytes as BSON; a MongoDB \
                 document of this store holds at most {MAX_TAIL_BYTES} bytes of events",
                record.seq
            )));
        }
        if index > start && (index - start >= max_events || bytes + size > max_bytes) {
            chunks.push(start..index);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(start..records.len());
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use tracker_core::SenderId;

    use super::*;

    fn records(n: usize) -> Vec<EventRecord> {
        // Equal sizes: fixed timestamps, one-digit texts.
        let events: Vec<Event> = (0..n)
            .map(|i| Event::bot(format!("e{i}")).at(1_700_000_000.5))
            .collect();
        let id = SenderId::new("s").expect("id");
        Append::new(id, 0, &events)
            .expect("append")
            .records()
            .to_vec()
    }

    #[test]
    fn plans_runs_like_appends() {
        let records = records(7);
        let refs: Vec<&EventRecord> = records.iter().collect();
        assert_eq!(
            plan(&refs, 3, usize::MAX).expect("plan"),
            [0..3, 3..6, 6..7]
        );
        let whole = plan(&refs, 100, usize::MAX).expect("plan");
        assert_eq!((whole.len(), whole.first()), (1, Some(&(0..7))));
        let one = schema::encoded_len(&records[0]);
        assert_eq!(plan(&refs, 100, 2 * one).expect("plan").len(), 4);
        // An event larger than `max_bytes` goes alone.
        assert_eq!(plan(&refs, 100, 1).expect("plan").len(), 7);
    }

    #[test]
    fn rasa_events_as_stored() {
        let events = vec![
            Event::action("action_session_start"),
            Event::session_started(),
            Event::bot("a"),
            Event::action("action_session_start"),
            Event::session_started(),
            Event::bot("b"),
        ];
        let all = stored(&events, ReadScope::All).expect("events");
        assert_eq!(all.version, 6);
        assert_eq!(all.events.len(), 6);
        assert_eq!(all.events[0].seq, 1);
        let latest = stored(&events, ReadScope::LatestSession).expect("events");
        assert_eq!(latest.version, 6);
        assert_eq!(
            latest.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert!(stored(&[], ReadScope::All).is_none());
    }
}
