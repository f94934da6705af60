//! Schema setup through the registry: `build_unchanged` sets nothing up, `ensure_schema`
//! sets it up and says what it changed.

use std::sync::Arc;

use tracker_store::sql::diesel::{self, Connection, RunQueryDsl, connection::SimpleConnection};
use tracker_store::{ErrorKind, Event, Registry, Store, StoreConfig, TrackerStore};

/// A fresh SQLite path in the temporary directory.
fn temp_db(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tracker-store-{what}-{}.db",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Rasa's table, with one event.
fn rasa_sqlite(path: &std::path::Path) {
    let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    conn.batch_execute(
        "CREATE TABLE events (id INTEGER NOT NULL, sender_id VARCHAR(255) NOT NULL, \
         type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), \
         action_name VARCHAR(255), data TEXT, PRIMARY KEY (id)); \
         CREATE INDEX ix_events_sender_id ON events (sender_id);",
    )
    .expect("Rasa's DDL");
    diesel::sql_query(
        "INSERT INTO events (sender_id, type_name, timestamp, data) VALUES (?, ?, ?, ?)",
    )
    .bind::<diesel::sql_types::Text, _>("alice")
    .bind::<diesel::sql_types::Text, _>("bot")
    .bind::<diesel::sql_types::Double, _>(1_700_000_000.0)
    .bind::<diesel::sql_types::Text, _>(Event::bot("hi").at(1_700_000_000.0).to_rasa_json())
    .execute(&mut conn)
    .expect("Rasa's row");
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
async fn build_unchanged_migrates_nothing_and_ensure_schema_migrates_once() {
    let path = temp_db("unchanged");
    rasa_sqlite(&path);
    let registry = Registry::with_builtins();
    // `migrate: true` in the section does not count for an unchanged store.
    let config = StoreConfig::from_yaml(&format!(
        "type: sqlite\ndb: {}\nmigrate: true",
        path.display()
    ))
    .expect("config");

    let store = TrackerStore::from_arc(registry.build_unchanged(&config).await.expect("opens"));
    // Whether it can read Rasa's table as it is or not, it does not migrate it.
    let _ = store.read("alice", tracker_store::ReadScope::All).await;
    let _ = store.keys().await;
    drop(store);
    assert!(
        !has_seq_column(&path),
        "opening unchanged migrated Rasa's table"
    );

    let changes = registry.ensure_schema(&config).await.expect("migrates");
    assert!(!changes.is_empty(), "the migrations applied are listed");
    assert!(has_seq_column(&path));
    assert!(
        registry
            .ensure_schema(&config)
            .await
            .expect("migrates")
            .is_empty(),
        "nothing to do the second time"
    );
    let store = TrackerStore::from_arc(registry.build_unchanged(&config).await.expect("opens"));
    let alice = store
        .read("alice", tracker_store::ReadScope::All)
        .await
        .expect("reads")
        .expect("Rasa's conversation");
    assert_eq!(alice.version, 1);
    drop(store);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn build_migrates_as_configured() {
    let path = temp_db("configured");
    rasa_sqlite(&path);
    let registry = Registry::with_builtins();
    let config = StoreConfig::from_yaml(&format!(
        "type: sql\ndb: {}\nmigrate: false",
        path.display()
    ))
    .expect("config");
    drop(registry.build(&config).await.expect("opens"));
    assert!(!has_seq_column(&path), "`migrate: false` is kept");
    let config =
        StoreConfig::from_yaml(&format!("type: sql\ndb: {}", path.display())).expect("config");
    drop(registry.build(&config).await.expect("opens"));
    assert!(has_seq_column(&path), "`migrate` is on by default");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn stores_without_a_known_setup_say_so() {
    let registry = Registry::with_builtins();
    let memory = StoreConfig::from_yaml("type: in_memory").expect("config");
    assert!(
        registry
            .ensure_schema(&memory)
            .await
            .expect("nothing")
            .is_empty()
    );

    let mut registry = Registry::with_builtins();
    registry.register("acme.Store", |_keys| async {
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    });
    let custom = StoreConfig::from_yaml("type: acme.Store").expect("config");
    let error = registry
        .ensure_schema(&custom)
        .await
        .expect_err("unknown setup");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("acme.Store"), "{error}");
    // Custom stores are built as they are, unchanged or not.
    registry.build_unchanged(&custom).await.expect("builds");
    // A built-in name taken over by a custom store loses the built-in setup.
    registry.register("sql", |_keys| async {
        let store: Arc<dyn Store> = Arc::new(tracker_store::memory::MemoryStore::new());
        Ok(store)
    });
    let sql = StoreConfig::from_yaml("type: sqlite\ndb: \":memory:\"").expect("config");
    assert_eq!(
        registry
            .ensure_schema(&sql)
            .await
            .expect_err("custom")
            .kind(),
        ErrorKind::Config
    );
}
