#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod broker_entry;
mod broker_registry;
mod builtins;
mod endpoints;
mod event_broker;
mod migrate;
mod registry;

pub use endpoints::{ENDPOINT_KEYS, PYTHON_STORE_CLASS, PYTHON_STORE_KEYS, StoreConfig};
pub use event_broker::EventBrokerConfig;
pub use migrate::{SETUP_ONLY_KEYS, SETUP_SWITCHES};
pub use registry::{Registry, builtin_broker_features, builtin_features};

pub use tracker_core::*;

/// The event brokers (RabbitMQ, Kafka, SQL, file), as this build's `broker-*` features
/// enable them.
#[cfg(any(
    feature = "broker-rabbitmq",
    feature = "broker-kafka",
    feature = "broker-sql",
    feature = "broker-file"
))]
pub use tracker_broker as brokers;
/// The DynamoDB store.
#[cfg(feature = "dynamo")]
pub use tracker_dynamo as dynamo;
/// The in-memory store.
#[cfg(feature = "memory")]
pub use tracker_memory as memory;
/// The MongoDB store.
#[cfg(feature = "mongo")]
pub use tracker_mongo as mongo;
/// The Redis store.
#[cfg(feature = "redis")]
pub use tracker_redis as redis;
/// The SQL store (PostgreSQL, MySQL/MariaDB, SQLite).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use tracker_sql as sql;

/// Builds the tracker store an `endpoints.yml` configures, with the built-in store types
/// (Rasa's `TrackerStore.create`, without its fallback to memory), publishing to the event
/// broker of its `event_broker:` section if it has one (Rasa's `EventBroker.create`, without
/// its silent "no broker"): see [`Registry::open_endpoints_file`].
///
/// # Errors
/// [`Error::Config`] for an unreadable file, an invalid section, an unknown store or broker
/// type, or a broker type whose `broker-*` feature is off; whatever the store's constructor
/// returns; [`Error::Unavailable`] when the broker cannot be reached.
pub async fn from_endpoints_file(path: impl AsRef<std::path::Path>) -> Result<TrackerStore> {
    Registry::with_builtins().open_endpoints_file(path).await
}
