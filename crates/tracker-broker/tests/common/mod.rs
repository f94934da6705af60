//! Helpers shared by the test files: the golden bodies and the test servers.
#![allow(dead_code)]

use serde_json::Value;
use tracker_core::{BrokerMessage, Event};

/// One line of `golden/bodies.jsonl`, written by Rasa 3.6.21's own code.
#[derive(Debug, Clone)]
pub struct Golden {
    /// `class variant`, for messages.
    pub what: String,
    /// The message built from the event Rasa serialised.
    pub message: BrokerMessage,
    /// The exact text Rasa's brokers publish for it.
    pub body: String,
}

/// Every golden body, in file order.
pub fn golden() -> Vec<Golden> {
    let text = include_str!("../../golden/bodies.jsonl");
    let goldens: Vec<Golden> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("golden line is JSON");
            let what = format!(
                "{} {}",
                value["class"].as_str().expect("class"),
                value["variant"].as_str().expect("variant")
            );
            let sender_id = value["sender_id"].as_str().expect("sender_id");
            let seq = value["seq"].as_u64().expect("seq");
            let event =
                Event::from_value(value["event"].clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
            Golden {
                message: BrokerMessage::new(sender_id, seq, &event),
                body: value["body"].as_str().expect("body").to_owned(),
                what,
            }
        })
        .collect();
    assert_eq!(goldens.len(), 60, "golden bodies missing");
    goldens
}

/// The golden messages alone.
pub fn golden_messages() -> Vec<BrokerMessage> {
    golden().into_iter().map(|g| g.message).collect()
}

/// Whether a missing server must fail the test (`CI=true`) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says loudly that a test did not run, or fails it under CI.
pub fn not_run(test: &str, reason: &str) {
    let line = format!("NOT RUN: {test}: {reason}");
    if in_ci() {
        panic!("{line} (CI=true: a missing server fails the test)");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of a passing
    // test, and a skipped test must be seen.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n{line}\n");
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A JSON object from `json!` output.
pub fn section(value: Value) -> tracker_core::JsonMap {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Whether something listens at `address` (`host:port`).
pub async fn listening(address: &str) -> bool {
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}
