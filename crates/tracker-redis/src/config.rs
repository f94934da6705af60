//! The Rasa-compatible configuration of the Redis store.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fred::types::config::Server;
use fred::types::config::{ClusterDiscoveryPolicy, Config, ServerConfig, TlsConfig, TlsConnector};
use serde::Deserialize;
use tracker_core::{Error, Result};

use crate::schema::{KeyLayout, is_alnum};
use tracker_core::redact::{deserialize_password as password, redact_url};

/// Configuration of [`RedisStore`](crate::RedisStore) and
/// [`RedisRasaSource`](crate::RedisRasaSource): the keys of Rasa's `RedisTrackerStore`
/// (`url`, `port`, `db`, `username`, `password`, `key_prefix`, `record_exp`, `use_ssl`,
/// `ssl_keyfile`, `ssl_certfile`, `ssl_ca_certs`) with Rasa's defaults, plus Redis Cluster,
/// Sentinel and connection options.
///
/// It deserialises from the `tracker_store` section of Rasa's `endpoints.yml` (the `type`
/// key is accepted when it is `redis`); unknown keys are an error rather than silently
/// ignored. Numbers and booleans may be given as strings (`port: "6379"`, `use_ssl:
/// "false"`), as values expanded from `${VAR}` are. `Debug` never shows the passwords, not
/// even inside `url`, and no error quotes them; a password must be a string (quote one of
/// digits in YAML).
///
/// `url` is either a host name (combined with `port`, `db`, the credentials, `use_ssl`,
/// `cluster` and `sentinel_service_name`) or a full URL in fred's syntax:
/// `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS),
/// `redis-cluster://host:port?node=host2:port2&node=...`, or
/// `redis-sentinel://host:port[/db]?sentinelServiceName=name&node=...`. With a full URL,
/// `port` is not used; credentials and a database given in the URL win over the separate
/// keys, which fill in what the URL leaves out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Rasa's store type selector; only `redis` (any case) is accepted when present.
    #[serde(rename = "type")]
    pub store_type: Option<String>,
    /// A host name, or a full `redis://`, `rediss://`, `redis-cluster://` or
    /// `redis-sentinel://` URL. Default `localhost`.
    pub url: String,
    /// The port when `url` is a host name. Default 6379.
    pub port: u16,
    /// The database number (not in a cluster). Default 0.
    pub db: u8,
    /// The ACL user name.
    pub username: Option<String>,
    /// The password.
    #[serde(deserialize_with = "password")]
    pub password: Option<String>,
    /// Namespace of the keys: `<key_prefix>:ts:...` for this store, and Rasa's keys are
    /// `<key_prefix>:tracker:<sender id>`. As in Rasa, a prefix that is not alphanumeric
    /// (Python's `str.isalnum()`) is dropped with a warning, and so is one that is not a
    /// string in the section (a YAML number or boolean): the keys are then those of no
    /// prefix, where Rasa wrote them. Empty means none; `tracker` is refused (see
    /// [`KeyLayout::new`]).
    #[serde(deserialize_with = "key_prefix")]
    pub key_prefix: Option<String>,
    /// Seconds after its last write at which a whole conversation (every key of it) expires.
    /// Default: never.
    pub record_exp: Option<u64>,
    /// Connect with TLS (rustls). Default false.
    pub use_ssl: bool,
    /// PEM file with CA certificates to trust instead of the system's, for TLS.
    pub ssl_ca_certs: Option<PathBuf>,
    /// PEM file with the client certificate chain, for TLS client authentication.
    pub ssl_certfile: Option<PathBuf>,
    /// PEM file with the client's private key, for TLS client authentication.
    pub ssl_keyfile: Option<PathBuf>,
    /// Treat `url`:`port` as a seed node of a Redis Cluster. Default false.
    pub cluster: bool,
    /// Connect through Redis Sentinel: `url`:`port` is a sentinel node and this is the name
    /// of the monitored primary.
    pub sentinel_service_name: Option<String>,
    /// The ACL user name for the sentinel nodes (default: `username`).
    pub sentinel_username: Option<String>,
    /// The password for the sentinel nodes (default: `password`).
    #[serde(deserialize_with = "password")]
    pub sentinel_password: Option<String>,
    /// Number of connections; commands are spread over them. Default 1 (one connection
    /// already pipelines concurrent commands).
    pub pool_size: usize,
    /// Seconds allowed for connecting and for each command; 0 waits forever. Default 10.
    pub timeout: u64,
    /// Serve the conversations Rasa's own store keeps under the same prefix (read them, adopt
    /// one into this store's layout on its first append, list and delete them; see the
    /// crate documentation). Default true.
    pub adopt_rasa: bool,
    /// Keep an outbox for a relay (see `tracker_core::outbox`): each append also marks its
    /// conversation as having events to publish, and each conversation keeps its publishing
    /// checkpoint and relay lease (see the crate documentation). Default false.
    pub outbox: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            store_type: None,
            url: "localhost".to_owned(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            key_prefix: None,
            record_exp: None,
            use_ssl: false,
            ssl_ca_certs: None,
            ssl_certfile: None,
            ssl_keyfile: None,
            cluster: false,
            sentinel_service_name: None,
            sentinel_username: None,
            sentinel_password: None,
            pool_size: 1,
            timeout: 10,
            adopt_rasa: true,
            outbox: false,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisConfig")
            .field("store_type", &self.store_type)
            .field("url", &redact_url(&self.url))
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("key_prefix", &self.key_prefix)
            .field("record_exp", &self.record_exp)
            .field("use_ssl", &self.use_ssl)
            .field("ssl_ca_certs", &self.ssl_ca_certs)
            .field("ssl_certfile", &self.ssl_certfile)
            .field("ssl_keyfile", &self.ssl_keyfile)
            .field("cluster", &self.cluster)
            .field("sentinel_service_name", &self.sentinel_service_name)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("adopt_rasa", &self.adopt_rasa)
            .field("outbox", &self.outbox)
            .finish()
    }
}

