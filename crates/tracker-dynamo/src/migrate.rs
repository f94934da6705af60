//! Table setup: finding which tables a `table_name` stands for (this store's, and Rasa's to
//! adopt from), creating this store's table, checking an existing table's key schema, and
//! waiting for a table to become `ACTIVE`. Behind
//! [`DynamoStore::ensure_schema`](crate::DynamoStore::ensure_schema),
//! [`DynamoStore::check_schema`](crate::DynamoStore::check_schema) and
//! [`DynamoStore::tables`](crate::DynamoStore::tables).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus,
};
use tracker_core::{Error, Result};

use crate::config::{
    RASA_DEFAULT_TABLE_NAME, RASA_HASH_KEY as RASA_KEY, RASA_LEGACY_RANGE_KEY, validate_table_name,
};
use crate::error::{build_error, driver_error};
use crate::schema::{HASH_KEY, RANGE_KEY, derived_table_name};

/// The tables behind a configured `table_name`: where this store keeps its items, and Rasa's
/// table it reads (and adopts) conversations from.
///
/// `table_name` is Rasa's table when it has the key of Rasa's `DynamoTrackerStore`
/// (`sender_id` only), or when it is Rasa's default `states` and does not exist (yet); this
/// store's items are then in [`derived_table_name`]`(table_name)`, `states_events` by
/// default. Otherwise `table_name` is this store's table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tables {
    /// This store's table: hash key `sender_id` (string), range key `seq` (number).
    pub store_table: String,
    /// Rasa's table, read for the conversations this store does not hold yet; `None` when
    /// `table_name` is this store's table or `adopt_rasa` is off. Never written, except that
    /// deleting a conversation deletes Rasa's item of it.
    pub rasa_table: Option<String>,
}

/// What a `table_name` names, by its key schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No such table.
    Absent,
    /// A table of this store's layout.
    Ours,
    /// Rasa 3's table: hash key `sender_id` only.
    Rasa,
    /// Rasa 1.x/2.x's table: `sender_id` and `session_date`.
    RasaLegacy,
    /// Anything else.
    Other,
}

impl Found {
    /// Classifies a table's description.
    pub(crate) fn of(description: Option<&TableDescription>) -> Self {
        let Some(table) = description else {
            return Self::Absent;
        };
        if check_layout("", table).is_ok() {
            return Self::Ours;
        }
        match key_schema(table).as_slice() {
            [(RASA_KEY, KeyType::Hash)] => Self::Rasa,
            [
                (RASA_KEY, KeyType::Hash),
                (RASA_LEGACY_RANGE_KEY, KeyType::Range),
            ] => Self::RasaLegacy,
            _ => Self::Other,
        }
    }
}

/// The tables for `table_name` once it is known what it names (see [`Tables`]).
///
/// # Errors
/// [`Error::Config`] for a Rasa 1.x/2.x table or a table of another layout, and when the
/// derived table name is too long.
pub(crate) fn decide(table_name: &str, found: Found, adopt: bool) -> Result<Tables> {
    let beside_rasa = || -> Result<Tables> {
        let store_table = derived_table_name(table_name);
        validate_table_name(&store_table).map_err(|_| {
            Error::config(format!(
                "`table_name` {table_name:?} is Rasa's table, and this store's table beside it, \
                 {store_table:?}, would be longer than DynamoDB's 255 characters: choose a \
                 shorter `table_name`"
            ))
        })?;
        Ok(Tables {
            store_table,
            rasa_table: adopt.then(|| table_name.to_owned()),
        })
    };
    match found {
        Found::Ours => Ok(Tables {
            store_table: table_name.to_owned(),
            rasa_table: None,
        }),
        Found::Rasa => beside_rasa(),
        Found::Absent if table_name == RASA_DEFAULT_TABLE_NAME => beside_rasa(),
        Found::Absent => Ok(Tables {
            store_table: table_name.to_owned(),
            rasa_table: None,
        }),
        Found::RasaLegacy => Err(Error::config(format!(
            "DynamoDB table {table_name:?} has the key of Rasa 1.x/2.x's DynamoTrackerStore \
             (`{RASA_KEY}` HASH, `{RASA_LEGACY_RANGE_KEY}` RANGE), which Rasa 3 no longer \
             writes and this store does not adopt from: give this store a `table_name` of its \
             own and copy the conversations with `tracker migrate --from-rasa`"
        ))),
        Found::Other => Err(Error::config(format!(
            "DynamoDB table {table_name:?} has neither this store's key (`{HASH_KEY}` string \
             HASH, `{RANGE_KEY}` number RANGE) nor Rasa's (`{RASA_KEY}` HASH)"
        ))),
    }
}

