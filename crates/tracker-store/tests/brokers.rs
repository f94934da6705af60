//! The `event_broker:` section through the registry: Rasa's type rules, `${VAR}` expansion,
//! errors naming the broker, custom brokers, and a tracker store built from `endpoints.yml`
//! publishing what it saves — to a file, an SQLite table and a real RabbitMQ
//! (`TRACKER_TEST_RABBITMQ_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tracker_store::brokers::{REGISTRATIONS, body_text};
use tracker_store::sql::diesel::{self, Connection as _, RunQueryDsl};
use tracker_store::{
    BrokerMessage, ChannelBroker, ErrorKind, Event, EventBroker, EventBrokerConfig, Registry,
    builtin_broker_features,
};
use tracker_testkit::rabbitmq;

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A file in the temporary directory no other test uses.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(unique(name))
}

/// A conversation of three events at fixed times.
fn events() -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(1_700_000_000.5),
        Event::user("hi there, zoë", "greet", 0.97).at(1_700_000_001.25),
        Event::bot("Hello!").at(1_700_000_002.0),
    ]
}

/// The bodies a save of [`events`] publishes for `sender_id`.
fn expected_bodies(sender_id: &str) -> Vec<String> {
    events()
        .iter()
        .zip(1..)
        .map(|(event, seq)| body_text(&BrokerMessage::new(sender_id, seq, event)).expect("body"))
        .collect()
}

async fn save_events(store: &tracker_store::TrackerStore, sender_id: &str) {
    let mut tracker = store
        .get_or_create_tracker(sender_id)
        .await
        .expect("tracker");
    for event in events() {
        tracker.update(event);
    }
    store.save(&mut tracker).await.expect("saved");
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

#[tokio::test]
async fn a_store_from_endpoints_publishes_to_its_file_broker() {
    let log = temp_path("events.log");
    let endpoints = temp_path("endpoints.yml");
    std::fs::write(
        &endpoints,
        format!(
            "tracker_store:\n  type: in_memory\nevent_broker:\n  type: FILE\n  path: {}\n",
            yaml_string(&log.display().to_string())
        ),
    )
    .expect("endpoints.yml");
    let store = tracker_store::from_endpoints_file(&endpoints)
        .await
        .expect("store and broker");
    save_events(&store, "file-alice").await;
    let written = std::fs::read_to_string(&log).expect("the broker's file");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines, expected_bodies("file-alice"));
    assert_eq!(store.publish_stats().map(|s| s.published()), Some(3));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&endpoints);
}

#[tokio::test]
async fn a_store_from_endpoints_publishes_to_its_sql_broker() {
    let db = temp_path("broker.db");
    let store = Registry::with_builtins()
        .open_endpoints_yaml(&format!(
            "tracker_store:\n  type: in_memory\nevent_broker:\n  type: sql\n  db: {}\n",
            yaml_string(&db.display().to_string())
        ))
        .await
        .expect("store and broker");
    save_events(&store, "sql-alice").await;

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        sender_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data: String,
    }
    let mut connection =
        diesel::SqliteConnection::establish(&db.display().to_string()).expect("open");
    let rows: Vec<Row> = diesel::sql_query("SELECT sender_id, data FROM events ORDER BY id")
        .load(&mut connection)
        .expect("rows");
    assert!(rows.iter().all(|row| row.sender_id == "sql-alice"));
    let data: Vec<String> = rows.into_iter().map(|row| row.data).collect();
    assert_eq!(data, expected_bodies("sql-alice"));
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_section_without_type_is_rabbitmq_with_variables_expanded() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let exchange = unique("ts_exchange");
    let queue = unique("ts_queue");
    // The URL comes from the environment through `${...}`, as Rasa's endpoints.yml allows.
    let store = Registry::with_builtins()
        .open_endpoints_yaml(&format!(
            "tracker_store:\n  type: in_memory\nevent_broker:\n  url: ${{TRACKER_TEST_RABBITMQ_URL}}\n  \
             username: guest\n  password: guest\n  exchange_name: {exchange}\n  queues:\n    - {queue}\n"
        ))
        .await;
    let store = match store {
        Ok(store) => store,
        // Without the variable the section cannot be read: the error names it.
        Err(error) if std::env::var("TRACKER_TEST_RABBITMQ_URL").is_err() => {
            assert!(
                error.to_string().contains("TRACKER_TEST_RABBITMQ_URL"),
                "{error}"
            );
            return;
        }
        Err(error) => panic!("RabbitMQ broker: {error}"),
    };
    save_events(&store, "rabbit-alice").await;
    let bodies: Vec<String> = rabbitmq::drain(&connection, &queue, 3, Duration::from_secs(20))
        .await
        .into_iter()
        .map(|message| message.body)
        .collect();
    assert_eq!(bodies, expected_bodies("rabbit-alice"));
    rabbitmq::delete(&connection, &exchange, std::slice::from_ref(&queue)).await;
}

#[tokio::test]
async fn a_broker_that_cannot_connect_is_an_error_naming_it() {
    // Nothing listens on port 1.
    let error = Registry::with_builtins()
        .open_endpoints_yaml(
            "tracker_store:\n  type: in_memory\nevent_broker:\n  type: pika\n  url: 127.0.0.1\n  \
             port: 1\n  username: guest\n  password: guest\n  connection_attempts: 1\n",
        )
        .await
        .expect_err("no RabbitMQ on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let text = error.to_string();
    assert!(text.contains("event broker `pika`"), "{text}");
    assert!(text.contains("RabbitMQ"), "{text}");

    let missing_dir = temp_path("no-such-dir").join("events.log");
    let error = Registry::with_builtins()
        .open_endpoints_yaml(&format!(
            "event_broker:\n  type: file\n  path: {}\n",
            yaml_string(&missing_dir.display().to_string())
        ))
        .await
        .expect_err("a file in a directory that does not exist");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("event broker `file`"), "{error}");
}

