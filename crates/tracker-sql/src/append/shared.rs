//! What every dialect's writes share: the error of a write transaction, the rows of a batch and
//! their outcomes, the statement sizes, and the query macros.

use crate::schema::NewEvent;

/// Rows per statement of a single append on MySQL and SQLite (7 bound parameters a row): far
/// below every dialect's bound-parameter limit.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) const INSERT_CHUNK: usize = 1_000;

/// Statements of at most this many rows are kept prepared per connection on MySQL and SQLite,
/// whose statement text grows with the rows: the sizes of one turn's save. Longer ones are
/// prepared for each use, so that a connection keeps a bounded number of statements (MySQL
/// bounds them server-wide: `max_prepared_stmt_count`).
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) const CACHED_ROWS: usize = 8;

/// Why a write did not happen.
pub(crate) enum TxError {
    /// The conversation is at this version, not the expected one.
    Stale(u64),
    /// The conversation is not at the expected version (another writer came first); the
    /// version it is at must be read. In a batch: a statement wrote fewer rows than it was
    /// given, and the transaction was rolled back.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    Changed,
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

/// One conversation's part of a batch, ready to be written.
pub(crate) struct Item {
    /// The conversation.
    pub(crate) sender_id: String,
    /// The version it must be at (0 or more).
    pub(crate) expected: i64,
    /// Its rows, numbered from `expected + 1`.
    pub(crate) rows: Vec<NewEvent>,
}

/// What a batch's transaction did with one conversation.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Its rows were written.
    Written,
    /// It is at this version, not the expected one; nothing was written.
    Stale(u64),
    /// It is not at the expected version (its row at that version was deleted while the
    /// transaction waited for it); nothing was written, and the version must be read.
    Changed,
    /// The batch could not settle it (its transaction kept colliding with other writers, or
    /// failed on a row it cannot attribute): nothing was written, and it is to be appended
    /// alone.
    Alone,
    /// Nothing was written, for this reason (a temporary failure that rolled the whole
    /// transaction back).
    Failed(tracker_core::Error),
}

impl Outcome {
    /// The outcome of a conversation found at `head` whose row at the expected version the
    /// transaction holds (`locked`; always for a new conversation, which has no such row).
    pub(crate) fn decide(item: &Item, locked: bool, head: u64) -> Self {
        let expected = item.expected.unsigned_abs();
        if head != expected {
            Self::Stale(head)
        } else if expected > 0 && !locked {
            Self::Changed
        } else {
            Self::Written
        }
    }
}

/// The positions of `items` in the order of their sender ids: the order in which a batch
/// locks and inserts, the same for every batch, so that two batches that share conversations
/// wait for each other instead of deadlocking.
pub(crate) fn by_sender(items: &[Item]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[a].sender_id.cmp(&items[b].sender_id));
    order
}

/// The rows to insert: those of the items written, in `order`.
pub(crate) fn written_rows<'i>(
    items: &'i [Item],
    order: &[usize],
    outcomes: &[Outcome],
) -> Vec<&'i NewEvent> {
    order
        .iter()
        .filter(|&&index| matches!(outcomes[index], Outcome::Written))
        .flat_map(|&index| &items[index].rows)
        .collect()
}

impl Outcome {
    /// The outcomes of `items`: those found at their expected version whose row there is
    /// `locked` (by sender id) are written, the others not. `heads` holds the versions read
    /// (by sender id; a conversation missing from it, or without one, has none).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn all(
        items: &[Item],
        locked: &std::collections::HashSet<String>,
        heads: &std::collections::HashMap<String, Option<i64>>,
    ) -> Vec<Self> {
        items
            .iter()
            .map(|item| {
                let head = heads.get(&item.sender_id).copied().flatten();
                Self::decide(
                    item,
                    locked.contains(&item.sender_id),
                    head.map_or(0, i64::unsigned_abs),
                )
            })
            .collect()
    }
}

/// `rows` cut into statements of at most `max_rows` rows and, past the first row of each,
/// `max_bytes` bytes of text.
pub(crate) fn statements<'r>(
    rows: &'r [&'r NewEvent],
    max_rows: usize,
    max_bytes: usize,
) -> Vec<&'r [&'r NewEvent]> {
    let mut statements = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, row) in rows.iter().enumerate() {
        let size = row.text_bytes();
        if index > start && (index - start == max_rows || bytes + size > max_bytes) {
            statements.push(&rows[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        statements.push(&rows[start..]);
    }
    statements
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

/// `rows` (anything that borrows a [`NewEvent`]) as the rows of a multi-row statement: `(?,
/// ?, ...), (?, ...)` on SQLite, `SELECT ? AS c1, ... UNION ALL SELECT ?, ...` (a derived
/// table) on MySQL.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
macro_rules! push_rows {
    ($out:expr, $rows:expr, $union:expr) => {{
        use diesel::sql_types::{BigInt, Double, Nullable, Text};
        let union: bool = $union;
        for (index, row) in $rows.iter().enumerate() {
            let row: &crate::schema::NewEvent = std::borrow::Borrow::borrow(row);
            $out.push_sql(match (union, index) {
                (false, 0) => "(",
                (false, _) => ", (",
                (true, 0) => "SELECT ",
                (true, _) => " UNION ALL SELECT ",
            });
            let alias = |column: &'static str| if union && index == 0 { column } else { "" };
            $out.push_bind_param::<Text, _>(row.sender_id.as_str())?;
            $out.push_sql(alias(" AS c1"));
            $out.push_sql(", ");
            $out.push_bind_param::<Text, _>(row.type_name.as_str())?;
            $out.push_sql(alias(" AS c2"));
            $out.push_sql(", ");
            $out.push_bind_param::<Nullable<Double>, _>(&row.timestamp)?;
            $out.push_sql(alias(" AS c3"));
            $out.push_sql(", ");
            $out.push_bind_param::<Nullable<Text>, _>(&row.intent_name)?;
            $out.push_sql(alias(" AS c4"));
            $out.push_sql(", ");
            $out.push_bind_param::<Nullable<Text>, _>(&row.action_name)?;
            $out.push_sql(alias(" AS c5"));
            $out.push_sql(", ");
            $out.push_bind_param::<Nullable<Text>, _>(&row.data)?;
            $out.push_sql(alias(" AS c6"));
            $out.push_sql(", ");
            $out.push_bind_param::<Nullable<BigInt>, _>(&row.seq)?;
            $out.push_sql(alias(" AS c7"));
            if !union {
                $out.push_sql(")");
            }
        }
        if $rows.len() > crate::append::shared::CACHED_ROWS {
            $out.unsafe_to_cache_prepared();
        }
    }};
}
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) use push_rows;

/// The columns of an INSERT of whole rows.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) const INSERT_COLUMNS: &str = "INSERT INTO events (sender_id, type_name, timestamp, \
                                         intent_name, action_name, data, seq) ";

/// A write's outcome, with a temporary driver error other than a deadlock (which is run
/// again) as the outer error: the connection may be lost, and `bounded!` drops it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn lost<T>(
    context: &str,
    outcome: std::result::Result<T, TxError>,
) -> tracker_core::Result<std::result::Result<T, TxError>> {
    match outcome {
        Err(TxError::Query(error))
            if crate::error::classify(&error) == tracker_core::ErrorKind::Unavailable
                && !crate::error::is_deadlock(&error) =>
        {
            Err(crate::error::driver_error(context, error))
        }
        outcome => Ok(outcome),
    }
}
