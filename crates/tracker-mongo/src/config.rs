//! Configuration with the keys and defaults of Rasa's `MongoTrackerStore`.

use std::fmt;

use mongodb::Client;
use mongodb::options::{AuthMechanism, ClientOptions};
use serde::Deserialize;
use tracker_core::{Error, Result};

use crate::error::driver_error;
use crate::schema::MAX_TAIL_BYTES;
pub(crate) use tracker_core::redact::{deserialize_password as password, redact_url};

/// Rasa's default server URL.
pub const DEFAULT_URL: &str = "mongodb://localhost:27017";
/// Rasa's default database.
pub const DEFAULT_DB: &str = "rasa";
/// Rasa's default authentication database.
pub const DEFAULT_AUTH_SOURCE: &str = "admin";
/// Rasa's default collection name; this store's collections are named after it.
pub const DEFAULT_COLLECTION: &str = "conversations";
/// Default most events a conversation's head keeps before they move to a bucket.
pub const DEFAULT_BUCKET_EVENTS: usize = 500;
/// Default most bytes (BSON, estimated) a conversation's head keeps before its events move to
/// a bucket.
pub const DEFAULT_BUCKET_BYTES: usize = 512 * 1024;
/// The largest `bucket_events` accepted.
pub const MAX_BUCKET_EVENTS: usize = 100_000;

