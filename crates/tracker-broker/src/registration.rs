//! The brokers of this crate as a registry sees them: their type names in `endpoints.yml`,
//! the keys each reads, and their factories.

use serde_json::Value;
use tracker_core::JsonMap;
use tracker_core::broker::{BrokerFuture, BrokerRegistration};
use tracker_core::config::field_names;

use crate::config::FileConfig;
#[cfg(feature = "kafka")]
use crate::config::KafkaConfig;
#[cfg(feature = "rabbitmq")]
use crate::config::RabbitConfig;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use crate::config::SqlConfig;

/// RabbitMQ: `type: pika`, or no type (Rasa's default broker).
#[cfg(feature = "rabbitmq")]
pub const RABBITMQ: BrokerRegistration = BrokerRegistration {
    name: "pika",
    aliases: &["pika"],
    default: true,
    keys: || field_names::<RabbitConfig>(),
    connect: |keys| connect_as("pika", keys),
};

/// Kafka: `type: kafka`.
#[cfg(feature = "kafka")]
pub const KAFKA: BrokerRegistration = BrokerRegistration {
    name: "kafka",
    aliases: &["kafka"],
    default: false,
    keys: || field_names::<KafkaConfig>(),
    connect: |keys| connect_as("kafka", keys),
};

/// A table in an SQL database: `type: sql`.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub const SQL: BrokerRegistration = BrokerRegistration {
    name: "sql",
    aliases: &["sql"],
    default: false,
    keys: || field_names::<SqlConfig>(),
    connect: |keys| connect_as("sql", keys),
};

/// A file of JSON lines: `type: file`.
pub const FILE: BrokerRegistration = BrokerRegistration {
    name: "file",
    aliases: &["file"],
    default: false,
    keys: || field_names::<FileConfig>(),
    connect: |keys| connect_as("file", keys),
};

/// The registration of every broker this build's features enable, in a fixed order.
pub const REGISTRATIONS: &[BrokerRegistration] = &[
    #[cfg(feature = "rabbitmq")]
    RABBITMQ,
    #[cfg(feature = "kafka")]
    KAFKA,
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    SQL,
    FILE,
];

/// Connects the broker of type `name` from a section's keys (without `type`).
fn connect_as(name: &'static str, mut keys: JsonMap) -> BrokerFuture {
    keys.insert("type".to_owned(), Value::String(name.to_owned()));
    Box::pin(crate::connect(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(feature = "rabbitmq", feature = "kafka", feature = "sqlite"))]
    fn every_type_is_registered_with_its_keys() {
        let names: Vec<&str> = REGISTRATIONS.iter().map(|r| r.name).collect();
        assert_eq!(names, ["pika", "kafka", "sql", "file"]);
        for registration in REGISTRATIONS {
            assert!(registration.matches(&registration.name.to_ascii_uppercase()));
            assert_eq!(
                registration.default,
                registration.name == "pika",
                "{}",
                registration.name
            );
        }
        assert!((RABBITMQ.keys)().contains(&"should_keep_unpublished_messages"));
        assert!((KAFKA.keys)().contains(&"partition_by_sender"));
        assert!((SQL.keys)().contains(&"dialect"));
        assert_eq!((FILE.keys)(), ["path", "url"]);
    }
}
