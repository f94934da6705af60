#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod store;

pub use config::MemoryConfig;
pub use store::MemoryStore;
pub use tracker_core;
