//! The relay against a real RabbitMQ (`TRACKER_TEST_RABBITMQ_URL`), with faults, on stores
//! that keep an outbox: SQLite, PostgreSQL and Redis, built from `endpoints.yml` sections
//! through the registry. Each test writes conversations while a relay publishes them, breaks
//! something, and then checks what a consumer received: every event of every conversation,
//! byte for byte as Rasa would publish it, in order per conversation once repeats of a
//! `(sender_id, seq)` are dropped, and repeats only where the test made them.
//!
//! - the broker connection is cut (a TCP proxy the test kills) and restored;
//! - the relay dies after the broker acknowledged a batch and before its checkpoint (a broker
//!   wrapper that publishes, then never returns, and the relay's task aborted): another
//!   relay takes over when the lease runs out and publishes that batch again;
//! - the broker refuses messages (a RabbitMQ policy: queue length 3, overflow
//!   `reject-publish`) until the consumer catches up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracker_store::brokers::body_text;
use tracker_store::{
    BrokerMessage, Event, EventBroker, EventBrokerConfig, ReadScope, Registry, Relay, RelayOptions,
    Result, Store, StoreConfig, TrackerStore, async_trait,
};
use tracker_testkit::rabbitmq::{self, Deduplicated, Proxy, Received};
use tracker_testkit::{Service, service_url};

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

/// One test per backend running `scenario`.
macro_rules! per_backend {
    ($scenario:ident: $($name:ident => $kind:ident,)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $scenario(Kind::$kind).await;
            }
        )+
    };
}

/// A store with its outbox on, and what removes it afterwards.
struct Backend {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    PostgresDatabase { url: String, name: String },
    RedisConversations,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
    Redis,
}

async fn build(section: &str) -> Arc<dyn Store> {
    let config = StoreConfig::from_yaml(section).expect("section");
    Registry::with_builtins()
        .build(&config)
        .await
        .expect("the store")
}

impl Backend {
    /// `None` (after the harness's SKIPPED line) when the server is missing.
    async fn new(kind: Kind) -> Option<Self> {
        match kind {
            Kind::Sqlite => {
                let path = std::env::temp_dir().join(unique("relay.db"));
                let store = build(&format!(
                    "type: sql\ndialect: sqlite\ndb: {}\noutbox: true\n",
                    yaml_string(&path.display().to_string())
                ))
                .await;
                Some(Self {
                    store,
                    cleanup: Cleanup::File(path),
                })
            }
            Kind::Postgres => {
                let server = service_url(Service::Postgres).await?;
                // A database of its own (a relay publishes every conversation of its store),
                // created by the store from `login_db`.
                let name = unique("relay");
                let base = server
                    .url
                    .split('?')
                    .next()
                    .and_then(|url| url.rsplit_once('/'))
                    .map(|(base, _)| base.to_owned())
                    .expect("a database URL");
                let authority = base
                    .split_once("://")
                    .map_or(base.as_str(), |(_, rest)| rest);
                let (login, host) = authority.rsplit_once('@').unwrap_or(("", authority));
                let (username, password) = login.split_once(':').unwrap_or((login, ""));
                let store = build(&format!(
                    "type: sql\ndialect: postgresql\nurl: {}\nusername: {}\npassword: {}\n\
                     db: {name}\nlogin_db: postgres\noutbox: true\n",
                    yaml_string(host),
                    yaml_string(username),
                    yaml_string(password)
                ))
                .await;
                Some(Self {
                    store,
                    cleanup: Cleanup::PostgresDatabase {
                        url: format!("{base}/postgres"),
                        name,
                    },
                })
            }
            Kind::Redis => {
                let server = service_url(Service::Redis).await?;
                // Alphanumeric, as Rasa requires of a prefix (another one is dropped).
                let prefix = format!("relay{}", uuid::Uuid::new_v4().simple());
                let store = build(&format!(
                    "type: redis\nurl: {}\nkey_prefix: {prefix}\noutbox: true\n",
                    yaml_string(&server.url)
                ))
                .await;
                Some(Self {
                    store,
                    cleanup: Cleanup::RedisConversations,
                })
            }
        }
    }

