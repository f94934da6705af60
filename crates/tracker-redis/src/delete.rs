//! Deleting a conversation at an expected version: this store's keys (its outbox checkpoint
//! and lease with them), Rasa's record of it (with adoption), its index entries and (single
//! servers, with the outbox on) its pending-set entry.
//!
//! On a single server one script does it all. In a cluster Rasa's key, the index and the
//! pending set live in other slots than the conversation's keys, so the delete takes steps,
//! ordered so that a reader never sees an older state come back: Rasa's record is deleted
//! first (while this store's layout holds the conversation, Rasa's record is not read, so
//! removing it changes nothing a reader sees), then this store's keys at the expected
//! version, then the index entry. A pending-set entry is left: the outbox's next `pending`
//! finds the conversation published whole (version 0) and takes it off.

use fred::interfaces::HashesInterface;
use fred::types::Value;
use tracker_core::{Error, ExpectedVersion, Result};

use crate::adopt::RasaRecord;
use crate::connection::Connection;
use crate::error::conversation_error;
use crate::index::Index;
use crate::schema::{KeyLayout, parse_version};
use crate::scripts::{DELETE, RASA_DELETE, ScriptKeys};

/// Attempts before giving up on a Rasa record that keeps changing while it is deleted.
const ATTEMPTS: usize = 5;

/// What a delete works with.
pub(crate) struct Deletion<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) layout: &'a KeyLayout,
    pub(crate) index: Index<'a>,
    pub(crate) adopt: bool,
    pub(crate) outbox: bool,
}

/// What the delete script answered.
enum Outcome {
    /// Deleted; whether the conversation existed.
    Deleted(bool),
    /// At another version: nothing deleted.
    Conflict(u64),
    /// Rasa's record must be read (again) first.
    ReadRasa,
}

