//! The `event_broker:` section of `endpoints.yml`: which broker, and its keys, as Rasa 3.6
//! reads them.
//!
//! The type is chosen as Rasa chooses it: no `type` (or `pika`) is RabbitMQ, then `kafka`,
//! `sql` and `file`, case-insensitively. Anything else is an error naming the type (Rasa would
//! try to import it as a Python class and, failing that, run without a broker; running
//! without the broker the configuration asks for is never what is wanted).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracker_core::config::from_keys;
use tracker_core::{Error, JsonMap, Result};

/// The default queue of the RabbitMQ broker and topic of the Kafka broker.
pub const DEFAULT_QUEUE: &str = "rasa_core_events";
/// The default RabbitMQ exchange.
pub const DEFAULT_EXCHANGE: &str = "rasa-exchange";
/// The default file of the file broker.
pub const DEFAULT_FILE: &str = "rasa_event.log";
/// The default SQLite database of the SQL broker.
pub const DEFAULT_SQL_DB: &str = "events.db";
/// The table the SQL broker writes, as in Rasa.
pub const DEFAULT_SQL_TABLE: &str = "events";

/// The broker types, as `type:` names them (RabbitMQ is also chosen by no `type` at all).
pub const BROKER_TYPES: &[&str] = &["pika", "kafka", "sql", "file"];

/// A parsed `event_broker:` section.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BrokerConfig {
    /// RabbitMQ (`type: pika`, or no type).
    Rabbit(RabbitConfig),
    /// Kafka (`type: kafka`).
    Kafka(KafkaConfig),
    /// A table in an SQL database (`type: sql`).
    Sql(SqlConfig),
    /// A file of JSON lines (`type: file`).
    File(FileConfig),
}

impl BrokerConfig {
    /// Parses an `event_broker:` section (its keys, `type` included, `${VAR}` already
    /// expanded).
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown type (naming it), an unknown key, a value of the wrong
    /// type, or a missing required key.
    pub fn from_section(mut section: JsonMap) -> Result<Self> {
        let kind = match section.remove("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(kind)) => Some(kind),
            Some(_) => {
                return Err(Error::config(
                    "invalid configuration of the event broker: `type` must be a string",
                ));
            }
        };
        match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("pika") => {
                let config: RabbitConfig = from_keys("the RabbitMQ event broker", section)?;
                config.validate()?;
                Ok(Self::Rabbit(config))
            }
            Some("kafka") => {
                let config: KafkaConfig = from_keys("the Kafka event broker", section)?;
                config.validate()?;
                Ok(Self::Kafka(config))
            }
            Some("sql") => {
                let config: SqlConfig = from_keys("the SQL event broker", section)?;
                config.dialect()?;
                config.check_table()?;
                Ok(Self::Sql(config))
            }
            Some("file") => Ok(Self::File(from_keys("the file event broker", section)?)),
            Some(_) => {
                let kind = kind.unwrap_or_default();
                let hint = if kind.contains('.') {
                    " (Rasa would import it as a Python class; custom broker classes are not \
                     supported)"
                } else {
                    ""
                };
                Err(Error::config(format!(
                    "unknown event broker type `{kind}`{hint}; expected one of {}, or no type \
                     for RabbitMQ",
                    BROKER_TYPES.join(", ")
                )))
            }
        }
    }

    /// The broker's type name (`pika`, `kafka`, `sql`, `file`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Rabbit(_) => "pika",
            Self::Kafka(_) => "kafka",
            Self::Sql(_) => "sql",
            Self::File(_) => "file",
        }
    }
}

/// One string or a list of strings (Rasa accepts both for `queues` and Kafka's `url`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, a single string split at commas.
    pub fn values(&self) -> Vec<String> {
        match self {
            Self::One(value) => value
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect(),
            Self::Many(values) => values.iter().map(|v| v.trim().to_owned()).collect(),
        }
    }
}