/// Configuration of [`MongoStore`](crate::MongoStore) and
/// [`MongoRasaSource`](crate::MongoRasaSource): the keys of Rasa's `MongoTrackerStore` in
/// `endpoints.yml` (`url`, `db`, `username`, `password`, `auth_source`, `collection`), with
/// Rasa's defaults, plus this store's own (`ensure_indexes`, `bucket_events`,
/// `bucket_bytes`, `adopt_rasa`, `outbox`). Unknown keys are an error.
///
/// ```
/// use tracker_mongo::tracker_core::config::from_keys;
///
/// # fn main() -> tracker_mongo::tracker_core::Result<()> {
/// let section = serde_json::json!({
///     "url": "mongodb://db.internal:27017/?tls=true", "db": "rasa",
///     "username": "rasa", "password": "secret", "auth_source": "admin"
/// });
/// let serde_json::Value::Object(keys) = section else { unreachable!() };
/// let config: tracker_mongo::MongoConfig = from_keys("the MongoDB tracker store", keys)?;
/// assert_eq!(config.collection, "conversations");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok(()) }
/// ```
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// Rasa's store type selector, for a section deserialised whole; only `mongod`, `mongo` or
    /// `mongodb` (any case) is accepted when present.
    #[serde(rename = "type")]
    pub store_type: Option<String>,
    /// The MongoDB connection string (default `mongodb://localhost:27017`), with TLS and other
    /// driver options in it (`?tls=true&replicaSet=rs0`, `mongodb+srv://...`). Credentials in it
    /// are used unless `username` is set.
    pub url: String,
    /// The database (default `rasa`). A database in the URL's path is only its default
    /// authentication database, as in Rasa.
    pub db: String,
    /// User name; with it, `password` and `auth_source` replace any credentials in `url`.
    pub username: Option<String>,
    /// Password; never shown by `Debug`, in logs or in errors. A string (quote one of digits
    /// in YAML).
    #[serde(deserialize_with = "password")]
    pub password: Option<String>,
    /// The database the user is defined in (default `admin`, Rasa's `authSource`). Used for
    /// credentials from `username`, and for credentials in `url` when the URL has no
    /// `authSource` of its own.
    pub auth_source: String,
    /// Rasa's collection (default `conversations`), and the base name of this store's
    /// collections: heads in `<collection>.heads`, older events in `<collection>.events`.
    /// Rasa's own documents stay in `<collection>` itself, where the store adopts them
    /// (`adopt_rasa`) and [`MongoRasaSource`](crate::MongoRasaSource) reads them; this store
    /// never writes a document there (deleting a conversation deletes Rasa's copy).
    pub collection: String,
    /// Create the indexes when connecting (default `true`; Rasa creates its index at start-up
    /// too). Without it, call [`MongoStore::ensure_schema`](crate::MongoStore::ensure_schema)
    /// once (e.g. at deploy time); correctness never depends on them, listing and reads of
    /// long conversations do. A [`MongoRasaSource`](crate::MongoRasaSource) never creates
    /// them.
    pub ensure_indexes: bool,
    /// Most events kept in a conversation's head document before they move to a bucket
    /// document (default 500).
    pub bucket_events: usize,
    /// Most bytes of events (BSON, estimated) kept in a conversation's head document before
    /// they move to a bucket document (default 512 KiB).
    pub bucket_bytes: usize,
    /// Adopt the conversations Rasa's own store keeps in `<collection>` (default `true`):
    /// they are read, listed and deleted as this store's, and the first append to one
    /// copies it into this store's collections, leaving Rasa's document as it is. With
    /// `false` the store ignores Rasa's collection.
    pub adopt_rasa: bool,
    /// Keep an outbox for a relay to an event broker (default `false`; see
    /// `tracker_core::outbox`): every append marks its conversation's head pending in the
    /// same single-document write that appends the events, and the head keeps the
    /// conversation's publishing checkpoint and a relay's lease.
    pub outbox: bool,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            store_type: None,
            url: DEFAULT_URL.to_owned(),
            db: DEFAULT_DB.to_owned(),
            username: None,
            password: None,
            auth_source: DEFAULT_AUTH_SOURCE.to_owned(),
            collection: DEFAULT_COLLECTION.to_owned(),
            ensure_indexes: true,
            bucket_events: DEFAULT_BUCKET_EVENTS,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            adopt_rasa: true,
            outbox: false,
        }
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("store_type", &self.store_type)
            .field("url", &redact_url(&self.url))
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_source", &self.auth_source)
            .field("collection", &self.collection)
            .field("ensure_indexes", &self.ensure_indexes)
            .field("bucket_events", &self.bucket_events)
            .field("bucket_bytes", &self.bucket_bytes)
            .field("adopt_rasa", &self.adopt_rasa)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl MongoConfig {
    /// Rasa's defaults with this connection string.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets the database.
    #[must_use]
    pub fn with_db(mut self, db: impl Into<String>) -> Self {
        self.db = db.into();
        self
    }

    /// Sets the base name of the collections.
    #[must_use]
    pub fn with_collection(mut self, collection: impl Into<String>) -> Self {
        self.collection = collection.into();
        self
    }

    /// Sets the credentials (replacing any in the URL).
    #[must_use]
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets whether the store adopts Rasa's conversations in `<collection>`.
    #[must_use]
    pub fn with_adopt_rasa(mut self, adopt: bool) -> Self {
        self.adopt_rasa = adopt;
        self
    }

    /// Sets whether the store keeps an outbox for a relay to an event broker.
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }

    /// Sets how many events (and bytes of them) a conversation's head keeps before they move
    /// to a bucket document.
    #[must_use]
    pub fn with_bucket_size(mut self, events: usize, bytes: usize) -> Self {
        self.bucket_events = events;
        self.bucket_bytes = bytes;
        self
    }

    /// The URL with any password replaced, for logs.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks everything that needs no server: `type`, names, credentials and bucket sizes.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn validate(&self) -> Result<()> {
        if let Some(store_type) = &self.store_type
            && !["mongod", "mongo", "mongodb"]
                .iter()
                .any(|name| store_type.eq_ignore_ascii_case(name))
        {
            return Err(Error::config(format!(
                "type is {store_type:?}; this configuration is for the `mongod` tracker store"
            )));
        }
        if self.url.trim().is_empty() {
            return Err(Error::config("`url` is empty"));
        }
        validate_db_name(&self.db)?;
        validate_collection_name(&self.collection)?;
        if self.password.is_some() && self.username.is_none() {
            return Err(Error::config("`password` is set but `username` is not"));
        }
        if self.auth_source.is_empty() {
            return Err(Error::config("`auth_source` is empty"));
        }
        validate_bucket(self.bucket_events, self.bucket_bytes)
    }
}

