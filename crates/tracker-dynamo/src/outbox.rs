//! The outbox (see `tracker_core::outbox`), kept in the conversations' head items.
//!
//! - **Pending mark**: every append's head update — in the append's own `TransactWriteItems`,
//!   an adoption's included — also sets [`OUTBOX_SHARD`] and, unless it is there already,
//!   [`OUTBOX_PENDING`] (`writes::head_write`). An append and its mark are one atomic write;
//!   a failed append leaves neither.
//! - **Finding pending heads**: the sparse global secondary index [`OUTBOX_INDEX`] holds the
//!   marked heads only, spread over [`OUTBOX_SHARDS`] partitions. [`Outbox::pending`] queries
//!   every shard oldest first, merges them, and reads each candidate's head consistently
//!   (`BatchGetItem`) to keep those with events past the checkpoint and no live lease. The
//!   index is eventually consistent: a head marked a moment ago may show up a round later,
//!   and a head published whole may still be listed (its consistent read then drops it). A
//!   mark leaves the head only by a checkpoint at the head's version, conditioned on that
//!   version, so every conversation with events to publish stays in the index until then.
//! - **Checkpoint and lease**: [`OUTBOX_PUBLISHED`], [`OUTBOX_LEASE`] and
//!   [`OUTBOX_LEASE_UNTIL`] in the same head, each changed by one conditional `UpdateItem`.
//!   Deleting the conversation deletes the head, and these with it, in the transaction that
//!   deletes it; a conversation started again is published from its first event.
//! - **Time**: DynamoDB has no clock in expressions, so a lease's end is the taking relay's
//!   clock plus the lease, and whether it is live is decided by the clock of whoever asks.
//!   Relays' clocks must agree to well within a lease.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use tracker_core::{Error, Outbox, OutboxEntry, Result, SenderId, async_trait};

use crate::error::{build_error, driver_error};
use crate::items::{BATCH_GET_KEYS, Db, now_ms};
use crate::migrate::{IndexState, describe, missing_index, outbox_index_state};
use crate::schema::{
    HASH_KEY, HEAD_SEQ, Item, OUTBOX_INDEX, OUTBOX_LEASE, OUTBOX_LEASE_UNTIL, OUTBOX_PENDING,
    OUTBOX_PUBLISHED, OUTBOX_SHARD, OUTBOX_SHARDS, VERSION, continuation, key, number, read_key,
    read_number,
};
use crate::store::DynamoStore;

/// The longest lease taken, whatever is asked: one year.
const MAX_LEASE_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// How many times a checkpoint tries its updates while the head changes under it.
const CHECKPOINT_ATTEMPTS: usize = 5;
/// The `Limit` of the index's queries by default: bounded, as one round rarely needs more.
const MAX_INDEX_PAGE: usize = 1000;

/// A head the index lists as pending: its mark, then its sender id (the order of
/// [`Outbox::pending`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    /// The mark: when its oldest unpublished append was made.
    pending: u64,
    /// The conversation.
    sender_id: String,
}

/// One shard of the index, read oldest first, a page at a time.
#[derive(Debug)]
struct Shard {
    /// The shard's number (the index's hash key).
    shard: u64,
    /// Heads read and not yet taken, oldest first.
    buffered: VecDeque<Candidate>,
    /// Where the next page starts.
    start: Option<Item>,
    /// No page is left.
    exhausted: bool,
}

impl Shard {
    fn new(shard: u64) -> Self {
        Self {
            shard,
            buffered: VecDeque::new(),
            start: None,
            exhausted: false,
        }
    }

    /// Whether the shard has nothing buffered but may hold more: its next page is needed
    /// before anything is taken, as it may hold older heads than the other shards.
    fn needs_page(&self) -> bool {
        self.buffered.is_empty() && !self.exhausted
    }
}

/// Takes up to `max` candidates from `shards`, oldest first across them, stopping when a
/// shard that may hold older ones has none buffered (it needs its next page first).
fn take_oldest(shards: &mut [Shard], max: usize) -> Vec<Candidate> {
    let mut taken = Vec::new();
    while taken.len() < max && !shards.iter().any(Shard::needs_page) {
        let oldest = shards
            .iter_mut()
            .filter_map(|shard| shard.buffered.front().cloned().map(|front| (front, shard)))
            .min_by(|(a, _), (b, _)| a.cmp(b));
        let Some((_, shard)) = oldest else {
            break;
        };
        taken.extend(shard.buffered.pop_front());
    }
    taken
}

