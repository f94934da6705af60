//! Stores with their outbox on, each in a database of its own (a relay publishes every
//! pending conversation of the store it is given): a new SQLite file or in-memory database, a
//! new PostgreSQL schema, a new MariaDB/MySQL database. The schema or database is dropped
//! when the store is.

use std::ops::Deref;

use tracker_core::{
    Append, Capabilities, ExpectedVersion, ListPage, ListRequest, ReadScope, SenderId, Store,
    StoredConversation,
};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use tracker_sql::diesel_async::{self, AsyncConnection, SimpleAsyncConnection};
use tracker_sql::{SqlConfig, SqlStore};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use tracker_testkit::{Service, service_url};

/// Where an isolated store's data lives.
#[derive(Debug, Clone)]
pub enum Place {
    /// A PostgreSQL schema on the server at `url`.
    Postgres { url: String, schema: String },
    /// A MariaDB/MySQL database: `url` names it, `admin_url` is the server's test database.
    Mysql {
        url: String,
        admin_url: String,
        database: String,
    },
    /// An SQLite file, or `:memory:`.
    Sqlite { path: String },
}

/// A store in a database of its own, dropped with it.
#[derive(Debug)]
pub struct Isolated {
    pub store: SqlStore,
    pub place: Place,
    /// The configuration the store was connected with.
    pub config: SqlConfig,
}

impl Deref for Isolated {
    type Target = SqlStore;

    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if matches!(self.place, Place::Sqlite { .. }) {
            return;
        }
        // The tests run on a multi-threaded runtime, where a drop may block its worker.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let place = self.place.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                if let Err(error) = remove(&place).await {
                    eprintln!("could not remove the test data of {place:?}: {error}");
                }
            })
        });
    }
}

