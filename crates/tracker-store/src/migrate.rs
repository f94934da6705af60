//! Schema setup through the registry: opening a store without setting anything up; each
//! backend's `ensure_schema()` comes with its `Registration`.

use serde_json::Value;
use tracker_core::{JsonMap, SchemaFuture};

/// A backend's schema setup from a configuration section.
pub(crate) type SchemaSetup = fn(&str, JsonMap) -> SchemaFuture;

/// The keys that switch a backend's setup at connect on (SQL and DynamoDB `migrate`, MongoDB
/// `ensure_indexes`): a store opened unchanged gets each one its backend reads set to false.
pub const SETUP_SWITCHES: &[&str] = &["migrate", "ensure_indexes"];

/// The keys used only to set something up at connect (SQL `login_db`: the database to log
/// into to create the configured one): a store opened unchanged does not get them.
pub const SETUP_ONLY_KEYS: &[&str] = &["login_db"];

/// `keys` with every setup switch among `known` off and every setup-only key removed.
pub(crate) fn without_setup(mut keys: JsonMap, known: &[&str]) -> JsonMap {
    for switch in SETUP_SWITCHES {
        if known.contains(switch) {
            keys.insert((*switch).to_owned(), Value::Bool(false));
        }
    }
    for key in SETUP_ONLY_KEYS {
        keys.shift_remove(*key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_is_switched_off_only_where_the_backend_reads_the_switch() {
        let mut keys = JsonMap::new();
        keys.insert("migrate".into(), Value::Bool(true));
        keys.insert("login_db".into(), Value::from("postgres"));
        keys.insert("db".into(), Value::from("rasa"));
        let sql = without_setup(keys.clone(), &["migrate", "login_db", "db"]);
        assert_eq!(sql["migrate"], false);
        assert!(!sql.contains_key("login_db"));
        assert_eq!(sql["db"], "rasa");
        let mongo = without_setup(JsonMap::new(), &["ensure_indexes", "db"]);
        assert_eq!(mongo["ensure_indexes"], false);
        assert!(!mongo.contains_key("migrate"));
        assert!(without_setup(JsonMap::new(), &["url"]).is_empty());
    }

    #[test]
    fn every_enabled_builtin_has_a_setup() {
        for registration in crate::builtins::REGISTRATIONS {
            assert!(
                registration.ensure_schema.is_some(),
                "{}",
                registration.name
            );
        }
    }
}