/// Whether a head read for [`Outbox::pending`] is one to return: marked, with events past its
/// checkpoint, and no lease live at `now`.
fn publishable(sender_id: &str, head: &Item, now: u64) -> Result<bool> {
    if !head.contains_key(OUTBOX_PENDING) {
        return Ok(false);
    }
    let version = read_number(sender_id, head, VERSION, None)?.unwrap_or(0);
    let published = read_number(sender_id, head, OUTBOX_PUBLISHED, None)?.unwrap_or(0);
    let lease_until = read_number(sender_id, head, OUTBOX_LEASE_UNTIL, None)?;
    let leased = head.contains_key(OUTBOX_LEASE) && lease_until.is_some_and(|until| until > now);
    Ok(version > published && !leased)
}

/// Whether an SDK error is DynamoDB's `ConditionalCheckFailedException`.
fn condition_failed<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// The entry of a conversation this store's layout does not hold: nothing to publish.
fn empty(sender_id: &SenderId) -> OutboxEntry {
    OutboxEntry {
        sender_id: sender_id.clone(),
        version: 0,
        published: 0,
    }
}

/// Why a checkpoint's conditional updates changed nothing, when it is not an error.
enum Missed {
    /// The conversation does not exist, and the checkpoint is from 0 to 0: nothing to do.
    Nothing,
    /// The head changed between the updates and the look at it: try again.
    Raced,
}

