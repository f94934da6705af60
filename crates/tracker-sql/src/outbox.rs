//! The store's outbox (see `tracker_core::outbox`), with `outbox` on: the `tracker_outbox`
//! table, one row per conversation, written by triggers on `events` (see
//! `migrations/outbox/`) and read and updated here.
//!
//! - **Pending**: every statement that inserts into `events` — an append, or Rasa's own
//!   INSERT — upserts, in the same statement, the conversation's row with its new version
//!   and `pending_since` (kept if set). So an append and its mark commit or roll back
//!   together, and a failed append marks nothing. `pending_since` is NULL exactly when the
//!   conversation has nothing to publish; [`Outbox::pending`] lists the others oldest first.
//! - **Lease** and **checkpoint** are single conditional UPDATEs of the row, compared with
//!   the database's clock (`now()` on PostgreSQL, `UTC_TIMESTAMP(6)` on MySQL, `julianday`
//!   in milliseconds on SQLite), never the relay's.
//! - **Delete**: a statement deleting a conversation's events deletes its row too (a trigger),
//!   so a conversation started again is published from its first event.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use tracker_core::{Error, Outbox, OutboxEntry, Result, SenderId, async_trait};

use crate::config::Dialect;
use crate::error::driver_error;
use crate::pool::with_connection;
use crate::schema::to_i64;
use crate::store::SqlStore;

/// The longest lease taken, whatever is asked: one year.
const MAX_LEASE_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// The longest relay name: the width of the `relay` column.
const MAX_RELAY_CHARS: usize = 255;

/// The outbox's statements in one dialect. Bind order, the same in every dialect:
///
/// - `pending`: limit;
/// - `lease`: relay, lease in milliseconds, sender id, relay;
/// - `row`: relay, sender id (selects `version`, `published` and `held`: whether `relay`
///   holds a live lease);
/// - `checkpoint`: to, to, sender id, relay, from, to.
struct Statements {
    pending: &'static str,
    lease: &'static str,
    /// Whether `lease` returns the row it leased (`RETURNING version, published`).
    lease_returns: bool,
    row: &'static str,
    checkpoint: &'static str,
}

const POSTGRES: Statements = Statements {
    pending: "SELECT sender_id FROM tracker_outbox WHERE pending_since IS NOT NULL \
              AND version > published AND (lease_until IS NULL OR lease_until <= now()) \
              ORDER BY pending_since, sender_id LIMIT $1",
    lease: "UPDATE tracker_outbox SET relay = $1, \
            lease_until = now() + $2 * interval '1 millisecond' \
            WHERE sender_id = $3 AND (lease_until IS NULL OR lease_until <= now() OR relay = $4) \
            RETURNING version, published",
    lease_returns: true,
    row: "SELECT version, published, \
          CAST(CASE WHEN relay = $1 AND lease_until > now() THEN 1 ELSE 0 END AS BIGINT) AS held \
          FROM tracker_outbox WHERE sender_id = $2",
    checkpoint: "UPDATE tracker_outbox SET published = $1, relay = NULL, lease_until = NULL, \
                 pending_since = CASE WHEN version > $2 THEN pending_since END \
                 WHERE sender_id = $3 AND relay = $4 AND lease_until > now() \
                 AND published = $5 AND version >= $6",
};

// MySQL and MariaDB have no UPDATE ... RETURNING: the lease is read after it is taken.
// `UTC_TIMESTAMP(6)` is the server's clock whatever the session's time zone.
const MYSQL: Statements = Statements {
    pending: "SELECT sender_id FROM tracker_outbox WHERE pending_since IS NOT NULL \
              AND version > published \
              AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) \
              ORDER BY pending_since, sender_id LIMIT ?",
    lease: "UPDATE tracker_outbox SET relay = ?, \
            lease_until = UTC_TIMESTAMP(6) + INTERVAL ? * 1000 MICROSECOND \
            WHERE sender_id = ? \
            AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6) OR relay = ?)",
    lease_returns: false,
    row: "SELECT version, published, \
          CAST(CASE WHEN relay = ? AND lease_until > UTC_TIMESTAMP(6) THEN 1 ELSE 0 END \
          AS SIGNED) AS held FROM tracker_outbox WHERE sender_id = ?",
    checkpoint: "UPDATE tracker_outbox SET published = ?, relay = NULL, lease_until = NULL, \
                 pending_since = CASE WHEN version > ? THEN pending_since END \
                 WHERE sender_id = ? AND relay = ? AND lease_until > UTC_TIMESTAMP(6) \
                 AND published = ? AND version >= ?",
};

