//! Store constructors shared by the integration tests.

#![allow(dead_code)]

pub mod batch;
pub mod outbox;
pub mod rasa;
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

/// A path for a new SQLite file in this test process's directory under the system's
/// temporary directory. The stores stay open until the process exits, so the files cannot be
/// removed by the test that made them: the first call removes the directories of earlier
/// test processes that have exited instead.
pub fn temp_sqlite_path() -> String {
    static DIR: std::sync::LazyLock<std::path::PathBuf> = std::sync::LazyLock::new(|| {
        const PREFIX: &str = "tracker-sql-tests-";
        let temp = std::env::temp_dir();
        for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|name| name.strip_prefix(PREFIX));
            if let Some(pid) = pid.and_then(|pid| pid.parse::<u32>().ok())
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = temp.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the SQLite test directory");
        dir
    });
    let name = format!("{}.db", uuid::Uuid::new_v4().simple());
    DIR.join(name).display().to_string()
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

/// `url` with its database replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}
