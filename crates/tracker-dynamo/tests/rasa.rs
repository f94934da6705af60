//! Reading Rasa's `DynamoTrackerStore` tables with `DynamoRasaSource` and importing them with
//! `TrackerStore::import_from`, on items in exactly the shape Rasa 3.6 writes through boto3:
//! `{"events": [...], "name": id, "sender_id": id}`, floats turned into `Decimal`s rounded to
//! 9 decimals (`replace_floats_with_decimals`), integers as integers, `None` as `NULL`.

mod common;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tracker_conformance::golden;
use tracker_core::{
    Error, ErrorKind, Event, EventKind, Imported, RasaConversation, RasaSource, ReadScope,
    TrackerStore,
};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType,
};
use tracker_dynamo::{DynamoConfig, DynamoRasaSource, DynamoStore, RASA_DEFAULT_TABLE_NAME};

type Item = HashMap<String, AttributeValue>;

/// Rasa's table: hash key `sender_id` only, 5/5 provisioned capacity (Rasa's bootstrap);
/// with `session_date` as range key for a Rasa 1.x/2.x table.
async fn rasa_table(client: &Client, legacy: bool) -> String {
    let name = common::fresh_table("states");
    let mut request = client
        .create_table()
        .table_name(&name)
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
        );
    if legacy {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("session_date")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .expect("definition"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("session_date")
                    .key_type(KeyType::Range)
                    .build()
                    .expect("key"),
            );
    }
    request.send().await.expect("create Rasa's table");
    name
}

/// Python's `Decimal(repr(x)).quantize(Decimal("1e-9"))` (round half to even), as text.
fn rasa_decimal(x: f64) -> String {
    let text = format!("{x}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest.to_owned()),
        None => ("", text.clone()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits.as_str(), ""));
    if frac.len() <= 9 {
        return format!("{sign}{int}.{frac:0<9}");
    }
    let mut kept: Vec<u8> = format!("{int}{}", &frac[..9]).into_bytes();
    let rest = &frac[9..];
    let first = rest.as_bytes()[0];
    let round_up = first > b'5'
        || (first == b'5'
            && (rest[1..].bytes().any(|b| b != b'0')
                || (kept.last().copied().unwrap_or(b'0') - b'0') % 2 == 1));
    if round_up {
        let mut at = kept.len();
        loop {
            if at == 0 {
                kept.insert(0, b'1');
                break;
            }
            at -= 1;
            if kept[at] == b'9' {
                kept[at] = b'0';
            } else {
                kept[at] += 1;
                break;
            }
        }
    }
    let kept = String::from_utf8(kept).expect("digits");
    let split = kept.len() - 9;
    format!("{sign}{}.{}", &kept[..split], &kept[split..])
}

/// A JSON value as Rasa stores it in DynamoDB (through `replace_floats_with_decimals` and
/// boto3's serialiser).
fn rasa_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Number(number) if number.is_f64() => {
            AttributeValue::N(rasa_decimal(number.as_f64().expect("float")))
        }
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(rasa_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), rasa_attribute(v)))
                .collect(),
        ),
    }
}

/// What Rasa reads back from such an item (`replace_decimals_with_floats`): every number a
/// float of the stored decimal; map keys sorted (DynamoDB keeps no order).
fn as_rasa_reads_it(value: &Value) -> Value {
    match value {
        Value::Number(number) if number.is_f64() => {
            let stored = rasa_decimal(number.as_f64().expect("float"));
            json!(stored.parse::<f64>().expect("decimal"))
        }
        Value::Number(number) => json!(number.as_f64().expect("number")),
        Value::Array(values) => Value::Array(values.iter().map(as_rasa_reads_it).collect()),
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), as_rasa_reads_it(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Rasa's item for a conversation.
fn rasa_item(sender_id: &str, events: &[Value]) -> Item {
    HashMap::from([
        (
            "sender_id".to_owned(),
            AttributeValue::S(sender_id.to_owned()),
        ),
        ("name".to_owned(), AttributeValue::S(sender_id.to_owned())),
        (
            "events".to_owned(),
            AttributeValue::L(events.iter().map(rasa_attribute).collect()),
        ),
    ])
}

async fn put(client: &Client, table: &str, item: Item) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put Rasa's item");
}

/// An item in DynamoDB's JSON notation (as the console and `aws dynamodb get-item` show it).
fn from_dynamo_json(value: &Value) -> AttributeValue {
    let (kind, inner) = value
        .as_object()
        .and_then(|map| map.iter().next())
        .expect("a typed value");
    match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str().expect("S").to_owned()),
        "N" => AttributeValue::N(inner.as_str().expect("N").to_owned()),
        "BOOL" => AttributeValue::Bool(inner.as_bool().expect("BOOL")),
        "NULL" => AttributeValue::Null(true),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .expect("L")
                .iter()
                .map(from_dynamo_json)
                .collect(),
        ),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .expect("M")
                .iter()
                .map(|(k, v)| (k.clone(), from_dynamo_json(v)))
                .collect(),
        ),
        other => panic!("unexpected type {other}"),
    }
}

