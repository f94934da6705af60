//! Reading conversations that Rasa's own `RedisTrackerStore` wrote.
//!
//! Rasa keeps a conversation as one string key, `tracker:<sender id>` or
//! `<key_prefix>:tracker:<sender id>`, holding `json.dumps({"events": [...], "name": id})`.
//! [`RedisRasaSource`] reads those records with the same connection settings and key prefix,
//! so that they can be copied with
//! [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from) (into another store,
//! or a [`RedisStore`] with `adopt_rasa: false`: one that adopts already serves them); it
//! never writes.

use std::fmt;

use fred::clients::{Client, Pool};
use tracker_core::{Error, RasaConversation, RasaSource, Result, async_trait};

use crate::adopt::{Fetched, fetch, parse_rasa_record, scan_ids};
use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::schema::KeyLayout;
use crate::store::RedisStore;

/// The conversations Rasa's `RedisTrackerStore` stored under a `key_prefix`, read-only: a
/// [`RasaSource`] for [`TrackerStore::import_from`](tracker_core::TrackerStore::import_from).
///
/// It reads the string keys `tracker:<sender id>` (or `<key_prefix>:tracker:<sender id>`)
/// and never writes, expires or deletes anything. Open it from the same configuration as a
/// [`RedisStore`] ([`RedisRasaSource::connect`]), or on a store's connections
/// ([`RedisRasaSource::from_store`]). Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisRasaSource {
    connection: Connection,
    layout: KeyLayout,
}

impl fmt::Debug for RedisRasaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRasaSource")
            .field("rasa_prefix", &self.layout.rasa_prefix())
            .field("connection", &self.connection)
            .finish()
    }
}

impl RedisRasaSource {
    /// Connects with `config` as [`RedisStore::connect`] does, to read Rasa's keys under its
    /// `key_prefix`. Nothing is written.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or rejected credentials;
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        let connection = Connection::connect(config).await?;
        Ok(Self { connection, layout })
    }

    /// A source on an existing, connected fred client (call `init()` on it first), with the
    /// key prefix of `config` (its connection settings are not used).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_client(client: Client, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        let connection = Connection::from_client(client)?;
        Ok(Self { connection, layout })
    }

    /// A source on an existing, connected fred pool (call `init()` on it first), with the key
    /// prefix of `config` (its connection settings are not used).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `type`, `key_prefix` or `record_exp`.
    pub fn from_pool(pool: Pool, config: &RedisConfig) -> Result<Self> {
        let layout = config.key_layout()?;
        Ok(Self {
            connection: Connection::from_pool(pool),
            layout,
        })
    }

    /// The source of Rasa's keys under `store`'s key prefix, on `store`'s connections.
    pub fn from_store(store: &RedisStore) -> Self {
        Self {
            connection: store.connection().clone(),
            layout: store.layout().clone(),
        }
    }

    /// The key names; Rasa's are [`KeyLayout::rasa`].
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }
}

#[async_trait]
impl RasaSource for RedisRasaSource {
    fn describe(&self) -> String {
        format!("Rasa's Redis keys {}*", self.layout.rasa_prefix())
    }

    /// The sender ids of every conversation Rasa stored under the `key_prefix`: string keys
    /// matching `<rasa prefix>*` found with `SCAN` (on every primary of a cluster), prefix
    /// stripped, sorted and without duplicates. A [`RedisStore`]'s own keys never match (see
    /// the key layout), and neither do keys of another type.
    ///
    /// `SCAN` returns every key that exists for the whole scan; keys written or deleted while
    /// it runs may or may not be included.
    async fn sender_ids(&self) -> Result<Vec<String>> {
        scan_ids(&self.connection, &self.layout).await
    }

    /// Reads the conversation Rasa stored for `sender_id`, parsing its events as Rasa's
    /// `deserialise_events` does, or `None` if there is no such key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the key when its value is not a Rasa record (or not a
    /// string); [`Error::Unavailable`] / [`Error::Backend`] for Redis failures.
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>> {
        let key = self.layout.rasa(sender_id);
        let text = match fetch(&self.connection, &self.layout, sender_id).await? {
            Fetched::Missing => return Ok(None),
            Fetched::NotAString => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("Rasa record at key {key:?} is not a string"),
                ));
            }
            Fetched::Text(text) => text,
        };
        let events = parse_rasa_record(sender_id, &key, &text)?;
        Ok(Some(RasaConversation {
            sender_id: sender_id.to_owned(),
            events,
        }))
    }
}
