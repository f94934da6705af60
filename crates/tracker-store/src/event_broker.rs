//! The `event_broker:` section of Rasa's `endpoints.yml`.

use std::fmt;

use serde_json::Value;
use tracker_core::{Error, JsonMap, Result};

use crate::endpoints::{endpoints_section, read_endpoints, read_section, redact_value};

/// An event broker's configuration: its type and its keys, read with Rasa's rules — the same
/// as for the `tracker_store:` section ([`StoreConfig`](crate::StoreConfig)):
///
/// - The type is `store_type` if present (Rasa's `EndpointConfig` reads the legacy spelling
///   for every section), else `type`. No type selects RabbitMQ, as in Rasa.
/// - `${NAME}` in any string value is replaced by the environment variable `NAME`; a missing
///   variable is an error.
/// - A password (a key ending in `password`, at any depth) must be a string.
/// - Every other key, `url` included, is passed to the broker.
///
/// A file without the section, or with an empty one, configures no broker: the readers
/// return `None`. `Debug` hides secrets, and no error of this type quotes a value.
#[derive(Clone, PartialEq)]
pub struct EventBrokerConfig {
    /// The broker type as written, if any.
    pub broker_type: Option<String>,
    /// The remaining keys.
    pub keys: JsonMap,
}

impl fmt::Debug for EventBrokerConfig {
    /// Shows every key, with secrets replaced by `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: JsonMap = self
            .keys
            .iter()
            .map(|(key, value)| (key.clone(), redact_value(key, value)))
            .collect();
        f.debug_struct("EventBrokerConfig")
            .field("broker_type", &self.broker_type)
            .field("keys", &redacted)
            .finish()
    }
}

impl EventBrokerConfig {
    /// Reads the `event_broker:` section of an `endpoints.yml`; `None` when there is none (or
    /// it is empty).
    ///
    /// ```
    /// use tracker_store::EventBrokerConfig;
    ///
    /// let config = EventBrokerConfig::from_endpoints_yaml(
    ///     "event_broker:\n  type: file\n  path: events.log\n",
    /// )?
    /// .expect("a broker");
    /// assert_eq!(config.broker_type.as_deref(), Some("file"));
    /// assert_eq!(config.keys["path"], "events.log");
    /// assert!(EventBrokerConfig::from_endpoints_yaml("tracker_store:\n  type: sql\n")?.is_none());
    /// # Ok::<(), tracker_store::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for invalid YAML, a section that is not a mapping, a type that is not
    /// a string, a missing environment variable or a password that is not a string.
    pub fn from_endpoints_yaml(text: &str) -> Result<Option<Self>> {
        Self::from_value(endpoints_section(text, "event_broker")?)
    }

    /// Reads an `endpoints.yml` file (see [`EventBrokerConfig::from_endpoints_yaml`]).
    ///
    /// # Errors
    /// As [`EventBrokerConfig::from_endpoints_yaml`], and an unreadable file.
    pub fn from_endpoints_file(path: impl AsRef<std::path::Path>) -> Result<Option<Self>> {
        Self::from_endpoints_yaml(&read_endpoints(path.as_ref())?)
    }

    /// Reads the section itself, as a YAML mapping; `None` for an empty text.
    ///
    /// # Errors
    /// As [`EventBrokerConfig::from_endpoints_yaml`].
    pub fn from_yaml(text: &str) -> Result<Option<Self>> {
        let value: Value = serde_norway::from_str(text).map_err(|e| {
            Error::config_with("the event broker configuration is not valid YAML", e)
        })?;
        Self::from_value(value)
    }

    /// Reads the section from any serde value: a mapping, or null for no broker.
    ///
    /// # Errors
    /// As [`EventBrokerConfig::from_endpoints_yaml`].
    pub fn from_value(value: Value) -> Result<Option<Self>> {
        Ok(read_section(value, "event_broker")?
            .map(|(broker_type, keys)| Self { broker_type, keys }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_section_is_no_broker() {
        for text in ["", "tracker_store:\n  type: sql\n", "event_broker:\n"] {
            assert_eq!(
                EventBrokerConfig::from_endpoints_yaml(text).expect(text),
                None
            );
        }
    }

    #[test]
    fn types_and_keys_are_read_as_rasa_reads_them() {
        let config = EventBrokerConfig::from_yaml("url: localhost\nusername: u\npassword: p")
            .expect("parses")
            .expect("a section");
        assert_eq!(config.broker_type, None, "no type: RabbitMQ");
        let keys: Vec<&str> = config.keys.keys().map(String::as_str).collect();
        assert_eq!(keys, ["url", "username", "password"]);
        let legacy = EventBrokerConfig::from_yaml("type: file\nstore_type: KAFKA\nurl: k:9092")
            .expect("parses")
            .expect("a section");
        assert_eq!(legacy.broker_type.as_deref(), Some("KAFKA"));
        assert!(!legacy.keys.contains_key("type"));
    }

    #[test]
    fn environment_variables_are_expanded_and_missing_ones_named() {
        let path = std::env::var("PATH").expect("PATH");
        let config = EventBrokerConfig::from_yaml("type: file\npath: \"${PATH}/x\"")
            .expect("parses")
            .expect("a section");
        assert_eq!(config.keys["path"], Value::String(format!("{path}/x")));
        let error = EventBrokerConfig::from_yaml("password: ${TRACKER_BROKER_SURELY_UNSET}")
            .expect_err("missing variable");
        assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
        let text = error.to_string();
        assert!(text.contains("TRACKER_BROKER_SURELY_UNSET"), "{text}");
        assert!(text.contains("event_broker.password"), "{text}");
    }

    #[test]
    fn bad_shapes_are_config_errors_without_values() {
        for text in [
            "event_broker: 3",
            "event_broker: [a]",
            "event_broker:\n  type: [1]",
        ] {
            let error = EventBrokerConfig::from_endpoints_yaml(text).expect_err(text);
            assert_eq!(error.kind(), tracker_core::ErrorKind::Config, "{text}");
        }
        let error =
            EventBrokerConfig::from_yaml("password: 123456789").expect_err("a password of digits");
        assert!(!error.to_string().contains("123456789"), "{error}");
        let config = EventBrokerConfig::from_yaml("password: hunter2\nurl: amqp://u:hunter2@h")
            .expect("parses")
            .expect("a section");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
