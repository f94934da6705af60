//! Reading conversations from a database Rasa itself wrote, through the backends'
//! Rasa-format readers.

use std::path::Path;

use serde_json::Value;
use tracker_store::dynamo::{DynamoStore, aws_config, aws_sdk_dynamodb};
use tracker_store::mongo::{MongoConfig, MongoStore};
use tracker_store::redis::{RedisConfig, RedisStore};
use tracker_store::sql::{SqlConfig, SqlStore};
use tracker_store::{Error, Event, Result, StoreConfig};

/// A store in Rasa's own layout.
pub enum RasaSource {
    /// Rasa's SQL `events` table (read as it is, never migrated).
    Sql(SqlStore),
    /// Rasa's Redis `tracker:<id>` values.
    Redis(RedisStore),
    /// Rasa's MongoDB `conversations` documents.
    Mongo(MongoStore),
    /// Rasa's DynamoDB `states` items, in the named table.
    Dynamo(DynamoStore, String),
}

impl RasaSource {
    /// Opens the store an endpoints.yml written for Rasa configures.
    pub async fn open(path: &Path) -> Result<Self> {
        let config = StoreConfig::from_endpoints_file(path)?;
        let name = config
            .store_type
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut keys = config.keys;
        for key in tracker_store::ENDPOINT_KEYS {
            keys.remove(*key);
        }
        match name.as_str() {
            "sql" | "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlite" => {
                let dialect = match name.as_str() {
                    "postgres" | "postgresql" => Some("postgresql"),
                    "mysql" | "mariadb" => Some("mysql"),
                    "sqlite" => Some("sqlite"),
                    _ => None,
                };
                if let Some(dialect) = dialect {
                    keys.entry("dialect")
                        .or_insert_with(|| Value::String(dialect.to_owned()));
                }
                let mut sql: SqlConfig = serde_json::from_value(Value::Object(keys))
                    .map_err(|e| Error::config_with("invalid SQL store configuration", e))?;
                // Rasa's table is read as it is.
                sql.migrate = false;
                Ok(Self::Sql(SqlStore::connect(&sql).await?))
            }
            "redis" => {
                let redis: RedisConfig = serde_json::from_value(Value::Object(keys))
                    .map_err(|e| Error::config_with("invalid Redis store configuration", e))?;
                Ok(Self::Redis(RedisStore::connect(&redis).await?))
            }
            "" | "memory" | "in_memory" => Err(Error::config(
                "Rasa's in-memory tracker store keeps nothing to migrate from",
            )),
            "mongod" | "mongo" | "mongodb" => {
                let mut mongo: MongoConfig = serde_json::from_value(Value::Object(keys))
                    .map_err(|e| Error::config_with("invalid MongoDB store configuration", e))?;
                // Rasa's collection is read as it is.
                mongo.ensure_indexes = false;
                Ok(Self::Mongo(MongoStore::connect(&mongo).await?))
            }
            "dynamo" | "dynamodb" => {
                let text = |key: &str| keys.get(key).and_then(Value::as_str).map(str::to_owned);
                let table = text("table_name").unwrap_or_else(|| "states".to_owned());
                let region = text("region").unwrap_or_else(|| "us-east-1".to_owned());
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(region));
                if let Some(url) = text("endpoint_url") {
                    loader = loader.endpoint_url(url);
                }
                let client = aws_sdk_dynamodb::Client::new(&loader.load().await);
                // Rasa's table is only read; the store's own table is not used.
                Ok(Self::Dynamo(DynamoStore::new(client, table.clone()), table))
            }
            other => Err(Error::config(format!(
                "unknown Rasa tracker store type {other:?}: expected sql, redis, mongod or dynamo"
            ))),
        }
    }

    /// Every conversation id Rasa stored.
    pub async fn sender_ids(&self) -> Result<Vec<String>> {
        match self {
            Self::Sql(store) => store.rasa_sender_ids().await,
            Self::Redis(store) => store.rasa_sender_ids().await,
            Self::Mongo(store) => store.rasa_sender_ids().await,
            Self::Dynamo(store, table) => store.rasa_sender_ids(table).await,
        }
    }

    /// One conversation's events, in Rasa's order.
    pub async fn read(&self, sender_id: &str) -> Result<Option<Vec<Event>>> {
        match self {
            Self::Sql(store) => store.read_rasa(sender_id).await,
            Self::Redis(store) => Ok(store
                .read_rasa(sender_id)
                .await?
                .map(|conversation| conversation.events)),
            Self::Mongo(store) => Ok(store
                .read_rasa(sender_id)
                .await?
                .map(|conversation| conversation.events)),
            Self::Dynamo(store, table) => Ok(store
                .read_rasa(table, sender_id)
                .await?
                .map(|conversation| conversation.events)),
        }
    }
}
