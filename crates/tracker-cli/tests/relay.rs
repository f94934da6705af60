//! `tracker relay` end to end: a store with its outbox on (SQLite, Redis) filled by
//! `tracker import`, published by the relay to the file broker — every event once, as Rasa
//! publishes it, in order per conversation — then nothing more on a second run, only what was
//! added on a third; a relay running until SIGTERM; the errors for a store without an outbox
//! and an endpoints file without a broker.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tracker_store::brokers::body_text;
use tracker_store::{BrokerMessage, Event};
use tracker_testkit::Service;

/// The `tracker_store:` section of a store with its outbox on, and the ids written to it (to
/// delete afterwards on a server).
enum Store {
    Sqlite,
    Redis { url: String, prefix: String },
}

impl Store {
    fn section(&self, dir: &Path) -> String {
        match self {
            Store::Sqlite => format!(
                "tracker_store:\n  type: sql\n  db: {}\n  outbox: true\n",
                yaml_string(&dir.join("tracker.db").display().to_string())
            ),
            Store::Redis { url, prefix } => format!(
                "tracker_store:\n  type: redis\n  url: {}\n  key_prefix: {prefix}\n  outbox: true\n",
                yaml_string(url)
            ),
        }
    }
}

/// An endpoints file with the store and a file broker writing to `events.log` in `dir`.
fn endpoints(dir: &Path, store: &Store) -> (PathBuf, PathBuf) {
    let log = dir.join("events.log");
    let path = write(
        dir,
        "endpoints.yml",
        &format!(
            "{}event_broker:\n  type: file\n  path: {}\n",
            store.section(dir),
            yaml_string(&log.display().to_string())
        ),
    );
    (path, log)
}

/// The lines of the broker's file, grouped by conversation, in file order.
fn published(log: &Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let sender = value["sender_id"].as_str().expect("sender_id").to_owned();
        grouped.entry(sender).or_default().push(line.to_owned());
    }
    grouped
}

/// Rasa's bodies for `conversations`, grouped by conversation.
fn bodies(conversations: &[(String, Vec<Event>)]) -> BTreeMap<String, Vec<String>> {
    conversations
        .iter()
        .map(|(name, events)| {
            let lines = events
                .iter()
                .zip(1..)
                .map(|(event, seq)| {
                    body_text(&BrokerMessage::new(name, seq, event)).expect("a body")
                })
                .collect();
            (name.clone(), lines)
        })
        .collect()
}

fn relays_the_outbox(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let (endpoints, log) = endpoints(dir, &store);
    let endpoints_arg = endpoints.display().to_string();
    let mut conversations = sample();
    if let Store::Redis { prefix, .. } = &store {
        // Conversation ids of this run only, on a shared server.
        for (name, _) in &mut conversations {
            *name = format!("{prefix}-{name}");
        }
    }
    let (first, later) = conversations.split_at(conversations.len() - 1);
    let import = |conversations: &[(String, Vec<Event>)], name: &str| {
        let lines: Vec<String> = conversations
            .iter()
            .map(|(id, events)| dialogue_line(id, events))
            .collect();
        let file = write(dir, name, &(lines.join("\n") + "\n"));
        stdout(
            tracker(dir)
                .args(["--endpoints", &endpoints_arg, "import"])
                .arg(file),
        );
    };
    import(first, "first.jsonl");
    stdout(tracker(dir).args(["--endpoints", &endpoints_arg, "relay", "--until-idle"]));
    assert_eq!(published(&log), bodies(first), "every event once, in order");

    // Nothing is pending: a second run publishes nothing.
    stdout(tracker(dir).args(["--endpoints", &endpoints_arg, "relay", "--until-idle"]));
    assert_eq!(published(&log), bodies(first), "nothing published twice");

    // A new conversation and a new event in an old one: only those go out.
    import(later, "later.jsonl");
    let (name, events) = &first[0];
    let mut longer = events.clone();
    longer.push(Event::bot("one more").at(1_800_000_000.0));
    import(&[(name.clone(), longer.clone())], "longer.jsonl");
    let (ok, stderr) = run_loud(loud(dir).args([
        "--endpoints",
        &endpoints_arg,
        "relay",
        "--until-idle",
        "--name",
        "relay-test",
    ]));
    assert!(ok, "relay failed: {stderr}");
    let added = later.iter().map(|(_, events)| events.len()).sum::<usize>() + 1;
    assert!(
        stderr.contains(&format!("relay relay-test: published {added} events")),
        "the summary counts what this run published: {stderr}"
    );
    let mut expected = bodies(&conversations);
    expected.insert(
        name.clone(),
        bodies(&[(name.clone(), longer)])[name].clone(),
    );
    assert_eq!(published(&log), expected);

    if let Store::Redis { .. } = &store {
        let ids: Vec<&str> = conversations.iter().map(|(id, _)| id.as_str()).collect();
        stdout(
            tracker(dir)
                .args(["--endpoints", &endpoints_arg, "delete"])
                .args(ids),
        );
    }
}

