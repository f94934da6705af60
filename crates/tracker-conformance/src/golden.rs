//! Files written by real Rasa 3.6.21, shipped with this crate (see `golden/README.md`).

use serde_json::Value;
use tracker_core::Domain;

/// One event per line: `class`, `variant`, `as_dict`, `json` (Rasa's exact text), ...
pub const EVENTS_JSONL: &str = include_str!("../golden/events.jsonl");
/// Inputs Rasa accepts (legacy tags, missing fields) and what they become.
pub const DESERIALIZE_JSONL: &str = include_str!("../golden/deserialize.jsonl");
/// Whole conversations with Rasa's derived state.
pub const TRACKERS_JSONL: &str = include_str!("../golden/trackers.jsonl");
/// The domain the golden trackers were built with.
pub const DOMAIN_YML: &str = include_str!("../golden/domain.yml");

/// Parses every line of a JSON Lines text.
///
/// # Panics
/// If a line is not JSON (the shipped files always are).
pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("golden files are JSON Lines"))
        .collect()
}

/// The golden domain.
///
/// # Panics
/// If the shipped `domain.yml` does not parse.
pub fn domain() -> Domain {
    serde_norway::from_str(DOMAIN_YML).expect("golden domain.yml parses")
}

/// The timestamp substituted where Rasa filled in the current time (the golden files write
/// `"<nondeterministic>"` there).
pub const FIXED_TIMESTAMP: f64 = 1_700_000_000.5;

/// Every golden event's `as_dict`, with nondeterministic timestamps replaced by
/// [`FIXED_TIMESTAMP`].
pub fn event_values() -> Vec<Value> {
    lines(EVENTS_JSONL)
        .into_iter()
        .map(|line| {
            let mut value = line["as_dict"].clone();
            if value["timestamp"].is_string() {
                value["timestamp"] = Value::from(FIXED_TIMESTAMP);
            }
            value
        })
        .collect()
}
