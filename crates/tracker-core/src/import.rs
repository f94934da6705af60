//! Copying whole conversations into a store: batched by the store's limits, resumable, and
//! never over different events.

use crate::error::{Error, Result};
use crate::event::Event;
use crate::rasa::{Imported, RasaSource};
use crate::store::{Capabilities, ReadScope};
use crate::tracker_store::TrackerStore;

impl TrackerStore {
    /// Copies `events`, a whole conversation, into this store as `sender_id`, continuing where
    /// an earlier copy stopped: events already stored are compared (as Rasa's JSON text), not
    /// written again. The rest is appended in batches that fit the store's declared limits,
    /// each checked like any other append and published to the event broker if one is set.
    ///
    /// # Errors
    /// [`Error::Diverged`] naming the first differing position when the store holds other
    /// events for this conversation (nothing is written); [`Error::Conflict`] when another
    /// writer appended during the copy (the batches written so far stay, and a new call
    /// resumes after them); [`Error::InvalidInput`] for an event over the store's limits.
    pub async fn import(&self, sender_id: &str, events: &[Event]) -> Result<Imported> {
        let stored = self.read(sender_id, ReadScope::All).await?;
        let stored = stored
            .map(|conversation| conversation.events)
            .unwrap_or_default();
        if let Some(position) = first_difference(&stored, events) {
            return Err(Error::diverged(
                sender_id,
                position,
                format!(
                    "the source has {} events and the store {}; they differ from event \
                     {position} on",
                    events.len(),
                    stored.len()
                ),
            ));
        }
        let mut version = stored.len() as u64;
        let rest = &events[stored.len()..];
        for batch in batches(rest, &self.capabilities()) {
            version = self.append(sender_id, version, batch).await?;
        }
        Ok(Imported {
            already_present: stored.len() as u64,
            written: rest.len() as u64,
            version,
        })
    }

    /// Copies the conversation `source` holds for `sender_id` with [`TrackerStore::import`];
    /// `None` when the source has no such conversation. An empty Rasa record writes nothing.
    ///
    /// # Errors
    /// As [`TrackerStore::import`], and the source's errors.
    pub async fn import_from(
        &self,
        source: &dyn RasaSource,
        sender_id: &str,
    ) -> Result<Option<Imported>> {
        let Some(conversation) = source.read(sender_id).await? else {
            return Ok(None);
        };
        self.import(sender_id, &conversation.events).await.map(Some)
    }
}

/// The first position (from 1) at which `stored` is not a prefix of `source`, compared as
/// Rasa's stored text; `None` when it is one.
pub fn first_difference(stored: &[Event], source: &[Event]) -> Option<u64> {
    let common = stored
        .iter()
        .zip(source)
        .position(|(a, b)| a.to_rasa_json() != b.to_rasa_json());
    match common {
        Some(index) => Some(index as u64 + 1),
        None if stored.len() > source.len() => Some(source.len() as u64 + 1),
        None => None,
    }
}

/// Splits events into consecutive appends that fit `capabilities`' limits on events and
/// bytes per append. A single event over the byte limit gets a batch of its own, which the
/// limit check then rejects with a clear error.
pub fn batches<'a>(events: &'a [Event], capabilities: &Capabilities) -> Vec<&'a [Event]> {
    let max_events = capabilities
        .max_events_per_append
        .unwrap_or(usize::MAX)
        .max(1);
    let max_bytes = capabilities.max_append_bytes;
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, event) in events.iter().enumerate() {
        let size = max_bytes.map_or(0, |_| event.to_rasa_json().len());
        let count = index - start;
        if count > 0 && (count >= max_events || max_bytes.is_some_and(|max| bytes + size > max)) {
            batches.push(&events[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        batches.push(&events[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bots(n: usize) -> Vec<Event> {
        (0..n).map(|n| Event::bot(format!("{n}")).at(1.0)).collect()
    }

    #[test]
    fn batches_respect_limits() {
        let events = bots(10);
        let mut capabilities = Capabilities::new();
        assert_eq!(batches(&events, &capabilities).len(), 1);
        capabilities.max_events_per_append = Some(4);
        let sizes: Vec<usize> = batches(&events, &capabilities)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        capabilities.max_events_per_append = None;
        capabilities.max_append_bytes = Some(events[0].to_rasa_json().len() * 3);
        let sizes: Vec<usize> = batches(&events, &capabilities)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        assert!(batches(&[], &capabilities).is_empty());
    }

    #[test]
    fn differences_are_found_by_position() {
        let events = bots(5);
        assert_eq!(first_difference(&[], &events), None);
        assert_eq!(first_difference(&events[..3], &events), None);
        assert_eq!(first_difference(&events, &events), None);
        assert_eq!(first_difference(&events, &events[..2]), Some(3));
        let mut other = events.clone();
        other[1] = Event::bot("else").at(1.0);
        assert_eq!(first_difference(&other[..3], &events), Some(2));
    }
}