#[test]
fn relays_the_outbox_of_sqlite_to_the_file_broker() {
    relays_the_outbox(Store::Sqlite);
}

#[test]
fn relays_the_outbox_of_redis_to_the_file_broker() {
    let Some(redis) = service(Service::Redis) else {
        return;
    };
    relays_the_outbox(Store::Redis {
        url: redis.url,
        prefix: format!("clirelay{}", uuid::Uuid::new_v4().simple()),
    });
}

#[test]
fn a_running_relay_publishes_new_events_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let (endpoints, log) = endpoints(dir, &Store::Sqlite);
    let endpoints_arg = endpoints.display().to_string();
    // The store's schema first, so that the relay and the import do not both set it up.
    stdout(tracker(dir).args(["--endpoints", &endpoints_arg, "migrate-schema"]));
    let relay = std::process::Command::new(assert_cmd::cargo::cargo_bin("tracker"))
        .current_dir(dir)
        .args(["--endpoints", &endpoints_arg, "relay"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let conversations = sample();
    stdout(
        tracker(dir)
            .args(["--endpoints", &endpoints_arg, "import"])
            .arg(SAMPLE),
    );
    let expected = bodies(&conversations);
    let deadline = Instant::now() + Duration::from_secs(60);
    while published(&log) != expected {
        assert!(
            Instant::now() < deadline,
            "the running relay did not publish every event within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = relay.wait_with_output().expect("the relay stops");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit after SIGTERM: {stderr}");
    let total: usize = conversations.iter().map(|(_, events)| events.len()).sum();
    assert!(
        stderr.contains(&format!("published {total} events")),
        "the summary: {stderr}"
    );
}

#[test]
fn a_store_without_an_outbox_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "endpoints.yml",
        &format!(
            "tracker_store:\n  type: sql\n  db: tracker.db\nevent_broker:\n  type: file\n  path: {}\n",
            yaml_string(&dir.join("events.log").display().to_string())
        ),
    );
    let stderr = failure(
        tracker(dir)
            .args(["--endpoints"])
            .arg(&endpoints)
            .args(["relay", "--until-idle"]),
    );
    assert!(stderr.contains("outbox: true"), "{stderr}");
}

#[test]
fn an_endpoints_file_without_a_broker_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "endpoints.yml",
        "tracker_store:\n  type: sql\n  db: tracker.db\n  outbox: true\n",
    );
    let stderr = failure(
        tracker(dir)
            .args(["--endpoints"])
            .arg(&endpoints)
            .args(["relay", "--until-idle"]),
    );
    assert!(stderr.contains("no `event_broker:` section"), "{stderr}");
    let stderr = failure(tracker(dir).args(["relay"]));
    assert!(stderr.contains("relay needs --endpoints"), "{stderr}");
}
