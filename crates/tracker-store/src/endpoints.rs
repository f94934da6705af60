//! The `tracker_store:` section of Rasa's `endpoints.yml`.

use std::fmt;

use serde_json::Value;
use tracker_core::redact::{is_secret_key, redact_url};
use tracker_core::{Error, JsonMap, Result};

/// Keys Rasa's `EndpointConfig` consumes for HTTP endpoints; they never reach a store.
pub const ENDPOINT_KEYS: &[&str] = &[
    "params",
    "headers",
    "basic_auth",
    "token",
    "token_name",
    "cafile",
];

/// The class of the Python package `tracker_store`, Rasa's custom tracker store on these
/// stores, as Rasa's `endpoints.yml` names it in `type`. A section of that type is read as
/// the store its `backend` key names (see [`StoreConfig`]).
pub const PYTHON_STORE_CLASS: &str = "tracker_store.RasaTrackerStore";

/// The other names of [`PYTHON_STORE_CLASS`] Rasa's class loader accepts (its module path).
const PYTHON_STORE_CLASS_ALIASES: &[&str] = &["tracker_store.store.RasaTrackerStore"];

/// The keys [`PYTHON_STORE_CLASS`] reads itself rather than passing to its store: `backend`
/// (the store type) and `retry_seconds` (how long it retries temporary failures).
pub const PYTHON_STORE_KEYS: &[&str] = &["backend", "retry_seconds"];

/// A store's configuration: its type and its keys, read with Rasa's rules.
///
/// - The type is `store_type` if present (the legacy spelling wins), else `type`; no type
///   means the in-memory store.
/// - A section of type [`PYTHON_STORE_CLASS`] (`tracker_store.RasaTrackerStore`, the Python
///   package's class for Rasa) is read as the store type its `backend` key names, without
///   the class's own keys ([`PYTHON_STORE_KEYS`]), so Rasa's `endpoints.yml` configures the
///   same store here as in Rasa. A missing `backend` is an error.
/// - `${NAME}` in any string value is replaced by the environment variable `NAME`; a missing
///   variable is an error.
/// - A password (a key ending in `password`, at any depth) must be a string: quote a
///   password of digits.
/// - Every other key, `url` included, is passed to the store.
///
/// `Debug` hides secrets: the values of keys naming one (`password`, `token`, `secret`, ...),
/// and passwords in URLs. No error of this type quotes a configuration value.
#[derive(Clone, PartialEq)]
pub struct StoreConfig {
    /// The store type as written, if any.
    pub store_type: Option<String>,
    /// The remaining keys.
    pub keys: JsonMap,
}

impl fmt::Debug for StoreConfig {
    /// Shows every key, with secrets replaced by `<redacted>`: the values of keys that name a
    /// secret (`password`, `token`, `secret`, ...) at any depth, and passwords inside URLs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: JsonMap = self
            .keys
            .iter()
            .map(|(key, value)| (key.clone(), redact_value(key, value)))
            .collect();
        f.debug_struct("StoreConfig")
            .field("store_type", &self.store_type)
            .field("keys", &redacted)
            .finish()
    }
}

/// `value` of `key` as `Debug` may show it.
pub(crate) fn redact_value(key: &str, value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        _ if is_secret_key(key) => Value::String("<redacted>".to_owned()),
        Value::String(text) => Value::String(redact_url(text)),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact_value(key, v)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_value(k, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The JSON type of a value, for errors that must not show the value itself.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks that every password in `map` (a key ending in `password`, at any depth) is a
/// string: a number would otherwise be rejected by the store's deserialiser with an error
/// quoting it.
pub(crate) fn check_passwords(map: &JsonMap, path: &str) -> Result<()> {
    map.iter().try_for_each(|(key, value)| {
        let path = format!("{path}.{key}");
        let lower = key.to_ascii_lowercase();
        if (lower.ends_with("password") || lower.ends_with("passwd"))
            && !matches!(value, Value::String(_) | Value::Null)
        {
            return Err(Error::config(format!(
                "{path} must be a string, not {}: quote it in endpoints.yml",
                type_name(value)
            )));
        }
        check_nested_passwords(value, &path)
    })
}

fn check_nested_passwords(value: &Value, path: &str) -> Result<()> {
    match value {
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            check_nested_passwords(item, &format!("{path}[{index}]"))
        }),
        Value::Object(map) => check_passwords(map, path),
        _ => Ok(()),
    }
}

impl Default for StoreConfig {
    /// No section: the in-memory store.
    fn default() -> Self {
        Self {
            store_type: None,
            keys: JsonMap::new(),
        }
    }
}

