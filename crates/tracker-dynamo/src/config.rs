//! Configuration with the keys and defaults of Rasa's `DynamoTrackerStore`.

use std::fmt;

use aws_config::ConfigLoader;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Region;
use serde::Deserialize;
pub(crate) use tracker_core::redact::redact_url;
use tracker_core::{Error, Result};

/// The default table of Rasa's `DynamoTrackerStore`: `states`.
pub const RASA_DEFAULT_TABLE_NAME: &str = "states";
/// The default of `table_name`: Rasa's, [`RASA_DEFAULT_TABLE_NAME`].
pub const DEFAULT_TABLE_NAME: &str = RASA_DEFAULT_TABLE_NAME;
/// Rasa's hash key.
pub const RASA_HASH_KEY: &str = "sender_id";
/// The range key of Rasa 1.x/2.x tables (epoch seconds of the save).
pub const RASA_LEGACY_RANGE_KEY: &str = "session_date";
/// The attribute holding Rasa's event list.
pub const RASA_EVENTS: &str = "events";
/// The default region, Rasa's: `us-east-1`.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Configuration of [`DynamoStore`](crate::DynamoStore) and
/// [`DynamoRasaSource`](crate::DynamoRasaSource): the keys of Rasa's `DynamoTrackerStore` in
/// `endpoints.yml` (`table_name`, `region`), with Rasa's defaults, plus `endpoint_url`,
/// `migrate`, `adopt_rasa` and `outbox`. Any other key is refused (the `tracker-store` registry drops,
/// with a warning, the keys a store does not read before it gets here).
///
/// Credentials come from the standard AWS chain (environment, shared config and credentials
/// files, web identity, ECS and EC2 instance metadata), as boto3's do for Rasa; there is no
/// credential key.
///
/// ```
/// use tracker_dynamo::tracker_core::config::from_keys;
///
/// let keys = serde_json::json!({"table_name": "conversations", "region": "eu-west-1"});
/// let serde_json::Value::Object(keys) = keys else { unreachable!() };
/// let config: tracker_dynamo::DynamoConfig =
///     from_keys("the DynamoDB tracker store", keys).expect("valid configuration");
/// assert_eq!(config.table_name, "conversations");
/// assert_eq!(config.endpoint_url, None);
/// assert!(config.migrate);
/// assert!(config.adopt_rasa);
/// assert!(!config.outbox);
/// ```
///
/// `Debug` and errors hide a password in `endpoint_url` (`http://user:password@host`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DynamoConfig {
    /// The table (default `states`, Rasa's). When it is Rasa's table — it has the key of
    /// Rasa's `DynamoTrackerStore` (`sender_id` only), or it is Rasa's default `states` and
    /// does not exist yet — the store keeps its own items in the table
    /// [`derived_table_name`](crate::schema::derived_table_name)`(table_name)`
    /// (`states_events`) and only reads Rasa's (see [`adopt_rasa`](Self::adopt_rasa));
    /// otherwise its items are in this table.
    pub table_name: String,
    /// The AWS region (default `us-east-1`, as Rasa; like Rasa's, the region is always set
    /// from the configuration, so `AWS_REGION` does not change it).
    pub region: String,
    /// A DynamoDB-compatible endpoint such as `http://localhost:8000` (DynamoDB Local, moto,
    /// ScyllaDB Alternator). Default: the region's AWS endpoint, or `AWS_ENDPOINT_URL_DYNAMODB`
    /// / `AWS_ENDPOINT_URL` from the environment.
    pub endpoint_url: Option<String>,
    /// Create the table at connect if it does not exist (default `true`, as Rasa creates
    /// its table at start-up), with [`DynamoStore::ensure_schema`](crate::DynamoStore::ensure_schema).
    /// With `false`, connecting to a missing table is a [`Error::Config`]. A
    /// [`DynamoRasaSource`](crate::DynamoRasaSource) never creates a table.
    pub migrate: bool,
    /// Read the conversations Rasa's `DynamoTrackerStore` keeps in `table_name` (default
    /// `true`): a conversation this store does not hold yet is read from Rasa's item, and
    /// moves into this store's table with its first append (see the crate documentation).
    /// With `false` Rasa's table is never read (this store's own items still go to their own
    /// table).
    pub adopt_rasa: bool,
    /// Keep an outbox for a relay to an event broker (default `false`; see
    /// `tracker_core::outbox` and the crate documentation): every append marks its
    /// conversation's head pending in the same transaction, and setup creates the index of
    /// pending heads. With `false`, appends write nothing more and no index is needed.
    pub outbox: bool,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            table_name: DEFAULT_TABLE_NAME.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            endpoint_url: None,
            migrate: true,
            adopt_rasa: true,
            outbox: false,
        }
    }
}

