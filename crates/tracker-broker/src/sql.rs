//! Rasa's SQL broker: each event a row `(id, sender_id, data)` of the table `events`.

use async_trait::async_trait;
use tokio::sync::Mutex;
use tracker_core::{BrokerMessage, Error, EventBroker, Result};

use crate::body::body_text;
use crate::config::{SqlConfig, SqlDialect};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::AsyncConnection as _;
#[cfg(feature = "mysql")]
use diesel_async::AsyncMysqlConnection;
#[cfg(feature = "postgres")]
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl as _;

#[cfg(feature = "sqlite")]
type SqliteConnection =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

/// One open connection of the configured dialect.
enum Connection {
    #[cfg(feature = "postgres")]
    Postgres(Box<AsyncPgConnection>),
    #[cfg(feature = "mysql")]
    Mysql(AsyncMysqlConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnection),
}

/// Where the broker connects: the dialect and the driver's URL or SQLite path.
#[derive(Clone)]
struct Target {
    dialect: SqlDialect,
    /// A driver URL (PostgreSQL, MySQL) or a file path (SQLite).
    address: String,
    /// What error messages say: the address without the password.
    display: String,
}

/// Inserts each event as a row of Rasa's `events` table
/// (`id INTEGER PRIMARY KEY, sender_id VARCHAR(255), data TEXT`, `data` = Rasa's body text),
/// on SQLite, PostgreSQL or MySQL/MariaDB. The table is created if missing. A batch is one
/// multi-row `INSERT` (one commit), so a save's events are all stored or none are, in order
/// of `id`.
pub struct SqlBroker {
    target: Target,
    table: String,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for SqlBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBroker")
            .field("dialect", &self.target.dialect)
            .field("database", &self.target.display)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl SqlBroker {
    /// Connects and creates the table if it does not exist.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or a dialect this build leaves out;
    /// [`Error::Unavailable`] when the database cannot be reached; [`Error::Backend`] when
    /// the table cannot be created.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        config.check_table()?;
        let target = target(config)?;
        let broker = Self {
            target,
            table: config.table.clone(),
            connection: Mutex::new(None),
        };
        let mut connection = broker.open().await?;
        broker.create_table(&mut connection).await?;
        *broker.connection.lock().await = Some(connection);
        tracing::info!(database = %broker.target.display, table = %broker.table, "SQL event broker ready");
        Ok(broker)
    }

