//! The SQLite statements, with diesel's synchronous query methods in scope: the single append
//! (`INSERT ... SELECT` whose condition is the version check) and the batch (one `BEGIN
//! IMMEDIATE` transaction: read the versions, insert).

use std::borrow::Borrow;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;

use super::shared::{
    INSERT_CHUNK, INSERT_COLUMNS, Item, Outcome, TxError, by_sender, push_rows, statements,
    written_rows,
};
use crate::schema::{NewEvent, events};

/// A multi-row INSERT of `rows`; with `expected`, only if the conversation is at that
/// version. Kept prepared by its text when short. The rows are [`NewEvent`]s or references
/// to them.
struct InsertStatement<'a, R> {
    rows: &'a [R],
    expected: Option<(&'a str, i64)>,
}

impl<R> QueryId for InsertStatement<'_, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Conn, R> RunQueryDsl<Conn> for InsertStatement<'_, R> {}

impl<R: Borrow<NewEvent>> QueryFragment<Sqlite> for InsertStatement<'_, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> diesel::QueryResult<()> {
        out.push_sql(INSERT_COLUMNS);
        match &self.expected {
            None => {
                out.push_sql("VALUES ");
                push_rows!(out, self.rows, false);
            }
            Some((sender_id, version)) => {
                // The newest row, as `version_query` (a row without `seq` sorts last).
                out.push_sql(
                    "SELECT column1, column2, column3, column4, column5, column6, column7 \
                     FROM (VALUES ",
                );
                push_rows!(out, self.rows, false);
                out.push_sql(") WHERE coalesce((SELECT seq FROM events WHERE sender_id = ");
                out.push_bind_param::<Text, _>(*sender_id)?;
                out.push_sql(" ORDER BY seq DESC LIMIT 1), 0) = ");
                out.push_bind_param::<BigInt, _>(version)?;
            }
        }
        Ok(())
    }
}

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

/// Inserts `rows` if the conversation is at `expected`; `Err(current version)` if not.
fn insert(
    conn: &mut diesel::SqliteConnection,
    sender_id: &str,
    expected: i64,
    rows: &[NewEvent],
) -> diesel::QueryResult<std::result::Result<(), u64>> {
    let mut chunks = rows.chunks(INSERT_CHUNK);
    if let Some(first) = chunks.next() {
        let statement = InsertStatement {
            rows: first,
            expected: Some((sender_id, expected)),
        };
        if statement.execute(conn)? != first.len() {
            return Ok(Err(version(conn, sender_id)?));
        }
    }
    for chunk in chunks {
        InsertStatement {
            rows: chunk,
            expected: None,
        }
        .execute(conn)?;
    }
    Ok(Ok(()))
}

/// Appends `rows` to SQLite if the conversation is at `expected`: one statement, or one
/// `BEGIN IMMEDIATE` transaction for more than `INSERT_CHUNK` rows (and to read the
/// version of a conflict where the statement saw it).
pub(crate) async fn append(
    conn: &mut crate::pool::SqliteConnection,
    sender_id: String,
    expected: i64,
    rows: std::sync::Arc<Vec<NewEvent>>,
) -> std::result::Result<(), TxError> {
    let outcome = conn
        .spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
            if rows.len() <= INSERT_CHUNK {
                let statement = InsertStatement {
                    rows: &rows,
                    expected: Some((&sender_id, expected)),
                };
                if statement.execute(conn)? == rows.len() {
                    return Ok(Ok(()));
                }
            }
            conn.immediate_transaction(|conn| insert(conn, &sender_id, expected, &rows))
        })
        .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(current)) => Err(TxError::Stale(current)),
        Err(error) => Err(TxError::Query(error)),
    }
}

/// Most rows one INSERT of a batch carries: 7,000 bound parameters, under the bundled
/// SQLite's limit of 32,766 (`SQLITE_MAX_VARIABLE_NUMBER`); longer statements were no faster.
const BATCH_ROWS: usize = INSERT_CHUNK;

/// Appends each of `items` that is at its expected version, in one `BEGIN IMMEDIATE`
/// transaction: it holds SQLite's write lock from its start, so the versions it reads stay
/// true until it commits; the rows of those at their version are then inserted,
/// [`BATCH_ROWS`] at a time, and committed once.
pub(crate) async fn batch(
    conn: &mut crate::pool::SqliteConnection,
    items: Arc<Vec<Item>>,
) -> std::result::Result<Vec<Outcome>, TxError> {
    conn.spawn_blocking(move |conn: &mut diesel::SqliteConnection| {
        conn.immediate_transaction(|conn| {
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items.iter() {
                outcomes.push(Outcome::decide(item, true, version(conn, &item.sender_id)?));
            }
            let rows = written_rows(&items, &by_sender(&items), &outcomes);
            for rows in statements(&rows, BATCH_ROWS, usize::MAX) {
                let statement = InsertStatement {
                    rows,
                    expected: None,
                };
                if statement.execute(conn)? != rows.len() {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
            }
            Ok(outcomes)
        })
    })
    .await
    .map_err(TxError::Query)
}
