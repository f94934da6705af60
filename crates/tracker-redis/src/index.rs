//! The index of sender ids behind listings: kept a superset of the conversations, with expiry
//! hints so that entries of expired conversations are dropped even when nothing lists.
//!
//! On a single server the append and delete scripts update the index in the same step as the
//! conversation. In a cluster the index lives in another slot than the conversations, so no
//! script can do both: the functions here add ids before a conversation can exist, remove
//! entries only after checking, and put back entries of conversations that came back
//! meanwhile (see the crate's README).
//!
//! With adoption, a conversation exists when this store's layout holds it or Rasa's record of
//! it holds events. Listings find Rasa's records with `SCAN` and merge their ids with the
//! index; they never write them to it.

use fred::interfaces::KeysInterface;
use fred::types::Value;
use tracker_core::{Result, SenderId};

use crate::adopt::scan_ids;
use crate::connection::Connection;
use crate::error::driver_error;
use crate::schema::KeyLayout;
use crate::scripts::{EXIST, FORGET, PRUNE, RASA_HOLDS, TOUCH};

/// The index of one store: its connections, key names, expiry and whether it adopts Rasa's
/// records.
pub(crate) struct Index<'a> {
    connection: &'a Connection,
    layout: &'a KeyLayout,
    record_exp: Option<u64>,
    adopt: bool,
}

impl<'a> Index<'a> {
    pub(crate) fn new(
        connection: &'a Connection,
        layout: &'a KeyLayout,
        record_exp: Option<u64>,
        adopt: bool,
    ) -> Self {
        Self {
            connection,
            layout,
            record_exp,
            adopt,
        }
    }

    /// The ids of the records Rasa holds under the prefix (with adoption; empty without),
    /// sorted byte-wise as the index is, found with `SCAN`: listings merge them with the
    /// index without writing them anywhere, so that listing a database Rasa serves changes
    /// nothing in it. Ids this store cannot hold (see [`SenderId`]) are left out, with a
    /// warning.
    pub(crate) async fn rasa_ids(&self) -> Result<Vec<String>> {
        if !self.adopt {
            return Ok(Vec::new());
        }
        let mut ids = scan_ids(self.connection, self.layout).await?;
        // Rasa takes any sender id; one this store cannot hold (see `SenderId`) is not listed.
        let before = ids.len();
        ids.retain(|id| SenderId::new(id.as_str()).is_ok());
        if ids.len() < before {
            tracing::warn!(
                store = "redis",
                skipped = before - ids.len(),
                "Rasa holds conversations whose sender ids this store cannot hold (empty, \
                 longer than 255 bytes or with a NUL); they are not listed"
            );
        }
        Ok(ids)
    }

    /// `record_exp` in milliseconds, as a script argument (`''` without expiry).
    fn record_exp_ms(&self) -> Value {
        Value::from(
            self.record_exp
                .map(|seconds| seconds.saturating_mul(1000).to_string())
                .unwrap_or_default(),
        )
    }

    /// Adds ids to the index (with expiry hints when conversations expire) and returns up to
    /// 16 ids per id added whose expiry hint has passed.
    pub(crate) async fn touch(&self, sender_ids: &[&str]) -> Result<Vec<String>> {
        let mut args = Vec::with_capacity(sender_ids.len() + 1);
        args.push(self.record_exp_ms());
        args.extend(sender_ids.iter().map(|id| Value::from(*id)));
        let reply = self
            .connection
            .run(
                &TOUCH,
                vec![self.layout.index(), self.layout.index_expiry()],
                args,
            )
            .await
            .map_err(|e| driver_error("adding to the conversation index", e))?;
        Ok(strings(reply))
    }

    /// For each id, whether its conversation exists: in this store's layout or, with
    /// adoption, as a Rasa record holding events (one round trip on a single server).
    pub(crate) async fn exist(&self, sender_ids: &[String]) -> Result<Vec<bool>> {
        if sender_ids.is_empty() {
            return Ok(Vec::new());
        }
        if self.connection.is_clustered() {
            // The keys are in different slots: one check each, concurrently, each to its
            // primary; Rasa's record only for conversations this store's layout lacks.
            let checks = sender_ids.iter().map(|id| async move {
                let head = self.layout.head(id);
                let own = self
                    .connection
                    .on_key(&head, |client| {
                        let head = head.clone();
                        async move { client.exists::<i64, _>(head).await }
                    })
                    .await?;
                if own > 0 || !self.adopt {
                    return Ok(own > 0);
                }
                let held = self
                    .connection
                    .run(
                        &RASA_HOLDS,
                        vec![self.layout.rasa(id)],
                        vec![Value::from(KeyLayout::rasa_empty_record(id))],
                    )
                    .await?;
                Ok(held.as_i64() == Some(1))
            });
            return futures::future::try_join_all(checks)
                .await
                .map_err(|e| driver_error("checking conversations", e));
        }
        let stride = if self.adopt { 2 } else { 1 };
        let mut keys = Vec::with_capacity(sender_ids.len() * stride);
        let mut args = Vec::with_capacity(sender_ids.len() + 1);
        args.push(Value::from(stride as i64));
        for id in sender_ids {
            keys.push(self.layout.head(id));
            if self.adopt {
                keys.push(self.layout.rasa(id));
                args.push(Value::from(KeyLayout::rasa_empty_record(id)));
            }
        }
        let found = self
            .connection
            .run(&EXIST, keys, args)
            .await
            .map_err(|e| driver_error("checking conversations", e))?;
        let found = match found {
            Value::Array(found) => found,
            _ => Vec::new(),
        };
        Ok((0..sender_ids.len())
            .map(|i| found.get(i).and_then(Value::as_i64) == Some(1))
            .collect())
    }

