//! The `event_broker:` section: type selection, Rasa's keys and defaults, errors.

mod common;

use serde_json::json;
use tracker_broker::config::{OneOrMany, SqlDialect};
use tracker_broker::{BrokerConfig, RabbitConfig};
use tracker_core::ErrorKind;

fn parse(value: serde_json::Value) -> tracker_core::Result<BrokerConfig> {
    BrokerConfig::from_section(common::section(value))
}

#[test]
fn types_are_chosen_as_rasa_chooses_them() {
    let rabbit = json!({"url": "localhost", "username": "u", "password": "p"});
    for (section, expected) in [
        (rabbit.clone(), "pika"),
        (
            json!({"type": "pika", "url": "h", "username": "u", "password": "p"}),
            "pika",
        ),
        (
            json!({"type": "Kafka", "url": "h:9092", "security_protocol": "PLAINTEXT"}),
            "kafka",
        ),
        (json!({"type": "SQL"}), "sql"),
        (json!({"type": "file"}), "file"),
    ] {
        let config = parse(section.clone()).unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(config.type_name(), expected, "{section}");
    }
}

#[test]
fn an_unknown_type_is_an_error_naming_it() {
    let error = parse(json!({"type": "carrier_pigeon"})).expect_err("unknown");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("carrier_pigeon"), "{error}");
    let error = parse(json!({"type": "my_package.MyBroker"})).expect_err("class path");
    assert!(error.to_string().contains("my_package.MyBroker"), "{error}");
    assert!(
        error.to_string().contains("custom broker classes"),
        "{error}"
    );
    let error = parse(json!({"type": 3})).expect_err("not a string");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn every_rasa_key_is_accepted_with_expanded_strings() {
    // Every key of Rasa 3.6's brokers, values as `${VAR}` expansion leaves them: strings.
    let config = parse(json!({
        "type": "pika", "url": "rabbit", "port": "5673", "username": "u", "password": "p",
        "queues": ["a", "b"], "exchange_name": "x", "raise_on_failure": "true",
        "should_keep_unpublished_messages": "false", "connection_attempts": "3",
        "retry_delay_in_seconds": "0.5",
    }))
    .expect("pika");
    let BrokerConfig::Rabbit(rabbit) = config else {
        panic!("{config:?}")
    };
    assert_eq!(rabbit.port, 5673);
    assert_eq!(rabbit.queue_names(), ["a", "b"]);
    assert!(rabbit.raise_on_failure && !rabbit.should_keep_unpublished_messages);
    assert_eq!(rabbit.connection_attempts, 3);
    assert_eq!(rabbit.retry_delay().as_millis(), 500);

    let config = parse(json!({
        "type": "kafka", "url": ["k1:9092", "k2:9092"], "topic": "t", "client_id": "c",
        "partition_by_sender": "true", "sasl_username": "u", "sasl_password": "p",
        "sasl_mechanism": "SCRAM-SHA-512", "ssl_cafile": "ca.pem", "ssl_certfile": "c.pem",
        "ssl_keyfile": "k.pem", "ssl_check_hostname": "false", "security_protocol": "sasl_ssl",
        "queue_size": "100",
    }))
    .expect("kafka");
    let BrokerConfig::Kafka(kafka) = config else {
        panic!("{config:?}")
    };
    assert_eq!(kafka.bootstrap_servers(), ["k1:9092", "k2:9092"]);
    assert!(kafka.partition_by_sender);
    assert!(kafka.protocol().expect("protocol").tls());

    let config = parse(json!({
        "type": "sql", "url": "db:5433", "dialect": "postgresql", "port": "5432",
        "db": "rasa", "username": "u", "password": "p",
    }))
    .expect("sql");
    let BrokerConfig::Sql(sql) = config else {
        panic!("{config:?}")
    };
    assert_eq!(sql.dialect().expect("dialect"), SqlDialect::Postgres);

    let config = parse(json!({"type": "file", "path": "events.log"})).expect("file");
    assert_eq!(
        config,
        BrokerConfig::File(tracker_broker::FileConfig::new("events.log"))
    );
}

