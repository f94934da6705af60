//! Helpers of the `tracker` binary's tests: running it, the sample conversations, Rasa's
//! SQLite layout, the test services.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tracker_store::sql::diesel::{self, Connection, RunQueryDsl, connection::SimpleConnection};
use tracker_store::{Event, event::deserialise_events};
use tracker_testkit::{Service, service_url};

pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample/restaurant.jsonl");
pub const DOMAIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample/domain.yml");

pub fn tracker(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("tracker").expect("the binary is built");
    command.current_dir(dir).arg("--quiet");
    command
}

pub fn stdout(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

pub fn failure(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(!output.status.success(), "{command:?} should fail");
    String::from_utf8(output.stderr).expect("UTF-8")
}

/// The sample conversations: (name, events).
pub fn sample() -> Vec<(String, Vec<Event>)> {
    parse_export(&std::fs::read_to_string(SAMPLE).expect("sample"))
}

pub fn parse_export(text: &str) -> Vec<(String, Vec<Event>)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let events = deserialise_events(value["events"].as_array().expect("events"))
                .expect("events parse");
            (value["name"].as_str().expect("name").to_owned(), events)
        })
        .collect()
}

/// Checks that `exported` holds the sample conversations with the same event types and texts.
pub fn assert_same_shapes(exported: &[(String, Vec<Event>)], sample: &[(String, Vec<Event>)]) {
    let shape = |events: &[Event]| -> Vec<(String, Option<String>)> {
        events
            .iter()
            .map(|e| {
                (
                    e.type_name().to_owned(),
                    e.to_value()["text"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    assert_eq!(exported.len(), sample.len());
    for (name, events) in exported {
        let (_, expected) = sample
            .iter()
            .find(|(n, _)| n == name)
            .expect("a sample conversation");
        assert_eq!(shape(events), shape(expected), "{name}");
    }
}

pub fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

/// `text` as a YAML string (a JSON string is one).
pub fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// The environment a `tracker` run needs to reach `found` through `${...}` in endpoints.yml.
pub fn url_env(found: &tracker_testkit::ServiceUrl) -> [(&'static str, &str); 1] {
    [(found.service.env_var(), found.url.as_str())]
}

/// Static credentials for the AWS chain of a `tracker` run against the local DynamoDB
/// server, which accepts any.
pub const AWS_TEST_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The URL of a test service (or `None` after the harness's loud skip), from a plain test.
pub fn service(service: Service) -> Option<tracker_testkit::ServiceUrl> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(service_url(service))
}

/// Rasa's SQLite database: its DDL and its rows, as Rasa's SQLTrackerStore writes them.
pub fn rasa_sqlite(path: &Path, conversations: &[(String, Vec<Event>)]) {
    let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    conn.batch_execute(
        "CREATE TABLE events (id INTEGER NOT NULL, sender_id VARCHAR(255) NOT NULL, \
         type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), \
         action_name VARCHAR(255), data TEXT, PRIMARY KEY (id)); \
         CREATE INDEX ix_events_sender_id ON events (sender_id);",
    )
    .expect("Rasa's DDL");
    // Rasa writes turn by turn, so conversations interleave.
    let longest = conversations.iter().map(|c| c.1.len()).max().unwrap_or(0);
    for index in 0..longest {
        for (name, events) in conversations {
            let Some(event) = events.get(index) else {
                continue;
            };
            let quote = |text: Option<&str>| {
                text.map_or("NULL".to_owned(), |t| {
                    format!("'{}'", t.replace('\'', "''"))
                })
            };
            diesel::sql_query(format!(
                "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) \
                 VALUES ({}, {}, {}, {}, {}, {})",
                quote(Some(name)),
                quote(Some(event.type_name())),
                event.timestamp,
                quote(event.intent_name()),
                quote(event.name()),
                quote(Some(&event.to_rasa_json())),
            ))
            .execute(&mut conn)
            .expect("Rasa's row");
        }
    }
}

/// Runs `command` without `--quiet`; returns whether it succeeded and its standard error.
pub fn run_loud(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("runs");
    (
        output.status.success(),
        String::from_utf8(output.stderr).expect("UTF-8"),
    )
}

pub fn loud(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("tracker").expect("the binary is built");
    command.current_dir(dir);
    command
}

/// One export line: Rasa's Dialogue shape.
pub fn dialogue_line(name: &str, events: &[Event]) -> String {
    serde_json::json!({
        "events": events.iter().map(Event::to_value).collect::<Vec<_>>(),
        "name": name,
    })
    .to_string()
}

/// Whether the SQLite database at `path` has this store's `seq` column in `events`.
pub fn has_seq_column(path: &std::path::Path) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    let counts: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM pragma_table_info('events') WHERE name = 'seq'",
    )
    .load(&mut conn)
    .expect("pragma");
    counts.first().map_or(0, |count| count.n) == 1
}
