//! Arbitrary bytes → one event read from JSON, as every store reads its stored text.
//!
//! When the input is read as an event, its Rasa text must read back, and writing and reading
//! again must be stable: the second text equals the first (Rasa's normalisations, such as a
//! missing timestamp becoming the current time, apply once), and the event read from it is
//! equal to the one read before. The text must be what Python's `json.dumps` writes: printable
//! ASCII only. An append of the event must carry that same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tracker_core::{Append, Event, SenderId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = Event::from_json(text) else {
        return;
    };
    // Accessors the SQL columns are filled from.
    let _ = (event.type_name(), event.name(), event.intent_name());

    let first = event.to_rasa_json();
    assert!(
        first.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "Rasa text must be printable ASCII: {first}"
    );
    let again = Event::from_json(&first)
        .unwrap_or_else(|e| panic!("written text must read back: {e}\n{first}"));
    let second = again.to_rasa_json();
    assert_eq!(first, second, "writing a read event must be stable");
    let third = Event::from_json(&second).expect("stable text reads back");
    assert_eq!(
        again, third,
        "reading the same text twice gives the same event"
    );

    // The text is the serde value of the event.
    let value: Value = serde_json::from_str(&first).expect("written text is JSON");
    assert_eq!(value, again.to_value());
    assert_eq!(value, serde_json::to_value(&again).expect("serialise"));

    // A parsed event's timestamp is always finite, so it can be appended.
    assert!(event.timestamp.is_finite(), "timestamp {}", event.timestamp);
    let id = SenderId::new("fuzz").expect("valid id");
    let append = Append::new(id, 0, [&event]).expect("a parsed event can be appended");
    assert_eq!(append.records()[0].json, first);
});