impl Deletion<'_> {
    /// Deletes `sender_id` if it is at `expected`; returns whether it existed.
    pub(crate) async fn run(&self, sender_id: &str, expected: ExpectedVersion) -> Result<bool> {
        if self.connection.is_clustered() {
            self.clustered(sender_id, expected).await
        } else {
            self.single(sender_id, expected).await
        }
    }

    /// One script: the version check (against Rasa's record when only Rasa holds the
    /// conversation) and every key.
    async fn single(&self, id: &str, expected: ExpectedVersion) -> Result<bool> {
        let layout = self.layout;
        let mut keys = ScriptKeys::new(vec![
            layout.events(id),
            layout.head(id),
            layout.outbox(id),
            layout.index(),
            layout.index_expiry(),
        ]);
        let positions = [
            keys.optional(self.adopt.then(|| layout.rasa(id))),
            keys.optional(self.outbox.then(|| layout.outbox_pending())),
        ];
        let keys = keys.into_keys();
        let mut mode = if self.adopt { "probe" } else { "own" };
        let mut record: Option<RasaRecord> = None;
        for _ in 0..ATTEMPTS {
            let outcome = self
                .script(keys.clone(), positions, id, expected, mode, record.as_ref())
                .await?;
            match outcome {
                Outcome::Deleted(existed) => return Ok(existed),
                Outcome::Conflict(actual) => return Err(conflict(id, expected, actual)),
                Outcome::ReadRasa => {
                    record = RasaRecord::read(self.connection, layout, id).await?;
                    mode = "rasa";
                }
            }
        }
        Err(changing(id, expected, record.as_ref()))
    }

    /// Steps: Rasa's record, then this store's keys at the expected version, then the index.
    async fn clustered(&self, id: &str, expected: ExpectedVersion) -> Result<bool> {
        let layout = self.layout;
        let keys = vec![layout.events(id), layout.head(id), layout.outbox(id)];
        let mut record: Option<RasaRecord> = None;
        let mut attempt = 0;
        let existed = loop {
            attempt += 1;
            if attempt > ATTEMPTS {
                return Err(changing(id, expected, record.as_ref()));
            }
            let own = self.own_version(id).await?;
            if own.is_some() || !self.adopt {
                if let (Some(own), ExpectedVersion::Exact(version)) = (&own, expected) {
                    let own = parse_version(id, own)?;
                    if own != version {
                        return Err(conflict(id, expected, own));
                    }
                }
                if self.adopt {
                    self.delete_rasa(id, "").await?;
                }
                match self
                    .script(keys.clone(), [0, 0], id, expected, "own", None)
                    .await?
                {
                    Outcome::Deleted(existed) => break existed,
                    Outcome::Conflict(actual) => return Err(conflict(id, expected, actual)),
                    Outcome::ReadRasa => continue,
                }
            }
            // Only Rasa's record may hold the conversation.
            let rasa_held = match expected {
                // Whatever it holds goes (it need not even parse).
                ExpectedVersion::Any => self.delete_rasa(id, "").await? == 1,
                ExpectedVersion::Exact(version) => {
                    record = RasaRecord::read(self.connection, layout, id).await?;
                    let rasa_version = record.as_ref().map_or(0, RasaRecord::version);
                    if version != rasa_version {
                        return Err(conflict(id, expected, rasa_version));
                    }
                    match &record {
                        None => false,
                        Some(record) => match self.delete_rasa(id, &record.sha1).await? {
                            // Changed or gone since it was read: read it again.
                            0 | 2 => continue,
                            _ => rasa_version > 0,
                        },
                    }
                }
            };
            // The conversation may have been adopted since its version was read; then this
            // store's keys must be at the expected version too.
            match self
                .script(keys.clone(), [0, 0], id, expected, "rest", None)
                .await?
            {
                Outcome::Deleted(existed) => break existed || rasa_held,
                Outcome::Conflict(actual) => return Err(conflict(id, expected, actual)),
                Outcome::ReadRasa => continue,
            }
        };
        let ids = [id.to_owned()];
        self.index.forget(&ids).await?;
        self.index.restore_recreated(&ids).await?;
        Ok(existed)
    }

    /// The version in this store's layout as stored (parsed only where needed, so that a
    /// conversation whose head is unreadable can still be deleted), if it holds the
    /// conversation.
    async fn own_version(&self, id: &str) -> Result<Option<Value>> {
        let head = self.layout.head(id);
        let version: Value = self
            .connection
            .on_key(&head, |client| {
                let head = head.clone();
                async move { client.hget(head, "version").await }
            })
            .await
            .map_err(|e| conversation_error(id, "delete", e))?;
        match version {
            Value::Null => Ok(None),
            version => Ok(Some(version)),
        }
    }

    /// Deletes Rasa's record if its text has SHA-1 `sha1` (any text for `""`); returns the
    /// script's answer (see `scripts/rasa_delete.lua`).
    async fn delete_rasa(&self, id: &str, sha1: &str) -> Result<i64> {
        let reply = self
            .connection
            .run(
                &RASA_DELETE,
                vec![self.layout.rasa(id)],
                vec![
                    Value::from(sha1),
                    Value::from(KeyLayout::rasa_empty_record(id)),
                ],
            )
            .await
            .map_err(|e| conversation_error(id, "delete", e))?;
        reply.as_i64().ok_or_else(|| unexpected_reply(id, &reply))
    }

    /// Runs the delete script; `positions` are those of Rasa's key and the pending set among
    /// `keys` (0 when not given).
    async fn script(
        &self,
        keys: Vec<String>,
        positions: [usize; 2],
        id: &str,
        expected: ExpectedVersion,
        mode: &str,
        record: Option<&RasaRecord>,
    ) -> Result<Outcome> {
        let expected_arg = match expected {
            ExpectedVersion::Any => String::new(),
            ExpectedVersion::Exact(version) => version.to_string(),
        };
        let args = vec![
            Value::from(id),
            Value::from(expected_arg),
            Value::from(mode),
            Value::from(record.map(|r| r.sha1.clone()).unwrap_or_default()),
            Value::from(record.map_or(0, RasaRecord::version).to_string()),
            Value::from(KeyLayout::rasa_empty_record(id)),
            Value::from(positions[0].to_string()),
            Value::from(positions[1].to_string()),
        ];
        let reply = self
            .connection
            .run(&DELETE, keys, args)
            .await
            .map_err(|e| conversation_error(id, "delete", e))?;
        let Value::Array(items) = &reply else {
            return Err(unexpected_reply(id, &reply));
        };
        match (items.first().and_then(Value::as_i64), items.get(1)) {
            (Some(1), Some(existed)) => Ok(Outcome::Deleted(existed.as_i64() == Some(1))),
            (Some(0), Some(actual)) => Ok(Outcome::Conflict(parse_version(id, actual)?)),
            (Some(2 | 3), _) => Ok(Outcome::ReadRasa),
            _ => Err(unexpected_reply(id, &reply)),
        }
    }
}

fn conflict(id: &str, expected: ExpectedVersion, actual: u64) -> Error {
    let expected = match expected {
        ExpectedVersion::Exact(version) => version,
        ExpectedVersion::Any => actual,
    };
    crate::error::conflict(id, "delete", expected, actual)
}

/// Rasa's record changed every time it was read: report the last version seen, for the
/// caller to read again.
fn changing(id: &str, expected: ExpectedVersion, record: Option<&RasaRecord>) -> Error {
    conflict(id, expected, record.map_or(0, RasaRecord::version))
}

fn unexpected_reply(sender_id: &str, reply: &Value) -> Error {
    Error::backend(format!(
        "delete of conversation {sender_id:?}: unexpected reply {reply:?}"
    ))
}
