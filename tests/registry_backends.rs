//! The registry builds a working store from `endpoints.yml` for every backend, against the
//! test services the test harness finds (their URLs written into the YAML: a test process
//! cannot set the variables `${...}` would read).

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

/// `text` as a YAML string (a JSON string is one).
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_from_endpoints_yml() {
    let Some(postgres) = service_url(Service::Postgres).await else {
        return;
    };
    let url = yaml_string(&postgres.url);
    round_trip(&format!("tracker_store:\n  type: SQL\n  url: {url}\n")).await;
    round_trip(&format!(
        "tracker_store:\n  type: postgresql\n  url: {url}\n"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_from_endpoints_yml() {
    let Some(mysql) = service_url(Service::Mysql).await else {
        return;
    };
    round_trip(&format!(
        "tracker_store:\n  store_type: mysql\n  url: {}\n",
        yaml_string(&mysql.url)
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_sqlite_from_endpoints_yml() {
    round_trip("tracker_store:\n").await;
    round_trip("tracker_store:\n  type: sql\n  db: \":memory:\"\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_from_endpoints_yml() {
    let Some(redis) = service_url(Service::Redis).await else {
        return;
    };
    // Rasa's keys: a host and a port; the URL form; a prefix namespaces the keys.
    let host_port = redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "6379"));
    round_trip(&format!(
        "tracker_store:\n  type: redis\n  url: {host}\n  port: {port}\n  key_prefix: registry\n"
    ))
    .await;
    round_trip(&format!(
        "tracker_store:\n  type: REDIS\n  url: {}\n  record_exp: 60\n",
        yaml_string(&redis.url)
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_from_endpoints_yml() {
    let Some(mongo) = service_url(Service::Mongo).await else {
        return;
    };
    let url = yaml_string(&mongo.url);
    let db = format!(
        "registry{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    round_trip(&format!(
        "tracker_store:\n  type: mongod\n  url: {url}\n  db: {db}\n"
    ))
    .await;
    round_trip(&format!(
        "tracker_store:\n  type: MongoDB\n  url: {url}\n  db: {db}\n  collection: other\n"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_from_endpoints_yml() {
    let Some(dynamo) = service_url(Service::Dynamo).await else {
        return;
    };
    // Credentials come from the standard AWS chain, which this process cannot set; CI
    // exports static ones for the local server.
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
        "tracker_store:\n  type: dynamo\n  table_name: {table}\n  region: us-east-1\n  endpoint_url: {}\n",
        yaml_string(&dynamo.url)
    ))
    .await;
}

/// `ensure_schema` sets up `yaml`'s store and says so the first time (when `fresh`), and has
/// nothing left to do the second time.
async fn sets_up_once(yaml: &str, fresh: bool) {
    let config = StoreConfig::from_endpoints_yaml(yaml).expect("config");
    let registry = Registry::with_builtins();
    let first = registry.ensure_schema(&config).await.expect("set up");
    if fresh {
        assert!(!first.is_empty(), "the changes are listed: {yaml}");
    }
    let second = registry.ensure_schema(&config).await.expect("set up again");
    assert!(second.is_empty(), "{second:?}");
    round_trip(yaml).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_sets_up_its_schema_through_the_registry() {
    sets_up_once("tracker_store:\n  type: in_memory\n", false).await;
    if let Some(postgres) = service_url(Service::Postgres).await {
        let url = yaml_string(&postgres.url);
        sets_up_once(
            &format!("tracker_store:\n  type: postgresql\n  url: {url}\n"),
            false,
        )
        .await;
    }
    if let Some(mysql) = service_url(Service::Mysql).await {
        let url = yaml_string(&mysql.url);
        sets_up_once(
            &format!("tracker_store:\n  type: mariadb\n  url: {url}\n"),
            false,
        )
        .await;
    }
    if let Some(redis) = service_url(Service::Redis).await {
        let url = yaml_string(&redis.url);
        sets_up_once(
            &format!("tracker_store:\n  type: redis\n  url: {url}\n"),
            false,
        )
        .await;
    }
    if let Some(mongo) = service_url(Service::Mongo).await {
        // A new database: nothing there until the schema is set up.
        let db = format!("setup{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let yaml = format!(
            "tracker_store:\n  type: mongodb\n  url: {}\n  db: {db}\n",
            yaml_string(&mongo.url)
        );
        let config = StoreConfig::from_endpoints_yaml(&yaml).expect("config");
        let store = Registry::with_builtins()
            .build_unchanged(&config)
            .await
            .expect("opens");
        drop(store);
        let client = tracker_store::mongo::mongodb::Client::with_uri_str(&mongo.url)
            .await
            .expect("client");
        let collections = client
            .database(&db)
            .list_collection_names()
            .await
            .expect("collections");
        assert!(
            collections.is_empty(),
            "opening unchanged created {collections:?}"
        );
        sets_up_once(&yaml, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_sets_up_its_table_through_the_registry_only() {
    let Some(dynamo) = service_url(Service::Dynamo).await else {
        return;
    };
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        tracker_testkit::skip(
            "dynamo",
            "AWS_ACCESS_KEY_ID is not set (the AWS credential chain)",
        );
        return;
    }
    let table = format!("setup{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let yaml = format!(
        "tracker_store:\n  type: dynamodb\n  table_name: {table}\n  region: us-east-1\n  endpoint_url: {}\n",
        yaml_string(&dynamo.url)
    );
    let config = StoreConfig::from_endpoints_yaml(&yaml).expect("config");
    // Opened unchanged, a missing table stays missing: an error, not a new table.
    let error = Registry::with_builtins()
        .build_unchanged(&config)
        .await
        .expect_err("no table");
    assert_eq!(error.kind(), tracker_store::ErrorKind::Config, "{error}");
    sets_up_once(&yaml, true).await;
}
