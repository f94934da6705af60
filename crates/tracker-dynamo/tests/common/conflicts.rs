//! A proxy in front of the test server that makes it behave as DynamoDB does when two
//! transactions meet on one item, which moto never does: a share of the `TransactWriteItems`
//! requests is answered with a `TransactionCanceledException` whose reasons name
//! `TransactionConflict` for the first action and `None` for the others — DynamoDB's exact
//! reply — and not forwarded (a canceled transaction writes nothing). Everything else is
//! forwarded unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; it runs until the test ends.
pub struct ConflictProxy {
    /// Its URL, for a client.
    pub url: String,
    canceled: Arc<AtomicUsize>,
    transactions: Arc<AtomicUsize>,
}

impl ConflictProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) that cancels one in every `every`
    /// transactions.
    pub async fn start(upstream: &str, every: usize) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let canceled = Arc::new(AtomicUsize::new(0));
        let transactions = Arc::new(AtomicUsize::new(0));
        let (canceled_count, seen) = (canceled.clone(), transactions.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (canceled, seen) = (canceled_count.clone(), seen.clone());
                tokio::spawn(async move {
                    proxy(socket, &upstream, every.max(1), &canceled, &seen).await;
                });
            }
        });
        Self {
            url,
            canceled,
            transactions,
        }
    }

    /// How many transactions it canceled.
    pub fn canceled(&self) -> usize {
        self.canceled.load(Ordering::SeqCst)
    }

    /// How many transactions it saw.
    pub fn transactions(&self) -> usize {
        self.transactions.load(Ordering::SeqCst)
    }
}

/// One HTTP message: its head (start line and headers) and body.
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The message with `connection: close` instead of any connection header.
    fn closing(&self) -> Vec<u8> {
        let mut head: Vec<&str> = self
            .head
            .trim_end()
            .lines()
            .filter(|line| {
                !line
                    .split_once(':')
                    .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("connection"))
            })
            .collect();
        head.push("connection: close");
        let mut bytes = format!("{}\r\n\r\n", head.join("\r\n")).into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads one message: the head, then `content-length` bytes (or up to the end).
async fn read_message(socket: &mut TcpStream) -> Option<Message> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 16384];
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
    let mut message = Message {
        head: String::from_utf8_lossy(&buffer[..header_end]).to_string(),
        body: buffer[header_end..].to_vec(),
    };
    match message
        .header("content-length")
        .and_then(|length| length.parse::<usize>().ok())
    {
        Some(length) => {
            while message.body.len() < length {
                let read = socket.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                message.body.extend_from_slice(&chunk[..read]);
            }
        }
        None => {
            socket.read_to_end(&mut message.body).await.ok()?;
        }
    }
    Some(message)
}

/// Serves one request on `client`.
async fn proxy(
    mut client: TcpStream,
    upstream: &str,
    every: usize,
    canceled: &AtomicUsize,
    seen: &AtomicUsize,
) {
    let Some(request) = read_message(&mut client).await else {
        return;
    };
    let is_transaction = request
        .header("x-amz-target")
        .is_some_and(|target| target.ends_with(".TransactWriteItems"));
    if is_transaction && seen.fetch_add(1, Ordering::SeqCst).is_multiple_of(every) {
        canceled.fetch_add(1, Ordering::SeqCst);
        let actions = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body["TransactItems"].as_array().map(Vec::len))
            .unwrap_or(1);
        let reasons: Vec<serde_json::Value> = (0..actions)
            .map(|index| {
                if index == 0 {
                    serde_json::json!({
                        "Code": "TransactionConflict",
                        "Message": "Transaction is ongoing for the item"
                    })
                } else {
                    serde_json::json!({"Code": "None"})
                }
            })
            .collect();
        let codes: Vec<&str> = (0..actions)
            .map(|index| {
                if index == 0 {
                    "TransactionConflict"
                } else {
                    "None"
                }
            })
            .collect();
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
            "CancellationReasons": reasons,
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&request.closing()).await.is_err() {
        return;
    }
    let Some(response) = read_message(&mut server).await else {
        return;
    };
    let _ = client.write_all(&response.closing()).await;
    let _ = client.shutdown().await;
}
