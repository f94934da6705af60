//! How the in-memory store registers itself with a registry.

use std::sync::Arc;

use futures::FutureExt;
use tracker_core::{JsonMap, Registration, SchemaFuture, Store, StoreFuture};

use crate::{MemoryConfig, MemoryStore};

/// The in-memory store as a registry sees it: type `memory` (also `in_memory`, `inmemory`,
/// `in-memory`; Rasa's `InMemoryTrackerStore`, its default when no type is given), no keys,
/// and nothing Rasa keeps to read back.
pub const REGISTRATION: Registration = Registration {
    name: "memory",
    aliases: &["memory", "in_memory", "inmemory", "in-memory"],
    keys: tracker_core::config::field_names::<MemoryConfig>,
    connect,
    rasa_source: None,
    ensure_schema: Some(ensure_schema),
};

/// The in-memory store has no schema: checks the section and changes nothing.
fn ensure_schema(_alias: &str, keys: JsonMap) -> SchemaFuture {
    let config =
        tracker_core::config::from_keys::<MemoryConfig>("the in-memory tracker store", keys);
    async move {
        config?;
        Ok(Vec::new())
    }
    .boxed()
}

fn connect(_alias: &str, keys: JsonMap) -> StoreFuture {
    let config =
        tracker_core::config::from_keys::<MemoryConfig>("the in-memory tracker store", keys);
    async move {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::connect(&config?).await?);
        Ok(store)
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_from_an_empty_section_and_rejects_keys() {
        assert_eq!((REGISTRATION.keys)(), ["outbox"]);
        let store = (REGISTRATION.connect)("in_memory", JsonMap::new())
            .await
            .expect("no keys");
        assert_eq!(store.name(), "memory");
        assert!(store.outbox().is_none(), "no outbox unless asked for");
        let mut keys = JsonMap::new();
        keys.insert("outbox".into(), serde_json::Value::from("true"));
        let store = (REGISTRATION.connect)("memory", keys)
            .await
            .expect("outbox as Rasa-style text");
        assert!(store.outbox().is_some());
        let mut keys = JsonMap::new();
        keys.insert("url".into(), serde_json::Value::from("localhost"));
        let error = (REGISTRATION.connect)("memory", keys)
            .await
            .expect_err("a key the store does not read");
        assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
        assert!(REGISTRATION.matches("In_Memory"));
    }
}
