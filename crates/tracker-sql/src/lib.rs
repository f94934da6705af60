#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod error;
#[cfg(feature = "postgres")]
mod explain;
mod migrate;
#[cfg(feature = "mysql")]
mod mysql_tls;
mod rasa;
pub mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
#[cfg(feature = "postgres")]
mod tls;
mod url;

pub use config::{
    DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, DEFAULT_QUERY_TIMEOUT, Dialect,
    SqlConfig,
};
#[cfg(feature = "mysql")]
pub use store::MysqlPool;
#[cfg(feature = "postgres")]
pub use store::PgPool;
pub use store::SqlStore;
#[cfg(feature = "sqlite")]
pub use store::{SqliteConnection, SqlitePool};

pub use diesel;
pub use diesel_async;
pub use tracker_core;