#[test]
fn defaults_are_rasas() {
    let BrokerConfig::Kafka(kafka) = parse(json!({
        "type": "kafka", "url": "k:9092", "sasl_username": "u", "sasl_password": "p",
    }))
    .expect("kafka") else {
        panic!("not kafka")
    };
    assert_eq!(kafka.topic, "rasa_core_events");
    assert!(!kafka.partition_by_sender);
    assert_eq!(kafka.security_protocol, "SASL_PLAINTEXT");
    assert_eq!(kafka.sasl_mechanism, "PLAIN");

    let BrokerConfig::Sql(sql) = parse(json!({"type": "sql"})).expect("sql") else {
        panic!("not sql")
    };
    assert_eq!(
        (sql.dialect.as_str(), sql.db.as_str()),
        ("sqlite", "events.db")
    );
    assert_eq!(sql.table, "events");

    let BrokerConfig::File(file) = parse(json!({"type": "file"})).expect("file") else {
        panic!("not file")
    };
    assert_eq!(file.path, "rasa_event.log");

    let rabbit = RabbitConfig::new("h", "u", "p");
    assert_eq!(rabbit.queue_names(), ["rasa_core_events"]);
    assert_eq!(rabbit.exchange_name, "rasa-exchange");
    // A single string is one queue, as in Rasa.
    let BrokerConfig::Rabbit(rabbit) = parse(json!({
        "url": "h", "username": "u", "password": "p", "queues": "only",
    }))
    .expect("pika") else {
        panic!("not pika")
    };
    assert_eq!(rabbit.queues, Some(OneOrMany::One("only".into())));
    assert_eq!(rabbit.queue_names(), ["only"]);
}

#[test]
fn invalid_sections_are_errors_naming_the_problem() {
    for (section, needle) in [
        (
            json!({"url": "h", "username": "u", "password": "p", "queue": "old"}),
            "queue",
        ),
        (json!({"url": "h"}), "username"),
        (json!({"username": "u", "password": "p"}), "url"),
        (
            json!({"url": "h", "username": "u", "password": "p", "port": "five"}),
            "port",
        ),
        (json!({"type": "kafka", "url": "k:9092"}), "sasl_username"),
        (json!({"type": "kafka"}), "url"),
        (
            json!({"type": "kafka", "url": "k", "security_protocol": "TLS"}),
            "TLS",
        ),
        (
            json!({"type": "kafka", "url": "k", "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"}),
            "GSSAPI",
        ),
        (
            json!({"type": "kafka", "url": "k", "security_protocol": "SSL", "ssl_certfile": "c"}),
            "ssl_keyfile",
        ),
        (json!({"type": "sql", "dialect": "oracle"}), "oracle"),
        (json!({"type": "file", "path": "x", "mode": "a"}), "mode"),
    ] {
        let error = parse(section.clone()).expect_err(&section.to_string());
        assert_eq!(error.kind(), ErrorKind::Config, "{section}: {error}");
        assert!(error.to_string().contains(needle), "{section}: {error}");
    }
}

#[test]
fn passwords_stay_out_of_errors() {
    let error = parse(json!({"type": "kafka", "url": "k", "sasl_password": "hunter2", "port": 1}))
        .expect_err("unknown key");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_is_an_error_at_start_up() {
    let error = tracker_broker::connect(common::section(json!({
        "type": "file", "path": "/nonexistent-directory/rasa_event.log",
    })))
    .await
    .expect_err("no such directory");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}

#[cfg(feature = "kafka")]
#[tokio::test]
async fn an_unreachable_kafka_is_an_error_at_start_up() {
    let mut config = tracker_broker::KafkaConfig::plaintext("127.0.0.1:1");
    config.publish_timeout_in_seconds = 1.0;
    let error = tracker_broker::connect_config(&BrokerConfig::Kafka(config))
        .await
        .expect_err("nothing on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}
