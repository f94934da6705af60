//! Configuration and connection failures; no server needed.

use std::time::{Duration, Instant};

use tracker_core::ErrorKind;
use tracker_mongo::{MongoConfig, MongoStore};

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on the loopback: nothing listens there.
    let config = MongoConfig::from_url(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
    );
    let started = Instant::now();
    let error = MongoStore::connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_temporary());
    assert!(
        std::error::Error::source(&error).is_some(),
        "the driver error is kept"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
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
    }
}

#[test]
fn endpoints_yml_section_deserialises() {
    let yaml = serde_json::json!({
        "type": "mongod",
        "url": "mongodb://rasa:s3cr3t@mongo.internal:27017/?tls=true",
        "db": "bot",
        "collection": "trackers",
    });
    let config: MongoConfig = serde_json::from_value(yaml).expect("valid");
    config.validate().expect("valid");
    assert_eq!(config.db, "bot");
    assert_eq!(
        config.display_url(),
        "mongodb://rasa:<redacted>@mongo.internal:27017/?tls=true"
    );
    assert!(!format!("{config:?}").contains("s3cr3t"));
}
