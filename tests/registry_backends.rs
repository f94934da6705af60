//! The registry builds a working store from `endpoints.yml` for every backend, against the
//! test services (the same `TRACKER_TEST_*_URL` variables as the conformance suite, expanded
//! by the configuration's `${...}` support).

use tracker_store::{Event, Registry, StoreConfig, TrackerStore};
use tracker_testkit::{Service, service_url};

async fn round_trip(yaml: &str) {
    let config = StoreConfig::from_endpoints_yaml(yaml).expect("config");
    let registry = Registry::with_builtins();
    assert!(registry.unknown_keys(&config).is_empty(), "{yaml}");
    let store = TrackerStore::from_arc(registry.build(&config).await.expect("build"));
    let id = format!("registry-{}", uuid::Uuid::new_v4().simple());
    let mut tracker = store.get_or_create_tracker(&id).await.expect("tracker");
    tracker.update(Event::user("hi", "greet", 1.0).at(1_700_000_000.0));
    tracker.update(Event::bot("hello").at(1_700_000_001.0));
    assert_eq!(store.save(&mut tracker).await.expect("save"), 2);
    let read = store.retrieve(&id).await.expect("read").expect("exists");
    assert_eq!(read.events(), tracker.events());
    assert!(store.delete(&id).await.expect("delete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_from_endpoints_yml() {
    if service_url(Service::Postgres).await.is_none() {
        return;
    }
    round_trip("tracker_store:\n  type: SQL\n  url: ${TRACKER_TEST_POSTGRES_URL}\n").await;
    round_trip("tracker_store:\n  type: postgresql\n  url: ${TRACKER_TEST_POSTGRES_URL}\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_from_endpoints_yml() {
    if service_url(Service::Mysql).await.is_none() {
        return;
    }
    round_trip("tracker_store:\n  store_type: mysql\n  url: ${TRACKER_TEST_MYSQL_URL}\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_sqlite_from_endpoints_yml() {
    round_trip("tracker_store:\n").await;
    round_trip("tracker_store:\n  type: sql\n  db: \":memory:\"\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_from_endpoints_yml() {
    if service_url(Service::Redis).await.is_none() {
        return;
    }
    // Rasa's keys: a host and a port; the URL form; a prefix namespaces the keys.
    let url = std::env::var("TRACKER_TEST_REDIS_URL").expect("set when the service is");
    let host_port = url.trim_start_matches("redis://").trim_end_matches('/');
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "6379"));
    round_trip(&format!(
        "tracker_store:\n  type: redis\n  url: {host}\n  port: {port}\n  key_prefix: registry\n"
    ))
    .await;
    round_trip(
        "tracker_store:\n  type: REDIS\n  url: ${TRACKER_TEST_REDIS_URL}\n  record_exp: 60\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_from_endpoints_yml() {
    if service_url(Service::Mongo).await.is_none() {
        return;
    }
    let db = format!(
        "registry{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    round_trip(&format!(
        "tracker_store:\n  type: mongod\n  url: ${{TRACKER_TEST_MONGO_URL}}\n  db: {db}\n"
    ))
    .await;
    round_trip(&format!(
        "tracker_store:\n  type: MongoDB\n  url: ${{TRACKER_TEST_MONGO_URL}}\n  db: {db}\n  collection: other\n"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_from_endpoints_yml() {
    if service_url(Service::Dynamo).await.is_none() {
        return;
    }
    // Credentials come from the standard AWS chain; CI exports static ones for the local
    // server.
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        tracker_testkit::skip(
            "dynamo",
            "AWS_ACCESS_KEY_ID is not set (the AWS credential chain)",
        );
        return;
    }
    let table = format!(
        "registry{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    round_trip(&format!(
        "tracker_store:\n  type: dynamo\n  table_name: {table}\n  region: us-east-1\n  endpoint_url: ${{TRACKER_TEST_DYNAMO_URL}}\n"
    ))
    .await;
}