/// Rasa's RabbitMQ (`pika`) broker keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RabbitConfig {
    /// The host name, or a whole `amqp://` / `amqps://` URL (Rasa's `url`).
    pub url: Option<String>,
    /// The port, when `url` does not give one (default 5672).
    pub port: u16,
    /// The user (required, as in Rasa).
    pub username: Option<String>,
    /// The password (required, as in Rasa).
    pub password: Option<String>,
    /// The queues declared (durable) and bound to the exchange; default `rasa_core_events`.
    pub queues: Option<OneOrMany>,
    /// The fanout exchange messages are published to (default `rasa-exchange`).
    pub exchange_name: String,
    /// Rasa: raise when a publish fails. Here a failed publish is always reported to the
    /// caller; with `true` a publish does not wait for a reconnection.
    pub raise_on_failure: bool,
    /// Keep messages whose publish failed and publish them, first and in order, once the
    /// connection is back (default true, as in Rasa).
    pub should_keep_unpublished_messages: bool,
    /// Connection attempts at start-up (default 20).
    pub connection_attempts: u32,
    /// Seconds between connection attempts (default 5).
    pub retry_delay_in_seconds: f64,
    /// The longest a publish waits for the broker's confirmation, reconnections included,
    /// in seconds (default 10). Not a Rasa key.
    pub publish_timeout_in_seconds: f64,
    /// The most unpublished messages kept for later (default 100000); beyond it the oldest
    /// are dropped and logged. Not a Rasa key.
    pub max_unpublished_messages: usize,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            url: None,
            port: 5672,
            username: None,
            password: None,
            queues: None,
            exchange_name: DEFAULT_EXCHANGE.to_owned(),
            raise_on_failure: false,
            should_keep_unpublished_messages: true,
            connection_attempts: 20,
            retry_delay_in_seconds: 5.0,
            publish_timeout_in_seconds: 10.0,
            max_unpublished_messages: 100_000,
        }
    }
}

impl RabbitConfig {
    /// A configuration for `url` with `username` and `password` and every other key at
    /// Rasa's default.
    pub fn new(url: impl Into<String>, username: &str, password: &str) -> Self {
        Self {
            url: Some(url.into()),
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            ..Self::default()
        }
    }

    /// The queues to declare: `queues`, or `rasa_core_events`.
    pub fn queue_names(&self) -> Vec<String> {
        let names = self.queues.as_ref().map(OneOrMany::values);
        match names {
            Some(names) if !names.is_empty() => names,
            _ => vec![DEFAULT_QUEUE.to_owned()],
        }
    }

    /// The delay between connection attempts.
    pub fn retry_delay(&self) -> Duration {
        seconds(self.retry_delay_in_seconds)
    }

    /// The longest a publish waits.
    pub fn publish_timeout(&self) -> Duration {
        seconds(self.publish_timeout_in_seconds)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: &str| {
            Err(Error::config(format!(
                "invalid configuration of the RabbitMQ event broker: {message}"
            )))
        };
        if self.url.as_deref().is_none_or(str::is_empty) {
            return invalid("`url` (the RabbitMQ host) is required");
        }
        if self.username.is_none() || self.password.is_none() {
            return invalid("`username` and `password` are required");
        }
        if self.connection_attempts == 0 {
            return invalid("`connection_attempts` must be at least 1");
        }
        for (key, value) in [
            ("retry_delay_in_seconds", self.retry_delay_in_seconds),
            (
                "publish_timeout_in_seconds",
                self.publish_timeout_in_seconds,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return invalid(&format!("`{key}` must be a non-negative number"));
            }
        }
        Ok(())
    }
}

