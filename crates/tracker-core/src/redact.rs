//! Keeping secrets out of `Debug`, errors and logs: one implementation for every store's
//! configuration.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a configuration key or URL query parameter names a secret (`password`,
/// `sslpassword`, `passwd`, `secret`, `token`, `access_key`, `key_id`, `credential`, in any
/// case).
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "key_id",
        "access_key",
        "credential",
    ]
    .iter()
    .any(|secret| lower.contains(secret))
}

/// `text` with the password of any user information (`user:password@`) and the values of
/// secret query parameters (`?password=...`) replaced by [`REDACTED`].
///
/// Everything before the last `@` counts as user information, so a password is hidden even
/// when it holds unencoded `/`, `?`, `#` or `@` (at worst an `@` in the query hides the host
/// too); text without a scheme is redacted the same way, and text with no `@` and no query
/// is returned as it is.
///
/// ```
/// use tracker_core::redact::redact_url;
/// assert_eq!(
///     redact_url("postgres://bot:p/ss@db:5432/rasa?sslmode=require&password=x"),
///     "postgres://bot:<redacted>@db:5432/rasa?sslmode=require&password=<redacted>"
/// );
/// assert_eq!(redact_url("redis://db:6379/0"), "redis://db:6379/0");
/// ```
pub fn redact_url(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_key(name) => format!("{name}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Deserialises an optional password: a string, or nothing (absent, `null`). Any other value
/// is refused with an error that does not quote it, as serde's own error would (a password of
/// digits written unquoted in YAML is a number).
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config {
///     #[serde(default, deserialize_with = "tracker_core::redact::deserialize_password")]
///     password: Option<String>,
/// }
/// let error = serde_json::from_str::<Config>(r#"{"password": 123456}"#).err().unwrap();
/// assert!(!error.to_string().contains("123456"));
/// ```
///
/// # Errors
/// When the value is neither a string nor absent.
pub fn deserialize_password<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(PasswordVisitor)
}

const NOT_A_STRING: &str = "a password must be a string: quote it in YAML";

struct PasswordVisitor;

impl<'de> Visitor<'de> for PasswordVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a password string (quote a password of digits)")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Some(value))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_wherever_they_are() {
        for (url, hidden) in [
            ("redis://:s3cret@host:6379/0", "s3cret"),
            ("mongodb://u:pa/ss?x@h1,h2/db?authSource=admin", "pa/ss?x"),
            ("u:p@ss@host", "p@ss"),
            ("postgres://h/db?sslpassword=k3y&x=1", "k3y"),
            ("mysql://h/db?PASSWORD=abc", "abc"),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains(hidden), "{url} -> {redacted}");
            assert!(redacted.contains(REDACTED), "{url} -> {redacted}");
        }
        assert_eq!(redact_url("localhost"), "localhost");
        assert_eq!(redact_url("redis://u@h"), "redis://u@h");
    }
}