/// Finds the tables behind `table_name` (one `DescribeTable`). Changes nothing.
pub(crate) async fn resolve(client: &Client, table_name: &str, adopt: bool) -> Result<Tables> {
    let description = describe(client, table_name).await?;
    let found = Found::of(description.as_ref());
    let tables = decide(table_name, found, adopt)?;
    tracing::debug!(
        table_name,
        ?found,
        store_table = %tables.store_table,
        rasa_table = ?tables.rasa_table,
        "found the DynamoDB tables"
    );
    Ok(tables)
}

/// How long setup waits for a table to become `ACTIVE`.
const TABLE_WAIT: Duration = Duration::from_secs(300);

/// Creates `table` if it does not exist — hash key `sender_id` (string), range key `seq`
/// (number), on-demand billing — and waits until it is `ACTIVE`. Returns the changes made:
/// one line when this call created the table, none otherwise.
pub(crate) async fn ensure_schema(client: &Client, table: &str) -> Result<Vec<String>> {
    if let Some(description) = describe(client, table).await? {
        check_layout(table, &description)?;
        if description.table_status() == Some(&TableStatus::Creating) {
            wait_until_active(client, table).await?;
        }
        return Ok(Vec::new());
    }
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(HASH_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(RANGE_KEY)
                .attribute_type(ScalarAttributeType::N)
                .build()
                .map_err(build_error)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(HASH_KEY)
                .key_type(KeyType::Hash)
                .build()
                .map_err(build_error)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(RANGE_KEY)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_error)?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        // Another process is creating it right now.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(error) => return Err(driver_error(format!("creating table {table:?}"), error)),
    };
    let description = wait_until_active(client, table).await?;
    check_layout(table, &description)?;
    if !created {
        return Ok(Vec::new());
    }
    tracing::info!(table, "created the DynamoDB table");
    Ok(vec![format!(
        "created DynamoDB table {table:?}: hash key `{HASH_KEY}` (string), range key \
         `{RANGE_KEY}` (number), on-demand billing"
    )])
}

/// Checks that `table` exists with this store's key schema, waiting while it is being
/// created. Changes nothing.
pub(crate) async fn check_schema(client: &Client, table: &str) -> Result<()> {
    if table_ready(client, table).await? {
        return Ok(());
    }
    Err(Error::config(format!(
        "DynamoDB table {table:?} does not exist: create it with \
         `DynamoStore::ensure_schema()` or connect with `migrate: true`"
    )))
}

/// Whether `table` exists: `true` once it has this store's key schema and is usable
/// (waiting while it is being created), `false` when there is no such table. Changes
/// nothing.
///
/// # Errors
/// [`Error::Config`] for a table of another key schema or one being deleted.
pub(crate) async fn table_ready(client: &Client, table: &str) -> Result<bool> {
    let Some(description) = describe(client, table).await? else {
        return Ok(false);
    };
    check_layout(table, &description)?;
    if description.table_status() == Some(&TableStatus::Creating) {
        wait_until_active(client, table).await?;
    }
    Ok(true)
}

/// The table's description, or `None` when it does not exist.
pub(crate) async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>> {
    match client.describe_table().table_name(table).send().await {
        Ok(output) => Ok(output.table),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(driver_error(format!("describing table {table:?}"), error)),
    }
}

