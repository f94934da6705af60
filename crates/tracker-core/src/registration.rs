//! How a backend crate describes itself to a registry: its type name in `endpoints.yml`, its
//! aliases, the keys it reads and its factories.
//!
//! Each backend crate exports one [`Registration`] (e.g. `tracker_redis::REGISTRATION`);
//! the `tracker-store` registry is a list of them, one per enabled feature.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::Result;
use crate::event::JsonMap;
use crate::rasa::RasaSource;
use crate::store::Store;

/// What a store factory returns: a future of the built store.
pub type StoreFuture = BoxFuture<'static, Result<Arc<dyn Store>>>;

/// What a Rasa-source factory returns: a future of the opened source.
pub type RasaSourceFuture = BoxFuture<'static, Result<Arc<dyn RasaSource>>>;

/// What a schema setup returns: a future of the description of each change made.
pub type SchemaFuture = BoxFuture<'static, Result<Vec<String>>>;

/// A backend as a registry sees it.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The type name, as Rasa spells it in `endpoints.yml` (`sql`, `redis`, `mongod`,
    /// `dynamo`, `memory`).
    pub name: &'static str,
    /// Every name that selects this backend, lower case, the type name included; matched
    /// case-insensitively.
    pub aliases: &'static [&'static str],
    /// The configuration keys the backend reads (derived from its configuration struct).
    pub keys: fn() -> &'static [&'static str],
    /// Builds the store from the section's keys (`type` removed, `${...}` expanded); the first
    /// argument is the alias the section used (`postgresql` implies a dialect, say).
    pub connect: fn(&str, JsonMap) -> StoreFuture,
    /// Opens the same section's data in Rasa's own layout, read-only; `None` for a backend
    /// Rasa keeps nothing in (memory).
    pub rasa_source: Option<fn(&str, JsonMap) -> RasaSourceFuture>,
    /// Sets up the schema the same section describes (the backend's `ensure_schema()`) and
    /// returns what it changed; `None` for a backend whose setup a registry cannot run.
    pub ensure_schema: Option<fn(&str, JsonMap) -> SchemaFuture>,
}

impl Registration {
    /// Whether `name` selects this backend (case-insensitively).
    pub fn matches(&self, name: &str) -> bool {
        self.aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("aliases", &self.aliases)
            .field("keys", &(self.keys)())
            .field("rasa_source", &self.rasa_source.is_some())
            .field("ensure_schema", &self.ensure_schema.is_some())
            .finish_non_exhaustive()
    }
}
