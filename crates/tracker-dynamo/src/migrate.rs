//! Table setup: finding which tables a `table_name` stands for (this store's, and Rasa's to
//! adopt from), creating this store's table (and, with the outbox on, its index of pending
//! heads), checking an existing table's key schema, and waiting for a table to become
//! `ACTIVE`. Behind
//! [`DynamoStore::ensure_schema`](crate::DynamoStore::ensure_schema),
//! [`DynamoStore::check_schema`](crate::DynamoStore::check_schema) and
//! [`DynamoStore::tables`](crate::DynamoStore::tables).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus,
};
use tracker_core::{Error, Result};

use crate::config::{
    RASA_DEFAULT_TABLE_NAME, RASA_HASH_KEY as RASA_KEY, RASA_LEGACY_RANGE_KEY, validate_table_name,
};
use crate::error::{build_error, driver_error};
use crate::schema::{
    HASH_KEY, OUTBOX_INDEX, OUTBOX_PENDING, OUTBOX_SHARD, RANGE_KEY, derived_table_name,
};

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
/// (number), on-demand billing, and with `outbox` the index [`OUTBOX_INDEX`] — and waits
/// until it is `ACTIVE`; with `outbox`, adds the index to an existing table that lacks it
/// (see [`ensure_outbox_index`]). Returns the changes made: one line per table or index this
/// call created, none otherwise.
pub(crate) async fn ensure_schema(
    client: &Client,
    table: &str,
    outbox: bool,
) -> Result<Vec<String>> {
    if let Some(description) = describe(client, table).await? {
        check_layout(table, &description)?;
        let description = if description.table_status() == Some(&TableStatus::Creating) {
            wait_until_active(client, table).await?
        } else {
            description
        };
        return if outbox {
            ensure_outbox_index(client, table, &description).await
        } else {
            Ok(Vec::new())
        };
    }
    let mut request = client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attribute_definitions(outbox)?))
        .key_schema(key_element(HASH_KEY, KeyType::Hash)?)
        .key_schema(key_element(RANGE_KEY, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest);
    if outbox {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(OUTBOX_INDEX)
                .set_key_schema(Some(outbox_index_keys()?))
                .projection(keys_only())
                .build()
                .map_err(build_error)?,
        );
    }
    let created = match request.send().await {
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
        // The other process may have created it without the index.
        return if outbox {
            ensure_outbox_index(client, table, &description).await
        } else {
            Ok(Vec::new())
        };
    }
    tracing::info!(table, outbox, "created the DynamoDB table");
    let index = if outbox {
        format!(
            ", and its index {OUTBOX_INDEX:?} of pending conversations for the outbox (hash \
             key `{OUTBOX_SHARD}`, range key `{OUTBOX_PENDING}`, keys only)"
        )
    } else {
        String::new()
    };
    Ok(vec![format!(
        "created DynamoDB table {table:?}: hash key `{HASH_KEY}` (string), range key \
         `{RANGE_KEY}` (number), on-demand billing{index}"
    )])
}

