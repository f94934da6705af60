//! Appending to many conversations at once: [`TrackerStore::append_batch`] and the bulk copy
//! built on it, [`TrackerStore::import_batch`].

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::import::batches;
use crate::observe::{Operation, Outcome, observe};
use crate::rasa::Imported;
use crate::store::{Append, SenderId};
use crate::tracker_store::{TrackerStore, check_limits};

/// One conversation's part of a batch: events to append at a version.
#[derive(Debug, Clone, Copy)]
pub struct BatchAppend<'a> {
    /// The conversation.
    pub sender_id: &'a str,
    /// The version the conversation must be at (0: it must not exist yet).
    pub expected_version: u64,
    /// The events to append, at least one.
    pub events: &'a [Event],
}

impl Outcome for Vec<Result<u64>> {}

impl TrackerStore {
    /// Appends to several conversations at once, in as few round trips as the store allows.
    /// Each conversation's events are checked and written as by [`TrackerStore::append`]: all
    /// or nothing, at its own expected version, and independently of the others, so one
    /// conflict leaves the rest written. The result for each conversation is at its
    /// position; appended events are published to the event broker, if one is set.
    ///
    /// # Errors
    /// Per conversation: [`Error::Conflict`] when it is at another version, and
    /// [`Error::InvalidInput`] for an invalid sender id, no events, events over the store's
    /// limits, or a conversation named twice in one batch (its later entries); nothing is
    /// written for it then. The outer error when the store cannot tell each append's
    /// outcome (see [`Store::append_batch`](crate::Store::append_batch)).
    pub async fn append_batch(&self, batch: &[BatchAppend<'_>]) -> Result<Vec<Result<u64>>> {
        let capabilities = self.store().capabilities();
        let mut results: Vec<Option<Result<u64>>> = Vec::with_capacity(batch.len());
        let mut appends = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        let mut seen = HashSet::with_capacity(batch.len());
        for (position, item) in batch.iter().enumerate() {
            let prepared = SenderId::new(item.sender_id)
                .and_then(|id| Append::new(id, item.expected_version, item.events))
                .and_then(|append| {
                    check_limits(&capabilities, &append)?;
                    if seen.insert(item.sender_id) {
                        Ok(append)
                    } else {
                        Err(Error::invalid_input(format!(
                            "conversation {:?} is named more than once in one batch",
                            item.sender_id
                        )))
                    }
                });
            match prepared {
                Ok(append) => {
                    appends.push(append);
                    positions.push(position);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error.with_context(
                    self.store().name(),
                    "append",
                    Some(item.sender_id),
                )))),
            }
        }
        if !appends.is_empty() {
            let operation = Operation {
                store: self.store().name(),
                name: "append_batch",
                sender_id: None,
                events: appends.iter().map(|a| a.records().len()).sum(),
            };
            let written = observe(operation, self.store().append_batch(&appends)).await?;
            if written.len() != appends.len() {
                return Err(Error::backend(format!(
                    "the store answered {} results for a batch of {} appends",
                    written.len(),
                    appends.len()
                ))
                .with_context(self.store().name(), "append_batch", None));
            }
            for (position, result) in positions.into_iter().zip(written) {
                let item = &batch[position];
                let result = result.map_err(|error| {
                    error.with_context(self.store().name(), "append", Some(item.sender_id))
                });
                if let Ok(version) = result {
                    self.publish(item.sender_id, version, item.events).await;
                }
                results[position] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(Error::backend("no result"))))
            .collect())
    }

    /// Copies whole conversations into this store, as [`TrackerStore::import`] does one by
    /// one, but writing many conversations per [`TrackerStore::append_batch`]: a
    /// conversation the store does not hold yet costs no read. One the store already holds
    /// (an earlier, interrupted copy) is compared and continued as by
    /// [`TrackerStore::import`]. The result for each conversation is at its position.
    ///
    /// Conversations are appended in rounds: the first batch of every conversation, then
    /// the second of those longer than the store's per-append limits, and so on.
    ///
    /// # Errors
    /// Per conversation, as [`TrackerStore::import`]: [`Error::Diverged`] when the store holds
    /// other events for it, [`Error::Conflict`] when another writer appended during the
    /// copy, [`Error::InvalidInput`] for events over the store's limits or a conversation
    /// named twice.
    pub async fn import_batch(&self, conversations: &[(&str, &[Event])]) -> Vec<Result<Imported>> {
        let capabilities = self.capabilities();
        let chunks: Vec<Vec<&[Event]>> = conversations
            .iter()
            .map(|(_, events)| batches(events, &capabilities))
            .collect();
        let mut results: Vec<Option<Result<Imported>>> =
            conversations.iter().map(|_| None).collect();
        // Conversations whose copy continues in the next round: (index, next chunk, version).
        let mut round: Vec<(usize, usize, u64)> = Vec::new();
        // Conversations copied one by one: empty ones (which may still differ from what the
        // store holds) and those the store already holds.
        let mut one_by_one = Vec::new();
        let mut seen = HashSet::with_capacity(conversations.len());
        for (index, (sender_id, events)) in conversations.iter().enumerate() {
            if !seen.insert(*sender_id) {
                results[index] = Some(Err(Error::invalid_input(format!(
                    "conversation {sender_id:?} is named more than once in one import"
                ))));
            } else if events.is_empty() {
                one_by_one.push(index);
            } else {
                round.push((index, 0, 0));
            }
        }
        while !round.is_empty() {
            let batch: Vec<BatchAppend<'_>> = round
                .iter()
                .map(|&(index, chunk, version)| BatchAppend {
                    sender_id: conversations[index].0,
                    expected_version: version,
                    events: chunks[index][chunk],
                })
                .collect();
            let outcome = self.append_batch(&batch).await;
            let mut next = Vec::new();
            match outcome {
                // The store could not tell what it wrote: every conversation of the round
                // is compared and continued one by one.
                Err(_) => one_by_one.extend(round.iter().map(|&(index, _, _)| index)),
                Ok(written) => {
                    for (&(index, chunk, _), result) in round.iter().zip(written) {
                        match result {
                            Ok(version) if chunk + 1 < chunks[index].len() => {
                                next.push((index, chunk + 1, version));
                            }
                            Ok(version) => {
                                results[index] = Some(Ok(Imported {
                                    already_present: 0,
                                    written: conversations[index].1.len() as u64,
                                    version,
                                }));
                            }
                            // The store held the conversation before this copy began.
                            Err(Error::Conflict { .. }) if chunk == 0 => one_by_one.push(index),
                            Err(error) => results[index] = Some(Err(error)),
                        }
                    }
                }
            }
            round = next;
        }
        for index in one_by_one {
            let (sender_id, events) = conversations[index];
            results[index] = Some(self.import(sender_id, events).await);
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(Error::backend("no result"))))
            .collect()
    }
}
