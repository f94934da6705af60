//! Configuration of the in-memory store.

use serde::Deserialize;

/// Configuration of [`MemoryStore`](crate::MemoryStore). Rasa's `InMemoryTrackerStore` takes
/// no options, and neither does this store; the type exists so every backend is built the
/// same way, and an `endpoints.yml` section with keys for another store is an error here
/// rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {}

impl MemoryConfig {
    /// The default (and only) configuration.
    pub fn new() -> Self {
        Self::default()
    }
}
