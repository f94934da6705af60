//! Appending to many conversations at once. Their appends are packed into as few
//! `TransactWriteItems` as DynamoDB's limits allow (100 actions and 4 MB of items each: the
//! head's update and the event puts of several conversations), and up to
//! [`MAX_IN_FLIGHT`] such transactions are sent at once.
//!
//! A transaction canceled because conditions failed says which actions failed: a
//! conversation whose head condition failed is settled alone (a conflict at the version the
//! failed condition returned, or the adoption of Rasa's copy, as a single append would be),
//! one whose event puts met items an interrupted delete left is sent again with unconditional
//! puts, and the others are sent again together. When the reasons cannot be told apart, other
//! transactions kept getting in the way, or DynamoDB refused the transaction, each
//! conversation of it is appended alone. A failure after which the transaction may have been
//! applied (a timeout, a lost connection) fails the whole batch: its outcome is unknown.

use aws_sdk_dynamodb::types::TransactWriteItem;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracker_core::{Append, Error, Result};

use crate::append::{held_by_rasa, settle, unconditional_failed, write};
use crate::items::Db;
use crate::schema::{
    self, Item, MAX_TRANSACTION_ACTIONS, MAX_TRANSACTION_BYTES, VERSION, item_size, read_number,
};
use crate::transact::{Ended, Failed, Reason, send_transaction};
use crate::writes;

/// Most transactions of one batch in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 8;
/// Bytes counted for a head item in a transaction (it is well under 1 KB), as for a single
/// append.
const HEAD_BYTES: usize = 1024;

/// One conversation's append, ready to be sent.
#[derive(Debug)]
struct Entry<'a> {
    /// Its position in the batch.
    position: usize,
    append: &'a Append,
    /// Its event items.
    items: Vec<Item>,
    /// The size of its event items.
    bytes: usize,
    /// Whether its event puts carry `attribute_not_exists` (until they met items an
    /// interrupted delete left).
    conditional: bool,
}

impl<'a> Entry<'a> {
    /// The entry of `append`, at `position` in the batch.
    ///
    /// # Errors
    /// When the append is over DynamoDB's limits.
    fn new(position: usize, append: &'a Append) -> Result<Self> {
        let items = schema::append_items(append)?;
        Ok(Self {
            position,
            append,
            bytes: items.iter().map(item_size).sum(),
            items,
            conditional: true,
        })
    }

    /// Its actions in a transaction: the head's update, then one put per event.
    fn actions(&self) -> usize {
        self.items.len() + 1
    }

    /// What it counts towards a transaction's 4 MB.
    fn transaction_bytes(&self) -> usize {
        self.bytes + HEAD_BYTES
    }

    fn sender_id(&self) -> &str {
        self.append.sender_id().as_str()
    }
}

/// One conversation's result and its position; an `Err` of the whole (a failure after which
/// a transaction may have been applied) ends the batch.
type Outcome = (usize, Result<u64>);

/// Appends `appends` (of distinct conversations), each checked against its own expected
/// version and written all or nothing, independently of the others; the result of each at
/// its position.
///
/// # Errors
/// When a transaction may have been applied though it failed (its outcome is unknown), or
/// Rasa's table cannot be read for the appends to new conversations (nothing is written
/// then).
pub(crate) async fn append_batch(db: &Db<'_>, appends: &[Append]) -> Result<Vec<Result<u64>>> {
    let mut results: Vec<Option<Result<u64>>> = appends.iter().map(|_| None).collect();
    let mut entries = Vec::with_capacity(appends.len());
    for (position, append) in appends.iter().enumerate() {
        match Entry::new(position, append) {
            Ok(entry) => entries.push(entry),
            Err(error) => results[position] = Some(Err(error)),
        }
    }
    let entries = not_held_by_rasa(db, entries, &mut results).await?;
    let groups = pack(entries);
    tracing::debug!(
        appends = appends.len(),
        transactions = groups.len(),
        "appending a batch"
    );
    let mut waiting = groups.into_iter();
    let mut running = FuturesUnordered::new();
    for group in waiting.by_ref().take(MAX_IN_FLIGHT) {
        running.push(send_group(db, group));
    }
    while let Some(outcomes) = running.next().await {
        if let Some(group) = waiting.next() {
            running.push(send_group(db, group));
        }
        for (position, result) in outcomes? {
            results[position] = Some(result);
        }
    }
    Ok(results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| Err(Error::backend("an append of the batch got no result")))
        })
        .collect())
}

