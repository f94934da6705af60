//! The store's deletes: [`Store::delete`], one conversation removed whole if it is at the
//! version the caller expects (see `crate::delete`).
//!
//! [`Store::delete`]: tracker_core::Store::delete

use tracker_core::{Error, ExpectedVersion, Result, SenderId};

use super::{SqlStore, TX_ATTEMPTS};
use crate::append::TxError;
use crate::delete::Expect;
use crate::error::{driver_error, is_deadlock};

/// How often a delete of whatever the conversation holds looks again when appends keep
/// landing between its version read and its lock.
const DELETE_ATTEMPTS: usize = 20;

impl SqlStore {
    /// [`Store::delete`](tracker_core::Store::delete): at an exact version, or at whatever
    /// version the conversation holds, looked at again while appends keep landing.
    pub(crate) async fn delete_one(
        &self,
        sender_id: &SenderId,
        expected: ExpectedVersion,
    ) -> Result<bool> {
        self.check_writable().await?;
        match expected {
            ExpectedVersion::Exact(version) => {
                self.delete_expecting(sender_id, Expect::Version(version))
                    .await
            }
            ExpectedVersion::Any => {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match self.delete_expecting(sender_id, Expect::Current).await {
                        Err(error)
                            if error.kind() == tracker_core::ErrorKind::Conflict
                                && attempts < DELETE_ATTEMPTS =>
                        {
                            tracing::debug!(attempts, "appends landed during a delete; again");
                        }
                        Err(error) if error.kind() == tracker_core::ErrorKind::Conflict => {
                            return Err(Error::unavailable(format!(
                                "deleting a conversation: appends kept landing during \
                                 {attempts} attempts"
                            )));
                        }
                        outcome => return outcome,
                    }
                }
            }
        }
    }

    /// Deletes if the version is as `expect` says; conflicts carry the version found.
    async fn delete_expecting(&self, sender_id: &SenderId, expect: Expect) -> Result<bool> {
        let expected = match expect {
            Expect::Version(version) => version,
            Expect::Current => 0,
        };
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match crate::delete::run(&self.connections, sender_id.as_str(), expect).await? {
                Err(TxError::Query(error)) if is_deadlock(&error) && attempts < TX_ATTEMPTS => {
                    tracing::debug!(attempts, %error, "a delete was a deadlock victim; again");
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(deleted) => Ok(deleted),
            Err(TxError::Stale(actual)) => {
                Err(Error::conflict(sender_id.as_str(), expected, actual))
            }
            Err(TxError::Changed) => Err(Error::conflict(
                sender_id.as_str(),
                expected,
                self.current_version(sender_id).await?,
            )),
            Err(TxError::Query(error)) => Err(driver_error("deleting a conversation", error)),
            Err(TxError::Invalid(error)) => Err(error),
        }
    }
}
