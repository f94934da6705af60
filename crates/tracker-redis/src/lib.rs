#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod adopt;
mod append;
mod config;
mod connection;
mod delete;
mod error;
mod index;
mod nodes;
mod outbox;
mod rasa;
mod read;
mod registration;
mod schema;
mod scripts;
mod store;
mod tls;

pub use adopt::parse_rasa_record;
pub use config::RedisConfig;
pub use rasa::RedisRasaSource;
pub use registration::REGISTRATION;
pub use schema::{KeyLayout, hash_tag};
pub use store::{MAX_EVENT_BYTES, RedisStore};

/// The Redis client this crate is built on, so callers can build clients and pools of the
/// matching version for [`RedisStore::from_client`] and [`RedisStore::from_pool`].
pub use fred;
pub use tracker_core;