/// Rasa's Kafka broker keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap servers: `host:port`, a comma-separated list, or a list.
    pub url: Option<OneOrMany>,
    /// The topic (default `rasa_core_events`).
    pub topic: String,
    /// The client id sent to the brokers.
    pub client_id: Option<String>,
    /// Key each message by its `sender_id` (default false, as in Rasa).
    pub partition_by_sender: bool,
    /// `PLAINTEXT`, `SASL_PLAINTEXT` (Rasa's default), `SSL` or `SASL_SSL`.
    pub security_protocol: String,
    /// SASL user.
    pub sasl_username: Option<String>,
    /// SASL password.
    pub sasl_password: Option<String>,
    /// `PLAIN` (default), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// PEM file of the certificate authorities to trust (default: the system's).
    pub ssl_cafile: Option<String>,
    /// PEM file of the client certificate.
    pub ssl_certfile: Option<String>,
    /// PEM file of the client key.
    pub ssl_keyfile: Option<String>,
    /// Rasa: whether SASL_SSL verifies the broker's host name. Certificates are always
    /// verified here; `false` (Rasa's default) is accepted and warned about.
    pub ssl_check_hostname: bool,
    /// Rasa: librdkafka's `queue.buffering.max.messages`. Accepted; publishing here waits for
    /// each batch, so there is no client-side queue to size.
    pub queue_size: Option<u64>,
    /// The longest a publish waits for the brokers, reconnections included, in seconds
    /// (default 10). Not a Rasa key.
    pub publish_timeout_in_seconds: f64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            url: None,
            topic: DEFAULT_QUEUE.to_owned(),
            client_id: None,
            partition_by_sender: false,
            security_protocol: "SASL_PLAINTEXT".to_owned(),
            sasl_username: None,
            sasl_password: None,
            sasl_mechanism: "PLAIN".to_owned(),
            ssl_cafile: None,
            ssl_certfile: None,
            ssl_keyfile: None,
            ssl_check_hostname: false,
            queue_size: None,
            publish_timeout_in_seconds: 10.0,
        }
    }
}

/// How the Kafka client talks to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// TLS without SASL.
    Ssl,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the connection uses TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// A SASL mechanism the Kafka broker supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl KafkaConfig {
    /// A configuration for the bootstrap servers `url` (`host:port`, comma-separated), without
    /// TLS or authentication (`security_protocol: PLAINTEXT`), every other key at Rasa's
    /// default.
    pub fn plaintext(url: impl Into<String>) -> Self {
        Self {
            url: Some(OneOrMany::One(url.into())),
            security_protocol: "PLAINTEXT".to_owned(),
            ..Self::default()
        }
    }

    /// The bootstrap servers.
    pub fn bootstrap_servers(&self) -> Vec<String> {
        self.url.as_ref().map(OneOrMany::values).unwrap_or_default()
    }

    /// The security protocol.
    ///
    /// # Errors
    /// [`Error::Config`] naming an unknown protocol.
    pub fn protocol(&self) -> Result<SecurityProtocol> {
        match self.security_protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(Error::config(format!(
                "invalid configuration of the Kafka event broker: unknown `security_protocol` \
                 `{other}`; expected PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL"
            ))),
        }
    }

    /// The SASL mechanism.
    ///
    /// # Errors
    /// [`Error::Config`] naming a mechanism this broker does not support (`GSSAPI`,
    /// `OAUTHBEARER`, unknown names).
    pub fn mechanism(&self) -> Result<SaslMechanism> {
        match self.sasl_mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            other => Err(Error::config(format!(
                "invalid configuration of the Kafka event broker: `sasl_mechanism` `{other}` \
                 is not supported; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            ))),
        }
    }

    /// The longest a publish waits.
    pub fn publish_timeout(&self) -> Duration {
        seconds(self.publish_timeout_in_seconds)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: String| {
            Err(Error::config(format!(
                "invalid configuration of the Kafka event broker: {message}"
            )))
        };
        if self.bootstrap_servers().is_empty() {
            return invalid("`url` (the bootstrap servers) is required".to_owned());
        }
        if self.topic.is_empty() {
            return invalid("`topic` must not be empty".to_owned());
        }
        let protocol = self.protocol()?;
        if protocol.sasl() {
            self.mechanism()?;
            if self.sasl_username.is_none() || self.sasl_password.is_none() {
                return invalid(format!(
                    "`security_protocol` {} needs `sasl_username` and `sasl_password` (Rasa's \
                     default protocol is SASL_PLAINTEXT; set `security_protocol: PLAINTEXT` \
                     for a broker without authentication)",
                    self.security_protocol.to_ascii_uppercase()
                ));
            }
        }
        if self.ssl_certfile.is_some() != self.ssl_keyfile.is_some() {
            return invalid("`ssl_certfile` and `ssl_keyfile` go together".to_owned());
        }
        if !self.publish_timeout_in_seconds.is_finite() || self.publish_timeout_in_seconds < 0.0 {
            return invalid("`publish_timeout_in_seconds` must be a non-negative number".into());
        }
        Ok(())
    }
}

/// Rasa's SQL broker keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SqlConfig {
    /// The database host (may include `:port`), or a whole database URL
    /// (`postgresql://user:password@host/db`, `sqlite:///path`).
    pub url: Option<String>,
    /// `sqlite` (default), `postgresql`, `mysql` (SQLAlchemy's names; a `+driver` suffix is
    /// ignored).
    pub dialect: String,
    /// The port, when `url` does not give one.
    pub port: Option<u16>,
    /// The database; for SQLite the file (default `events.db`).
    pub db: String,
    /// The user.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// The table (default `events`, Rasa's fixed name). Not a Rasa key: Rasa's SQL tracker
    /// store also names its table `events`, so a broker sharing its database needs another.
    pub table: String,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            url: None,
            dialect: "sqlite".to_owned(),
            port: None,
            db: DEFAULT_SQL_DB.to_owned(),
            username: None,
            password: None,
            table: DEFAULT_SQL_TABLE.to_owned(),
        }
    }
}

