//! End-to-end runs of the `tracker` binary: every subcommand on the embedded SQLite default,
//! imports and migrations against each backend's test service, and migrations from Rasa's
//! own layouts.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::*;
use tracker_store::Event;
use tracker_store::sql::diesel::{self, Connection, connection::SimpleConnection};
use tracker_testkit::Service;

#[test]
fn every_subcommand_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    // import, twice: the second run writes nothing.
    stdout(tracker(dir).args(["import", SAMPLE]));
    let output = Command::cargo_bin("tracker")
        .expect("binary")
        .current_dir(dir)
        .args(["import", SAMPLE])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("imported 2 conversations, 0 events"),
        "{summary}"
    );
    assert!(
        dir.join("rasa.db").exists(),
        "the default store is rasa.db here"
    );

    // list
    let listing = stdout(tracker(dir).arg("list"));
    assert!(
        listing.contains("restaurant-booking") && listing.contains("67"),
        "{listing}"
    );
    assert!(
        listing.contains("chitchat-and-fallbacks") && listing.contains("51"),
        "{listing}"
    );
    assert!(listing.contains("2023-12-08T02:00:59Z"), "{listing}");
    let paged = stdout(tracker(dir).args(["list", "--limit", "1"]));
    assert!(paged.contains("more: --cursor"), "{paged}");

    // show: Rasa's tracker JSON, with the domain's slots; and a transcript.
    let json: serde_json::Value = serde_json::from_str(&stdout(tracker(dir).args([
        "--domain",
        DOMAIN,
        "show",
        "restaurant-booking",
        "--include-events",
        "all",
    ])))
    .expect("JSON");
    assert_eq!(json["events"].as_array().expect("events").len(), 67);
    assert_eq!(json["slots"]["cuisine"], "mexican");
    assert_eq!(json["latest_message"]["intent"]["name"], "chitchat");
    let none: serde_json::Value = serde_json::from_str(&stdout(tracker(dir).args([
        "show",
        "restaurant-booking",
        "--include-events",
        "NONE",
    ])))
    .expect("JSON");
    assert!(none["events"].is_null());
    let transcript = stdout(tracker(dir).args(["show", "restaurant-booking", "--transcript"]));
    assert!(
        transcript.contains("user: hey there  [greet]"),
        "{transcript}"
    );
    assert!(
        transcript.contains("bot:  Hey! How can I help you?"),
        "{transcript}"
    );
    let error =
        failure(tracker(dir).args(["show", "restaurant-booking", "--include-events", "SOME"]));
    assert!(
        error.starts_with("error: ") && error.lines().count() == 1,
        "{error}"
    );
    let error = failure(tracker(dir).args(["show", "nobody"]));
    assert!(error.contains("nobody"), "{error}");

    // export: the same conversations, event for event.
    let exported = stdout(tracker(dir).arg("export"));
    let mut read = parse_export(&exported);
    read.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = sample();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(read.len(), expected.len());
    for ((name, events), (expected_name, expected_events)) in read.iter().zip(&expected) {
        assert_eq!(name, expected_name);
        assert_eq!(texts(events), texts(expected_events), "{name}");
    }
    let file = dir.join("export.jsonl");
    stdout(tracker(dir).args(["export", "--output"]).arg(&file));
    assert_eq!(
        std::fs::read_to_string(&file).expect("export file"),
        exported
    );

    // migrate --to another store, with --verify; re-running writes nothing.
    let other = write(
        dir,
        "other.yml",
        "tracker_store:\n  type: sql\n  dialect: sqlite\n  db: other.db\n",
    );
    stdout(
        tracker(dir)
            .args(["migrate", "--verify", "--to"])
            .arg(&other),
    );
    stdout(
        tracker(dir)
            .args(["migrate", "--verify", "--to"])
            .arg(&other),
    );
    let copied = stdout(tracker(dir).args(["--endpoints"]).arg(&other).arg("export"));
    assert_eq!(copied, exported);

    // --verify catches an altered event (and re-running refuses to overwrite it).
    let mut conn = diesel::SqliteConnection::establish(&dir.join("other.db").display().to_string())
        .expect("open");
    conn.batch_execute(
        "UPDATE events SET data = replace(data, 'hey there', 'hey THERE') \
         WHERE sender_id = 'restaurant-booking' AND seq = 4",
    )
    .expect("alter an event");
    let error = failure(
        tracker(dir)
            .args(["migrate", "--verify", "--to"])
            .arg(&other),
    );
    assert!(error.contains("restaurant-booking"), "{error}");
    assert!(error.contains("event 4 differs"), "{error}");

    // delete
    let deleted = stdout(tracker(dir).args(["delete", "chitchat-and-fallbacks"]));
    assert!(deleted.contains("deleted chitchat-and-fallbacks"));
    failure(tracker(dir).args(["delete", "chitchat-and-fallbacks"]));
    assert!(!stdout(tracker(dir).arg("list")).contains("chitchat-and-fallbacks"));

    // prune: the sample is from 2023, so it is older than a day, not older than 100 years.
    let kept = stdout(tracker(dir).args(["prune", "--inactive-for", "36500d"]));
    assert!(kept.is_empty(), "{kept}");
    let dry = stdout(tracker(dir).args(["prune", "--dry-run", "--inactive-for", "1d"]));
    assert!(dry.contains("would delete restaurant-booking"), "{dry}");
    assert!(stdout(tracker(dir).arg("list")).contains("restaurant-booking"));
    stdout(tracker(dir).args(["prune", "--inactive-for", "1d"]));
    assert!(!stdout(tracker(dir).arg("list")).contains("restaurant-booking"));
    failure(tracker(dir).args(["prune", "--inactive-for", "soon"]));
}

