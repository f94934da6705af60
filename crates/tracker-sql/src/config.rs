//! Configuration with the keys and defaults of Rasa's `SQLTrackerStore`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tracker_core::redact::{REDACTED, deserialize_password, is_secret_key, redact_url};
use tracker_core::{Error, Result};

/// Pool size on PostgreSQL and MySQL when neither `SQL_POOL_SIZE` nor `SQL_MAX_OVERFLOW` is
/// set: more connections than a server has cores to run them make it slower, not faster
/// (every save waits for its commit; a few busy connections commit as many saves as many
/// idle ones, and callers beyond them wait in the process, in arrival order).
pub const DEFAULT_SERVER_POOL_SIZE: usize = 10;
/// Rasa's `SQL_POOL_SIZE` default: the pool size when only `SQL_MAX_OVERFLOW` is set.
pub const DEFAULT_POOL_SIZE: usize = 50;
/// Rasa's `SQL_MAX_OVERFLOW` default: the extra connections when only `SQL_POOL_SIZE` is set.
pub const DEFAULT_MAX_OVERFLOW: usize = 100;
/// Pool size for an SQLite file: concurrent readers, one writer at a time.
pub const SQLITE_FILE_POOL_SIZE: usize = 8;
/// Default bound on getting a pooled connection: SQLAlchemy's `pool_timeout` default.
pub const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one operation's statements once it has a connection.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The SQL database kinds this store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite (bundled).
    Sqlite,
}

impl Dialect {
    /// Parses a dialect as Rasa (SQLAlchemy) names it: `postgresql`, `postgres`,
    /// `postgresql+psycopg2`, `mysql`, `mysql+pymysql`, `mariadb`, `sqlite`, ... The part after
    /// `+` (the Python driver) is ignored.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for Oracle and other SQLAlchemy dialects diesel cannot speak,
    /// [`Error::Config`] for names that are no dialect.
    pub fn parse(name: &str) -> Result<Self> {
        let base = name
            .split('+')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "postgresql" | "postgres" | "pgsql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            "sqlite" | "sqlite3" => Ok(Self::Sqlite),
            "oracle" | "mssql" | "sqlserver" | "firebird" | "sybase" => Err(Error::unsupported(
                "tracker-sql",
                format!(
                    "the {base:?} dialect (diesel has no {base} backend; use PostgreSQL, MySQL/MariaDB or SQLite)"
                ),
            )),
            _ => Err(Error::config(format!(
                "unknown SQL dialect {name:?}: expected postgresql, mysql or sqlite"
            ))),
        }
    }

    /// The dialect's name as used in URLs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of [`SqlStore`](crate::SqlStore): the keys of Rasa's `SQLTrackerStore` in
/// `endpoints.yml`, with Rasa's defaults, plus this store's own (`schema`, `pool_size`,
/// `pool_timeout`, `query_timeout`, `migrate`, `outbox`).
///
/// ```
/// let config: tracker_sql::SqlConfig = serde_json::from_value(serde_json::json!({
///     "dialect": "postgresql", "url": "db.internal:5433", "db": "rasa",
///     "username": "rasa", "password": "secret", "query": {"sslmode": "disable"}
/// })).unwrap();
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// SQLAlchemy-style dialect name (default `sqlite`).
    pub dialect: String,
    /// A host, `host:port`, or a full URL (`postgresql://user:pass@host/db`), as Rasa reads
    /// it: a full URL wins over every other key; a port in the host wins over `port`.
    pub url: Option<String>,
    /// The server port.
    #[serde(deserialize_with = "port_from_number_or_string")]
    pub port: Option<u16>,
    /// Database name, or file path for SQLite (default `rasa.db`; `:memory:` for an in-memory
    /// database).
    pub db: String,
    /// User name.
    pub username: Option<String>,
    /// Password; never shown by `Debug` or in logs.
    #[serde(deserialize_with = "deserialize_password")]
    pub password: Option<String>,
    /// PostgreSQL: a database to connect to first, to create `db` if it is missing.
    pub login_db: Option<String>,
    /// Parameters appended to the connection URL (e.g. `sslmode`).
    pub query: BTreeMap<String, String>,
    /// PostgreSQL: the schema that holds the store's table, made the connection's
    /// `search_path`; it must exist. Default: the `POSTGRESQL_SCHEMA` environment variable,
    /// as in Rasa, else the server's default search path.
    pub schema: Option<String>,
    /// Most pooled connections. Default on PostgreSQL and MySQL: `SQL_POOL_SIZE` +
    /// `SQL_MAX_OVERFLOW` from the environment, as in Rasa (50 + 100 for the one not set),
    /// and [`DEFAULT_SERVER_POOL_SIZE`] (10) when neither is set; 8 for an SQLite file, 1 in
    /// memory.
    pub pool_size: Option<usize>,
    /// The longest wait for a pooled connection, for opening a new one and for checking an
    /// idle one before reuse (default 30 s, SQLAlchemy's `pool_timeout`). In YAML: seconds, a
    /// whole or fractional number. A caller waits no longer when every connection is busy or
    /// the server does not answer; the error is a temporary [`Error::Unavailable`].
    #[serde(deserialize_with = "seconds")]
    pub pool_timeout: Duration,
    /// PostgreSQL and MySQL: the longest one operation of the store (an append, a read, a
    /// version, a page of ids, a delete) may wait for the server once it has a connection
    /// (default 60 s). Past it, the client drops the connection rather than reusing it and
    /// asks the server to cancel the statement, and the error is a temporary
    /// [`Error::Unavailable`]: an append may or may not have been applied, but only whole. Migrations and the Rasa-table readers are not bounded;
    /// SQLite waits for locks by its busy timeout instead. In YAML: seconds.
    #[serde(deserialize_with = "seconds")]
    pub query_timeout: Duration,
    /// Run pending schema migrations when connecting (default `true`, as Rasa creates its
    /// table at start-up).
    pub migrate: bool,
    /// Keep an outbox for a relay to an event broker (default `false`; see
    /// `tracker_core::outbox`): the table `tracker_outbox` and triggers on `events` that
    /// record, in the same statement as every insert (the store's appends and Rasa's own
    /// inserts alike), that the conversation has events to publish. The migration creates
    /// them when this is on; see the crate README's "Outbox" section.
    pub outbox: bool,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            dialect: "sqlite".to_owned(),
            url: None,
            port: None,
            db: "rasa.db".to_owned(),
            username: None,
            password: None,
            login_db: None,
            query: BTreeMap::new(),
            schema: None,
            pool_size: None,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            migrate: true,
            outbox: false,
        }
    }
}

