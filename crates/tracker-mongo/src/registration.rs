//! How a registry builds this backend from an `endpoints.yml` section: [`REGISTRATION`].

use std::sync::Arc;

use tracker_core::config::{field_names, from_keys};
use tracker_core::{
    JsonMap, RasaSource, RasaSourceFuture, Registration, SchemaFuture, Store, StoreFuture,
};

use crate::config::MongoConfig;
use crate::rasa::MongoRasaSource;
use crate::store::MongoStore;

/// What configuration errors call this backend.
const WHAT: &str = "the MongoDB tracker store";

/// The MongoDB backend: type `mongod` (Rasa's name), also selected by `mongo` and `mongodb`;
/// the keys of [`MongoConfig`]. `connect` runs [`MongoStore::connect`] (which creates the
/// indexes unless `ensure_indexes` is off); `rasa_source` opens a [`MongoRasaSource`] on the
/// same section, which creates nothing.
pub const REGISTRATION: Registration = Registration {
    name: "mongod",
    aliases: &["mongod", "mongo", "mongodb"],
    keys: || field_names::<MongoConfig>(),
    connect,
    rasa_source: Some(rasa_source),
    ensure_schema: Some(ensure_schema),
};

/// Parses the section and connects the store; every alias means the same.
fn connect(_alias: &str, keys: JsonMap) -> StoreFuture {
    Box::pin(async move {
        let config: MongoConfig = from_keys(WHAT, keys)?;
        let store: Arc<dyn Store> = Arc::new(MongoStore::connect(&config).await?);
        Ok(store)
    })
}

/// Parses the section and opens Rasa's collection of it, read-only.
/// Creates the missing indexes, whatever the section's `ensure_indexes` says.
fn ensure_schema(_alias: &str, mut keys: JsonMap) -> SchemaFuture {
    keys.insert("ensure_indexes".to_owned(), serde_json::Value::Bool(false));
    Box::pin(async move {
        let config: MongoConfig = from_keys(WHAT, keys)?;
        MongoStore::connect(&config).await?.ensure_schema().await
    })
}

fn rasa_source(_alias: &str, keys: JsonMap) -> RasaSourceFuture {
    Box::pin(async move {
        let config: MongoConfig = from_keys(WHAT, keys)?;
        let source: Arc<dyn RasaSource> = Arc::new(MongoRasaSource::connect(&config).await?);
        Ok(source)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The keys Rasa 3.6's `MongoTrackerStore` reads from its section (`url` becomes its
    /// `host`).
    const RASA_KEYS: [&str; 6] = [
        "url",
        "db",
        "username",
        "password",
        "auth_source",
        "collection",
    ];

    #[test]
    fn every_rasa_key_is_accepted() {
        let keys = (REGISTRATION.keys)();
        for key in RASA_KEYS {
            assert!(keys.contains(&key), "{key} is not among {keys:?}");
        }
        for own in [
            "ensure_indexes",
            "bucket_events",
            "bucket_bytes",
            "adopt_rasa",
            "outbox",
        ] {
            assert!(keys.contains(&own), "{own} is not among {keys:?}");
        }
    }

    #[test]
    fn a_section_with_every_key_parses() {
        let Value::Object(section) = json!({
            "url": "mongodb://mongo.internal:27017/?tls=true",
            "db": "bot",
            "username": "rasa",
            "password": "secret",
            "auth_source": "users",
            "collection": "trackers",
            "ensure_indexes": false,
            "bucket_events": 100,
            "bucket_bytes": 65536,
            "adopt_rasa": false,
            "outbox": true,
        }) else {
            unreachable!("an object")
        };
        let all: Vec<&str> = section.keys().map(String::as_str).collect();
        let declared = (REGISTRATION.keys)();
        assert!(all.iter().all(|key| declared.contains(key)), "{all:?}");
        let config: MongoConfig = from_keys(WHAT, section).expect("parses");
        config.validate().expect("valid");
        assert_eq!(
            (config.db.as_str(), config.collection.as_str()),
            ("bot", "trackers")
        );
        assert_eq!(config.auth_source, "users");
        assert!(!config.ensure_indexes);
        assert_eq!((config.bucket_events, config.bucket_bytes), (100, 65536));
        assert!(!config.adopt_rasa);
        assert!(config.outbox);
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(REGISTRATION.name, "mongod");
        for alias in ["mongod", "MONGO", "MongoDB"] {
            assert!(REGISTRATION.matches(alias), "{alias}");
        }
        assert!(!REGISTRATION.matches("redis"));
        assert!(REGISTRATION.rasa_source.is_some());
    }

    #[tokio::test]
    async fn an_unknown_key_is_a_config_error() {
        let Value::Object(section) = json!({ "colection": "x" }) else {
            unreachable!("an object")
        };
        let error = (REGISTRATION.connect)("mongod", section)
            .await
            .expect_err("unknown key");
        assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
        assert!(error.to_string().contains(WHAT), "{error}");
    }
}