#[test]
fn import_reports_bad_lines_and_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let file = write(
        dir,
        "mixed.jsonl",
        "{\"events\": [{\"event\": \"bot\", \"timestamp\": 1.5, \"text\": \"ok\"}], \"name\": \"good\"}\nnot json\n{\"events\": 3, \"name\": \"bad\"}\n",
    );
    let output = Command::cargo_bin("tracker")
        .expect("binary")
        .current_dir(dir)
        .arg("import")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("line 3"),
        "{stderr}"
    );
    assert!(stdout(tracker(dir).arg("list")).contains("good"));
}

/// Imports the sample into a server store, and migrates it there from a local store, with
/// --verify. The endpoints file reads the test URL from the environment (`${...}`): every
/// `tracker` run gets `env` set, the URL the test harness found among it.
fn server_round_trip(yaml: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let tracker = |dir: &Path| {
        let mut command = tracker(dir);
        command.envs(env.iter().copied());
        command
    };
    let prefix = format!("cli{}", uuid::Uuid::new_v4().simple());
    // Give the sample conversations ids of their own on a shared server.
    let sample = std::fs::read_to_string(SAMPLE)
        .expect("sample")
        .replace("\"name\": \"", &format!("\"name\": \"{prefix}-"));
    let file = write(dir, "sample.jsonl", &sample);
    let server = write(dir, "server.yml", yaml);
    let show = |endpoints: &Path| {
        stdout(tracker(dir).arg("--endpoints").arg(endpoints).args([
            "show",
            &format!("{prefix}-restaurant-booking"),
            "--include-events",
            "ALL",
        ]))
    };

    // import, twice
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&server)
            .arg("import")
            .arg(&file),
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&server)
            .arg("import")
            .arg(&file),
    );
    let shown = show(&server);
    let json: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(json["events"].as_array().expect("events").len(), 67);
    // list, export and a dry-run prune see them (the server may hold other conversations)
    let listing = stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&server)
            .args(["list", "--all"]),
    );
    assert!(
        listing.contains(&format!("{prefix}-restaurant-booking")),
        "{listing}"
    );
    let exported = parse_export(&stdout(
        tracker(dir).arg("--endpoints").arg(&server).arg("export"),
    ));
    let ours = exported
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .count();
    assert_eq!(ours, 2);
    let dry = stdout(tracker(dir).arg("--endpoints").arg(&server).args([
        "prune",
        "--dry-run",
        "--inactive-for",
        "1d",
    ]));
    assert!(
        dry.contains(&format!("would delete {prefix}-restaurant-booking")),
        "{dry}"
    );
    for name in ["restaurant-booking", "chitchat-and-fallbacks"] {
        stdout(
            tracker(dir)
                .arg("--endpoints")
                .arg(&server)
                .args(["delete", &format!("{prefix}-{name}")]),
        );
    }

    // migrate --to the server from a local store, twice, verified
    let local = write(
        dir,
        "local.yml",
        "tracker_store:\n  type: sqlite\n  db: local.db\n",
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&local)
            .arg("import")
            .arg(&file),
    );
    for _ in 0..2 {
        stdout(
            tracker(dir)
                .arg("--endpoints")
                .arg(&local)
                .args(["migrate", "--verify", "--to"])
                .arg(&server),
        );
    }
    assert_eq!(show(&server), show(&local));
    assert_eq!(show(&server), shown);
    for name in ["restaurant-booking", "chitchat-and-fallbacks"] {
        stdout(
            tracker(dir)
                .arg("--endpoints")
                .arg(&server)
                .args(["delete", &format!("{prefix}-{name}")]),
        );
    }
}

