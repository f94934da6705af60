//! Bodies compared byte for byte with what Rasa 3.6.21's own code publishes
//! (`golden/bodies.jsonl`, written by `golden/generate.py`).

mod common;

#[test]
fn every_body_is_rasas_text_byte_for_byte() {
    let goldens = common::golden();
    let mut classes = std::collections::BTreeSet::new();
    for golden in &goldens {
        let text = tracker_broker::body_text(&golden.message).expect("serialises");
        assert_eq!(text, golden.body, "{}", golden.what);
        assert!(text.is_ascii(), "{}: ensure_ascii", golden.what);
        classes.insert(golden.what.split(' ').next().unwrap_or_default().to_owned());
    }
    // Every event class of Rasa 3.6.21 (the legacy form classes included).
    assert_eq!(classes.len(), 23, "{classes:?}");
}

#[test]
fn the_body_starts_with_the_sender_id() {
    for golden in common::golden() {
        let prefix = format!(
            "{{\"sender_id\": {}, \"event\": ",
            tracker_core::json::to_python_json(&golden.message.sender_id).expect("json")
        );
        assert!(
            golden.body.starts_with(&prefix),
            "{}: {}",
            golden.what,
            golden.body
        );
    }
}
