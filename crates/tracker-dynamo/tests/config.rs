//! Configuration as Rasa hands it over: with every value from `${VAR}`, every key is a
//! string, and the store starts from such a section (on the test server); an invalid value is
//! refused naming its key and type, never the value.

mod common;

use tracker_core::config::from_keys;
use tracker_core::{ErrorKind, Event, JsonMap, TrackerStore};
use tracker_dynamo::{DynamoConfig, DynamoStore, REGISTRATION};

const WHAT: &str = "the DynamoDB tracker store";

fn section(value: serde_json::Value) -> JsonMap {
    match value {
        serde_json::Value::Object(keys) => keys,
        other => panic!("not a section: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_section_of_strings_starts_the_store() {
    let Some(url) = common::url().await else {
        return;
    };
    let table = common::fresh_table("strings");
    let keys = section(serde_json::json!({
        "table_name": table, "region": "us-east-1", "endpoint_url": url,
        "migrate": "true", "adopt_rasa": "false", "outbox": "false"
    }));
    for key in (REGISTRATION.keys)() {
        assert!(keys.contains_key(*key), "{key:?} is not in the section");
        assert!(keys[*key].is_string(), "{key:?} is not a string");
    }
    let config: DynamoConfig = from_keys(WHAT, keys).expect("strings");
    assert!(config.migrate && !config.adopt_rasa);
    let loader =
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials());
    let store = TrackerStore::new(
        DynamoStore::connect_with(&config, loader)
            .await
            .expect("connect, creating the table"),
    );
    assert_eq!(
        store
            .append("strings", 0, &[Event::bot("hi").at(1.0)])
            .await
            .expect("append"),
        1
    );

    // `migrate: "false"` checks instead of creating.
    let missing = common::fresh_table("strings-missing");
    let config: DynamoConfig = from_keys(
        WHAT,
        section(serde_json::json!({
            "table_name": missing, "endpoint_url": url, "migrate": "false"
        })),
    )
    .expect("strings");
    let loader =
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials());
    let error = DynamoStore::connect_with(&config, loader)
        .await
        .expect_err("no table, no migrate");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn an_invalid_value_names_its_key_and_type_but_not_the_value() {
    for (key, value, kind) in [
        ("migrate", serde_json::json!("perhaps-s3cret"), "a string"),
        ("adopt_rasa", serde_json::json!("s3cret"), "a string"),
        ("outbox", serde_json::json!("s3cret"), "a string"),
        ("migrate", serde_json::json!(1), "a number"),
        ("table_name", serde_json::json!({"s3cret": 1}), "a map"),
    ] {
        let mut keys = JsonMap::new();
        keys.insert(key.to_owned(), value);
        let error = (REGISTRATION.connect)("dynamo", keys)
            .await
            .expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("`{key}`")), "{message}");
        assert!(message.contains(kind), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
