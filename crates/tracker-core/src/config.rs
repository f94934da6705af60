//! Reading a backend's configuration from the keys of an `endpoints.yml` section, the same
//! way for every backend.
//!
//! [`from_keys`] accepts what Rasa accepts. Values expanded from `${VAR}` are always strings,
//! and Rasa hands them to drivers that convert them, so wherever a configuration struct wants a
//! number or a boolean a string holding one is accepted (`port: "6379"`, `db: "2"`,
//! `use_ssl: "true"`, `record_exp: "3600"`), and wherever it wants a string a number or a
//! boolean is accepted (an SQL `query` parameter such as `connect_timeout: 10`). Errors name
//! the key and the type of the value found, never the value (it may be a password).

mod lenient;

use std::fmt;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::JsonMap;

/// Builds a backend's configuration struct from the keys of its `endpoints.yml` section.
///
/// ```
/// # #[derive(Debug, serde::Deserialize)]
/// # struct RedisLike { port: u16, use_ssl: bool }
/// let keys = serde_json::json!({"port": "6379", "use_ssl": "true"});
/// let serde_json::Value::Object(keys) = keys else { unreachable!() };
/// let config: RedisLike = tracker_core::config::from_keys("a store", keys)?;
/// assert_eq!((config.port, config.use_ssl), (6379, true));
/// # Ok::<(), tracker_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Config`] naming `what` (e.g. `"the Redis tracker store"`), the key and the type of
/// the value found; the message never contains a value.
pub fn from_keys<T: DeserializeOwned>(what: &str, keys: JsonMap) -> Result<T> {
    T::deserialize(lenient::Lenient(Value::Object(keys)))
        .map_err(|e| Error::config_with(format!("invalid configuration of {what}: {e}"), e))
}

/// The keys a configuration struct reads: the field names its `Deserialize` implementation
/// declares (after `rename`s). Used by backends to declare the keys they accept, so the list
/// cannot drift from the struct.
///
/// Returns an empty list for a type that is not deserialised as a struct.
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames {
        fields: &mut fields,
    });
    fields
}

/// A deserializer that records the field list of the struct asked for, then stops.
struct FieldNames<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> std::result::Result<V::Value, Stop> {
        *self.fields = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        url: String,
        #[serde(rename = "type")]
        kind: Option<String>,
        port: u16,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                url: "localhost".into(),
                kind: None,
                port: 1,
            }
        }
    }

    #[test]
    fn field_names_follow_the_struct() {
        assert_eq!(field_names::<Sample>(), ["url", "type", "port"]);
        assert!(field_names::<u32>().is_empty());
    }

    fn keys(value: serde_json::Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        port: Option<u16>,
        db: u8,
        record_exp: Option<u64>,
        use_ssl: bool,
        timeout: f64,
        delta: i32,
        #[serde(default)]
        query: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        password: Option<String>,
    }

    #[test]
    fn strings_give_numbers_and_booleans() {
        let typed: Typed = from_keys(
            "x",
            keys(serde_json::json!({
                "port": "6379", "db": " 2 ", "record_exp": "3600", "use_ssl": "TRUE",
                "timeout": "1.5", "delta": "-3",
                "query": {"connect_timeout": 10, "sslmode": "require", "keepalives": true},
            })),
        )
        .expect("strings");
        assert_eq!(typed.port, Some(6379));
        assert_eq!(
            (typed.db, typed.record_exp, typed.use_ssl),
            (2, Some(3600), true)
        );
        assert_eq!((typed.timeout, typed.delta), (1.5, -3));
        assert_eq!(typed.query["connect_timeout"], "10");
        assert_eq!(typed.query["keepalives"], "true");
        let native: Typed = from_keys(
            "x",
            keys(serde_json::json!({
                "port": null, "db": 0, "use_ssl": false, "timeout": 2, "delta": 4,
            })),
        )
        .expect("native types");
        assert_eq!(
            (native.port, native.use_ssl, native.timeout),
            (None, false, 2.0)
        );
    }

    #[test]
    fn errors_name_the_key_and_type_never_the_value() {
        for (section, key, found) in [
            (
                serde_json::json!({"port": "hunter2", "db": 0, "use_ssl": false, "timeout": 1, "delta": 1}),
                "`port`",
                "string",
            ),
            (
                serde_json::json!({"port": 70000, "db": 0, "use_ssl": false, "timeout": 1, "delta": 1}),
                "`port`",
                "number",
            ),
            (
                serde_json::json!({"db": 0, "use_ssl": "hunter2", "timeout": 1, "delta": 1}),
                "`use_ssl`",
                "string",
            ),
            (
                serde_json::json!({"db": [1], "use_ssl": true, "timeout": 1, "delta": 1}),
                "`db`",
                "list",
            ),
            (
                serde_json::json!({"db": 0, "use_ssl": true, "timeout": 1, "delta": 1, "password": {"a": 1}}),
                "`password`",
                "mapping",
            ),
        ] {
            let error = from_keys::<Typed>("the test store", keys(section)).expect_err(key);
            let message = error.to_string();
            assert!(message.contains(key), "{message}");
            assert!(message.contains(found), "{message}");
            assert!(message.contains("the test store"), "{message}");
            assert!(
                !message.contains("hunter2") && !message.contains("70000"),
                "{message}"
            );
        }
    }

    #[test]
    fn from_keys_names_the_store() {
        let mut keys = JsonMap::new();
        keys.insert("nope".into(), Value::Bool(true));
        let error = from_keys::<Sample>("the sample store", keys).expect_err("unknown key");
        assert!(error.to_string().contains("the sample store"), "{error}");
    }
}
