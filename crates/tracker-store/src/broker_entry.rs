//! One event broker type as the registry keeps it.

use std::sync::Arc;

use tracker_core::JsonMap;
use tracker_core::broker::{BrokerFuture, BrokerRegistration};

/// A custom broker's factory.
pub(crate) type BrokerFactory = Arc<dyn Fn(JsonMap) -> BrokerFuture + Send + Sync>;

/// How an entry builds its broker.
pub(crate) enum BrokerKind {
    /// A built-in broker's registration (or one given to [`Registry::register_broker_backend`](crate::Registry::register_broker_backend)).
    Backend(BrokerRegistration),
    /// A factory given to [`Registry::register_broker`](crate::Registry::register_broker).
    Custom(BrokerFactory),
}

/// One registered broker type.
pub(crate) struct BrokerEntry {
    /// The type name, matched exactly.
    pub(crate) name: String,
    /// Further names that select it, matched case-insensitively.
    pub(crate) aliases: &'static [&'static str],
    /// Whether a section without a type selects it.
    pub(crate) default: bool,
    pub(crate) kind: BrokerKind,
}

impl BrokerEntry {
    pub(crate) fn matches_alias(&self, name: &str) -> bool {
        self.aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    }
}