impl StoreConfig {
    /// Reads the `tracker_store:` section of an `endpoints.yml`. A file without the section
    /// (or with an empty one) configures the in-memory store, as in Rasa.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid YAML, a section that is not a mapping, or a missing
    /// environment variable.
    pub fn from_endpoints_yaml(text: &str) -> Result<Self> {
        Self::from_value(endpoints_section(text, "tracker_store")?)
    }

    /// Reads an `endpoints.yml` file (see [`StoreConfig::from_endpoints_yaml`]).
    pub fn from_endpoints_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::from_endpoints_yaml(&read_endpoints(path.as_ref())?)
    }

    /// Reads the section itself, as a YAML mapping.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let value: Value = serde_norway::from_str(text)
            .map_err(|e| Error::config_with("the store configuration is not valid YAML", e))?;
        Self::from_value(value)
    }

    /// Reads the section from any serde value: a mapping, or null for the in-memory store.
    pub fn from_value(value: Value) -> Result<Self> {
        let Some((store_type, mut keys)) = read_section(value, "tracker_store")? else {
            return Ok(Self::default());
        };
        let store_type = match store_type {
            Some(class) if is_python_store_class(&class) => Some(python_backend(&mut keys)?),
            other => other,
        };
        Ok(Self { store_type, keys })
    }

    /// The keys other than those in `known` and Rasa's endpoint keys, sorted.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let mut unknown: Vec<String> = self
            .keys
            .keys()
            .filter(|key| !known.contains(&key.as_str()) && !ENDPOINT_KEYS.contains(&key.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        unknown
    }
}

/// The section `name` of an `endpoints.yml` text; null when the file or the section is
/// absent or empty.
pub(crate) fn endpoints_section(text: &str, name: &str) -> Result<Value> {
    let document: Value = serde_norway::from_str(text)
        .map_err(|e| Error::config_with("endpoints.yml is not valid YAML", e))?;
    match document {
        Value::Null => Ok(Value::Null),
        Value::Object(mut sections) => Ok(sections.remove(name).unwrap_or(Value::Null)),
        _ => Err(Error::config("endpoints.yml must be a mapping of sections")),
    }
}

/// Reads an `endpoints.yml` file.
/// An `endpoints.yml` section (`tracker_store`, `event_broker`) as a type and its other keys:
/// `None` for a null section; `${VAR}` expanded in every value, passwords checked, and the
/// type taken from `type` or Rasa's legacy `store_type`.
///
/// # Errors
/// [`Error::Config`] naming the section for a section that is not a mapping, a type that is
/// not a string, a missing variable or a bad password value.
pub(crate) fn read_section(
    value: Value,
    section: &str,
) -> Result<Option<(Option<String>, JsonMap)>> {
    let mut keys = match value {
        Value::Null => return Ok(None),
        Value::Object(keys) => keys,
        other => {
            return Err(Error::config(format!(
                "the {section} section must be a mapping, not {}",
                type_name(&other)
            )));
        }
    };
    for (key, value) in keys.iter_mut() {
        expand_env(value, &format!("{section}.{key}"))?;
    }
    check_passwords(&keys, section)?;
    let legacy = keys.shift_remove("store_type");
    let modern = keys.shift_remove("type");
    let section_type = match legacy.or(modern) {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(other) => {
            return Err(Error::config(format!(
                "{section}.type must be a string, not {}",
                type_name(&other)
            )));
        }
    };
    Ok(Some((section_type, keys)))
}

pub(crate) fn read_endpoints(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::config_with(format!("reading {}", path.display()), e))
}

/// Whether `name` is the Python package's class (as Python spells it: case matters).
fn is_python_store_class(name: &str) -> bool {
    name == PYTHON_STORE_CLASS || PYTHON_STORE_CLASS_ALIASES.contains(&name)
}

/// Takes the Python class's own keys out of `keys` and returns the store type its `backend`
/// names.
fn python_backend(keys: &mut JsonMap) -> Result<String> {
    let backend = keys.shift_remove("backend");
    keys.shift_remove("retry_seconds");
    match backend {
        Some(Value::String(name)) if !name.trim().is_empty() => Ok(name),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Error::config(format!(
            "tracker_store.backend: missing; a section of type {PYTHON_STORE_CLASS} names its \
             store there (sql, redis, mongod, dynamo or memory, or an alias)"
        ))),
        Some(other) => Err(Error::config(format!(
            "tracker_store.backend must be a string, not {}",
            type_name(&other)
        ))),
    }
}

