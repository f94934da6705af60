//! How the `tracker-store` registry finds this backend: [`REGISTRATION`], type `dynamo`
//! (alias `dynamodb`), with the keys of [`DynamoConfig`].

use std::sync::Arc;

use tracker_core::config::{field_names, from_keys};
use tracker_core::{
    JsonMap, RasaSource, RasaSourceFuture, Registration, SchemaFuture, Store, StoreFuture,
};

use crate::config::DynamoConfig;
use crate::rasa::DynamoRasaSource;
use crate::store::DynamoStore;

/// What configuration errors call this backend.
const WHAT: &str = "the DynamoDB tracker store";

/// The DynamoDB backend: type `dynamo` (aliases `dynamo`, `dynamodb`), the keys of
/// [`DynamoConfig`]; `connect` is [`DynamoStore::connect`], `rasa_source` opens Rasa's table
/// named by the same section's `table_name` (default `states`) with
/// [`DynamoRasaSource::connect`], creating nothing.
pub const REGISTRATION: Registration = Registration {
    name: "dynamo",
    aliases: &["dynamo", "dynamodb"],
    keys: || field_names::<DynamoConfig>(),
    connect,
    rasa_source: Some(rasa_source),
    ensure_schema: Some(ensure_schema),
};

fn connect(_alias: &str, keys: JsonMap) -> StoreFuture {
    Box::pin(async move {
        let config: DynamoConfig = from_keys(WHAT, keys)?;
        let store: Arc<dyn Store> = Arc::new(DynamoStore::connect(&config).await?);
        Ok(store)
    })
}

/// Creates this store's table when missing. The client is built as
/// [`DynamoStore::connect`] builds it, without its check that the table exists.
fn ensure_schema(_alias: &str, keys: JsonMap) -> SchemaFuture {
    Box::pin(async move {
        let config: DynamoConfig = from_keys(WHAT, keys)?;
        config.validate()?;
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        let client = config.client(loader).await;
        DynamoStore::from_client(client, &config)?
            .ensure_schema()
            .await
    })
}

fn rasa_source(_alias: &str, keys: JsonMap) -> RasaSourceFuture {
    Box::pin(async move {
        let config: DynamoConfig = from_keys(WHAT, keys)?;
        let source: Arc<dyn RasaSource> = Arc::new(DynamoRasaSource::connect(&config).await?);
        Ok(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::ErrorKind;

    /// The keys Rasa's `DynamoTrackerStore` reads from `endpoints.yml`.
    const RASA_KEYS: [&str; 2] = ["table_name", "region"];

    fn section(value: serde_json::Value) -> JsonMap {
        match value {
            serde_json::Value::Object(keys) => keys,
            other => panic!("not a section: {other}"),
        }
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(REGISTRATION.name, "dynamo");
        assert!(REGISTRATION.matches("DynamoDB") && REGISTRATION.matches("dynamo"));
        assert!(!REGISTRATION.matches("dynamo_db"));
        assert!(REGISTRATION.rasa_source.is_some());
        let keys = (REGISTRATION.keys)();
        for key in RASA_KEYS {
            assert!(keys.contains(&key), "Rasa's key {key:?} is not read");
        }
        assert_eq!(
            keys,
            [
                "table_name",
                "region",
                "endpoint_url",
                "migrate",
                "adopt_rasa",
                "outbox"
            ]
        );
    }

    #[test]
    fn a_section_with_every_key_parses() {
        let config: DynamoConfig = from_keys(
            WHAT,
            section(serde_json::json!({
                "table_name": "conversations", "region": "eu-west-1",
                "endpoint_url": "http://127.0.0.1:8000", "migrate": false, "adopt_rasa": false,
                "outbox": true
            })),
        )
        .expect("every key");
        config.validate().expect("valid");
        assert_eq!(
            (
                config.table_name.as_str(),
                config.region.as_str(),
                config.migrate,
                config.adopt_rasa,
                config.outbox
            ),
            ("conversations", "eu-west-1", false, false, true)
        );
        let error = from_keys::<DynamoConfig>(WHAT, section(serde_json::json!({"tabel": "x"})))
            .expect_err("unknown key");
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(WHAT), "{error}");
    }

    /// A section as Rasa hands it over when every value comes from `${VAR}`: all strings.
    fn all_strings() -> JsonMap {
        section(serde_json::json!({
            "table_name": "conversations", "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:8000", "migrate": "false", "adopt_rasa": "FALSE",
            "outbox": "True"
        }))
    }

    #[test]
    fn every_key_may_be_a_string() {
        let keys = all_strings();
        // The section names every key the backend reads, so a new key cannot be missed here.
        for key in (REGISTRATION.keys)() {
            assert!(keys.contains_key(*key), "{key:?} is not in the section");
        }
        let config: DynamoConfig = from_keys(WHAT, keys).expect("strings");
        assert!(!config.migrate && !config.adopt_rasa && config.outbox);
        let config: DynamoConfig = from_keys(
            WHAT,
            section(serde_json::json!({"migrate": " true ", "adopt_rasa": "True"})),
        )
        .expect("strings");
        assert!(config.migrate && config.adopt_rasa);
    }

    #[test]
    fn an_invalid_value_names_its_key_and_type_not_the_value() {
        for (key, value, kind) in [
            ("migrate", serde_json::json!("s3cret-ish"), "string"),
            ("adopt_rasa", serde_json::json!(2), "number"),
            ("outbox", serde_json::json!({"on": true}), "map"),
            ("region", serde_json::json!(["eu-west-1"]), "list"),
        ] {
            let mut keys = JsonMap::new();
            keys.insert(key.to_owned(), value.clone());
            let error = from_keys::<DynamoConfig>(WHAT, keys).expect_err("invalid");
            assert_eq!(error.kind(), ErrorKind::Config);
            let message = error.to_string();
            assert!(message.contains(key), "{message}");
            assert!(message.contains(kind), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[tokio::test]
    async fn invalid_sections_fail_before_any_request() {
        let bad = || section(serde_json::json!({"table_name": "x"}));
        let store = (REGISTRATION.connect)("dynamodb", bad()).await.err();
        let rasa_source = REGISTRATION.rasa_source.expect("a Rasa reader");
        let source = rasa_source("dynamo", bad()).await.err();
        for error in [store, source] {
            let error = error.expect("an invalid table name");
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.to_string().contains("table_name"), "{error}");
        }
    }
}
