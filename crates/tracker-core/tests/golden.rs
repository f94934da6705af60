//! Checks the event model and tracker state against every line written by Rasa 3.6.21.

use std::path::PathBuf;

use serde_json::Value;
use tracker_core::event::deserialise_events;
use tracker_core::json::to_python_json;
use tracker_core::{Domain, Event, EventKind, EventVerbosity, Tracker};

fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tracker-conformance/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn lines(name: &str) -> Vec<Value> {
    golden(name)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn domain() -> Domain {
    serde_norway::from_str(&golden("domain.yml")).expect("domain.yml")
}

const PLACEHOLDER: &str = "<nondeterministic>";

/// Compares `actual` with Rasa's `expected`, where a placeholder only requires a value of the
/// right type (a float timestamp, a string name).
fn assert_matches(actual: &Value, expected: &Value, nondeterministic: &[Value], what: &str) {
    let (Value::Object(actual_map), Value::Object(expected_map)) = (actual, expected) else {
        panic!("{what}: not objects");
    };
    let actual_keys: Vec<&String> = actual_map.keys().collect();
    let expected_keys: Vec<&String> = expected_map.keys().collect();
    assert_eq!(
        actual_keys, expected_keys,
        "{what}: keys or key order differ"
    );
    for (key, expected_value) in expected_map {
        let actual_value = &actual_map[key];
        if expected_value == PLACEHOLDER && nondeterministic.contains(&Value::from(key.as_str())) {
            match key.as_str() {
                "timestamp" => assert!(actual_value.is_f64(), "{what}: timestamp {actual_value}"),
                _ => assert!(actual_value.is_string(), "{what}: {key} {actual_value}"),
            }
        } else {
            assert_eq!(actual_value, expected_value, "{what}: {key} differs");
        }
    }
}

#[test]
fn every_golden_event_serialises_as_rasa() {
    let lines = lines("events.jsonl");
    assert!(lines.len() >= 60, "golden events missing");
    let mut types_seen = std::collections::BTreeSet::new();
    for line in &lines {
        let what = format!("{} {}", line["class"], line["variant"]);
        let expected = &line["as_dict"];
        let nondeterministic = line["nondeterministic"].as_array().expect("list").clone();
        let rasa_text = line["json"].as_str().expect("json text");

        let mut input = expected.clone();
        if input["timestamp"] == PLACEHOLDER {
            // Rasa filled in the current time; parsing a missing timestamp does the same.
            input.as_object_mut().expect("object").remove("timestamp");
        }
        let event = Event::from_value(input).unwrap_or_else(|e| panic!("{what}: {e}"));
        types_seen.insert(event.type_name().to_owned());
        assert_eq!(event.type_name(), expected["event"], "{what}: tag");
        let value = event.to_value();
        assert_matches(&value, expected, &nondeterministic, &what);

        if nondeterministic.is_empty() {
            // Exact text, and parse(text) -> serialise round-trips.
            assert_eq!(event.to_rasa_json(), rasa_text, "{what}: text");
            let reparsed = Event::from_json(rasa_text).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                reparsed.to_rasa_json(),
                rasa_text,
                "{what}: text round trip"
            );
            assert_eq!(reparsed, event, "{what}: value round trip");
            // serde's Serialize/Deserialize agree with to_value/from_value.
            let via_serde: Event = serde_json::from_str(rasa_text).expect("serde");
            assert_eq!(serde_json::to_value(&via_serde).expect("serde"), *expected);
        } else {
            // The Python text of our value, with the placeholder put back, is Rasa's text.
            let mut masked = value.clone();
            for key in &nondeterministic {
                masked[key.as_str().expect("key")] = Value::from(PLACEHOLDER);
            }
            assert_eq!(
                to_python_json(&masked).expect("render"),
                rasa_text,
                "{what}: text"
            );
        }
    }
    // Every event type Rasa has (the golden class list) was exercised.
    let types: Value = serde_json::from_str(&golden("event_types.json")).expect("types");
    for class in types.as_array().expect("list") {
        if class["abstract"] == true || class["golden_cases"].as_array().is_none_or(Vec::is_empty) {
            continue;
        }
        let tag = class["type_name"].as_str().expect("type_name");
        let tag = match tag {
            "form" => "active_loop",
            "form_validation" => "loop_interrupted",
            other => other,
        };
        assert!(types_seen.contains(tag), "no golden event of type {tag}");
    }
}

