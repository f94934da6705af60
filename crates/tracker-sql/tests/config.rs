//! Configuration as Rasa's `endpoints.yml` hands it over: values expanded from `${VAR}` are
//! strings, so every number and boolean may come as one (`port: "5432"`, `migrate: "false"`),
//! and a `query` parameter may come as a number (`connect_timeout: 10`). A section written so
//! starts the store; an invalid value is a `Config` error naming the key and the type found,
//! never the value.

mod common;

use tracker_core::config::from_keys;
use tracker_core::{ErrorKind, Event, JsonMap, TrackerStore};
use tracker_sql::{REGISTRATION, SqlConfig};

fn keys(value: serde_json::Value) -> JsonMap {
    match value {
        serde_json::Value::Object(keys) => keys,
        other => panic!("not a mapping: {other}"),
    }
}

/// Every number and boolean key of the SQL store as a string starts a store that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_booleans_as_strings_start_the_store() {
    let path = common::temp_sqlite_path();
    let section = keys(serde_json::json!({
        "dialect": "sqlite", "db": path, "pool_size": "2", "pool_timeout": "5",
        "query_timeout": "7.5", "migrate": "true"
    }));
    let config: SqlConfig = from_keys("the SQL tracker store", section.clone()).expect("parse");
    assert_eq!(
        (config.pool_size, config.migrate),
        (Some(2), true),
        "{config:?}"
    );
    assert_eq!(config.query_timeout, std::time::Duration::from_millis(7500));
    let store =
        TrackerStore::from_arc((REGISTRATION.connect)("sql", section).await.expect("start"));
    store
        .append("strings", 0, &[Event::bot("hi").at(1.0)])
        .await
        .expect("append");
    assert_eq!(store.version("strings").await.expect("version"), 1);
    drop(store);
    let _ = std::fs::remove_file(&path);

    // A server's keys: the port as a string, a `query` parameter as a number.
    #[cfg(feature = "postgres")]
    if let Some(service) = tracker_testkit::service_url(tracker_testkit::Service::Postgres).await {
        let rest = service.url.split_once("://").expect("a URL").1;
        let rest = rest.split('?').next().unwrap_or_default();
        let (user, rest) = rest.split_once('@').expect("a user in the test URL");
        let (host, db) = rest.split_once('/').expect("a database in the test URL");
        let (host, port) = host.split_once(':').unwrap_or((host, "5432"));
        let section = keys(serde_json::json!({
            "dialect": "postgresql", "url": host, "port": port, "db": db, "username": user,
            "query": {"connect_timeout": 10, "sslmode": "disable"}, "pool_size": "3",
            "pool_timeout": "10", "query_timeout": "30", "migrate": "false"
        }));
        let config: SqlConfig = from_keys("the SQL tracker store", section.clone()).expect("parse");
        assert_eq!(
            config.query.get("connect_timeout").map(String::as_str),
            Some("10")
        );
        assert_eq!(
            config.port.map(|port| port.to_string()).as_deref(),
            Some(port)
        );
        assert!(!config.migrate);
        let store = TrackerStore::from_arc(
            (REGISTRATION.connect)("postgresql", section)
                .await
                .expect("start"),
        );
        assert_eq!(store.version("nobody").await.expect("version"), 0);
    }
}

/// An invalid value names its key and the type found, never the value (it may be a secret
/// expanded from the environment).
#[test]
fn invalid_values_name_the_key_not_the_value() {
    for (key, value, found) in [
        ("port", serde_json::json!("secret-port"), "string"),
        ("port", serde_json::json!(654_321), "number"),
        ("pool_size", serde_json::json!("secret-size"), "string"),
        (
            "pool_timeout",
            serde_json::json!("secret-timeout"),
            "string",
        ),
        ("query_timeout", serde_json::json!(-7), "number"),
        ("query_timeout", serde_json::json!(["secret-list"]), "type"),
        ("migrate", serde_json::json!("secret-yes"), "string"),
        (
            "query",
            serde_json::json!({"sslmode": ["secret-mode"]}),
            "list",
        ),
    ] {
        let mut section = JsonMap::new();
        section.insert(key.to_owned(), value.clone());
        let error =
            from_keys::<SqlConfig>("the SQL tracker store", section).expect_err("an invalid value");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
        assert!(message.contains(found), "{key}: {message}");
        assert!(!message.contains("secret"), "{key}: {message}");
        assert!(!message.contains("654321"), "{key}: {message}");
    }
}

/// `outbox` from an `endpoints.yml` section (as a string too): the store keeps an outbox, the
/// migration creates it, and an append makes its conversation pending; without the key the
/// store keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_from_a_section() {
    let path = common::temp_sqlite_path();
    let section = keys(serde_json::json!({"dialect": "sqlite", "db": path, "outbox": "true"}));
    let config: SqlConfig = from_keys("the SQL tracker store", section.clone()).expect("parse");
    assert!(config.outbox, "{config:?}");
    let store = (REGISTRATION.connect)("sql", section).await.expect("start");
    let outbox = store.outbox().expect("the store keeps an outbox");
    let trackers = TrackerStore::from_arc(store.clone());
    trackers
        .append("outboxed", 0, &[Event::bot("hi").at(1.0)])
        .await
        .expect("append");
    let pending = outbox.pending(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|id| id.as_str()).collect::<Vec<_>>(),
        ["outboxed"]
    );

    let plain = keys(serde_json::json!({"dialect": "sqlite", "db": path}));
    let store = (REGISTRATION.connect)("sql", plain).await.expect("start");
    assert!(store.outbox().is_none());
}
