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

use tracker_core::{Append, Result};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::pool::bounded;
use crate::pool::{Connections, SqlClient, acquire};
use crate::schema::NewEvent;

/// Rows per statement on MySQL and SQLite (7 bound parameters a row): far below every
/// dialect's bound-parameter limit.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
const INSERT_CHUNK: usize = 1_000;

/// Statements of at most this many rows are kept prepared per connection on MySQL and SQLite,
/// whose statement text grows with the rows: the sizes of one turn's save. Longer ones are
/// prepared for each use, so that a connection keeps a bounded number of statements (MySQL
/// bounds them server-wide: `max_prepared_stmt_count`).
#[cfg(any(feature = "mysql", feature = "sqlite"))]
const CACHED_ROWS: usize = 8;

/// Why a write did not happen.
pub(crate) enum TxError {
    /// The conversation is at this version, not the expected one.
    Stale(u64),
    /// The conversation is not at the expected version (another writer came first); the
    /// version it is at must be read.
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

/// Appends `rows` if the conversation is at `append`'s expected version, within the query
/// timeout on a server dialect.
///
/// # Errors
/// The outer error is a failure to get a connection or a timeout; the inner one is what the
/// write found (a stale version or a query error).
pub(crate) async fn run(
    connections: &Connections,
    append: &Append,
    rows: &std::sync::Arc<Vec<NewEvent>>,
) -> Result<std::result::Result<(), TxError>> {
    let context = "appending events";
    let expected = crate::schema::to_i64(append.expected_version())?;
    let sender_id = append.sender_id().as_str();
    Ok(match &connections.client {
        #[cfg(feature = "postgres")]
        SqlClient::Postgres(pool) => {
            let conn = acquire(pool, context).await?;
            bounded!(
                connections.query_timeout,
                conn,
                context,
                connections.pg_cancel(&conn),
                async {
                    lost(
                        context,
                        postgres::append(&mut conn, sender_id, expected, rows).await,
                    )
                }
            )?
        }
        #[cfg(feature = "mysql")]
        SqlClient::Mysql(pool) => {
            let conn = acquire(pool, context).await?;
            bounded!(
                connections.query_timeout,
                conn,
                context,
                Connections::mysql_cancel(&conn),
                async {
                    lost(
                        context,
                        mysql::append(&mut conn, sender_id, expected, rows).await,
                    )
                }
            )?
        }
        #[cfg(feature = "sqlite")]
        SqlClient::Sqlite(pool) => {
            let _writer = connections.sqlite_writer.lock().await;
            let mut conn = acquire(pool, context).await?;
            sqlite::append(&mut conn, sender_id.to_owned(), expected, rows.clone()).await
        }
    })
}

/// A write's outcome, with a temporary driver error other than a deadlock (which is run
/// again) as the outer error: the connection may be lost, and `bounded!` drops it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn lost<T>(
    context: &str,
    outcome: std::result::Result<T, TxError>,
) -> Result<std::result::Result<T, TxError>> {
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

/// The PostgreSQL append statement.
#[cfg(feature = "postgres")]
mod postgres {
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{Array, BigInt, Double, Nullable, Text};
    use diesel_async::{AsyncPgConnection, RunQueryDsl};

    use super::TxError;
    use crate::schema::NewEvent;

    /// The statement: lock the row at the expected version, read the version, insert the
    /// rows if both agree; returns the rows inserted and the version read. Its text is fixed
    /// (the rows are bound as one array per column), so diesel keeps it prepared, by type.
    struct AppendStatement<'a> {
        sender_id: &'a str,
        expected: i64,
        type_names: Vec<&'a str>,
        timestamps: Vec<Option<f64>>,
        intent_names: Vec<Option<&'a str>>,
        action_names: Vec<Option<&'a str>>,
        data: Vec<Option<&'a str>>,
    }

    /// The statement's cache key: one text for every append.
    struct AppendStatementId;

    impl QueryId for AppendStatement<'_> {
        type QueryId = AppendStatementId;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl Query for AppendStatement<'_> {
        type SqlType = (BigInt, Nullable<BigInt>);
    }

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
            out.push_bind_param::<Array<Text>, _>(&self.type_names)?;
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Double>>, _>(&self.timestamps)?;
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.intent_names)?;
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.action_names)?;
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.data)?;
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
    pub(super) async fn append(
        conn: &mut AsyncPgConnection,
        sender_id: &str,
        expected: i64,
        rows: &[NewEvent],
    ) -> std::result::Result<(), TxError> {
        let statement = AppendStatement {
            sender_id,
            expected,
            type_names: rows.iter().map(|row| row.type_name.as_str()).collect(),
            timestamps: rows.iter().map(|row| row.timestamp).collect(),
            intent_names: rows.iter().map(|row| row.intent_name.as_deref()).collect(),
            action_names: rows.iter().map(|row| row.action_name.as_deref()).collect(),
            data: rows.iter().map(|row| row.data.as_deref()).collect(),
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
}

/// `rows` as the rows of a multi-row statement: `(?, ?, ...), (?, ...)` on SQLite, `SELECT ?
/// AS c1, ... UNION ALL SELECT ?, ...` (a derived table) on MySQL.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
macro_rules! push_rows {
    ($out:expr, $rows:expr, $union:expr) => {{
        use diesel::sql_types::{BigInt, Double, Nullable, Text};
        let union: bool = $union;
        for (index, row) in $rows.iter().enumerate() {
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
        if $rows.len() > CACHED_ROWS {
            $out.unsafe_to_cache_prepared();
        }
    }};
}

/// The columns of an INSERT of whole rows.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
const INSERT_COLUMNS: &str = "INSERT INTO events (sender_id, type_name, timestamp, intent_name, \
                              action_name, data, seq) ";

/// The MySQL / MariaDB append statements.
#[cfg(feature = "mysql")]
mod mysql {
    use diesel::mysql::Mysql;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

    use super::{CACHED_ROWS, INSERT_CHUNK, INSERT_COLUMNS, TxError};
    use crate::schema::NewEvent;

    /// A multi-row INSERT of `rows`; with `lock`, only if the row at that position exists,
    /// which it locks (`FOR UPDATE`) for the statement's transaction. Kept prepared by its
    /// text when short.
    struct InsertStatement<'a> {
        rows: &'a [NewEvent],
        lock: Option<(&'a str, i64)>,
    }

    impl QueryId for InsertStatement<'_> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl QueryFragment<Mysql> for InsertStatement<'_> {
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
    async fn insert(
        conn: &mut AsyncMysqlConnection,
        rows: &[NewEvent],
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
    pub(super) async fn append(
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
}

/// The SQLite append, with diesel's synchronous query methods in scope.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use diesel::prelude::*;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sql_types::{BigInt, Text};
    use diesel::sqlite::Sqlite;

    use super::{CACHED_ROWS, INSERT_CHUNK, INSERT_COLUMNS, TxError};
    use crate::schema::{NewEvent, events};

    /// A multi-row INSERT of `rows`; with `expected`, only if the conversation is at that
    /// version. Kept prepared by its text when short.
    struct InsertStatement<'a> {
        rows: &'a [NewEvent],
        expected: Option<(&'a str, i64)>,
    }

    impl QueryId for InsertStatement<'_> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<Conn> RunQueryDsl<Conn> for InsertStatement<'_> {}

    impl QueryFragment<Sqlite> for InsertStatement<'_> {
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
    pub(super) async fn append(
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
}
