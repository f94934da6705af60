//! Batches of appends on the test server: many conversations packed into shared
//! transactions with conflicts in some of them, a conversation that fills a transaction
//! alone, items an interrupted delete left, the outbox's marks, adoption from Rasa's table,
//! and transactions canceled as DynamoDB cancels those that meet.

mod common;

use std::collections::{HashMap, HashSet};

use common::conflicts::ConflictProxy;
use common::items::{Item, delete_head, head_item, number, partition};
use common::{bots, fresh_id, fresh_ids, texts};
use tracker_core::{
    Append, BatchAppend, ErrorKind, Event, ReadScope, SenderId, Store, TrackerStore,
};
use tracker_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use tracker_dynamo::schema::{
    MAX_EVENTS_PER_APPEND, OUTBOX_PENDING, OUTBOX_SHARD, VERSION, outbox_shard,
};

/// `count` events (at least 4) that open a session: `action_session_start`,
/// `session_started`, a user message, then replies.
fn session(count: usize, tag: &str) -> Vec<Event> {
    let mut events = vec![
        Event::action("action_session_start").at(1_700_100_000.0),
        Event::session_started().at(1_700_100_000.5),
        Event::user(format!("hi {tag}"), "greet", 0.75).at(1_700_100_001.0),
    ];
    events.extend(
        (3..count).map(|n| Event::bot(format!("{tag} reply {n}")).at(1_700_100_002.0 + n as f64)),
    );
    events
}

/// The append of `events` to `sender_id` at `expected_version`, as an entry of a batch.
fn entry<'a>(sender_id: &'a str, expected_version: u64, events: &'a [Event]) -> BatchAppend<'a> {
    BatchAppend {
        sender_id,
        expected_version,
        events,
    }
}

/// Reads a conversation whole and checks it holds exactly `expected`.
async fn assert_holds(store: &TrackerStore, sender_id: &str, expected: &[Event], what: &str) {
    let read = store
        .read(sender_id, ReadScope::All)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{what}: {sender_id} does not exist"));
    assert_eq!(read.version, expected.len() as u64, "{what}: {sender_id}");
    assert_eq!(texts(&read.events), texts(expected), "{what}: {sender_id}");
}

