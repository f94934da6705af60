//! Building a store from configuration, by type name.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tracker_core::{Error, JsonMap, Result, Store};

use crate::config::StoreConfig;

/// What a factory returns: a future of the built store.
pub type StoreFuture = BoxFuture<'static, Result<Arc<dyn Store>>>;

type Factory = Arc<dyn Fn(JsonMap) -> StoreFuture + Send + Sync>;

struct Entry {
    factory: Factory,
    /// The keys the store reads, for warning about the others; `None` for custom stores,
    /// which check their own keys.
    known_keys: Option<&'static [&'static str]>,
}

/// The built-in store types, their aliases, and the cargo feature that enables each.
struct Builtin {
    name: &'static str,
    aliases: &'static [&'static str],
    feature: &'static str,
    /// What to say when the type is not in this build.
    unavailable: &'static str,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "memory",
        aliases: &["memory", "in_memory", "inmemory", "in-memory"],
        feature: "memory",
        unavailable: "enable the `memory` feature of tracker-store",
    },
    Builtin {
        name: "sql",
        aliases: &[
            "sql",
            "sqlite",
            "postgres",
            "postgresql",
            "mysql",
            "mariadb",
        ],
        feature: "sqlite`, `postgres` or `mysql",
        unavailable: "enable the `sqlite`, `postgres` or `mysql` feature of tracker-store",
    },
    Builtin {
        name: "redis",
        aliases: &["redis"],
        feature: "redis",
        unavailable: "enable the `redis` feature of tracker-store",
    },
    Builtin {
        name: "mongod",
        aliases: &["mongod", "mongo", "mongodb"],
        feature: "mongo",
        unavailable: "enable the `mongo` feature of tracker-store",
    },
    Builtin {
        name: "dynamo",
        aliases: &["dynamo", "dynamodb"],
        feature: "dynamo",
        unavailable: "enable the `dynamo` feature of tracker-store",
    },
];

/// The built-in type an alias names (compared case-insensitively), and the SQL dialect the
/// alias implies.
fn builtin(name: &str) -> Option<(&'static Builtin, Option<&'static str>)> {
    let lower = name.to_ascii_lowercase();
    let builtin = BUILTINS
        .iter()
        .find(|b| b.aliases.contains(&lower.as_str()))?;
    let dialect = match lower.as_str() {
        "sqlite" => Some("sqlite"),
        "postgres" | "postgresql" => Some("postgresql"),
        "mysql" | "mariadb" => Some("mysql"),
        _ => None,
    };
    Some((builtin, dialect))
}

/// Store types by name, each with the factory that builds it from its configuration keys —
/// the counterpart of Rasa's `tracker_store.type`, without linker tricks and without a silent
/// fallback to the in-memory store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tracker_store::Result<()> {
/// use tracker_store::{Registry, StoreConfig};
///
/// let registry = Registry::with_builtins();
/// let config = StoreConfig::from_endpoints_yaml("tracker_store:\n  type: in_memory\n")?;
/// let store = registry.build(&config).await?;
/// assert_eq!(store.name(), "memory");
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every built-in store this build's features enable.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        crate::builtins::register(&mut registry);
        registry
    }

    /// Registers a custom store type (the counterpart of Rasa's class path). The factory gets
    /// every configuration key but the type, `${...}` already expanded. The name is matched
    /// exactly; registering a built-in's name replaces the built-in.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(JsonMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Store>>> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |keys| factory(keys).boxed());
        self.entries.insert(
            name.into(),
            Entry {
                factory,
                known_keys: None,
            },
        );
    }

    #[cfg_attr(
        not(any(
            feature = "memory",
            feature = "sqlite",
            feature = "postgres",
            feature = "mysql",
            feature = "redis",
            feature = "mongo",
            feature = "dynamo"
        )),
        allow(dead_code)
    )]
    pub(crate) fn register_builtin<F, Fut>(
        &mut self,
        name: &'static str,
        known_keys: &'static [&'static str],
        factory: F,
    ) where
        F: Fn(JsonMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Store>>> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |keys| factory(keys).boxed());
        self.entries.insert(
            name.to_owned(),
            Entry {
                factory,
                known_keys: Some(known_keys),
            },
        );
    }

    /// The registered type names.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The keys of `config` its store does not read (they would be ignored); empty for custom
    /// stores.
    pub fn unknown_keys(&self, config: &StoreConfig) -> Vec<String> {
        match self.resolve(config) {
            Ok((entry, _)) => entry
                .known_keys
                .map(|known| config.unknown_keys(known))
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    fn resolve(&self, config: &StoreConfig) -> Result<(&Entry, Option<&'static str>)> {
        let name = config.store_type.as_deref().unwrap_or("memory");
        if let Some(entry) = self.entries.get(name) {
            return Ok((entry, builtin(name).and_then(|(_, dialect)| dialect)));
        }
        if let Some((builtin, dialect)) = builtin(name) {
            if let Some(entry) = self.entries.get(builtin.name) {
                return Ok((entry, dialect));
            }
            return Err(Error::config(format!(
                "the tracker store type {name:?} is not available in this build: {}; \
                 registered types: {}",
                builtin.unavailable,
                self.names().join(", ")
            )));
        }
        Err(Error::config(format!(
            "unknown tracker store type {name:?}; registered types: {} \
             (register a custom store under this name, or use one of Rasa's: sql, redis, \
             mongod, dynamo, or none for memory)",
            self.names().join(", ")
        )))
    }

    /// Builds the store `config` describes. Keys the store does not read are reported with a
    /// warning naming them.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown type (listing the registered ones) or one whose
    /// feature is off (naming the feature), and whatever the store's constructor returns.
    /// There is no fallback to another store.
    pub async fn build(&self, config: &StoreConfig) -> Result<Arc<dyn Store>> {
        let (entry, dialect) = self.resolve(config)?;
        let unknown = self.unknown_keys(config);
        if !unknown.is_empty() {
            tracing::warn!(
                store_type = config.store_type.as_deref().unwrap_or("memory"),
                keys = ?unknown,
                "ignoring configuration keys the tracker store does not read"
            );
        }
        let mut keys = config.keys.clone();
        for key in &unknown {
            keys.remove(key);
        }
        for key in crate::config::ENDPOINT_KEYS {
            if keys.remove(*key).is_some() {
                tracing::warn!(
                    key,
                    "ignoring an HTTP endpoint key in the tracker store section"
                );
            }
        }
        if let Some(dialect) = dialect {
            keys.entry("dialect")
                .or_insert_with(|| serde_json::Value::String(dialect.to_owned()));
        }
        (entry.factory)(keys).await
    }
}

/// Every built-in type name with the feature that enables it, for documentation and errors.
pub fn builtin_features() -> Vec<(&'static str, &'static str)> {
    BUILTINS.iter().map(|b| (b.name, b.feature)).collect()
}
