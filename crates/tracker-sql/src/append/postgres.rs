//! The PostgreSQL statements: the single append (one statement that locks, checks and
//! inserts) and the batch (one READ COMMITTED transaction: lock, read the versions, insert).

use std::collections::{HashMap, HashSet};

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::shared::{Item, Outcome, TxError, by_sender, statements, written_rows};
use crate::schema::NewEvent;

/// Makes `$statement` a query whose text is the same for every value bound, so that diesel
/// keeps it prepared: its cache key is its own type. With `=> $sql_type`, it returns rows of
/// that type.
macro_rules! fixed_text {
    ($statement:ident) => {
        impl QueryId for $statement<'_> {
            type QueryId = $statement<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
    };
    ($statement:ident => $sql_type:ty) => {
        fixed_text!($statement);

        impl Query for $statement<'_> {
            type SqlType = $sql_type;
        }
    };
}

/// The columns of inserted rows that hold what the caller gives, one array per column, bound
/// in the order `type_name, timestamp, intent_name, action_name, data`.
struct Columns<'a> {
    type_names: Vec<&'a str>,
    timestamps: Vec<Option<f64>>,
    intent_names: Vec<Option<&'a str>>,
    action_names: Vec<Option<&'a str>>,
    data: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn new(rows: impl Iterator<Item = &'a NewEvent> + Clone) -> Self {
        Self {
            type_names: rows.clone().map(|row| row.type_name.as_str()).collect(),
            timestamps: rows.clone().map(|row| row.timestamp).collect(),
            intent_names: rows.clone().map(|row| row.intent_name.as_deref()).collect(),
            action_names: rows.clone().map(|row| row.action_name.as_deref()).collect(),
            data: rows.map(|row| row.data.as_deref()).collect(),
        }
    }
}

impl QueryFragment<Pg> for Columns<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_bind_param::<Array<Text>, _>(&self.type_names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Double>>, _>(&self.timestamps)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.intent_names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.action_names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.data)
    }
}

/// The statement: lock the row at the expected version, read the version, insert the
/// rows if both agree; returns the rows inserted and the version read. Its text is fixed
/// (the rows are bound as one array per column), so diesel keeps it prepared, by type.
struct AppendStatement<'a> {
    sender_id: &'a str,
    expected: i64,
    columns: Columns<'a>,
}

fixed_text!(AppendStatement => (BigInt, Nullable<BigInt>));

impl QueryFragment<Pg> for AppendStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        // `locked` and `head` are evaluated before any row is inserted: the lock is held
        // while the rows are written. `head` is read once (a CTE referenced twice is
        // materialised) and names the version a conflict reports.
        out.push_sql("WITH locked AS (SELECT seq FROM events WHERE sender_id = ");
        out.push_bind_param::<Text, _>(self.sender_id)?;
        out.push_sql(" AND seq = ");
        out.push_bind_param::<BigInt, _>(&self.expected)?;
        out.push_sql(" FOR UPDATE), head AS (SELECT seq FROM events WHERE sender_id = ");
        out.push_bind_param::<Text, _>(self.sender_id)?;
        out.push_sql(
            " ORDER BY seq DESC LIMIT 1), inserted AS (INSERT INTO events (sender_id, \
             type_name, timestamp, intent_name, action_name, data, seq) SELECT ",
        );
        out.push_bind_param::<Text, _>(self.sender_id)?;
        out.push_sql(", r.type_name, r.timestamp, r.intent_name, r.action_name, r.data, ");
        out.push_bind_param::<BigInt, _>(&self.expected)?;
        out.push_sql(" + r.n FROM unnest(");
        self.columns.walk_ast(out.reborrow())?;
        out.push_sql(
            ") WITH ORDINALITY AS r (type_name, timestamp, intent_name, action_name, data, \
             n) WHERE coalesce((SELECT seq FROM head), 0) = ",
        );
        out.push_bind_param::<BigInt, _>(&self.expected)?;
        out.push_sql(" AND (");
        out.push_bind_param::<BigInt, _>(&self.expected)?;
        out.push_sql(
            " = 0 OR EXISTS (SELECT FROM locked)) ORDER BY r.n RETURNING 1) \
             SELECT (SELECT count(*) FROM inserted), (SELECT seq FROM head)",
        );
        Ok(())
    }
}

/// Appends `rows` to `sender_id` at `expected`, in one statement.
pub(crate) async fn append(
    conn: &mut AsyncPgConnection,
    sender_id: &str,
    expected: i64,
    rows: &[NewEvent],
) -> std::result::Result<(), TxError> {
    let statement = AppendStatement {
        sender_id,
        expected,
        columns: Columns::new(rows.iter()),
    };
    let (inserted, head): (i64, Option<i64>) = statement.get_result(conn).await?;
    if usize::try_from(inserted).is_ok_and(|inserted| inserted == rows.len()) {
        return Ok(());
    }
    let head = head.unwrap_or(0);
    if head == expected {
        // At the expected version when the statement began, but the lock found the row
        // gone (a delete committed while it waited).
        Err(TxError::Changed)
    } else {
        Err(TxError::Stale(head.unsigned_abs()))
    }
}

