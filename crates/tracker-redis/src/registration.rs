//! The factories behind [`REGISTRATION`]: how a registry builds this crate's store and Rasa
//! source from the keys of an `endpoints.yml` section.

use std::sync::Arc;

use tracker_core::config::{field_names, from_keys};
use tracker_core::{
    JsonMap, RasaSource, RasaSourceFuture, Registration, SchemaFuture, Store, StoreFuture,
};

use crate::config::RedisConfig;
use crate::rasa::RedisRasaSource;
use crate::store::RedisStore;

/// What a configuration error calls this backend.
const WHAT: &str = "the Redis tracker store";

/// The Redis backend for a registry: type name `redis` (Rasa's), alias `redis`; the keys of
/// [`RedisConfig`]; [`RedisStore::connect`] for the store and [`RedisRasaSource::connect`]
/// for Rasa's own keys under the same `key_prefix` (read-only: opening it writes nothing).
pub const REGISTRATION: Registration = Registration {
    name: "redis",
    aliases: &["redis"],
    keys: field_names::<RedisConfig>,
    connect,
    rasa_source: Some(rasa_source),
    ensure_schema: Some(ensure_schema),
};

fn connect(_alias: &str, keys: JsonMap) -> StoreFuture {
    Box::pin(async move {
        let config: RedisConfig = from_keys(WHAT, keys)?;
        let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&config).await?);
        Ok(store)
    })
}

/// Redis needs no schema: checks that the server answers and changes nothing.
fn ensure_schema(_alias: &str, keys: JsonMap) -> SchemaFuture {
    Box::pin(async move {
        let config: RedisConfig = from_keys(WHAT, keys)?;
        RedisStore::connect(&config).await?.ensure_schema().await
    })
}