    async fn remove(self) {
        let Self { store, cleanup } = self;
        let tracker = TrackerStore::from_arc(store);
        match cleanup {
            Cleanup::File(path) => {
                drop(tracker);
                let _ = std::fs::remove_file(&path);
            }
            Cleanup::PostgresDatabase { url, name } => {
                drop(tracker);
                use tracker_store::sql::diesel_async::{
                    AsyncConnection, AsyncPgConnection, RunQueryDsl,
                };
                let mut connection = AsyncPgConnection::establish(&url)
                    .await
                    .expect("the login database");
                tracker_store::sql::diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                ))
                .execute(&mut connection)
                .await
                .expect("DROP DATABASE");
            }
            Cleanup::RedisConversations => {
                // The test's conversations: deleting them deletes their outbox entries.
                let ids = tracker.keys().await.expect("keys");
                for id in ids {
                    tracker.delete(&id).await.expect("delete");
                }
            }
        }
    }
}

/// This test's exchange and queue on the test RabbitMQ.
struct Queue {
    exchange: String,
    queue: String,
}

impl Queue {
    fn new() -> Self {
        Self {
            exchange: unique("relay_exchange"),
            queue: unique("relay_queue"),
        }
    }

    /// A RabbitMQ broker publishing to this queue through `url`, as `tracker relay` sets it
    /// up: no messages kept in memory, a failed publish is an error at once.
    async fn broker(&self, url: &str) -> Arc<dyn EventBroker> {
        let section = format!(
            "type: pika\nurl: {}\nusername: guest\npassword: guest\nexchange_name: {}\n\
             queues:\n  - {}\nshould_keep_unpublished_messages: false\nraise_on_failure: true\n\
             connection_attempts: 1\nretry_delay_in_seconds: 0.1\n",
            yaml_string(url),
            self.exchange,
            self.queue
        );
        let config = EventBrokerConfig::from_yaml(&section)
            .expect("section")
            .expect("a broker");
        Registry::with_builtins()
            .build_broker(&config)
            .await
            .expect("the broker")
    }

    async fn remove(&self, connection: &rabbitmq::lapin::Connection) {
        rabbitmq::delete(
            connection,
            &self.exchange,
            std::slice::from_ref(&self.queue),
        )
        .await;
    }
}

/// Relay options for tests: short waits, small batches (many checkpoints), a short lease.
fn quick(name: &str) -> RelayOptions {
    let mut options = RelayOptions::default();
    options.name = name.to_owned();
    options.conversations_per_round = 16;
    options.messages_per_batch = 5;
    options.lease = Duration::from_secs(2);
    options.idle_wait = Duration::from_millis(20);
    options.max_backoff = Duration::from_millis(300);
    options
}

/// Writes `turns` turns (a user message and a bot reply) to each conversation, turn by turn
/// across the conversations, pausing `pause` between turns.
async fn write(store: TrackerStore, ids: Vec<String>, turns: usize, pause: Duration) {
    let mut versions: HashMap<String, u64> = HashMap::new();
    for turn in 0..turns {
        for id in &ids {
            let at = 1_700_000_000.0 + turn as f64;
            let events = [
                Event::user(format!("message {turn} from {id}"), "greet", 0.9).at(at),
                Event::bot(format!("reply {turn}")).at(at + 0.5),
            ];
            let version = versions.entry(id.clone()).or_default();
            *version = store.append(id, *version, &events).await.expect("append");
        }
        tokio::time::sleep(pause).await;
    }
}

/// A relay running in a task until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    fn start(relay: Relay) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the relay task").expect("the relay");
    }
}

