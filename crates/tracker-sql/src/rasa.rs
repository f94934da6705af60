//! Reading a database Rasa's `SQLTrackerStore` wrote, as it is (without migrating it), for
//! copying conversations elsewhere with
//! [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
//!
//! Only Rasa's own columns are read, in Rasa's order (`ORDER BY id`).

use tracker_core::event::deserialise_events;
use tracker_core::{Error, RasaConversation, RasaSource, Result, async_trait};

use crate::config::SqlConfig;
use crate::store::SqlStore;
use crate::unmigrated::{Bound, rows, sender_ids};

/// The conversations in Rasa's `events` table, read as Rasa's `SQLTrackerStore` reads them:
/// a [`RasaSource`] for [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
///
/// It never writes: opening one creates no database, runs no migration and does not need
/// the store's `seq` column, so it reads a table Rasa is still using.
///
/// ```no_run
/// use tracker_sql::{SqlConfig, SqlRasaSource, SqlStore};
/// use tracker_sql::tracker_core::{RasaSource, TrackerStore};
///
/// # #[tokio::main]
/// # async fn main() -> tracker_sql::tracker_core::Result<()> {
/// let rasa = SqlRasaSource::connect(&SqlConfig::sqlite("rasa.db")).await?;
/// let store = TrackerStore::new(SqlStore::connect(&SqlConfig::sqlite("tracker.db")).await?);
/// for sender_id in rasa.sender_ids().await? {
///     store.import_from(&rasa, &sender_id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlRasaSource {
    store: SqlStore,
}

impl SqlRasaSource {
    /// Connects as `config` says, without changing anything: `migrate` and `login_db` are
    /// not acted on.
    ///
    /// # Errors
    /// As [`SqlStore::connect`].
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        Ok(Self {
            store: SqlStore::connect_unchanged(config).await?,
        })
    }

    /// Reads through `store`'s connection pool.
    pub fn from_store(store: &SqlStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

#[async_trait]
impl RasaSource for SqlRasaSource {
    fn describe(&self) -> String {
        format!("Rasa's SQL table `events` in {}", self.store.display)
    }

    /// Every sender id in Rasa's `events` table, sorted.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Backend`] for database failures.
    async fn sender_ids(&self) -> Result<Vec<String>> {
        sender_ids(&self.store.connections, None, None, Bound::Unbounded).await
    }

    /// The events of one conversation from Rasa's `events` table, in Rasa's order, parsed as
    /// Rasa's `deserialise_events` does; `None` if it has no rows.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the conversation and the row's position (from 1) when a row's
    /// `data` is not event JSON.
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        let rows = rows(&self.store.connections, sender_id, Bound::Unbounded).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(rows.len());
        for (index, (_, data)) in rows.into_iter().enumerate() {
            let position = Some(index as u64 + 1);
            let text = data
                .ok_or_else(|| Error::corrupt(sender_id, position, "Rasa's row has NULL `data`"))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::corrupt_with(
                    sender_id,
                    position,
                    format!("Rasa's row is not JSON: {e}"),
                    e,
                )
            })?;
            values.push(value);
        }
        let events = deserialise_events(&values)
            .map_err(|e| Error::corrupt(sender_id, None, e.message().to_owned()))?;
        Ok(Some(RasaConversation {
            sender_id: sender_id.to_owned(),
            events,
        }))
    }
}