#[tokio::test]
async fn configuration_errors_name_the_type_or_key() {
    let registry = Registry::with_builtins();
    let unknown = registry
        .open_endpoints_yaml("event_broker:\n  type: acme.Broker\n  url: x\n")
        .await
        .expect_err("an unregistered type");
    assert_eq!(unknown.kind(), ErrorKind::Config);
    let text = unknown.to_string();
    assert!(text.contains("\"acme.Broker\""), "{text}");
    assert!(text.contains("file, kafka, pika, sql"), "{text}");

    let misspelt = registry
        .open_endpoints_yaml("event_broker:\n  type: file\n  pathh: x.log\n")
        .await
        .expect_err("an unknown key");
    assert_eq!(misspelt.kind(), ErrorKind::Config);
    assert!(misspelt.to_string().contains("pathh"), "{misspelt}");

    let no_credentials = registry
        .open_endpoints_yaml("event_broker:\n  url: localhost\n")
        .await
        .expect_err("RabbitMQ needs credentials");
    assert_eq!(no_credentials.kind(), ErrorKind::Config);
    assert!(
        no_credentials
            .to_string()
            .contains("`username` and `password`"),
        "{no_credentials}"
    );

    let variable = registry
        .open_endpoints_yaml("event_broker:\n  type: file\n  path: ${TRACKER_SURELY_UNSET_VAR}\n")
        .await
        .expect_err("a missing variable");
    assert_eq!(variable.kind(), ErrorKind::Config);
    assert!(
        variable.to_string().contains("event_broker.path"),
        "{variable}"
    );

    let empty = Registry::new();
    let error = empty
        .build_broker(
            &EventBrokerConfig::from_yaml("type: kafka\nurl: k:9092")
                .expect("parses")
                .expect("a section"),
        )
        .await
        .expect_err("an empty registry has no broker");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error
            .to_string()
            .contains("not registered in this registry"),
        "{error}"
    );
}

#[tokio::test]
async fn http_endpoint_keys_are_left_out_as_rasa_consumes_them() {
    let log = temp_path("events.log");
    let store = Registry::with_builtins()
        .open_endpoints_yaml(&format!(
            "event_broker:\n  type: file\n  path: {}\n  token: abc\n  params:\n    a: b\n",
            yaml_string(&log.display().to_string())
        ))
        .await
        .expect("the endpoint keys do not reach the file broker");
    save_events(&store, "keys").await;
    assert_eq!(
        std::fs::read_to_string(&log).expect("log").lines().count(),
        3
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn a_custom_broker_is_built_from_its_registration() {
    let (channel, mut receiver) = ChannelBroker::new(16);
    let seen_keys = Arc::new(std::sync::Mutex::new(None));
    let built = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::with_builtins();
    {
        let seen_keys = seen_keys.clone();
        let built = built.clone();
        registry.register_broker("acme.brokers.Channel", move |keys| {
            *seen_keys.lock().expect("lock") = Some(keys);
            built.fetch_add(1, Ordering::SeqCst);
            let broker = channel.clone();
            async move { Ok(Arc::new(broker) as Arc<dyn EventBroker>) }
        });
    }
    assert!(registry.broker_names().contains(&"acme.brokers.Channel"));
    let store = registry
        .open_endpoints_yaml(
            "tracker_store:\n  type: in_memory\nevent_broker:\n  store_type: acme.brokers.Channel\n  \
             url: somewhere\n  depth: 3\n",
        )
        .await
        .expect("the custom broker");
    assert_eq!(built.load(Ordering::SeqCst), 1);
    let keys = seen_keys.lock().expect("lock").take().expect("keys given");
    assert_eq!(keys["url"], "somewhere");
    assert_eq!(keys["depth"], 3);
    assert!(!keys.contains_key("store_type"));
    save_events(&store, "custom").await;
    let first = receiver.recv().await.expect("a message");
    assert_eq!(first.sender_id, "custom");
    assert_eq!(first.seq, 1);
    // Custom names match exactly: another spelling is unknown.
    let error = registry
        .build_broker(
            &EventBrokerConfig::from_yaml("type: ACME.brokers.channel")
                .expect("parses")
                .expect("a section"),
        )
        .await
        .expect_err("case matters for custom names");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn a_custom_registration_of_pika_replaces_the_default_broker() {
    let (channel, mut receiver) = ChannelBroker::new(16);
    let mut registry = Registry::with_builtins();
    registry.register_broker("pika", move |_keys| {
        let broker = channel.clone();
        async move { Ok(Arc::new(broker) as Arc<dyn EventBroker>) }
    });
    let store = registry
        .open_endpoints_yaml("event_broker:\n  url: anywhere\n")
        .await
        .expect("a section without type selects the replaced pika");
    save_events(&store, "default").await;
    assert_eq!(receiver.recv().await.expect("a message").seq, 1);
}

#[test]
fn every_built_in_broker_is_registered_and_documented() {
    let registry = Registry::with_builtins();
    assert_eq!(registry.broker_names(), ["file", "kafka", "pika", "sql"]);
    let features = builtin_broker_features();
    for registration in REGISTRATIONS {
        assert!(
            features.iter().any(|(name, _)| *name == registration.name),
            "{}",
            registration.name
        );
        let found = registry
            .broker_registration(Some(&registration.name.to_ascii_uppercase()))
            .expect("selected case-insensitively");
        assert_eq!(found.name, registration.name);
    }
    assert_eq!(
        registry.broker_registration(None).map(|r| r.name),
        Some("pika"),
        "no type is RabbitMQ"
    );
}
