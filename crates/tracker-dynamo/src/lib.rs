#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod error;
pub mod rasa;
pub mod schema;
mod store;

pub use config::{DEFAULT_REGION, DEFAULT_TABLE_NAME, DynamoConfig};
pub use store::DynamoStore;

pub use aws_config;
pub use aws_sdk_dynamodb;
pub use tracker_core;