    /// The table written to.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn open(&self) -> Result<Connection> {
        let unavailable = |e: diesel::ConnectionError| {
            Error::unavailable_with(format!("connecting to {}", self.target.display), e)
        };
        match self.target.dialect {
            #[cfg(feature = "postgres")]
            SqlDialect::Postgres => Ok(Connection::Postgres(Box::new(
                AsyncPgConnection::establish(&self.target.address)
                    .await
                    .map_err(unavailable)?,
            ))),
            #[cfg(feature = "mysql")]
            SqlDialect::Mysql => Ok(Connection::Mysql(
                AsyncMysqlConnection::establish(&self.target.address)
                    .await
                    .map_err(unavailable)?,
            )),
            #[cfg(feature = "sqlite")]
            SqlDialect::Sqlite => {
                use diesel_async::AsyncConnection as _;
                let mut connection = SqliteConnection::establish(&self.target.address)
                    .await
                    .map_err(unavailable)?;
                diesel::sql_query("PRAGMA busy_timeout = 10000")
                    .execute(&mut connection)
                    .await
                    .map_err(|e| Error::backend_with("setting SQLite's busy timeout", e))?;
                Ok(Connection::Sqlite(connection))
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::config(format!(
                "the SQL event broker's dialect {other:?} is not part of this build (enable \
                 the tracker-broker feature of that dialect)"
            ))),
        }
    }

    async fn create_table(&self, connection: &mut Connection) -> Result<()> {
        let table = &self.table;
        let failed = |e: diesel::result::Error| {
            Error::backend_with(format!("creating the event broker table {table}"), e)
        };
        // The columns SQLAlchemy creates for Rasa's `SQLBrokerEvent` in each dialect.
        match connection {
            #[cfg(feature = "postgres")]
            Connection::Postgres(connection) => diesel::sql_query(format!(
                "CREATE TABLE IF NOT EXISTS {table} (id SERIAL NOT NULL, sender_id VARCHAR(255), \
                 data TEXT, PRIMARY KEY (id))"
            ))
            .execute(&mut **connection)
            .await
            .map_err(failed)?,
            #[cfg(feature = "mysql")]
            Connection::Mysql(connection) => diesel::sql_query(format!(
                "CREATE TABLE IF NOT EXISTS {table} (id INTEGER NOT NULL AUTO_INCREMENT, \
                 sender_id VARCHAR(255), data TEXT, PRIMARY KEY (id))"
            ))
            .execute(connection)
            .await
            .map_err(failed)?,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(connection) => diesel::sql_query(format!(
                "CREATE TABLE IF NOT EXISTS {table} (id INTEGER NOT NULL, sender_id VARCHAR(255), \
                 data TEXT, PRIMARY KEY (id))"
            ))
            .execute(connection)
            .await
            .map_err(failed)?,
        };
        Ok(())
    }

    async fn insert(&self, connection: &mut Connection, rows: &[(String, String)]) -> Result<()> {
        use diesel::sql_types::{Nullable, Text};
        let failed = |e: diesel::result::Error| {
            Error::unavailable_with(format!("inserting events into {}", self.table), e)
        };
        let table = &self.table;
        macro_rules! insert_rows {
            ($backend:ty, $connection:expr, $placeholder:expr) => {{
                let values: Vec<String> = (0..rows.len())
                    .map(|index| {
                        format!(
                            "({}, {})",
                            $placeholder(2 * index + 1),
                            $placeholder(2 * index + 2)
                        )
                    })
                    .collect();
                let mut query = diesel::sql_query(format!(
                    "INSERT INTO {table} (sender_id, data) VALUES {}",
                    values.join(", ")
                ))
                .into_boxed::<$backend>();
                for (sender_id, data) in rows {
                    query = query
                        .bind::<Nullable<Text>, _>(Some(sender_id.as_str()))
                        .bind::<Nullable<Text>, _>(Some(data.as_str()));
                }
                query.execute($connection).await.map_err(failed)?
            }};
        }
        match connection {
            #[cfg(feature = "postgres")]
            Connection::Postgres(connection) => {
                insert_rows!(diesel::pg::Pg, &mut **connection, |n: usize| format!(
                    "${n}"
                ))
            }
            #[cfg(feature = "mysql")]
            Connection::Mysql(connection) => {
                insert_rows!(diesel::mysql::Mysql, connection, |_: usize| "?")
            }
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(connection) => {
                insert_rows!(diesel::sqlite::Sqlite, connection, |_: usize| "?")
            }
        };
        Ok(())
    }
}