impl Db<'_> {
    /// Up to `limit` conversations to publish, oldest mark first: see the module
    /// documentation.
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        let page = self
            .page_size
            .unwrap_or_else(|| i32::try_from(limit.clamp(16, MAX_INDEX_PAGE)).unwrap_or(i32::MAX));
        let mut shards: Vec<Shard> = (0..OUTBOX_SHARDS).map(Shard::new).collect();
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        loop {
            futures::future::try_join_all(
                shards
                    .iter_mut()
                    .filter(|shard| shard.needs_page())
                    .map(|shard| self.next_page(shard, page)),
            )
            .await?;
            let batch = take_oldest(&mut shards, BATCH_GET_KEYS.min(limit - found.len()));
            if batch.is_empty() {
                // Every shard is read to its end.
                return Ok(found);
            }
            // A head marked anew while the shards are read may be listed twice.
            let batch: Vec<Candidate> = batch
                .into_iter()
                .filter(|candidate| seen.insert(candidate.sender_id.clone()))
                .collect();
            let ids: Vec<&str> = batch.iter().map(|c| c.sender_id.as_str()).collect();
            let heads = self.outbox_heads(&ids).await?;
            let now = now_ms();
            for candidate in batch {
                let Some(head) = heads.get(&candidate.sender_id) else {
                    // Deleted since the index listed it.
                    continue;
                };
                let id = candidate.sender_id.as_str();
                let keep = publishable(id, head, now).unwrap_or_else(|error| {
                    // Listed, so that the relay's lease reports it for this conversation
                    // alone instead of every round failing.
                    tracing::warn!(sender_id = id, error = %error, "a pending head cannot be read");
                    true
                });
                if keep {
                    found.push(SenderId::new(id).map_err(|e| {
                        Error::corrupt(id, None, format!("a head's sender id: {e}"))
                    })?);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
        }
    }

    /// Reads the next page of `shard` of the index (until one holds a head or the shard is
    /// read to its end).
    async fn next_page(&self, shard: &mut Shard, page: i32) -> Result<()> {
        loop {
            let output = match self
                .client
                .query()
                .table_name(self.table)
                .index_name(OUTBOX_INDEX)
                .key_condition_expression("#sh = :sh")
                .expression_attribute_names("#sh", OUTBOX_SHARD)
                .expression_attribute_values(":sh", number(shard.shard))
                .limit(page)
                .set_exclusive_start_key(shard.start.take())
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) if self.pending_table(&error) => {
                    // No table yet (a store connected to read Rasa's table): nothing pending.
                    shard.exhausted = true;
                    return Ok(());
                }
                Err(error) => return Err(self.index_error(error).await),
            };
            for item in output.items.unwrap_or_default() {
                let (sender_id, _) = read_key(&item)?;
                let pending = read_number(&sender_id, &item, OUTBOX_PENDING, None)?.unwrap_or(0);
                shard.buffered.push_back(Candidate { pending, sender_id });
            }
            shard.start = continuation(output.last_evaluated_key);
            shard.exhausted = shard.start.is_none();
            if !shard.buffered.is_empty() || shard.exhausted {
                return Ok(());
            }
        }
    }

    /// The error of a query of the index: [`Error::Config`] when the table lacks the index,
    /// [`Error::Unavailable`] while DynamoDB builds it, else the query's own error.
    async fn index_error<E>(&self, error: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let context = format!(
            "listing the outbox's pending conversations (index {OUTBOX_INDEX:?} of table {:?})",
            self.table
        );
        if error.code() != Some("ValidationException") {
            return driver_error(context, error);
        }
        let state = match describe(self.client, self.table).await {
            Ok(Some(description)) => outbox_index_state(self.table, &description),
            _ => return driver_error(context, error),
        };
        match state {
            Ok(IndexState::Missing) => missing_index(self.table),
            Ok(IndexState::Building(status)) => Error::unavailable(format!(
                "{context}: DynamoDB is building the index ({status}); it can be queried once \
                 it is ACTIVE"
            )),
            Ok(IndexState::Active) => driver_error(context, error),
            Err(config) => config,
        }
    }

    /// The outbox's attributes of the heads of `sender_ids`, read consistently with
    /// `BatchGetItem`s of 100 keys (sending unprocessed keys again); heads that do not exist
    /// are left out.
    async fn outbox_heads(&self, sender_ids: &[&str]) -> Result<HashMap<String, Item>> {
        let mut heads = HashMap::new();
        for chunk in sender_ids.chunks(BATCH_GET_KEYS) {
            let keys: Vec<Item> = chunk.iter().map(|id| key(id, HEAD_SEQ)).collect();
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression("#k, #v, #op, #p, #l, #u")
                .expression_attribute_names("#k", HASH_KEY)
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_names("#op", OUTBOX_PENDING)
                .expression_attribute_names("#p", OUTBOX_PUBLISHED)
                .expression_attribute_names("#l", OUTBOX_LEASE)
                .expression_attribute_names("#u", OUTBOX_LEASE_UNTIL)
                .build()
                .map_err(build_error)?;
            let Some(items) = self
                .batch_get(
                    self.table,
                    request,
                    "reading the heads of the outbox's pending conversations",
                    |error| self.pending_table(error),
                )
                .await?
            else {
                return Ok(heads);
            };
            for item in items {
                if let Some(AttributeValue::S(id)) = item.get(HASH_KEY) {
                    heads.insert(id.clone(), item);
                }
            }
        }
        Ok(heads)
    }

    /// Whether the head of `sender_id` exists (a consistent read).
    async fn head_exists(&self, sender_id: &str) -> Result<bool> {
        let output = self
            .client
            .get_item()
            .table_name(self.table)
            .set_key(Some(key(sender_id, HEAD_SEQ)))
            .consistent_read(true)
            .projection_expression("#k")
            .expression_attribute_names("#k", HASH_KEY)
            .send()
            .await
            .map_err(|e| driver_error(format!("taking the outbox lease of {sender_id:?}"), e))?;
        Ok(output.item.is_some_and(|item| !item.is_empty()))
    }

    /// One conditional checkpoint update: under `relay`'s live lease, from `from`, to `to`,
    /// giving the lease back. `whole`: only if `to` is the head's version, and then also
    /// removing the pending mark; else only if the version is beyond `to`. Whether it was
    /// applied.
    async fn try_checkpoint(
        &self,
        sender_id: &str,
        relay: &str,
        from: u64,
        to: u64,
        whole: bool,
    ) -> Result<bool> {
        let published = if from == 0 {
            // A head written before the outbox was turned on has no checkpoint: 0.
            "(attribute_not_exists(#p) OR #p = :from)"
        } else {
            "#p = :from"
        };
        let (version, update) = if whole {
            ("#v = :to", "SET #p = :to REMOVE #l, #u, #op")
        } else {
            ("#v > :to", "SET #p = :to REMOVE #l, #u")
        };
        let mut request = self
            .client
            .update_item()
            .table_name(self.table)
            .set_key(Some(key(sender_id, HEAD_SEQ)))
            .condition_expression(format!(
                "#l = :relay AND #u > :now AND {published} AND {version}"
            ))
            .update_expression(update)
            .expression_attribute_names("#l", OUTBOX_LEASE)
            .expression_attribute_names("#u", OUTBOX_LEASE_UNTIL)
            .expression_attribute_names("#p", OUTBOX_PUBLISHED)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":relay", AttributeValue::S(relay.to_owned()))
            .expression_attribute_values(":now", number(now_ms()))
            .expression_attribute_values(":from", number(from))
            .expression_attribute_values(":to", number(to));
        if whole {
            request = request.expression_attribute_names("#op", OUTBOX_PENDING);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) if condition_failed(&error) => Ok(false),
            Err(error) => Err(driver_error(
                format!("checkpointing the outbox of {sender_id:?}"),
                error,
            )),
        }
    }

    /// After a checkpoint's updates changed nothing: why — an error, [`Missed::Nothing`] for
    /// a checkpoint from 0 to 0 of a conversation that does not exist, or [`Missed::Raced`]
    /// when they may apply now (an append or a lease's end raced them).
    async fn why_not(&self, sender_id: &str, relay: &str, from: u64, to: u64) -> Result<Missed> {
        let output = self
            .client
            .get_item()
            .table_name(self.table)
            .set_key(Some(key(sender_id, HEAD_SEQ)))
            .consistent_read(true)
            .projection_expression("#v, #p, #l, #u")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#p", OUTBOX_PUBLISHED)
            .expression_attribute_names("#l", OUTBOX_LEASE)
            .expression_attribute_names("#u", OUTBOX_LEASE_UNTIL)
            .send()
            .await
            .map_err(|e| driver_error(format!("checkpointing the outbox of {sender_id:?}"), e))?;
        let Some(head) = output.item.filter(|item| !item.is_empty()) else {
            // No conversation: nothing is held and nothing is pending. A relay given the
            // empty entry of a missing conversation settles it at 0.
            return if from == 0 && to == 0 {
                Ok(Missed::Nothing)
            } else {
                Err(Error::conflict(sender_id, from, 0))
            };
        };
        let version = read_number(sender_id, &head, VERSION, None)?.unwrap_or(0);
        let published = read_number(sender_id, &head, OUTBOX_PUBLISHED, None)?.unwrap_or(0);
        if published != from {
            return Err(Error::conflict(sender_id, from, published));
        }
        let named = matches!(head.get(OUTBOX_LEASE), Some(AttributeValue::S(r)) if r == relay);
        let live = read_number(sender_id, &head, OUTBOX_LEASE_UNTIL, None)?
            .is_some_and(|until| until > now_ms());
        if !(named && live) {
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

#[async_trait]
impl Outbox for DynamoStore {
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.db().await?.pending(limit).await
    }

    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>> {
        let id = sender_id.as_str();
        let context = || format!("taking the outbox lease of {id:?}");
        self.check_writable(&context()).await?;
        let db = self.db().await?;
        let now = now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).map_or(MAX_LEASE_MS, |ms| ms.min(MAX_LEASE_MS));
        let leased = db
            .client
            .update_item()
            .table_name(db.table)
            .set_key(Some(key(id, HEAD_SEQ)))
            // The head exists (an update would create it), and no other relay's lease is
            // live by this relay's clock.
            .condition_expression(
                "attribute_exists(#k) AND (attribute_not_exists(#u) OR #u <= :now OR #l = :relay)",
            )
            .update_expression("SET #l = :relay, #u = :until")
            .expression_attribute_names("#k", HASH_KEY)
            .expression_attribute_names("#l", OUTBOX_LEASE)
            .expression_attribute_names("#u", OUTBOX_LEASE_UNTIL)
            .expression_attribute_values(":relay", AttributeValue::S(relay.to_owned()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":until", number(now.saturating_add(ttl_ms)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match leased {
            Ok(output) => {
                let head = output.attributes.unwrap_or_default();
                let version = read_number(id, &head, VERSION, None)?
                    .ok_or_else(|| Error::corrupt(id, None, "the head item has no `version`"))?;
                let published = read_number(id, &head, OUTBOX_PUBLISHED, None)?.unwrap_or(0);
                Ok(Some(OutboxEntry {
                    sender_id: sender_id.clone(),
                    version,
                    published,
                }))
            }
            // Another relay holds it, or this store's layout does not hold the conversation
            // (never created, deleted, or only in Rasa's table): nothing to publish.
            Err(error) if condition_failed(&error) => {
                Ok((!db.head_exists(id).await?).then(|| empty(sender_id)))
            }
            Err(error) => Err(driver_error(context(), error)),
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
        self.check_writable(&format!("checkpointing the outbox of {id:?}"))
            .await?;
        let db = self.db().await?;
        for _ in 0..CHECKPOINT_ATTEMPTS {
            if to >= from {
                // Published up to the version: off the pending list, unless an append came
                // first (then the version misses and the second update moves only the
                // checkpoint, so the conversation stays pending).
                if db.try_checkpoint(id, relay, from, to, true).await? {
                    return Ok(());
                }
                if db.try_checkpoint(id, relay, from, to, false).await? {
                    return Ok(());
                }
            }
            match db.why_not(id, relay, from, to).await? {
                Missed::Nothing => return Ok(()),
                Missed::Raced => {}
            }
        }
        Err(Error::unavailable(format!(
            "the outbox checkpoint of {id:?} lost {CHECKPOINT_ATTEMPTS} races; nothing was changed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(number: u64, marks: &[(u64, &str)], exhausted: bool) -> Shard {
        Shard {
            shard: number,
            buffered: marks
                .iter()
                .map(|(pending, id)| Candidate {
                    pending: *pending,
                    sender_id: (*id).to_owned(),
                })
                .collect(),
            start: None,
            exhausted,
        }
    }

    fn ids(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.sender_id.as_str()).collect()
    }

    #[test]
    fn shards_are_merged_oldest_first() {
        let mut shards = vec![
            shard(0, &[(5, "e"), (9, "i")], true),
            shard(1, &[(1, "a"), (7, "g")], true),
            shard(2, &[], true),
            shard(3, &[(5, "d")], true),
        ];
        assert_eq!(ids(&take_oldest(&mut shards, 3)), ["a", "d", "e"]);
        assert_eq!(ids(&take_oldest(&mut shards, 10)), ["g", "i"]);
        assert!(take_oldest(&mut shards, 10).is_empty());
    }

    #[test]
    fn a_shard_with_more_pages_is_read_before_it_is_passed_over() {
        // Shard 1 has nothing buffered but more pages: nothing is taken before its next
        // page, which may hold the oldest heads.
        let mut shards = vec![shard(0, &[(5, "e")], true), shard(1, &[], false)];
        assert!(take_oldest(&mut shards, 10).is_empty());
        // Shard 0's page ran out while shard 1 still has pages: stop after it.
        let mut shards = vec![
            shard(0, &[(1, "a"), (2, "b")], false),
            shard(1, &[(3, "c")], true),
        ];
        assert_eq!(ids(&take_oldest(&mut shards, 10)), ["a", "b"]);
        assert!(shards[0].needs_page() && !shards[1].needs_page());
    }

    fn head(values: &[(&str, AttributeValue)]) -> Item {
        values
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn which_heads_are_publishable() {
        let n = |value: u64| AttributeValue::N(value.to_string());
        let s = |value: &str| AttributeValue::S(value.to_owned());
        let now = 1_000;
        // Marked, nothing published, no lease.
        let fresh = head(&[(VERSION, n(3)), (OUTBOX_PENDING, n(1))]);
        assert!(publishable("a", &fresh, now).expect("readable"));
        // Not marked.
        let plain = head(&[(VERSION, n(3))]);
        assert!(!publishable("a", &plain, now).expect("readable"));
        // Published whole.
        let whole = head(&[
            (VERSION, n(3)),
            (OUTBOX_PENDING, n(1)),
            (OUTBOX_PUBLISHED, n(3)),
        ]);
        assert!(!publishable("a", &whole, now).expect("readable"));
        // A live lease, and an expired one.
        let leased = |until: u64| {
            head(&[
                (VERSION, n(3)),
                (OUTBOX_PENDING, n(1)),
                (OUTBOX_PUBLISHED, n(1)),
                (OUTBOX_LEASE, s("relay-1")),
                (OUTBOX_LEASE_UNTIL, n(until)),
            ])
        };
        assert!(!publishable("a", &leased(now + 1), now).expect("readable"));
        assert!(publishable("a", &leased(now), now).expect("readable"));
        // A damaged head is an error (the caller lists it for the relay to report).
        let damaged = head(&[(VERSION, s("three")), (OUTBOX_PENDING, n(1))]);
        assert!(publishable("a", &damaged, now).is_err());
    }
}
