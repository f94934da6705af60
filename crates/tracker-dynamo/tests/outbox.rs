//! The outbox on DynamoDB, beyond the conformance cases: what the head item carries (and,
//! with the outbox off, does not), the order and filtering of `pending` across the index's
//! shards and pages, leases and checkpoints of conversations this store does not hold,
//! adopted conversations, adding the index to an existing table, and a store connected to
//! read Rasa's table before setup.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::items::{Item, number};
use common::{bots, fresh_id, pending};
use tracker_core::{ErrorKind, Outbox, SenderId, Store, TrackerStore};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use tracker_dynamo::schema::{
    HASH_KEY, HEAD_SEQ, OUTBOX_INDEX, OUTBOX_LEASE, OUTBOX_LEASE_UNTIL, OUTBOX_PENDING,
    OUTBOX_PUBLISHED, OUTBOX_SHARD, OUTBOX_SHARDS, RANGE_KEY, VERSION, outbox_shard,
};
use tracker_dynamo::{DynamoConfig, DynamoStore};

const TTL: Duration = Duration::from_secs(30);

fn id(text: &str) -> SenderId {
    SenderId::new(text).expect("a valid id")
}

fn now_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch");
    u64::try_from(elapsed.as_millis()).expect("milliseconds")
}

fn outbox(store: &DynamoStore) -> &dyn Outbox {
    store.outbox().expect("the store keeps an outbox")
}

/// The head item of a conversation, read straight from the table.
async fn raw_head(store: &DynamoStore, sender_id: &str) -> Option<Item> {
    let table = store.tables().await.expect("tables").store_table;
    store
        .client()
        .get_item()
        .table_name(table)
        .key(HASH_KEY, AttributeValue::S(sender_id.to_owned()))
        .key(RANGE_KEY, AttributeValue::N(HEAD_SEQ.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("get the head")
        .item
}

/// The names of a table's global secondary indexes.
async fn indexes(client: &Client, table: &str) -> Vec<String> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe")
        .table
        .expect("a table")
        .global_secondary_indexes()
        .iter()
        .filter_map(|index| index.index_name().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_outbox_nothing_more_is_written() {
    let Some(store) = common::store().await else {
        return;
    };
    assert!(!store.keeps_outbox());
    assert!(store.outbox().is_none());
    let table = store.tables().await.expect("tables").store_table;
    assert!(indexes(store.client(), &table).await.is_empty());
    let a = fresh_id("plain");
    TrackerStore::new(store.clone())
        .append(&a, 0, &bots(0, 2, "a"))
        .await
        .expect("append");
    let head = raw_head(&store, &a).await.expect("a head");
    let mut names: Vec<&str> = head.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, [HASH_KEY, RANGE_KEY, VERSION]);
}

/// The append's own transaction marks the head (the oldest unpublished append's time is
/// kept); a lease and a checkpoint are attributes of the head; a checkpoint at the version
/// removes the mark and the lease; a conflicting append changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_carries_mark_lease_and_checkpoint() {
    let Some(store) = common::outbox_store().await else {
        return;
    };
    assert!(store.keeps_outbox());
    let table = store.tables().await.expect("tables").store_table;
    assert_eq!(indexes(store.client(), &table).await, [OUTBOX_INDEX]);
    let trackers = TrackerStore::new(store.clone());
    let a = fresh_id("marked");
    let before = now_ms();
    trackers
        .append(&a, 0, &bots(0, 3, "a"))
        .await
        .expect("append");
    let head = raw_head(&store, &a).await.expect("a head");
    let mark = number(&head, OUTBOX_PENDING).expect("marked pending");
    assert!(mark >= before && mark <= now_ms(), "{mark}");
    assert_eq!(number(&head, OUTBOX_SHARD), Some(outbox_shard(&a)));
    assert!(outbox_shard(&a) < OUTBOX_SHARDS);
    assert_eq!(number(&head, OUTBOX_PUBLISHED), None);

    tokio::time::sleep(Duration::from_millis(5)).await;
    trackers
        .append(&a, 3, &bots(0, 2, "b"))
        .await
        .expect("append");
    let error = trackers
        .append(&a, 3, &bots(0, 1, "stale"))
        .await
        .expect_err("stale");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    let head = raw_head(&store, &a).await.expect("a head");
    assert_eq!(number(&head, VERSION), Some(5));
    assert_eq!(
        number(&head, OUTBOX_PENDING),
        Some(mark),
        "the oldest unpublished append's time stays"
    );

    let entry = outbox(&store)
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (5, 0));
    let head = raw_head(&store, &a).await.expect("a head");
    assert_eq!(
        head.get(OUTBOX_LEASE),
        Some(&AttributeValue::S("relay-1".to_owned()))
    );
    let until = number(&head, OUTBOX_LEASE_UNTIL).expect("a lease end");
    assert!(until >= before + TTL.as_millis() as u64, "{until}");
    outbox(&store)
        .checkpoint(&id(&a), "relay-1", 0, 2)
        .await
        .expect("checkpoint part");
    let head = raw_head(&store, &a).await.expect("a head");
    assert_eq!(number(&head, OUTBOX_PUBLISHED), Some(2));
    assert_eq!(number(&head, OUTBOX_PENDING), Some(mark), "3 events left");
    assert!(!head.contains_key(OUTBOX_LEASE) && !head.contains_key(OUTBOX_LEASE_UNTIL));

    outbox(&store)
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    let error = outbox(&store)
        .checkpoint(&id(&a), "relay-1", 2, 6)
        .await
        .expect_err("beyond the version");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    outbox(&store)
        .checkpoint(&id(&a), "relay-1", 2, 5)
        .await
        .expect("checkpoint the rest");
    let head = raw_head(&store, &a).await.expect("a head");
    assert_eq!(number(&head, OUTBOX_PUBLISHED), Some(5));
    for gone in [OUTBOX_PENDING, OUTBOX_LEASE, OUTBOX_LEASE_UNTIL] {
        assert!(!head.contains_key(gone), "{gone} left: {head:?}");
    }
    assert_eq!(number(&head, OUTBOX_SHARD), Some(outbox_shard(&a)));
}