#[test]
fn every_deserialize_input_maps_as_rasa_maps_it() {
    for line in lines("deserialize.jsonl") {
        let input = &line["input"];
        let what = input.to_string();
        let parsed = deserialise_events(std::slice::from_ref(input));
        if let Some(error) = line.get("error") {
            let error = error.as_str().expect("error text");
            if error.contains("Unknown event name") {
                // Deliberate difference: an unknown tag is kept verbatim, not a failure.
                let events = parsed.expect("unknown tags are kept");
                assert_eq!(events.len(), 1, "{what}");
                assert!(matches!(events[0].kind, EventKind::Unknown(_)), "{what}");
                assert_eq!(&events[0].to_value(), input, "{what}: kept verbatim");
            } else {
                // Deliberate difference: a user message without `parse_data` (which Rasa's
                // HTTP schema allows but its loader crashes on) reads with empty NLU data.
                let events = parsed.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(events.len(), 1, "{what}");
                assert_eq!(events[0].type_name(), input["event"], "{what}");
            }
            continue;
        }
        let events = parsed.unwrap_or_else(|e| panic!("{what}: {e}"));
        if line["class"].is_null() {
            assert!(events.is_empty(), "{what}: Rasa skips it");
            continue;
        }
        assert_eq!(events.len(), 1, "{what}");
        let nondeterministic = line
            .get("nondeterministic")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert_matches(
            &events[0].to_value(),
            &line["as_dict"],
            &nondeterministic,
            &what,
        );
    }
}

#[test]
fn every_golden_tracker_derives_rasa_state() {
    let domain = domain();
    let trackers = lines("trackers.jsonl");
    assert!(!trackers.is_empty());
    for line in trackers {
        let sender_id = line["sender_id"].as_str().expect("sender_id");
        let values = line["events"].as_array().expect("events");
        let events: Vec<Event> = values
            .iter()
            .map(|value| Event::from_value(value.clone()).expect("event"))
            .collect();
        // Read from text as a store's events are: user messages build their NLU result only
        // when the state asks for it.
        let from_text: Vec<Event> = values
            .iter()
            .map(|value| {
                Event::from_json(&to_python_json(value).expect("render")).expect("event text")
            })
            .collect();
        let read = Tracker::from_events(sender_id, from_text, &domain);
        assert_eq!(
            read.current_state(EventVerbosity::All),
            line["state_all"],
            "{sender_id}: current_state(ALL) of events read from text"
        );
        let tracker = Tracker::from_events(sender_id, events, &domain);
        assert_eq!(read, tracker, "{sender_id}: the same tracker either way");

        assert_eq!(
            tracker.current_state(EventVerbosity::All),
            line["state_all"],
            "{sender_id}: current_state(ALL)"
        );
        let mut without_events = tracker.current_state(EventVerbosity::None);
        assert!(without_events["events"].is_null());
        without_events
            .as_object_mut()
            .expect("object")
            .remove("events");
        assert_eq!(
            without_events, line["state_dialogue_all_without_events"],
            "{sender_id}: state without events"
        );

        let applied: Vec<u64> = tracker
            .applied_event_indices()
            .into_iter()
            .map(|i| i as u64)
            .collect();
        let expected: Vec<u64> = line["applied_event_indices"]
            .as_array()
            .expect("indices")
            .iter()
            .map(|i| i.as_u64().expect("index"))
            .collect();
        assert_eq!(applied, expected, "{sender_id}: applied events");
        let applied_state = tracker.current_state(EventVerbosity::Applied);
        let expected_applied: Vec<Value> = expected
            .iter()
            .map(|&i| line["state_all"]["events"][i as usize].clone())
            .collect();
        assert_eq!(
            applied_state["events"],
            Value::Array(expected_applied),
            "{sender_id}"
        );

        let after_restart = line["after_restart_index"].as_u64().expect("index") as usize;
        assert_eq!(
            tracker.index_after_latest_restart(),
            after_restart,
            "{sender_id}"
        );
        let state = tracker.current_state(EventVerbosity::AfterRestart);
        let expected_events =
            &line["state_all"]["events"].as_array().expect("events")[after_restart..];
        assert_eq!(
            state["events"].as_array().expect("events"),
            expected_events,
            "{sender_id}"
        );
    }
}

#[test]
fn fresh_tracker_state_is_rasas() {
    let tracker = Tracker::new("fresh", &domain());
    let state = tracker.current_state(EventVerbosity::All);
    let expected = serde_json::json!({
        "sender_id": "fresh",
        "slots": {"cuisine": null, "num_people": null, "outdoor_seating": null, "location": null,
                  "features": null, "search_results": null, "requested_slot": null,
                  "session_started_metadata": null},
        "latest_message": {"intent": {}, "entities": [], "text": null, "message_id": null, "metadata": {}},
        "latest_event_time": null, "followup_action": "action_listen", "paused": false,
        "events": [], "latest_input_channel": null, "active_loop": {},
        "latest_action": {}, "latest_action_name": null
    });
    assert_eq!(state, expected);
    assert_eq!(
        to_python_json(&state).expect("render"),
        to_python_json(&expected).expect("render"),
        "key order"
    );
}
