//! Where to connect, resolved from a [`SqlConfig`] as Rasa's `SQLTrackerStore` builds its
//! engine URL: a full URL, or the URL made of `dialect`, `url` (host), `port`, `db`,
//! credentials and `query`; the PostgreSQL schema's search path; the pool size.

use std::fmt;
use std::time::Duration;

use tracker_core::redact::redact_url;
use tracker_core::{Error, Result};

use crate::config::{
    DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE, DEFAULT_SERVER_POOL_SIZE, Dialect,
    SQLITE_FILE_POOL_SIZE, SqlConfig,
};
use crate::url::percent_encode;

/// Where to connect, resolved from a [`SqlConfig`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) dialect: Dialect,
    /// The connection URL (PostgreSQL, MySQL) or file path (SQLite). Holds the password.
    pub(crate) url: String,
    /// PostgreSQL: the URL of `login_db` and the name of the database to create.
    pub(crate) login: Option<(String, String)>,
    /// PostgreSQL: the schema the URL puts first on the search path.
    pub(crate) schema: Option<String>,
    pub(crate) pool_size: usize,
    pub(crate) pool_timeout: Duration,
    pub(crate) query_timeout: Duration,
    /// The URL without credentials, for logs and `Debug`.
    pub(crate) display: String,
    /// SQLite opened without creating the file ([`Target::without_creating`]): the file's
    /// path, for `ensure_schema` to create it.
    pub(crate) sqlite_file: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl SqlConfig {
    pub(crate) fn target(&self) -> Result<Target> {
        self.target_with_env(|name| std::env::var(name).ok())
    }

    /// [`SqlConfig::target`] with the environment read through `env`.
    fn target_with_env(&self, env: impl Fn(&str) -> Option<String>) -> Result<Target> {
        for (key, timeout) in [
            ("pool_timeout", self.pool_timeout),
            ("query_timeout", self.query_timeout),
        ] {
            if timeout.is_zero() {
                return Err(Error::config(format!("`{key}` must be more than zero")));
            }
        }
        let full_url = match self.url.as_deref() {
            Some(url) if url.contains("://") => Some(normalise_full_url(url)?),
            _ => None,
        };
        let dialect = match &full_url {
            Some((dialect, _)) => *dialect,
            None => Dialect::parse(&self.dialect)?,
        };
        let schema = match (&self.schema, dialect) {
            (Some(schema), Dialect::Postgres) => Some(schema.clone()),
            (Some(_), _) => {
                return Err(Error::config(format!(
                    "`schema` is for PostgreSQL, not {dialect}"
                )));
            }
            // Rasa reads the variable for PostgreSQL only.
            (None, Dialect::Postgres) => env("POSTGRESQL_SCHEMA"),
            (None, _) => None,
        }
        .filter(|schema| !schema.is_empty());
        let (url, login, display) = match full_url {
            Some((_, url)) => {
                if self.login_db.is_some() {
                    tracing::warn!("`login_db` is ignored when `url` is a full URL");
                }
                let url = match &schema {
                    Some(schema) => {
                        // The schema joins any `options` the URL already has.
                        let (options, mut url) = crate::url::take_params(&url, &["options"])?;
                        let options = options.into_iter().next_back().map(|(_, value)| value);
                        let options = with_search_path(options.as_deref(), schema);
                        url.push(if url.contains('?') { '&' } else { '?' });
                        url.push_str("options=");
                        url.push_str(&percent_encode(&options));
                        url
                    }
                    None => url,
                };
                let display = redact_url(&url);
                (url, None, display)
            }
            None => {
                let (_, url, login, display) =
                    self.component_url(dialect, self.url.as_deref(), schema.as_deref())?;
                (url, login, display)
            }
        };
        let pool_size = match (self.pool_size, dialect) {
            (Some(0), _) => return Err(Error::config("`pool_size` must be at least 1")),
            (Some(size), Dialect::Sqlite) if is_memory(&url) => {
                if size != 1 {
                    tracing::warn!(
                        "an in-memory SQLite database lives in one connection; using a pool of 1"
                    );
                }
                1
            }
            (Some(size), _) => size,
            (None, Dialect::Sqlite) if is_memory(&url) => 1,
            (None, Dialect::Sqlite) => SQLITE_FILE_POOL_SIZE,
            (None, _) if !env_set("SQL_POOL_SIZE") && !env_set("SQL_MAX_OVERFLOW") => {
                DEFAULT_SERVER_POOL_SIZE
            }
            (None, _) => env_usize("SQL_POOL_SIZE", DEFAULT_POOL_SIZE)?
                .saturating_add(env_usize("SQL_MAX_OVERFLOW", DEFAULT_MAX_OVERFLOW)?)
                .max(1),
        };
        Ok(Target {
            dialect,
            url,
            login,
            schema,
            pool_size,
            pool_timeout: self.pool_timeout,
            query_timeout: self.query_timeout,
            // Also hides secrets given in `query` (`password`, `sslpassword`).
            display: redact_url(&display),
            sqlite_file: None,
        })
    }

    #[allow(clippy::type_complexity)]
    fn component_url(
        &self,
        dialect: Dialect,
        host: Option<&str>,
        schema: Option<&str>,
    ) -> Result<(Dialect, String, Option<(String, String)>, String)> {
        if dialect == Dialect::Sqlite {
            let path = if self.db.is_empty() {
                ":memory:".to_owned()
            } else {
                self.db.clone()
            };
            return Ok((dialect, path.clone(), None, format!("sqlite:{path}")));
        }
        let (host, port) = match host {
            // Not quoted: the text before the `@` is a password.
            Some(host) if host.contains('@') => {
                return Err(Error::config(
                    "`url` holds user information but no scheme: give `username` and \
                     `password`, or a full URL such as postgresql://user:password@host/db",
                ));
            }
            Some(host) => split_host_port(host, self.port)?,
            None => ("localhost".to_owned(), self.port),
        };
        let build = |database: &str, with_password: bool| {
            let mut url = format!("{}://", dialect.name());
            if let Some(user) = &self.username {
                url.push_str(&percent_encode(user));
                if let Some(password) = &self.password {
                    url.push(':');
                    url.push_str(
                        if with_password {
                            percent_encode(password)
                        } else {
                            "<redacted>".to_owned()
                        }
                        .as_str(),
                    );
                }
                url.push('@');
            }
            if host.contains(':') {
                url.push_str(&format!("[{host}]"));
            } else {
                url.push_str(&host);
            }
            if let Some(port) = port {
                url.push_str(&format!(":{port}"));
            }
            url.push('/');
            url.push_str(&percent_encode(database));
            let mut query: Vec<(String, String)> = self
                .query
                .iter()
                .filter(|(k, _)| schema.is_none() || k.as_str() != "options")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(schema) = schema {
                // The schema joins any `options` given in `query`.
                let options = self.query.get("options").map(String::as_str);
                query.push(("options".to_owned(), with_search_path(options, schema)));
            }
            for (index, (key, value)) in query.iter().enumerate() {
                url.push(if index == 0 { '?' } else { '&' });
                url.push_str(&percent_encode(key));
                url.push('=');
                url.push_str(&percent_encode(value));
            }
            url
        };
        let login = match (&self.login_db, dialect) {
            (Some(login_db), Dialect::Postgres) => Some((build(login_db, true), self.db.clone())),
            (Some(_), _) => {
                tracing::warn!("`login_db` is only used with PostgreSQL; ignored");
                None
            }
            (None, _) => None,
        };
        Ok((
            dialect,
            build(&self.db, true),
            login,
            build(&self.db, false),
        ))
    }
}

