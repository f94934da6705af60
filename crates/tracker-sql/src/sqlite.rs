//! SQLite needs its writes in `BEGIN IMMEDIATE` transactions: a deferred transaction that
//! reads and then writes fails at once with SQLITE_BUSY when another connection wrote in
//! between, instead of waiting for the lock. diesel's immediate transactions are only on the
//! blocking connection, so the append runs on the connection's blocking thread.

use diesel::prelude::*;

use crate::schema::events;
use crate::store::{INSERT_CHUNK, NewEvent, SqliteConnection, TxError};

/// Appends `rows` if the conversation is at `expected`.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    expected: u64,
    rows: Vec<NewEvent>,
) -> Result<(), TxError> {
    let outcome = conn
        .spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
            conn.immediate_transaction(|conn| {
                let Some(first) = rows.first() else {
                    return Ok(Ok(()));
                };
                // As `version_query`: the newest row, not MAX().
                let current: Option<i64> = events::table
                    .filter(events::sender_id.eq(&first.sender_id))
                    .select(events::seq)
                    .order(events::seq.desc())
                    .first(conn)
                    .optional()?;
                let current = u64::try_from(current.unwrap_or(0)).unwrap_or(0);
                if current != expected {
                    return Ok(Err(current));
                }
                for chunk in rows.chunks(INSERT_CHUNK) {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .execute(conn)?;
                }
                Ok(Ok(()))
            })
        })
        .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(current)) => Err(TxError::Stale(current)),
        Err(error) => Err(TxError::Query(error)),
    }
}
