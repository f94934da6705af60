#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod builtins;
mod endpoints;
mod migrate;
mod registry;

pub use endpoints::{ENDPOINT_KEYS, PYTHON_STORE_CLASS, PYTHON_STORE_KEYS, StoreConfig};
pub use migrate::{SETUP_ONLY_KEYS, SETUP_SWITCHES};
pub use registry::{Registry, builtin_features};

pub use tracker_core::*;

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
/// (Rasa's `TrackerStore.create`, without its fallback to memory).
///
/// # Errors
/// [`Error::Config`] for an unreadable file, an invalid section or an unknown store type, and
/// whatever the store's constructor returns.
pub async fn from_endpoints_file(path: impl AsRef<std::path::Path>) -> Result<TrackerStore> {
    let config = StoreConfig::from_endpoints_file(path)?;
    let store = Registry::with_builtins().build(&config).await?;
    Ok(TrackerStore::from_arc(store))
}
