//! Table setup on the test server: `ensure_schema` creates the table once (also with
//! concurrent callers) and reports it, `check_schema` changes nothing, a store named after
//! Rasa's table gets a table beside it, tables of Rasa 1.x/2.x's and other layouts are
//! refused, and `connect` sets up or checks as `migrate` says.

mod common;

use tracker_core::{ErrorKind, Event, SenderId, Store, TrackerStore};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use tracker_dynamo::{DynamoConfig, DynamoStore};

async fn create_table(client: &Client, name: &str, keys: &[(&str, KeyType, ScalarAttributeType)]) {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type, scalar) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(scalar.clone())
                    .build()
                    .expect("definition"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*attribute)
                    .key_type(key_type.clone())
                    .build()
                    .expect("key"),
            );
    }
    request.send().await.expect("create table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_created_once_and_checked() {
    let Some(client) = common::client().await else {
        return;
    };
    let name = common::fresh_table("created");
    let store = common::store_on(client.clone(), &name);
    let error = store.check_schema().await.expect_err("missing");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("ensure_schema"), "{error}");
    let error = store
        .version(&SenderId::new("x").expect("id"))
        .await
        .expect_err("no table");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    // Concurrent creators: one creates, all succeed.
    let results = futures::future::join_all((0..4).map(|_| store.ensure_schema())).await;
    let changes: Vec<String> = results
        .into_iter()
        .flat_map(|r| r.expect("ensure_schema"))
        .collect();
    assert!(!changes.is_empty() && changes.len() <= 4, "{changes:?}");
    assert!(changes[0].contains(&name), "{changes:?}");
    assert!(
        store
            .ensure_schema()
            .await
            .expect("ensure_schema again")
            .is_empty(),
        "nothing left to change"
    );
    store.check_schema().await.expect("exists now");
    let table = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let keys: Vec<(String, KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("sender_id".to_owned(), KeyType::Hash),
            ("seq".to_owned(), KeyType::Range)
        ]
    );
    assert_eq!(
        table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode().cloned()),
        Some(BillingMode::PayPerRequest)
    );

    // A store named after Rasa's table keeps its items in a table of its own beside it,
    // created by ensure_schema; Rasa's table is left as it is.
    let rasa = common::fresh_table("rasa-states");
    create_table(
        &client,
        &rasa,
        &[("sender_id", KeyType::Hash, ScalarAttributeType::S)],
    )
    .await;
    let beside = common::store_on(client.clone(), &rasa);
    let error = beside.check_schema().await.expect_err("not created yet");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains(&format!("{rasa}_events")),
        "{error}"
    );
    let changes = beside.ensure_schema().await.expect("ensure_schema");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].contains(&format!("\"{rasa}_events\"")),
        "{changes:?}"
    );
    assert!(changes[0].contains("beside Rasa's table"), "{changes:?}");
    beside.check_schema().await.expect("created");
    assert!(beside.ensure_schema().await.expect("again").is_empty());
    let tables = beside.tables().await.expect("tables");
    assert_eq!(tables.store_table, format!("{rasa}_events"));
    assert_eq!(tables.rasa_table.as_deref(), Some(rasa.as_str()));
    assert_eq!(beside.table_name(), rasa);
    let rasa_table = client
        .describe_table()
        .table_name(&rasa)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    assert_eq!(rasa_table.key_schema().len(), 1, "Rasa's table unchanged");
    // Without adoption Rasa's table is not read, and the store's items still go beside it.
    let unadopting = DynamoStore::from_client(
        client.clone(),
        &DynamoConfig {
            adopt_rasa: false,
            ..DynamoConfig::with_table(&rasa)
        },
    )
    .expect("store");
    let tables = unadopting.tables().await.expect("tables");
    assert_eq!(tables.store_table, format!("{rasa}_events"));
    assert_eq!(tables.rasa_table, None);

    // Rasa 1.x/2.x tables and tables of other layouts are refused.
    let legacy = common::fresh_table("rasa-legacy");
    create_table(
        &client,
        &legacy,
        &[
            ("sender_id", KeyType::Hash, ScalarAttributeType::S),
            ("session_date", KeyType::Range, ScalarAttributeType::N),
        ],
    )
    .await;
    let error = common::store_on(client.clone(), &legacy)
        .ensure_schema()
        .await
        .expect_err("legacy table");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("Rasa 1.x/2.x"), "{error}");
    assert!(
        error.to_string().contains("tracker migrate --from-rasa"),
        "{error}"
    );
    let other = common::fresh_table("other");
    create_table(
        &client,
        &other,
        &[
            ("sender_id", KeyType::Hash, ScalarAttributeType::S),
            ("seq", KeyType::Range, ScalarAttributeType::S),
        ],
    )
    .await;
    let error = common::store_on(client, &other)
        .ensure_schema()
        .await
        .expect_err("a string seq");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_from_configuration() {
    let Some(url) = common::url().await else {
        return;
    };
    let loader = || {
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials())
    };
    let table = common::fresh_table("connect");
    let serde_json::Value::Object(keys) = serde_json::json!({
        "table_name": table, "region": "us-east-1", "endpoint_url": url, "migrate": false
    }) else {
        unreachable!("a JSON object");
    };
    let config: DynamoConfig =
        tracker_core::config::from_keys("the DynamoDB tracker store", keys).expect("config");
    let error = DynamoStore::connect_with(&config, loader())
        .await
        .expect_err("no table, no migrate");
    assert_eq!(error.kind(), ErrorKind::Config);
    let config = DynamoConfig {
        migrate: true,
        ..config
    };
    let store = DynamoStore::connect_with(&config, loader())
        .await
        .expect("connect and create");
    assert_eq!(store.table_name(), table);
    let store = TrackerStore::new(store);
    let id = common::fresh_id("connected");
    let mut tracker = store.get_or_create_tracker(&id).await.expect("create");
    tracker.update(Event::user("hi", "greet", 0.98));
    assert_eq!(store.save(&mut tracker).await.expect("save"), 1);
    // Connecting again finds the table.
    let again = DynamoStore::connect_with(
        &DynamoConfig {
            migrate: false,
            ..config.clone()
        },
        loader(),
    )
    .await
    .expect("connect");
    assert_eq!(
        TrackerStore::new(again)
            .version(&id)
            .await
            .expect("version"),
        1
    );
    let invalid = DynamoConfig {
        table_name: "x".to_owned(),
        ..config
    };
    let error = DynamoStore::connect_with(&invalid, loader())
        .await
        .expect_err("bad name");
    assert_eq!(error.kind(), ErrorKind::Config);
}
