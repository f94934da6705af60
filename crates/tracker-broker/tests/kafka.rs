//! The Kafka broker against a Kafka-protocol server at `TRACKER_TEST_KAFKA_URL` (default
//! `127.0.0.1:9092`). No Apache Kafka installs from the package registries this project
//! uses, so CI runs these against a stand-in started by `.ci/kafka-server.sh` (see
//! `docs/brokers.md` for what it covers). Every test uses its own topic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde_json::json;
use tracker_core::BrokerMessage;

fn kafka_url() -> String {
    std::env::var("TRACKER_TEST_KAFKA_URL").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A client for setting up topics and reading them back, or `None` after saying so.
async fn server(test: &str) -> Option<Client> {
    let url = kafka_url();
    if !common::listening(&url).await {
        common::not_run(
            test,
            &format!("no Kafka-protocol server at {url} (start one with .ci/kafka-server.sh)"),
        );
        return None;
    }
    let client = tokio::time::timeout(
        Duration::from_secs(20),
        ClientBuilder::new(vec![url.clone()]).build(),
    )
    .await
    .expect("the test server answers in time")
    .expect("the test server speaks Kafka");
    Some(client)
}

/// Creates a topic of `partitions` partitions named uniquely for this test.
async fn topic(client: &Client, partitions: i32) -> String {
    let name = common::unique("tb_topic");
    client
        .controller_client()
        .expect("controller")
        .create_topic(name.as_str(), partitions, 1, 5_000)
        .await
        .expect("topic created");
    name
}

/// Every record of every partition of `topic`, by partition, in offset order.
async fn records(client: &Client, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Record>> {
    let mut all = BTreeMap::new();
    for partition in 0..partitions {
        let partition_client = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .expect("partition");
        let mut offset = 0;
        let mut records = Vec::new();
        loop {
            let (batch, high_watermark) = partition_client
                .fetch_records(offset, 1..1_000_000, 1_000)
                .await
                .expect("fetch");
            for record in batch {
                offset = record.offset + 1;
                records.push(record.record);
            }
            if offset >= high_watermark {
                break;
            }
        }
        all.insert(partition, records);
    }
    all
}

fn header<'a>(record: &'a Record, name: &str) -> &'a str {
    std::str::from_utf8(
        record
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name}")),
    )
    .expect("UTF-8 header")
}

/// Publishes the golden messages and checks every record: Rasa's value byte for byte, the
/// key, the headers, one partition per conversation, in order.
async fn publishes_rasas_records(test: &str, partition_by_sender: bool) {
    let Some(client) = server(test).await else {
        return;
    };
    let partitions = 3;
    let topic = topic(&client, partitions).await;
    let broker = tracker_broker::connect(common::section(json!({
        "type": "kafka",
        "url": kafka_url(),
        "topic": topic,
        "security_protocol": "PLAINTEXT",
        "partition_by_sender": partition_by_sender,
        "client_id": "tracker-broker-test",
    })))
    .await
    .expect("connects");
    let goldens = common::golden();
    let messages: Vec<BrokerMessage> = goldens.iter().map(|g| g.message.clone()).collect();
    for batch in messages.chunks(8) {
        broker.publish(batch).await.expect("acknowledged");
    }
    let stored = records(&client, &topic, partitions).await;
    assert_eq!(
        stored.values().map(Vec::len).sum::<usize>(),
        goldens.len(),
        "every message once"
    );
    for (partition, records) in &stored {
        let mut expected = goldens
            .iter()
            .filter(|g| i64::from(crc32(&g.message.sender_id) % 3) == i64::from(*partition));
        for record in records {
            let golden = expected.next().expect("no extra record in the partition");
            let value =
                std::str::from_utf8(record.value.as_deref().expect("value")).expect("UTF-8 value");
            assert_eq!(value, golden.body, "{}", golden.what);
            let key = record
                .key
                .as_deref()
                .map(|k| std::str::from_utf8(k).expect("UTF-8"));
            if partition_by_sender {
                assert_eq!(
                    key,
                    Some(golden.message.sender_id.as_str()),
                    "{}",
                    golden.what
                );
            } else {
                assert_eq!(
                    key, None,
                    "{}: no key without partition_by_sender",
                    golden.what
                );
            }
            if std::env::var("RASA_ENVIRONMENT").is_err() {
                assert_eq!(
                    header(record, "RASA_ENVIRONMENT"),
                    "RASA_ENVIRONMENT_NOT_SET"
                );
            }
            assert_eq!(header(record, "sender_id"), golden.message.sender_id);
            assert_eq!(header(record, "seq"), golden.message.seq.to_string());
        }
        assert!(
            expected.next().is_none(),
            "partition {partition} misses records"
        );
    }
}

/// zlib's CRC-32, bit by bit (independent of the crate's implementation).
fn crc32(text: &str) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in text.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn publishes_rasas_records_keyed_by_sender() {
    publishes_rasas_records("publishes_rasas_records_keyed_by_sender", true).await;
}

#[tokio::test]
async fn publishes_rasas_records_without_key() {
    publishes_rasas_records("publishes_rasas_records_without_key", false).await;
}

#[tokio::test]
async fn a_missing_topic_is_created_on_use_or_named_in_the_error() {
    let Some(client) = server("a_missing_topic_is_created_on_use_or_named_in_the_error").await
    else {
        return;
    };
    let topic = common::unique("tb_missing");
    let result = tracker_broker::connect(common::section(json!({
        "type": "kafka", "url": kafka_url(), "topic": topic, "security_protocol": "PLAINTEXT",
        "publish_timeout_in_seconds": 3,
    })))
    .await;
    match result {
        Ok(broker) => {
            // The server creates topics on use, as Kafka does by default.
            let message = common::golden_messages().remove(0);
            broker.publish(&[message]).await.expect("acknowledged");
            let topics = client.list_topics().await.expect("topics");
            assert!(topics.iter().any(|t| t.name == topic));
        }
        Err(error) => {
            assert_eq!(
                error.kind(),
                tracker_core::ErrorKind::Unavailable,
                "{error}"
            );
            assert!(error.to_string().contains(&topic), "{error}");
        }
    }
}
