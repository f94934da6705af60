//! Reads of Rasa's `events` table as Rasa's `SQLTrackerStore` created it (no `seq`): each
//! conversation's rows in Rasa's order (`ORDER BY id`), numbered by their position. Used by a
//! store that may not migrate (`migrate: false`) and by [`SqlRasaSource`](crate::SqlRasaSource).
//! Only Rasa's own columns are read.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tracker_core::{Error, EventData, ReadScope, Result, StoredConversation, StoredEvent};

use crate::error::driver_error;
use crate::pool::{Connections, with_connection};

mod rasa_schema {
    diesel::table! {
        /// Rasa's `events` table, as Rasa's SQLAlchemy model declares it.
        events (id) {
            id -> BigInt,
            sender_id -> Text,
            type_name -> Text,
            data -> Nullable<Text>,
        }
    }
}

use rasa_schema::events;

/// Whether a read waits no longer than the store's query timeout (the store's operations) or
/// as long as it takes (bulk reads of a Rasa table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    QueryTimeout,
    Unbounded,
}

/// One conversation's rows (`type_name`, `data`) in Rasa's order; empty if it has none.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) async fn rows(
    connections: &Connections,
    sender_id: &str,
    bound: Bound,
) -> Result<Vec<(String, Option<String>)>> {
    let context = "reading a conversation from Rasa's table";
    let timeout = match bound {
        Bound::QueryTimeout => Some(connections.query_timeout),
        Bound::Unbounded => None,
    };
    Ok(with_connection!(connections, context, timeout, |conn| {
        events::table
            .filter(events::sender_id.eq(sender_id))
            .order(events::id.asc())
            .select((events::type_name, events::data))
            .load(&mut *conn)
            .await
            .map_err(|e| driver_error(context, e))?
    }))
}

/// The number of rows of one conversation: its version.
pub(crate) async fn count(connections: &Connections, sender_id: &str) -> Result<u64> {
    let context = "counting a conversation's rows in Rasa's table";
    let count: i64 = with_connection!(connections, context, |conn| {
        events::table
            .filter(events::sender_id.eq(sender_id))
            .count()
            .get_result(&mut *conn)
            .await
            .map_err(|e| driver_error(context, e))?
    });
    Ok(count.unsigned_abs())
}

/// Distinct sender ids after `cursor`, sorted; at most `limit` of them (all without one).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) async fn sender_ids(
    connections: &Connections,
    cursor: Option<&str>,
    limit: Option<i64>,
    bound: Bound,
) -> Result<Vec<String>> {
    let context = "listing the conversations of Rasa's table";
    let timeout = match bound {
        Bound::QueryTimeout => Some(connections.query_timeout),
        Bound::Unbounded => None,
    };
    Ok(with_connection!(connections, context, timeout, |conn| {
        let mut query = events::table
            .select(events::sender_id)
            .distinct()
            .order(events::sender_id.asc())
            .into_boxed();
        if let Some(cursor) = cursor {
            query = query.filter(events::sender_id.gt(cursor));
        }
        if let Some(limit) = limit {
            query = query.limit(limit);
        }
        query
            .load::<String>(&mut *conn)
            .await
            .map_err(|e| driver_error(context, e))?
    }))
}

/// A conversation read from Rasa's table as the store's contract has it: events numbered
/// 1, 2, 3, ... in Rasa's order, the version being their count; a latest-session read starts
/// at the event before the last `session_started` (as a read of the migrated table does).
pub(crate) async fn read(
    connections: &Connections,
    sender_id: &str,
    scope: ReadScope,
) -> Result<Option<StoredConversation>> {
    let rows = rows(connections, sender_id, Bound::QueryTimeout).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let version = rows.len() as u64;
    let start = match scope {
        ReadScope::All => 0,
        ReadScope::LatestSession => rows
            .iter()
            .rposition(|(type_name, _)| type_name == "session_started")
            .map_or(0, |index| index.saturating_sub(1)),
    };
    let events = rows
        .into_iter()
        .enumerate()
        .skip(start)
        .map(|(index, (_, data))| {
            let seq = index as u64 + 1;
            let text = data.ok_or_else(|| {
                Error::corrupt(sender_id, Some(seq), "the row's `data` column is NULL")
            })?;
            Ok(StoredEvent {
                seq,
                data: EventData::Text(text),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(StoredConversation { version, events }))
}