impl fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConfig")
            .field("dialect", &self.dialect)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("login_db", &self.login_db)
            .field(
                "query",
                &self
                    .query
                    .iter()
                    .map(|(key, value)| {
                        let value = if is_secret_key(key) { REDACTED } else { value };
                        (key, value)
                    })
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("pool_timeout", &self.pool_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("migrate", &self.migrate)
            .field("outbox", &self.outbox)
            .finish()
    }
}

/// A positive, finite number of seconds, as a number or a numeric string. Errors name what
/// was expected and the type found, never the value.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    let value = match Seconds::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("expected a number of seconds, found another type"))?
    {
        Seconds::Number(value) => value,
        Seconds::Text(text) => text.trim().parse::<f64>().map_err(|_| {
            serde::de::Error::custom(
                "expected a number of seconds, found a string that is not a number",
            )
        })?,
    };
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value).map_err(|_| {
            serde::de::Error::custom("expected a number of seconds, found one out of range")
        })
    } else {
        Err(serde::de::Error::custom(
            "expected a positive number of seconds, found a number that is not one",
        ))
    }
}

/// A port, as a number or a numeric string. Errors name what was expected and the type
/// found, never the value.
fn port_from_number_or_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u64),
        Text(String),
    }
    let port = Option::<Port>::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("expected a port number, found another type"))?;
    match port {
        None => Ok(None),
        Some(Port::Number(n)) => u16::try_from(n).map(Some).map_err(|_| {
            serde::de::Error::custom("expected a port number, found a number out of range")
        }),
        Some(Port::Text(text)) => text.trim().parse::<u16>().map(Some).map_err(|_| {
            serde::de::Error::custom(
                "expected a port number, found a string that is not a port number",
            )
        }),
    }
}

impl SqlConfig {
    /// An SQLite database in the file at `path`.
    pub fn sqlite(path: impl Into<String>) -> Self {
        Self {
            db: path.into(),
            ..Self::default()
        }
    }

    /// A database given by a full URL (`postgres://...`, `mysql://...`, `sqlite:///file.db`).
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sets whether the store keeps an outbox for a relay to an event broker (`outbox`).
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_names() {
        for name in [
            "postgresql",
            "postgresql+psycopg2",
            "POSTGRES",
            "postgresql+asyncpg",
        ] {
            assert_eq!(Dialect::parse(name).expect(name), Dialect::Postgres);
        }
        for name in ["mysql", "mysql+pymysql", "mariadb+mariadbconnector"] {
            assert_eq!(Dialect::parse(name).expect(name), Dialect::Mysql);
        }
        assert_eq!(Dialect::parse("sqlite").expect("sqlite"), Dialect::Sqlite);
        let oracle = Dialect::parse("oracle+cx_oracle").expect_err("oracle");
        assert_eq!(oracle.kind(), tracker_core::ErrorKind::Unsupported);
        let bogus = Dialect::parse("excel").expect_err("bogus");
        assert_eq!(bogus.kind(), tracker_core::ErrorKind::Config);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_value::<SqlConfig>(serde_json::json!({"dialekt": "mysql"}))
            .expect_err("a misspelt key");
        assert!(error.to_string().contains("dialekt"), "{error}");
    }
}