/// Adds the index [`OUTBOX_INDEX`] to `table` (described by `description`) when it lacks
/// it, with one `UpdateTable` (on a table with provisioned capacity, the index gets the
/// table's). DynamoDB then builds it from the existing items (backfilling); this does not
/// wait for that: until the index is `ACTIVE` the outbox's `pending` is `Unavailable`, while
/// appends go on and mark their conversations as usual. Safe to run concurrently: when
/// another process adds the index meanwhile, nothing is changed. Returns one line when this
/// call added the index, none otherwise.
///
/// # Errors
/// [`Error::Config`] when the table has an index of that name with another key schema;
/// DynamoDB's refusal otherwise (after waiting up to [`TABLE_WAIT`] while the table is busy
/// with another change).
pub(crate) async fn ensure_outbox_index(
    client: &Client,
    table: &str,
    description: &TableDescription,
) -> Result<Vec<String>> {
    if outbox_index_state(table, description)? != IndexState::Missing {
        return Ok(Vec::new());
    }
    let mut action = CreateGlobalSecondaryIndexAction::builder()
        .index_name(OUTBOX_INDEX)
        .set_key_schema(Some(outbox_index_keys()?))
        .projection(keys_only());
    let on_demand = description
        .billing_mode_summary()
        .and_then(|summary| summary.billing_mode())
        == Some(&BillingMode::PayPerRequest);
    if !on_demand && let Some(throughput) = description.provisioned_throughput() {
        action = action.provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(throughput.read_capacity_units().unwrap_or(1).max(1))
                .write_capacity_units(throughput.write_capacity_units().unwrap_or(1).max(1))
                .build()
                .map_err(build_error)?,
        );
    }
    let update = GlobalSecondaryIndexUpdate::builder()
        .create(action.build().map_err(build_error)?)
        .build();
    let deadline = Instant::now() + TABLE_WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        let sent = client
            .update_table()
            .table_name(table)
            .set_attribute_definitions(Some(attribute_definitions(true)?))
            .global_secondary_index_updates(update.clone())
            .send()
            .await;
        let Err(error) = sent else {
            break;
        };
        // Another process may have added it meanwhile, or the table is busy with another
        // change (then DynamoDB refuses with `ResourceInUseException`, and it is sent again).
        if let Some(now) = describe(client, table).await?
            && outbox_index_state(table, &now)? != IndexState::Missing
        {
            return Ok(Vec::new());
        }
        let busy = error
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !busy || Instant::now() >= deadline {
            return Err(driver_error(
                format!("creating index {OUTBOX_INDEX:?} on table {table:?}"),
                error,
            ));
        }
        tracing::debug!(
            table,
            "the table is busy; adding the outbox index again shortly"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    tracing::info!(
        table,
        index = OUTBOX_INDEX,
        "added the outbox index to the DynamoDB table"
    );
    Ok(vec![format!(
        "created index {OUTBOX_INDEX:?} of pending conversations for the outbox on DynamoDB \
         table {table:?}: hash key `{OUTBOX_SHARD}` (number), range key `{OUTBOX_PENDING}` \
         (number), keys only"
    )])
}

/// Checks that this store's table exists with its key schema (waiting while it is being
/// created) and, with `outbox`, that it has the index [`OUTBOX_INDEX`] (built or being
/// built). Changes nothing.
pub(crate) async fn check_schema(client: &Client, table: &str, outbox: bool) -> Result<()> {
    let Some(description) = ready_description(client, table).await? else {
        return Err(Error::config(format!(
            "DynamoDB table {table:?} does not exist: create it with \
             `DynamoStore::ensure_schema()` or connect with `migrate: true`"
        )));
    };
    if outbox && outbox_index_state(table, &description)? == IndexState::Missing {
        return Err(missing_index(table));
    }
    Ok(())
}

/// The error of a store with its outbox on whose table lacks the index of pending heads.
pub(crate) fn missing_index(table: &str) -> Error {
    Error::config(format!(
        "DynamoDB table {table:?} has no index {OUTBOX_INDEX:?}, which the outbox (`outbox: \
         true`) needs: create it with `tracker migrate-schema` or \
         `DynamoStore::ensure_schema()`, or connect with `migrate: true`"
    ))
}

/// Whether `table` exists: `true` once it has this store's key schema and is usable
/// (waiting while it is being created), `false` when there is no such table. Changes
/// nothing.
///
/// # Errors
/// [`Error::Config`] for a table of another key schema or one being deleted.
pub(crate) async fn table_ready(client: &Client, table: &str) -> Result<bool> {
    Ok(ready_description(client, table).await?.is_some())
}

/// The description of `table` once it has this store's key schema and is usable (waiting
/// while it is being created), `None` when there is no such table. Changes nothing.
async fn ready_description(client: &Client, table: &str) -> Result<Option<TableDescription>> {
    let Some(description) = describe(client, table).await? else {
        return Ok(None);
    };
    check_layout(table, &description)?;
    if description.table_status() == Some(&TableStatus::Creating) {
        return wait_until_active(client, table).await.map(Some);
    }
    Ok(Some(description))
}