impl MongoConfig {
    /// A client for this configuration, after [`validate`](Self::validate); it connects
    /// lazily, on its first command.
    pub(crate) async fn client(&self) -> Result<Client> {
        self.validate()?;
        let options = self.client_options().await?;
        Client::with_options(options).map_err(|e| {
            driver_error(
                format!("cannot create a client for {}", self.display_url()),
                e,
            )
        })
    }

    /// The driver's options: the parsed URL with the credentials applied as Rasa applies
    /// them, and `tracker-store` as the application name unless the URL names one.
    pub(crate) async fn client_options(&self) -> Result<ClientOptions> {
        let mut options = ClientOptions::parse(self.url.as_str()).await.map_err(|e| {
            let message = format!("invalid MongoDB url {}", self.display_url());
            if userinfo_is_ambiguous(&self.url) {
                // The driver ends the user information at the first `?` or `/`, and may
                // quote the rest of the password as a host or an option: drop its error.
                Error::config(format!(
                    "{message}: percent-encode `/`, `?`, `#`, `@`, `:` and `%` in the user \
                         name and password"
                ))
            } else {
                driver_error(message, e)
            }
        })?;
        if let Some(username) = &self.username {
            // Rasa passes username, password and authSource to the client, which win over the
            // URL; a mechanism the URL names is kept.
            let mut credential = options.credential.take().unwrap_or_default();
            credential.username = Some(username.clone());
            credential.password = self.password.clone();
            credential.source = Some(self.auth_source.clone());
            options.credential = Some(credential);
        } else if let Some(credential) = options.credential.as_mut()
            && !url_has_auth_source(&self.url)
            && matches!(
                credential.mechanism,
                None | Some(AuthMechanism::ScramSha1 | AuthMechanism::ScramSha256)
            )
        {
            // Credentials in the URL, without `authSource`: Rasa's `auth_source` (`admin`)
            // applies, as pymongo's keyword argument wins over the URL's path database.
            credential.source = Some(self.auth_source.clone());
        }
        options
            .app_name
            .get_or_insert_with(|| "tracker-store".to_owned());
        Ok(options)
    }
}

pub(crate) fn validate_bucket(events: usize, bytes: usize) -> Result<()> {
    if !(1..=MAX_BUCKET_EVENTS).contains(&events) {
        return Err(Error::config(format!(
            "`bucket_events` is {events}; it must be 1 to {MAX_BUCKET_EVENTS}"
        )));
    }
    if !(1..=MAX_TAIL_BYTES).contains(&bytes) {
        return Err(Error::config(format!(
            "`bucket_bytes` is {bytes}; it must be 1 to {MAX_TAIL_BYTES}"
        )));
    }
    Ok(())
}

/// MongoDB's rules for database names (the stricter Windows set, so a configuration works on
/// every server).
pub(crate) fn validate_db_name(db: &str) -> Result<()> {
    if db.is_empty() || db.len() > 63 {
        return Err(Error::config(format!(
            "database name {db:?} must be 1 to 63 bytes long"
        )));
    }
    if let Some(c) = db.chars().find(|c| {
        matches!(
            c,
            '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
        )
    }) {
        return Err(Error::config(format!(
            "database name {db:?} contains {c:?}, which MongoDB does not allow"
        )));
    }
    Ok(())
}

