//! The built-in stores this build's features enable.

use crate::registry::Registry;

/// Keys of Rasa's `SQLTrackerStore` plus this store's own.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) const SQL_KEYS: &[&str] = &[
    "dialect",
    "url",
    "port",
    "db",
    "username",
    "password",
    "login_db",
    "query",
    "schema",
    "pool_size",
    "pool_timeout",
    "query_timeout",
    "migrate",
];

/// Keys of Rasa's `RedisTrackerStore` plus this store's own.
#[cfg(feature = "redis")]
pub(crate) const REDIS_KEYS: &[&str] = &[
    "url",
    "port",
    "db",
    "username",
    "password",
    "key_prefix",
    "record_exp",
    "use_ssl",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "cluster",
    "sentinel_service_name",
    "sentinel_username",
    "sentinel_password",
    "pool_size",
    "timeout",
];

/// Keys of Rasa's `MongoTrackerStore` plus this store's own.
#[cfg(feature = "mongo")]
pub(crate) const MONGO_KEYS: &[&str] = &[
    "url",
    "db",
    "username",
    "password",
    "auth_source",
    "collection",
    "ensure_indexes",
    "bucket_events",
    "bucket_bytes",
];

/// Keys of Rasa's `DynamoTrackerStore` plus this store's own.
#[cfg(feature = "dynamo")]
pub(crate) const DYNAMO_KEYS: &[&str] = &["table_name", "region", "endpoint_url", "migrate"];

pub(crate) fn register(registry: &mut Registry) {
    #[cfg(feature = "memory")]
    registry.register_builtin("memory", &[], |_keys| async {
        let store: std::sync::Arc<dyn tracker_core::Store> =
            std::sync::Arc::new(tracker_memory::MemoryStore::new());
        Ok(store)
    });

    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    registry.register_builtin("sql", SQL_KEYS, |keys| async move {
        let config: tracker_sql::SqlConfig =
            serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| {
                tracker_core::Error::config_with("invalid SQL tracker store configuration", e)
            })?;
        let store: std::sync::Arc<dyn tracker_core::Store> =
            std::sync::Arc::new(tracker_sql::SqlStore::connect(&config).await?);
        Ok(store)
    });

    #[cfg(feature = "redis")]
    registry.register_builtin("redis", REDIS_KEYS, |keys| async move {
        let config: tracker_redis::RedisConfig =
            serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| {
                tracker_core::Error::config_with("invalid Redis tracker store configuration", e)
            })?;
        let store: std::sync::Arc<dyn tracker_core::Store> =
            std::sync::Arc::new(tracker_redis::RedisStore::connect(&config).await?);
        Ok(store)
    });

    #[cfg(feature = "mongo")]
    registry.register_builtin("mongod", MONGO_KEYS, |keys| async move {
        let config: tracker_mongo::MongoConfig =
            serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| {
                tracker_core::Error::config_with("invalid MongoDB tracker store configuration", e)
            })?;
        let store: std::sync::Arc<dyn tracker_core::Store> =
            std::sync::Arc::new(tracker_mongo::MongoStore::connect(&config).await?);
        Ok(store)
    });

    #[cfg(feature = "dynamo")]
    registry.register_builtin("dynamo", DYNAMO_KEYS, |keys| async move {
        let config: tracker_dynamo::DynamoConfig =
            serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| {
                tracker_core::Error::config_with("invalid DynamoDB tracker store configuration", e)
            })?;
        let store: std::sync::Arc<dyn tracker_core::Store> =
            std::sync::Arc::new(tracker_dynamo::DynamoStore::connect(&config).await?);
        Ok(store)
    });

    let _ = registry;
}
