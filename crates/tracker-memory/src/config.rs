//! Configuration of the in-memory store.

/// Configuration of [`MemoryStore`](crate::MemoryStore). Rasa's `InMemoryTrackerStore` takes
/// no options, and neither does this store; the type exists so every backend is built the
/// same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {}

impl MemoryConfig {
    /// The default (and only) configuration.
    pub fn new() -> Self {
        Self::default()
    }
}
