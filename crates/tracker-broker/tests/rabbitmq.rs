//! The RabbitMQ broker against a real RabbitMQ (`TRACKER_TEST_RABBITMQ_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Every test declares its own exchange and queues
//! and deletes them at the end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::Connection;
use serde_json::json;
use tracker_core::{BrokerMessage, Event};
use tracker_testkit::rabbitmq::{self, Proxy};

/// This test's exchange and queues.
struct Names {
    exchange: String,
    queues: Vec<String>,
}

impl Names {
    fn new(queues: usize) -> Self {
        Self {
            exchange: common::unique("tb_exchange"),
            queues: (0..queues).map(|_| common::unique("tb_queue")).collect(),
        }
    }

    fn section(&self, url: &str, extra: serde_json::Value) -> tracker_core::JsonMap {
        let mut section = common::section(json!({
            "type": "pika",
            "url": url,
            "username": "guest",
            "password": "guest",
            "exchange_name": self.exchange,
            "queues": self.queues,
        }));
        section.extend(common::section(extra));
        section
    }

    async fn delete(&self, connection: &Connection) {
        rabbitmq::delete(connection, &self.exchange, &self.queues).await;
    }
}

#[tokio::test]
async fn publishes_rasas_bodies_to_every_queue() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let names = Names::new(2);
    let broker = tracker_broker::connect(names.section(&rabbitmq::url(), json!({})))
        .await
        .expect("connects");
    let goldens = common::golden();
    let messages: Vec<BrokerMessage> = goldens.iter().map(|g| g.message.clone()).collect();
    for batch in messages.chunks(7) {
        broker.publish(batch).await.expect("publish confirmed");
    }
    for queue in &names.queues {
        let received = rabbitmq::take(&connection, queue, goldens.len()).await;
        for (golden, message) in goldens.iter().zip(&received) {
            assert_eq!(message.body, golden.body, "{}: body", golden.what);
            assert_eq!(
                message.key(),
                (golden.message.sender_id.clone(), golden.message.seq),
                "{}: headers",
                golden.what
            );
            assert_eq!(*message.properties.delivery_mode(), Some(2), "persistent");
            if std::env::var("RASA_ENVIRONMENT").is_err() {
                assert_eq!(
                    *message.properties.app_id(),
                    None,
                    "no app_id without RASA_ENVIRONMENT"
                );
            }
        }
    }
    names.delete(&connection).await;
}

/// Run by `app_id_is_rasa_environment` in a child process with `RASA_ENVIRONMENT` set.
#[tokio::test]
#[ignore = "run by app_id_is_rasa_environment with RASA_ENVIRONMENT set"]
async fn app_id_child() {
    let environment = std::env::var("RASA_ENVIRONMENT").expect("run with RASA_ENVIRONMENT set");
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let names = Names::new(1);
    let broker = tracker_broker::connect(names.section(&rabbitmq::url(), json!({})))
        .await
        .expect("connects");
    let message = BrokerMessage::new("app-id", 1, &Event::action("action_listen").at(1.0));
    broker.publish(&[message]).await.expect("published");
    let received = rabbitmq::take(&connection, &names.queues[0], 1).await;
    assert_eq!(
        received[0]
            .properties
            .app_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some(environment.as_str())
    );
    names.delete(&connection).await;
}

