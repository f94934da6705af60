//! Errors as DynamoDB sends them, through the real SDK, against a scripted HTTP server on
//! 127.0.0.1: throttling, server errors, canceled transactions and the rest. moto never
//! throttles, never fails with 5xx and never reports a conflicting transaction, so these paths
//! are checked here (no DynamoDB server needed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracker_core::{Append, ErrorKind, Event, SenderId, Store};
use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::config::retry::RetryConfig;
use tracker_dynamo::aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tracker_dynamo::{DynamoConfig, DynamoStore};

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
                    let (status, body) = script(&request);
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
        (&["TransactionConflict", "None"][..], ErrorKind::Unavailable),
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
