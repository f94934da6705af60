//! A deserializer over an `endpoints.yml` section that accepts what Rasa accepts: values
//! expanded from `${VAR}` are always strings, and Rasa hands them to drivers that convert
//! them, so a number or a boolean may be given as a string (`"6379"`, `"true"`), and a string
//! as a number or boolean (an SQL `query` parameter such as `connect_timeout: 10`).
//!
//! Errors name the key and the type of the value found, never the value itself (a value may be
//! a password).

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Number, Value};

/// A configuration error: a message without any value in it.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The type of an unexpected value, without the value.
fn kind_of(unexpected: &de::Unexpected<'_>) -> &'static str {
    use de::Unexpected as U;
    match unexpected {
        U::Bool(_) => "a boolean",
        U::Unsigned(_) | U::Signed(_) | U::Float(_) => "a number",
        U::Char(_) | U::Str(_) => "a string",
        U::Bytes(_) => "bytes",
        U::Unit | U::Option => "null",
        U::NewtypeStruct | U::NewtypeVariant | U::TupleVariant | U::StructVariant => "a value",
        U::UnitVariant => "a name",
        U::Seq => "a list",
        U::Map => "a mapping",
        U::Enum => "a choice",
        U::Other(_) => "a value",
    }
}

impl de::Error for ConfigError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self(message.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self(format!(
            "expected {expected}, found {}",
            kind_of(&unexpected)
        ))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self(format!(
            "expected {expected}, found {} that is not one",
            kind_of(&unexpected)
        ))
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        Self(format!("expected {expected}, found {len} items"))
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Self(format!("expected one of {}", expected.join(", ")))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self(format!(
            "unknown key `{field}`; the keys are {}",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self(format!("the key `{field}` is missing"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self(format!("the key `{field}` is given twice"))
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// A value of a configuration section, deserialised leniently.
pub(crate) struct Lenient(pub(crate) Value);

impl Lenient {
    fn text(&self) -> Option<&str> {
        match &self.0 {
            Value::String(text) => Some(text.trim()),
            _ => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(text) = self.text() {
            if let Ok(value) = text.parse::<u64>() {
                return visitor.visit_u64(value);
            }
            if let Ok(value) = text.parse::<i64>() {
                return visitor.visit_i64(value);
            }
            return Err(ConfigError(format!(
                "expected {}, found a string that is not an integer",
                Expected(&visitor)
            )));
        }
        self.deserialize_any(visitor)
    }

    fn float<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(text) = self.text() {
            return match text.parse::<f64>() {
                Ok(value) => visitor.visit_f64(value),
                Err(_) => Err(ConfigError(format!(
                    "expected {}, found a string that is not a number",
                    Expected(&visitor)
                ))),
            };
        }
        self.deserialize_any(visitor)
    }
}

/// Shows what a visitor expects.
struct Expected<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expected<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

fn number<'de, V: Visitor<'de>>(number: Number, visitor: V) -> Result<V::Value> {
    if let Some(value) = number.as_u64() {
        visitor.visit_u64(value)
    } else if let Some(value) = number.as_i64() {
        visitor.visit_i64(value)
    } else {
        visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
    }
}

macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.integer(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(value) => visitor.visit_bool(value),
            Value::Number(value) => number(value, visitor),
            Value::String(value) => visitor.visit_string(value),
            Value::Array(values) => visitor.visit_seq(Items(values.into_iter())),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(text) = self.text() {
            return if text.eq_ignore_ascii_case("true") {
                visitor.visit_bool(true)
            } else if text.eq_ignore_ascii_case("false") {
                visitor.visit_bool(false)
            } else {
                Err(ConfigError(
                    "expected a boolean, found a string other than true or false".to_owned(),
                ))
            };
        }
        self.deserialize_any(visitor)
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            Value::Number(value) => visitor.visit_string(value.to_string()),
            Value::Bool(value) => visitor.visit_string(value.to_string()),
            other => Lenient(other).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.0 {
            Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"the name of a choice",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'static> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(_) => de::Unexpected::Bool(false),
        Value::Number(_) => de::Unexpected::Unsigned(0),
        Value::String(_) => de::Unexpected::Str(""),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = ConfigError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.0
            .next()
            .map(|value| seed.deserialize(Lenient(value)))
            .transpose()
    }
}

struct Entries {
    entries: serde_json::map::IntoIter,
    value: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = ConfigError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let parsed = seed.deserialize(key.as_str().into_deserializer())?;
        self.value = Some((key, value));
        Ok(Some(parsed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| ConfigError("a value without a key".to_owned()))?;
        seed.deserialize(Lenient(value))
            .map_err(|ConfigError(message)| {
                if message.starts_with('`') {
                    // A nested key already named: prefix the path.
                    ConfigError(format!("`{key}`.{message}"))
                } else {
                    ConfigError(format!("`{key}`: {message}"))
                }
            })
    }
}
