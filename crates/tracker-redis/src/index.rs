//! The index of sender ids behind listings: kept a superset of the conversations, with expiry
//! hints so that entries of expired conversations are dropped even when nothing lists.
//!
//! On a single server the append and delete scripts update the index in the same step as the
//! conversation. In a cluster the index lives in another slot than the conversations, so no
//! script can do both: the functions here add ids before a conversation can exist, remove
//! entries only after checking, and put back entries of conversations that came back
//! meanwhile (see the crate's README).

use fred::interfaces::KeysInterface;
use fred::types::Value;
use tracker_core::Result;

use crate::connection::Connection;
use crate::error::driver_error;
use crate::schema::KeyLayout;
use crate::scripts::{FORGET, PRUNE, TOUCH};

/// The index of one store: its connections, key names and expiry.
pub(crate) struct Index<'a> {
    connection: &'a Connection,
    layout: &'a KeyLayout,
    record_exp: Option<u64>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(
        connection: &'a Connection,
        layout: &'a KeyLayout,
        record_exp: Option<u64>,
    ) -> Self {
        Self {
            connection,
            layout,
            record_exp,
        }
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
    /// 16 ids whose expiry hint has passed.
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

    /// For each id, whether its conversation exists (one pipelined round trip).
    pub(crate) async fn exist(&self, sender_ids: &[String]) -> Result<Vec<bool>> {
        if sender_ids.is_empty() {
            return Ok(Vec::new());
        }
        if self.connection.is_clustered() {
            // The heads are in different slots: one EXISTS each, concurrently, each to its
            // primary.
            let checks = sender_ids.iter().map(|id| {
                let head = self.layout.head(id);
                async move {
                    self.connection
                        .on_key(&head, |client| {
                            let head = head.clone();
                            async move { client.exists::<i64, _>(head).await }
                        })
                        .await
                }
            });
            let found = futures::future::try_join_all(checks)
                .await
                .map_err(|e| driver_error("checking conversations", e))?;
            return Ok(found.into_iter().map(|n| n > 0).collect());
        }
        let pipeline = self.connection.client().pipeline();
        for id in sender_ids {
            let () = pipeline
                .exists(self.layout.head(id))
                .await
                .map_err(|e| driver_error("checking conversations", e))?;
        }
        let found: Vec<i64> = pipeline
            .all()
            .await
            .map_err(|e| driver_error("checking conversations", e))?;
        Ok(found.into_iter().map(|n| n > 0).collect())
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
            let mut keys = Vec::with_capacity(candidates.len() + 2);
            keys.push(layout.index());
            keys.push(layout.index_expiry());
            keys.extend(candidates.iter().map(|id| layout.head(id)));
            let mut args = Vec::with_capacity(candidates.len() + 1);
            args.push(self.record_exp_ms());
            args.extend(candidates.iter().map(|id| Value::from(id.as_str())));
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
