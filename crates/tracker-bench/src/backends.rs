//! The backends measured, and the raw driver access used as the baseline.

use std::sync::Arc;

use tracker_store::memory::MemoryStore;
use tracker_store::redis::fred::prelude::*;
use tracker_store::redis::{RedisConfig, RedisStore};
use tracker_store::sql::diesel::backend::Backend as DieselBackend;
use tracker_store::sql::diesel::query_builder::{AstPass, QueryFragment, QueryId};
use tracker_store::sql::diesel::serialize::ToSql;
use tracker_store::sql::diesel::sql_types::{BigInt, Double, Nullable, Text};
use tracker_store::sql::diesel::{self, QueryableByName};
use tracker_store::sql::diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl,
};
use tracker_store::sql::{SqlConfig, SqlStore, SqliteConnection};
use tracker_store::{Append, Event, SenderId, Store, TrackerStore};

/// A backend to measure.
pub struct Backend {
    /// Short name (`--only`).
    pub name: &'static str,
    /// What it runs on.
    pub label: &'static str,
    /// A local stand-in for a cloud or unavailable server: measured with small sizes, and its
    /// figures describe the stand-in, not the real service.
    pub stand_in: bool,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    Sqlite,
    Postgres,
    Mysql,
    Redis,
    RedisCluster,
    Mongo,
    Dynamo,
}

/// Every backend, in report order.
pub fn all() -> Vec<Backend> {
    vec![
        Backend {
            name: "memory",
            label: "in process",
            stand_in: false,
            kind: Kind::Memory,
        },
        Backend {
            name: "sqlite",
            label: "SQLite file (bundled), WAL",
            stand_in: false,
            kind: Kind::Sqlite,
        },
        Backend {
            name: "postgres",
            label: "PostgreSQL, local server",
            stand_in: false,
            kind: Kind::Postgres,
        },
        Backend {
            name: "mariadb",
            label: "MariaDB, local server",
            stand_in: false,
            kind: Kind::Mysql,
        },
        Backend {
            name: "redis",
            label: "Redis, local single node",
            stand_in: false,
            kind: Kind::Redis,
        },
        Backend {
            name: "redis-cluster",
            label: "Redis Cluster, 3 local masters",
            stand_in: false,
            kind: Kind::RedisCluster,
        },
        Backend {
            name: "mongo-standin",
            label: "CongoDB, a MongoDB stand-in in Node.js (not MongoDB: its figures say nothing about a real server)",
            stand_in: true,
            kind: Kind::Mongo,
        },
        Backend {
            name: "dynamo-standin",
            label: "moto's DynamoDB server, single-threaded Python (not DynamoDB: its figures say nothing about the real service)",
            stand_in: true,
            kind: Kind::Dynamo,
        },
    ]
}

/// Raw driver access to the same data, for the baselines.
pub enum Raw {
    /// No separate driver (the in-memory store).
    None,
    /// An SQL connection.
    Sql(Box<RawSql>),
    /// The Redis store's own client, used directly.
    Redis(Arc<RedisStore>),
}

