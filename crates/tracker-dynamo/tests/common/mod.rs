//! Clients and stores on the test server shared by the integration tests, and the names and
//! events their cases use.

#![allow(dead_code)]

pub mod conflicts;
pub mod items;

use tracker_core::{Event, Store};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tracker_dynamo::aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ProvisionedThroughput, ScalarAttributeType,
};
use tracker_dynamo::{DynamoConfig, DynamoStore};
use tracker_testkit::{Service, service_url};

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// Static credentials: local servers accept any, and no AWS credential chain (environment,
/// files, instance metadata) is consulted.
pub fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "tracker-dynamo-tests")
}

/// A client for the DynamoDB server at `url`.
pub fn client_for(url: &str) -> Client {
    let config = tracker_dynamo::aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .build();
    Client::from_conf(config)
}

/// The test server's URL, or `None` after a loud skip.
pub async fn url() -> Option<String> {
    service_url(Service::Dynamo)
        .await
        .map(|service| service.url)
}

/// A client for the test server, or `None` after a loud skip.
pub async fn client() -> Option<Client> {
    Some(client_for(&url().await?))
}

/// A name no other test (or run) uses: `case`, then a random suffix.
pub fn fresh_id(case: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{case}-{}", &id[..12])
}

/// `count` sender ids no other test (or run) uses, sharing a prefix made of `case`.
pub fn fresh_ids(case: &str, count: usize) -> Vec<String> {
    let prefix = fresh_id(case);
    (0..count).map(|n| format!("{prefix}-{n:03}")).collect()
}

/// A table name no other test (or run) uses.
pub fn fresh_table(prefix: &str) -> String {
    fresh_id(prefix)
}

/// `count` bot events numbered from `from`, one second apart.
pub fn bots(from: usize, count: usize, tag: &str) -> Vec<Event> {
    (from..from + count)
        .map(|n| Event::bot(format!("{tag} {n}")).at(1_700_000_000.0 + n as f64))
        .collect()
}

/// The events as Rasa's JSON text.
pub fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

/// A store on `table` through `client`; nothing is sent.
pub fn store_on(client: Client, table: &str) -> DynamoStore {
    DynamoStore::from_client(client, &DynamoConfig::with_table(table)).expect("a valid table name")
}

/// A store on a new table of the test server, or `None` after a loud skip.
pub async fn store() -> Option<DynamoStore> {
    let store = store_on(client().await?, &fresh_table("tracker"));
    let changes = store.ensure_schema().await.expect("create the table");
    assert_eq!(changes.len(), 1, "{changes:?}");
    Some(store)
}

/// A store with its outbox on, on a new table (with the index of pending conversations) of
/// the test server, or `None` after a loud skip. Every call gives a table of its own, as the
/// outbox cases need: a relay publishes every pending conversation of its store.
pub async fn outbox_store() -> Option<DynamoStore> {
    let config = DynamoConfig::with_table(fresh_table("outbox")).with_outbox(true);
    let store = DynamoStore::from_client(client().await?, &config).expect("a valid table name");
    let changes = store.ensure_schema().await.expect("create the table");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains("outbox_pending"), "{changes:?}");
    Some(store)
}

/// [`outbox_store`] whose queries (of the index too) return at most `items` items per page.
pub async fn outbox_store_with_page_size(items: u32) -> Option<DynamoStore> {
    Some(outbox_store().await?.with_page_size(items))
}

/// A store on a new table whose queries and scans return at most `items` items per page.
pub async fn store_with_page_size(items: u32) -> Option<DynamoStore> {
    Some(store().await?.with_page_size(items))
}

/// The conversations `store`'s outbox has pending, oldest first, at most `limit`.
pub async fn pending(store: &DynamoStore, limit: usize) -> Vec<String> {
    store
        .outbox()
        .expect("the store keeps an outbox")
        .pending(limit)
        .await
        .expect("pending")
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// Creates a table as Rasa's `DynamoTrackerStore` does at start-up: hash key `sender_id`
/// (string) only, 5/5 provisioned capacity.
pub async fn create_rasa_table(client: &Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sender_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sender_id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .expect("throughput"),
        )
        .send()
        .await
        .expect("create Rasa's table");
}

/// A store configured with a new (empty) Rasa table as `table_name`: its items go to the
/// table beside it, and every read, listing and delete also looks at Rasa's table. `None`
/// after a loud skip.
pub async fn adopting_store() -> Option<DynamoStore> {
    adopting_store_with(false).await
}

/// [`adopting_store`] with its outbox on (a new Rasa table and a new table beside it per
/// call).
pub async fn adopting_outbox_store() -> Option<DynamoStore> {
    adopting_store_with(true).await
}

async fn adopting_store_with(outbox: bool) -> Option<DynamoStore> {
    let client = client().await?;
    let rasa = fresh_table("states");
    create_rasa_table(&client, &rasa).await;
    let config = DynamoConfig::with_table(&rasa).with_outbox(outbox);
    let store = DynamoStore::from_client(client, &config).expect("a valid table name");
    let changes = store.ensure_schema().await.expect("create the table");
    assert_eq!(changes.len(), 1, "{changes:?}");
    Some(store)
}