/// MongoDB's rules for collection names; room is left for the `.heads` / `.events` suffixes.
pub(crate) fn validate_collection_name(collection: &str) -> Result<()> {
    if collection.is_empty() || collection.len() > 200 {
        return Err(Error::config(format!(
            "collection name {collection:?} must be 1 to 200 bytes long"
        )));
    }
    if collection.contains('$') || collection.contains('\0') {
        return Err(Error::config(format!(
            "collection name {collection:?} contains `$` or NUL, which MongoDB does not allow"
        )));
    }
    if collection.starts_with("system.") || collection.starts_with('.') || collection.ends_with('.')
    {
        return Err(Error::config(format!(
            "collection name {collection:?} is reserved or starts or ends with `.`"
        )));
    }
    Ok(())
}

/// Whether the user information of `url` (everything before its last `@`) holds a character
/// that ends it for the driver, so that part of a password would be read as a host or an
/// option.
fn userinfo_is_ambiguous(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(['/', '?', '#']))
}

/// Whether the connection string sets `authSource` itself.
pub(crate) fn url_has_auth_source(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|key| key.eq_ignore_ascii_case("authSource"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> MongoConfig {
        parse(value).expect("config")
    }

    fn parse(value: serde_json::Value) -> Result<MongoConfig> {
        let serde_json::Value::Object(keys) = value else {
            panic!("not an object: {value}");
        };
        tracker_core::config::from_keys("the MongoDB tracker store", keys)
    }

    #[test]
    fn rasa_defaults() {
        let config = config(serde_json::json!({}));
        assert_eq!(config.url, "mongodb://localhost:27017");
        assert_eq!(config.db, "rasa");
        assert_eq!(config.auth_source, "admin");
        assert_eq!(config.collection, "conversations");
        assert_eq!((config.username, config.password), (None, None));
        assert!(config.ensure_indexes);
        assert!(!config.outbox);
        assert_eq!(MongoConfig::default().validate().ok(), Some(()));
    }

    #[test]
    fn endpoints_yml_keys() {
        let config = config(serde_json::json!({
            "type": "mongod", "url": "mongodb://mongo:27017", "db": "bot",
            "username": "rasa", "password": "pw", "auth_source": "users",
            "collection": "trackers"
        }));
        assert_eq!(config.db, "bot");
        assert_eq!(config.collection, "trackers");
        assert_eq!(config.auth_source, "users");
        config.validate().expect("valid");
        for ok in ["MONGOD", "mongo", "mongodb"] {
            let mut c = config.clone();
            c.store_type = Some(ok.to_owned());
            c.validate().expect(ok);
        }
        let mut redis = config.clone();
        redis.store_type = Some("redis".to_owned());
        assert_eq!(
            redis.validate().expect_err("redis").kind(),
            tracker_core::ErrorKind::Config
        );
        let misspelt = parse(serde_json::json!({"colection": "x"})).expect_err("unknown key");
        assert_eq!(misspelt.kind(), tracker_core::ErrorKind::Config);
    }

    #[test]
    fn debug_never_shows_credentials() {
        let config = config(serde_json::json!({
            "url": "mongodb://admin:url-secret@h1:27017,h2:27017/db?authSource=x",
            "username": "u", "password": "key-secret"
        }));
        let debug = format!("{config:?}");
        assert!(!debug.contains("url-secret"), "{debug}");
        assert!(!debug.contains("key-secret"), "{debug}");
        assert!(
            debug.contains("mongodb://admin:<redacted>@h1:27017,h2:27017/db?authSource=x"),
            "{debug}"
        );
        assert_eq!(
            redact_url("mongodb+srv://user:p@ss@cluster.example.net/?retryWrites=true"),
            "mongodb+srv://user:<redacted>@cluster.example.net/?retryWrites=true"
        );
        assert_eq!(
            redact_url("mongodb://u:a/b?c@h/?tls=true"),
            "mongodb://u:<redacted>@h/?tls=true"
        );
        assert_eq!(redact_url("u:s3cret@h"), "u:<redacted>@h");
        assert_eq!(redact_url("mongodb://u@h"), "mongodb://u@h");
        assert_eq!(redact_url("mongodb://h:1/x"), "mongodb://h:1/x");
    }

    #[test]
    fn names_and_sizes_are_checked() {
        let bad = |change: &dyn Fn(&mut MongoConfig)| {
            let mut config = MongoConfig::default();
            change(&mut config);
            config.validate().expect_err("invalid").kind()
        };
        let config_kind = tracker_core::ErrorKind::Config;
        assert_eq!(bad(&|c| c.db = String::new()), config_kind);
        assert_eq!(bad(&|c| c.db = "a.b".to_owned()), config_kind);
        assert_eq!(bad(&|c| c.collection = "a$b".to_owned()), config_kind);
        assert_eq!(bad(&|c| c.collection = "system.x".to_owned()), config_kind);
        assert_eq!(bad(&|c| c.password = Some("x".to_owned())), config_kind);
        assert_eq!(bad(&|c| c.bucket_events = 0), config_kind);
        assert_eq!(bad(&|c| c.bucket_bytes = 0), config_kind);
        assert_eq!(bad(&|c| c.bucket_bytes = MAX_TAIL_BYTES + 1), config_kind);
        assert_eq!(bad(&|c| c.url = " ".to_owned()), config_kind);
    }

    #[tokio::test]
    async fn credentials_as_rasa_applies_them() {
        let options = MongoConfig::from_url("mongodb://h:27017")
            .with_credentials("bot", "pw")
            .client_options()
            .await
            .expect("options");
        let credential = options.credential.expect("credential");
        assert_eq!(credential.username.as_deref(), Some("bot"));
        assert_eq!(credential.password.as_deref(), Some("pw"));
        assert_eq!(credential.source.as_deref(), Some("admin"));
        assert_eq!(options.app_name.as_deref(), Some("tracker-store"));

        // The keys win over credentials in the URL.
        let options = MongoConfig {
            auth_source: "users".to_owned(),
            ..MongoConfig::from_url("mongodb://old:secret@h/db?authSource=x&appName=bot")
                .with_credentials("new", "pw")
        }
        .client_options()
        .await
        .expect("options");
        let credential = options.credential.expect("credential");
        assert_eq!(credential.username.as_deref(), Some("new"));
        assert_eq!(credential.source.as_deref(), Some("users"));
        assert_eq!(options.app_name.as_deref(), Some("bot"));

        // URL credentials: `auth_source` unless the URL has its own.
        let from_url = |url: &'static str| async move {
            MongoConfig::from_url(url)
                .client_options()
                .await
                .expect("options")
                .credential
                .expect("credential")
        };
        let credential = from_url("mongodb://u:p@h/rasa").await;
        assert_eq!(credential.source.as_deref(), Some("admin"));
        let credential = from_url("mongodb://u:p@h/rasa?authSource=rasa").await;
        assert_eq!(credential.source.as_deref(), Some("rasa"));
        let credential = from_url("mongodb://u@h/?authMechanism=MONGODB-X509&tls=true").await;
        assert_eq!(credential.source.as_deref(), Some("$external"));

        // A password with an unencoded `?`: the driver's error would quote part of it.
        let ambiguous = MongoConfig::from_url("mongodb://u:s3cr/et?x@h:27017")
            .client_options()
            .await
            .expect_err("not a valid URL");
        let text = format!("{ambiguous} {ambiguous:?}");
        assert!(!text.contains("s3cr") && !text.contains("et?x"), "{text}");

        let bad = MongoConfig::from_url("http://h").client_options().await;
        assert_eq!(
            bad.expect_err("not a MongoDB URL").kind(),
            tracker_core::ErrorKind::Config
        );
    }

    #[test]
    fn auth_source_in_url() {
        assert!(url_has_auth_source("mongodb://u:p@h/?authSource=users"));
        assert!(url_has_auth_source("mongodb://h/?tls=true&AUTHSOURCE=x"));
        assert!(!url_has_auth_source("mongodb://h/authSource"));
        assert!(!url_has_auth_source("mongodb://h/?tls=true"));
    }
}