/// A raw SQL connection of one dialect.
pub enum RawSql {
    /// PostgreSQL.
    Postgres(Box<AsyncPgConnection>),
    /// MySQL / MariaDB.
    Mysql(AsyncMysqlConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// A store ready to measure.
pub struct Opened {
    /// The store.
    pub store: TrackerStore,
    /// Raw access for the baselines.
    pub raw: Raw,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (cargo xtask bench sets it)"))
}

impl Backend {
    /// Connects.
    pub async fn open(&self) -> Result<Opened, String> {
        let error = |e: tracker_store::Error| e.to_string();
        match self.kind {
            Kind::Memory => Ok(Opened {
                store: TrackerStore::new(MemoryStore::new()),
                raw: Raw::None,
            }),
            Kind::Sqlite => {
                let path = std::env::temp_dir().join(format!(
                    "tracker-bench-{}.db",
                    uuid::Uuid::new_v4().simple()
                ));
                let path = path.display().to_string();
                let store = SqlStore::connect(&SqlConfig::sqlite(&path))
                    .await
                    .map_err(error)?;
                let raw = SqliteConnection::establish(&path)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Opened {
                    store: TrackerStore::new(store),
                    raw: Raw::Sql(Box::new(RawSql::Sqlite(raw))),
                })
            }
            Kind::Postgres | Kind::Mysql => {
                let url = env(if matches!(self.kind, Kind::Postgres) {
                    "TRACKER_TEST_POSTGRES_URL"
                } else {
                    "TRACKER_TEST_MYSQL_URL"
                })?;
                // The store's own pool settings, as a deployment gets them.
                let config = SqlConfig::from_url(&url);
                let store = SqlStore::connect(&config).await.map_err(error)?;
                let raw = if matches!(self.kind, Kind::Postgres) {
                    RawSql::Postgres(Box::new(
                        AsyncPgConnection::establish(&url)
                            .await
                            .map_err(|e| e.to_string())?,
                    ))
                } else {
                    RawSql::Mysql(
                        AsyncMysqlConnection::establish(&url)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                };
                Ok(Opened {
                    store: TrackerStore::new(store),
                    raw: Raw::Sql(Box::new(raw)),
                })
            }
            Kind::Mongo => {
                let url = env("TRACKER_TEST_MONGO_URL")?;
                let config = tracker_store::mongo::MongoConfig::from_url(url).with_db(format!(
                    "bench{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ));
                let store = tracker_store::mongo::MongoStore::connect(&config)
                    .await
                    .map_err(error)?;
                Ok(Opened {
                    store: TrackerStore::new(store),
                    raw: Raw::None,
                })
            }
            Kind::Dynamo => {
                let url = env("TRACKER_TEST_DYNAMO_URL")?;
                let config = tracker_store::dynamo::DynamoConfig {
                    endpoint_url: Some(url),
                    ..tracker_store::dynamo::DynamoConfig::with_table(format!(
                        "bench{}",
                        &uuid::Uuid::new_v4().simple().to_string()[..8]
                    ))
                };
                let store = tracker_store::dynamo::DynamoStore::connect(&config)
                    .await
                    .map_err(error)?;
                Ok(Opened {
                    store: TrackerStore::new(store),
                    raw: Raw::None,
                })
            }
            Kind::Redis | Kind::RedisCluster => {
                let url = env(if matches!(self.kind, Kind::Redis) {
                    "TRACKER_TEST_REDIS_URL"
                } else {
                    "TRACKER_TEST_REDIS_CLUSTER_URL"
                })?;
                let mut config = RedisConfig::from_url(url).with_key_prefix(format!(
                    "bench{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ));
                config.pool_size = 4;
                config.timeout = 30;
                let store = Arc::new(RedisStore::connect(&config).await.map_err(error)?);
                Ok(Opened {
                    store: TrackerStore::from_arc(store.clone() as Arc<dyn Store>),
                    raw: Raw::Redis(store),
                })
            }
        }
    }
}

#[derive(QueryableByName)]
struct DataRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    data: Option<String>,
}

/// Runs the same diesel code on whichever raw SQL connection.
macro_rules! on_raw_sql {
    ($raw:expr, |$conn:ident, $placeholder:ident| $body:expr) => {
        match $raw {
            RawSql::Postgres($conn) => {
                let $placeholder = |n: usize| format!("${n}");
                $body
            }
            RawSql::Mysql($conn) => {
                let $placeholder = |_: usize| "?".to_owned();
                $body
            }
            RawSql::Sqlite($conn) => {
                let $placeholder = |_: usize| "?".to_owned();
                $body
            }
        }
    };
}

/// One row as the store fills the `events` table: what [`Append::new`] renders for an event.
///
/// [`Append::new`]: tracker_store::Append::new
#[derive(Debug, Clone)]
pub struct RawRow {
    /// The event's tag.
    pub type_name: String,
    /// Epoch seconds.
    pub timestamp: f64,
    /// Intent of a user message.
    pub intent_name: Option<String>,
    /// The event's `name`.
    pub action_name: Option<String>,
    /// The event's Rasa JSON.
    pub data: String,
    /// Position in the conversation.
    pub seq: i64,
}

impl RawRow {
    /// The rows of `events` appended to `sender_id` at `version`, rendered as the store
    /// renders them.
    pub fn render(sender_id: &str, version: u64, events: &[Event]) -> Result<Vec<Self>, String> {
        let sender = SenderId::new(sender_id).map_err(|e| e.to_string())?;
        let append = Append::new(sender, version, events).map_err(|e| e.to_string())?;
        append
            .records()
            .iter()
            .map(|record| {
                Ok(Self {
                    type_name: record.type_name.clone(),
                    timestamp: record.timestamp,
                    intent_name: record.intent_name.clone(),
                    action_name: record.action_name.clone(),
                    data: record.json.clone(),
                    seq: i64::try_from(record.seq).map_err(|e| e.to_string())?,
                })
            })
            .collect()
    }
}

/// One multi-row `INSERT ... VALUES` of a conversation's rows, as a prepared statement the
/// connection keeps (diesel caches it by its SQL text): the driver's best single write.
struct RawInsert<'a> {
    sender_id: &'a str,
    rows: &'a [RawRow],
}

impl QueryId for RawInsert<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for RawInsert<'_>
where
    DB: DieselBackend
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<Double>
        + diesel::sql_types::HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    f64: ToSql<Double, DB>,
    i64: ToSql<BigInt, DB>,
    Option<String>: ToSql<Nullable<Text>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
        out.push_sql(
            "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, \
             data, seq) VALUES ",
        );
        for (index, row) in self.rows.iter().enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(self.sender_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.type_name.as_str())?;
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&row.timestamp)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.intent_name)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.action_name)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.data.as_str())?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.seq)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl RawSql {
    /// The driver's best single write of one save's rows: one multi-row INSERT in autocommit,
    /// prepared once per connection and reused.
    pub async fn insert(&mut self, sender_id: &str, rows: &[RawRow]) -> Result<(), String> {
        let query = RawInsert { sender_id, rows };
        let inserted = match self {
            RawSql::Postgres(conn) => query.execute(&mut **conn).await,
            RawSql::Mysql(conn) => query.execute(conn).await,
            RawSql::Sqlite(conn) => query.execute(conn).await,
        }
        .map_err(|e| e.to_string())?;
        if inserted == rows.len() {
            Ok(())
        } else {
            Err(format!("inserted {inserted} rows of {}", rows.len()))
        }
    }

    /// The best single query for a whole conversation: its rows' `data` by `seq`.
    pub async fn full(&mut self, sender_id: &str) -> Result<Vec<String>, String> {
        let rows: Vec<DataRow> = on_raw_sql!(self, |conn, p| {
            diesel::sql_query(format!(
                "SELECT data FROM events WHERE sender_id = {} ORDER BY seq",
                p(1)
            ))
            .bind::<diesel::sql_types::Text, _>(sender_id)
            .load(conn)
            .await
            .map_err(|e| e.to_string())?
        });
        Ok(rows.into_iter().filter_map(|row| row.data).collect())
    }

    /// The best single query for a conversation's latest session: from the event before the
    /// last `session_started` on, through the same indexes the store uses.
    pub async fn latest_session(&mut self, sender_id: &str) -> Result<Vec<String>, String> {
        let rows: Vec<DataRow> = on_raw_sql!(self, |conn, p| {
            diesel::sql_query(format!(
                "SELECT data FROM events WHERE sender_id = {} AND seq >= COALESCE((SELECT MAX(seq) \
                 FROM events s WHERE s.sender_id = {} AND s.type_name = 'session_started') - 1, 1) \
                 ORDER BY seq",
                p(1),
                p(2)
            ))
            .bind::<diesel::sql_types::Text, _>(sender_id)
            .bind::<diesel::sql_types::Text, _>(sender_id)
            .load(conn)
            .await
            .map_err(|e| e.to_string())?
        });
        Ok(rows.into_iter().filter_map(|row| row.data).collect())
    }

    /// The fastest plain bulk path: multi-row INSERTs of 1,000 rows in one transaction per
    /// statement batch.
    pub async fn bulk_insert(&mut self, rows: &[(String, i64, String)]) -> Result<(), String> {
        // (sender_id, seq, data); type_name and timestamp as a store would fill them.
        for chunk in rows.chunks(1_000) {
            on_raw_sql!(self, |conn, p| {
                let mut sql = String::from(
                    "INSERT INTO events (sender_id, type_name, timestamp, data, seq) VALUES ",
                );
                for index in 0..chunk.len() {
                    if index > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!(
                        "({}, 'bot', 1700000000.5, {}, {})",
                        p(3 * index + 1),
                        p(3 * index + 2),
                        p(3 * index + 3)
                    ));
                }
                let mut query = diesel::sql_query(sql).into_boxed();
                for (sender_id, seq, data) in chunk {
                    query = query
                        .bind::<diesel::sql_types::Text, _>(sender_id.clone())
                        .bind::<diesel::sql_types::Text, _>(data.clone())
                        .bind::<diesel::sql_types::BigInt, _>(*seq);
                }
                query.execute(conn).await.map_err(|e| e.to_string())?;
            });
        }
        Ok(())
    }
}