#[test]
fn postgres_store() {
    let Some(found) = service(Service::Postgres) else {
        return;
    };
    server_round_trip(
        "tracker_store:\n  type: sql\n  url: ${TRACKER_TEST_POSTGRES_URL}\n",
        &url_env(&found),
    );
}

#[test]
fn mysql_store() {
    let Some(found) = service(Service::Mysql) else {
        return;
    };
    server_round_trip(
        "tracker_store:\n  type: mysql\n  url: ${TRACKER_TEST_MYSQL_URL}\n",
        &url_env(&found),
    );
}

#[test]
fn redis_store() {
    let Some(found) = service(Service::Redis) else {
        return;
    };
    server_round_trip(
        "tracker_store:\n  type: redis\n  url: ${TRACKER_TEST_REDIS_URL}\n",
        &url_env(&found),
    );
}

#[test]
fn mongo_store() {
    let Some(found) = service(Service::Mongo) else {
        return;
    };
    let db = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    server_round_trip(
        &format!(
            "tracker_store:\n  type: mongod\n  url: ${{TRACKER_TEST_MONGO_URL}}\n  db: {db}\n"
        ),
        &url_env(&found),
    );
}

#[test]
fn dynamo_store() {
    let Some(found) = service(Service::Dynamo) else {
        return;
    };
    let table = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut env = AWS_TEST_ENV.to_vec();
    env.extend(url_env(&found));
    server_round_trip(
        &format!(
            "tracker_store:\n  type: dynamo\n  table_name: {table}\n  endpoint_url: ${{TRACKER_TEST_DYNAMO_URL}}\n"
        ),
        &env,
    );
}

#[test]
fn migrate_from_rasas_sql_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let conversations = sample();
    rasa_sqlite(&dir.join("rasa-own.db"), &conversations);
    let rasa = write(
        dir,
        "rasa.yml",
        "tracker_store:\n  type: SQL\n  db: rasa-own.db\n",
    );
    let output = stdout(
        tracker(dir)
            .args(["--endpoints"])
            .arg(write(
                dir,
                "new.yml",
                "tracker_store:\n  type: sqlite\n  db: new.db\n",
            ))
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(output.is_empty(), "{output}");
    let exported = parse_export(&stdout(tracker(dir).args([
        "--endpoints",
        "new.yml",
        "export",
    ])));
    assert_eq!(exported.len(), 2);
    for (name, events) in &exported {
        let (_, expected) = conversations
            .iter()
            .find(|(n, _)| n == name)
            .expect("a sample conversation");
        assert_eq!(texts(events), texts(expected));
    }
    // Rasa's table was read, not migrated.
    assert!(
        !has_seq_column(&dir.join("rasa-own.db")),
        "the Rasa database must not be altered"
    );
}

