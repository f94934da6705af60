//! Configuration and the registry: Rasa's examples, every error case, custom stores.

use std::sync::Arc;

use serde_json::json;
use tracker_store::sql::diesel::{self, Connection, RunQueryDsl, connection::SimpleConnection};
use tracker_store::{
    ErrorKind, Event, JsonMap, RasaConversation, RasaSource, RasaSourceFuture, Registration,
    Registry, Store, StoreConfig, StoreFuture, TrackerStore, async_trait,
};

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
        tracker_store::config::from_keys("the SQL store", sql.keys.clone()).expect("SqlConfig");
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

#[tokio::test]
async fn a_custom_store_under_a_builtin_name_replaces_it_for_every_alias() {
    let mut registry = Registry::with_builtins();
    registry.register("sql", |_keys| async {
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    });
    for text in ["type: sql", "type: PostgreSQL\nurl: localhost"] {
        let store = registry
            .build(&StoreConfig::from_yaml(text).expect("config"))
            .await
            .expect(text);
        assert_eq!(store.name(), "memory", "{text}");
    }
    assert_eq!(
        registry
            .names()
            .iter()
            .filter(|name| **name == "sql")
            .count(),
        1
    );
}

/// Rasa's SQLite database: its DDL and its rows, as Rasa's `SQLTrackerStore` writes them.
fn rasa_sqlite(path: &std::path::Path, conversations: &[(&str, Vec<Event>)]) {
    let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    conn.batch_execute(
        "CREATE TABLE events (id INTEGER NOT NULL, sender_id VARCHAR(255) NOT NULL, \
         type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), \
         action_name VARCHAR(255), data TEXT, PRIMARY KEY (id)); \
         CREATE INDEX ix_events_sender_id ON events (sender_id);",
    )
    .expect("Rasa's DDL");
    for (sender_id, events) in conversations {
        for event in events {
            diesel::sql_query(
                "INSERT INTO events (sender_id, type_name, timestamp, data) VALUES (?, ?, ?, ?)",
            )
            .bind::<diesel::sql_types::Text, _>(*sender_id)
            .bind::<diesel::sql_types::Text, _>(event.type_name())
            .bind::<diesel::sql_types::Double, _>(event.timestamp)
            .bind::<diesel::sql_types::Text, _>(event.to_rasa_json())
            .execute(&mut conn)
            .expect("Rasa's row");
        }
    }
}

