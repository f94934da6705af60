//! Building a store, or a reader of what Rasa wrote, from configuration, by type name.

use std::sync::Arc;

use futures::FutureExt;
use tracker_core::{Error, JsonMap, RasaSource, Registration, Result, Store, StoreFuture};

use crate::broker_entry::BrokerEntry;
use crate::builtins::{self, BUILTINS};
use crate::endpoints::{ENDPOINT_KEYS, StoreConfig};
use crate::migrate::{self, SchemaSetup};

/// A custom store's factory.
type Factory = Arc<dyn Fn(JsonMap) -> StoreFuture + Send + Sync>;

/// How an entry builds its store.
enum Kind {
    /// A backend's registration: its keys are known, and it may read Rasa's layout.
    Backend(Registration),
    /// A factory given to [`Registry::register`]: it checks its own keys.
    Custom(Factory),
}

/// One registered type.
struct Entry {
    /// The type name, matched exactly.
    name: String,
    /// Further names that select it, matched case-insensitively.
    aliases: &'static [&'static str],
    kind: Kind,
    /// How to set up its store's schema, if the registry knows (the built-in backends).
    schema: Option<SchemaSetup>,
}

impl Entry {
    fn matches_alias(&self, name: &str) -> bool {
        self.aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    }

    /// The keys the store reads; `None` when it checks its own.
    fn known_keys(&self) -> Option<&'static [&'static str]> {
        match &self.kind {
            Kind::Backend(registration) => Some((registration.keys)()),
            Kind::Custom(_) => None,
        }
    }
}