#[tokio::test]
async fn app_id_is_rasa_environment() {
    if rabbitmq::connect().await.is_none() {
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "app_id_child", "--ignored", "--nocapture"])
        .env("RASA_ENVIRONMENT", "staging-\u{fc}")
        .output()
        .expect("runs the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `count` messages over three conversations, numbered per conversation.
fn stream(count: usize) -> Vec<BrokerMessage> {
    let goldens = common::golden_messages();
    let mut seqs = [0u64; 3];
    (0..count)
        .map(|index| {
            let conversation = index % 3;
            seqs[conversation] += 1;
            let mut message = goldens[index % goldens.len()].clone();
            let sender = format!("fault-{conversation}");
            message.sender_id.clone_from(&sender);
            message.body["sender_id"] = json!(sender);
            message.seq = seqs[conversation];
            message
        })
        .collect()
}

/// Checks that `received`, once repeats are dropped, is `messages` in order, body for body.
fn arrived_in_order(messages: &[BrokerMessage], received: Vec<rabbitmq::Received>) {
    let unique = rabbitmq::deduplicate(received).unique;
    assert_eq!(unique.len(), messages.len(), "every message arrived");
    for (sent, got) in messages.iter().zip(&unique) {
        assert_eq!(
            got.body,
            tracker_broker::body_text(sent).expect("body"),
            "order and body of {}#{}",
            sent.sender_id,
            sent.seq
        );
    }
}

#[tokio::test]
async fn every_message_arrives_in_order_across_a_dropped_connection() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let proxy = Proxy::start(rabbitmq::address()).await;
    let names = Names::new(1);
    let broker = tracker_broker::connect(names.section(
        &proxy.amqp_url(),
        json!({"retry_delay_in_seconds": 0.1, "publish_timeout_in_seconds": 30}),
    ))
    .await
    .expect("connects through the proxy");
    let messages = stream(300);
    let progress = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let broker = broker.clone();
        let messages = messages.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            for batch in messages.chunks(2) {
                broker
                    .publish(batch)
                    .await
                    .expect("every publish is confirmed");
                progress.fetch_add(batch.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    while progress.load(Ordering::SeqCst) < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during_outage = progress.load(Ordering::SeqCst);
    assert!(during_outage < messages.len(), "the outage hit mid-stream");
    proxy.restore().await;
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("publishing finishes after the restore")
        .expect("publisher task");

    // A confirmation lost with the connection means a second copy; there can be at most a
    // window's worth of them.
    let channel = connection.create_channel().await.expect("channel");
    let queued = channel
        .queue_declare(
            names.queues[0].as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("queue")
        .message_count() as usize;
    assert!(queued >= messages.len(), "{queued} queued");
    let received = rabbitmq::take(&connection, &names.queues[0], queued).await;
    arrived_in_order(&messages, received);
    proxy.kill();
    names.delete(&connection).await;
}

/// A queue limited to 3 messages that refuses more (`overflow: reject-publish`), drained by a
/// consumer while the broker publishes: every refused message is published again, and every
/// conversation's messages arrive in order once repeats are dropped.
#[tokio::test]
async fn refused_messages_arrive_in_order_while_the_queue_drains() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let names = Names::new(1);
    let queue = names.queues[0].clone();
    let policy = common::unique("tb_refuse");
    rabbitmq::ctl(&[
        "set_policy",
        "--apply-to",
        "queues",
        &policy,
        &format!("^{queue}$"),
        r#"{"max-length":3,"overflow":"reject-publish"}"#,
    ]);
    let broker = tracker_broker::connect(names.section(
        &rabbitmq::url(),
        json!({"retry_delay_in_seconds": 0.01, "publish_timeout_in_seconds": 60}),
    ))
    .await
    .expect("connects");
    let messages = stream(150);
    let publisher = {
        let broker = broker.clone();
        let messages = messages.clone();
        tokio::spawn(async move {
            for batch in messages.chunks(25) {
                broker.publish(batch).await.expect("published in the end");
            }
        })
    };
    // The queue fills up and RabbitMQ refuses the rest; then a consumer drains it as fast as
    // it can while the broker keeps publishing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumer = connection.create_channel().await.expect("channel");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !publisher.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        received.extend(rabbitmq::waiting(&consumer, &queue).await);
    }
    publisher.await.expect("publisher task");
    received.extend(rabbitmq::drain(&connection, &queue, 0, Duration::from_millis(200)).await);
    rabbitmq::ctl(&["clear_policy", &policy]);
    arrived_in_order(&messages, received);
    names.delete(&connection).await;
}

#[tokio::test]
async fn kept_messages_go_out_first_after_a_long_outage() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let proxy = Proxy::start(rabbitmq::address()).await;
    let names = Names::new(1);
    let broker = tracker_broker::connect(names.section(
        &proxy.amqp_url(),
        json!({"retry_delay_in_seconds": "0.1", "publish_timeout_in_seconds": "0.5"}),
    ))
    .await
    .expect("connects through the proxy");
    let messages = stream(8);
    broker
        .publish(&messages[0..2])
        .await
        .expect("before the outage");
    proxy.kill();
    for batch in messages[2..6].chunks(2) {
        let error = broker
            .publish(batch)
            .await
            .expect_err("not confirmed while RabbitMQ is unreachable");
        assert_eq!(
            error.kind(),
            tracker_core::ErrorKind::Unavailable,
            "{error}"
        );
    }
    proxy.restore().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker
        .publish(&messages[6..8])
        .await
        .expect("after the outage, behind the kept messages");
    let received =
        rabbitmq::deduplicate(rabbitmq::take(&connection, &names.queues[0], 8).await).unique;
    let bodies: Vec<String> = received.into_iter().map(|m| m.body).collect();
    let expected: Vec<String> = messages
        .iter()
        .map(|m| tracker_broker::body_text(m).expect("body"))
        .collect();
    assert_eq!(bodies, expected);
    proxy.kill();
    names.delete(&connection).await;
}

#[tokio::test]
async fn without_keeping_failed_messages_are_dropped() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let proxy = Proxy::start(rabbitmq::address()).await;
    let names = Names::new(1);
    let broker = tracker_broker::connect(names.section(
        &proxy.amqp_url(),
        json!({
            "should_keep_unpublished_messages": false,
            "retry_delay_in_seconds": 0.1,
            "publish_timeout_in_seconds": 2,
        }),
    ))
    .await
    .expect("connects through the proxy");
    let messages = stream(3);
    proxy.kill();
    broker
        .publish(&messages[0..1])
        .await
        .expect_err("RabbitMQ unreachable");
    proxy.restore().await;
    broker.publish(&messages[1..3]).await.expect("reconnected");
    let bodies: Vec<String> = rabbitmq::take(&connection, &names.queues[0], 2)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    let expected: Vec<String> = messages[1..3]
        .iter()
        .map(|m| tracker_broker::body_text(m).expect("body"))
        .collect();
    assert_eq!(bodies, expected);
    proxy.kill();
    names.delete(&connection).await;
}

#[tokio::test]
async fn a_broker_that_cannot_connect_at_start_up_is_an_error() {
    let names = Names::new(1);
    // Nothing listens on port 1.
    let error = tracker_broker::connect(names.section(
        "127.0.0.1",
        json!({"port": "1", "connection_attempts": 2, "retry_delay_in_seconds": 0.05}),
    ))
    .await
    .expect_err("no RabbitMQ on port 1");
    assert_eq!(
        error.kind(),
        tracker_core::ErrorKind::Unavailable,
        "{error}"
    );
    assert!(error.to_string().contains("2 attempts"), "{error}");
}
