//! DynamoDB-specific behaviour on the test server: the item layout, conflicts that write
//! nothing, limits (and the README's statement of them), pagination past 1 MB and with small
//! pages, deletes (also interrupted ones), listing cursors, unreachable endpoints, corrupt
//! items.

mod common;

use std::collections::HashSet;

use common::items::{delete_head, number, partition, seqs};
use common::{bots, fresh_id, texts};
use tracker_core::{ErrorKind, Event, ReadScope, SenderId, Store, TrackerStore};
use tracker_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use tracker_dynamo::schema::{
    DATA, HASH_KEY, HEAD_SEQ, MAX_APPEND_BYTES, MAX_EVENT_BYTES, MAX_EVENTS_PER_APPEND, RANGE_KEY,
    SESSION_START, TIMESTAMP, TYPE_NAME, VERSION,
};
use tracker_dynamo::{DynamoConfig, DynamoStore};

#[test]
fn the_readme_states_the_capabilities() {
    // Capabilities do not depend on the server: a store of the default configuration on a
    // client that never sends anything.
    let store = DynamoStore::from_client(
        common::client_for("http://127.0.0.1:9"),
        &DynamoConfig::default(),
    )
    .expect("the default configuration");
    tracker_conformance::claims::assert_readme_states_capabilities(
        include_str!("../README.md"),
        &store.capabilities(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_laid_out_as_documented() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let id = fresh_id("layout");
    let events = [
        Event::user("hi", "greet", 0.9).at(1_700_000_000.25),
        Event::action("action_session_start").at(1_700_000_001.0),
        Event::session_started().at(1_700_000_002.0),
        Event::bot("hello").at(1_700_000_003.0),
    ];
    assert_eq!(store.append(&id, 0, &events).await.expect("append"), 4);
    let items = partition(&client, &table, &id).await;
    assert_eq!(seqs(&items), [HEAD_SEQ, 1, 2, 3, 4]);
    let head = &items[0];
    assert_eq!(number(head, VERSION), Some(4));
    assert_eq!(number(head, SESSION_START), Some(3));
    assert_eq!(head.len(), 4, "head: {head:?}");
    let user = &items[1];
    assert_eq!(
        user.get(DATA),
        Some(&AttributeValue::S(events[0].to_rasa_json()))
    );
    assert_eq!(user.get(TYPE_NAME), Some(&AttributeValue::S("user".into())));
    assert_eq!(
        user.get("intent_name"),
        Some(&AttributeValue::S("greet".into()))
    );
    assert_eq!(
        user.get(TIMESTAMP),
        Some(&AttributeValue::N("1700000000.25".into()))
    );
    assert_eq!(
        items[2].get("action_name"),
        Some(&AttributeValue::S("action_session_start".into()))
    );
    // The session start moves with later sessions only.
    store
        .append(&id, 4, &bots(0, 2, "more"))
        .await
        .expect("append");
    let head = &partition(&client, &table, &id).await[0];
    assert_eq!(
        (number(head, VERSION), number(head, SESSION_START)),
        (Some(6), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_writes_nothing() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let id = fresh_id("conflict");
    store
        .append(&id, 0, &bots(0, 3, "first"))
        .await
        .expect("append");
    let before = partition(&client, &table, &id).await;
    for expected in [0, 2, 4] {
        let error = store
            .append(&id, expected, &bots(10, 5, "stale"))
            .await
            .expect_err("stale");
        assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
        assert_eq!(error.current_version(), Some(3));
        assert!(!error.is_temporary());
    }
    assert_eq!(partition(&client, &table, &id).await, before);
    // A conflict at version 0 on a new conversation cannot happen; one at version 1 can.
    let new = fresh_id("conflict-new");
    let error = store
        .append(&new, 1, &bots(0, 1, "x"))
        .await
        .expect_err("no such version");
    assert_eq!(error.current_version(), Some(0));
    assert!(partition(&client, &table, &new).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_declared_and_enforced() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let capabilities = dynamo.capabilities();
    assert_eq!(capabilities.max_events_per_append, Some(99));
    assert_eq!(capabilities.max_event_bytes, Some(MAX_EVENT_BYTES));
    assert_eq!(capabilities.max_append_bytes, Some(MAX_APPEND_BYTES));
    assert!(capabilities.native_latest_session);
    assert!(!capabilities.expiry);
    let store = TrackerStore::new(dynamo);

    // The largest event, under the longest sender id, is stored and read back.
    let id = format!("{:m<255}", fresh_id("max"));
    assert_eq!(id.len(), 255);
    let overhead = Event::bot("").at(1_700_000_000.0).to_rasa_json().len();
    let largest = Event::bot("x".repeat(MAX_EVENT_BYTES - overhead)).at(1_700_000_000.0);
    assert_eq!(largest.to_rasa_json().len(), MAX_EVENT_BYTES);
    assert_eq!(
        store
            .append(&id, 0, std::slice::from_ref(&largest))
            .await
            .expect("the largest event"),
        1
    );
    let too_large = Event::bot("x".repeat(MAX_EVENT_BYTES - overhead + 1)).at(1_700_000_000.0);
    let error = store
        .append(&id, 1, &[too_large])
        .await
        .expect_err("over the limit");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");

    // 99 events fit one append; 100 are rejected before anything is sent.
    let many = fresh_id("many");
    assert_eq!(
        store
            .append(&many, 0, &bots(0, MAX_EVENTS_PER_APPEND, "e"))
            .await
            .expect("99 events"),
        99
    );
    let error = store
        .append(&many, 99, &bots(99, 100, "e"))
        .await
        .expect_err("100 events");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.version(&many).await.expect("version"), 99);

    // An append of (almost) the largest size is one transaction.
    let big = fresh_id("big");
    let each = MAX_APPEND_BYTES / 9 - overhead - 16;
    let events: Vec<Event> = (0..9)
        .map(|n| Event::bot(format!("{n:02}{}", "y".repeat(each))).at(1_700_000_000.0))
        .collect();
    let bytes: usize = events.iter().map(|e| e.to_rasa_json().len()).sum();
    assert!(bytes <= MAX_APPEND_BYTES && bytes > MAX_APPEND_BYTES - 1_000);
    assert_eq!(store.append(&big, 0, &events).await.expect("big append"), 9);
    let read = store
        .read(&big, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&events));
    let over: Vec<Event> = (0..10)
        .map(|_| Event::bot("z".repeat(MAX_APPEND_BYTES / 10 + 1)).at(1_700_000_000.0))
        .collect();
    let error = store.append(&big, 9, &over).await.expect_err("too big");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.version(&big).await.expect("version"), 9);

    // Direct callers of the Store trait are checked too.
    let raw = store.store();
    let append = tracker_core::Append::new(
        SenderId::new(fresh_id("raw")).expect("id"),
        0,
        &bots(0, 100, "raw"),
    )
    .expect("append");
    let error = raw.append(&append).await.expect_err("100 events");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_pages_past_one_megabyte() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let store = TrackerStore::new(dynamo.clone());
    let id = fresh_id("megabytes");
    // 3 appends of 8 events of 100 KB: 2.4 MB, more than two of DynamoDB's 1 MB pages.
    let mut all = Vec::new();
    for part in 0..3 {
        let events: Vec<Event> = (0..8)
            .map(|n| {
                Event::bot(format!("{part}-{n} {}", "p".repeat(100_000)))
                    .at(1_700_000_000.0 + n as f64)
            })
            .collect();
        store
            .append(&id, all.len() as u64, &events)
            .await
            .expect("append");
        all.extend(events);
    }
    let read = store
        .read(&id, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.version, 24);
    assert_eq!(texts(&read.events), texts(&all));
    // One item per page.
    let paged = TrackerStore::new(dynamo.with_page_size(1));
    let read = paged
        .read(&id, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_session_reads_start_at_the_session() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let raw = dynamo.clone().with_page_size(2);
    let store = TrackerStore::new(dynamo);
    let id = fresh_id("sessions");
    let mut events = bots(0, 150, "old");
    events.push(Event::action("action_session_start").at(1_700_001_000.0));
    events.push(Event::session_started().at(1_700_001_001.0));
    events.extend(bots(200, 5, "new"));
    let mut version = 0;
    for chunk in events.chunks(60) {
        version = store.append(&id, version, chunk).await.expect("append");
    }
    assert_eq!(version, 157);
    let stored = raw
        .read(
            &SenderId::new(id.as_str()).expect("id"),
            ReadScope::LatestSession,
        )
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.version, 157);
    // From S - 1 = 151 (the action_session_start) on, nothing earlier.
    let read_seqs: Vec<u64> = stored.events.iter().map(|e| e.seq).collect();
    assert_eq!(read_seqs, (151..=157).collect::<Vec<u64>>());
    let tracker = store
        .retrieve(&id)
        .await
        .expect("retrieve")
        .expect("exists");
    assert_eq!(texts(tracker.events()), texts(&events[150..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_every_item() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    // Pages of 7 items: the delete follows LastEvaluatedKey and spans several transactions.
    let store = TrackerStore::new(dynamo.with_page_size(7));
    let id = fresh_id("delete");
    let other = fresh_id("delete-other");
    let mut version = 0;
    for chunk in bots(0, 250, "d").chunks(99) {
        version = store.append(&id, version, chunk).await.expect("append");
    }
    store
        .append(&other, 0, &bots(0, 3, "o"))
        .await
        .expect("append");
    assert_eq!(partition(&client, &table, &id).await.len(), 251);
    assert!(store.delete(&id).await.expect("delete"));
    assert!(partition(&client, &table, &id).await.is_empty());
    assert_eq!(partition(&client, &table, &other).await.len(), 4);
    assert!(!store.delete(&id).await.expect("delete again"));
    assert_eq!(store.version(&id).await.expect("version"), 0);
    assert_eq!(
        store
            .append(&id, 0, &bots(0, 2, "new"))
            .await
            .expect("anew"),
        2
    );
    assert_eq!(seqs(&partition(&client, &table, &id).await), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_delete_leaves_nothing_visible() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let id = fresh_id("interrupted");
    store
        .append(&id, 0, &bots(0, 10, "old"))
        .await
        .expect("append");
    // A delete that crashed right after removing the head: events 1..=10 are left.
    delete_head(&client, &table, &id).await;
    assert_eq!(partition(&client, &table, &id).await.len(), 10);
    assert_eq!(store.version(&id).await.expect("version"), 0);
    assert!(
        store
            .read(&id, ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert!(!store.keys().await.expect("keys").contains(&id));
    let error = store
        .append(&id, 10, &bots(0, 1, "x"))
        .await
        .expect_err("old version");
    assert_eq!(error.current_version(), Some(0));

    // Created anew over the leftovers: they are overwritten, the rest stays invisible.
    let first = bots(100, 3, "new");
    assert_eq!(store.append(&id, 0, &first).await.expect("anew"), 3);
    let read = store
        .read(&id, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&first));
    let second = bots(200, 4, "newer");
    assert_eq!(store.append(&id, 3, &second).await.expect("append"), 7);
    let read = store
        .read(&id, ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&[first, second].concat()));
    assert_eq!(partition(&client, &table, &id).await.len(), 11);

    // A delete removes the leftovers too.
    assert!(store.delete(&id).await.expect("delete"));
    assert!(partition(&client, &table, &id).await.is_empty());

    // Leftovers without any head: delete reports it did not exist, and cleans up.
    let orphan = fresh_id("orphan");
    store
        .append(&orphan, 0, &bots(0, 3, "o"))
        .await
        .expect("append");
    delete_head(&client, &table, &orphan).await;
    assert!(!store.delete(&orphan).await.expect("delete"));
    assert!(partition(&client, &table, &orphan).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_never_overlap() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let ids = common::fresh_ids("list", 40);
    let store = TrackerStore::new(dynamo.clone());
    for (n, id) in ids.iter().enumerate() {
        // Conversations of 1 to 5 events, so heads are spread between event items.
        store
            .append(id, 0, &bots(0, n % 5 + 1, "l"))
            .await
            .expect("append");
    }
    for (page_size, limit) in [
        (None, 1),
        (None, 7),
        (Some(1), 3),
        (Some(2), 40),
        (Some(5), 100),
    ] {
        let dynamo = match page_size {
            Some(items) => dynamo.clone().with_page_size(items),
            None => dynamo.clone(),
        };
        let store = TrackerStore::new(dynamo);
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list(cursor, limit).await.expect("list");
            assert!(page.sender_ids.len() <= limit);
            seen.extend(page.sender_ids);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "an id listed twice");
        assert_eq!(
            seen.len(),
            ids.len(),
            "page size {page_size:?}, limit {limit}"
        );
        for id in &ids {
            assert!(unique.contains(id), "{id} missing");
        }
    }
    // The last page has no cursor even when it is exactly full.
    let page = store.list(None, 40).await.expect("list");
    assert_eq!((page.sender_ids.len(), page.next_cursor), (40, None));
    for bad in ["nonsense", "0.zz", "1"] {
        let error = store
            .list(Some(bad.to_owned()), 10)
            .await
            .expect_err("bad cursor");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_unavailable() {
    // A port nothing listens on: connection refused, classified as temporary.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let client = common::client_for(&format!("http://127.0.0.1:{port}"));
    let store = common::store_on(client, "unreachable");
    let error = store
        .version(&SenderId::new("x").expect("id"))
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_temporary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_items_are_corrupt_for_their_conversation_only() {
    let Some(dynamo) = common::store().await else {
        return;
    };
    let table = dynamo.table_name().to_owned();
    let client = dynamo.client().clone();
    let store = TrackerStore::new(dynamo);
    let healthy = fresh_id("healthy");
    let healthy_events = bots(0, 3, "healthy");
    store
        .append(&healthy, 0, &healthy_events)
        .await
        .expect("append");

    // Each damage is done to a conversation of its own: (what, seq, attribute, value), where
    // no value removes the item.
    let damages: [(&str, u64, &str, Option<AttributeValue>); 5] = [
        (
            "data that is not JSON",
            2,
            DATA,
            Some(AttributeValue::S("{not json".into())),
        ),
        (
            "data that is no event",
            2,
            DATA,
            Some(AttributeValue::S("[1, 2]".into())),
        ),
        (
            "data of the wrong type",
            2,
            DATA,
            Some(AttributeValue::N("7".into())),
        ),
        ("an event item missing", 2, DATA, None),
        (
            "a head version that is no number",
            HEAD_SEQ,
            VERSION,
            Some(AttributeValue::S("three".into())),
        ),
    ];
    for (what, seq, attribute, value) in damages {
        let id = fresh_id("corrupt");
        store
            .append(&id, 0, &bots(0, 3, "doomed"))
            .await
            .expect("append");
        match value {
            Some(value) => {
                client
                    .update_item()
                    .table_name(&table)
                    .key(HASH_KEY, AttributeValue::S(id.clone()))
                    .key(RANGE_KEY, AttributeValue::N(seq.to_string()))
                    .update_expression("SET #a = :v")
                    .expression_attribute_names("#a", attribute)
                    .expression_attribute_values(":v", value)
                    .send()
                    .await
                    .expect("damage the item");
            }
            None => {
                client
                    .delete_item()
                    .table_name(&table)
                    .key(HASH_KEY, AttributeValue::S(id.clone()))
                    .key(RANGE_KEY, AttributeValue::N(seq.to_string()))
                    .send()
                    .await
                    .expect("remove the item");
            }
        }
        for scope in [ReadScope::All, ReadScope::LatestSession] {
            let error = store
                .read(&id, scope)
                .await
                .expect_err(&format!("{what}: a read must fail"));
            assert_eq!(error.kind(), ErrorKind::Corrupt, "{what}: {error}");
            assert!(
                error.to_string().contains(&id),
                "{what}: the error names the conversation: {error}"
            );
        }
        let read = store
            .read(&healthy, ReadScope::All)
            .await
            .expect("the other conversation reads")
            .expect("exists");
        assert_eq!(texts(&read.events), texts(&healthy_events), "{what}");
        assert!(
            store.keys().await.expect("keys").contains(&healthy),
            "{what}: listing still works"
        );
        assert!(
            store
                .delete(&id)
                .await
                .expect("a corrupt conversation can be deleted")
        );
        assert!(partition(&client, &table, &id).await.is_empty(), "{what}");
    }
}
