#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod append;
mod batch;
mod config;
mod delete;
mod error;
mod items;
mod list;
mod migrate;
mod outbox;
pub mod rasa;
mod registration;
pub mod schema;
mod store;
mod transact;
mod writes;

pub use config::{DEFAULT_REGION, DEFAULT_TABLE_NAME, DynamoConfig, RASA_DEFAULT_TABLE_NAME};
pub use migrate::Tables;
pub use rasa::DynamoRasaSource;
pub use registration::REGISTRATION;
pub use store::DynamoStore;

pub use aws_config;
pub use aws_sdk_dynamodb;
pub use tracker_core;
