//! Schema setup through the registry: opening a store without setting anything up, and each
//! built-in backend's `ensure_schema()` run from a configuration section.

use futures::future::BoxFuture;
use serde_json::Value;
use tracker_core::{JsonMap, Result};

/// The future of a schema setup: a description of each change it made.
pub(crate) type SchemaFuture = BoxFuture<'static, Result<Vec<String>>>;

/// Sets up the schema of a backend's store for a section: the alias the section used and its
/// keys, as a registration's `connect` gets them.
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

/// The schema setup of the built-in backend named `name`, if this build has it.
pub(crate) fn builtin_setup(name: &str) -> Option<SchemaSetup> {
    match name {
        #[cfg(feature = "memory")]
        "memory" => Some(memory),
        #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
        "sql" => Some(sql),
        #[cfg(feature = "redis")]
        "redis" => Some(redis),
        #[cfg(feature = "mongo")]
        "mongod" => Some(mongo),
        #[cfg(feature = "dynamo")]
        "dynamo" => Some(dynamo),
        _ => None,
    }
}

/// The in-memory store has nothing to set up.
#[cfg(feature = "memory")]
fn memory(_alias: &str, keys: JsonMap) -> SchemaFuture {
    let config = tracker_core::config::from_keys::<tracker_memory::MemoryConfig>(
        "the in-memory tracker store",
        keys,
    );
    Box::pin(async move {
        config?;
        Ok(Vec::new())
    })
}

/// The dialect an SQL alias implies (as the SQL registration reads it).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn implied_dialect(alias: &str) -> Option<&'static str> {
    match alias.to_ascii_lowercase().as_str() {
        "sqlite" => Some("sqlite"),
        "postgres" | "postgresql" => Some("postgresql"),
        "mysql" | "mariadb" => Some("mysql"),
        _ => None,
    }
}

/// Connects without migrating (creating the database from `login_db` if the section says
/// so), then runs the migrations.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn sql(alias: &str, mut keys: JsonMap) -> SchemaFuture {
    if let Some(dialect) = implied_dialect(alias) {
        keys.entry("dialect")
            .or_insert_with(|| Value::String(dialect.to_owned()));
    }
    keys.insert("migrate".to_owned(), Value::Bool(false));
    Box::pin(async move {
        let config: tracker_sql::SqlConfig =
            tracker_core::config::from_keys("the SQL tracker store", keys)?;
        tracker_sql::SqlStore::connect(&config)
            .await?
            .ensure_schema()
            .await
    })
}

/// Redis needs nothing set up; its `ensure_schema` checks that the server answers.
#[cfg(feature = "redis")]
fn redis(_alias: &str, keys: JsonMap) -> SchemaFuture {
    Box::pin(async move {
        let config: tracker_redis::RedisConfig =
            tracker_core::config::from_keys("the Redis tracker store", keys)?;
        tracker_redis::RedisStore::connect(&config)
            .await?
            .ensure_schema()
            .await
    })
}

/// Connects without creating indexes, then creates the missing ones.
#[cfg(feature = "mongo")]
fn mongo(_alias: &str, mut keys: JsonMap) -> SchemaFuture {
    keys.insert("ensure_indexes".to_owned(), Value::Bool(false));
    Box::pin(async move {
        let config: tracker_mongo::MongoConfig =
            tracker_core::config::from_keys("the MongoDB tracker store", keys)?;
        tracker_mongo::MongoStore::connect(&config)
            .await?
            .ensure_schema()
            .await
    })
}

/// Builds the client as `DynamoStore::connect` does (the standard AWS chain, the section's
/// region and endpoint), without its check that the table exists, then creates the table.
#[cfg(feature = "dynamo")]
fn dynamo(_alias: &str, keys: JsonMap) -> SchemaFuture {
    use tracker_dynamo::aws_config::{self, BehaviorVersion, Region};
    Box::pin(async move {
        let config: tracker_dynamo::DynamoConfig =
            tracker_core::config::from_keys("the DynamoDB tracker store", keys)?;
        config.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let client = tracker_dynamo::aws_sdk_dynamodb::Client::new(&loader.load().await);
        tracker_dynamo::DynamoStore::from_client(client, &config)?
            .ensure_schema()
            .await
    })
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
                builtin_setup(registration.name).is_some(),
                "{}",
                registration.name
            );
        }
        assert!(builtin_setup("acme").is_none());
    }
}