/// Redis baselines on the store's own client and key layout.
pub mod redis_raw {
    use super::*;

    /// LRANGE from a known offset: the best a client that remembers where the session starts
    /// can do (one command).
    pub async fn latest_session(
        store: &RedisStore,
        sender_id: &str,
        from_seq: u64,
    ) -> Result<Vec<String>, String> {
        let key = store.layout().events(sender_id);
        store
            .pool()
            .lrange(key, from_seq as i64 - 1, -1)
            .await
            .map_err(|e| e.to_string())
    }

    /// A conversation's whole event list (one command).
    pub async fn full(store: &RedisStore, sender_id: &str) -> Result<Vec<String>, String> {
        store
            .pool()
            .lrange(store.layout().events(sender_id), 0, -1)
            .await
            .map_err(|e| e.to_string())
    }

    /// The best single write of one save: RPUSH of the events and HSET of the head's
    /// version, pipelined (one round trip).
    pub async fn save(
        store: &RedisStore,
        sender_id: &str,
        version: u64,
        events: &[String],
    ) -> Result<(), String> {
        let pipeline = store.pool().next().pipeline();
        let _: () = pipeline
            .rpush(store.layout().events(sender_id), events.to_vec())
            .await
            .map_err(|e| e.to_string())?;
        let _: () = pipeline
            .hset(
                store.layout().head(sender_id),
                ("version", (version + events.len() as u64) as i64),
            )
            .await
            .map_err(|e| e.to_string())?;
        let _: Vec<Value> = pipeline.all().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Pipelined RPUSH of each conversation's events plus its head.
    pub async fn bulk_insert(
        store: &RedisStore,
        conversations: &[(String, Vec<String>)],
    ) -> Result<(), String> {
        for chunk in conversations.chunks(500) {
            let pipeline = store.client().pipeline();
            for (sender_id, events) in chunk {
                let _: () = pipeline
                    .rpush(store.layout().events(sender_id), events.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let _: () = pipeline
                    .hset(
                        store.layout().head(sender_id),
                        ("version", events.len() as i64),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let _: Vec<Value> = pipeline.all().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
