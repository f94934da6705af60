//! The append transaction: check the conversation's version, insert the new rows. The unique
//! `(sender_id, seq)` constraint guards the gap between the check and the insert.
//!
//! SQLite needs its writes in `BEGIN IMMEDIATE` transactions: a deferred transaction that
//! reads and then writes fails at once with SQLITE_BUSY when another connection wrote in
//! between, instead of waiting for the lock. diesel's immediate transactions are only on the
//! blocking connection, so the SQLite append runs on the connection's blocking thread.

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::prelude::*;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::{AsyncConnection, RunQueryDsl};
use tracker_core::{Append, Result};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::pool::bounded;
use crate::pool::{Connections, SqlClient, acquire};
use crate::schema::NewEvent;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::schema::events;

/// Rows per INSERT statement: far below every dialect's bound-parameter limit.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const INSERT_CHUNK: usize = 1_000;

/// Why an append transaction did not commit.
pub(crate) enum TxError {
    /// The conversation is at this version, not the expected one.
    Stale(u64),
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

/// The query for a conversation's version: its highest sequence number, read with `.first()`
/// (`LIMIT 1`) and `.optional()`. `ORDER BY seq DESC LIMIT 1` reads one index entry in every
/// plan; `MAX(seq)` does too only when the planner rewrites it, and a prepared statement's
/// generic plan made while the table was small aggregates every row of the conversation
/// instead (seen on PostgreSQL: saves grew slower with the conversation's length).
macro_rules! version_query {
    ($sender_id:expr) => {
        crate::schema::events::table
            .filter(crate::schema::events::sender_id.eq($sender_id))
            .select(crate::schema::events::seq)
            .order(crate::schema::events::seq.desc())
    };
}
pub(crate) use version_query;

/// The append transaction for dialects with async drivers.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! append_in_transaction {
    ($conn:expr, $append:expr, $rows:expr) => {{
        let sender_id = $append.sender_id().as_str();
        let expected = $append.expected_version();
        let rows: &[NewEvent] = $rows;
        $conn
            .transaction::<(), TxError, _>(async |conn| {
                let current: Option<i64> =
                    version_query!(sender_id).first(conn).await.optional()?;
                let current = u64::try_from(current.unwrap_or(0)).unwrap_or(0);
                if current != expected {
                    return Err(TxError::Stale(current));
                }
                for chunk in rows.chunks(INSERT_CHUNK) {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
    }};
}

/// Appends `rows` if the conversation is at `append`'s expected version, within the query
/// timeout on a server dialect.
///
/// # Errors
/// The outer error is a failure to get a connection or a timeout; the inner one is what the
/// transaction found (a stale version or a query error).
pub(crate) async fn run(
    connections: &Connections,
    append: &Append,
    rows: Vec<NewEvent>,
) -> Result<std::result::Result<(), TxError>> {
    let context = "appending events";
    Ok(match &connections.client {
        #[cfg(feature = "postgres")]
        SqlClient::Postgres(pool) => {
            let mut conn = acquire(pool, context).await?;
            bounded!(
                connections.query_timeout,
                conn,
                context,
                connections.pg_cancel(&conn),
                async { Ok(append_in_transaction!(conn, append, &rows)) }
            )?
        }
        #[cfg(feature = "mysql")]
        SqlClient::Mysql(pool) => {
            let mut conn = acquire(pool, context).await?;
            bounded!(
                connections.query_timeout,
                conn,
                context,
                Connections::mysql_cancel(&conn),
                async { Ok(append_in_transaction!(conn, append, &rows)) }
            )?
        }
        #[cfg(feature = "sqlite")]
        SqlClient::Sqlite(pool) => {
            let mut conn = acquire(pool, context).await?;
            sqlite::append(&mut conn, append.expected_version(), rows).await
        }
    })
}

/// The SQLite append, with diesel's synchronous query methods in scope.
#[cfg(feature = "sqlite")]
mod sqlite {
    use diesel::prelude::*;

    use super::{INSERT_CHUNK, TxError};
    use crate::schema::{NewEvent, events};

    /// Appends `rows` to SQLite if the conversation is at `expected`.
    pub(super) async fn append(
        conn: &mut crate::pool::SqliteConnection,
        expected: u64,
        rows: Vec<NewEvent>,
    ) -> std::result::Result<(), TxError> {
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
}
