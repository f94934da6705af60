//! Configuration: the keys of an `endpoints.yml` section, and invalid configurations refused
//! before any connection. No server needed.

use serde_json::{Value, json};
use tracker_core::ErrorKind;
use tracker_core::config::from_keys;
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
