//! The append: the version check and the insert in one statement, committed once — one round
//! trip to a server, with no read before the write.
//!
//! A conversation is at version `v` when its row `seq = v` exists (none for `v = 0`) and its
//! row `seq = v + 1` does not: positions are dense from 1 (appends add `v + 1, ...`, deletes
//! remove whole conversations, the trigger gives Rasa's rows the next position). So:
//!
//! - **PostgreSQL**: one statement. It locks the row at `seq = v` (`FOR UPDATE`): the
//!   conversation's lock, which versioned deletes and the trigger numbering Rasa's inserts also
//!   take, so that none of them changes the conversation between another's check and its
//!   write. It reads the highest `seq` (one index entry) and inserts the rows, unnested from
//!   one array per column, only if that is `v` and the row at `v` is there; it returns how
//!   many rows it inserted and the version it read, so that a stale version is a conflict
//!   carrying the current one in the same round trip. A writer that got past the check behind
//!   another (the statement's snapshot predates the other's commit) collides on the unique
//!   `(sender_id, seq)` constraint. The statement's text is the same for every append, so
//!   each connection prepares it once.
//! - **MySQL / MariaDB**: one `INSERT ... SELECT` of the rows, with the lock of the row at `v`
//!   in its condition (on InnoDB a record lock without a gap lock; no other row is read, so no
//!   gap is locked). Whether the conversation is longer is left to the unique constraint: its
//!   row `v + 1` is the first one inserted. At `v = 0` a plain multi-row INSERT: a
//!   conversation that exists collides on its row 1. Nothing inserted, or a collision, is a
//!   conflict whose version is read afterwards.
//! - **SQLite**: one `INSERT ... SELECT` whose condition is the version check. A write
//!   statement takes SQLite's write lock before it reads, waiting for it by the busy timeout,
//!   so the check and the insert see the same database; no other writer can come between.
//!   Writers of one store queue in the process first (`Connections::sqlite_writer`), in
//!   arrival order, instead of polling the lock.
//!
//! Appends longer than one statement's rows (`INSERT_CHUNK`) run the first statement and then
//! plain INSERTs of the rest in one transaction (on SQLite `BEGIN IMMEDIATE`, which takes the
//! write lock at once).
//!
//! **Batches** ([`run_batch`]) write many conversations in one transaction, committed once,
//! with statements that each cover many conversations: lock the rows at the expected versions
//! (PostgreSQL and MySQL: in the order of the sender ids, so that batches that share
//! conversations wait for each other rather than deadlock; SQLite's `BEGIN IMMEDIATE` holds
//! the write lock instead), read every conversation's version (a statement that starts after
//! the locks were granted, so it sees what their previous holders committed), and insert the
//! rows of the conversations found at their version, in the same order, as many rows per
//! statement as the dialect's limits allow. The others are stale, and nothing of them is
//! written. The rows at the expected versions stay locked until the
//! commit, so no append, versioned delete or Rasa insert changes those conversations in
//! between; a conversation the batch creates (version 0) has no row to lock, and a writer
//! that creates it first makes the batch's INSERT fail on the unique `(sender_id, seq)`
//! constraint. That rolls the whole transaction back, and the batch runs again, finding that
//! conversation stale; a batch that keeps colliding (or fails on something it cannot
//! attribute to one conversation) is appended one conversation at a time.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod shared;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::sync::Arc;

use tracker_core::{Append, Error, ErrorKind, Result};

pub(crate) use shared::{Item, Outcome, TxError, version_query};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use shared::{current_version, lock_row, lost};

use crate::error::{classify, is_deadlock, is_seq_conflict};
use crate::pool::{Connections, write_with_connection};
use crate::schema::NewEvent;

/// How often a batch's transaction runs when another writer made it collide on the unique
/// constraint, or the server rolled it back to break a deadlock; then the conversations it has
/// not settled are appended one at a time.
const BATCH_ATTEMPTS: usize = 4;

/// Appends `rows` if the conversation is at `append`'s expected version, within the query
/// timeout on a server dialect.
///
/// # Errors
/// The outer error is a failure to get a connection or a timeout; the inner one is what the
/// write found (a stale version or a query error).
pub(crate) async fn run(
    connections: &Connections,
    append: &Append,
    rows: &Arc<Vec<NewEvent>>,
) -> Result<std::result::Result<(), TxError>> {
    let context = "appending events";
    let expected = crate::schema::to_i64(append.expected_version())?;
    let sender_id = append.sender_id().as_str();
    Ok(write_with_connection!(connections, context, |conn| {
        postgres: postgres::append(&mut conn, sender_id, expected, rows).await,
        mysql: mysql::append(&mut conn, sender_id, expected, rows).await,
        sqlite: sqlite::append(&mut conn, sender_id.to_owned(), expected, rows.clone()).await,
    }))
}

/// Appends each of `items` that is at its expected version, in one transaction (see the
/// module's documentation), within the query timeout on a server dialect; returns what
/// happened to each, at its position.
///
/// # Errors
/// A failure to get a connection, a timeout, or a lost connection: then the store cannot tell
/// whether the transaction committed.
pub(crate) async fn run_batch(
    connections: &Connections,
    items: Arc<Vec<Item>>,
) -> Result<Vec<Outcome>> {
    let context = "appending a batch";
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match batch_once(connections, &items, context).await? {
            Ok(outcomes) => return Ok(outcomes),
            Err(error) => error,
        };
        let again = match &error {
            TxError::Changed => true,
            TxError::Query(error) => is_deadlock(error) || is_seq_conflict(error),
            TxError::Stale(_) | TxError::Invalid(_) => false,
        };
        if again && attempts < BATCH_ATTEMPTS {
            tracing::debug!(attempts, "a batch collided with another writer; again");
            continue;
        }
        return Ok(match error {
            // Rolled back whole, for every conversation alike (SQLite's lock wait ran out).
            TxError::Query(error) if !again && classify(&error) == ErrorKind::Unavailable => {
                let message = format!("{context}: {error}");
                items
                    .iter()
                    .map(|_| Outcome::Failed(Error::unavailable(message.clone())))
                    .collect()
            }
            _ => {
                tracing::debug!(attempts, "appending the batch one conversation at a time");
                items.iter().map(|_| Outcome::Alone).collect()
            }
        });
    }
}

/// Runs a batch's transaction once.
async fn batch_once(
    connections: &Connections,
    items: &Arc<Vec<Item>>,
    context: &str,
) -> Result<std::result::Result<Vec<Outcome>, TxError>> {
    Ok(write_with_connection!(connections, context, |conn| {
        postgres: postgres::batch(&mut conn, items).await,
        mysql: mysql::batch(&mut conn, items).await,
        sqlite: sqlite::batch(&mut conn, items.clone()).await,
    }))
}
