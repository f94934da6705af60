#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
pub mod error;
pub mod rasa;
pub mod schema;
mod store;

pub use config::{
    DEFAULT_AUTH_SOURCE, DEFAULT_BUCKET_BYTES, DEFAULT_BUCKET_EVENTS, DEFAULT_COLLECTION,
    DEFAULT_DB, DEFAULT_URL, MAX_BUCKET_EVENTS, MongoConfig,
};
pub use store::MongoStore;

pub use mongodb;
pub use tracker_core;
