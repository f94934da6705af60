//! How the SQL store registers itself with a registry: [`REGISTRATION`] and the factories
//! behind it, a store or Rasa's table read as it is, from the keys of an `endpoints.yml`
//! section.

use std::sync::Arc;

use tracker_core::{
    JsonMap, RasaSource, RasaSourceFuture, Registration, Result, SchemaFuture, Store, StoreFuture,
};

use crate::config::SqlConfig;
use crate::rasa::SqlRasaSource;
use crate::store::SqlStore;

/// The SQL store as a registry sees it: type `sql`, also selected by `sqlite`, `postgres`,
/// `postgresql`, `mysql` and `mariadb`, which imply that dialect unless the section sets
/// `dialect`. Reads the keys of [`SqlConfig`]; its Rasa source is [`SqlRasaSource`], which
/// changes nothing in the database.
pub const REGISTRATION: Registration = Registration {
    name: "sql",
    aliases: &[
        "sql",
        "sqlite",
        "postgres",
        "postgresql",
        "mysql",
        "mariadb",
    ],
    keys: tracker_core::config::field_names::<SqlConfig>,
    connect,
    rasa_source: Some(rasa_source),
    ensure_schema: Some(ensure_schema),
};

/// The dialect a type name implies (`postgresql`, `mariadb`, ...); `None` for `sql`.
fn implied_dialect(alias: &str) -> Option<&'static str> {
    match alias.to_ascii_lowercase().as_str() {
        "sqlite" => Some("sqlite"),
        "postgres" | "postgresql" => Some("postgresql"),
        "mysql" | "mariadb" => Some("mysql"),
        _ => None,
    }
}

/// The configuration of a section selected by `alias`: the alias's dialect unless the
/// section sets `dialect`.
/// The configuration a section of type `alias` describes: `sqlite`, `postgres`,
/// `postgresql`, `mysql` and `mariadb` imply that dialect unless the section sets `dialect`.
///
/// # Errors
/// [`tracker_core::Error::Config`] for a section that is not a valid SQL configuration.
pub fn config_from_section(alias: &str, keys: JsonMap) -> Result<SqlConfig> {
    config(alias, keys)
}

fn config(alias: &str, mut keys: JsonMap) -> Result<SqlConfig> {
    if let Some(dialect) = implied_dialect(alias) {
        keys.entry("dialect")
            .or_insert_with(|| serde_json::Value::String(dialect.to_owned()));
    }
    tracker_core::config::from_keys("the SQL tracker store", keys)
}

/// Connects a store as the section says.
fn connect(alias: &str, keys: JsonMap) -> StoreFuture {
    let config = config(alias, keys);
    Box::pin(async move {
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&config?).await?);
        Ok(store)
    })
}

/// Opens the section's database as Rasa wrote it, changing nothing.
/// Runs the migrations on the section's database (creating it from `login_db` first where
/// the section says so), whatever its `migrate` key says.
fn ensure_schema(alias: &str, mut keys: JsonMap) -> SchemaFuture {
    keys.insert("migrate".to_owned(), serde_json::Value::Bool(false));
    let config = config(alias, keys);
    Box::pin(async move { SqlStore::connect(&config?).await?.ensure_schema().await })
}

fn rasa_source(alias: &str, keys: JsonMap) -> RasaSourceFuture {
    let config = config(alias, keys);
    Box::pin(async move {
        let source: Arc<dyn RasaSource> = Arc::new(SqlRasaSource::connect(&config?).await?);
        Ok(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dialect;

    /// The keys of Rasa 3.6's `SQLTrackerStore` that reach it from `endpoints.yml`.
    const RASA_KEYS: [&str; 8] = [
        "dialect", "url", "port", "db", "username", "password", "login_db", "query",
    ];

    fn keys(value: serde_json::Value) -> JsonMap {
        match value {
            serde_json::Value::Object(keys) => keys,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn every_rasa_key_is_accepted() {
        let declared = (REGISTRATION.keys)();
        for key in RASA_KEYS {
            assert!(
                declared.contains(&key),
                "{key} is not declared: {declared:?}"
            );
        }
        let section = keys(serde_json::json!({
            "dialect": "postgresql", "url": "db.internal", "port": "5433", "db": "rasa",
            "username": "rasa", "password": "secret", "login_db": "postgres",
            "query": {"sslmode": "require"}, "schema": "bots", "pool_size": 4,
            "pool_timeout": 5, "query_timeout": 7.5, "migrate": false, "outbox": true
        }));
        assert_eq!(
            section.len(),
            declared.len(),
            "a declared key is missing here"
        );
        let parsed = config("sql", section).expect("a section with every key");
        assert_eq!(parsed.port, Some(5433));
        assert!(!parsed.migrate);
        assert!(parsed.outbox);
        let unknown =
            config("sql", keys(serde_json::json!({"dbname": "rasa"}))).expect_err("an unknown key");
        assert_eq!(unknown.kind(), tracker_core::ErrorKind::Config);
    }

    #[test]
    fn the_alias_implies_the_dialect() {
        let dialect = |alias: &str, section: serde_json::Value| {
            let config = config(alias, keys(section)).expect("config");
            Dialect::parse(&config.dialect).expect("dialect")
        };
        let empty = serde_json::json!({});
        assert_eq!(dialect("sql", empty.clone()), Dialect::Sqlite);
        assert_eq!(dialect("SQLite", empty.clone()), Dialect::Sqlite);
        assert_eq!(dialect("postgres", empty.clone()), Dialect::Postgres);
        assert_eq!(dialect("postgresql", empty.clone()), Dialect::Postgres);
        assert_eq!(dialect("mysql", empty.clone()), Dialect::Mysql);
        assert_eq!(dialect("mariadb", empty), Dialect::Mysql);
        // The section's own `dialect` wins.
        let mysql = serde_json::json!({"dialect": "mysql+pymysql"});
        assert_eq!(dialect("postgresql", mysql), Dialect::Mysql);
        for alias in REGISTRATION.aliases {
            assert!(REGISTRATION.matches(&alias.to_ascii_uppercase()));
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn factories_build_a_store_and_a_source() {
        let path = std::env::temp_dir().join(format!(
            "tracker-sql-registration-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let section = || keys(serde_json::json!({"db": path.display().to_string()}));
        let store = (REGISTRATION.connect)("SQLite", section())
            .await
            .expect("a store");
        assert_eq!(store.name(), "sqlite");
        let source = (REGISTRATION.rasa_source.expect("a Rasa source"))("sqlite", section())
            .await
            .expect("a source");
        assert!(source.sender_ids().await.expect("ids").is_empty());
        let refused = (REGISTRATION.connect)("sql", keys(serde_json::json!({"table": "x"})))
            .await
            .expect_err("an unknown key");
        assert_eq!(refused.kind(), tracker_core::ErrorKind::Config);
        drop((store, source));
        let _ = std::fs::remove_file(&path);
    }
}
