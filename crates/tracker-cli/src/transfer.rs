//! Copying conversations between stores so that re-running never duplicates events.

use tracker_store::{Capabilities, Error, Event, ReadScope, Result, TrackerStore};

/// Copies `events` (a whole conversation) into `destination` as `sender_id`, continuing where
/// an earlier run stopped: events already there are compared, not written again. Returns the
/// number of events written.
///
/// # Errors
/// [`Error::InvalidInput`] when the destination holds different events for this conversation
/// (it is left unchanged), and any store error.
pub async fn copy_conversation(
    destination: &TrackerStore,
    sender_id: &str,
    events: &[Event],
) -> Result<u64> {
    let stored = destination.read(sender_id, ReadScope::All).await?;
    let mut version = stored.as_ref().map_or(0, |c| c.version);
    let already = version as usize;
    if let Some(stored) = stored
        && (already > events.len() || !same_events(&stored.events, &events[..already]))
    {
        return Err(Error::invalid_input(format!(
            "conversation {sender_id:?} already exists in the destination with different \
             events ({already} stored); it was left unchanged"
        )));
    }
    let rest = &events[already..];
    for batch in batches(rest, &destination.capabilities()) {
        version = destination.append(sender_id, version, batch).await?;
    }
    Ok(rest.len() as u64)
}

/// Whether two event lists are the same, compared as Rasa's stored text.
pub fn same_events(left: &[Event], right: &[Event]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|(a, b)| a.to_rasa_json() == b.to_rasa_json())
}

/// Describes how `stored` differs from `expected`, or `None` when they are the same.
pub fn difference(expected: &[Event], stored: &[Event]) -> Option<String> {
    if expected.len() != stored.len() {
        return Some(format!(
            "{} events in the source, {} in the destination",
            expected.len(),
            stored.len()
        ));
    }
    expected
        .iter()
        .zip(stored)
        .position(|(a, b)| a.to_rasa_json() != b.to_rasa_json())
        .map(|index| format!("event {} differs", index + 1))
}

/// Splits events into appends that fit the store's limits.
fn batches<'a>(events: &'a [Event], capabilities: &Capabilities) -> Vec<&'a [Event]> {
    let max_events = capabilities
        .max_events_per_append
        .unwrap_or(usize::MAX)
        .max(1);
    let max_bytes = capabilities.max_append_bytes.unwrap_or(usize::MAX);
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, event) in events.iter().enumerate() {
        let size = if max_bytes == usize::MAX {
            0
        } else {
            event.to_rasa_json().len()
        };
        let count = index - start;
        if count > 0 && (count >= max_events || bytes + size > max_bytes) {
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

    #[test]
    fn batches_respect_limits() {
        let events: Vec<Event> = (0..10)
            .map(|n| Event::bot(format!("{n}")).at(1.0))
            .collect();
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
}
