//! Event broker types in the registry: building the broker an `event_broker:` section names,
//! and the tracker store an `endpoints.yml` describes with its broker.

use std::sync::Arc;

use tracker_core::broker::BrokerRegistration;
use tracker_core::{Error, EventBroker, JsonMap, Result, TrackerStore};

use crate::broker_entry::{BrokerEntry, BrokerFactory, BrokerKind};
use crate::builtins;
use crate::endpoints::{ENDPOINT_KEYS, StoreConfig, read_endpoints};
use crate::event_broker::EventBrokerConfig;
use crate::registry::Registry;

impl Registry {
    /// Registers an event broker type: its name and aliases, whether a section without a type
    /// selects it, and its factory. A registration with the name of one already registered
    /// replaces it. [`Registry::with_builtins`] registers `tracker_broker::REGISTRATIONS`.
    pub fn register_broker_backend(&mut self, registration: BrokerRegistration) {
        self.brokers.retain(|entry| entry.name != registration.name);
        self.brokers.push(BrokerEntry {
            name: registration.name.to_owned(),
            aliases: registration.aliases,
            default: registration.default,
            kind: BrokerKind::Backend(registration),
        });
    }

    /// Registers a custom event broker type (the counterpart of the Python class path Rasa
    /// accepts in `event_broker.type`). The factory gets every key of the section but the
    /// type, `${...}` already expanded, and checks them itself; it should fail, rather than
    /// return a broker that drops messages, when the broker cannot be reached. The name is
    /// matched exactly; registering a built-in's name (`pika`, `kafka`, `sql`, `file`)
    /// replaces the built-in's factory, for its aliases (and, for `pika`, a section without a
    /// type) too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tracker_store::Result<()> {
    /// use std::sync::Arc;
    /// use tracker_store::{ChannelBroker, EventBroker, EventBrokerConfig, Registry};
    ///
    /// let mut registry = Registry::with_builtins();
    /// registry.register_broker("acme.InProcessBroker", |_keys| async {
    ///     let (broker, _receiver) = ChannelBroker::new(16);
    ///     Ok(Arc::new(broker) as Arc<dyn EventBroker>)
    /// });
    /// let config = EventBrokerConfig::from_yaml("type: acme.InProcessBroker")?.expect("a section");
    /// let _broker = registry.build_broker(&config).await?;
    /// # Ok(()) }
    /// ```
    pub fn register_broker<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(JsonMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn EventBroker>>> + Send + 'static,
    {
        let name = name.into();
        let factory: BrokerFactory = Arc::new(move |keys| Box::pin(factory(keys)));
        match self.brokers.iter_mut().find(|entry| entry.name == name) {
            Some(entry) => entry.kind = BrokerKind::Custom(factory),
            None => self.brokers.push(BrokerEntry {
                name,
                aliases: &[],
                default: false,
                kind: BrokerKind::Custom(factory),
            }),
        }
    }

    /// The registered event broker type names, sorted.
    pub fn broker_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.brokers.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The registration of the broker `broker_type` selects (`None`: the type of a section
    /// without one, RabbitMQ), with its name and keys; `None` for an unknown type and for
    /// custom brokers registered with [`Registry::register_broker`].
    ///
    /// ```
    /// use tracker_store::Registry;
    ///
    /// let registry = Registry::with_builtins();
    /// # #[cfg(feature = "broker-rabbitmq")]
    /// assert_eq!(registry.broker_registration(None).map(|r| r.name), Some("pika"));
    /// # #[cfg(feature = "broker-file")]
    /// assert_eq!(registry.broker_registration(Some("FILE")).map(|r| r.name), Some("file"));
    /// assert!(registry.broker_registration(Some("acme.Broker")).is_none());
    /// ```
    pub fn broker_registration(&self, broker_type: Option<&str>) -> Option<&BrokerRegistration> {
        match &self.find_broker(broker_type)?.kind {
            BrokerKind::Backend(registration) => Some(registration),
            BrokerKind::Custom(_) => None,
        }
    }

    /// The entry `broker_type` selects: the latest registered under that exact name, else the
    /// latest with it as an alias; for no type, the latest default.
    fn find_broker(&self, broker_type: Option<&str>) -> Option<&BrokerEntry> {
        let mut entries = self.brokers.iter().rev();
        match broker_type {
            None => entries.find(|entry| entry.default),
            Some(name) => entries
                .clone()
                .find(|entry| entry.name == name)
                .or_else(|| {
                    self.brokers
                        .iter()
                        .rev()
                        .find(|entry| entry.matches_alias(name))
                }),
        }
    }

    /// The entry `config`'s type selects, or an error naming the type.
    fn resolve_broker(&self, config: &EventBrokerConfig) -> Result<&BrokerEntry> {
        let broker_type = config.broker_type.as_deref();
        if let Some(entry) = self.find_broker(broker_type) {
            return Ok(entry);
        }
        let shown = broker_type.map_or_else(
            || "no type (RabbitMQ, Rasa's `pika`)".to_owned(),
            |name| format!("{name:?}"),
        );
        if let Some(builtin) = builtins::broker_builtin(broker_type) {
            let in_build = builtins::broker_registrations()
                .iter()
                .any(|registration| registration.name == builtin.name);
            if in_build {
                return Err(Error::config(format!(
                    "the event broker type {shown} is not registered in this registry                      (`Registry::with_builtins` registers it); registered broker types: {}",
                    self.broker_names_or_none()
                )));
            }
            return Err(Error::config(format!(
                "the event broker type {shown} is not available in this build: enable the `{}` \
                 feature of tracker-store; registered broker types: {}",
                builtin.features.join("` or `"),
                self.broker_names_or_none()
            )));
        }
        Err(Error::config(format!(
            "unknown event broker type {shown}; registered broker types: {} (register a custom \
             broker under this name, or use one of Rasa's: pika (or no type), kafka, sql, file)",
            self.broker_names_or_none()
        )))
    }

    fn broker_names_or_none(&self) -> String {
        let names = self.broker_names();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Builds and connects the event broker `config` describes. Rasa's HTTP endpoint keys
    /// (`params`, `headers`, ...), which Rasa's `EndpointConfig` consumes, are left out with a
    /// warning; a built-in broker rejects any other key it does not read, naming it.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown type (listing the registered ones), one whose feature
    /// is off (naming the feature) or an invalid section; [`Error::Unavailable`] when the
    /// broker cannot be reached. There is never a silent "no broker".
    pub async fn build_broker(&self, config: &EventBrokerConfig) -> Result<Arc<dyn EventBroker>> {
        let entry = self.resolve_broker(config)?;
        let mut keys = config.keys.clone();
        for key in ENDPOINT_KEYS {
            if keys.shift_remove(*key).is_some() {
                tracing::warn!(
                    key,
                    "ignoring an HTTP endpoint key in the event broker section"
                );
            }
        }
        let built = match &entry.kind {
            BrokerKind::Backend(registration) => (registration.connect)(keys).await,
            BrokerKind::Custom(factory) => factory(keys).await,
        };
        built.map_err(|error| {
            error.with_context(&format!("event broker `{}`", entry.name), "connect", None)
        })
    }

    /// Builds the tracker store an `endpoints.yml` file describes: its `tracker_store:`
    /// section (see [`Registry::build`]), publishing to the broker of its `event_broker:`
    /// section if it has one (see [`Registry::build_broker`] and
    /// [`TrackerStore::with_event_broker`]).
    ///
    /// # Errors
    /// As [`Registry::build`] and [`Registry::build_broker`]: an unknown or unavailable
    /// broker type and a broker that cannot be reached are errors, never a store without
    /// its broker.
    pub async fn open_endpoints_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<TrackerStore> {
        self.open_endpoints_yaml(&read_endpoints(path.as_ref())?)
            .await
    }

    /// Builds the tracker store, with its event broker, that an `endpoints.yml` text
    /// describes (see [`Registry::open_endpoints_file`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tracker_store::Result<()> {
    /// use tracker_store::Registry;
    ///
    /// let store = Registry::with_builtins()
    ///     .open_endpoints_yaml("tracker_store:\n  type: in_memory\n")
    ///     .await?;
    /// assert!(store.publish_stats().is_none(), "no event_broker: section, no broker");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Registry::open_endpoints_file`].
    pub async fn open_endpoints_yaml(&self, text: &str) -> Result<TrackerStore> {
        let store_config = StoreConfig::from_endpoints_yaml(text)?;
        let broker_config = EventBrokerConfig::from_endpoints_yaml(text)?;
        let broker = match &broker_config {
            Some(config) => Some(self.build_broker(config).await?),
            None => None,
        };
        let store = TrackerStore::from_arc(self.build(&store_config).await?);
        Ok(match broker {
            Some(broker) => store.with_event_broker(broker),
            None => store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> EventBrokerConfig {
        EventBrokerConfig::from_yaml(text)
            .expect("parses")
            .expect("a section")
    }

    /// In a build without a broker feature, its type is an error naming the feature.
    #[tokio::test]
    async fn a_broker_whose_feature_is_off_names_the_feature() {
        let registry = Registry::with_builtins();
        let cases = [
            (
                cfg!(feature = "broker-rabbitmq"),
                "url: localhost",
                "broker-rabbitmq",
            ),
            (
                cfg!(feature = "broker-kafka"),
                "type: kafka",
                "broker-kafka",
            ),
            (cfg!(feature = "broker-sql"), "type: SQL", "broker-sql"),
        ];
        for (enabled, text, feature) in cases {
            if enabled {
                continue;
            }
            let error = registry
                .build_broker(&section(text))
                .await
                .expect_err("not in this build");
            assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
            assert!(
                error.to_string().contains(&format!("`{feature}` feature")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_type_is_named_and_never_a_silent_no_broker() {
        let error = Registry::with_builtins()
            .build_broker(&section("type: rasa.core.brokers.MyBroker"))
            .await
            .expect_err("unknown");
        assert_eq!(error.kind(), tracker_core::ErrorKind::Config);
        assert!(
            error.to_string().contains("\"rasa.core.brokers.MyBroker\""),
            "{error}"
        );
    }
}
