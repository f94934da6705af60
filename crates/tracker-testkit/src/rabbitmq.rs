//! RabbitMQ for event broker tests: the test server (`TRACKER_TEST_RABBITMQ_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), a consumer that reads what was published with
//! its deduplication headers (`sender_id`, `seq`), and a TCP proxy a test can cut and
//! restore.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use lapin;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The test server's URL.
pub fn url() -> String {
    std::env::var("TRACKER_TEST_RABBITMQ_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `host:port` of the test server.
pub fn address() -> String {
    let url = url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let netloc = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = netloc.rsplit_once('@').map_or(netloc, |(_, hp)| hp);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

/// A connection to the test server, or `None` after the SKIPPED line (a failure under CI:
/// see [`crate::skip`]).
pub async fn connect() -> Option<Connection> {
    match Connection::connect(&url(), ConnectionProperties::default()).await {
        Ok(connection) => Some(connection),
        Err(error) => {
            crate::skip(
                "RabbitMQ",
                &format!("no RabbitMQ at {}: {error}", address()),
            );
            None
        }
    }
}

/// Runs `rabbitmqctl` (the test server's control tool, on the same machine; from `PATH` or
/// `/usr/sbin`) with `args`; panics unless it succeeds. Tests use it for policies such as a
/// queue length limit.
pub fn ctl(args: &[&str]) {
    // Debian installs it in /usr/sbin, which a user's PATH may lack.
    let output = ["rabbitmqctl", "/usr/sbin/rabbitmqctl"]
        .iter()
        .find_map(|program| std::process::Command::new(program).args(args).output().ok())
        .expect("rabbitmqctl (the test server's control tool) runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes a test's queues and exchange (what is already gone is fine).
pub async fn delete(connection: &Connection, exchange: &str, queues: &[String]) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await;
}

/// A message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The body, as text.
    pub body: String,
    /// The properties, headers included.
    pub properties: BasicProperties,
}

impl Received {
    /// A header.
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(&ShortString::from(name)))
    }

    /// A header that must be a string (panics otherwise).
    pub fn text_header(&self, name: &str) -> String {
        match self.header(name) {
            Some(AMQPValue::LongString(text)) => text.to_string(),
            other => panic!("{name} header: {other:?}"),
        }
    }

    /// The `seq` header (panics without one).
    pub fn seq(&self) -> u64 {
        match self.header("seq") {
            Some(AMQPValue::LongLongInt(seq)) => u64::try_from(*seq).expect("seq"),
            other => panic!("seq header: {other:?}"),
        }
    }

    /// `(sender_id, seq)` from the headers.
    pub fn key(&self) -> (String, u64) {
        (self.text_header("sender_id"), self.seq())
    }
}

/// The messages waiting in `queue` now, taken on `channel` (several calls can share one
/// channel, e.g. a consumer polling while a test publishes).
pub async fn waiting(channel: &lapin::Channel, queue: &str) -> Vec<Received> {
    let mut received = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        received.push(Received {
            body: String::from_utf8(message.delivery.data.clone()).expect("UTF-8 body"),
            properties: message.delivery.properties.clone(),
        });
    }
    received
}

/// Every message in `queue`, taken until `at_least` arrived and none came for a moment, or
/// until `timeout` passed.
pub async fn drain(
    connection: &Connection,
    queue: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<Received> {
    let channel = connection.create_channel().await.expect("channel");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            Some(message) => received.push(Received {
                body: String::from_utf8(message.delivery.data.clone()).expect("UTF-8 body"),
                properties: message.delivery.properties.clone(),
            }),
            None if received.len() >= at_least || tokio::time::Instant::now() > deadline => break,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    received
}

/// Takes exactly `count` messages from `queue` (waiting up to 20 s for them) and checks that
/// no more follow (none is there 100 ms later).
pub async fn take(connection: &Connection, queue: &str, count: usize) -> Vec<Received> {
    let received = drain(connection, queue, count, Duration::from_secs(20)).await;
    assert_eq!(received.len(), count, "messages in {queue}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let channel = connection.create_channel().await.expect("channel");
    let extra = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    assert!(extra.is_none(), "more messages than published in {queue}");
    received
}

/// What a consumer that drops duplicates keeps: the first copy of each `(sender_id, seq)`,
/// in arrival order. Panics when a conversation's messages skip a sequence number (a gap)
/// or go back to one not seen yet (out of order); a repeat of one already seen is a
/// duplicate and is counted.
pub fn deduplicate(received: Vec<Received>) -> Deduplicated {
    let mut last = HashMap::<String, u64>::new();
    let mut unique = Vec::new();
    let mut duplicates = Vec::new();
    for message in received {
        let (sender, seq) = message.key();
        let previous = last.get(&sender).copied().unwrap_or(0);
        if seq <= previous {
            duplicates.push((sender, seq));
            continue;
        }
        assert_eq!(seq, previous + 1, "{sender}: gap before seq {seq}");
        last.insert(sender, seq);
        unique.push(message);
    }
    Deduplicated {
        unique,
        duplicates,
        last,
    }
}

/// The outcome of [`deduplicate`].
#[derive(Debug)]
pub struct Deduplicated {
    /// The first copy of every message, in arrival order.
    pub unique: Vec<Received>,
    /// The `(sender_id, seq)` of every repeated copy, in arrival order.
    pub duplicates: Vec<(String, u64)>,
    /// The last sequence number received per conversation.
    pub last: HashMap<String, u64>,
}

/// A TCP proxy that a test can kill (closing every connection through it and refusing new
/// ones) and restore on the same port.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy on a free local port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let proxy = Self {
            port,
            upstream,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(connection);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(accept);
    }

    /// Closes every connection and stops accepting new ones.
    pub fn kill(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn restore(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("rebinding the proxy port: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An AMQP URL through the proxy (guest/guest, vhost `/`).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}
