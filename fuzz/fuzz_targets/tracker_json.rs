//! Arbitrary bytes → a conversation read as the CLI and the stores read one, then the tracker
//! state rebuilt from it.
//!
//! Accepted shapes: a Rasa export / import line `{"events": [...], "name": id}` (or
//! `"sender_id"`, as in the tracker body of `GET /conversations/<id>/tracker`), or a bare list
//! of events (the body of Rasa's `PUT .../tracker/events`). Events are read with
//! `deserialise_events`, as the CLI does. Rebuilding the tracker under three domains and
//! computing every view (`current_state` in each verbosity, `applied_events`, sessions,
//! `travel_back_in_time`, ...) must not panic, the views must agree with each other, and a
//! tracker rebuilt from its own dump must have the same state.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tracker_core::event::deserialise_events;
use tracker_core::json::to_python_json;
use tracker_core::{
    Append, Domain, Event, EventKind, EventVerbosity, SenderId, SlotDefinition, Tracker,
};

const VERBOSITIES: [EventVerbosity; 4] = [
    EventVerbosity::None,
    EventVerbosity::Applied,
    EventVerbosity::AfterRestart,
    EventVerbosity::All,
];

/// The domain variant a tracker starts from.
#[derive(Clone, Copy)]
enum Start {
    WithoutDomain,
    Empty,
    Slots,
}

impl Start {
    fn tracker(self, sender_id: &str, events: Vec<Event>) -> Tracker {
        match self {
            Start::WithoutDomain => {
                let mut tracker = Tracker::without_domain(sender_id);
                tracker.extend(events);
                tracker
            }
            Start::Empty => Tracker::from_events(sender_id, events, &Domain::empty()),
            Start::Slots => {
                let slot = |name: &str, initial_value: Value| SlotDefinition {
                    name: name.to_owned(),
                    initial_value,
                };
                let domain = Domain::with_slots(
                    [
                        slot("cuisine", Value::Null),
                        slot("num_people", json!(2.0)),
                        slot("location", json!("berlin")),
                        slot("features", json!([])),
                    ],
                    true,
                );
                Tracker::from_events(sender_id, events, &domain)
            }
        }
    }
}

fn views(tracker: &Tracker) -> Vec<Value> {
    VERBOSITIES
        .iter()
        .map(|&verbosity| tracker.current_state(verbosity))
        .collect()
}

fn check(tracker: &Tracker, start: Start) {
    let events = tracker.events();
    let applied = tracker.applied_event_indices();
    assert!(applied.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(applied.iter().all(|&index| index < events.len()));
    assert_eq!(tracker.applied_events().len(), applied.len());

    let sessions = tracker.sessions();
    assert_eq!(
        sessions.iter().map(|s| s.len()).sum::<usize>(),
        events.len()
    );
    let start_index = tracker.latest_session_start();
    assert_eq!(
        start_index,
        events.len() - sessions.last().map_or(events.len(), |s| s.len())
    );
    let after_restart = tracker.index_after_latest_restart();
    assert!(after_restart <= events.len());
    let _ = (
        tracker.latest_message(),
        tracker.latest_bot_utterance(),
        tracker.latest_action_name(),
        tracker.latest_input_channel(),
        tracker.followup_action(),
        tracker.is_paused(),
        tracker.active_loop(),
        tracker.slots().count(),
    );

    let state = views(tracker);
    assert_eq!(
        state[1]["events"].as_array().map(Vec::len),
        Some(applied.len())
    );
    assert_eq!(
        state[2]["events"].as_array().map(Vec::len),
        Some(events.len() - after_restart)
    );

    // Going back in time replays the events up to the first later one.
    let mut times: Vec<f64> = events.iter().map(|e| e.timestamp).take(3).collect();
    times.extend(events.last().map(|e| e.timestamp));
    times.extend([f64::NEG_INFINITY, f64::INFINITY]);
    // NaN compares false with every timestamp: only check that it does not panic.
    let _ = tracker.travel_back_in_time(f64::NAN);
    for time in times {
        let past = tracker.travel_back_in_time(time);
        let kept = events.iter().take_while(|e| e.timestamp <= time).count();
        assert_eq!(past.events().len(), kept);
        let _ = past.current_state(EventVerbosity::Applied);
    }

    // The tracker body as Rasa's HTTP API writes it, read back: the same state.
    let dump = to_python_json(&state[3]).expect("serialise");
    let body: Value = serde_json::from_str(&dump).expect("the dump is JSON");
    let read = deserialise_events(body["events"].as_array().expect("events"))
        .expect("the dump's events read back");
    let rebuilt = start.tracker(tracker.sender_id(), read);
    assert_eq!(views(&rebuilt), state, "a tracker rebuilt from its dump");
    let read_again = deserialise_events(
        rebuilt.current_state(EventVerbosity::All)["events"]
            .as_array()
            .expect("events"),
    )
    .expect("read back");
    assert_eq!(start.tracker(tracker.sender_id(), read_again), rebuilt);

    // What a store is given to write, read back as a store reads it.
    if let (Ok(id), false) = (SenderId::new(tracker.sender_id()), events.is_empty()) {
        let append = Append::new(id, 0, events).expect("parsed events can be appended");
        let stored: Vec<Event> = append
            .records()
            .iter()
            .map(|record| Event::from_json(&record.json).expect("a stored event reads back"))
            .collect();
        assert_eq!(
            views(&start.tracker(tracker.sender_id(), stored)),
            state,
            "a tracker rebuilt from its stored records"
        );
        assert_eq!(
            append.last_session_started(),
            events
                .iter()
                .rposition(|e| matches!(e.kind, EventKind::SessionStarted))
                .map(|index| index as u64 + 1)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let (sender_id, items) = match &value {
        Value::Array(items) => ("fuzz".to_owned(), items.clone()),
        Value::Object(map) => {
            let Some(name) = map
                .get("name")
                .or_else(|| map.get("sender_id"))
                .and_then(Value::as_str)
            else {
                return;
            };
            let items = match map.get("events") {
                Some(Value::Array(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return,
            };
            (name.to_owned(), items)
        }
        _ => return,
    };
    let Ok(events) = deserialise_events(&items) else {
        return;
    };
    let start = match data.len() % 3 {
        0 => Start::WithoutDomain,
        1 => Start::Empty,
        _ => Start::Slots,
    };
    let tracker = start.tracker(&sender_id, events);
    check(&tracker, start);
});
