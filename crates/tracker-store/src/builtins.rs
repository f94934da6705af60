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
    "pool_size",
    "migrate",
];

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

    let _ = registry;
}
