//! What the batch tests share: events, batches and what the store holds.

#![allow(dead_code)]

use serde_json::Value;
use tracker_core::{BatchAppend, ErrorKind, Event, ReadScope, TrackerStore};

/// A fresh sender id (or prefix of sender ids).
pub fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A session: its start, then `turns` user and bot turns labelled with `tag`.
pub fn session(t: f64, turns: usize, tag: &str) -> Vec<Event> {
    session_saying(t, turns, tag, &format!("{tag} reply"))
}

/// A session: its start, then `turns` user turns saying `user` and bot turns saying `bot`,
/// each followed by the turn's number.
pub fn session_saying(t: f64, turns: usize, user: &str, bot: &str) -> Vec<Event> {
    let mut events = vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t),
        Event::action("action_listen").at(t),
    ];
    for turn in 0..turns {
        events.push(Event::user(format!("{user} {turn}"), "greet", 0.9).at(t + turn as f64));
        events.push(Event::bot(format!("{bot} {turn}")).at(t + turn as f64 + 0.5));
    }
    events
}

/// `count` bot events labelled with `tag`.
pub fn bots(tag: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|n| Event::bot(format!("{tag} {n}")).at(1_700_000_000.0 + n as f64))
        .collect()
}

/// The events' JSON in Rasa's text form.
pub fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

/// A bot event's text, another event's name.
pub fn label(value: &Value) -> String {
    value
        .get("text")
        .or_else(|| value.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// What the store holds for `id` (nothing if it does not exist).
pub async fn stored(store: &TrackerStore, id: &str) -> Vec<String> {
    match store.read(id, ReadScope::All).await.expect("read") {
        Some(read) => {
            assert_eq!(read.version, read.events.len() as u64, "{id}: a gap");
            texts(&read.events)
        }
        None => Vec::new(),
    }
}

/// The batch of `entries` (sender id, expected version, events).
pub fn batch(entries: &[(String, u64, Vec<Event>)]) -> Vec<BatchAppend<'_>> {
    entries
        .iter()
        .map(|(sender_id, expected_version, events)| BatchAppend {
            sender_id,
            expected_version: *expected_version,
            events,
        })
        .collect()
}

/// Asserts that `result` is a `Conflict` reporting version `actual`.
pub fn assert_conflict(result: &tracker_core::Result<u64>, actual: u64, what: &str) {
    match result {
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Conflict, "{what}: {error}");
            assert_eq!(error.current_version(), Some(actual), "{what}: {error}");
        }
        Ok(version) => panic!("{what}: written (version {version}) instead of a conflict"),
    }
}
