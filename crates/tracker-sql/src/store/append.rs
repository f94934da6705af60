//! The store's appends: [`Store::append`] (one statement) and [`Store::append_batch`] (many
//! conversations in one transaction), each append checked against its own version and
//! written whole or not at all (see `crate::append`).
//!
//! [`Store::append`]: tracker_core::Store::append
//! [`Store::append_batch`]: tracker_core::Store::append_batch

use std::sync::Arc;

use tracker_core::{Append, Error, Result};

use super::{SqlStore, TX_ATTEMPTS};
use crate::append::{Item, Outcome, TxError, run_batch};
use crate::error::{driver_error, is_deadlock, is_seq_conflict};
use crate::schema::{check_column_widths, new_rows, to_i64};

impl SqlStore {
    /// [`Store::append`](tracker_core::Store::append): one statement (see `crate::append`),
    /// run again if the server rolled it back to break a deadlock; a conflict carries the
    /// current version.
    pub(crate) async fn append_one(&self, append: &Append) -> Result<u64> {
        check_column_widths(append)?;
        let rows = new_rows(append)?;
        self.check_writable().await?;
        let rows = Arc::new(rows);
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match crate::append::run(&self.connections, append, &rows).await? {
                // Rolled back whole by the server (InnoDB, when a Rasa insert or a delete
                // races the append): once more, to find out what the other writer did.
                Err(TxError::Query(error)) if is_deadlock(&error) && attempts < TX_ATTEMPTS => {
                    tracing::debug!(attempts, %error, "an append was a deadlock victim; again");
                }
                outcome => break outcome,
            }
        };
        match self.finish_append(append, outcome) {
            Ok(version) => Ok(version),
            Err(Some(error)) => Err(error),
            Err(None) => {
                let actual = self.current_version(append.sender_id()).await?;
                Err(Error::conflict(
                    append.sender_id().as_str(),
                    append.expected_version(),
                    actual,
                ))
            }
        }
    }

    fn finish_append(
        &self,
        append: &Append,
        outcome: std::result::Result<(), TxError>,
    ) -> std::result::Result<u64, Option<Error>> {
        match outcome {
            Ok(()) => Ok(append.new_version()),
            Err(TxError::Stale(actual)) => Err(Some(Error::conflict(
                append.sender_id().as_str(),
                append.expected_version(),
                actual,
            ))),
            // Another writer came first: report its version.
            Err(TxError::Changed) => Err(None),
            Err(TxError::Query(error)) if is_seq_conflict(&error) => Err(None),
            Err(TxError::Query(error)) => Err(Some(driver_error("appending events", error))),
            Err(TxError::Invalid(error)) => Err(Some(error)),
        }
    }

    /// [`Store::append_batch`]: many conversations in one transaction, committed once; the
    /// result of each append at its position. A single append, and every append of a store
    /// that may not write (an unmigrated table, a missing outbox), goes through
    /// [`SqlStore::append_one`]; so does an append the transaction could not settle.
    ///
    /// # Errors
    /// Per append: what [`Store::append`] returns for it. The outer error when the store
    /// cannot tell what the transaction did (a timeout, a lost connection).
    ///
    /// [`Store::append`]: tracker_core::Store::append
    /// [`Store::append_batch`]: tracker_core::Store::append_batch
    pub(crate) async fn append_many(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        if appends.len() < 2 || self.check_writable().await.is_err() {
            let mut results = Vec::with_capacity(appends.len());
            for append in appends {
                results.push(self.append_one(append).await);
            }
            return Ok(results);
        }
        let mut results: Vec<Option<Result<u64>>> = Vec::with_capacity(appends.len());
        let (mut items, mut positions) = (Vec::new(), Vec::new());
        for (position, append) in appends.iter().enumerate() {
            match item(append) {
                Ok(item) => {
                    items.push(item);
                    positions.push(position);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let outcomes = run_batch(&self.connections, Arc::new(items)).await?;
        for (position, outcome) in positions.into_iter().zip(outcomes) {
            let append = &appends[position];
            let conflict = |actual| {
                Error::conflict(
                    append.sender_id().as_str(),
                    append.expected_version(),
                    actual,
                )
            };
            results[position] = Some(match outcome {
                Outcome::Written => Ok(append.new_version()),
                Outcome::Stale(actual) => Err(conflict(actual)),
                Outcome::Changed => match self.current_version(append.sender_id()).await {
                    Ok(actual) => Err(conflict(actual)),
                    Err(error) => Err(error),
                },
                Outcome::Alone => self.append_one(append).await,
                Outcome::Failed(error) => Err(error),
            });
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(Error::backend("no result"))))
            .collect())
    }
}

/// An append's rows, or why it cannot be written.
fn item(append: &Append) -> Result<Item> {
    check_column_widths(append)?;
    Ok(Item {
        sender_id: append.sender_id().as_str().to_owned(),
        expected: to_i64(append.expected_version())?,
        rows: new_rows(append)?,
    })
}
