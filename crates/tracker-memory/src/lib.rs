#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod outbox;
mod registration;
mod store;

pub use config::MemoryConfig;
pub use registration::REGISTRATION;
pub use store::MemoryStore;
pub use tracker_core;