impl fmt::Debug for DynamoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoConfig")
            .field("table_name", &self.table_name)
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_url),
            )
            .field("migrate", &self.migrate)
            .field("adopt_rasa", &self.adopt_rasa)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl DynamoConfig {
    /// Rasa's defaults with another table.
    pub fn with_table(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            ..Self::default()
        }
    }

    /// Sets whether the store keeps an outbox for a relay to an event broker (`outbox`).
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }

    /// Checks the values: a table name DynamoDB accepts (3 to 255 characters of `a-z`,
    /// `A-Z`, `0-9`, `_`, `-`, `.`), a non-empty region, and an `http://` or `https://`
    /// endpoint.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn validate(&self) -> Result<()> {
        validate_table_name(&self.table_name)?;
        if self.region.trim().is_empty() {
            return Err(Error::config("`region` is empty"));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::config(format!(
                "`endpoint_url` {:?} must start with http:// or https://",
                redact_url(url)
            )));
        }
        Ok(())
    }

    /// A client for this configuration's region and endpoint, on top of `loader`.
    pub(crate) async fn client(&self, loader: ConfigLoader) -> Client {
        let mut loader = loader.region(Region::new(self.region.clone()));
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Client::new(&loader.load().await)
    }
}

/// Checks a table name against DynamoDB's rules.
pub(crate) fn validate_table_name(name: &str) -> Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=255).contains(&name.len()) || !valid_chars {
        return Err(Error::config(format!(
            "`table_name` {name:?} is not a DynamoDB table name (3 to 255 characters of a-z, A-Z, 0-9, `_`, `-`, `.`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::ErrorKind;

    fn parse(value: serde_json::Value) -> DynamoConfig {
        try_parse(value).expect("config")
    }

    fn try_parse(value: serde_json::Value) -> Result<DynamoConfig> {
        let serde_json::Value::Object(keys) = value else {
            panic!("a section is a map");
        };
        tracker_core::config::from_keys("the DynamoDB tracker store", keys)
    }

    #[test]
    fn rasa_defaults() {
        let config = parse(serde_json::json!({}));
        assert_eq!(config, DynamoConfig::default());
        assert_eq!(config.table_name, "states");
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.endpoint_url, None);
        assert!(config.migrate && config.adopt_rasa && !config.outbox);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn rasa_keys_and_ours() {
        // Rasa's documented keys, plus ours.
        let config = parse(serde_json::json!({
            "table_name": "rasa", "region": "eu-central-1",
            "endpoint_url": "http://127.0.0.1:8000", "migrate": false, "adopt_rasa": false,
            "outbox": true
        }));
        assert_eq!(config.table_name, "rasa");
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert!(!config.migrate && !config.adopt_rasa && config.outbox);
        config.validate().expect("valid");
        assert_eq!(DynamoConfig::with_table("t_1.x-y").table_name, "t_1.x-y");
        assert!(DynamoConfig::with_table("t").with_outbox(true).outbox);
        // Values from `${VAR}` are strings; YAML may give a number for a name.
        let config =
            parse(serde_json::json!({"migrate": "false", "table_name": 12345, "outbox": "true"}));
        assert!(!config.migrate && config.outbox);
        assert_eq!(config.table_name, "12345");
    }

    #[test]
    fn bad_values() {
        for bad in [
            serde_json::json!({"migrate": "x"}),
            serde_json::json!({"outbox": "maybe"}),
            serde_json::json!({"table_name": ["states"]}),
            serde_json::json!({"table": "states"}),
        ] {
            let error = try_parse(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
        let long = "x".repeat(256);
        for name in ["ab", "with space", "ünï", long.as_str()] {
            let error = DynamoConfig::with_table(name).validate().expect_err(name);
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.to_string().contains("table_name"), "{error}");
        }
        let region = DynamoConfig {
            region: " ".to_owned(),
            ..DynamoConfig::default()
        };
        assert_eq!(
            region.validate().expect_err("region").kind(),
            ErrorKind::Config
        );
        let endpoint = DynamoConfig {
            endpoint_url: Some("localhost:8000".to_owned()),
            ..DynamoConfig::default()
        };
        assert_eq!(
            endpoint.validate().expect_err("endpoint").kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn endpoint_passwords_are_hidden() {
        let config = DynamoConfig {
            endpoint_url: Some("https://user:s3cret@proxy.example:8443/".to_owned()),
            ..DynamoConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("user:<redacted>@proxy.example:8443"),
            "{debug}"
        );
        let bad = DynamoConfig {
            endpoint_url: Some("user:s3cret@proxy.example:8443".to_owned()),
            ..DynamoConfig::default()
        };
        let error = bad.validate().expect_err("no scheme").to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
