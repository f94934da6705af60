//! The append transaction: check the conversation's version, insert the new rows. The unique
//! `(sender_id, seq)` constraint guards the gap between the check and the insert.
//!
//! On PostgreSQL and MySQL the check of a conversation that exists locks its row at the
//! expected version (`FOR UPDATE`, one index entry): the conversation's lock, which versioned
//! deletes and the trigger numbering Rasa's inserts also take, so that none of them changes the
//! conversation between another's check and its write. An append that finds the row gone (a
//! delete landed first) is a conflict at the version left.
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

/// Why a write transaction did not commit.
pub(crate) enum TxError {
    /// The conversation is at this version, not the expected one.
    Stale(u64),
    Query(diesel::result::Error),
    /// Not a database error (a version beyond the SQL range).
    Invalid(tracker_core::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

impl From<tracker_core::Error> for TxError {
    fn from(error: tracker_core::Error) -> Self {
        Self::Invalid(error)
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

/// The conversation's lock on PostgreSQL and MySQL: its row at `seq`, locked `FOR UPDATE`
/// (one unique-index entry; on InnoDB a record lock without a gap lock). `None` if there is no
/// such row.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! lock_row {
    ($conn:expr, $sender_id:expr, $seq:expr) => {{
        let seq: i64 = $seq;
        crate::schema::events::table
            .filter(crate::schema::events::sender_id.eq($sender_id))
            .filter(crate::schema::events::seq.eq(seq))
            .select(crate::schema::events::seq)
            .for_update()
            .first::<Option<i64>>($conn)
            .await
            .optional()
    }};
}
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use lock_row;

/// The version read inside a transaction: the highest `seq`, 0 for none (a row without `seq`
/// is left for reads to report).
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! current_version {
    ($conn:expr, $sender_id:expr) => {{
        let current: Option<Option<i64>> =
            version_query!($sender_id).first($conn).await.optional()?;
        current.flatten().map_or(0, i64::unsigned_abs)
    }};
}
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use current_version;

/// The append transaction for dialects with async drivers.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! append_in_transaction {
    ($conn:expr, $append:expr, $rows:expr) => {{
        let sender_id = $append.sender_id().as_str();
        let expected = $append.expected_version();
        let rows: &[NewEvent] = $rows;
        $conn
            .transaction::<(), TxError, _>(async |conn| {
                if expected == 0 {
                    let current = current_version!(conn, sender_id);
                    if current != 0 {
                        return Err(TxError::Stale(current));
                    }
                } else if lock_row!(conn, sender_id, crate::schema::to_i64(expected)?)?.is_none() {
                    // Shorter than expected, or deleted meanwhile.
                    return Err(TxError::Stale(current_version!(conn, sender_id)));
                }
                // Longer than expected: the first insert collides on the unique index.
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
    rows: &std::sync::Arc<Vec<NewEvent>>,
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
                async { Ok(append_in_transaction!(conn, append, rows)) }
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
                async { Ok(append_in_transaction!(conn, append, rows)) }
            )?
        }
        #[cfg(feature = "sqlite")]
        SqlClient::Sqlite(pool) => {
            let mut conn = acquire(pool, context).await?;
            sqlite::append(&mut conn, append.expected_version(), rows.clone()).await
        }
    })
}

/// The SQLite append, with diesel's synchronous query methods in scope.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use diesel::prelude::*;

    use super::{INSERT_CHUNK, TxError};
    use crate::schema::{NewEvent, events};

    /// The version read inside an SQLite transaction: as `version_query`, the newest row, not
    /// MAX(); 0 for none.
    pub(crate) fn version(
        conn: &mut diesel::SqliteConnection,
        sender_id: &str,
    ) -> diesel::QueryResult<u64> {
        let current: Option<Option<i64>> = events::table
            .filter(events::sender_id.eq(sender_id))
            .select(events::seq)
            .order(events::seq.desc())
            .first(conn)
            .optional()?;
        Ok(current.flatten().map_or(0, i64::unsigned_abs))
    }

    /// Appends `rows` to SQLite if the conversation is at `expected`.
    pub(super) async fn append(
        conn: &mut crate::pool::SqliteConnection,
        expected: u64,
        rows: std::sync::Arc<Vec<NewEvent>>,
    ) -> std::result::Result<(), TxError> {
        let outcome = conn
            .spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
                conn.immediate_transaction(|conn| {
                    let Some(first) = rows.first() else {
                        return Ok(Ok(()));
                    };
                    let current = version(conn, &first.sender_id)?;
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