fn rasa_source(_alias: &str, keys: JsonMap) -> RasaSourceFuture {
    Box::pin(async move {
        let config: RedisConfig = from_keys(WHAT, keys)?;
        let source: Arc<dyn RasaSource> = Arc::new(RedisRasaSource::connect(&config).await?);
        Ok(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tracker_core::ErrorKind;

    /// The keys of Rasa 3.6's `RedisTrackerStore` (`url` is its `host`).
    const RASA_KEYS: &[&str] = &[
        "url",
        "port",
        "db",
        "username",
        "password",
        "key_prefix",
        "record_exp",
        "use_ssl",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_ca_certs",
    ];

    /// A section with every key this backend reads.
    fn every_key() -> JsonMap {
        let section = json!({
            "type": "redis",
            "url": "redis.example.com",
            "port": 6380,
            "db": 2,
            "username": "bot",
            "password": "s3cret",
            "key_prefix": "bot1",
            "record_exp": 3600,
            "use_ssl": true,
            "ssl_keyfile": "/etc/bot/client.key",
            "ssl_certfile": "/etc/bot/client.crt",
            "ssl_ca_certs": "/etc/bot/ca.crt",
            "cluster": false,
            "sentinel_service_name": null,
            "sentinel_username": null,
            "sentinel_password": null,
            "pool_size": 4,
            "timeout": 5,
            "adopt_rasa": true,
            "outbox": true,
        });
        match section {
            Value::Object(keys) => keys,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn names() {
        assert_eq!(REGISTRATION.name, "redis");
        assert_eq!(REGISTRATION.aliases, ["redis"]);
        assert!(REGISTRATION.matches("Redis"));
        assert!(REGISTRATION.rasa_source.is_some());
    }

    #[test]
    fn accepts_every_rasa_key() {
        let keys = (REGISTRATION.keys)();
        for key in RASA_KEYS {
            assert!(keys.contains(key), "{key} is not accepted");
        }
        let section = every_key();
        let mut listed: Vec<&str> = section.keys().map(String::as_str).collect();
        let mut declared = keys.to_vec();
        listed.sort_unstable();
        declared.sort_unstable();
        assert_eq!(listed, declared, "the test section misses or adds keys");
        let config: RedisConfig = from_keys(WHAT, section).expect("every key parses");
        assert_eq!(config.port, 6380);
        assert_eq!(config.key_prefix.as_deref(), Some("bot1"));
        assert_eq!(config.pool_size, 4);
        assert!(config.outbox);
    }

    /// Values expanded from `${VAR}` are strings: every number and boolean may be one.
    #[test]
    fn numbers_and_booleans_as_strings() {
        let section = json!({
            "url": "redis.example.com",
            "port": "6380",
            "db": "2",
            "record_exp": "3600",
            "use_ssl": "false",
            "cluster": "FALSE",
            "pool_size": "4",
            "timeout": " 5 ",
            "adopt_rasa": "false",
            "outbox": "true",
        });
        let Value::Object(keys) = section else {
            unreachable!("an object literal")
        };
        let config: RedisConfig = from_keys(WHAT, keys).expect("strings parse");
        assert_eq!((config.port, config.db), (6380, 2));
        assert_eq!(config.record_exp, Some(3600));
        assert!(!config.use_ssl && !config.cluster && !config.adopt_rasa);
        assert!(config.outbox);
        assert_eq!((config.pool_size, config.timeout), (4, 5));

        for (key, value, found) in [
            ("port", json!("63x79"), "a string"),
            ("db", json!("two"), "a string"),
            ("use_ssl", json!("yes please"), "a string"),
            ("record_exp", json!([3600]), "a list"),
        ] {
            let mut keys = JsonMap::new();
            keys.insert(key.to_owned(), value.clone());
            let error = from_keys::<RedisConfig>(WHAT, keys).expect_err(key);
            let message = error.to_string();
            assert_eq!(error.kind(), ErrorKind::Config, "{message}");
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(message.contains(found), "{message}");
            let text = match &value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert!(!message.contains(&text), "{message}");
        }
    }

    /// Rasa drops a `key_prefix` that is not a string (`isinstance(key_prefix, str)`) or not
    /// alphanumeric, and uses no prefix: so does this store.
    #[test]
    fn prefixes_rasa_drops() {
        for prefix in [json!(123), json!(true), json!(1.5), json!(null)] {
            let mut keys = JsonMap::new();
            keys.insert("key_prefix".to_owned(), prefix.clone());
            let config: RedisConfig = from_keys(WHAT, keys).expect("parses");
            assert_eq!(config.key_prefix, None, "{prefix}");
        }
        for prefix in ["bot-1", "bot 1", "bot:1", "{x}", "bot_1", ""] {
            let mut keys = JsonMap::new();
            keys.insert("key_prefix".to_owned(), json!(prefix));
            let config: RedisConfig = from_keys(WHAT, keys).expect("parses");
            assert_eq!(config.key_prefix.as_deref(), Some(prefix));
            let layout = config.key_layout().expect("dropped, not refused");
            assert_eq!(layout.key_prefix(), None, "{prefix}");
            assert_eq!(layout.rasa("alice"), "tracker:alice");
            assert_eq!(layout.events("alice"), "ts:{alice}:events");
        }
        let mut keys = JsonMap::new();
        keys.insert("key_prefix".to_owned(), json!("123"));
        let config: RedisConfig = from_keys(WHAT, keys).expect("parses");
        assert_eq!(
            config.key_layout().expect("valid").rasa("alice"),
            "123:tracker:alice"
        );
    }

    #[test]
    fn bad_sections_fail_before_connecting() {
        let mut typo = JsonMap::new();
        typo.insert("recrod_exp".to_owned(), json!(5));
        let mut bad_prefix = JsonMap::new();
        bad_prefix.insert("key_prefix".to_owned(), json!("tracker"));
        for keys in [typo, bad_prefix] {
            let error = futures::executor::block_on((REGISTRATION.connect)("redis", keys.clone()))
                .expect_err("rejected");
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
            let source = REGISTRATION.rasa_source.expect("a Rasa source");
            let error = futures::executor::block_on(source("redis", keys)).expect_err("rejected");
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        }
    }
}
