//! Configuration of the in-memory store.

use serde::Deserialize;

/// Configuration of [`MemoryStore`](crate::MemoryStore). Rasa's `InMemoryTrackerStore` takes
/// no options; this store takes only `outbox`. The type exists so every backend is built the
/// same way, and an `endpoints.yml` section with keys for another store is an error here
/// rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Keep an outbox for a relay (see `tracker_core::outbox`). Default `false`.
    pub outbox: bool,
}

impl MemoryConfig {
    /// The default configuration: no outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether the store keeps an outbox.
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }
}