#[async_trait]
impl EventBroker for SqlBroker {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let rows = messages
            .iter()
            .map(|message| Ok((message.sender_id.clone(), body_text(message)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut slot = self.connection.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.open().await?,
        };
        // Parameters per statement stay far below every dialect's limit (PostgreSQL and
        // MySQL allow 65535, SQLite 32766).
        for chunk in rows.chunks(1000) {
            // A failed statement drops the connection; the next publish opens a new one.
            self.insert(&mut connection, chunk).await?;
        }
        *slot = Some(connection);
        Ok(())
    }
}

/// The driver address of `config`, built as Rasa's `SQLTrackerStore.get_db_url` builds it.
fn target(config: &SqlConfig) -> Result<Target> {
    let dialect = config.dialect()?;
    if let Some(url) = config.url.as_deref().filter(|url| url.contains("://")) {
        return whole_url(dialect, url);
    }
    if dialect == SqlDialect::Sqlite {
        return Ok(Target {
            dialect,
            address: config.db.clone(),
            display: format!("SQLite database {}", config.db),
        });
    }
    let (host, port) = match config.url.as_deref() {
        Some(host) => split_host_port(host),
        None => ("localhost".to_owned(), None),
    };
    let port = port.or(config.port);
    let scheme = match dialect {
        SqlDialect::Postgres => "postgresql",
        _ => "mysql",
    };
    let mut userinfo = String::new();
    if let Some(username) = &config.username {
        userinfo.push_str(&percent_encode(username));
        if let Some(password) = &config.password {
            userinfo.push(':');
            userinfo.push_str(&percent_encode(password));
        }
        userinfo.push('@');
    }
    let port_text = port.map(|port| format!(":{port}")).unwrap_or_default();
    let db = percent_encode(&config.db);
    Ok(Target {
        dialect,
        address: format!("{scheme}://{userinfo}{host}{port_text}/{db}"),
        display: format!("{scheme}://{host}{port_text}/{db}"),
    })
}

/// A whole database URL in `url`: SQLAlchemy's `dialect+driver://` scheme reduced to the
/// dialect, SQLite's `sqlite:///path` reduced to the path.
fn whole_url(dialect: SqlDialect, url: &str) -> Result<Target> {
    let (_, rest) = url.split_once("://").unwrap_or(("", url));
    let without_password = |scheme: &str| match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}"),
        None => format!("{scheme}://{rest}"),
    };
    Ok(match dialect {
        SqlDialect::Sqlite => {
            // `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://` (in memory).
            let path = rest.strip_prefix('/').unwrap_or(rest);
            let path = if path.is_empty() { ":memory:" } else { path };
            Target {
                dialect,
                address: path.to_owned(),
                display: format!("SQLite database {path}"),
            }
        }
        SqlDialect::Postgres => Target {
            dialect,
            address: format!("postgresql://{rest}"),
            display: without_password("postgresql"),
        },
        SqlDialect::Mysql => Target {
            dialect,
            address: format!("mysql://{rest}"),
            display: without_password("mysql"),
        },
    })
}

/// `host` or `host:port` (a bracketed IPv6 address keeps its brackets).
fn split_host_port(text: &str) -> (String, Option<u16>) {
    if let Some((host, port)) = text.rsplit_once(':')
        && !host.is_empty()
        && (!host.contains(':') || host.ends_with(']'))
        && let Ok(port) = port.parse()
    {
        return (host.to_owned(), Some(port));
    }
    (text.to_owned(), None)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_as_rasa_builds_them() {
        let mut config = SqlConfig {
            dialect: "postgresql".into(),
            url: Some("db.example:6543".into()),
            port: Some(5432),
            db: "rasa".into(),
            username: Some("user".into()),
            password: Some("p@ss:/word".into()),
            ..SqlConfig::default()
        };
        let built = target(&config).expect("target");
        assert_eq!(
            built.address,
            "postgresql://user:p%40ss%3A%2Fword@db.example:6543/rasa"
        );
        assert!(!built.display.contains("p%40ss"), "{}", built.display);
        config.url = Some("db.example".into());
        config.dialect = "mysql+pymysql".into();
        assert_eq!(
            target(&config).expect("mysql").address,
            "mysql://user:p%40ss%3A%2Fword@db.example:5432/rasa"
        );
        let sqlite = target(&SqlConfig::default()).expect("sqlite");
        assert_eq!(
            (sqlite.dialect, sqlite.address.as_str()),
            (SqlDialect::Sqlite, "events.db")
        );
        let whole = target(&SqlConfig::from_url("sqlite:////tmp/x.db")).expect("whole");
        assert_eq!(whole.address, "/tmp/x.db");
        let whole = target(&SqlConfig::from_url("postgresql+psycopg2://u:secret@h/d")).expect("pg");
        assert_eq!(whole.address, "postgresql://u:secret@h/d");
        assert_eq!(whole.display, "postgresql://h/d");
    }
}