/// Drops the schema or database of `place`.
async fn remove(place: &Place) -> Result<(), String> {
    match place {
        #[cfg(feature = "postgres")]
        Place::Postgres { url, schema } => {
            let mut conn = diesel_async::AsyncPgConnection::establish(url)
                .await
                .map_err(|e| e.to_string())?;
            conn.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .map_err(|e| e.to_string())
        }
        #[cfg(feature = "mysql")]
        Place::Mysql {
            admin_url,
            database,
            ..
        } => {
            let mut conn = diesel_async::AsyncMysqlConnection::establish(admin_url)
                .await
                .map_err(|e| e.to_string())?;
            conn.batch_execute(&format!("DROP DATABASE `{database}`"))
                .await
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

#[tracker_core::async_trait]
impl Store for Isolated {
    fn name(&self) -> &str {
        self.store.name()
    }

    fn outbox(&self) -> Option<&dyn tracker_core::outbox::Outbox> {
        self.store.outbox()
    }

    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    async fn version(&self, sender_id: &SenderId) -> tracker_core::Result<u64> {
        self.store.version(sender_id).await
    }

    async fn append(&self, append: &Append) -> tracker_core::Result<u64> {
        self.store.append(append).await
    }

    async fn append_batch(
        &self,
        appends: &[Append],
    ) -> tracker_core::Result<Vec<tracker_core::Result<u64>>> {
        self.store.append_batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> tracker_core::Result<Option<StoredConversation>> {
        self.store.read(sender_id, scope).await
    }

    async fn list(&self, request: &ListRequest) -> tracker_core::Result<ListPage> {
        self.store.list(request).await
    }

    async fn delete(
        &self,
        sender_id: &SenderId,
        expected: ExpectedVersion,
    ) -> tracker_core::Result<bool> {
        self.store.delete(sender_id, expected).await
    }
}

/// A fresh name for a schema or database.
fn fresh_name() -> String {
    format!("tracker_outbox_{}", uuid::Uuid::new_v4().simple())
}

/// A store with its outbox on in a new schema of the test PostgreSQL server, or `None`
/// (after a loud skip) without one.
#[cfg(feature = "postgres")]
pub async fn postgres() -> Option<Isolated> {
    postgres_with(true).await
}

/// A store (its outbox on or off) in a new schema of the test PostgreSQL server.
#[cfg(feature = "postgres")]
pub async fn postgres_with(outbox: bool) -> Option<Isolated> {
    let url = service_url(Service::Postgres).await?.url;
    let schema = fresh_name();
    let mut admin = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .expect("connect to the test server");
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .expect("create the schema");
    let config = SqlConfig {
        schema: Some(schema.clone()),
        pool_size: Some(10),
        ..SqlConfig::from_url(&url)
    }
    .with_outbox(outbox);
    Some(Isolated::connect(config, Place::Postgres { url, schema }).await)
}

/// A store with its outbox on in a new database of the test MariaDB/MySQL server, or `None`
/// (after a loud skip) without one.
#[cfg(feature = "mysql")]
pub async fn mysql() -> Option<Isolated> {
    mysql_with(true).await
}

/// A store (its outbox on or off) in a new database of the test MariaDB/MySQL server.
#[cfg(feature = "mysql")]
pub async fn mysql_with(outbox: bool) -> Option<Isolated> {
    let admin_url = service_url(Service::Mysql).await?.url;
    let database = fresh_name();
    let mut admin = diesel_async::AsyncMysqlConnection::establish(&admin_url)
        .await
        .expect("connect to the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE `{database}`"))
        .await
        .expect("create the database");
    let url = super::with_database(&admin_url, &database);
    let config = SqlConfig {
        pool_size: Some(10),
        ..SqlConfig::from_url(&url)
    }
    .with_outbox(outbox);
    let place = Place::Mysql {
        url,
        admin_url,
        database,
    };
    Some(Isolated::connect(config, place).await)
}

/// A store with its outbox on in a new SQLite file.
#[cfg(feature = "sqlite")]
pub async fn sqlite_file() -> Option<Isolated> {
    sqlite_file_with(true).await
}

/// A store (its outbox on or off) in a new SQLite file.
#[cfg(feature = "sqlite")]
pub async fn sqlite_file_with(outbox: bool) -> Option<Isolated> {
    let path = super::temp_sqlite_path();
    let config = SqlConfig::sqlite(&path).with_outbox(outbox);
    Some(Isolated::connect(config, Place::Sqlite { path }).await)
}

/// A store with its outbox on in a new in-memory SQLite database.
#[cfg(feature = "sqlite")]
pub async fn sqlite_memory() -> Option<Isolated> {
    let config = SqlConfig::sqlite(":memory:").with_outbox(true);
    let path = ":memory:".to_owned();
    Some(Isolated::connect(config, Place::Sqlite { path }).await)
}

impl Isolated {
    async fn connect(config: SqlConfig, place: Place) -> Self {
        let store = SqlStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect to {place:?}: {e:?}"));
        Self {
            store,
            place,
            config,
        }
    }
}

/// A connection as Rasa's, to the schema of an isolated PostgreSQL store.
#[cfg(feature = "postgres")]
pub async fn rasa_postgres(place: &Place) -> diesel_async::AsyncPgConnection {
    let Place::Postgres { url, schema } = place else {
        panic!("not PostgreSQL: {place:?}");
    };
    let mut conn = super::rasa::connect_postgres(url).await;
    conn.batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .expect("search path");
    conn
}

/// A connection as Rasa's, to the database of an isolated MariaDB/MySQL store.
#[cfg(feature = "mysql")]
pub async fn rasa_mysql(place: &Place) -> diesel_async::AsyncMysqlConnection {
    let Place::Mysql { url, .. } = place else {
        panic!("not MySQL: {place:?}");
    };
    super::rasa::connect_mysql(url).await
}

/// A connection as Rasa's (pysqlite's 5 s busy timeout) to an isolated SQLite store's file.
#[cfg(feature = "sqlite")]
pub async fn rasa_sqlite(place: &Place) -> tracker_sql::SqliteConnection {
    let Place::Sqlite { path } = place else {
        panic!("not SQLite: {place:?}");
    };
    super::rasa::connect_sqlite(path).await
}
