//! Deleting a conversation. The decisive step is one transaction: the delete of this store's
//! head item (on condition that it is at the version checked) or, for a conversation only
//! Rasa holds, a check that this store has no head — together with the delete of Rasa's item
//! when there is one. From then on the conversation does not exist; its event items are
//! removed afterwards (see [`Db::delete_events`]).

use tracker_core::{Error, ErrorKind, ExpectedVersion, Result};

use crate::items::Db;
use crate::transact::{Sent, transact};
use crate::writes;

/// How many times a delete reads the conversation and sends its transaction while the
/// conversation changes under it (each send itself retried while it meets other
/// transactions).
const DELETE_ATTEMPTS: usize = 5;

/// What this store's layout holds of a conversation.
#[derive(Debug, Clone, Copy)]
enum Own {
    /// No head item.
    Absent,
    /// A head item at this version.
    At(u64),
    /// A head item that cannot be read.
    Unreadable,
}

/// Deletes the conversation `sender_id` if it is at `expected`; returns whether it existed.
pub(crate) async fn delete(
    db: &Db<'_>,
    sender_id: &str,
    expected: ExpectedVersion,
) -> Result<bool> {
    let context = || format!("deleting conversation {sender_id:?}");
    let mut seen = 0;
    for attempt in 1..=DELETE_ATTEMPTS {
        let own = match db.head(sender_id).await {
            Ok(Some(head)) => Own::At(head.version),
            Ok(None) => Own::Absent,
            // A damaged head is deleted all the same, when the version does not matter.
            Err(error)
                if error.kind() == ErrorKind::Corrupt && expected == ExpectedVersion::Any =>
            {
                tracing::warn!(sender_id, error = %error, "deleting a conversation whose head is corrupt");
                Own::Unreadable
            }
            Err(error) => return Err(error),
        };
        // Rasa's item to delete with it: `Some(None)` unconditionally, `Some(Some(n))` only
        // if it still has `n` entries.
        let (current, rasa) = match own {
            Own::At(version) => (
                version,
                db.rasa_item_exists(sender_id).await?.then_some(None),
            ),
            Own::Unreadable => (1, db.rasa_item_exists(sender_id).await?.then_some(None)),
            Own::Absent => match db.rasa_copy(sender_id).await {
                Ok(Some(copy)) => (copy.version(), Some(Some(copy.entries))),
                Ok(None) => (0, None),
                // So is an item of Rasa's that cannot be read.
                Err(error)
                    if error.kind() == ErrorKind::Corrupt && expected == ExpectedVersion::Any =>
                {
                    (1, Some(None))
                }
                Err(error) => return Err(error),
            },
        };
        seen = current;
        if let ExpectedVersion::Exact(version) = expected
            && version != current
        {
            return Err(Error::conflict(sender_id, version, current));
        }
        let mut actions = Vec::with_capacity(2);
        match (own, &rasa) {
            (Own::At(version), _) => {
                let at = matches!(expected, ExpectedVersion::Exact(_)).then_some(version);
                actions.push(writes::head_delete(db.table, sender_id, at)?);
            }
            (Own::Unreadable, _) => actions.push(writes::head_delete(db.table, sender_id, None)?),
            (Own::Absent, Some(_)) => actions.push(writes::head_absent(db.table, sender_id)?),
            (Own::Absent, None) => {
                // Nothing to delete but what an interrupted delete may have left.
                remove_events(db, sender_id).await;
                return Ok(false);
            }
        }
        if let (Some(entries), Some(table)) = (rasa, db.rasa_table) {
            actions.push(writes::rasa_delete(table, sender_id, entries)?);
        }
        match transact(db.client, &actions, &context).await? {
            Sent::Committed => {
                tracing::debug!(
                    sender_id,
                    version = current,
                    rasa_item = rasa.is_some(),
                    "deleted conversation"
                );
                remove_events(db, sender_id).await;
                return Ok(current > 0);
            }
            Sent::ConditionsFailed(_) => tracing::debug!(
                sender_id,
                attempt,
                "conversation changed while deleting it; reading it again"
            ),
            // Other transactions kept getting in the way for every attempt: a conflict.
            Sent::StillConflicting => break,
        }
    }
    let actual = db.version(sender_id).await?;
    let expected = match expected {
        ExpectedVersion::Exact(version) => version,
        ExpectedVersion::Any => seen,
    };
    Err(Error::conflict(sender_id, expected, actual))
}

/// Removes the event items of a conversation that has no head. The conversation is deleted
/// already, so a failure is logged, not returned: the items left are invisible, overwritten
/// by later appends and removed by the next delete.
async fn remove_events(db: &Db<'_>, sender_id: &str) {
    match db.delete_events(sender_id).await {
        Ok(deleted) => tracing::debug!(sender_id, deleted, "removed the event items"),
        Err(error) => tracing::warn!(
            sender_id,
            error = %error,
            "deleted the conversation, but not all of its event items; the next delete removes them"
        ),
    }
}