/// The databases the SQL broker writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlDialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl SqlConfig {
    /// An SQLite database at `path`.
    pub fn sqlite(path: impl Into<String>) -> Self {
        Self {
            db: path.into(),
            ..Self::default()
        }
    }

    /// A database given by its whole URL (`postgresql://...`, `mysql://...`,
    /// `sqlite:///path`).
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// The dialect: the scheme of a whole URL in `url`, else `dialect`.
    ///
    /// # Errors
    /// [`Error::Config`] naming an unknown dialect.
    pub fn dialect(&self) -> Result<SqlDialect> {
        let name = match self.url.as_deref().and_then(|url| url.split_once("://")) {
            Some((scheme, _)) => scheme,
            None => self.dialect.as_str(),
        };
        let base = name.split('+').next().unwrap_or(name).to_ascii_lowercase();
        match base.as_str() {
            "sqlite" => Ok(SqlDialect::Sqlite),
            "postgresql" | "postgres" => Ok(SqlDialect::Postgres),
            "mysql" | "mariadb" => Ok(SqlDialect::Mysql),
            _ => Err(Error::config(format!(
                "invalid configuration of the SQL event broker: unknown dialect `{name}`; \
                 expected sqlite, postgresql or mysql"
            ))),
        }
    }

    /// Whether `table` is a plain SQL identifier (letters, digits, `_`), as the broker
    /// requires.
    pub(crate) fn check_table(&self) -> Result<()> {
        let valid = !self.table.is_empty()
            && self.table.len() <= 64
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.table.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            Ok(())
        } else {
            Err(Error::config(
                "invalid configuration of the SQL event broker: `table` must be letters, digits \
                 and `_`, not starting with a digit, at most 64 characters",
            ))
        }
    }
}

/// Rasa's file broker keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The file events are appended to (default `rasa_event.log`).
    pub path: String,
    /// Accepted and ignored, as Rasa ignores it for this broker.
    pub url: Option<String>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_FILE.to_owned(),
            url: None,
        }
    }
}

impl FileConfig {
    /// Events appended to `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            url: None,
        }
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    #[test]
    fn no_type_and_pika_are_rabbitmq() {
        for section_value in [
            serde_json::json!({"url": "localhost", "username": "u", "password": "p"}),
            serde_json::json!({"type": "PIKA", "url": "localhost", "username": "u", "password": "p"}),
            serde_json::json!({"type": null, "url": "localhost", "username": "u", "password": "p"}),
        ] {
            let config = BrokerConfig::from_section(section(section_value)).expect("rabbit");
            let BrokerConfig::Rabbit(rabbit) = config else {
                panic!("not rabbit: {config:?}");
            };
            assert_eq!(rabbit.queue_names(), ["rasa_core_events"]);
            assert_eq!(rabbit.exchange_name, "rasa-exchange");
            assert_eq!(rabbit.port, 5672);
            assert_eq!(rabbit.connection_attempts, 20);
            assert_eq!(rabbit.retry_delay(), Duration::from_secs(5));
            assert!(rabbit.should_keep_unpublished_messages && !rabbit.raise_on_failure);
        }
    }
}