fn assert_conflict(result: &tracker_core::Result<u64>, actual: u64, what: &str) {
    match result {
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Conflict, "{what}: {error}");
            assert_eq!(error.current_version(), Some(actual), "{what}: {error}");
        }
        Ok(version) => panic!("{what}: written at version {version}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_150_conversations_keeps_each_one_apart() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let direct = TrackerStore::new(dynamo);
    // Transactions are counted by a proxy, which cancels the first one it sees as DynamoDB
    // cancels a transaction another one meets (it is sent again) and forwards the rest.
    let proxy = ConflictProxy::start(&common::url().await.expect("url"), usize::MAX).await;
    let store = TrackerStore::new(common::store_on(common::client_for(&proxy.url), &table));

    let ids = fresh_ids("batch150", 150);
    // Every third conversation exists before the batch; 6 and 141 were appended to since
    // the batch's writer read them. Every append of the batch is 24 events (25 actions), so
    // transactions hold four conversations each: 6 is in the second, 141 in the 36th.
    let stale = [6, 141];
    let mut before: Vec<Vec<Event>> = vec![Vec::new(); 150];
    for n in (0..150).step_by(3) {
        before[n] = bots(0, n % 7 + 1, &format!("before {n}"));
        direct
            .append(&ids[n], 0, &before[n])
            .await
            .expect("an existing conversation");
    }
    let meanwhile = [Event::bot("written meanwhile").at(1_700_050_000.0)];
    for n in stale {
        direct
            .append(&ids[n], before[n].len() as u64, &meanwhile)
            .await
            .expect("a write the batch has not seen");
    }
    let added: Vec<Vec<Event>> = (0..150)
        .map(|n| {
            if n % 4 == 0 {
                session(24, &format!("added {n}"))
            } else {
                bots(0, 24, &format!("added {n}"))
            }
        })
        .collect();
    let batch: Vec<BatchAppend<'_>> = (0..150)
        .map(|n| entry(&ids[n], before[n].len() as u64, &added[n]))
        .collect();
    let results = store.append_batch(&batch).await.expect("the batch");
    assert_eq!(results.len(), 150);
    for (n, result) in results.iter().enumerate() {
        if stale.contains(&n) {
            assert_conflict(result, before[n].len() as u64 + 1, "a stale append");
        } else {
            assert_eq!(
                result.as_ref().ok(),
                Some(&((before[n].len() + 24) as u64)),
                "conversation {n}: {result:?}"
            );
        }
    }
    // 38 transactions, the two with a stale conversation sent again without it, and the
    // one the proxy canceled: far fewer than one per conversation.
    assert_eq!(proxy.canceled(), 1);
    assert_eq!(proxy.transactions(), 38 + 2 + 1);

    for n in 0..150 {
        if stale.contains(&n) {
            let expected = [before[n].clone(), meanwhile.to_vec()].concat();
            assert_holds(&direct, &ids[n], &expected, "a stale conversation").await;
            // Untouched: its head and its events, nothing more.
            let items = partition(&client, &table, &ids[n]).await;
            assert_eq!(items.len(), expected.len() + 1, "conversation {n}");
            continue;
        }
        let expected = [before[n].clone(), added[n].clone()].concat();
        assert_holds(&direct, &ids[n], &expected, "a written conversation").await;
        let latest = direct
            .read(&ids[n], ReadScope::LatestSession)
            .await
            .expect("latest session")
            .expect("exists");
        let first = if n % 4 == 0 { before[n].len() + 1 } else { 1 };
        assert_eq!(latest.first_seq, first as u64, "conversation {n}");
    }
    let listed: HashSet<String> = direct.keys().await.expect("keys").into_iter().collect();
    assert!(ids.iter().all(|id| listed.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_that_fills_a_transaction_goes_alone() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let store = TrackerStore::new(dynamo.clone());
    let prefix = fresh_id("full");
    let id = |name: &str| format!("{prefix}-{name}");
    let (full, nearly, stale) = (id("full"), id("nearly"), id("stale"));
    let small: Vec<String> = (0..5).map(|n| id(&format!("small-{n}"))).collect();
    let existing = bots(0, 3, "existing");
    store.append(&nearly, 0, &existing).await.expect("append");
    store.append(&stale, 0, &existing).await.expect("append");

    // 99 events and the head: 100 actions, a transaction of its own; 98 events and the
    // head beside a conversation of two events; one at a stale version with 99 events.
    let many = bots(0, MAX_EVENTS_PER_APPEND, "many");
    let fewer = bots(0, MAX_EVENTS_PER_APPEND - 1, "fewer");
    let two = bots(0, 2, "two");
    let mut batch = vec![
        entry(&full, 0, &many),
        entry(&nearly, 3, &fewer),
        entry(&stale, 2, &many),
    ];
    batch.extend(small.iter().map(|sender_id| entry(sender_id, 0, &two)));
    let results = store.append_batch(&batch).await.expect("the batch");
    assert_eq!(results[0].as_ref().ok(), Some(&99));
    assert_eq!(results[1].as_ref().ok(), Some(&101));
    assert_conflict(&results[2], 3, "a stale append of 99 events");
    for result in &results[3..] {
        assert_eq!(result.as_ref().ok(), Some(&2));
    }
    assert_holds(&store, &full, &many, "99 events").await;
    let expected = [existing.clone(), fewer.clone()].concat();
    assert_holds(&store, &nearly, &expected, "98 events after 3").await;
    assert_holds(&store, &stale, &existing, "a stale conversation").await;
    for sender_id in &small {
        assert_holds(&store, sender_id, &two, "a small conversation").await;
    }

    // Called directly, past the checks of `TrackerStore`: an append over the limit is that
    // conversation's error alone.
    let over = bots(0, MAX_EVENTS_PER_APPEND + 1, "over");
    let (big, fine) = (id("big"), id("fine"));
    let appends = [
        Append::new(SenderId::new(big.as_str()).expect("id"), 0, &over).expect("append"),
        Append::new(SenderId::new(fine.as_str()).expect("id"), 0, &two).expect("append"),
    ];
    let results = dynamo.append_batch(&appends).await.expect("the batch");
    match &results[0] {
        Err(error) => assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}"),
        Ok(version) => panic!("100 events written: {version}"),
    }
    assert_eq!(results[1].as_ref().ok(), Some(&2));
    assert!(
        store
            .read(&big, ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert_holds(&store, &fine, &two, "beside one over the limit").await;
    assert!(dynamo.append_batch(&[]).await.expect("empty").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_an_interrupted_delete_left_are_overwritten_in_a_batch() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let ids = fresh_ids("leftovers", 4);
    store
        .append(&ids[1], 0, &bots(0, 10, "old"))
        .await
        .expect("append");
    // A delete that crashed right after removing the head: events 1..=10 are left.
    delete_head(&client, &table, &ids[1]).await;
    let events: Vec<Vec<Event>> = (0..4).map(|n| bots(0, 3, &format!("new {n}"))).collect();
    let batch: Vec<BatchAppend<'_>> = (0..4).map(|n| entry(&ids[n], 0, &events[n])).collect();
    let results = store.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().ok(), Some(&3), "conversation {n}");
        assert_holds(&store, &ids[n], &events[n], "created anew").await;
    }
    // Three leftovers overwritten, seven still there (invisible).
    assert_eq!(partition(&client, &table, &ids[1]).await.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_the_outbox_marks_every_conversation_pending() {
    let Some(dynamo) = common::outbox_store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo.clone());
    let ids = fresh_ids("outbox-batch", 30);
    // Ten exist already, with their pending mark.
    let mut marks = HashMap::new();
    for id in &ids[..10] {
        store
            .append(id, 0, &bots(0, 2, "before"))
            .await
            .expect("append");
        let head = head_item(&client, &table, id).await.expect("a head");
        marks.insert(id.clone(), number(&head, OUTBOX_PENDING).expect("a mark"));
    }
    let events = session(6, "batch");
    let batch: Vec<BatchAppend<'_>> = ids
        .iter()
        .enumerate()
        .map(|(n, sender_id)| entry(sender_id, if n < 10 { 2 } else { 0 }, &events))
        .collect();
    let results = store.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.iter().enumerate() {
        let version = if n < 10 { 8 } else { 6 };
        assert_eq!(result.as_ref().ok(), Some(&version), "conversation {n}");
    }
    for id in &ids {
        let head = head_item(&client, &table, id).await.expect("a head");
        let version = number(&head, VERSION).expect("a version");
        assert_eq!(number(&head, OUTBOX_SHARD), Some(outbox_shard(id)));
        let mark = number(&head, OUTBOX_PENDING).expect("pending");
        // A mark already there keeps its (older) time.
        if let Some(before) = marks.get(id) {
            assert_eq!(mark, *before, "{id}");
        }
        assert_eq!(number(&head, "session_start"), Some(version - 4), "{id}");
    }
    let pending: HashSet<String> = common::pending(&dynamo, 100).await.into_iter().collect();
    for id in &ids {
        assert!(pending.contains(id), "{id} is pending");
    }
}

/// Rasa's item of a conversation of `events`, as Rasa's `DynamoTrackerStore` writes it.
fn rasa_item(sender_id: &str, events: &[Event]) -> Item {
    fn attribute(value: &serde_json::Value) -> AttributeValue {
        match value {
            serde_json::Value::Null => AttributeValue::Null(true),
            serde_json::Value::Bool(flag) => AttributeValue::Bool(*flag),
            serde_json::Value::Number(number) => AttributeValue::N(number.to_string()),
            serde_json::Value::String(text) => AttributeValue::S(text.clone()),
            serde_json::Value::Array(values) => {
                AttributeValue::L(values.iter().map(attribute).collect())
            }
            serde_json::Value::Object(map) => AttributeValue::M(
                map.iter()
                    .map(|(key, value)| (key.clone(), attribute(value)))
                    .collect(),
            ),
        }
    }
    HashMap::from([
        (
            "sender_id".to_owned(),
            AttributeValue::S(sender_id.to_owned()),
        ),
        ("name".to_owned(), AttributeValue::S(sender_id.to_owned())),
        (
            "events".to_owned(),
            AttributeValue::L(events.iter().map(|e| attribute(&e.to_value())).collect()),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_adopts_and_refuses_as_single_appends_do() {
    let Some(dynamo) = common::adopting_store().await else {
        return;
    };
    let tables = dynamo.tables().await.expect("tables");
    let rasa = tables.rasa_table.clone().expect("Rasa's table");
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let prefix = fresh_id("adopt-batch");
    let id = |name: &str| format!("{prefix}-{name}");
    let (adopted, refused, absent, new) = (id("adopted"), id("refused"), id("absent"), id("new"));
    for sender_id in [&adopted, &refused] {
        client
            .put_item()
            .table_name(&rasa)
            .set_item(Some(rasa_item(sender_id, &session(5, sender_id))))
            .send()
            .await
            .expect("put Rasa's item");
    }
    let rasas = store
        .read(&adopted, ReadScope::All)
        .await
        .expect("read")
        .expect("Rasa's copy");
    assert_eq!(rasas.version, 5);
    let more = bots(0, 2, "more");
    let batch = [
        // At Rasa's version: moves into this store's table with the append.
        entry(&adopted, 5, &more),
        // Rasa holds it: it is not new.
        entry(&refused, 0, &more),
        // Nobody holds it.
        entry(&absent, 2, &more),
        entry(&new, 0, &more),
    ];
    let results = store.append_batch(&batch).await.expect("the batch");
    assert_eq!(results[0].as_ref().ok(), Some(&7));
    assert_conflict(&results[1], 5, "new to this store, but Rasa holds it");
    assert_conflict(&results[2], 0, "expected to exist");
    assert_eq!(results[3].as_ref().ok(), Some(&2));
    let read = store
        .read(&adopted, ReadScope::All)
        .await
        .expect("read")
        .expect("adopted");
    assert_eq!(read.version, 7);
    assert_eq!(texts(&read.events[..5]), texts(&rasas.events));
    let own = &tables.store_table;
    assert_eq!(partition(&client, own, &adopted).await.len(), 8);
    assert!(partition(&client, own, &refused).await.is_empty());
    assert!(partition(&client, own, &absent).await.is_empty());
    assert_holds(&store, &new, &more, "a new conversation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_transactions_meet_others_is_written_whole() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let direct = TrackerStore::new(dynamo);
    // A third of all transactions canceled with DynamoDB's `TransactionConflict` reply.
    let proxy = ConflictProxy::start(&common::url().await.expect("url"), 3).await;
    let store = TrackerStore::new(common::store_on(common::client_for(&proxy.url), &table));
    let ids = fresh_ids("meeting", 40);
    let events: Vec<Vec<Event>> = (0..40)
        .map(|n| bots(0, n % 9 + 1, &format!("meet {n}")))
        .collect();
    let batch: Vec<BatchAppend<'_>> = (0..40).map(|n| entry(&ids[n], 0, &events[n])).collect();
    let results = store.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.iter().enumerate() {
        assert_eq!(
            result.as_ref().ok(),
            Some(&(events[n].len() as u64)),
            "conversation {n}: {result:?}"
        );
        assert_holds(&direct, &ids[n], &events[n], "behind the proxy").await;
    }
    assert!(proxy.canceled() > 0);
}
