//! Configuration: the keys of an `endpoints.yml` section (numbers and booleans also as text,
//! as Rasa's `${VAR}` values arrive), and invalid configurations refused before any
//! connection. Only starting a store from a section needs a server.

mod common;

use serde_json::{Value, json};
use tracker_core::config::from_keys;
use tracker_core::{ErrorKind, Store};
use tracker_mongo::{MongoConfig, MongoRasaSource, MongoStore, REGISTRATION};

fn section(value: Value) -> tracker_core::JsonMap {
    match value {
        Value::Object(keys) => keys,
        other => panic!("not a section: {other}"),
    }
}

#[tokio::test]
async fn bad_configuration_is_a_config_error_before_any_connection() {
    for config in [
        MongoConfig::from_url("http://127.0.0.1:1"),
        MongoConfig::from_url("mongodb://127.0.0.1:1").with_db("a/b"),
        MongoConfig::from_url("mongodb://127.0.0.1:1").with_collection(""),
        MongoConfig::from_url("mongodb://127.0.0.1:1").with_bucket_size(0, 1),
        MongoConfig {
            password: Some("secret".to_owned()),
            ..MongoConfig::from_url("mongodb://127.0.0.1:1")
        },
        MongoConfig {
            store_type: Some("redis".to_owned()),
            ..MongoConfig::default()
        },
    ] {
        let error = MongoStore::connect(&config).await.expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::Config, "{config:?}: {error}");
        assert!(!error.to_string().contains("secret"));
        let error = MongoRasaSource::connect(&config)
            .await
            .expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::Config, "{config:?}: {error}");
    }
}

#[test]
fn endpoints_yml_section_deserialises() {
    let keys = section(json!({
        "url": "mongodb://rasa:s3cr3t@mongo.internal:27017/?tls=true",
        "db": "bot",
        "collection": "trackers",
    }));
    let config: MongoConfig = from_keys("the MongoDB tracker store", keys).expect("valid");
    config.validate().expect("valid");
    assert_eq!(config.db, "bot");
    assert_eq!(
        config.display_url(),
        "mongodb://rasa:<redacted>@mongo.internal:27017/?tls=true"
    );
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

/// Through the registration, a misspelt key or a bad value is refused before connecting,
/// both for the store and for the Rasa source, and no value is quoted.
#[tokio::test]
async fn the_registration_refuses_bad_sections() {
    for keys in [
        json!({ "url": "mongodb://127.0.0.1:1", "colection": "x" }),
        json!({ "url": "mongodb://127.0.0.1:1", "bucket_events": "many" }),
        json!({ "url": "mongodb://127.0.0.1:1", "password": "hunter2" }),
    ] {
        let store = (REGISTRATION.connect)("mongo", section(keys.clone()))
            .await
            .expect_err("invalid");
        assert_eq!(store.kind(), ErrorKind::Config, "{keys}: {store}");
        let open = REGISTRATION.rasa_source.expect("a Rasa source");
        let source = open("mongodb", section(keys.clone()))
            .await
            .expect_err("invalid");
        assert_eq!(source.kind(), ErrorKind::Config, "{keys}: {source}");
        for error in [store, source] {
            assert!(
                !format!("{error} {error:?}").contains("hunter2"),
                "{error:?}"
            );
        }
    }
}

/// Rasa fills `${VAR}` values in as text: every numeric and boolean key given as a string
/// parses as its number or boolean.
#[test]
fn numbers_and_booleans_given_as_strings_parse() {
    let keys = section(json!({
        "type": "mongod",
        "url": "mongodb://mongo.internal:27017",
        "db": "bot",
        "collection": "trackers",
        "ensure_indexes": "false",
        "bucket_events": "100",
        "bucket_bytes": "65536",
        "adopt_rasa": "false",
        "outbox": "true",
    }));
    let config: MongoConfig = from_keys("the MongoDB tracker store", keys).expect("parses");
    config.validate().expect("valid");
    assert!(!config.ensure_indexes);
    assert!(!config.adopt_rasa);
    assert!(config.outbox);
    assert_eq!((config.bucket_events, config.bucket_bytes), (100, 65536));
    let keys = section(json!({ "ensure_indexes": "True", "adopt_rasa": "true" }));
    let config: MongoConfig = from_keys("the MongoDB tracker store", keys).expect("parses");
    assert!(config.ensure_indexes && config.adopt_rasa);
}

/// The same section, with strings for every number and boolean, starts the store through the
/// registration.
#[tokio::test]
async fn a_section_of_strings_starts_the_store() {
    let Some(url) = common::url().await else {
        return;
    };
    let keys = section(json!({
        "type": "mongod",
        "url": url,
        "db": common::TEST_DB,
        "collection": common::fresh_collection(),
        "ensure_indexes": "false",
        "bucket_events": "100",
        "bucket_bytes": "65536",
        "adopt_rasa": "true",
        "outbox": "true",
    }));
    let store = (REGISTRATION.connect)("mongod", keys)
        .await
        .expect("starts");
    let id = tracker_core::SenderId::new("nobody").expect("id");
    assert_eq!(store.version(&id).await.expect("version"), 0);
    assert!(
        store.outbox().is_some(),
        "`outbox: \"true\"` turns the outbox on"
    );
}

/// An invalid value names the key and what was found, never the value itself.
#[test]
fn an_invalid_value_names_the_key_not_the_value() {
    for (key, value, found) in [
        ("bucket_events", json!("s3cret-many"), "string"),
        ("bucket_bytes", json!(["s3cret"]), "list"),
        ("ensure_indexes", json!("s3cret-maybe"), "string"),
        ("adopt_rasa", json!("s3cret-sometimes"), "string"),
        ("adopt_rasa", json!(3), "number"),
        ("outbox", json!("s3cret-yes"), "string"),
    ] {
        let mut keys = tracker_core::JsonMap::new();
        keys.insert(key.to_owned(), value.clone());
        let error =
            from_keys::<MongoConfig>("the MongoDB tracker store", keys).expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::Config);
        let text = format!("{error} {error:?}");
        assert!(text.contains(&format!("`{key}`")), "{text}");
        assert!(text.contains(found), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
