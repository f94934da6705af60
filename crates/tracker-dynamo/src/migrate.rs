//! Table setup: creating this store's table, checking an existing table's key schema, and
//! waiting for a table to become `ACTIVE`. Behind
//! [`DynamoStore::ensure_schema`](crate::DynamoStore::ensure_schema) and
//! [`DynamoStore::check_schema`](crate::DynamoStore::check_schema).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus,
};
use tracker_core::{Error, Result};

use crate::error::{build_error, driver_error};
use crate::schema::{HASH_KEY, RANGE_KEY};

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
    let Some(description) = describe(client, table).await? else {
        return Err(Error::config(format!(
            "DynamoDB table {table:?} does not exist: create it with \
             `DynamoStore::ensure_schema()` or connect with `migrate: true`"
        )));
    };
    check_layout(table, &description)?;
    if description.table_status() == Some(&TableStatus::Creating) {
        wait_until_active(client, table).await?;
    }
    Ok(())
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
        [(HASH_KEY, KeyType::Hash)] => {
            ". That is the layout of Rasa's DynamoTrackerStore (one item per conversation): give \
             this store a table of its own (`table_name`) and copy Rasa's conversations with a \
             `DynamoRasaSource` and `TrackerStore::import_from`"
        }
        [(HASH_KEY, KeyType::Hash), ("session_date", KeyType::Range)] => {
            ". That is the layout of Rasa 1.x/2.x's DynamoTrackerStore: give this store a table \
             of its own (`table_name`) and copy Rasa's conversations with a `DynamoRasaSource` \
             and `TrackerStore::import_from`"
        }
        _ => "",
    };
    Err(Error::config(format!(
        "DynamoDB table {name:?} has the key [{}]; tracker-dynamo needs `{HASH_KEY}` \
         (string, HASH) and `{RANGE_KEY}` (number, RANGE){hint}",
        describe_keys(&keys)
    )))
}