/// Replaces `${NAME}` in every string of `value` with the environment variable `NAME`.
pub(crate) fn expand_env(value: &mut Value, path: &str) -> Result<()> {
    match value {
        Value::String(text) => {
            if text.contains("${") {
                *text = expand_string(text, path)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(index, item)| expand_env(item, &format!("{path}[{index}]"))),
        Value::Object(map) => map
            .iter_mut()
            .try_for_each(|(key, item)| expand_env(item, &format!("{path}.{key}"))),
        _ => Ok(()),
    }
}

fn expand_string(text: &str, path: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            // The text itself is not shown: it may hold a password.
            .ok_or_else(|| Error::config(format!("unterminated ${{...}} in {path}")))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            Error::config(format!(
                "environment variable {name} (used in {path}) is not set"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_type_wins_over_type() {
        let config = StoreConfig::from_yaml("type: redis\nstore_type: SQL\ndb: x").expect("ok");
        assert_eq!(config.store_type.as_deref(), Some("SQL"));
        assert!(!config.keys.contains_key("type"));
        assert!(!config.keys.contains_key("store_type"));
        assert_eq!(config.keys["db"], "x");
    }

    #[test]
    fn missing_section_means_memory() {
        let config =
            StoreConfig::from_endpoints_yaml("action_endpoint:\n  url: http://x\n").expect("ok");
        assert_eq!(config, StoreConfig::default());
        assert_eq!(
            StoreConfig::from_endpoints_yaml("").expect("ok"),
            StoreConfig::default()
        );
        assert_eq!(
            StoreConfig::from_endpoints_yaml("tracker_store:\n").expect("ok"),
            StoreConfig::default()
        );
    }

    #[test]
    fn environment_variables_are_expanded() {
        // PATH and HOME exist in every test environment.
        let path = std::env::var("PATH").expect("PATH");
        let config =
            StoreConfig::from_yaml("url: \"${PATH}\"\nquery:\n  a: \"x-${PATH}-y\"").expect("ok");
        assert_eq!(config.keys["url"], Value::String(path.clone()));
        assert_eq!(
            config.keys["query"]["a"],
            Value::String(format!("x-{path}-y"))
        );
        let missing = StoreConfig::from_yaml("password: ${TRACKER_STORE_SURELY_UNSET_VARIABLE}")
            .expect_err("missing variable");
        assert_eq!(missing.kind(), tracker_core::ErrorKind::Config);
        assert!(
            missing
                .to_string()
                .contains("TRACKER_STORE_SURELY_UNSET_VARIABLE")
        );
        assert!(missing.to_string().contains("tracker_store.password"));
        assert!(StoreConfig::from_yaml("url: ${PATH").is_err());
    }

    #[test]
    fn bad_shapes_are_config_errors() {
        for text in ["- a\n- b", "type: [1]", "tracker_store: 3"] {
            let result =
                StoreConfig::from_yaml(text).and_then(|_| StoreConfig::from_endpoints_yaml(text));
            assert_eq!(
                result.expect_err(text).kind(),
                tracker_core::ErrorKind::Config
            );
        }
        assert!(StoreConfig::from_endpoints_yaml("tracker_store: [").is_err());
    }

    #[test]
    fn the_python_class_is_read_as_its_backend() {
        for class in [PYTHON_STORE_CLASS, "tracker_store.store.RasaTrackerStore"] {
            let config = StoreConfig::from_endpoints_yaml(&format!(
                "tracker_store:\n  type: {class}\n  backend: postgresql\n  retry_seconds: 2\n  \
                 url: db.internal\n  db: rasa\n"
            ))
            .expect("the Python class");
            assert_eq!(config.store_type.as_deref(), Some("postgresql"), "{class}");
            let keys: Vec<&str> = config.keys.keys().map(String::as_str).collect();
            assert_eq!(keys, ["url", "db"], "{class}");
        }
        let legacy =
            StoreConfig::from_yaml("store_type: tracker_store.RasaTrackerStore\nbackend: redis")
                .expect("the legacy key");
        assert_eq!(legacy.store_type.as_deref(), Some("redis"));
        // Another class, or another spelling, is a custom type like any other.
        let other = StoreConfig::from_yaml("type: tracker_store.rasatrackerstore\nbackend: sql")
            .expect("parses");
        assert_eq!(
            other.store_type.as_deref(),
            Some("tracker_store.rasatrackerstore")
        );
        assert_eq!(other.keys["backend"], "sql");
    }

    #[test]
    fn the_python_class_needs_a_backend() {
        for section in [
            "type: tracker_store.RasaTrackerStore\nurl: x",
            "type: tracker_store.RasaTrackerStore\nbackend: \"\"",
            "type: tracker_store.RasaTrackerStore\nbackend: [sql]",
        ] {
            let error = StoreConfig::from_yaml(section).expect_err(section);
            assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
            assert!(
                error.to_string().contains("tracker_store.backend"),
                "{error}"
            );
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let config = StoreConfig::from_yaml(
            "type: sql\npassword: hunter2\nurl: postgresql://u:hunter2@h/db",
        )
        .expect("ok");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