/// Whether the SQLite database at `path` has this store's `seq` column in `events`.
fn has_seq_column(path: &std::path::Path) -> bool {
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

#[tokio::test]
async fn rasas_sqlite_table_is_read_unchanged_and_imported() {
    let path = std::env::temp_dir().join(format!(
        "tracker-store-rasa-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let alice = vec![
        Event::action("action_session_start").at(1_700_000_000.0),
        Event::user("hi", "greet", 0.9).at(1_700_000_001.0),
        Event::bot("hello").at(1_700_000_002.0),
    ];
    let bob = vec![Event::bot("bye").at(1_700_000_003.0)];
    rasa_sqlite(&path, &[("bob", bob.clone()), ("alice", alice.clone())]);

    let registry = Registry::with_builtins();
    let config = StoreConfig::from_yaml(&format!("type: SQLite\ndb: {}\ntoken: t", path.display()))
        .expect("config");
    let source = registry
        .open_rasa_source(&config)
        .await
        .expect("Rasa's table opens");
    assert!(
        source.describe().contains("events"),
        "{}",
        source.describe()
    );
    assert_eq!(source.sender_ids().await.expect("ids"), ["alice", "bob"]);

    let store = TrackerStore::new(tracker_store::memory::MemoryStore::new());
    for (id, events) in [("alice", &alice), ("bob", &bob)] {
        let imported = store
            .import_from(source.as_ref(), id)
            .await
            .expect("import")
            .expect("the conversation exists");
        assert_eq!(
            (imported.written, imported.version),
            (events.len() as u64, events.len() as u64)
        );
        let again = store
            .import_from(source.as_ref(), id)
            .await
            .expect("import again")
            .expect("the conversation exists");
        assert_eq!(
            (again.already_present, again.written),
            (events.len() as u64, 0)
        );
    }
    assert!(
        store
            .import_from(source.as_ref(), "nobody")
            .await
            .expect("import")
            .is_none()
    );
    drop(source);

    // The table was read, not migrated.
    assert!(!has_seq_column(&path), "Rasa's table must not be altered");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn types_without_a_rasa_reader_say_so() {
    let mut registry = Registry::with_builtins();
    registry.register("acme.Store", |_keys| async {
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    });
    for (text, expect) in [
        ("type: in_memory", "\"in_memory\""),
        ("", "\"memory\""),
        ("type: acme.Store", "register_backend"),
        ("type: acme.Other", "unknown tracker store type"),
    ] {
        let error = registry
            .open_rasa_source(&StoreConfig::from_yaml(text).expect("config"))
            .await
            .expect_err(text);
        assert_eq!(error.kind(), ErrorKind::Config, "{text}: {error}");
        assert!(error.to_string().contains(expect), "{text}: {error}");
    }
    let error = Registry::new()
        .open_rasa_source(&StoreConfig::from_yaml("type: mongodb").expect("config"))
        .await
        .expect_err("no backend");
    assert!(error.to_string().contains("`mongo` feature"), "{error}");
}

/// A Rasa source that holds one conversation and says which alias opened it.
#[derive(Debug)]
struct Fixed {
    alias: String,
}

#[async_trait]
impl RasaSource for Fixed {
    fn describe(&self) -> String {
        format!("fixed, opened as {}", self.alias)
    }

    async fn sender_ids(&self) -> tracker_store::Result<Vec<String>> {
        Ok(vec!["carol".to_owned()])
    }

    async fn read(&self, sender_id: &str) -> tracker_store::Result<Option<RasaConversation>> {
        Ok((sender_id == "carol").then(|| RasaConversation {
            sender_id: sender_id.to_owned(),
            events: vec![Event::bot("kept").at(1_700_000_000.0)],
        }))
    }
}

/// Only `retention_days` may reach the factories: the registry drops the others.
fn only_known_keys(keys: &JsonMap) -> tracker_store::Result<()> {
    match keys.keys().find(|key| *key != "retention_days") {
        Some(key) => Err(tracker_store::Error::config(format!(
            "unexpected key {key}"
        ))),
        None => Ok(()),
    }
}

fn fixed_connect(_alias: &str, keys: JsonMap) -> StoreFuture {
    Box::pin(async move {
        only_known_keys(&keys)?;
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    })
}

fn fixed_source(alias: &str, keys: JsonMap) -> RasaSourceFuture {
    let alias = alias.to_owned();
    Box::pin(async move {
        only_known_keys(&keys)?;
        let source: Arc<dyn RasaSource> = Arc::new(Fixed { alias });
        Ok(source)
    })
}

const FIXED: Registration = Registration {
    name: "fixed",
    aliases: &["fixed", "acme.fixed"],
    keys: || &["retention_days"],
    connect: fixed_connect,
    rasa_source: Some(fixed_source),
    ensure_schema: None,
};

#[tokio::test]
async fn a_registration_brings_aliases_known_keys_and_a_rasa_reader() {
    let mut registry = Registry::with_builtins();
    registry.register_backend(FIXED);
    assert!(registry.names().contains(&"fixed"));
    let config = StoreConfig::from_yaml("type: ACME.Fixed\nretention_days: 3\ncolour: blue")
        .expect("config");
    assert_eq!(registry.unknown_keys(&config), ["colour"]);
    let store = registry
        .build(&config)
        .await
        .expect("unknown keys are dropped");
    assert_eq!(store.name(), "memory");
    let source = registry.open_rasa_source(&config).await.expect("a reader");
    assert_eq!(source.describe(), "fixed, opened as acme.fixed");
    let store = TrackerStore::from_arc(store);
    let imported = store
        .import_from(source.as_ref(), "carol")
        .await
        .expect("import")
        .expect("exists");
    assert_eq!(imported.version, 1);
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

#[test]
fn a_backend_is_found_by_its_name_or_any_alias() {
    let registry = Registry::with_builtins();
    for (alias, name) in [
        ("sql", "sql"),
        ("PostgreSQL", "sql"),
        ("sqlite", "sql"),
        ("In_Memory", "memory"),
        ("memory", "memory"),
    ] {
        let registration = registry.registration(alias).expect(alias);
        assert_eq!(registration.name, name, "{alias}");
    }
    let sql = registry.registration("mariadb").expect("sql");
    assert!((sql.keys)().contains(&"dialect"));
    assert!(registry.registration("acme.Store").is_none());

    // A custom store has no registration; one registered as a backend has.
    let mut registry = Registry::with_builtins();
    registry.register("acme.Store", |_keys| async {
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    });
    assert!(registry.registration("acme.Store").is_none());
    registry.register_backend(FIXED);
    assert_eq!(
        registry.registration("ACME.Fixed").map(|r| r.name),
        Some("fixed")
    );
}

/// Rasa's `endpoints.yml` for the Python package's class configures the same store here.
#[tokio::test]
async fn the_python_packages_section_builds_its_backend() {
    let dir = std::env::temp_dir().join(format!(
        "tracker-store-py-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("bot.db");
    let endpoints = dir.join("endpoints.yml");
    std::fs::write(
        &endpoints,
        format!(
            "action_endpoint:\n  url: http://localhost:5055/webhook\ntracker_store:\n  type: tracker_store.RasaTrackerStore\n  backend: sqlite\n  db: {}\n  retry_seconds: 2.5\n",
            db.display()
        ),
    )
    .expect("write");
    let config = StoreConfig::from_endpoints_file(&endpoints).expect("config");
    assert_eq!(config.store_type.as_deref(), Some("sqlite"));
    assert!(Registry::with_builtins().unknown_keys(&config).is_empty());
    let store = tracker_store::from_endpoints_file(&endpoints)
        .await
        .expect("the SQLite store");
    assert_eq!(store.store().name(), "sqlite");
    store
        .append("alice", 0, &[Event::bot("hi").at(1.0)])
        .await
        .expect("append");
    drop(store);
    assert!(db.exists(), "the backend's own key was used");
    let _ = std::fs::remove_dir_all(&dir);
}