#[test]
fn migrate_from_rasas_redis() {
    let Some(redis) = service(Service::Redis) else {
        return;
    };
    use tracker_store::redis::fred::prelude::*;
    let prefix = format!("cli{}", uuid::Uuid::new_v4().simple());
    let conversations = sample();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime.block_on(async {
        let client = Builder::from_config(Config::from_url(&redis.url).expect("url"))
            .build()
            .expect("client");
        client.init().await.expect("connect");
        for (name, events) in &conversations {
            // Rasa's value: json.dumps({"events": [...], "name": id}).
            let mut record = tracker_store::JsonMap::new();
            record.insert(
                "events".into(),
                serde_json::Value::Array(events.iter().map(Event::to_value).collect()),
            );
            record.insert("name".into(), serde_json::Value::String(name.clone()));
            let text = tracker_store::json::to_python_json(&serde_json::Value::Object(record))
                .expect("render");
            let _: () = client
                .set(format!("{prefix}:tracker:{name}"), text, None, None, false)
                .await
                .expect("SET");
        }
        client
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let rasa = write(
        dir,
        "rasa.yml",
        &format!(
            "tracker_store:\n  type: redis\n  url: {}\n  key_prefix: {prefix}\n",
            yaml_string(&redis.url)
        ),
    );
    stdout(
        tracker(dir)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    let exported = parse_export(&stdout(tracker(dir).arg("export")));
    assert_eq!(exported.len(), 2);
    for (name, events) in &exported {
        let (_, expected) = conversations
            .iter()
            .find(|(n, _)| n == name)
            .expect("a sample conversation");
        assert_eq!(texts(events), texts(expected));
    }
    runtime.block_on(async {
        for (name, _) in &conversations {
            let _: i64 = client
                .del(format!("{prefix}:tracker:{name}"))
                .await
                .expect("DEL");
        }
    });
}

#[test]
fn migrate_from_rasas_mongo() {
    let Some(mongo) = service(Service::Mongo) else {
        return;
    };
    use tracker_store::mongo::mongodb::{self, bson};
    let db = format!("clirasa{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let conversations = sample();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = mongodb::Client::with_uri_str(&mongo.url)
            .await
            .expect("client");
        let collection = client
            .database(&db)
            .collection::<bson::Document>("conversations");
        for (name, events) in &conversations {
            // Rasa's document: the tracker's state fields and the `events` array.
            let events: Vec<bson::Bson> = events
                .iter()
                .map(|event| bson::to_bson(&event.to_value()).expect("BSON"))
                .collect();
            collection
                .insert_one(bson::doc! {
                    "sender_id": name,
                    "slots": {},
                    "latest_message": {},
                    "paused": false,
                    "events": events,
                })
                .await
                .expect("insert");
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let rasa = write(
        dir,
        "rasa.yml",
        &format!(
            "tracker_store:\n  type: mongod\n  url: {}\n  db: {db}\n",
            yaml_string(&mongo.url)
        ),
    );
    stdout(
        tracker(dir)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    // The stand-in and DynamoDB's numbers change whole-number floats and integers, so
    // compare what every store keeps: event types and texts, in order.
    assert_same_shapes(
        &parse_export(&stdout(tracker(dir).arg("export"))),
        &conversations,
    );
}

#[test]
fn migrate_from_rasas_dynamo() {
    let Some(dynamo) = service(Service::Dynamo) else {
        return;
    };
    use tracker_store::dynamo::aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    use tracker_store::dynamo::{aws_config, aws_sdk_dynamodb};
    fn attribute(value: &serde_json::Value) -> AttributeValue {
        use serde_json::Value;
        match value {
            Value::Null => AttributeValue::Null(true),
            Value::Bool(flag) => AttributeValue::Bool(*flag),
            Value::Number(number) => AttributeValue::N(number.to_string()),
            Value::String(text) => AttributeValue::S(text.clone()),
            Value::Array(values) => AttributeValue::L(values.iter().map(attribute).collect()),
            Value::Object(map) => {
                AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
            }
        }
    }
    let table = format!("clirasa{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let conversations = sample();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&dynamo.url)
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test", "test", None, None, "static",
                ))
                .load()
                .await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            // Rasa's table: hash key `sender_id` only, one item per conversation.
            client
                .create_table()
                .table_name(&table)
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("sender_id")
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("key"),
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("sender_id")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("attribute"),
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .expect("create Rasa's table");
            for (name, events) in &conversations {
                let events: Vec<AttributeValue> =
                    events.iter().map(|e| attribute(&e.to_value())).collect();
                client
                    .put_item()
                    .table_name(&table)
                    .item("sender_id", AttributeValue::S(name.clone()))
                    .item("name", AttributeValue::S(name.clone()))
                    .item("events", AttributeValue::L(events))
                    .send()
                    .await
                    .expect("Rasa's item");
            }
        });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let rasa = write(
        dir,
        "rasa.yml",
        &format!(
            "tracker_store:\n  type: dynamo\n  table_name: {table}\n  region: us-east-1\n  endpoint_url: {}\n",
            yaml_string(&dynamo.url)
        ),
    );
    stdout(
        tracker(dir)
            .envs(AWS_TEST_ENV)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    // The stand-in and DynamoDB's numbers change whole-number floats and integers, so
    // compare what every store keeps: event types and texts, in order.
    assert_same_shapes(
        &parse_export(&stdout(tracker(dir).arg("export"))),
        &conversations,
    );
}

/// What an interrupted migration leaves, the first batches of a conversation, is completed by
/// the next run without writing anything twice.
#[test]
fn migrate_from_rasa_resumes_after_an_interruption() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let conversations = sample();
    rasa_sqlite(&dir.join("rasa-own.db"), &conversations);
    let rasa = write(
        dir,
        "rasa.yml",
        "tracker_store:\n  type: sqlite\n  db: rasa-own.db\n",
    );
    let new = write(
        dir,
        "new.yml",
        "tracker_store:\n  type: sqlite\n  db: new.db\n",
    );
    let (name, events) = &conversations[0];
    assert_eq!(name, "restaurant-booking");
    let partial = write(dir, "partial.jsonl", &dialogue_line(name, &events[..30]));
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&new)
            .arg("import")
            .arg(&partial),
    );

    let total: usize = conversations.iter().map(|(_, events)| events.len()).sum();
    let (ok, stderr) = run_loud(
        loud(dir)
            .arg("--endpoints")
            .arg(&new)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("migrated 2 conversations, {} events", total - 30)),
        "{stderr}"
    );
    assert!(stderr.contains("all identical"), "{stderr}");
    let (ok, stderr) = run_loud(
        loud(dir)
            .arg("--endpoints")
            .arg(&new)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("migrated 2 conversations, 0 events"),
        "{stderr}"
    );
    let exported = parse_export(&stdout(
        tracker(dir).arg("--endpoints").arg(&new).arg("export"),
    ));
    assert_eq!(exported.len(), 2);
    for (name, events) in &exported {
        let (_, expected) = conversations
            .iter()
            .find(|(n, _)| n == name)
            .expect("a sample conversation");
        assert_eq!(texts(events), texts(expected), "{name}");
    }
}

