//! The delete transaction: one conversation's rows, removed whole if it is at the version the
//! caller expects.
//!
//! On PostgreSQL and MySQL the transaction takes the conversation's lock as appends do (its
//! row at the expected version, `FOR UPDATE`), then reads the version again (a new statement:
//! it sees whatever committed while the lock was awaited) and deletes. An append waiting for
//! that lock finds the row gone and is a conflict; one that held it first has committed, and
//! the delete finds the new version and is a conflict. SQLite runs the check and the delete in
//! one `BEGIN IMMEDIATE` transaction, which no other writer can enter.

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::prelude::*;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::{AsyncConnection, RunQueryDsl};
use tracker_core::Result;

use crate::append::TxError;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::append::{current_version, lock_row, version_query};
use crate::pool::{Connections, write_with_connection};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::schema::events;

/// What a delete requires of the conversation's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Exactly this version (0: the conversation does not exist, and nothing is deleted).
    Version(u64),
    /// Whatever version it is at when the transaction looks: the rows that make up that
    /// version go, whole (an append that lands first is deleted with them, one that lands
    /// after makes a new conversation).
    Current,
}

/// The delete transaction for dialects with async drivers: `Ok(true)` when rows were deleted.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! delete_in_transaction {
    ($conn:expr, $sender_id:expr, $expect:expr) => {{
        let sender_id: &str = $sender_id;
        let expect: Expect = $expect;
        $conn
            .transaction::<bool, TxError, _>(async |conn| {
                let version = match expect {
                    Expect::Version(version) => version,
                    Expect::Current => current_version!(conn, sender_id),
                };
                if version == 0 {
                    if expect == Expect::Current {
                        // Nothing numbered: only rows without a position go. Rows numbered
                        // since the version was read belong to appends this delete comes
                        // before; deleting those its snapshot sees could leave the rest of a
                        // later append behind (PostgreSQL deletes what its snapshot saw once
                        // the append holding the rows' lock commits).
                        let deleted = diesel::delete(
                            events::table
                                .filter(events::sender_id.eq(sender_id))
                                .filter(events::seq.is_null().or(events::seq.lt(1_i64))),
                        )
                        .execute(conn)
                        .await?;
                        return Ok(deleted > 0);
                    }
                    let current = current_version!(conn, sender_id);
                    return if current == 0 {
                        Ok(false)
                    } else {
                        Err(TxError::Stale(current))
                    };
                }
                let locked = lock_row!(conn, sender_id, crate::schema::to_i64(version)?)?;
                // Read again under the lock: a writer that held it first has committed.
                let current = current_version!(conn, sender_id);
                if locked.is_none() || current != version {
                    return Err(TxError::Stale(current));
                }
                diesel::delete(events::table.filter(events::sender_id.eq(sender_id)))
                    .execute(conn)
                    .await?;
                Ok(true)
            })
            .await
    }};
}

/// Deletes the conversation `sender_id` if it is at the version `expect` says, within the
/// query timeout on a server dialect.
///
/// # Errors
/// The outer error is a failure to get a connection or a timeout; the inner one is what the
/// transaction found (another version or a query error).
pub(crate) async fn run(
    connections: &Connections,
    sender_id: &str,
    expect: Expect,
) -> Result<std::result::Result<bool, TxError>> {
    let context = "deleting a conversation";
    Ok(write_with_connection!(connections, context, |conn| {
        postgres: delete_in_transaction!(conn, sender_id, expect),
        mysql: delete_in_transaction!(conn, sender_id, expect),
        sqlite: sqlite::delete(&mut conn, sender_id.to_owned(), expect).await,
    }))
}

/// The SQLite delete, with diesel's synchronous query methods in scope.
#[cfg(feature = "sqlite")]
mod sqlite {
    use diesel::prelude::*;

    use super::{Expect, TxError};
    use crate::append::sqlite::version;
    use crate::schema::events;

    /// Deletes the conversation from SQLite if it is at the version `expect` says.
    pub(super) async fn delete(
        conn: &mut crate::pool::SqliteConnection,
        sender_id: String,
        expect: Expect,
    ) -> std::result::Result<bool, TxError> {
        let outcome = conn
            .spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
                conn.immediate_transaction(|conn| {
                    if let Expect::Version(expected) = expect {
                        let current = version(conn, &sender_id)?;
                        if current != expected {
                            return Ok(Err(current));
                        }
                    }
                    let deleted =
                        diesel::delete(events::table.filter(events::sender_id.eq(&sender_id)))
                            .execute(conn)?;
                    Ok(Ok(deleted > 0))
                })
            })
            .await;
        match outcome {
            Ok(Ok(deleted)) => Ok(deleted),
            Ok(Err(current)) => Err(TxError::Stale(current)),
            Err(error) => Err(TxError::Query(error)),
        }
    }
}
