#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod adopt;
mod batch;
mod buckets;
mod config;
mod error;
mod migrate;
mod outbox;
pub mod rasa;
mod registration;
pub mod schema;
mod store;

pub use config::{
    DEFAULT_AUTH_SOURCE, DEFAULT_BUCKET_BYTES, DEFAULT_BUCKET_EVENTS, DEFAULT_COLLECTION,
    DEFAULT_DB, DEFAULT_URL, MAX_BUCKET_EVENTS, MongoConfig,
};
pub use rasa::MongoRasaSource;
pub use registration::REGISTRATION;
pub use store::MongoStore;

pub use mongodb;
pub use tracker_core;