/// Store types by name, each with the factory that builds it from its configuration keys —
/// the counterpart of Rasa's `tracker_store.type`, without linker tricks and without a silent
/// fallback to the in-memory store.
///
/// [`Registry::with_builtins`] holds the [`Registration`] of every backend this build's
/// features enable; [`Registry::register`] adds a custom store by name, and
/// [`Registry::register_backend`] a whole registration (aliases, known keys, a reader of
/// Rasa's layout).
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
    /// In registration order; later entries win.
    entries: Vec<Entry>,
    /// The event broker types, in registration order; later entries win.
    pub(crate) brokers: Vec<BrokerEntry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .field("broker_names", &self.broker_names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the registration of every built-in backend this build's features
    /// enable (`tracker_memory::REGISTRATION`, `tracker_sql::REGISTRATION`, ...), and of
    /// every built-in event broker they enable (`tracker_broker::REGISTRATIONS`, features
    /// `broker-rabbitmq`, `broker-kafka`, `broker-sql`, `broker-file`).
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        for registration in builtins::REGISTRATIONS {
            registry.register_backend(*registration);
        }
        for registration in builtins::broker_registrations() {
            registry.register_broker_backend(registration);
        }
        registry
    }

    /// Registers a backend: its type name and aliases, the keys it reads (others are reported
    /// with a warning and not passed on), its store factory and, if it has one, its reader of
    /// Rasa's layout for [`Registry::open_rasa_source`]. A registration with the name of one
    /// already registered replaces it.
    pub fn register_backend(&mut self, registration: Registration) {
        self.entries.retain(|entry| entry.name != registration.name);
        self.entries.push(Entry {
            name: registration.name.to_owned(),
            aliases: registration.aliases,
            kind: Kind::Backend(registration),
            schema: registration.ensure_schema,
        });
    }

    /// Registers a custom store type (the counterpart of Rasa's class path). The factory gets
    /// every configuration key but the type, `${...}` already expanded, and checks them
    /// itself. The name is matched exactly; registering a built-in's name replaces the
    /// built-in's factory, for its aliases too.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(JsonMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Store>>> + Send + 'static,
    {
        let name = name.into();
        let factory: Factory = Arc::new(move |keys| factory(keys).boxed());
        match self.entries.iter_mut().find(|entry| entry.name == name) {
            Some(entry) => {
                entry.kind = Kind::Custom(factory);
                entry.schema = None;
            }
            None => self.entries.push(Entry {
                name,
                aliases: &[],
                kind: Kind::Custom(factory),
                schema: None,
            }),
        }
    }

    /// The registered type names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The keys of `config` its store does not read (they would be ignored); empty for custom
    /// stores and unknown types.
    pub fn unknown_keys(&self, config: &StoreConfig) -> Vec<String> {
        self.resolve(config)
            .ok()
            .and_then(|(entry, _)| entry.known_keys())
            .map(|known| config.unknown_keys(known))
            .unwrap_or_default()
    }

    /// The registration of the backend `name` selects — its type name, or an alias matched
    /// case-insensitively, as in `endpoints.yml` — with its type name, aliases and keys;
    /// `None` for an unknown name and for custom stores registered with
    /// [`Registry::register`].
    ///
    /// ```
    /// use tracker_store::Registry;
    ///
    /// let registry = Registry::with_builtins();
    /// let sql = registry.registration("PostgreSQL").expect("the SQL backend");
    /// assert_eq!(sql.name, "sql");
    /// assert!((sql.keys)().contains(&"login_db"));
    /// assert!(registry.registration("acme.Store").is_none());
    /// ```
    pub fn registration(&self, name: &str) -> Option<&Registration> {
        match &self.find(name)?.kind {
            Kind::Backend(registration) => Some(registration),
            Kind::Custom(_) => None,
        }
    }

    /// The entry `name` selects: the latest registered under that exact name, else the latest
    /// with it as an alias.
    fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.name == name)
            .or_else(|| {
                self.entries
                    .iter()
                    .rev()
                    .find(|entry| entry.matches_alias(name))
            })
    }

    /// The entry `config`'s type selects, and the name it was selected by (lower case).
    fn resolve(&self, config: &StoreConfig) -> Result<(&Entry, String)> {
        let name = config.store_type.as_deref().unwrap_or("memory");
        if let Some(entry) = self.find(name) {
            return Ok((entry, name.to_ascii_lowercase()));
        }
        if let Some(builtin) = builtins::builtin(name) {
            let features = builtin
                .features
                .iter()
                .map(|feature| format!("`{feature}`"))
                .collect::<Vec<_>>();
            let features = match features.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            return Err(Error::config(format!(
                "the tracker store type {name:?} is not available in this build: enable the \
                 {features} feature of tracker-store; registered types: {}",
                self.names().join(", ")
            )));
        }
        Err(Error::config(format!(
            "unknown tracker store type {name:?}; registered types: {} \
             (register a custom store under this name, or use one of Rasa's: {}, or none for \
             memory)",
            self.names().join(", "),
            BUILTINS
                .iter()
                .map(|builtin| builtin.name)
                .filter(|name| *name != "memory")
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The keys to hand to `entry`'s factory: those the store reads (the others are reported
    /// with a warning naming them) without Rasa's HTTP endpoint keys.
    fn section_keys(&self, config: &StoreConfig, entry: &Entry) -> JsonMap {
        let unknown = entry
            .known_keys()
            .map(|known| config.unknown_keys(known))
            .unwrap_or_default();
        if !unknown.is_empty() {
            tracing::warn!(
                store_type = config.store_type.as_deref().unwrap_or("memory"),
                keys = ?unknown,
                "ignoring configuration keys the tracker store does not read"
            );
        }
        let mut keys = config.keys.clone();
        for key in &unknown {
            keys.shift_remove(key);
        }
        for key in ENDPOINT_KEYS {
            if keys.shift_remove(*key).is_some() {
                tracing::warn!(
                    key,
                    "ignoring an HTTP endpoint key in the tracker store section"
                );
            }
        }
        keys
    }

    /// Builds the store `config` describes. Keys the store does not read are reported with a
    /// warning naming them. A built-in backend gets the name the section used as well, so
    /// `type: postgresql` selects the SQL store on PostgreSQL.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown type (listing the registered ones) or one whose
    /// feature is off (naming the feature), and whatever the store's constructor returns.
    /// There is no fallback to another store.
    pub async fn build(&self, config: &StoreConfig) -> Result<Arc<dyn Store>> {
        let (entry, alias) = self.resolve(config)?;
        let keys = self.section_keys(config, entry);
        match &entry.kind {
            Kind::Backend(registration) => (registration.connect)(&alias, keys).await,
            Kind::Custom(factory) => factory(keys).await,
        }
    }

    /// Builds the store `config` describes without setting anything up at connect, for
    /// reading: the setup switches its backend reads ([`SETUP_SWITCHES`]: SQL and DynamoDB
    /// `migrate`, MongoDB `ensure_indexes`) are off whatever the section says, and the keys
    /// used only for setup ([`SETUP_ONLY_KEYS`]: SQL `login_db`) are not passed on. So no
    /// table, index or database is created and no migration runs; a schema that is missing
    /// or out of date is not repaired but makes the store's operations fail (run
    /// [`Registry::ensure_schema`] for that). The store can still write: not writing is up
    /// to the caller.
    ///
    /// Custom stores registered with [`Registry::register`] get their keys unchanged: the
    /// registry cannot tell what their factories do.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tracker_store::Result<()> {
    /// use tracker_store::{Registry, StoreConfig, TrackerStore};
    ///
    /// // Listing the conversations of Rasa's own `rasa.db` reads it and never migrates it.
    /// let config = StoreConfig::from_yaml("type: sqlite\ndb: rasa.db\nmigrate: true")?;
    /// let store = TrackerStore::from_arc(Registry::with_builtins().build_unchanged(&config).await?);
    /// for sender_id in store.keys().await? {
    ///     println!("{sender_id}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// [`SETUP_SWITCHES`]: crate::SETUP_SWITCHES
    /// [`SETUP_ONLY_KEYS`]: crate::SETUP_ONLY_KEYS
    ///
    /// # Errors
    /// As [`Registry::build`].
    pub async fn build_unchanged(&self, config: &StoreConfig) -> Result<Arc<dyn Store>> {
        let (entry, alias) = self.resolve(config)?;
        let keys = self.section_keys(config, entry);
        match &entry.kind {
            Kind::Backend(registration) => {
                let keys = migrate::without_setup(keys, (registration.keys)());
                (registration.connect)(&alias, keys).await
            }
            Kind::Custom(factory) => factory(keys).await,
        }
    }

    /// Sets up the schema of the store `config` describes — what its backend's
    /// `ensure_schema()` does: SQL migrations (creating the database from `login_db` first
    /// if the section names one), MongoDB indexes, the DynamoDB table; Redis and the
    /// in-memory store have nothing to set up — and returns a description of each change
    /// made, empty when there was nothing to do. Safe to run repeatedly and concurrently.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tracker_store::Result<()> {
    /// use tracker_store::{Registry, StoreConfig};
    ///
    /// let config = StoreConfig::from_yaml("type: in_memory")?;
    /// assert!(Registry::with_builtins().ensure_schema(&config).await?.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] as for [`Registry::build`], and for a type whose setup the registry
    /// does not know (custom stores, backends registered with
    /// [`Registry::register_backend`]); whatever connecting or the setup returns.
    pub async fn ensure_schema(&self, config: &StoreConfig) -> Result<Vec<String>> {
        let (entry, alias) = self.resolve(config)?;
        let Some(setup) = entry.schema else {
            return Err(Error::config(format!(
                "the tracker store type {:?} has no schema setup the registry knows: set up \
                 its schema with the store's own tools",
                entry.name
            )));
        };
        let keys = self.section_keys(config, entry);
        setup(&alias, keys).await
    }

    /// Opens, read-only, the conversations Rasa's own tracker store of `config`'s type wrote
    /// with this section (Rasa's SQL `events` table, its Redis `tracker:<id>` values, its
    /// MongoDB `conversations` documents, its DynamoDB items), to copy them with
    /// [`TrackerStore::import_from`](crate::TrackerStore::import_from). Nothing is created,
    /// migrated or changed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tracker_store::Result<()> {
    /// use tracker_store::{ErrorKind, Registry, StoreConfig};
    ///
    /// // Rasa's in-memory store keeps nothing to read.
    /// let config = StoreConfig::from_yaml("type: in_memory")?;
    /// let error = Registry::with_builtins()
    ///     .open_rasa_source(&config)
    ///     .await
    ///     .expect_err("nothing to read");
    /// assert_eq!(error.kind(), ErrorKind::Config);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] as for [`Registry::build`], and for a type without a reader of
    /// Rasa's layout (the in-memory store, custom stores registered with
    /// [`Registry::register`]); whatever opening the source returns.
    pub async fn open_rasa_source(&self, config: &StoreConfig) -> Result<Arc<dyn RasaSource>> {
        let (entry, alias) = self.resolve(config)?;
        let open = match &entry.kind {
            Kind::Backend(Registration {
                rasa_source: Some(open),
                ..
            }) => *open,
            Kind::Backend(registration) => {
                return Err(Error::config(format!(
                    "the tracker store type {alias:?} has no reader of Rasa's layout: Rasa's {} \
                     tracker store keeps nothing to read back",
                    registration.name
                )));
            }
            Kind::Custom(_) => {
                return Err(Error::config(format!(
                    "the custom tracker store type {:?} has no reader of Rasa's layout \
                     (register a `Registration` with a `rasa_source` through \
                     `Registry::register_backend` to give it one)",
                    entry.name
                )));
            }
        };
        let keys = self.section_keys(config, entry);
        open(&alias, keys).await
    }
}

/// Every built-in type name with the cargo features of tracker-store that enable it (any
/// one of them), whether or not this build has them, for documentation and errors.
pub fn builtin_features() -> Vec<(&'static str, &'static [&'static str])> {
    BUILTINS
        .iter()
        .map(|builtin| (builtin.name, builtin.features))
        .collect()
}

/// Every built-in event broker type name with the cargo feature of tracker-store that enables
/// it, whether or not this build has it, for documentation and errors.
pub fn builtin_broker_features() -> Vec<(&'static str, &'static [&'static str])> {
    builtins::BROKER_BUILTINS
        .iter()
        .map(|builtin| (builtin.name, builtin.features))
        .collect()
}
