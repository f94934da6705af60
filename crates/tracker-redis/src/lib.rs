#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
pub mod error;
mod keys;
mod nodes;
pub mod rasa;
mod scripts;
mod store;
mod tls;

pub use config::{RedisConfig, RedisOptions};
pub use keys::{KeyLayout, hash_tag};
pub use rasa::RasaConversation;
pub use store::{MAX_EVENT_BYTES, RedisStore};

/// The Redis client this crate is built on, so callers can build clients and pools of the
/// matching version for [`RedisStore::from_client`] and [`RedisStore::from_pool`].
pub use fred;
pub use tracker_core;