// Times in milliseconds since the Unix epoch: `(julianday('now') - 2440587.5) * 86400000`,
// fixed for the length of a statement.
const SQLITE: Statements = Statements {
    pending: "SELECT sender_id FROM tracker_outbox WHERE pending_since IS NOT NULL \
              AND version > published AND (lease_until IS NULL \
              OR lease_until <= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)) \
              ORDER BY pending_since, sender_id LIMIT ?",
    lease: "UPDATE tracker_outbox SET relay = ?, \
            lease_until = CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) + ? \
            WHERE sender_id = ? AND (lease_until IS NULL \
            OR lease_until <= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) \
            OR relay = ?) RETURNING version, published",
    lease_returns: true,
    row: "SELECT version, published, CASE WHEN relay = ? AND lease_until > \
          CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) THEN 1 ELSE 0 END \
          AS held FROM tracker_outbox WHERE sender_id = ?",
    checkpoint: "UPDATE tracker_outbox SET published = ?, relay = NULL, lease_until = NULL, \
                 pending_since = CASE WHEN version > ? THEN pending_since END \
                 WHERE sender_id = ? AND relay = ? \
                 AND lease_until > CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) \
                 AND published = ? AND version >= ?",
};

fn statements(dialect: Dialect) -> &'static Statements {
    match dialect {
        Dialect::Postgres => &POSTGRES,
        Dialect::Mysql => &MYSQL,
        Dialect::Sqlite => &SQLITE,
    }
}

#[derive(diesel::QueryableByName)]
struct Pending {
    #[diesel(sql_type = Text)]
    sender_id: String,
}

#[derive(diesel::QueryableByName)]
struct Leased {
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    published: i64,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    published: i64,
    /// 1 when the relay asking holds a live lease.
    #[diesel(sql_type = BigInt)]
    held: i64,
}

/// A stored version or checkpoint; a negative one is corrupt data.
fn position(sender_id: &str, column: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        Error::corrupt(
            sender_id,
            None,
            format!("the outbox's `{column}` is {value}"),
        )
    })
}

/// `relay` as a lease holder: at most as long as the column holds.
fn check_relay(relay: &str) -> Result<()> {
    if relay.is_empty() || relay.chars().count() > MAX_RELAY_CHARS {
        return Err(Error::invalid_input(format!(
            "a relay's name must have 1 to {MAX_RELAY_CHARS} characters; this one has {}",
            relay.chars().count()
        )));
    }
    Ok(())
}

/// The entry of a conversation without an outbox row (never appended to with the outbox on,
/// or deleted): nothing to publish.
fn empty(sender_id: &SenderId) -> OutboxEntry {
    OutboxEntry {
        sender_id: sender_id.clone(),
        version: 0,
        published: 0,
    }
}

impl SqlStore {
    /// The outbox row of `sender_id` and whether `relay` holds its lease.
    async fn outbox_row(&self, sender_id: &str, relay: &str) -> Result<Option<Row>> {
        let context = "reading the outbox";
        let sql = statements(self.dialect).row;
        let rows: Vec<Row> = with_connection!(self.connections, context, |conn| {
            diesel::sql_query(sql)
                .bind::<Text, _>(relay)
                .bind::<Text, _>(sender_id)
                .load(&mut *conn)
                .await
                .map_err(|e| driver_error(context, e))?
        });
        Ok(rows.into_iter().next())
    }

    /// SQLite's writers queue in the process (see `Connections::sqlite_writer`); the guard
    /// lets the next one in when dropped. Other dialects need no queue.
    async fn outbox_writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        #[cfg(feature = "sqlite")]
        if self.dialect == Dialect::Sqlite {
            return Some(self.connections.sqlite_writer.lock().await);
        }
        None
    }
}

