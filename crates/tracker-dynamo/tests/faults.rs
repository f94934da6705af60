//! Errors as DynamoDB sends them, through the real SDK, against a scripted HTTP server on
//! 127.0.0.1: throttling, server errors, canceled transactions and the rest. moto never
//! throttles, never fails with 5xx and never reports a conflicting transaction, so these paths
//! are checked here (no DynamoDB server needed) — and, for conflicting transactions, also on
//! the test server behind a proxy that cancels transactions the way DynamoDB does when two
//! meet on one item.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracker_core::{Append, ErrorKind, Event, ExpectedVersion, SenderId, Store};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::config::retry::RetryConfig;
use tracker_dynamo::aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tracker_dynamo::{DynamoConfig, DynamoStore};

use common::conflicts::ConflictProxy;

/// An HTTP response: status and JSON body.
type Reply = (u16, String);

/// A request as the server saw it: the operation (`X-Amz-Target` without its prefix) and
/// the body.
#[derive(Debug, Clone)]
struct Request {
    operation: String,
    body: String,
}

/// A scripted DynamoDB: answers each request with `script(request)`, and records requests.
struct FakeDynamo {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<Request>>>,
}

impl FakeDynamo {
    async fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let script = script.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    let (status, body) = if request.operation == "DescribeTable" {
                        described()
                    } else {
                        script(&request)
                    };
                    seen.lock().expect("lock").push(request);
                    let response = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, requests }
    }

    fn client(&self) -> Client {
        let config = tracker_dynamo::aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("test", "test", None, None, "fake"))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
                    .with_max_backoff(Duration::from_millis(5)),
            )
            .build();
        Client::from_conf(config)
    }

    fn store(&self) -> DynamoStore {
        DynamoStore::from_client(self.client(), &DynamoConfig::with_table("fake"))
            .expect("a valid table name")
    }

    fn count(&self, operation: &str) -> usize {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    fn bodies(&self, operation: &str) -> Vec<String> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.operation == operation)
            .map(|r| r.body.clone())
            .collect()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    let header_end = loop {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while buffer.len() < header_end + length {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let target = header("x-amz-target").unwrap_or_default();
    Some(Request {
        operation: target.rsplit('.').next().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&buffer[header_end..header_end + length]).to_string(),
    })
}

/// The description of a table of this store's layout, for `DescribeTable` (the store asks
/// once, to find its tables).
fn described() -> Reply {
    let body = serde_json::json!({"Table": {
        "TableName": "fake", "TableStatus": "ACTIVE",
        "KeySchema": [
            {"AttributeName": "sender_id", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"}
        ],
        "AttributeDefinitions": [
            {"AttributeName": "sender_id", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"}
        ]
    }});
    (200, body.to_string())
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
        "message": message
    })
    .to_string()
}

fn canceled(codes: &[&str]) -> Reply {
    let reasons: Vec<serde_json::Value> = codes
        .iter()
        .map(|code| {
            if *code == "None" {
                serde_json::json!({"Code": "None"})
            } else {
                serde_json::json!({"Code": code, "Message": format!("{code} (scripted)")})
            }
        })
        .collect();
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
        "CancellationReasons": reasons,
    });
    (400, body.to_string())
}

fn head_at(version: u64) -> Reply {
    (
        200,
        serde_json::json!({"Item": {"version": {"N": version.to_string()}}}).to_string(),
    )
}

fn id() -> SenderId {
    SenderId::new("alice").expect("id")
}