/// A reader of Rasa's `table`, sharing the client.
fn source_on(client: &Client, table: &str) -> DynamoRasaSource {
    DynamoRasaSource::from_client(client.clone(), &DynamoConfig::with_table(table))
        .expect("a valid table name")
}

/// A store on a table of its own, a Rasa table beside it, and a reader of that one.
async fn setup() -> Option<(DynamoStore, Client, DynamoRasaSource)> {
    let store = common::store().await?;
    let client = store.client().clone();
    let table = rasa_table(&client, false).await;
    let source = source_on(&client, &table);
    source.check_schema().await.expect("Rasa's layout");
    Some((store, client, source))
}

/// Every item of a table, read straight from it, ordered by sender id.
async fn all_items(client: &Client, table: &str) -> Vec<Item> {
    let output = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    let mut items = output.items.unwrap_or_default();
    items.sort_by_key(|item| format!("{:?}", item.get("sender_id")));
    items
}

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_an_item_exactly_as_rasa_stored_it() {
    let Some((store, client, source)) = setup().await else {
        return;
    };
    // A conversation as `aws dynamodb get-item` shows Rasa 3.6's item.
    let item = json!({
        "sender_id": {"S": "rasa-alice"},
        "name": {"S": "rasa-alice"},
        "events": {"L": [
            {"M": {"event": {"S": "action"}, "timestamp": {"N": "1700000000.123456789"},
                   "name": {"S": "action_session_start"}, "policy": {"NULL": true},
                   "confidence": {"N": "1"}, "action_text": {"NULL": true},
                   "hide_rule_turn": {"BOOL": false}}},
            {"M": {"event": {"S": "session_started"}, "timestamp": {"N": "1700000000.200000000"}}},
            {"M": {"event": {"S": "user"}, "timestamp": {"N": "1700000001.5"}, "text": {"S": "hi ü"},
                   "parse_data": {"M": {
                       "intent": {"M": {"name": {"S": "greet"}, "confidence": {"N": "0.987654321"}}},
                       "entities": {"L": [{"M": {"entity": {"S": "name"}, "start": {"N": "0"},
                                                 "end": {"N": "2"}, "value": {"S": "hi"}}}]},
                       "text": {"S": "hi ü"}, "message_id": {"S": "m1"}, "metadata": {"M": {}},
                       "intent_ranking": {"L": [{"M": {"name": {"S": "greet"},
                                                      "confidence": {"N": "0.987654321"}}}]}}},
                   "input_channel": {"S": "rest"}, "message_id": {"S": "m1"},
                   "metadata": {"M": {}}}},
            {"M": {"event": {"S": "slot"}, "timestamp": {"N": "1700000002"}, "name": {"S": "count"},
                   "value": {"N": "3"}}},
            {"M": {"event": {"S": "slot"}, "timestamp": {"N": "1700000002"}, "name": {"S": "profile"},
                   "value": {"M": {"z": {"L": [{"N": "1"}, {"NULL": true}, {"BOOL": true}]},
                                    "a": {"S": ""}}}}},
            {"M": {"event": {"S": "bot"}, "timestamp": {"N": "1700000003"}, "text": {"S": "Hey!"},
                   "data": {"M": {"buttons": {"L": [{"M": {"title": {"S": "yes"},
                                                            "payload": {"S": "/affirm"}}}]}}},
                   "metadata": {"M": {"utter_action": {"S": "utter_greet"}}}}},
            {"M": {"topic": {"S": "legacy, skipped"}}},
            {"M": {"event": {"S": "action"}, "timestamp": {"N": "1700000004"},
                   "name": {"S": "action_listen"}, "policy": {"S": "policy_2_TEDPolicy"},
                   "confidence": {"N": "0.999999999"}}}
        ]}
    });
    let item: Item = item
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), from_dynamo_json(v)))
        .collect();
    let table = source.table_name().to_owned();
    put(&client, &table, item).await;
    let before = all_items(&client, &table).await;

    let RasaConversation { sender_id, events } = source
        .read("rasa-alice")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(sender_id, "rasa-alice");
    assert_eq!(events.len(), 7, "the map without `event` is skipped");
    assert!(events[0].is_action("action_session_start"));
    assert_eq!(events[0].timestamp, 1_700_000_000.123_456_8);
    assert!(matches!(events[1].kind, EventKind::SessionStarted));
    let user = events[2].to_value();
    assert_eq!(user["text"], "hi ü");
    assert_eq!(
        user["parse_data"]["intent"]["confidence"],
        json!(0.987654321)
    );
    // Numbers come back as floats, as Rasa reads them.
    assert_eq!(user["parse_data"]["entities"][0]["start"], json!(0.0));
    assert_eq!(events[3].to_value()["value"], json!(3.0));
    assert_eq!(
        events[4].to_rasa_json(),
        r#"{"event": "slot", "timestamp": 1700000002.0, "name": "profile", "value": {"a": "", "z": [1.0, null, true]}}"#
    );
    assert_eq!(
        events[5].to_value()["data"]["buttons"][0]["payload"],
        "/affirm"
    );
    assert_eq!(events[6].to_value()["confidence"], json!(0.999999999));

    // Imported, it reads back as the same events; Rasa's table is left as it was.
    let tracker_store = TrackerStore::new(store.clone());
    assert_eq!(
        tracker_store
            .import_from(&source, "rasa-alice")
            .await
            .expect("import"),
        Some(Imported {
            already_present: 0,
            written: 7,
            version: 7
        })
    );
    let tracker = tracker_store
        .retrieve_full_tracker("rasa-alice")
        .await
        .expect("retrieve")
        .expect("imported");
    assert_eq!(texts(tracker.events()), texts(&events));
    assert_eq!(all_items(&client, &table).await, before);
    assert!(source.read("nobody").await.expect("read").is_none());
    assert_eq!(
        tracker_store
            .import_from(&source, "nobody")
            .await
            .expect("import"),
        None
    );
    assert!(source.describe().contains(&table), "{}", source.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_golden_event_as_rasa_does() {
    let Some((_store, client, source)) = setup().await else {
        return;
    };
    let values = golden::event_values();
    put(&client, source.table_name(), rasa_item("golden", &values)).await;
    let read = source.read("golden").await.expect("read").expect("exists");
    let expected: Vec<Event> = values
        .iter()
        .map(|value| Event::from_value(as_rasa_reads_it(value)).expect("golden event parses"))
        .collect();
    assert_eq!(texts(&read.events), texts(&expected));
    // Spot checks of the rounding: 9 decimals, then a float.
    let confidence = read.events[0].to_value()["confidence"].clone();
    assert_eq!(confidence, json!(0.987654321));
    assert_eq!(read.events[0].timestamp, 1_700_000_123.456_789);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_rasa_sender_ids_across_pages() {
    let Some((_store, client, source)) = setup().await else {
        return;
    };
    let mut ids: Vec<String> = (0..30).map(|n| format!("rasa-{n:02} ü")).collect();
    for id in &ids {
        let event = json!({"event": "bot", "timestamp": 1700000000.25, "text": id});
        put(&client, source.table_name(), rasa_item(id, &[event])).await;
    }
    ids.sort();
    // Pages of 4 items: the scan follows LastEvaluatedKey eight times.
    let paged = source.clone().with_page_size(4);
    assert_eq!(paged.sender_ids().await.expect("list"), ids);
    assert_eq!(source.sender_ids().await.expect("list"), ids);
    let error = source_on(&client, "no-such-table")
        .sender_ids()
        .await
        .expect_err("missing table");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_checks_the_layout_and_creates_nothing() {
    let Some((store, client, source)) = setup().await else {
        return;
    };
    let Some(url) = common::url().await else {
        return;
    };
    let loader = || {
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials())
    };
    let config = |table: &str| DynamoConfig {
        endpoint_url: Some(url.clone()),
        ..DynamoConfig::with_table(table)
    };
    let opened = DynamoRasaSource::connect_with(&config(source.table_name()), loader())
        .await
        .expect("Rasa's table");
    assert_eq!(opened.table_name(), source.table_name());
    assert_eq!(DynamoConfig::default().table_name, RASA_DEFAULT_TABLE_NAME);

    // A missing table stays missing, whatever `migrate` says.
    let missing = common::fresh_table("states-missing");
    let error = DynamoRasaSource::connect_with(&config(&missing), loader())
        .await
        .expect_err("no such table");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains(&missing), "{error}");
    let described = client.describe_table().table_name(&missing).send().await;
    assert!(
        described
            .expect_err("not created")
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );

    // This store's own table is not Rasa's.
    let error = source_on(&client, store.table_name())
        .check_schema()
        .await
        .expect_err("not Rasa's layout");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("seq"), "{error}");
    let invalid = DynamoConfig::with_table("x");
    assert_eq!(
        DynamoRasaSource::from_client(client, &invalid)
            .expect_err("bad name")
            .kind(),
        ErrorKind::Config
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_long_conversations_in_several_appends_and_resumes() {
    let Some((store, client, source)) = setup().await else {
        return;
    };
    let table = source.table_name().to_owned();
    let golden = golden::event_values();
    let values: Vec<Value> = (0..250).map(|n| golden[n % golden.len()].clone()).collect();
    put(&client, &table, rasa_item("long", &values)).await;
    let expected: Vec<Event> = values
        .iter()
        .map(|value| Event::from_value(as_rasa_reads_it(value)).expect("parses"))
        .collect();
    let tracker_store = TrackerStore::new(store.clone());

    // An import that stopped after its first append: importing again appends the rest.
    tracker_store
        .append("long", 0, &expected[..99])
        .await
        .expect("first part");
    assert_eq!(
        tracker_store
            .import_from(&source, "long")
            .await
            .expect("resume"),
        Some(Imported {
            already_present: 99,
            written: 151,
            version: 250
        })
    );
    let read = tracker_store
        .read("long", ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events), texts(&expected));
    // Complete already: nothing more is written.
    assert_eq!(
        tracker_store
            .import_from(&source, "long")
            .await
            .expect("again"),
        Some(Imported {
            already_present: 250,
            written: 0,
            version: 250
        })
    );
    assert_eq!(tracker_store.version("long").await.expect("version"), 250);

    // Other events under the same id: diverged at the first event, nothing written.
    put(&client, &table, rasa_item("taken", &values[..3])).await;
    tracker_store
        .append("taken", 0, &[Event::bot("mine").at(1.0)])
        .await
        .expect("append");
    let error = tracker_store
        .import_from(&source, "taken")
        .await
        .expect_err("diverged");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error}");
    assert!(
        matches!(&error, Error::Diverged { sender_id, position: 1, .. } if sender_id == "taken"),
        "{error:?}"
    );
    assert_eq!(tracker_store.version("taken").await.expect("version"), 1);

    // An item without events imports as nothing.
    put(
        &client,
        &table,
        HashMap::from([
            ("sender_id".to_owned(), AttributeValue::S("empty".into())),
            ("name".to_owned(), AttributeValue::S("empty".into())),
        ]),
    )
    .await;
    assert_eq!(
        tracker_store
            .import_from(&source, "empty")
            .await
            .expect("import"),
        Some(Imported::default())
    );
    assert!(!tracker_store.exists("empty").await.expect("exists"));

    // An item that is not Rasa's: Corrupt, naming the conversation, for reads and imports.
    put(
        &client,
        &table,
        HashMap::from([
            ("sender_id".to_owned(), AttributeValue::S("broken".into())),
            ("events".to_owned(), AttributeValue::S("not a list".into())),
        ]),
    )
    .await;
    let error = source.read("broken").await.expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    assert!(error.to_string().contains("broken"), "{error}");
    let error = tracker_store
        .import_from(&source, "broken")
        .await
        .expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    assert!(!tracker_store.exists("broken").await.expect("exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tables_read_the_newest_item() {
    let Some(store) = common::store().await else {
        return;
    };
    let client = store.client().clone();
    let table = rasa_table(&client, true).await;
    let source = source_on(&client, &table);
    source.check_schema().await.expect("Rasa 2.x's layout");
    for (date, count) in [(1_600_000_000_u64, 2_usize), (1_600_000_500, 3)] {
        let events: Vec<Value> = (0..count)
            .map(|n| json!({"event": "bot", "timestamp": 1600000000.5, "text": format!("{n}")}))
            .collect();
        let mut item = rasa_item("legacy", &events);
        item.insert(
            "session_date".to_owned(),
            AttributeValue::N(date.to_string()),
        );
        put(&client, &table, item).await;
    }
    let read = source.read("legacy").await.expect("read").expect("exists");
    assert_eq!(read.events.len(), 3);
    assert_eq!(
        source.sender_ids().await.expect("list"),
        ["legacy"],
        "one id per conversation"
    );
}

// Adoption: a store configured with Rasa's table as `table_name`.

/// A Rasa table and a store configured with it as `table_name` (its own items in the table
/// beside it, created here), with its own client.
async fn adopting() -> Option<(DynamoStore, Client, String)> {
    let client = common::client().await?;
    let rasa = rasa_table(&client, false).await;
    let store = adopting_store(&rasa).await;
    Some((store, client, rasa))
}

/// Another store on Rasa's table `rasa` (another client: another process).
async fn adopting_store(rasa: &str) -> DynamoStore {
    let client = common::client().await.expect("the test server");
    let store = common::store_on(client, rasa);
    store.ensure_schema().await.expect("this store's table");
    store
}

/// Rasa's events as JSON values, as Rasa's tracker store would hold them: `sessions`
/// sessions of a greeting each, `tag` in the texts.
fn rasa_events(sessions: usize, tag: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for session in 0..sessions {
        let at = 1_700_000_000.25 + 100.0 * session as f64;
        for event in [
            Event::action("action_session_start").at(at),
            Event::session_started().at(at + 0.001),
            Event::action("action_listen").at(at + 0.002),
            Event::user(format!("hi {tag} {session}"), "greet", 0.987_654_321_2).at(at + 1.5),
            Event::slot("count", session as u64).at(at + 1.6),
            Event::bot(format!("hello {tag} {session}")).at(at + 2.0),
        ] {
            events.push(event.to_value());
        }
    }
    events
}

/// The events Rasa reads back from an item of `values`.
fn as_rasa_reads(values: &[Value]) -> Vec<Event> {
    values
        .iter()
        .map(|value| Event::from_value(as_rasa_reads_it(value)).expect("parses"))
        .collect()
}

/// Rasa's item of `sender_id`, every attribute, straight from the table.
async fn rasa_raw(client: &Client, table: &str, sender_id: &str) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .key("sender_id", AttributeValue::S(sender_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get Rasa's item")
        .item
}

/// The number of items this store's table holds for `sender_id`.
async fn own_items(store: &DynamoStore, sender_id: &str) -> usize {
    let tables = store.tables().await.expect("tables");
    store
        .client()
        .query()
        .table_name(&tables.store_table)
        .consistent_read(true)
        .key_condition_expression("#k = :k")
        .expression_attribute_names("#k", "sender_id")
        .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
        .send()
        .await
        .expect("query")
        .count() as usize
}

fn bot_events(count: usize, tag: &str) -> Vec<Event> {
    (0..count)
        .map(|n| Event::bot(format!("{tag} {n}")).at(1_800_000_000.0 + n as f64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasa_conversations_are_read_and_adopted_on_their_first_append() {
    let Some((dynamo, client, rasa)) = adopting().await else {
        return;
    };
    let tables = dynamo.tables().await.expect("tables");
    assert_eq!(tables.store_table, format!("{rasa}_events"));
    assert_eq!(tables.rasa_table.as_deref(), Some(rasa.as_str()));
    let values = rasa_events(2, "alice");
    put(&client, &rasa, rasa_item("alice", &values)).await;
    put(&client, &rasa, rasa_item("bob", &rasa_events(1, "bob"))).await;
    // An item without events is no conversation.
    put(
        &client,
        &rasa,
        HashMap::from([
            ("sender_id".to_owned(), AttributeValue::S("empty".into())),
            ("name".to_owned(), AttributeValue::S("empty".into())),
        ]),
    )
    .await;
    let before = rasa_raw(&client, &rasa, "alice")
        .await
        .expect("Rasa's item");
    let store = TrackerStore::new(dynamo.clone());
    let expected = as_rasa_reads(&values);

    // Read where Rasa keeps it, numbered 1..n, at version n.
    assert_eq!(store.version("alice").await.expect("version"), 12);
    let read = store
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("Rasa's conversation");
    assert_eq!(read.version, 12);
    assert_eq!(texts(&read.events), texts(&expected));
    let tracker = store
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("exists");
    assert_eq!(
        texts(tracker.events()),
        texts(&expected[6..]),
        "the latest session"
    );
    assert_eq!(store.version("empty").await.expect("version"), 0);
    assert!(!store.exists("empty").await.expect("exists"));

    // Only an append at Rasa's version adopts it.
    for stale in [0, 11, 13] {
        let error = store
            .append("alice", stale, &bot_events(1, "stale"))
            .await
            .expect_err("not at Rasa's version");
        assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
        assert_eq!(error.current_version(), Some(12));
    }
    assert_eq!(own_items(&dynamo, "alice").await, 0, "nothing written");
    let new = bot_events(2, "after");
    assert_eq!(store.append("alice", 12, &new).await.expect("adopt"), 14);
    assert_eq!(
        own_items(&dynamo, "alice").await,
        15,
        "the head and 14 events"
    );
    let read = store
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("adopted");
    assert_eq!(
        texts(&read.events),
        texts(&[expected.clone(), new].concat())
    );
    assert_eq!(
        rasa_raw(&client, &rasa, "alice").await.as_ref(),
        Some(&before),
        "Rasa's item is left exactly as it was"
    );
    // From now on this store's copy is the conversation.
    assert_eq!(
        store
            .append("alice", 14, &bot_events(1, "more"))
            .await
            .expect("append"),
        15
    );
    assert_eq!(own_items(&dynamo, "alice").await, 16);
    let tracker = store
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("exists");
    assert_eq!(
        tracker.events().len(),
        9,
        "the latest session and 3 new events"
    );

    // A new conversation is this store's from the start; each id is listed once.
    store
        .append("carol", 0, &bot_events(1, "carol"))
        .await
        .expect("new");
    let mut keys = store.keys().await.expect("keys");
    keys.sort();
    assert_eq!(keys, ["alice", "bob", "carol"]);
    // Importing Rasa's copy finds it present already: the store reads it.
    let source = source_on(&client, &rasa);
    assert_eq!(
        store.import_from(&source, "bob").await.expect("import"),
        Some(Imported {
            already_present: 6,
            written: 0,
            version: 6
        })
    );
    assert_eq!(own_items(&dynamo, "bob").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adopters_at_once_give_one_conflict() {
    let Some((first, client, rasa)) = adopting().await else {
        return;
    };
    let second = adopting_store(&rasa).await;
    let (first, second) = (TrackerStore::new(first), TrackerStore::new(second));
    for round in 0..4 {
        let id = format!("raced-{round}");
        put(&client, &rasa, rasa_item(&id, &rasa_events(1, &id))).await;
        let (one, other) = (bot_events(2, "first"), bot_events(3, "second"));
        let (a, b) = tokio::join!(first.append(&id, 6, &one), second.append(&id, 6, &other),);
        let (won, lost, written) = match (a, b) {
            (Ok(version), Err(error)) => (version, error, bot_events(2, "first")),
            (Err(error), Ok(version)) => (version, error, bot_events(3, "second")),
            other => panic!("round {round}: not one winner: {other:?}"),
        };
        assert_eq!(lost.kind(), ErrorKind::Conflict, "{lost}");
        assert_eq!(lost.current_version(), Some(won));
        let read = first
            .read(&id, ReadScope::All)
            .await
            .expect("read")
            .expect("adopted");
        let expected = [as_rasa_reads(&rasa_events(1, &id)), written].concat();
        assert_eq!(texts(&read.events), texts(&expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoptions_beyond_one_transaction_name_the_migration() {
    let Some((dynamo, client, rasa)) = adopting().await else {
        return;
    };
    let store = TrackerStore::new(dynamo.clone());
    let golden = golden::event_values();
    let values: Vec<Value> = (0..150).map(|n| golden[n % golden.len()].clone()).collect();
    put(&client, &rasa, rasa_item("long", &values)).await;
    put(&client, &rasa, rasa_item("edge", &values[..96])).await;
    let before = all_items(&client, &rasa).await;

    // 96 of Rasa's events and 2 more fill one transaction (with the head and the check of
    // Rasa's item); 3 more do not.
    let error = store
        .append("edge", 96, &bot_events(3, "x"))
        .await
        .expect_err("99 events");
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    assert!(
        error.to_string().contains("tracker migrate --from-rasa"),
        "{error}"
    );
    assert_eq!(own_items(&dynamo, "edge").await, 0, "nothing written");
    assert_eq!(
        store
            .append("edge", 96, &bot_events(2, "x"))
            .await
            .expect("98"),
        98
    );
    let error = store
        .append("long", 150, &bot_events(1, "x"))
        .await
        .expect_err("151 events");
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    assert!(error.to_string().contains("adopt_rasa: false"), "{error}");
    assert_eq!(own_items(&dynamo, "long").await, 0, "nothing written");
    assert_eq!(store.version("long").await.expect("version"), 150);

    // What the error says: copy it with adoption off (as `tracker migrate --from-rasa`
    // imports), after which appends go to this store's copy.
    let copier = DynamoStore::from_client(
        client.clone(),
        &DynamoConfig {
            adopt_rasa: false,
            ..DynamoConfig::with_table(&rasa)
        },
    )
    .expect("store");
    let copier = TrackerStore::new(copier);
    assert_eq!(
        copier
            .import_from(&source_on(&client, &rasa), "long")
            .await
            .expect("import"),
        Some(Imported {
            already_present: 0,
            written: 150,
            version: 150
        })
    );
    assert_eq!(
        store
            .append("long", 150, &bot_events(1, "x"))
            .await
            .expect("append"),
        151
    );
    let read = store
        .read("long", ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(texts(&read.events[..150]), texts(&as_rasa_reads(&values)));
    assert_eq!(
        all_items(&client, &rasa).await,
        before,
        "Rasa's table unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_remove_rasa_copy_and_own() {
    let Some((dynamo, client, rasa)) = adopting().await else {
        return;
    };
    let store = TrackerStore::new(dynamo.clone());
    for id in ["rasa-only", "rasa-any", "adopted", "raced"] {
        put(&client, &rasa, rasa_item(id, &rasa_events(1, id))).await;
    }
    put(&client, &rasa, rasa_item("other", &rasa_events(1, "other"))).await;

    // A conversation only Rasa holds: checked against Rasa's version, then gone.
    let error = store.delete_at("rasa-only", 5).await.expect_err("stale");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(error.current_version(), Some(6));
    assert!(rasa_raw(&client, &rasa, "rasa-only").await.is_some());
    assert!(store.delete_at("rasa-only", 6).await.expect("delete"));
    assert!(rasa_raw(&client, &rasa, "rasa-only").await.is_none());
    assert_eq!(store.version("rasa-only").await.expect("version"), 0);
    assert!(store.delete("rasa-any").await.expect("delete"));
    assert!(rasa_raw(&client, &rasa, "rasa-any").await.is_none());
    assert!(!store.delete("rasa-any").await.expect("again"));

    // An adopted one: this store's copy and Rasa's, so it does not come back as Rasa's.
    store
        .append("adopted", 6, &bot_events(1, "x"))
        .await
        .expect("adopt");
    let error = store.delete_at("adopted", 6).await.expect_err("stale");
    assert_eq!(error.current_version(), Some(7));
    assert!(store.delete_at("adopted", 7).await.expect("delete"));
    assert!(rasa_raw(&client, &rasa, "adopted").await.is_none());
    assert_eq!(own_items(&dynamo, "adopted").await, 0);
    assert_eq!(store.version("adopted").await.expect("version"), 0);
    assert!(
        store
            .read("adopted", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );

    // A delete and an adoption at once: one of them, never both.
    let events = bot_events(1, "y");
    let (deleted, appended) = tokio::join!(
        store.delete_at("raced", 6),
        store.append("raced", 6, &events),
    );
    match (deleted, appended) {
        (Ok(true), Err(error)) => {
            assert_eq!(error.current_version(), Some(0), "{error}");
            assert_eq!(store.version("raced").await.expect("version"), 0);
        }
        (Err(error), Ok(7)) => {
            assert_eq!(error.current_version(), Some(7), "{error}");
            assert_eq!(store.version("raced").await.expect("version"), 7);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        store
            .keys()
            .await
            .expect("keys")
            .contains(&"other".to_owned())
    );
    assert!(
        rasa_raw(&client, &rasa, "other").await.is_some(),
        "others untouched"
    );

    // An item of Rasa's that cannot be read is Corrupt, and deleted all the same.
    put(
        &client,
        &rasa,
        HashMap::from([
            ("sender_id".to_owned(), AttributeValue::S("broken".into())),
            ("events".to_owned(), AttributeValue::S("not a list".into())),
        ]),
    )
    .await;
    let error = store.version("broken").await.expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    assert_eq!(
        store
            .delete_at("broken", 1)
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    assert!(store.delete("broken").await.expect("delete"));
    assert!(rasa_raw(&client, &rasa, "broken").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_gives_every_conversation_once_across_pages() {
    let Some((dynamo, client, rasa)) = adopting().await else {
        return;
    };
    let store = TrackerStore::new(dynamo.clone().with_page_size(3));
    let mut ids = Vec::new();
    for n in 0..9 {
        let id = format!("rasa-{n}");
        put(&client, &rasa, rasa_item(&id, &rasa_events(1, &id))).await;
        ids.push(id);
    }
    for n in 0..4 {
        // Adopted: in both tables.
        store
            .append(&format!("rasa-{n}"), 6, &bot_events(1, "x"))
            .await
            .expect("adopt");
    }
    for n in 0..7 {
        let id = format!("own-{n}");
        store
            .append(&id, 0, &bot_events(1, "x"))
            .await
            .expect("new");
        ids.push(id);
    }
    ids.sort();
    for limit in [1, 4, 100] {
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
        seen.sort();
        assert_eq!(seen, ids, "pages of {limit}");
    }
    // Without adoption only this store's conversations are listed.
    let own_only = TrackerStore::new(
        DynamoStore::from_client(
            client.clone(),
            &DynamoConfig {
                adopt_rasa: false,
                ..DynamoConfig::with_table(&rasa)
            },
        )
        .expect("store"),
    );
    let mut keys = own_only.keys().await.expect("keys");
    keys.sort();
    assert_eq!(keys.len(), 11, "{keys:?}");
    assert_eq!(own_only.version("rasa-8").await.expect("version"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rasa_table_holds_no_conversations() {
    let Some((dynamo, client, rasa)) = adopting().await else {
        return;
    };
    put(&client, &rasa, rasa_item("gone", &rasa_events(1, "gone"))).await;
    let store = TrackerStore::new(dynamo);
    assert_eq!(store.version("gone").await.expect("version"), 6);
    // Rasa's default table `states` may not exist (yet): the store works without it.
    client
        .delete_table()
        .table_name(&rasa)
        .send()
        .await
        .expect("drop Rasa's table");
    assert_eq!(store.version("gone").await.expect("version"), 0);
    assert!(
        store
            .read("gone", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        store
            .append("new", 0, &bot_events(2, "n"))
            .await
            .expect("append"),
        2
    );
    assert_eq!(store.keys().await.expect("keys"), ["new"]);
    assert!(store.delete("new").await.expect("delete"));
    assert!(!store.delete("gone").await.expect("delete"));
}

/// A store connected as `tracker list` connects (`migrate: false`) to `table_name`, through
/// the test server's URL.
async fn connect_unchanged(
    table_name: &str,
    adopt_rasa: bool,
) -> tracker_core::Result<DynamoStore> {
    let url = common::url().await.expect("the test server");
    let config = DynamoConfig {
        endpoint_url: Some(url),
        region: common::REGION.to_owned(),
        migrate: false,
        adopt_rasa,
        ..DynamoConfig::with_table(table_name)
    };
    let loader =
        tracker_dynamo::aws_config::defaults(tracker_dynamo::aws_config::BehaviorVersion::latest())
            .credentials_provider(common::credentials());
    DynamoStore::connect_with(&config, loader).await
}

/// Whether the server has a table of that name.
async fn table_exists(client: &Client, table: &str) -> bool {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(error) => panic!("describe {table}: {error:?}"),
    }
}

/// A Rasa deployment whose table is all there is (this store's table beside it not created
/// yet) is read as it is by a store connected without setup: Rasa's conversations are
/// versioned, read and listed, every write is refused naming `tracker migrate-schema`, and
/// nothing is created or written — until the table is set up, from when on the same store
/// adopts as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasas_table_alone_is_read_without_setup_and_never_written() {
    let Some(client) = common::client().await else {
        return;
    };
    let rasa = rasa_table(&client, false).await;
    let alice = rasa_events(2, "alice");
    let bob = rasa_events(1, "bob");
    put(&client, &rasa, rasa_item("alice", &alice)).await;
    put(&client, &rasa, rasa_item("bob", &bob)).await;
    put(
        &client,
        &rasa,
        HashMap::from([
            ("sender_id".to_owned(), AttributeValue::S("empty".into())),
            ("name".to_owned(), AttributeValue::S("empty".into())),
        ]),
    )
    .await;
    let own_table = format!("{rasa}_events");
    let items_before = all_items(&client, &rasa).await;
    let rasa_description = || async {
        let table = client
            .describe_table()
            .table_name(&rasa)
            .send()
            .await
            .expect("describe Rasa's table")
            .table
            .expect("a table");
        (
            table.key_schema().to_vec(),
            table.attribute_definitions().to_vec(),
            table.global_secondary_indexes().to_vec(),
            table.local_secondary_indexes().to_vec(),
            table.item_count(),
        )
    };
    let description_before = rasa_description().await;

    let dynamo = connect_unchanged(&rasa, true)
        .await
        .expect("Rasa's table alone is enough to read");
    assert!(!table_exists(&client, &own_table).await, "nothing created");
    let tables = dynamo.tables().await.expect("tables");
    assert_eq!(tables.store_table, own_table);
    assert_eq!(tables.rasa_table.as_deref(), Some(rasa.as_str()));
    let store = TrackerStore::new(dynamo.clone().with_page_size(1));

    // Reads: Rasa's conversations, at Rasa's versions; this store's table holds nothing.
    assert_eq!(store.version("alice").await.expect("version"), 12);
    assert_eq!(store.version("bob").await.expect("version"), 6);
    assert_eq!(store.version("nobody").await.expect("version"), 0);
    assert!(!store.exists("empty").await.expect("exists"));
    let read = store
        .read("alice", ReadScope::All)
        .await
        .expect("read")
        .expect("Rasa's conversation");
    assert_eq!(read.version, 12);
    assert_eq!(texts(&read.events), texts(&as_rasa_reads(&alice)));
    let latest = store
        .retrieve("alice")
        .await
        .expect("retrieve")
        .expect("exists");
    assert_eq!(texts(latest.events()), texts(&as_rasa_reads(&alice)[6..]));
    assert!(
        store
            .read("nobody", ReadScope::All)
            .await
            .expect("read")
            .is_none()
    );
    let mut keys = store.keys().await.expect("keys");
    keys.sort();
    assert_eq!(keys, ["alice", "bob"]);
    let first = store.list(None, 1).await.expect("a page");
    assert_eq!(first.sender_ids.len(), 1);
    let second = store
        .list(first.next_cursor, 10)
        .await
        .expect("the next page");
    let mut paged = [first.sender_ids, second.sender_ids].concat();
    paged.sort();
    assert_eq!(paged, ["alice", "bob"]);
    assert_eq!(second.next_cursor, None);

    // Writes: refused, naming the step that creates the table, and nothing written.
    let refusals = [
        store
            .append("alice", 12, &bot_events(1, "adopt"))
            .await
            .err(),
        store.append("new", 0, &bot_events(1, "new")).await.err(),
        store.delete("bob").await.err(),
        store.delete_at("bob", 6).await.err(),
        store.delete("nobody").await.err(),
    ];
    for error in refusals {
        let error = error.expect("a write is refused");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let message = error.to_string();
        for named in [
            "tracker migrate-schema",
            "migrate: true",
            own_table.as_str(),
        ] {
            assert!(message.contains(named), "{named:?} not in: {message}");
        }
    }
    assert!(!table_exists(&client, &own_table).await, "nothing created");
    assert_eq!(
        all_items(&client, &rasa).await,
        items_before,
        "Rasa's items are unchanged"
    );
    assert_eq!(rasa_description().await, description_before);
    assert_eq!(store.version("bob").await.expect("version"), 6);

    // Without adoption there is nothing to read, and the missing table is an error, as
    // it is when neither table exists.
    let error = connect_unchanged(&rasa, false)
        .await
        .expect_err("no adoption");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains(&own_table), "{error}");
    let never = common::fresh_table("states");
    let error = connect_unchanged(&never, true)
        .await
        .expect_err("no table at all");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!table_exists(&client, &never).await);
    // Rasa's default name, before Rasa created its table: both missing (unless something
    // else on the shared server created `states`).
    if !table_exists(&client, RASA_DEFAULT_TABLE_NAME).await
        && !table_exists(&client, "states_events").await
    {
        let error = connect_unchanged(RASA_DEFAULT_TABLE_NAME, true)
            .await
            .expect_err("neither Rasa's table nor this store's");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(error.to_string().contains("states_events"), "{error}");
        assert!(!table_exists(&client, "states_events").await);
    }
    assert!(!table_exists(&client, &own_table).await, "nothing created");

    // Once the table is set up (here by another process), the same store writes: the first
    // append adopts Rasa's conversation as usual.
    let setup = common::store_on(client.clone(), &rasa);
    assert_eq!(setup.ensure_schema().await.expect("set up").len(), 1);
    assert_eq!(
        store
            .append("alice", 12, &bot_events(2, "adopted"))
            .await
            .expect("adopts now"),
        14
    );
    assert_eq!(own_items(&dynamo, "alice").await, 15);
    assert_eq!(
        rasa_raw(&client, &rasa, "alice").await.as_ref(),
        items_before
            .iter()
            .find(|item| item.get("sender_id") == Some(&AttributeValue::S("alice".into()))),
        "Rasa's item is left as it was"
    );
    for table in [&rasa, &own_table] {
        client
            .delete_table()
            .table_name(table)
            .send()
            .await
            .expect("drop the test's tables");
    }
}
