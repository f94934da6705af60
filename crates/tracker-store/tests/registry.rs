//! Configuration and the registry: Rasa's examples, every error case, custom stores.

use std::sync::Arc;

use serde_json::json;
use tracker_store::{ErrorKind, Registry, Store, StoreConfig, TrackerStore};

/// The examples of Rasa's tracker store documentation, as written there.
const RASA_SQL: &str = r#"
tracker_store:
    type: SQL
    dialect: "postgresql"  # the dialect used to interact with the db
    url: "localhost"  # (optional) host of the sql db, e.g. "localhost"
    db: "rasa"  # path to your db
    username: "rasa"  # username used for authentication
    password: "secret"  # password used for authentication
    query: # optional dictionary to be added as a query string to the connection URL
      driver: my-driver
"#;

const RASA_REDIS: &str = r#"
tracker_store:
    type: redis
    url: localhost
    port: 6379
    key_prefix: bot1
    db: 0
    password: secret
    use_ssl: false
"#;

const RASA_MONGO: &str = r#"
tracker_store:
    type: mongod
    url: mongodb://localhost:27017
    db: rasa
    username: username
    password: password
    auth_source: database_name
"#;

const RASA_DYNAMO: &str = r#"
tracker_store:
    type: dynamo
    table_name: rasa
    region: us-east-1
"#;

const RASA_CUSTOM: &str = r#"
tracker_store:
  type: path.to.your.module.Class
  url: localhost
  a_parameter: a value
  another_parameter: another value
"#;

#[test]
fn rasa_examples_parse_as_rasa_parses_them() {
    let sql = StoreConfig::from_endpoints_yaml(RASA_SQL).expect("sql");
    assert_eq!(sql.store_type.as_deref(), Some("SQL"));
    assert_eq!(sql.keys["url"], "localhost");
    assert_eq!(sql.keys["query"], json!({"driver": "my-driver"}));
    let sql_config: tracker_store::sql::SqlConfig =
        serde_json::from_value(serde_json::Value::Object(sql.keys.clone())).expect("SqlConfig");
    assert_eq!(sql_config.db, "rasa");
    assert_eq!(sql_config.password.as_deref(), Some("secret"));

    let redis = StoreConfig::from_endpoints_yaml(RASA_REDIS).expect("redis");
    assert_eq!(redis.store_type.as_deref(), Some("redis"));
    assert_eq!(redis.keys["port"], 6379);
    assert_eq!(redis.keys["use_ssl"], false);

    let mongo = StoreConfig::from_endpoints_yaml(RASA_MONGO).expect("mongo");
    assert_eq!(mongo.store_type.as_deref(), Some("mongod"));
    assert_eq!(mongo.keys["auth_source"], "database_name");

    let dynamo = StoreConfig::from_endpoints_yaml(RASA_DYNAMO).expect("dynamo");
    assert_eq!(dynamo.keys["table_name"], "rasa");

    let custom = StoreConfig::from_endpoints_yaml(RASA_CUSTOM).expect("custom");
    assert_eq!(
        custom.store_type.as_deref(),
        Some("path.to.your.module.Class")
    );
    assert_eq!(custom.keys.len(), 3);

    // Secrets stay out of Debug output.
    assert!(!format!("{sql:?}").contains("secret"));
    assert!(!format!("{redis:?}").contains("secret"));
}

#[tokio::test]
async fn no_type_builds_the_memory_store() {
    let registry = Registry::with_builtins();
    for text in [
        "",
        "tracker_store:\n",
        "tracker_store:\n  type: In_Memory\n",
    ] {
        let config = StoreConfig::from_endpoints_yaml(text).expect("config");
        let store = registry.build(&config).await.expect("memory");
        assert_eq!(store.name(), "memory", "{text:?}");
    }
}

