//! The MySQL / MariaDB statements: the single append (`INSERT ... SELECT` locking the row at
//! the expected version) and the batch (one transaction: lock, read the versions, insert).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::shared::{
    CACHED_ROWS, INSERT_CHUNK, INSERT_COLUMNS, Item, Outcome, TxError, by_sender, push_rows,
    statements, written_rows,
};
use crate::schema::NewEvent;

/// A multi-row INSERT of `rows`; with `lock`, only if the row at that position exists,
/// which it locks (`FOR UPDATE`) for the statement's transaction. Kept prepared by its
/// text when short. The rows are [`NewEvent`]s or references to them.
struct InsertStatement<'a, R> {
    rows: &'a [R],
    lock: Option<(&'a str, i64)>,
}

impl<R> QueryId for InsertStatement<'_, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<R: Borrow<NewEvent>> QueryFragment<Mysql> for InsertStatement<'_, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql(INSERT_COLUMNS);
        match &self.lock {
            None => {
                out.push_sql("VALUES ");
                push_rows!(out, self.rows, false);
            }
            Some((sender_id, seq)) => {
                out.push_sql("SELECT c1, c2, c3, c4, c5, c6, c7 FROM (");
                push_rows!(out, self.rows, true);
                out.push_sql(") AS r WHERE EXISTS (SELECT seq FROM events WHERE sender_id = ");
                out.push_bind_param::<Text, _>(*sender_id)?;
                out.push_sql(" AND seq = ");
                out.push_bind_param::<BigInt, _>(seq)?;
                out.push_sql(" FOR UPDATE)");
            }
        }
        Ok(())
    }
}

/// Runs the INSERT of `rows` (locking the row at `lock`); `Changed` if it inserted
/// nothing.
async fn insert<R: Borrow<NewEvent> + Sync>(
    conn: &mut AsyncMysqlConnection,
    rows: &[R],
    lock: Option<(&str, i64)>,
) -> std::result::Result<(), TxError> {
    let inserted = InsertStatement { rows, lock }.execute(conn).await?;
    if inserted == rows.len() {
        Ok(())
    } else {
        Err(TxError::Changed)
    }
}

/// Appends `rows` to `sender_id` at `expected`: one statement, or one transaction of
/// several for more than `INSERT_CHUNK` rows.
pub(crate) async fn append(
    conn: &mut AsyncMysqlConnection,
    sender_id: &str,
    expected: i64,
    rows: &[NewEvent],
) -> std::result::Result<(), TxError> {
    let lock = (expected > 0).then_some((sender_id, expected));
    if rows.len() <= INSERT_CHUNK {
        return insert(conn, rows, lock).await;
    }
    conn.transaction::<(), TxError, _>(async |conn| {
        let mut chunks = rows.chunks(INSERT_CHUNK);
        if let Some(first) = chunks.next() {
            insert(conn, first, lock).await?;
        }
        for chunk in chunks {
            insert(conn, chunk, None).await?;
        }
        Ok(())
    })
    .await
}

/// Most rows one INSERT of a batch carries: 7,000 bound parameters, far under the 65,535 a
/// prepared statement may have. Longer statements are slower on MariaDB (a 10,000-row batch
/// took some 10% longer in statements of 9,000 rows than of 1,000), while the round trips
/// they save are few.
const BATCH_ROWS: usize = INSERT_CHUNK;

/// Most bytes of text one INSERT of a batch carries (past its first row): well under the
/// servers' default `max_allowed_packet` (16 MiB on MariaDB, 64 MiB on MySQL 8).
const BATCH_BYTES: usize = 8 << 20;

/// Conversations per statement that locks rows or reads versions (two bound parameters each
/// at most).
const BATCH_LOOKUPS: usize = 500;

/// Locks the rows of `items` at their expected versions (`FOR UPDATE`: on InnoDB record locks
/// of the unique index, taken in its order) and returns the sender ids of those found.
struct LockStatement<'a> {
    items: &'a [&'a Item],
}

impl QueryId for LockStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for LockStatement<'_> {
    type SqlType = Text;
}

impl QueryFragment<Mysql> for LockStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("SELECT sender_id FROM events WHERE ");
        for (index, item) in self.items.iter().enumerate() {
            out.push_sql(if index == 0 { "(" } else { " OR (" });
            out.push_sql("sender_id = ");
            out.push_bind_param::<Text, _>(item.sender_id.as_str())?;
            out.push_sql(" AND seq = ");
            out.push_bind_param::<BigInt, _>(&item.expected)?;
            out.push_sql(")");
        }
        out.push_sql(" ORDER BY sender_id, seq FOR UPDATE");
        if self.items.len() > CACHED_ROWS {
            out.unsafe_to_cache_prepared();
        }
        Ok(())
    }
}

/// Reads the version (the highest `seq`) of each of `items` that has events, through the
/// unique index (a loose index scan, one entry per conversation, once conversations are long
/// enough for it to pay).
struct HeadsStatement<'a> {
    items: &'a [&'a Item],
}

impl QueryId for HeadsStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for HeadsStatement<'_> {
    type SqlType = (Text, Nullable<BigInt>);
}

impl QueryFragment<Mysql> for HeadsStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("SELECT sender_id, MAX(seq) FROM events WHERE sender_id IN (");
        for (index, item) in self.items.iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<Text, _>(item.sender_id.as_str())?;
        }
        out.push_sql(") GROUP BY sender_id");
        if self.items.len() > CACHED_ROWS {
            out.unsafe_to_cache_prepared();
        }
        Ok(())
    }
}

/// Appends each of `items` that is at its expected version, in one transaction: statements
/// of [`BATCH_LOOKUPS`] conversations lock the rows at the expected versions (the
/// conversations' locks, as a single append takes them) and then read the versions (a
/// consistent read, whose snapshot InnoDB takes at the transaction's first one, after the
/// locks were granted); then the rows of those at their version are inserted, [`BATCH_ROWS`]
/// at a time. A conversation created meanwhile by another writer makes its INSERT fail on
/// the unique `(sender_id, seq)` constraint: everything is rolled back, and the caller runs
/// the batch again, where that conversation is found stale.
pub(crate) async fn batch(
    conn: &mut AsyncMysqlConnection,
    items: &[Item],
) -> std::result::Result<Vec<Outcome>, TxError> {
    let order = by_sender(items);
    conn.transaction::<_, TxError, _>(async |conn| {
        let sorted: Vec<&Item> = order.iter().map(|&index| &items[index]).collect();
        let existing: Vec<&Item> = sorted
            .iter()
            .copied()
            .filter(|item| item.expected > 0)
            .collect();
        let mut locked = HashSet::new();
        for items in existing.chunks(BATCH_LOOKUPS) {
            locked.extend(LockStatement { items }.load::<String>(conn).await?);
        }
        let mut heads = HashMap::new();
        for items in sorted.chunks(BATCH_LOOKUPS) {
            heads.extend(
                HeadsStatement { items }
                    .load::<(String, Option<i64>)>(conn)
                    .await?,
            );
        }
        let outcomes = Outcome::all(items, &locked, &heads);
        let rows = written_rows(items, &order, &outcomes);
        for rows in statements(&rows, BATCH_ROWS, BATCH_BYTES) {
            insert(conn, rows, None).await?;
        }
        Ok(outcomes)
    })
    .await
}
