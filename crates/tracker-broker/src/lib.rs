#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod body;
pub mod config;
mod file;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
pub mod registration;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;

use std::sync::Arc;

use tracker_core::{Error, EventBroker, JsonMap, Result};

pub use body::{RASA_ENVIRONMENT, body_text};
pub use config::{BROKER_TYPES, BrokerConfig, FileConfig, KafkaConfig, RabbitConfig, SqlConfig};
pub use file::FileBroker;
#[cfg(feature = "kafka")]
pub use kafka::KafkaBroker;
/// The AMQP client the RabbitMQ broker uses, for consumers built against the same version.
#[cfg(feature = "rabbitmq")]
pub use lapin;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::RabbitBroker;
pub use registration::REGISTRATIONS;
/// The Kafka client the Kafka broker uses, for consumers built against the same version.
#[cfg(feature = "kafka")]
pub use rskafka;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use sql::SqlBroker;

/// The name of the AMQP header and Kafka header carrying a message's conversation.
pub const SENDER_ID_HEADER: &str = "sender_id";
/// The name of the AMQP header and Kafka header carrying a message's sequence number (the
/// conversation's version after the event).
pub const SEQ_HEADER: &str = "seq";

/// Builds and connects the broker an `event_broker:` section describes (its keys, `type`
/// included, `${VAR}` already expanded).
///
/// # Errors
/// [`Error::Config`] for an invalid section (an unknown type is named) or a broker this
/// build leaves out; [`Error::Unavailable`] when the broker cannot be reached at start-up.
/// There is never a silent "no broker".
pub async fn connect(section: JsonMap) -> Result<Arc<dyn EventBroker>> {
    connect_config(&BrokerConfig::from_section(section)?).await
}

/// Builds and connects the broker of a parsed configuration.
///
/// # Errors
/// As [`connect`].
pub async fn connect_config(config: &BrokerConfig) -> Result<Arc<dyn EventBroker>> {
    match config {
        BrokerConfig::File(file) => Ok(Arc::new(FileBroker::open(file).await?)),
        #[cfg(feature = "rabbitmq")]
        BrokerConfig::Rabbit(rabbit) => Ok(Arc::new(RabbitBroker::connect(rabbit).await?)),
        #[cfg(feature = "kafka")]
        BrokerConfig::Kafka(kafka) => Ok(Arc::new(KafkaBroker::connect(kafka).await?)),
        #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
        BrokerConfig::Sql(sql) => Ok(Arc::new(SqlBroker::connect(sql).await?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::config(format!(
            "the `{}` event broker is not part of this build (enable its cargo feature of \
             tracker-broker)",
            other.type_name()
        ))),
    }
}