/// The index [`OUTBOX_INDEX`] as a table's description shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// The table has no such index.
    Missing,
    /// DynamoDB is building it (its status, and whether it is backfilling): it cannot be
    /// queried yet.
    Building(String),
    /// It can be queried.
    Active,
}

/// What `table`'s description says of the index [`OUTBOX_INDEX`].
///
/// # Errors
/// [`Error::Config`] when an index of that name has another key schema, or is being
/// deleted.
pub(crate) fn outbox_index_state(
    table: &str,
    description: &TableDescription,
) -> Result<IndexState> {
    let Some(index) = description
        .global_secondary_indexes()
        .iter()
        .find(|index| index.index_name() == Some(OUTBOX_INDEX))
    else {
        return Ok(IndexState::Missing);
    };
    let keys: Vec<(&str, &KeyType)> = index
        .key_schema()
        .iter()
        .map(|element| (element.attribute_name(), element.key_type()))
        .collect();
    let type_of = |attribute: &str| {
        description
            .attribute_definitions()
            .iter()
            .find(|definition| definition.attribute_name() == attribute)
            .map(|definition| definition.attribute_type().clone())
    };
    let ours =
        keys == [
            (OUTBOX_SHARD, &KeyType::Hash),
            (OUTBOX_PENDING, &KeyType::Range),
        ] && type_of(OUTBOX_SHARD) == Some(ScalarAttributeType::N)
            && type_of(OUTBOX_PENDING) == Some(ScalarAttributeType::N);
    if !ours {
        return Err(Error::config(format!(
            "DynamoDB table {table:?} has an index {OUTBOX_INDEX:?} with the key [{}]; the \
             outbox needs `{OUTBOX_SHARD}` (number, HASH) and `{OUTBOX_PENDING}` (number, \
             RANGE)",
            describe_keys(&keys)
        )));
    }
    let backfilling = index.backfilling() == Some(true);
    match index.index_status() {
        Some(IndexStatus::Deleting) => Err(Error::config(format!(
            "the index {OUTBOX_INDEX:?} of DynamoDB table {table:?} is being deleted"
        ))),
        // Some DynamoDB-compatible servers leave the status out.
        None | Some(IndexStatus::Active | IndexStatus::Updating) if !backfilling => {
            Ok(IndexState::Active)
        }
        status => Ok(IndexState::Building(format!(
            "{}{}",
            status.map_or("CREATING", IndexStatus::as_str),
            if backfilling { ", backfilling" } else { "" }
        ))),
    }
}

/// The attribute definitions of this store's table: its keys, and with `outbox` the keys of
/// [`OUTBOX_INDEX`].
fn attribute_definitions(outbox: bool) -> Result<Vec<AttributeDefinition>> {
    let mut attributes = vec![
        (HASH_KEY, ScalarAttributeType::S),
        (RANGE_KEY, ScalarAttributeType::N),
    ];
    if outbox {
        attributes.push((OUTBOX_SHARD, ScalarAttributeType::N));
        attributes.push((OUTBOX_PENDING, ScalarAttributeType::N));
    }
    attributes
        .into_iter()
        .map(|(name, kind)| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(build_error)
        })
        .collect()
}

/// One element of a key schema.
fn key_element(attribute: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(attribute)
        .key_type(key_type)
        .build()
        .map_err(build_error)
}

/// The key schema of [`OUTBOX_INDEX`].
fn outbox_index_keys() -> Result<Vec<KeySchemaElement>> {
    Ok(vec![
        key_element(OUTBOX_SHARD, KeyType::Hash)?,
        key_element(OUTBOX_PENDING, KeyType::Range)?,
    ])
}

/// The projection of [`OUTBOX_INDEX`]: keys only, so that the index changes only when a
/// conversation becomes pending or stops being pending, not with every append.
fn keys_only() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build()
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