/// A conversation the destination holds with other events is reported and left alone; the
/// other conversations are copied, and the exit code says one failed.
#[test]
fn a_diverged_conversation_is_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let conversations = sample();
    rasa_sqlite(&dir.join("rasa-own.db"), &conversations);
    let rasa = write(
        dir,
        "rasa.yml",
        "tracker_store:\n  type: sql\n  db: rasa-own.db\n",
    );
    let other = vec![Event::bot("something else").at(1_700_000_000.0)];
    let diverged = write(
        dir,
        "diverged.jsonl",
        &dialogue_line("restaurant-booking", &other),
    );
    stdout(tracker(dir).arg("import").arg(&diverged));

    let check = |stderr: &str, what: &str| {
        assert!(
            stderr.contains("\"restaurant-booking\"") && stderr.contains("event 1"),
            "{what} names the conversation and the event: {stderr}"
        );
        assert!(
            !stderr.contains("\"chitchat-and-fallbacks\""),
            "{what}: {stderr}"
        );
        let stored = parse_export(&stdout(tracker(dir).arg("export")));
        let events = |name: &str| {
            stored
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, events)| texts(events))
                .unwrap_or_default()
        };
        assert_eq!(
            events("restaurant-booking"),
            texts(&other),
            "{what}: left unchanged"
        );
        assert_eq!(
            events("chitchat-and-fallbacks"),
            texts(&conversations[1].1),
            "{what}: the other conversation is copied"
        );
    };

    let (ok, stderr) = run_loud(loud(dir).args(["migrate", "--from-rasa"]).arg(&rasa));
    assert!(!ok, "a diverged conversation fails the run: {stderr}");
    assert!(
        stderr.contains("migrated 1 conversations, 51 events")
            && stderr.contains("; 1 conversations failed"),
        "{stderr}"
    );
    check(&stderr, "migrate --from-rasa");

    // `import FILE` and `migrate --to` report it the same way.
    stdout(tracker(dir).args(["delete", "chitchat-and-fallbacks"]));
    let (ok, stderr) = run_loud(loud(dir).args(["import", SAMPLE]));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    check(&stderr, "import");

    let source = write(
        dir,
        "source.yml",
        "tracker_store:\n  type: sqlite\n  db: source.db\n",
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&source)
            .args(["import", SAMPLE]),
    );
    stdout(tracker(dir).args(["delete", "chitchat-and-fallbacks"]));
    let here = write(
        dir,
        "here.yml",
        "tracker_store:\n  type: sqlite\n  db: rasa.db\n",
    );
    let (ok, stderr) = run_loud(
        loud(dir)
            .arg("--endpoints")
            .arg(&source)
            .args(["migrate", "--verify", "--to"])
            .arg(&here),
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("1 differ"), "{stderr}");
    check(&stderr, "migrate --to");
}

