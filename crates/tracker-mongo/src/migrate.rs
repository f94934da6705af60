//! Setup: the indexes of the two collections ([`schema::head_indexes`],
//! [`schema::event_indexes`], and [`schema::outbox_indexes`] with the outbox on). Correctness
//! never depends on them; listing, reads of long conversations and relays do. There is nothing
//! else to set up: MongoDB creates a collection on its first write, and documents carry their
//! own layout.
//!
//! Collecting orphaned buckets is maintenance of the bucket algorithm, not setup, and lives
//! in `buckets.rs`.

use mongodb::bson::Document;
use mongodb::{Collection, IndexModel};
use tracker_core::Result;

use crate::error::{driver_error, is_namespace_not_found};
use crate::schema;

/// Creates the indexes of `heads` and `events` (the buckets) that are missing — with
/// `outbox`, also the index of pending heads — and describes each one created; empty when
/// all were there. Existing indexes are kept.
pub(crate) async fn ensure_schema(
    heads: &Collection<Document>,
    events: &Collection<Document>,
    outbox: bool,
) -> Result<Vec<String>> {
    let mut models = schema::head_indexes();
    if outbox {
        models.extend(schema::outbox_indexes());
    }
    let mut created = ensure_indexes(heads, models).await?;
    created.extend(ensure_indexes(events, schema::event_indexes()).await?);
    if created.is_empty() {
        tracing::debug!(collection = %heads.name(), "the indexes are in place");
    } else {
        tracing::info!(created = ?created, "created indexes");
    }
    Ok(created)
}

/// Creates those of `models` that `collection` lacks (by name), and describes them.
async fn ensure_indexes(
    collection: &Collection<Document>,
    models: Vec<IndexModel>,
) -> Result<Vec<String>> {
    let context = || format!("creating the indexes of {}", collection.name());
    let existing = match collection.list_index_names().await {
        Ok(names) => names,
        // Nothing was written to it yet.
        Err(e) if is_namespace_not_found(&e) => Vec::new(),
        Err(e) => return Err(driver_error(context(), e)),
    };
    let missing: Vec<IndexModel> = models
        .into_iter()
        .filter(|model| !existing.iter().any(|name| Some(name) == index_name(model)))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let descriptions = missing
        .iter()
        .map(|model| {
            format!(
                "index {} on {} {}",
                index_name(model).map_or("(unnamed)", String::as_str),
                collection.name(),
                model.keys
            )
        })
        .collect();
    collection
        .create_indexes(missing)
        .await
        .map_err(|e| driver_error(context(), e))?;
    Ok(descriptions)
}

/// The name an index model sets.
fn index_name(model: &IndexModel) -> Option<&String> {
    model
        .options
        .as_ref()
        .and_then(|options| options.name.as_ref())
}