/// `key_prefix` as Rasa takes it: a string, or dropped (with a warning) when the section
/// gives a number or a boolean, which Rasa's `isinstance(key_prefix, str)` refuses.
fn key_prefix<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    struct Prefix;

    impl Prefix {
        fn dropped<E>(self, found: &str) -> std::result::Result<Option<String>, E> {
            tracing::warn!(
                store = "redis",
                found,
                "key_prefix is not a string; as Rasa does, it is dropped and the keys are those \
                 of no prefix"
            );
            Ok(None)
        }
    }

    impl<'de> serde::de::Visitor<'de> for Prefix {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key prefix (letters and digits)")
        }

        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_str<E: serde::de::Error>(
            self,
            value: &str,
        ) -> std::result::Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }

        fn visit_bool<E: serde::de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
            self.dropped("a boolean")
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
            self.dropped("a number")
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
            self.dropped("a number")
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
            self.dropped("a number")
        }
    }

    deserializer.deserialize_option(Prefix)
}

/// The path of a URL without its slashes (the database), if it has one.
fn url_path(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let path = rest[rest.find('/')?..].trim_matches('/');
    (!path.is_empty()).then_some(path)
}

impl RedisConfig {
    /// The defaults: `localhost:6379`, database 0, no prefix, no expiry, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults with `url` (a host name or a full URL).
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets `key_prefix`.
    #[must_use]
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(key_prefix.into());
        self
    }

    /// Sets `record_exp`, in seconds.
    #[must_use]
    pub fn with_record_exp(mut self, seconds: u64) -> Self {
        self.record_exp = Some(seconds);
        self
    }

    /// Sets whether the store keeps an outbox (`outbox`).
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }

    /// Checks the options that need no server: `type`, `key_prefix`, `record_exp`,
    /// `pool_size`, and the connection settings (URL syntax, cluster/sentinel/database
    /// combinations, TLS files).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending key.
    pub fn validate(&self) -> Result<()> {
        self.key_layout()?;
        self.check_pool_size()?;
        self.fred_config()?;
        Ok(())
    }

    /// The key layout this configuration selects, after checking the keys that describe the
    /// stored data rather than the connection: `type`, `key_prefix` and `record_exp`. A
    /// `key_prefix` that is not alphanumeric is dropped with a warning, as Rasa drops it.
    ///
    /// # Errors
    /// [`Error::Config`] for a `type` other than `redis`, a `key_prefix` of `tracker`, or a
    /// `record_exp` of 0.
    pub fn key_layout(&self) -> Result<KeyLayout> {
        if let Some(store_type) = &self.store_type
            && !store_type.eq_ignore_ascii_case("redis")
        {
            return Err(Error::config(format!(
                "type is {store_type:?}; this configuration is for the `redis` tracker store"
            )));
        }
        if self.record_exp == Some(0) {
            return Err(Error::config(
                "record_exp must be at least 1 second; leave it out for no expiry",
            ));
        }
        let prefix = self
            .key_prefix
            .as_deref()
            .filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = prefix
            && !is_alnum(prefix)
        {
            tracing::warn!(
                store = "redis",
                key_prefix = prefix,
                "key_prefix is not alphanumeric; as Rasa does, it is dropped and the keys are \
                 those of no prefix (Rasa's tracker:<sender id>)"
            );
            return KeyLayout::new(None);
        }
        KeyLayout::new(prefix)
    }

    /// Checks `pool_size`.
    pub(crate) fn check_pool_size(&self) -> Result<()> {
        if self.pool_size == 0 {
            return Err(Error::config("pool_size must be at least 1"));
        }
        Ok(())
    }

    /// The fred client configuration: server(s), credentials, database and TLS.
    ///
    /// It holds the password in the clear, and fred's derived `Debug` prints it: do not log
    /// it (this crate's own types redact it).
    ///
    /// # Errors
    /// [`Error::Config`] for an unparsable URL, a database in a cluster, both `cluster` and
    /// `sentinel_service_name`, TLS files without TLS, or unreadable TLS files.
    pub fn fred_config(&self) -> Result<Config> {
        if self.cluster && self.sentinel_service_name.is_some() {
            return Err(Error::config(
                "cluster and sentinel_service_name exclude each other",
            ));
        }
        let url = self.url.trim();
        if url.is_empty() {
            return Err(Error::config("url is empty"));
        }
        let mut config = if url.contains("://") {
            self.config_from_url(url)?
        } else if url.contains('@') {
            // A host name never holds `@`: this is user information without a scheme, which
            // would otherwise reach the driver (and its logs) as a host name.
            return Err(Error::config(format!(
                "url {:?} holds credentials but no scheme: write redis://user:password@host, \
                 or use the username and password keys",
                redact_url(url)
            )));
        } else {
            self.config_from_host(url)
        };
        if matches!(config.server, ServerConfig::Clustered { .. })
            && config.database.is_some_and(|db| db != 0)
        {
            return Err(Error::config(
                "a Redis Cluster has only database 0; remove db",
            ));
        }
        if matches!(config.server, ServerConfig::Clustered { .. }) {
            config.database = None;
        }
        let tls_files = self.ssl_ca_certs.is_some()
            || self.ssl_certfile.is_some()
            || self.ssl_keyfile.is_some();
        if self.use_ssl || tls_files || config.tls.is_some() {
            if tls_files && !(self.use_ssl || config.tls.is_some()) {
                return Err(Error::config(
                    "ssl_ca_certs, ssl_certfile and ssl_keyfile need use_ssl: true (or a rediss:// URL)",
                ));
            }
            config.tls = Some(self.tls_config()?);
        }
        Ok(config)
    }

    fn config_from_url(&self, url: &str) -> Result<Config> {
        // fred builds its own TLS setup for `rediss://` URLs with rustls' process-wide default
        // provider, which panics when the program also links another provider (the AWS SDK
        // does). Give fred the plain scheme and set TLS up here with an explicit provider.
        let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
        let tls_scheme =
            (scheme.starts_with("rediss") || scheme.starts_with("valkeys")).then(|| {
                scheme
                    .replacen("rediss", "redis", 1)
                    .replacen("valkeys", "valkey", 1)
            });
        let plain = match &tls_scheme {
            Some(scheme) => format!("{scheme}://{rest}"),
            None => url.to_owned(),
        };
        let mut config = Config::from_url(&plain).map_err(|e| {
            Error::config_with(format!("url {:?} is not valid", redact_url(url)), e)
        })?;
        if tls_scheme.is_some() {
            config.tls = Some(self.tls_config()?);
        }
        if config.username.is_none() {
            config.username.clone_from(&self.username);
        }
        if config.password.is_none() {
            config.password.clone_from(&self.password);
        }
        if config.database.is_none() && self.db != 0 {
            config.database = Some(self.db);
        }
        if matches!(config.server, ServerConfig::Clustered { .. })
            && url_path(url).is_some_and(|path| path != "0")
        {
            return Err(Error::config(
                "a Redis Cluster has only database 0; remove the database from the url",
            ));
        }
        if self.cluster
            && let ServerConfig::Centralized { server } = &config.server
        {
            config.server = ServerConfig::Clustered {
                hosts: vec![server.clone()],
                policy: ClusterDiscoveryPolicy::default(),
            };
        }
        match (&self.sentinel_service_name, &mut config.server) {
            (Some(name), ServerConfig::Centralized { server }) => {
                config.server = ServerConfig::Sentinel {
                    hosts: vec![server.clone()],
                    service_name: name.clone(),
                    username: self.sentinel_username.clone(),
                    password: self.sentinel_password.clone(),
                };
            }
            (
                _,
                ServerConfig::Sentinel {
                    username, password, ..
                },
            ) => {
                if username.is_none() {
                    username.clone_from(&self.sentinel_username);
                }
                if password.is_none() {
                    password.clone_from(&self.sentinel_password);
                }
            }
            _ => {}
        }
        Ok(config)
    }

    fn config_from_host(&self, host: &str) -> Config {
        let server = Server::new(host, self.port);
        let server = if self.cluster {
            ServerConfig::Clustered {
                hosts: vec![server],
                policy: ClusterDiscoveryPolicy::default(),
            }
        } else if let Some(name) = &self.sentinel_service_name {
            ServerConfig::Sentinel {
                hosts: vec![server],
                service_name: name.clone(),
                username: self.sentinel_username.clone(),
                password: self.sentinel_password.clone(),
            }
        } else {
            ServerConfig::Centralized { server }
        };
        Config {
            server,
            username: self.username.clone(),
            password: self.password.clone(),
            database: (self.db != 0).then_some(self.db),
            ..Config::default()
        }
    }

    fn tls_config(&self) -> Result<TlsConfig> {
        let connector = TlsConnector::from(crate::tls::client_config(
            self.ssl_ca_certs.as_deref(),
            self.ssl_certfile.as_deref(),
            self.ssl_keyfile.as_deref(),
        )?);
        Ok(TlsConfig::from(connector))
    }

    /// The timeout for connecting and for each command; `None` waits forever.
    pub fn timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_secs(self.timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths() {
        assert_eq!(url_path("redis-cluster://h:1/3"), Some("3"));
        assert_eq!(url_path("redis-cluster://h:1/?node=a:1"), None);
        assert_eq!(url_path("redis-cluster://h:1?node=a:1/2"), None);
        assert_eq!(url_path("redis://h"), None);
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:1/2"),
            "redis://user:<redacted>@host:1/2"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@host"),
            "rediss://:<redacted>@host"
        );
        assert_eq!(
            redact_url("redis-sentinel://h:1?sentinelServiceName=m&sentinelPassword=pw&node=a:2"),
            "redis-sentinel://h:1?sentinelServiceName=m&sentinelPassword=<redacted>&node=a:2"
        );
        assert_eq!(
            redact_url("redis://u:a/b?c#d@host:1/2?x=y"),
            "redis://u:<redacted>@host:1/2?x=y"
        );
        assert_eq!(redact_url("u:s3cret@host"), "u:<redacted>@host");
        assert_eq!(redact_url("localhost"), "localhost");
        assert_eq!(redact_url("redis://host:1"), "redis://host:1");
    }
}