/// Most rows one INSERT of a batch carries. The rows travel as one array per column (seven
/// bound parameters however many rows, far from the protocol's 65,535), so this only bounds a
/// statement's size: with [`BATCH_BYTES`], a few megabytes a message.
const BATCH_ROWS: usize = 8_192;

/// Most bytes of text one INSERT of a batch carries (past its first row).
const BATCH_BYTES: usize = 16 << 20;

/// Locks the rows at the given positions (`FOR UPDATE`, in the order of the sender ids) and
/// returns the sender ids of those found.
struct LockStatement<'a> {
    sender_ids: Vec<&'a str>,
    seqs: Vec<i64>,
}

fixed_text!(LockStatement => Text);

impl QueryFragment<Pg> for LockStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("SELECT u.sender_id FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.sender_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.seqs)?;
        out.push_sql(
            ") AS u (sender_id, seq) JOIN events e ON e.sender_id = u.sender_id \
             AND e.seq = u.seq ORDER BY u.sender_id FOR UPDATE OF e",
        );
        Ok(())
    }
}

/// Reads each conversation's version (its highest `seq`, `NULL` for none), one index entry
/// each.
struct HeadsStatement<'a> {
    sender_ids: Vec<&'a str>,
}

fixed_text!(HeadsStatement => (Text, Nullable<BigInt>));

impl QueryFragment<Pg> for HeadsStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql(
            "SELECT u.sender_id, (SELECT e.seq FROM events e WHERE e.sender_id = u.sender_id \
             ORDER BY e.seq DESC LIMIT 1) FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.sender_ids)?;
        out.push_sql(") AS u (sender_id)");
        Ok(())
    }
}

/// Inserts whole rows of any conversations, unnested from one array per column, in their
/// order.
struct InsertStatement<'a> {
    sender_ids: Vec<&'a str>,
    columns: Columns<'a>,
    seqs: Vec<Option<i64>>,
}

impl<'a> InsertStatement<'a> {
    fn new(rows: &[&'a NewEvent]) -> Self {
        Self {
            sender_ids: rows.iter().map(|row| row.sender_id.as_str()).collect(),
            columns: Columns::new(rows.iter().copied()),
            seqs: rows.iter().map(|row| row.seq).collect(),
        }
    }
}

fixed_text!(InsertStatement);

impl QueryFragment<Pg> for InsertStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql(
            "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, \
             data, seq) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.sender_ids)?;
        out.push_sql(", ");
        self.columns.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.seqs)?;
        out.push_sql(")");
        Ok(())
    }
}

/// Appends each of `items` that is at its expected version, in one READ COMMITTED
/// transaction: one statement locks the rows at the expected versions (the conversations'
/// locks, as a single append takes them); the next, with a snapshot taken after the locks
/// were granted, reads every conversation's version; then the rows of those at their version
/// are inserted, [`BATCH_ROWS`] at a time. A conversation created meanwhile by another writer
/// makes its INSERT fail on the unique `(sender_id, seq)` constraint, which rolls everything
/// back: the caller runs the batch again, and that conversation is then found stale.
pub(crate) async fn batch(
    conn: &mut AsyncPgConnection,
    items: &[Item],
) -> std::result::Result<Vec<Outcome>, TxError> {
    let order = by_sender(items);
    conn.build_transaction()
        .read_committed()
        .run(async |conn| {
            let existing: Vec<&Item> = order
                .iter()
                .map(|&index| &items[index])
                .filter(|item| item.expected > 0)
                .collect();
            let locked: HashSet<String> = if existing.is_empty() {
                HashSet::new()
            } else {
                LockStatement {
                    sender_ids: existing
                        .iter()
                        .map(|item| item.sender_id.as_str())
                        .collect(),
                    seqs: existing.iter().map(|item| item.expected).collect(),
                }
                .load::<String>(conn)
                .await?
                .into_iter()
                .collect()
            };
            let heads: HashMap<String, Option<i64>> = HeadsStatement {
                sender_ids: items.iter().map(|item| item.sender_id.as_str()).collect(),
            }
            .load::<(String, Option<i64>)>(conn)
            .await?
            .into_iter()
            .collect();
            let outcomes = Outcome::all(items, &locked, &heads);
            let rows = written_rows(items, &order, &outcomes);
            for rows in statements(&rows, BATCH_ROWS, BATCH_BYTES) {
                if InsertStatement::new(rows).execute(conn).await? != rows.len() {
                    return Err(TxError::Changed);
                }
            }
            Ok(outcomes)
        })
        .await
}
