//! Reading a database Rasa's `SQLTrackerStore` wrote, as it is (without migrating it), for
//! moving conversations elsewhere.
//!
//! Connect with `migrate: false` to leave Rasa's table untouched; these functions read only
//! Rasa's own columns, in Rasa's order (`ORDER BY id`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tracker_core::event::deserialise_events;
use tracker_core::{Error, Event, Result};

use crate::error::query_error;
use crate::store::{Pool, SqlStore, with_connection};

mod rasa_schema {
    diesel::table! {
        /// Rasa's `events` table, as Rasa's SQLAlchemy model declares it.
        events (id) {
            id -> BigInt,
            sender_id -> Text,
            data -> Nullable<Text>,
        }
    }
}

use rasa_schema::events;

impl SqlStore {
    /// Every sender id in Rasa's `events` table, sorted.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Backend`] for database failures.
    pub async fn rasa_sender_ids(&self) -> Result<Vec<String>> {
        let context = "listing Rasa's conversations";
        let ids = with_connection!(self, context, unbounded, |conn| {
            events::table
                .select(events::sender_id)
                .distinct()
                .order(events::sender_id.asc())
                .load::<String>(&mut *conn)
                .await
                .map_err(|e| query_error(context, e))?
        });
        Ok(ids)
    }

    /// The events of one conversation from Rasa's `events` table, in Rasa's order, parsed as
    /// Rasa's `deserialise_events` does; `None` if it has no rows.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the conversation and the row's position (from 1) when a row's
    /// `data` is not event JSON.
    pub async fn read_rasa(&self, sender_id: &str) -> Result<Option<Vec<Event>>> {
        let context = "reading a Rasa conversation";
        let rows: Vec<Option<String>> = with_connection!(self, context, unbounded, |conn| {
            events::table
                .filter(events::sender_id.eq(sender_id))
                .order(events::id.asc())
                .select(events::data)
                .load(&mut *conn)
                .await
                .map_err(|e| query_error(context, e))?
        });
        if rows.is_empty() {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(rows.len());
        for (index, data) in rows.into_iter().enumerate() {
            let position = Some(index as u64 + 1);
            let text = data
                .ok_or_else(|| Error::corrupt(sender_id, position, "Rasa's row has NULL `data`"))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                    sender_id: sender_id.to_owned(),
                    position,
                    message: format!("Rasa's row is not JSON: {e}"),
                    source: Some(Box::new(e)),
                })?;
            values.push(value);
        }
        deserialise_events(&values)
            .map(Some)
            .map_err(|e| Error::corrupt(sender_id, None, e.message().to_owned()))
    }
}
