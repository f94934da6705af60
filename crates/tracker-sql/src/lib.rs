#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod append;
mod config;
mod delete;
mod error;
#[cfg(feature = "postgres")]
mod explain;
mod migrate;
mod outbox;
mod pool;
mod rasa;
mod registration;
pub mod schema;
mod store;
mod target;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod tls;
mod unmigrated;
mod url;

pub use config::{
    DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, DEFAULT_QUERY_TIMEOUT,
    DEFAULT_SERVER_POOL_SIZE, Dialect, SqlConfig,
};
#[cfg(feature = "mysql")]
pub use pool::MysqlPool;
#[cfg(feature = "postgres")]
pub use pool::PgPool;
pub use pool::SqlClient;
#[cfg(feature = "sqlite")]
pub use pool::{SqliteConnection, SqlitePool};
pub use rasa::SqlRasaSource;
pub use registration::{REGISTRATION, config_from_section};
pub use store::SqlStore;

pub use diesel;
pub use diesel_async;
pub use tracker_core;