/// The entries left once those to new conversations Rasa's table holds have their conflict
/// in `results`: one `BatchGetItem` per 100 new conversations finds the candidates, each then
/// checked as a single append checks it.
async fn not_held_by_rasa<'a>(
    db: &Db<'_>,
    entries: Vec<Entry<'a>>,
    results: &mut [Option<Result<u64>>],
) -> Result<Vec<Entry<'a>>> {
    if db.rasa_table.is_none() {
        return Ok(entries);
    }
    let new: Vec<String> = entries
        .iter()
        .filter(|entry| entry.append.expected_version() == 0)
        .map(|entry| entry.sender_id().to_owned())
        .collect();
    if new.is_empty() {
        return Ok(entries);
    }
    let held = db.rasa_holds(&new).await?;
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.append.expected_version() != 0 || !held.contains(entry.sender_id()) {
            kept.push(entry);
            continue;
        }
        match held_by_rasa(db, entry.append).await {
            Ok(None) => kept.push(entry),
            Ok(Some(conflict)) => results[entry.position] = Some(Err(conflict)),
            Err(error) => results[entry.position] = Some(Err(error)),
        }
    }
    Ok(kept)
}

/// Packs entries into transactions, first fit: each goes into the first transaction it still
/// fits in (actions and bytes), or a new one. Each entry fits a transaction alone (checked
/// before, as for a single append).
fn pack(entries: Vec<Entry<'_>>) -> Vec<Vec<Entry<'_>>> {
    let mut groups: Vec<(usize, usize, Vec<Entry<'_>>)> = Vec::new();
    for entry in entries {
        let (actions, bytes) = (entry.actions(), entry.transaction_bytes());
        match groups.iter_mut().find(|(used, size, _)| {
            used + actions <= MAX_TRANSACTION_ACTIONS && size + bytes <= MAX_TRANSACTION_BYTES
        }) {
            Some((used, size, group)) => {
                *used += actions;
                *size += bytes;
                group.push(entry);
            }
            None => groups.push((actions, bytes, vec![entry])),
        }
    }
    groups.into_iter().map(|(_, _, group)| group).collect()
}

/// Sends one packed transaction until every conversation of it has its result: again without
/// the conversations whose conditions failed, and each conversation alone when the
/// transaction cannot be sent together.
///
/// # Errors
/// When a transaction may have been applied though it failed.
async fn send_group(db: &Db<'_>, mut group: Vec<Entry<'_>>) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(group.len());
    // Conversations whose head condition failed, with the head's version when it came back.
    let mut stale = Vec::new();
    while group.len() > 1 {
        let mut actions = Vec::with_capacity(MAX_TRANSACTION_ACTIONS);
        let mut sent = Vec::with_capacity(group.len());
        for entry in group {
            match entry_actions(db, &entry) {
                Ok(entry_actions) => {
                    actions.extend(entry_actions);
                    sent.push(entry);
                }
                Err(error) => outcomes.push((entry.position, Err(error))),
            }
        }
        group = sent;
        if group.len() < 2 {
            break;
        }
        let count = group.len();
        let context = || format!("appending to {count} conversations in one transaction");
        match send_transaction(db.client, &actions, &context).await {
            Ended::Committed => {
                outcomes.extend(
                    group
                        .drain(..)
                        .map(|entry| (entry.position, Ok(entry.append.new_version()))),
                );
            }
            Ended::ConditionsFailed(reasons) if reasons.len() == actions.len() => {
                let mut reasons = reasons.as_slice();
                let mut kept = Vec::with_capacity(group.len());
                for mut entry in group {
                    let (own, rest) = reasons.split_at(entry.actions());
                    reasons = rest;
                    if own[0].failed {
                        let version = head_version(entry.sender_id(), &own[0]);
                        stale.push((entry, version));
                    } else if !own[1..].iter().any(|reason| reason.failed) {
                        kept.push(entry);
                    } else if entry.conditional {
                        tracing::warn!(
                            sender_id = entry.sender_id(),
                            items = own[1..].iter().filter(|reason| reason.failed).count(),
                            "overwriting event items left by an interrupted delete"
                        );
                        entry.conditional = false;
                        kept.push(entry);
                    } else {
                        let error = unconditional_failed(entry.sender_id());
                        outcomes.push((entry.position, Err(error)));
                    }
                }
                group = kept;
            }
            Ended::ConditionsFailed(reasons) => {
                tracing::debug!(
                    actions = actions.len(),
                    reasons = reasons.len(),
                    "a canceled transaction gave reasons that do not match its actions; \
                     appending each conversation alone"
                );
                break;
            }
            Ended::StillConflicting => {
                tracing::debug!(
                    conversations = count,
                    "other transactions kept getting in the way; appending each conversation \
                     alone"
                );
                break;
            }
            Ended::Failed(failed) if failed.maybe_applied => return Err(failed.error),
            Ended::Failed(failed) => {
                tracing::debug!(
                    conversations = count,
                    error = %failed.error,
                    "a transaction of several conversations was refused; appending each \
                     conversation alone"
                );
                break;
            }
        }
    }
    for entry in group {
        let written = write(db, entry.append, &entry.items, entry.conditional).await;
        outcomes.push((entry.position, known(written)?));
    }
    for (entry, version) in stale {
        let settled = settle(db, entry.append, &entry.items, version).await;
        outcomes.push((entry.position, known(settled)?));
    }
    Ok(outcomes)
}

/// An entry's actions: the head's update (with the outbox's pending mark when the store
/// keeps one), then one put per event.
fn entry_actions(db: &Db<'_>, entry: &Entry<'_>) -> Result<Vec<TransactWriteItem>> {
    let mut actions = Vec::with_capacity(entry.actions());
    actions.push(writes::head_update(
        db.table,
        entry.append,
        db.pending_mark(),
    )?);
    for item in &entry.items {
        actions.push(writes::event_put(
            db.table,
            item.clone(),
            entry.conditional,
        )?);
    }
    Ok(actions)
}

/// The version of the head a failed head condition returned, if it returned one that reads.
fn head_version(sender_id: &str, reason: &Reason) -> Option<u64> {
    let item = reason.item.as_ref()?;
    read_number(sender_id, item, VERSION, None).ok().flatten()
}

/// A conversation's result, or the batch's error when its transaction may have been applied
/// though it failed.
fn known(result: Result<u64, Failed>) -> Result<Result<u64>> {
    match result {
        Ok(version) => Ok(Ok(version)),
        Err(failed) if failed.maybe_applied => Err(failed.error),
        Err(failed) => Ok(Err(failed.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::{Event, SenderId};

    fn appends(sizes: &[usize], text: usize) -> Vec<Append> {
        sizes
            .iter()
            .enumerate()
            .map(|(n, size)| {
                let events: Vec<Event> = (0..*size)
                    .map(|k| Event::bot("x".repeat(text)).at(1.0 + k as f64))
                    .collect();
                Append::new(SenderId::new(format!("c{n}")).expect("id"), 0, &events)
                    .expect("append")
            })
            .collect()
    }

    fn entries(appends: &[Append]) -> Vec<Entry<'_>> {
        appends
            .iter()
            .enumerate()
            .map(|(position, append)| Entry::new(position, append).expect("within the limits"))
            .collect()
    }

    fn shape(groups: &[Vec<Entry<'_>>]) -> Vec<Vec<usize>> {
        groups
            .iter()
            .map(|group| group.iter().map(|entry| entry.position).collect())
            .collect()
    }

    #[test]
    fn transactions_are_filled_up_to_a_hundred_actions() {
        // 20 events make 21 actions: four fit in 100.
        let batch = appends(&[20; 10], 10);
        let groups = pack(entries(&batch));
        assert_eq!(
            shape(&groups),
            [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        // A conversation of 99 events fills a transaction alone; small ones fill the gaps
        // of earlier transactions first.
        let batch = appends(&[60, 99, 30, 9, 1], 10);
        let groups = pack(entries(&batch));
        assert_eq!(shape(&groups), [vec![0, 2, 4], vec![1], vec![3]]);
        for group in &groups {
            let actions: usize = group.iter().map(Entry::actions).sum();
            assert!(actions <= MAX_TRANSACTION_ACTIONS, "{actions}");
        }
    }

    #[test]
    fn transactions_stay_under_four_megabytes() {
        // Ten events of 300 KB: 3 MB per conversation, so one per transaction, with room
        // for one more event of 300 KB beside it.
        let batch = appends(&[10, 10, 1], 300_000);
        let groups = pack(entries(&batch));
        assert_eq!(shape(&groups), [vec![0, 2], vec![1]]);
        // Five events of 390 KB (1.95 MB): two conversations per transaction, of 12 actions.
        let batch = appends(&[5; 5], 390_000);
        let groups = pack(entries(&batch));
        assert_eq!(shape(&groups), [vec![0, 1], vec![2, 3], vec![4]]);
        for group in &groups {
            let bytes: usize = group.iter().map(Entry::transaction_bytes).sum();
            assert!(bytes <= MAX_TRANSACTION_BYTES, "{bytes}");
        }
        assert!(pack(Vec::new()).is_empty());
    }
}