/// `pending` lists heads oldest mark first across the shards and the index's pages, up to
/// the limit, and leaves out heads leased by a relay and heads with nothing to publish (as
/// the index may still list them for a moment: here written straight into the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_is_oldest_first_across_shards_and_pages() {
    let Some(store) = common::outbox_store_with_page_size(2).await else {
        return;
    };
    let trackers = TrackerStore::new(store.clone());
    let ids: Vec<String> = (0..20)
        .map(|n| fresh_id(&format!("order-{n:02}")))
        .collect();
    for sender in &ids {
        trackers
            .append(sender, 0, &bots(0, 1, sender))
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let shards: std::collections::HashSet<u64> = ids.iter().map(|id| outbox_shard(id)).collect();
    assert!(shards.len() > 2, "spread over the shards: {shards:?}");
    assert_eq!(pending(&store, 100).await, ids);
    assert_eq!(pending(&store, 5).await, ids[..5]);
    assert_eq!(pending(&store, 1).await, ids[..1]);
    assert!(pending(&store, 0).await.is_empty());

    // Leased by a relay: left out until the lease ends or is given back.
    let held = [&ids[0], &ids[3]];
    for sender in held {
        outbox(&store)
            .lease(&id(sender), "relay-1", TTL)
            .await
            .expect("lease")
            .expect("free");
    }
    let listed = pending(&store, 5).await;
    let expected: Vec<&String> = [1, 2, 4, 5, 6].iter().map(|n| &ids[*n]).collect();
    assert_eq!(listed.iter().collect::<Vec<_>>(), expected);
    outbox(&store)
        .checkpoint(&id(&ids[0]), "relay-1", 0, 0)
        .await
        .expect("give the lease back");
    assert_eq!(pending(&store, 1).await, ids[..1]);

    // A head the index lists whose events are all published: left out.
    let table = store.tables().await.expect("tables").store_table;
    let published = fresh_id("published");
    let n = |value: u64| AttributeValue::N(value.to_string());
    store
        .client()
        .put_item()
        .table_name(&table)
        .item(HASH_KEY, AttributeValue::S(published.clone()))
        .item(RANGE_KEY, n(HEAD_SEQ))
        .item(VERSION, n(2))
        .item(OUTBOX_SHARD, n(outbox_shard(&published)))
        .item(OUTBOX_PENDING, n(1))
        .item(OUTBOX_PUBLISHED, n(2))
        .send()
        .await
        .expect("put a head");
    let listed = pending(&store, 100).await;
    assert!(!listed.contains(&published), "{listed:?}");
    assert_eq!(listed.len(), ids.len() - 1, "all but the one leased");
}

/// A conversation this store's layout does not hold has nothing to publish: its lease is an
/// empty entry, settled by a checkpoint from 0 to 0, and neither creates a head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_conversations_have_nothing_to_publish() {
    let Some(store) = common::outbox_store().await else {
        return;
    };
    let a = fresh_id("missing");
    let entry = outbox(&store)
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("an entry");
    assert_eq!((entry.version, entry.published), (0, 0));
    outbox(&store)
        .checkpoint(&id(&a), "relay-1", 0, 0)
        .await
        .expect("settle");
    let error = outbox(&store)
        .checkpoint(&id(&a), "relay-1", 0, 1)
        .await
        .expect_err("nothing to checkpoint");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(raw_head(&store, &a).await, None, "no head was created");
    assert_eq!(store.version(&id(&a)).await.expect("version"), 0);
}