    /// Drops the index entries of those ids whose conversation no longer exists (expired, or
    /// deleted by a writer that stopped before removing the entry), and moves the expiry
    /// hint of the others. Best effort: failures are logged, stale entries stay and are
    /// skipped by listings.
    pub(crate) async fn prune(&self, candidates: Vec<String>) {
        if candidates.is_empty() {
            return;
        }
        let result = if self.connection.is_clustered() {
            self.prune_clustered(candidates).await
        } else {
            let layout = self.layout;
            let stride = if self.adopt { 2 } else { 1 };
            let mut keys = Vec::with_capacity(candidates.len() * stride + 2);
            keys.push(layout.index());
            keys.push(layout.index_expiry());
            let mut args = Vec::with_capacity(candidates.len() * stride + 2);
            args.push(self.record_exp_ms());
            args.push(Value::from(stride as i64));
            for id in &candidates {
                keys.push(layout.head(id));
                args.push(Value::from(id.as_str()));
                if self.adopt {
                    keys.push(layout.rasa(id));
                    args.push(Value::from(KeyLayout::rasa_empty_record(id)));
                }
            }
            self.connection
                .run(&PRUNE, keys, args)
                .await
                .map(|removed| removed.as_u64().unwrap_or_default())
                .map_err(|e| driver_error("pruning the conversation index", e))
        };
        match result {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(
                store = "redis",
                removed,
                "removed index entries of conversations that no longer exist"
            ),
            Err(error) => tracing::warn!(
                store = "redis",
                %error,
                "could not prune the conversation index; stale entries stay and are skipped"
            ),
        }
    }

    /// In a cluster the index and the conversations are in different slots, so no script
    /// can check and remove at once: check, remove the missing ones, then put back any that
    /// a writer created meanwhile (it may have added its id before our removal).
    async fn prune_clustered(&self, candidates: Vec<String>) -> Result<u64> {
        let exists = self.exist(&candidates).await?;
        let (live, missing): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .zip(exists)
            .partition(|(_, exists)| *exists);
        if self.record_exp.is_some() && !live.is_empty() {
            let live: Vec<&str> = live.iter().map(|(id, _)| id.as_str()).collect();
            self.touch(&live).await?;
        }
        let missing: Vec<String> = missing.into_iter().map(|(id, _)| id).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let removed = self.forget(&missing).await?;
        self.restore_recreated(&missing).await?;
        Ok(removed)
    }

    /// Removes ids from the index (and their expiry hints) without checking their
    /// conversations; returns how many entries were removed. Follow with
    /// [`Index::restore_recreated`] in a cluster.
    pub(crate) async fn forget(&self, sender_ids: &[String]) -> Result<u64> {
        let args = sender_ids
            .iter()
            .map(|id| Value::from(id.as_str()))
            .collect();
        let removed = self
            .connection
            .run(
                &FORGET,
                vec![self.layout.index(), self.layout.index_expiry()],
                args,
            )
            .await
            .map_err(|e| driver_error("removing from the conversation index", e))?;
        Ok(removed.as_u64().unwrap_or_default())
    }

    /// Puts the index entries of conversations that exist back (cluster, after removing them).
    pub(crate) async fn restore_recreated(&self, sender_ids: &[String]) -> Result<()> {
        let exists = self.exist(sender_ids).await?;
        let back: Vec<&str> = sender_ids
            .iter()
            .zip(exists)
            .filter(|(_, exists)| *exists)
            .map(|(id, _)| id.as_str())
            .collect();
        if !back.is_empty() {
            self.touch(&back).await?;
        }
        Ok(())
    }
}

/// The strings of an array reply (others are skipped).
fn strings(reply: Value) -> Vec<String> {
    match reply {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| item.as_string())
            .collect(),
        _ => Vec::new(),
    }
}