#[tokio::test]
async fn sqlite_from_yaml_is_a_working_store() {
    let path = std::env::temp_dir().join(format!(
        "tracker-store-registry-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    for store_type in ["sql", "SQL", "sqlite"] {
        let yaml = format!(
            "tracker_store:\n  type: {store_type}\n  dialect: sqlite\n  db: {}\n",
            path.display()
        );
        let config = StoreConfig::from_endpoints_yaml(&yaml).expect("config");
        let store = TrackerStore::from_arc(
            Registry::with_builtins()
                .build(&config)
                .await
                .expect("sqlite"),
        );
        let mut tracker = store
            .get_or_create_full_tracker("alice")
            .await
            .expect("tracker");
        tracker.update(tracker_store::Event::bot(store_type).at(1_700_000_000.0));
        store.save(&mut tracker).await.expect("save");
    }
    let store = TrackerStore::from_arc(
        Registry::with_builtins()
            .build(
                &StoreConfig::from_yaml(&format!("type: sqlite\ndb: {}", path.display()))
                    .expect("config"),
            )
            .await
            .expect("sqlite alias implies the dialect"),
    );
    assert_eq!(store.version("alice").await.expect("version"), 3);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn every_configuration_error_is_a_clear_config_error() {
    let registry = Registry::with_builtins();
    let names = registry.names().join(", ");

    let unknown = registry
        .build(&StoreConfig::from_yaml("type: foo.Bar").expect("config"))
        .await
        .expect_err("unknown type");
    assert_eq!(unknown.kind(), ErrorKind::Config);
    let message = unknown.to_string();
    assert!(
        message.contains("foo.Bar") && message.contains(&names),
        "{message}"
    );

    // Built-in types missing from a registry name what enables them (an empty registry
    // stands for a build with every feature off).
    let empty = Registry::new();
    for (text, expect) in [
        ("type: mongo", "`mongo` feature"),
        ("type: DynamoDB", "`dynamo` feature"),
        ("type: redis", "`redis` feature"),
        ("type: postgres\nurl: localhost", "`postgres`"),
        ("type: in_memory", "`memory` feature"),
    ] {
        let error = empty
            .build(&StoreConfig::from_yaml(text).expect("config"))
            .await
            .expect_err(text);
        assert_eq!(error.kind(), ErrorKind::Config, "{text}: {error}");
        assert!(error.to_string().contains(expect), "{text}: {error}");
    }

    let bad_port = registry
        .build(&StoreConfig::from_yaml("type: sql\nport: abc").expect("config"))
        .await
        .expect_err("bad port");
    assert_eq!(bad_port.kind(), ErrorKind::Config, "{bad_port}");

    let oracle = registry
        .build(&StoreConfig::from_yaml("type: sql\ndialect: oracle+cx_oracle").expect("config"))
        .await
        .expect_err("oracle");
    assert_eq!(oracle.kind(), ErrorKind::Unsupported, "{oracle}");

    let env = StoreConfig::from_yaml("type: sql\ndb: ${TRACKER_STORE_TEST_NOT_SET}")
        .expect_err("missing variable");
    assert_eq!(env.kind(), ErrorKind::Config);
    assert!(env.to_string().contains("TRACKER_STORE_TEST_NOT_SET"));

    assert_eq!(
        StoreConfig::from_endpoints_yaml("tracker_store: just a string")
            .expect_err("not a mapping")
            .kind(),
        ErrorKind::Config
    );
    assert_eq!(
        StoreConfig::from_endpoints_yaml("tracker_store: {type: [sql]}")
            .expect_err("type not a string")
            .kind(),
        ErrorKind::Config
    );
}

#[test]
fn unknown_keys_are_reported_by_name() {
    let registry = Registry::with_builtins();
    let config =
        StoreConfig::from_yaml("type: sql\ndb: x.db\ncolour: blue\ntoken: t\ndialekt: sqlite")
            .expect("config");
    // `token` is one of Rasa's HTTP endpoint keys: ignored, not unknown.
    assert_eq!(registry.unknown_keys(&config), vec!["colour", "dialekt"]);
    let memory = StoreConfig::from_yaml("type: memory\nurl: x").expect("config");
    assert_eq!(registry.unknown_keys(&memory), vec!["url"]);
}

#[tokio::test]
async fn custom_stores_get_their_keys() {
    let mut registry = Registry::with_builtins();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    registry.register("path.to.your.module.Class", move |keys| {
        let sender = sender.clone();
        async move {
            sender.send(keys).expect("test alive");
            let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
            Ok(store)
        }
    });
    assert!(registry.names().contains(&"path.to.your.module.Class"));
    let config = StoreConfig::from_endpoints_yaml(RASA_CUSTOM).expect("config");
    registry.build(&config).await.expect("custom store");
    let keys = received.recv().await.expect("factory called");
    assert_eq!(keys["url"], "localhost");
    assert_eq!(keys["another_parameter"], "another value");
    assert!(!keys.contains_key("type"));
}

/// A custom store built through the registry passes the whole conformance suite.
mod custom_store_conformance {
    use super::*;

    async fn build() -> Option<Arc<dyn Store>> {
        let mut registry = Registry::new();
        registry.register("acme.Store", |_keys| async {
            let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
            Ok(store)
        });
        let config = StoreConfig::from_yaml("type: acme.Store").expect("config");
        Some(registry.build(&config).await.expect("custom store"))
    }

    tracker_conformance::conformance_suite!(build());
}