/// Waits until `table` is `ACTIVE` (at most [`TABLE_WAIT`]) and returns its description.
pub(crate) async fn wait_until_active(client: &Client, table: &str) -> Result<TableDescription> {
    let deadline = Instant::now() + TABLE_WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        if let Some(description) = describe(client, table).await? {
            match description.table_status() {
                // Some DynamoDB-compatible servers leave the status out.
                None | Some(TableStatus::Active | TableStatus::Updating) => {
                    return Ok(description);
                }
                Some(TableStatus::Creating) => {}
                Some(status) => {
                    return Err(Error::config(format!(
                        "DynamoDB table {table:?} is {status}, not usable"
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::unavailable(format!(
                "DynamoDB table {table:?} did not become ACTIVE within {} s",
                TABLE_WAIT.as_secs()
            )));
        }
        tracing::debug!(table, "waiting for the table to become ACTIVE");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// A table's key schema: `(attribute, key type)` in the table's order.
pub(crate) fn key_schema(table: &TableDescription) -> Vec<(&str, &KeyType)> {
    table
        .key_schema()
        .iter()
        .map(|element| (element.attribute_name(), element.key_type()))
        .collect()
}

/// A key schema as `sender_id HASH, seq RANGE`.
pub(crate) fn describe_keys(keys: &[(&str, &KeyType)]) -> String {
    keys.iter()
        .map(|(attribute, kind)| format!("{attribute} {}", kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that a table has this store's key schema.
fn check_layout(name: &str, table: &TableDescription) -> Result<()> {
    let keys = key_schema(table);
    let type_of = |attribute: &str| {
        table
            .attribute_definitions()
            .iter()
            .find(|definition| definition.attribute_name() == attribute)
            .map(|definition| definition.attribute_type().clone())
    };
    let ours = keys == [(HASH_KEY, &KeyType::Hash), (RANGE_KEY, &KeyType::Range)]
        && type_of(HASH_KEY) == Some(ScalarAttributeType::S)
        && type_of(RANGE_KEY) == Some(ScalarAttributeType::N);
    if ours {
        return Ok(());
    }
    let hint = match keys.as_slice() {
        [(RASA_KEY, KeyType::Hash)] => {
            ". That is the layout of Rasa's DynamoTrackerStore (one item per conversation), \
             which this store only reads: name Rasa's table in `table_name`, and this store \
             keeps its items in a table of its own beside it"
        }
        [
            (RASA_KEY, KeyType::Hash),
            (RASA_LEGACY_RANGE_KEY, KeyType::Range),
        ] => {
            ". That is the layout of Rasa 1.x/2.x's DynamoTrackerStore: give this store a table \
             of its own (`table_name`) and copy Rasa's conversations with \
             `tracker migrate --from-rasa`"
        }
        _ => "",
    };
    Err(Error::config(format!(
        "DynamoDB table {name:?} has the key [{}]; tracker-dynamo needs `{HASH_KEY}` \
         (string, HASH) and `{RANGE_KEY}` (number, RANGE){hint}",
        describe_keys(&keys)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::ErrorKind;

    fn tables(store_table: &str, rasa_table: Option<&str>) -> Tables {
        Tables {
            store_table: store_table.to_owned(),
            rasa_table: rasa_table.map(str::to_owned),
        }
    }

    #[test]
    fn which_tables_a_name_stands_for() {
        // Rasa's table, by its key or as Rasa's default name not created yet.
        assert_eq!(
            decide("states", Found::Rasa, true).expect("Rasa's"),
            tables("states_events", Some("states"))
        );
        assert_eq!(
            decide("states", Found::Absent, true).expect("Rasa's default"),
            tables("states_events", Some("states"))
        );
        assert_eq!(
            decide("rasa", Found::Rasa, true).expect("Rasa's"),
            tables("rasa_events", Some("rasa"))
        );
        // Adoption off: Rasa's table is not read, and still never written.
        assert_eq!(
            decide("states", Found::Rasa, false).expect("Rasa's"),
            tables("states_events", None)
        );
        // This store's table, existing (also under Rasa's default name) or to be created.
        assert_eq!(
            decide("states", Found::Ours, true).expect("ours"),
            tables("states", None)
        );
        assert_eq!(
            decide("conversations", Found::Absent, true).expect("new"),
            tables("conversations", None)
        );
        for found in [Found::RasaLegacy, Found::Other] {
            let error = decide("states", found, true).expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::Config);
        }
        let error = decide("states", Found::RasaLegacy, true).expect_err("legacy");
        assert!(
            error.to_string().contains("tracker migrate --from-rasa"),
            "{error}"
        );
        let long = "t".repeat(250);
        let error = decide(&long, Found::Rasa, true).expect_err("too long");
        assert!(error.to_string().contains("shorter"), "{error}");
        assert!(decide(&long, Found::Absent, true).is_ok());
    }
}