/// A conversation adopted from Rasa's table with its first append is pending with Rasa's
/// events included: the adoption's transaction marks the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_conversations_are_published_from_rasas_first_event() {
    let Some(store) = common::adopting_outbox_store().await else {
        return;
    };
    let tables = store.tables().await.expect("tables");
    let rasa = tables.rasa_table.expect("a Rasa table");
    let a = fresh_id("adopted");
    let rasa_event = |text: &str, timestamp: u32| {
        AttributeValue::M(HashMap::from([
            ("event".to_owned(), AttributeValue::S("bot".to_owned())),
            ("text".to_owned(), AttributeValue::S(text.to_owned())),
            (
                "timestamp".to_owned(),
                AttributeValue::N(timestamp.to_string()),
            ),
        ]))
    };
    store
        .client()
        .put_item()
        .table_name(&rasa)
        .item("sender_id", AttributeValue::S(a.clone()))
        .item(
            "events",
            AttributeValue::L(vec![rasa_event("one", 1), rasa_event("two", 2)]),
        )
        .send()
        .await
        .expect("put Rasa's item");
    // Only in Rasa's table: not pending, nothing to publish.
    assert!(!pending(&store, 100).await.contains(&a));
    let trackers = TrackerStore::new(store.clone());
    assert_eq!(trackers.version(&a).await.expect("version"), 2);
    trackers
        .append(&a, 2, &bots(0, 1, "new"))
        .await
        .expect("adopt");
    assert_eq!(pending(&store, 100).await, [a.as_str()]);
    let entry = outbox(&store)
        .lease(&id(&a), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (3, 0));
}

/// With `outbox: true`, a table made without the outbox lacks the index: checking the schema
/// (and connecting with `migrate: false`) is a `Config` error naming the setup; setup adds
/// the index once (also with concurrent callers) and the outbox works from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_added_to_an_existing_table() {
    let Some(plain) = common::store().await else {
        return;
    };
    let table = plain.table_name().to_owned();
    let trackers = TrackerStore::new(plain.clone());
    let before = fresh_id("before");
    trackers
        .append(&before, 0, &bots(0, 2, "before"))
        .await
        .expect("append");

    let config = DynamoConfig::with_table(&table).with_outbox(true);
    let store =
        DynamoStore::from_client(plain.client().clone(), &config).expect("a valid table name");
    let error = store.check_schema().await.expect_err("no index");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("migrate-schema"), "{error}");
    assert!(error.to_string().contains(OUTBOX_INDEX), "{error}");
    let url = common::url().await.expect("the test server");
    let loader = || {
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials())
    };
    let unchanged = DynamoConfig {
        endpoint_url: Some(url),
        migrate: false,
        ..config.clone()
    };
    let error = DynamoStore::connect_with(&unchanged, loader())
        .await
        .expect_err("no index, no migrate");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        indexes(plain.client(), &table).await.is_empty(),
        "nothing created"
    );

    let results = futures::future::join_all((0..3).map(|_| store.ensure_schema())).await;
    let changes: Vec<String> = results
        .into_iter()
        .flat_map(|result| result.expect("ensure_schema"))
        .collect();
    assert!(!changes.is_empty() && changes.len() <= 3, "{changes:?}");
    assert!(changes[0].contains(OUTBOX_INDEX), "{changes:?}");
    assert!(store.ensure_schema().await.expect("again").is_empty());
    store.check_schema().await.expect("the index exists");
    assert_eq!(indexes(plain.client(), &table).await, [OUTBOX_INDEX]);
    DynamoStore::connect_with(&unchanged, loader())
        .await
        .expect("connect without migrate");

    // Appended before the outbox was on: pending with its next append, from event 1.
    let trackers = TrackerStore::new(store.clone());
    assert!(pending(&store, 100).await.is_empty());
    trackers
        .append(&before, 2, &bots(0, 1, "after"))
        .await
        .expect("append");
    assert_eq!(pending(&store, 100).await, [before.as_str()]);
    let entry = outbox(&store)
        .lease(&id(&before), "relay-1", TTL)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!((entry.version, entry.published), (3, 0));
}

/// A store with its outbox on connected without setup to Rasa's table alone (`migrate:
/// false`, this store's table not created yet) creates nothing: nothing is pending, and a
/// lease is refused as every write is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_rasas_table_before_setup_creates_nothing() {
    let Some(client) = common::client().await else {
        return;
    };
    let rasa = common::fresh_table("states");
    common::create_rasa_table(&client, &rasa).await;
    let config = DynamoConfig {
        endpoint_url: Some(common::url().await.expect("the test server")),
        migrate: false,
        ..DynamoConfig::with_table(&rasa).with_outbox(true)
    };
    let loader =
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials());
    let store = Arc::new(
        DynamoStore::connect_with(&config, loader)
            .await
            .expect("connect for reading"),
    );
    assert!(pending(&store, 100).await.is_empty());
    let error = outbox(&store)
        .lease(&id("alice"), "relay-1", TTL)
        .await
        .expect_err("a write");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("migrate-schema"), "{error}");
    let beside = format!("{rasa}_events");
    let missing = client.describe_table().table_name(&beside).send().await;
    assert!(missing.is_err(), "the table beside Rasa's was created");
}