#[async_trait]
impl Outbox for SqlStore {
    async fn pending(&self, limit: usize) -> Result<Vec<SenderId>> {
        self.require_outbox().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let context = "listing the outbox's pending conversations";
        let sql = statements(self.dialect).pending;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Pending> = with_connection!(self.connections, context, |conn| {
            diesel::sql_query(sql)
                .bind::<BigInt, _>(limit)
                .load(&mut *conn)
                .await
                .map_err(|e| driver_error(context, e))?
        });
        Ok(rows
            .into_iter()
            .filter_map(|row| match SenderId::new(row.sender_id.as_str()) {
                Ok(sender_id) => Some(sender_id),
                Err(error) => {
                    tracing::warn!(
                        store = %self.display,
                        sender_id = row.sender_id.as_str(),
                        %error,
                        "the outbox holds a conversation whose id is not a valid sender id; \
                         it is not relayed"
                    );
                    None
                }
            })
            .collect())
    }

    async fn lease(
        &self,
        sender_id: &SenderId,
        relay: &str,
        ttl: Duration,
    ) -> Result<Option<OutboxEntry>> {
        self.require_outbox().await?;
        check_relay(relay)?;
        let id = sender_id.as_str();
        let context = "taking an outbox lease";
        let statements = statements(self.dialect);
        let ttl_ms = i64::try_from(ttl.as_millis())
            .map_or(MAX_LEASE_MS, |ms| ms.min(MAX_LEASE_MS))
            .max(1);
        let _writer = self.outbox_writer().await;
        let leased: Vec<Leased> = with_connection!(self.connections, context, |conn| {
            let update = diesel::sql_query(statements.lease)
                .bind::<Text, _>(relay)
                .bind::<BigInt, _>(ttl_ms)
                .bind::<Text, _>(id)
                .bind::<Text, _>(relay);
            if statements.lease_returns {
                update
                    .load(&mut *conn)
                    .await
                    .map_err(|e| driver_error(context, e))?
            } else {
                update
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| driver_error(context, e))?;
                Vec::new()
            }
        });
        if let Some(leased) = leased.into_iter().next() {
            return Ok(Some(OutboxEntry {
                sender_id: sender_id.clone(),
                version: position(id, "version", leased.version)?,
                published: position(id, "published", leased.published)?,
            }));
        }
        // Not returned: no row, another relay's lease, or (MySQL) taken and to be read.
        match self.outbox_row(id, relay).await? {
            None => Ok(Some(empty(sender_id))),
            Some(row) if !statements.lease_returns && row.held == 1 => Ok(Some(OutboxEntry {
                sender_id: sender_id.clone(),
                version: position(id, "version", row.version)?,
                published: position(id, "published", row.published)?,
            })),
            Some(_) => Ok(None),
        }
    }

    async fn checkpoint(
        &self,
        sender_id: &SenderId,
        relay: &str,
        from: u64,
        to: u64,
    ) -> Result<()> {
        self.require_outbox().await?;
        check_relay(relay)?;
        let id = sender_id.as_str();
        if to < from {
            return Err(Error::invalid_input(format!(
                "an outbox checkpoint of {id:?} from {from} back to {to}"
            )));
        }
        let context = "checkpointing the outbox";
        let sql = statements(self.dialect).checkpoint;
        let (from_i64, to_i64) = (to_i64(from)?, to_i64(to)?);
        let _writer = self.outbox_writer().await;
        let updated: usize = with_connection!(self.connections, context, |conn| {
            diesel::sql_query(sql)
                .bind::<BigInt, _>(to_i64)
                .bind::<BigInt, _>(to_i64)
                .bind::<Text, _>(id)
                .bind::<Text, _>(relay)
                .bind::<BigInt, _>(from_i64)
                .bind::<BigInt, _>(to_i64)
                .execute(&mut *conn)
                .await
                .map_err(|e| driver_error(context, e))?
        });
        if updated > 0 {
            return Ok(());
        }
        // Nothing changed: say why.
        let Some(row) = self.outbox_row(id, relay).await? else {
            // No conversation: nothing is held and nothing is pending. A relay given the
            // empty entry of a missing conversation settles it at 0.
            return if from == 0 && to == 0 {
                Ok(())
            } else {
                Err(Error::conflict(id, from, 0))
            };
        };
        let published = position(id, "published", row.published)?;
        let version = position(id, "version", row.version)?;
        if published == from && row.held == 1 && to > version {
            return Err(Error::invalid_input(format!(
                "an outbox checkpoint of {id:?} from {from} to {to} at version {version}"
            )));
        }
        Err(Error::conflict(id, from, published))
    }
}