#[test]
fn verbose_prints_the_stores_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let (ok, stderr) = run_loud(loud(dir).args(["--verbose", "import", SAMPLE]));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("metrics:"), "{stderr}");
    assert!(
        stderr.contains(
            "tracker_store_operations_total{store=\"sqlite\",operation=\"append_batch\",outcome=\"ok\"}"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "tracker_store_events_total{store=\"sqlite\",operation=\"append_batch\"} 118"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "tracker_store_operation_seconds{store=\"sqlite\",operation=\"append_batch\"} count="
        ),
        "{stderr}"
    );
    // Without the flag, nothing of it.
    let (ok, stderr) = run_loud(loud(dir).args(["import", SAMPLE]));
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("metrics:"), "{stderr}");
    // On failure too, after the error.
    let (ok, stderr) = run_loud(loud(dir).args(["-v", "show", "nobody"]));
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("metrics:")
            && stderr.contains("tracker_store_operations_total{store=\"sqlite\""),
        "{stderr}"
    );
}

/// The `endpoints.yml` Rasa runs with the Python package's class configures the same store
/// for `tracker`, as it is.
#[test]
fn rasas_endpoints_for_the_python_package_work_as_they_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "endpoints.yml",
        "action_endpoint:\n  url: http://localhost:5055/webhook\ntracker_store:\n  \
         type: tracker_store.RasaTrackerStore\n  backend: sqlite\n  db: bot.db\n  \
         retry_seconds: 3\n",
    );
    let (ok, stderr) = run_loud(
        loud(dir)
            .arg("--endpoints")
            .arg(&endpoints)
            .args(["import", SAMPLE]),
    );
    assert!(ok, "{stderr}");
    assert!(dir.join("bot.db").exists(), "the backend's `db`");
    assert!(!dir.join("rasa.db").exists());
    let listing = stdout(tracker(dir).arg("--endpoints").arg(&endpoints).arg("list"));
    assert!(listing.contains("restaurant-booking"), "{listing}");
    let (ok, stderr) = run_loud(
        loud(dir)
            .arg("--endpoints")
            .arg(&endpoints)
            .arg("migrate-schema"),
    );
    assert!(ok && stderr.contains("nothing changed"), "{stderr}");
}
