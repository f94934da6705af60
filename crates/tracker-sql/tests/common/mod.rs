//! Store constructors shared by the integration tests.

#![allow(dead_code)]

pub mod servers;

use tracker_sql::{SqlConfig, SqlStore};
use tracker_testkit::{Service, service_url};

/// A store on the test PostgreSQL server, or `None` (after a loud skip) without one.
pub async fn postgres() -> Option<SqlStore> {
    let url = service_url(Service::Postgres).await?;
    Some(connect(&url.url).await)
}

/// A store on the test MySQL / MariaDB server, or `None` (after a loud skip) without one.
pub async fn mysql() -> Option<SqlStore> {
    let url = service_url(Service::Mysql).await?;
    Some(connect(&url.url).await)
}

/// A store on a new SQLite file.
pub async fn sqlite_file() -> Option<SqlStore> {
    Some(
        SqlStore::connect(&SqlConfig::sqlite(temp_sqlite_path()))
            .await
            .expect("open an SQLite file"),
    )
}

/// A store on a new in-memory SQLite database.
pub async fn sqlite_memory() -> Option<SqlStore> {
    Some(
        SqlStore::connect(&SqlConfig::sqlite(":memory:"))
            .await
            .expect("open an in-memory SQLite database"),
    )
}

/// A path for a new SQLite file under the system's temporary directory.
pub fn temp_sqlite_path() -> String {
    let name = format!("tracker-sql-test-{}.db", uuid::Uuid::new_v4().simple());
    std::env::temp_dir().join(name).display().to_string()
}

pub async fn connect(url: &str) -> SqlStore {
    let config = SqlConfig {
        pool_size: Some(40),
        ..SqlConfig::from_url(url)
    };
    SqlStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"))
}