impl Target {
    /// The target for a store that must change nothing: an SQLite file is opened without
    /// creating it (read-write, as a URI with `mode=rw`); only `ensure_schema` creates it.
    pub(crate) fn without_creating(mut self) -> Self {
        if self.dialect != Dialect::Sqlite || is_memory(&self.url) || self.url.starts_with("file:")
        {
            return self;
        }
        let mut uri = String::from("file:");
        for c in self.url.chars() {
            match c {
                '%' => uri.push_str("%25"),
                '?' => uri.push_str("%3f"),
                '#' => uri.push_str("%23"),
                c => uri.push(c),
            }
        }
        uri.push_str("?mode=rw");
        self.sqlite_file = Some(std::mem::replace(&mut self.url, uri));
        self
    }

    /// Whether this is an SQLite file that must not be created and does not exist.
    pub(crate) fn sqlite_file_missing(&self) -> bool {
        self.sqlite_file
            .as_ref()
            .is_some_and(|path| !std::path::Path::new(path).exists())
    }
}

/// Whether the environment variable `name` holds something.
fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !value.trim().is_empty())
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().map_err(|_| {
            Error::config(format!(
                "environment variable {name}={value:?} is not a number"
            ))
        }),
        _ => Ok(default),
    }
}

fn is_memory(path: &str) -> bool {
    path == ":memory:" || path.contains("mode=memory")
}

/// Splits `host[:port]` as Rasa does; a port in the host wins over `port`.
fn split_host_port(host: &str, port: Option<u16>) -> Result<(String, Option<u16>)> {
    if let Some(rest) = host.strip_prefix('[') {
        // [ipv6]:port
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| Error::config(format!("invalid host {host:?}")))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None => port,
        };
        return Ok((address.to_owned(), port));
    }
    match host.rsplit_once(':') {
        Some((name, p)) if !name.contains(':') => Ok((name.to_owned(), Some(parse_port(p)?))),
        _ => Ok((host.to_owned(), port)),
    }
}