fn append_at(expected: u64, events: usize) -> Append {
    let events: Vec<Event> = (0..events)
        .map(|n| Event::bot(format!("{n}")).at(1_700_000_000.0))
        .collect();
    Append::new(id(), expected, &events).expect("append")
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_unavailable() {
    for code in [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ] {
        let fake = FakeDynamo::start(move |_| (400, error_body(code, "slow down"))).await;
        let error = fake.store().version(&id()).await.expect_err("throttled");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{code}: {error}");
        assert!(error.is_temporary());
        assert!(error.to_string().contains(code), "{error}");
        assert_eq!(
            fake.count("GetItem"),
            3,
            "{code}: the SDK retries throttling"
        );
    }
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    for (status, body) in [
        (500, error_body("InternalServerError", "oops")),
        (503, error_body("ServiceUnavailable", "later")),
        (503, String::new()),
        (
            400,
            error_body("TransactionConflictException", "in a transaction"),
        ),
    ] {
        let fake = FakeDynamo::start(move |_| (status, body.clone())).await;
        let error = fake.store().version(&id()).await.expect_err("fails");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{status}: {error}");
    }
}

#[tokio::test]
async fn other_errors_are_config_or_backend() {
    for (code, kind) in [
        ("ResourceNotFoundException", ErrorKind::Config),
        ("UnrecognizedClientException", ErrorKind::Config),
        ("AccessDeniedException", ErrorKind::Config),
        ("ValidationException", ErrorKind::Backend),
    ] {
        let fake = FakeDynamo::start(move |_| (400, error_body(code, "no"))).await;
        let error = fake.store().version(&id()).await.expect_err("fails");
        assert_eq!(error.kind(), kind, "{code}: {error}");
        assert_eq!(fake.count("GetItem"), 1, "{code} is not retried");
    }
}

#[tokio::test]
async fn a_failed_head_condition_is_a_conflict_never_retried() {
    let fake = FakeDynamo::start(|request| match request.operation.as_str() {
        "TransactWriteItems" => canceled(&["ConditionalCheckFailed", "None", "None"]),
        "GetItem" => head_at(5),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let error = fake
        .store()
        .append(&append_at(3, 2))
        .await
        .expect_err("conflict");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(5));
    assert_eq!(fake.count("TransactWriteItems"), 1);
    let body = &fake.bodies("GetItem")[0];
    assert!(body.contains("\"ConsistentRead\":true"), "{body}");
}

#[tokio::test]
async fn canceled_transactions_for_other_reasons_are_no_conflict() {
    for (codes, kind) in [
        (&["None", "ThrottlingError"][..], ErrorKind::Unavailable),
        (
            &["ProvisionedThroughputExceeded", "None"][..],
            ErrorKind::Unavailable,
        ),
        (&["None", "ValidationError"][..], ErrorKind::Backend),
    ] {
        let reply = canceled(codes);
        let fake = FakeDynamo::start(move |_| reply.clone()).await;
        let error = fake
            .store()
            .append(&append_at(0, 1))
            .await
            .expect_err("canceled");
        assert_eq!(error.kind(), kind, "{codes:?}: {error}");
        assert_eq!(fake.count("TransactWriteItems"), 1, "{codes:?}");
    }
    let fake = FakeDynamo::start(|_| (400, error_body("ThrottlingException", "slow"))).await;
    let error = fake
        .store()
        .append(&append_at(0, 1))
        .await
        .expect_err("throttled");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

/// How many transactions the store sends at most while DynamoDB cancels them for
/// conflicting transactions.
const CONFLICT_ATTEMPTS: usize = 8;

#[tokio::test]
async fn transactions_canceled_by_conflicting_ones_are_sent_again() {
    // DynamoDB's reply when another transaction is writing the head: the head's reason is
    // `TransactionConflict`, the others `None`.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let fake = FakeDynamo::start(move |request| match request.operation.as_str() {
        "TransactWriteItems" if counter.fetch_add(1, Ordering::SeqCst) < 3 => {
            canceled(&["TransactionConflict", "None", "None"])
        }
        "TransactWriteItems" => (200, "{}".to_owned()),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let version = fake
        .store()
        .append(&append_at(3, 2))
        .await
        .expect("applied at the fourth attempt");
    assert_eq!(version, 5);
    let bodies = fake.bodies("TransactWriteItems");
    assert_eq!(bodies.len(), 4);
    // Each attempt is a new request: its own idempotency token.
    let tokens: std::collections::HashSet<String> = bodies
        .iter()
        .map(|body| {
            let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
            body["ClientRequestToken"]
                .as_str()
                .expect("token")
                .to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 4);
}

#[tokio::test]
async fn a_transaction_that_keeps_meeting_others_ends_as_a_conflict() {
    // Every transaction canceled for a conflict on the head (`[{Code: None},
    // {Code: TransactionConflict}]` for a delete; the head first for an append): after the
    // last attempt the store reads the version and reports a conflict, never Unavailable.
    for (codes, version_after) in [
        (&["TransactionConflict", "None", "None"][..], 7_u64),
        (&["None", "TransactionConflict", "None"][..], 3),
    ] {
        let reply = canceled(codes);
        let fake = FakeDynamo::start(move |request| match request.operation.as_str() {
            "TransactWriteItems" => reply.clone(),
            "GetItem" => head_at(version_after),
            _ => (400, error_body("ValidationException", "unexpected")),
        })
        .await;
        let started = std::time::Instant::now();
        let error = fake
            .store()
            .append(&append_at(3, 2))
            .await
            .expect_err("conflicting");
        assert_eq!(error.kind(), ErrorKind::Conflict, "{codes:?}: {error}");
        assert!(!error.is_temporary());
        assert_eq!(error.current_version(), Some(version_after));
        assert_eq!(fake.count("TransactWriteItems"), CONFLICT_ATTEMPTS);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // A delete at the version read: the same.
    let fake = FakeDynamo::start(|request| match request.operation.as_str() {
        "TransactWriteItems" => canceled(&["TransactionConflict"]),
        "GetItem" => head_at(4),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let error = fake
        .store()
        .delete(&id(), ExpectedVersion::Exact(4))
        .await
        .expect_err("conflicting");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(4));
    assert_eq!(fake.count("TransactWriteItems"), CONFLICT_ATTEMPTS);
}

#[tokio::test]
async fn leftover_items_are_overwritten_under_the_head_condition() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let fake = FakeDynamo::start(move |request| match request.operation.as_str() {
        "TransactWriteItems" if counter.fetch_add(1, Ordering::SeqCst) == 0 => canceled(&[
            "None",
            "ConditionalCheckFailed",
            "None",
            "ConditionalCheckFailed",
        ]),
        "TransactWriteItems" => (200, "{}".to_owned()),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let version = fake
        .store()
        .append(&append_at(0, 3))
        .await
        .expect("appended over leftovers");
    assert_eq!(version, 3);
    let bodies = fake.bodies("TransactWriteItems");
    assert_eq!(bodies.len(), 2);
    let conditions = |body: &str| body.matches("ConditionExpression").count();
    // First: the head's condition and one per put; then the head's only.
    assert_eq!(conditions(&bodies[0]), 4, "{}", bodies[0]);
    assert_eq!(conditions(&bodies[1]), 1, "{}", bodies[1]);
    assert!(bodies[1].contains("attribute_not_exists"));
}

fn append_for(name: &str, expected: u64, events: usize) -> Append {
    let events: Vec<Event> = (0..events)
        .map(|n| Event::bot(format!("{n}")).at(1_700_000_000.0))
        .collect();
    Append::new(SenderId::new(name).expect("id"), expected, &events).expect("append")
}

#[tokio::test]
async fn a_batch_whose_transaction_may_have_been_applied_fails_whole() {
    let fake = FakeDynamo::start(|request| match request.operation.as_str() {
        "TransactWriteItems" => (500, error_body("InternalServerError", "oops")),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let batch = [append_for("alice", 0, 2), append_for("bob", 0, 2)];
    let error = fake
        .store()
        .append_batch(&batch)
        .await
        .expect_err("unknown");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    // One transaction for both, sent three times by the SDK, never alone.
    assert_eq!(fake.count("TransactWriteItems"), 3);
}

#[tokio::test]
async fn a_refused_batch_transaction_is_sent_conversation_by_conversation() {
    let fake = FakeDynamo::start(|request| match request.operation.as_str() {
        "TransactWriteItems" if request.body.contains("alice") && request.body.contains("bob") => {
            (400, error_body("ValidationException", "refused together"))
        }
        "TransactWriteItems" if request.body.contains("bob") => {
            (400, error_body("ThrottlingException", "slow down"))
        }
        "TransactWriteItems" => (200, "{}".to_owned()),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let batch = [append_for("alice", 0, 2), append_for("bob", 0, 2)];
    let results = fake.store().append_batch(&batch).await.expect("the batch");
    assert_eq!(results[0].as_ref().ok(), Some(&2));
    match &results[1] {
        Err(error) => assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}"),
        Ok(version) => panic!("written: {version}"),
    }
    // Together once, then alice alone, and bob alone three times (the SDK's retries).
    assert_eq!(fake.count("TransactWriteItems"), 5);
}

#[tokio::test]
async fn a_failed_head_condition_in_a_batch_returns_the_head_and_leaves_the_rest() {
    let fake = FakeDynamo::start(|request| match request.operation.as_str() {
        "TransactWriteItems" if request.body.contains("alice") => {
            let (status, body) =
                canceled(&["ConditionalCheckFailed", "None", "None", "None", "None"]);
            // DynamoDB returns the head as it was (`ReturnValuesOnConditionCheckFailure`).
            let mut body: serde_json::Value = serde_json::from_str(&body).expect("json");
            body["CancellationReasons"][0]["Item"] = serde_json::json!({
                "sender_id": {"S": "alice"}, "seq": {"N": "0"}, "version": {"N": "7"}
            });
            (status, body.to_string())
        }
        "TransactWriteItems" => (200, "{}".to_owned()),
        _ => (400, error_body("ValidationException", "unexpected")),
    })
    .await;
    let batch = [append_for("alice", 3, 1), append_for("bob", 0, 2)];
    let results = fake.store().append_batch(&batch).await.expect("the batch");
    match &results[0] {
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
            assert_eq!(error.current_version(), Some(7));
        }
        Ok(version) => panic!("written: {version}"),
    }
    assert_eq!(results[1].as_ref().ok(), Some(&2));
    let bodies = fake.bodies("TransactWriteItems");
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\""));
    assert!(!bodies[1].contains("alice"), "{}", bodies[1]);
    // The version came with the cancellation: nothing was read.
    assert_eq!(fake.count("GetItem"), 0);
}

/// A store on a new table of the test server, reached through a proxy that cancels one in
/// every `every` transactions for a conflicting transaction, as DynamoDB does when two meet on
/// one item; `None` after a loud skip.
async fn store_meeting_conflicts(every: usize) -> Option<(DynamoStore, ConflictProxy)> {
    let url = common::url().await?;
    let proxy = ConflictProxy::start(&url, every).await;
    let store = common::store_on(
        common::client_for(&proxy.url),
        &common::fresh_table("conflicts"),
    );
    store.ensure_schema().await.expect("create the table");
    Some((store, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_wins_when_transactions_meet_conflicting_ones() {
    let Some((store, proxy)) = store_meeting_conflicts(3).await else {
        return;
    };
    // 32 writers at one version, twice: exactly one wins, the others get Conflict (never
    // Unavailable), although a third of all transactions are canceled.
    tracker_conformance::cases::concurrent_writers_one_wins(store).await;
    assert!(proxy.canceled() > 10, "{} canceled", proxy.canceled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_on_one_conversation_holds_when_transactions_meet_conflicting_ones() {
    // The conformance suite's race (64 writers x 50 appends) in small: 12 writers append 6
    // times each to one conversation, re-reading the version after every Conflict; any other
    // error fails. A third of all transactions are canceled for a conflicting transaction.
    const WRITERS: usize = 12;
    const APPENDS: usize = 6;
    let Some((store, proxy)) = store_meeting_conflicts(3).await else {
        return;
    };
    let store = tracker_core::TrackerStore::new(store);
    let id = format!("race-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut version = store.version(&id).await.expect("version");
            for index in 0..APPENDS {
                let events = [
                    Event::user(format!("{writer}/{index}"), "race", 1.0).at(1_700_000_000.0),
                    Event::bot(format!("ack {writer}/{index}")).at(1_700_000_000.5),
                ];
                loop {
                    match store.append(&id, version, &events).await {
                        Ok(new_version) => {
                            acknowledged.push((new_version, events[0].to_rasa_json()));
                            version = new_version;
                            break;
                        }
                        Err(error) => {
                            assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
                            version = store.version(&id).await.expect("version");
                        }
                    }
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("writer"));
    }
    let read = store
        .read(&id, tracker_core::ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.events.len(), WRITERS * APPENDS * 2);
    for (version, text) in &acknowledged {
        let at = usize::try_from(*version).expect("small") - 2;
        assert_eq!(&read.events[at].to_rasa_json(), text, "append at {version}");
    }
    assert!(
        proxy.canceled() * 4 > proxy.transactions(),
        "{} of {} canceled",
        proxy.canceled(),
        proxy.transactions()
    );
}