/// Waits (up to 60 s) until the outbox has had nothing pending for longer than a lease: a
/// conversation leased by a relay that died is not listed until its lease runs out.
async fn drained(store: &Arc<dyn Store>) {
    let outbox = store.outbox().expect("an outbox");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut empty_rounds = 0;
    // 200 ms apart: 2.6 s, over the 2 s lease of `quick`.
    while empty_rounds < 13 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox still has pending conversations after 60 s: {:?}",
            outbox.pending(16).await
        );
        if outbox.pending(16).await.expect("pending").is_empty() {
            empty_rounds += 1;
        } else {
            empty_rounds = 0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that `received` holds every event of `ids` exactly as Rasa publishes them, in
/// order per conversation once repeats are dropped; returns the deduplication.
async fn check_delivery(
    store: &TrackerStore,
    ids: &[String],
    received: Vec<Received>,
) -> Deduplicated {
    let total = received.len();
    let outcome = rabbitmq::deduplicate(received);
    let mut expected_total = 0;
    let mut bodies: HashMap<(String, u64), String> = HashMap::new();
    for id in ids {
        let conversation = store
            .read(id, ReadScope::All)
            .await
            .expect("read")
            .expect("the conversation");
        for (event, seq) in conversation.events.iter().zip(1..) {
            let message = BrokerMessage::new(id, seq, event);
            bodies.insert((id.clone(), seq), body_text(&message).expect("body"));
        }
        expected_total += conversation.events.len();
        assert_eq!(
            outcome.last.get(id).copied().unwrap_or(0),
            conversation.version,
            "{id}: the last event delivered (of {total} messages received)"
        );
    }
    assert_eq!(
        outcome.unique.len(),
        expected_total,
        "distinct events delivered"
    );
    for message in &outcome.unique {
        let key = message.key();
        assert_eq!(
            Some(&message.body),
            bodies.get(&key),
            "body of {key:?} as Rasa publishes it"
        );
    }
    outcome
}

// -------------------------------------------------------------------------------------------
// The connection to the broker cut and restored.

async fn dropped_connection(kind: Kind) {
    let Some(server) = rabbitmq::connect().await else {
        return;
    };
    let Some(backend) = Backend::new(kind).await else {
        return;
    };
    let proxy = Proxy::start(rabbitmq::address()).await;
    let queue = Queue::new();
    let broker = queue.broker(&proxy.amqp_url()).await;
    let store = TrackerStore::from_arc(Arc::clone(&backend.store));
    let ids: Vec<String> = (0..4).map(|i| unique(&format!("drop{i}"))).collect();

    let relay = Relay::new(Arc::clone(&backend.store), broker)
        .expect("a relay")
        .with_options(quick("relay-drop"));
    let stats = relay.stats();
    let running = Running::start(relay);
    let writer = tokio::spawn(write(
        store.clone(),
        ids.clone(),
        30,
        Duration::from_millis(20),
    ));
    // Cut the connection while events are being written and published, for a while.
    tokio::time::sleep(Duration::from_millis(250)).await;
    proxy.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.restore().await;
    writer.await.expect("the writer");
    drained(&backend.store).await;
    running.stop().await;

    let received = rabbitmq::drain(&server, &queue.queue, 4 * 60, Duration::from_secs(20)).await;
    let outcome = check_delivery(&store, &ids, received).await;
    assert!(
        stats.failed_batches() > 0,
        "cutting the connection failed no publish: the test tested nothing"
    );
    eprintln!(
        "{kind:?}: {} events delivered, {} failed batches published again, {} repeats",
        outcome.unique.len(),
        stats.failed_batches(),
        outcome.duplicates.len()
    );
    queue.remove(&server).await;
    backend.remove().await;
}

per_backend!(dropped_connection:
    every_event_arrives_across_a_cut_connection_sqlite => Sqlite,
    every_event_arrives_across_a_cut_connection_postgres => Postgres,
    every_event_arrives_across_a_cut_connection_redis => Redis,
);
// -------------------------------------------------------------------------------------------
// The relay killed between the broker's acknowledgement and its checkpoint.

/// A broker that publishes its `stall_at`-th batch through `inner` and then never returns,
/// as a relay process that dies right after the broker acknowledged.
#[derive(Debug)]
struct DiesAfterPublish {
    inner: Arc<dyn EventBroker>,
    calls: AtomicUsize,
    stall_at: usize,
    stalled: Mutex<Vec<(String, u64)>>,
    died: tokio::sync::Notify,
}

#[async_trait]
impl EventBroker for DiesAfterPublish {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.publish(messages).await?;
        if call == self.stall_at {
            *self.stalled.lock().expect("lock") = messages
                .iter()
                .map(|message| (message.sender_id.clone(), message.seq))
                .collect();
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

async fn killed_relay(kind: Kind) {
    let Some(server) = rabbitmq::connect().await else {
        return;
    };
    let Some(backend) = Backend::new(kind).await else {
        return;
    };
    let queue = Queue::new();
    let broker = queue.broker(&rabbitmq::url()).await;
    let store = TrackerStore::from_arc(Arc::clone(&backend.store));
    let ids: Vec<String> = (0..3).map(|i| unique(&format!("kill{i}"))).collect();
    write(store.clone(), ids.clone(), 10, Duration::ZERO).await;

    let dying = Arc::new(DiesAfterPublish {
        inner: Arc::clone(&broker),
        calls: AtomicUsize::new(0),
        stall_at: 3,
        stalled: Mutex::default(),
        died: tokio::sync::Notify::new(),
    });
    let first = Relay::new(Arc::clone(&backend.store), dying.clone())
        .expect("a relay")
        .with_options(quick("relay-dies"));
    let running = tokio::spawn(async move { first.run(std::future::pending()).await });
    tokio::time::timeout(Duration::from_secs(30), dying.died.notified())
        .await
        .expect("the third batch was published");
    running.abort();
    let stalled = dying.stalled.lock().expect("lock").clone();
    assert!(!stalled.is_empty(), "the batch the relay died after");

    // Another relay takes over; the dead one's lease on that conversation runs out first.
    let second = Relay::new(Arc::clone(&backend.store), broker)
        .expect("a relay")
        .with_options(quick("relay-takes-over"));
    let running = Running::start(second);
    drained(&backend.store).await;
    running.stop().await;

    let received = rabbitmq::drain(&server, &queue.queue, 3 * 20, Duration::from_secs(20)).await;
    let outcome = check_delivery(&store, &ids, received).await;
    assert_eq!(
        outcome.duplicates, stalled,
        "the repeats are exactly the batch published before the relay died"
    );
    queue.remove(&server).await;
    backend.remove().await;
}

per_backend!(killed_relay:
    a_relay_killed_before_its_checkpoint_repeats_only_that_batch_sqlite => Sqlite,
    a_relay_killed_before_its_checkpoint_repeats_only_that_batch_postgres => Postgres,
    a_relay_killed_before_its_checkpoint_repeats_only_that_batch_redis => Redis,
);
// -------------------------------------------------------------------------------------------
// The broker refusing messages.

async fn refused(kind: Kind) {
    let Some(server) = rabbitmq::connect().await else {
        return;
    };
    let Some(backend) = Backend::new(kind).await else {
        return;
    };
    let queue = Queue::new();
    let broker = queue.broker(&rabbitmq::url()).await;
    let policy = unique("relay_refuse");
    rabbitmq::ctl(&[
        "set_policy",
        "--apply-to",
        "queues",
        &policy,
        &format!("^{}$", queue.queue),
        r#"{"max-length":3,"overflow":"reject-publish"}"#,
    ]);
    let store = TrackerStore::from_arc(Arc::clone(&backend.store));
    let ids: Vec<String> = (0..3).map(|i| unique(&format!("refuse{i}"))).collect();
    write(store.clone(), ids.clone(), 4, Duration::ZERO).await;

    let relay = Relay::new(Arc::clone(&backend.store), broker)
        .expect("a relay")
        .with_options(quick("relay-refused"));
    let stats = relay.stats();
    let running = Running::start(relay);
    // The queue fills up and the broker refuses the rest; the relay keeps trying.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.failed_batches() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker refused nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The consumer catches up a few times, then the limit goes.
    let mut received = Vec::new();
    for _ in 0..3 {
        received.extend(rabbitmq::drain(&server, &queue.queue, 3, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rabbitmq::ctl(&["clear_policy", &policy]);
    drained(&backend.store).await;
    running.stop().await;
    received.extend(rabbitmq::drain(&server, &queue.queue, 0, Duration::from_secs(2)).await);
    let outcome = check_delivery(&store, &ids, received).await;
    assert!(
        outcome.duplicates.is_empty(),
        "a refused message is published again, an accepted one is not: repeats {:?}",
        outcome.duplicates
    );
    queue.remove(&server).await;
    backend.remove().await;
}

per_backend!(refused:
    refused_messages_are_published_again_sqlite => Sqlite,
    refused_messages_are_published_again_postgres => Postgres,
    refused_messages_are_published_again_redis => Redis,
);