fn parse_port(text: &str) -> Result<u16> {
    text.parse()
        .map_err(|_| Error::config("the port in `url` (after the last `:`) is not a port number"))
}

/// Turns a SQLAlchemy-style URL into what the driver takes.
fn normalise_full_url(url: &str) -> Result<(Dialect, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::config("a URL needs a scheme"))?;
    let dialect = Dialect::parse(scheme)?;
    Ok(match dialect {
        Dialect::Postgres => (dialect, format!("postgres://{rest}")),
        Dialect::Mysql => (dialect, format!("mysql://{rest}")),
        Dialect::Sqlite => {
            // sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (memory)
            let path = rest.strip_prefix('/').unwrap_or(rest);
            let path = if path.is_empty() { ":memory:" } else { path };
            (dialect, path.to_owned())
        }
    })
}

/// PostgreSQL's `options` startup parameter: the `options` given (if any), then a setting
/// that puts `schema` alone on the search path, taken literally: quoted as an identifier (so
/// its case is kept), with the whitespace and backslashes the server's option parser would
/// split on escaped.
fn with_search_path(options: Option<&str>, schema: &str) -> String {
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut escaped = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        if c == '\\' || c.is_ascii_whitespace() || c == '\u{b}' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    match options.map(str::trim).filter(|options| !options.is_empty()) {
        Some(options) => format!("{options} -csearch_path={escaped}"),
        None => format!("-csearch_path={escaped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_POOL_TIMEOUT, DEFAULT_QUERY_TIMEOUT};

    fn config(value: serde_json::Value) -> SqlConfig {
        serde_json::from_value(value).expect("config")
    }

    #[test]
    fn rasa_defaults() {
        let config = config(serde_json::json!({}));
        assert_eq!(config.dialect, "sqlite");
        assert_eq!(config.db, "rasa.db");
        let target = config.target().expect("target");
        assert_eq!(
            (target.dialect, target.url.as_str()),
            (Dialect::Sqlite, "rasa.db")
        );
        assert_eq!(target.pool_size, SQLITE_FILE_POOL_SIZE);
        let memory = SqlConfig::sqlite(":memory:").target().expect("target");
        assert_eq!(memory.pool_size, 1);
        assert_eq!(target.pool_timeout, DEFAULT_POOL_TIMEOUT);
        assert_eq!(target.query_timeout, DEFAULT_QUERY_TIMEOUT);
        // A server's pool: Rasa's environment variables when set, else a few connections.
        let server = self::config(serde_json::json!({"dialect": "postgresql", "db": "rasa"}))
            .target()
            .expect("target");
        let expected = if env_set("SQL_POOL_SIZE") || env_set("SQL_MAX_OVERFLOW") {
            env_usize("SQL_POOL_SIZE", DEFAULT_POOL_SIZE).expect("a number")
                + env_usize("SQL_MAX_OVERFLOW", DEFAULT_MAX_OVERFLOW).expect("a number")
        } else {
            DEFAULT_SERVER_POOL_SIZE
        };
        assert_eq!(server.pool_size, expected);
    }

    #[test]
    fn pool_timeout_in_seconds() {
        let whole = config(serde_json::json!({"pool_timeout": 5}));
        assert_eq!(whole.pool_timeout, Duration::from_secs(5));
        let text = config(serde_json::json!({"query_timeout": "90"}));
        assert_eq!(text.query_timeout, Duration::from_secs(90));
        let zero = SqlConfig {
            query_timeout: Duration::ZERO,
            ..SqlConfig::default()
        };
        assert_eq!(
            zero.target().expect_err("zero").kind(),
            tracker_core::ErrorKind::Config
        );
        let fraction = config(serde_json::json!({"pool_timeout": 0.25}));
        assert_eq!(
            fraction.target().expect("target").pool_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn host_port_and_credentials_build_the_url() {
        let config = config(serde_json::json!({
            "dialect": "postgresql", "url": "db.example:6543", "port": "5432", "db": "rasa",
            "username": "bot user", "password": "p@ss:word/", "query": {"sslmode": "require"}
        }));
        let target = config.target().expect("target");
        assert_eq!(
            target.url,
            "postgres://bot%20user:p%40ss%3Aword%2F@db.example:6543/rasa?sslmode=require"
        );
        assert!(!target.display.contains("p%40ss"));
        assert!(!format!("{target:?}").contains("p%40ss"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("p@ss"), "{debug}");

        let config = config_port(
            serde_json::json!({"dialect": "mysql", "url": "localhost", "port": 3307, "db": "test", "username": "root"}),
        );
        assert_eq!(config.url, "mysql://root@localhost:3307/test");
    }

    fn config_port(value: serde_json::Value) -> Target {
        config(value).target().expect("target")
    }

    #[test]
    fn full_urls_win() {
        let target = config_port(serde_json::json!({
            "dialect": "sqlite", "url": "postgresql+psycopg2://u:secret@h:1/d", "db": "ignored"
        }));
        assert_eq!(target.dialect, Dialect::Postgres);
        assert_eq!(target.url, "postgres://u:secret@h:1/d");
        assert_eq!(target.display, "postgres://u:<redacted>@h:1/d");
        let sqlite = config_port(serde_json::json!({"url": "sqlite:////var/lib/rasa.db"}));
        assert_eq!(sqlite.url, "/var/lib/rasa.db");
        let relative = config_port(serde_json::json!({"url": "sqlite:///rasa.db"}));
        assert_eq!(relative.url, "rasa.db");
    }

    #[test]
    fn schema_from_the_config_or_the_environment() {
        let env = |name: &str| (name == "POSTGRESQL_SCHEMA").then(|| "from env".to_owned());
        let no_env = |_: &str| None;
        let parts = config(serde_json::json!({"dialect": "postgresql", "db": "rasa"}));
        let target = parts.target_with_env(env).expect("target");
        assert_eq!(target.schema.as_deref(), Some("from env"));
        assert_eq!(
            target.url,
            "postgres://localhost/rasa?options=-csearch_path%3D%22from%5C%20env%22"
        );
        let full = config(serde_json::json!({"url": "postgresql://u@h/d?sslmode=disable"}));
        assert_eq!(
            full.target_with_env(env).expect("target").url,
            "postgres://u@h/d?sslmode=disable&options=-csearch_path%3D%22from%5C%20env%22"
        );
        let own = config(serde_json::json!({"url": "postgresql://h/d", "schema": "Bots\"1"}));
        let target = own.target_with_env(env).expect("target");
        assert_eq!(target.schema.as_deref(), Some("Bots\"1"));
        assert_eq!(
            target.url,
            "postgres://h/d?options=-csearch_path%3D%22Bots%22%221%22"
        );
        // Options already given are kept, before the search path.
        let options = "-c statement_timeout=5000";
        let full = config(serde_json::json!({
            "url": "postgresql://h/d?options=-c%20statement_timeout%3D5000&sslmode=disable",
            "schema": "s\tt"
        }));
        assert_eq!(
            full.target_with_env(no_env).expect("target").url,
            "postgres://h/d?sslmode=disable&options=-c%20statement_timeout%3D5000%20-csearch_path%3D%22s%5C%09t%22"
        );
        let with_options = config(serde_json::json!({
            "dialect": "postgresql", "db": "d", "schema": "s", "query": {"options": options}
        }));
        assert_eq!(
            with_options.target_with_env(no_env).expect("target").url,
            "postgres://localhost/d?options=-c%20statement_timeout%3D5000%20-csearch_path%3D%22s%22"
        );
        assert_eq!(parts.target_with_env(no_env).expect("target").schema, None);
        // Rasa reads the variable for PostgreSQL only; an explicit `schema` elsewhere is wrong.
        let mysql = config(serde_json::json!({"dialect": "mysql", "db": "rasa"}));
        assert_eq!(mysql.target_with_env(env).expect("target").schema, None);
        let mysql = config(serde_json::json!({"url": "mysql://h/d", "schema": "s"}));
        assert_eq!(
            mysql.target_with_env(env).expect_err("schema").kind(),
            tracker_core::ErrorKind::Config
        );
    }

    #[test]
    fn login_db_is_for_postgres() {
        let target = config_port(serde_json::json!({
            "dialect": "postgresql", "url": "localhost", "db": "rasa", "login_db": "postgres"
        }));
        let (login_url, db) = target.login.expect("login");
        assert_eq!(login_url, "postgres://localhost/postgres");
        assert_eq!(db, "rasa");
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert!(serde_json::from_value::<SqlConfig>(serde_json::json!({"port": "x"})).is_err());
        assert!(serde_json::from_value::<SqlConfig>(serde_json::json!({"port": 70000})).is_err());
        for timeout in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!("soon"),
        ] {
            for key in ["pool_timeout", "query_timeout"] {
                assert!(
                    serde_json::from_value::<SqlConfig>(serde_json::json!({key: timeout})).is_err()
                );
            }
        }
        let zero = SqlConfig {
            pool_size: Some(0),
            ..SqlConfig::default()
        };
        assert_eq!(
            zero.target().expect_err("zero").kind(),
            tracker_core::ErrorKind::Config
        );
    }
}
