//! Appending: one conditional transaction per append, and the adoption of a conversation
//! Rasa holds with its first append (Rasa's events and the new ones in one transaction).
//! The steps are also what a batch of appends falls back on for one conversation (see
//! `batch.rs`).

use aws_sdk_dynamodb::types::TransactWriteItem;
use tracker_core::{Append, Error, Result};

use crate::items::{Db, RasaCopy};
use crate::schema::{
    Item, MAX_ADOPTION_EVENTS, MAX_ITEM_BYTES, MAX_TRANSACTION_BYTES, event_item, item_size,
};
use crate::transact::{Ended, Failed, send_transaction};
use crate::writes;

/// How an append's transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Written.
    Done,
    /// Not written: a guard's condition failed, or other transactions kept getting in the
    /// way. The caller reads the version.
    NotApplied,
}

/// Appends `append` (whose event items are `items`) to this store's layout, adopting Rasa's
/// copy of the conversation first when this store does not hold it and Rasa does.
pub(crate) async fn append(db: &Db<'_>, append: &Append, items: &[Item]) -> Result<u64> {
    if let Some(conflict) = held_by_rasa(db, append).await? {
        return Err(conflict);
    }
    write(db, append, items, true)
        .await
        .map_err(|failed| failed.error)
}

/// For an append to a new conversation (expected version 0) on a store that adopts from
/// Rasa's table: the conflict when Rasa holds the conversation (it is not at version 0,
/// unless this store holds it too, and then its head decides when the append is sent).
pub(crate) async fn held_by_rasa(db: &Db<'_>, append: &Append) -> Result<Option<Error>> {
    if append.expected_version() != 0 || db.rasa_table.is_none() {
        return Ok(None);
    }
    let sender_id = append.sender_id().as_str();
    if let Some(copy) = db.rasa_copy(sender_id).await?
        && copy.version() > 0
    {
        let actual = db.version(sender_id).await?;
        return Ok(Some(conflict(append, actual)));
    }
    Ok(None)
}

/// Sends the append's own transaction (with conditional event puts unless `conditional` is
/// false) and, when it is not applied, [`settle`]s it.
///
/// # Errors
/// As [`settle`]; any failure of the transaction, with whether it may have been applied.
pub(crate) async fn write(
    db: &Db<'_>,
    append: &Append,
    items: &[Item],
    conditional: bool,
) -> Result<u64, Failed> {
    let sender_id = append.sender_id().as_str();
    let guards = [writes::head_update(db.table, append, db.pending_mark())?];
    if send(db, sender_id, &guards, items, conditional).await? == Applied::Done {
        return Ok(append.new_version());
    }
    settle(db, append, items, None).await
}

/// Settles an append whose transaction was not applied (the head's condition failed, or
/// other transactions kept getting in the way): a conflict at the version of the head —
/// `head_version` when the failed condition returned the head, else read — or, when this
/// store does not hold the conversation and Rasa holds it at the expected version, its
/// adoption with the append.
///
/// # Errors
/// [`Error::conflict`] with the conversation's version; the adoption's errors.
pub(crate) async fn settle(
    db: &Db<'_>,
    append: &Append,
    items: &[Item],
    head_version: Option<u64>,
) -> Result<u64, Failed> {
    if let Some(actual) = head_version.filter(|version| *version > 0) {
        return Err(conflict(append, actual).into());
    }
    let sender_id = append.sender_id().as_str();
    let expected = append.expected_version();
    if let Some(head) = db.head(sender_id).await? {
        return Err(conflict(append, head.version).into());
    }
    let copy = match db.rasa_copy(sender_id).await? {
        Some(copy) if expected > 0 && copy.version() == expected => copy,
        copy => {
            return Err(conflict(append, copy.map_or(0, |copy| copy.version())).into());
        }
    };
    adopt(db, append, items, &copy).await
}

/// The conflict of `append` with a conversation at `actual`.
fn conflict(append: &Append, actual: u64) -> Error {
    let sender_id = append.sender_id().as_str();
    tracing::debug!(
        sender_id,
        expected = append.expected_version(),
        actual,
        "append conflicts with another writer"
    );
    Error::conflict(sender_id, append.expected_version(), actual)
}

/// Writes Rasa's copy and the append into this store's layout in one transaction: the head
/// (on condition that this store does not hold the conversation), a check that Rasa's item
/// still has as many entries as read, and the event items of both. Rasa's item is left as it
/// is.
async fn adopt(
    db: &Db<'_>,
    append: &Append,
    items: &[Item],
    copy: &RasaCopy,
) -> Result<u64, Failed> {
    let sender_id = append.sender_id().as_str();
    let rasa_table = db.rasa_table.unwrap_or_default();
    let total = copy.events.len() + items.len();
    let refuse = |why: String| {
        Error::unsupported(
            "dynamo",
            format!(
                "appending to conversation {sender_id:?}, which only Rasa's table {rasa_table:?} \
                 holds: {why}, more than one DynamoDB transaction holds, so it cannot move into \
                 table {:?} atomically (nothing was written); copy Rasa's conversations first \
                 with `tracker migrate --from-rasa` (its destination section with \
                 `adopt_rasa: false`)",
                db.table
            ),
        )
    };
    if total > MAX_ADOPTION_EVENTS {
        return Err(Failed::from(refuse(format!(
            "its {} events and the {} appended make {total} events, and an adoption holds \
             {MAX_ADOPTION_EVENTS}",
            copy.events.len(),
            items.len()
        ))));
    }
    let rasa = Append::new(append.sender_id().clone(), 0, &copy.events)?;
    let mut all: Vec<Item> = rasa
        .records()
        .iter()
        .map(|record| event_item(sender_id, record))
        .collect();
    all.extend_from_slice(items);
    let bytes: usize = all.iter().map(item_size).sum();
    if let Some(size) = all
        .iter()
        .map(item_size)
        .find(|size| *size > MAX_ITEM_BYTES)
    {
        return Err(Failed::from(refuse(format!(
            "one of its events makes an item of {size} bytes, more than DynamoDB's {MAX_ITEM_BYTES}"
        ))));
    }
    if bytes + 2048 > MAX_TRANSACTION_BYTES {
        return Err(Failed::from(refuse(format!(
            "its events and the appended ones make {bytes} bytes of items"
        ))));
    }
    let session_start = append
        .last_session_started()
        .or_else(|| rasa.last_session_started());
    let new_version = append.new_version();
    let guards = [
        writes::head_write(
            db.table,
            sender_id,
            0,
            new_version,
            session_start,
            db.pending_mark(),
        )?,
        writes::rasa_check(rasa_table, sender_id, copy.entries)?,
    ];
    if send(db, sender_id, &guards, &all, true).await? == Applied::Done {
        tracing::info!(
            sender_id,
            rasa_events = copy.events.len(),
            appended = items.len(),
            table = db.table,
            rasa_table,
            "adopted a conversation of Rasa's table"
        );
        return Ok(new_version);
    }
    // Another process adopted it first, or Rasa's item changed or is gone.
    let actual = db.version(sender_id).await?;
    Err(conflict(append, actual).into())
}

/// Sends an append's transaction — `guards`, then one put per item, under
/// `attribute_not_exists` when `conditional` — and, when only puts failed (items left by an
/// interrupted delete), sends it again with unconditional puts (the guards still protect
/// it).
async fn send(
    db: &Db<'_>,
    sender_id: &str,
    guards: &[TransactWriteItem],
    items: &[Item],
    mut conditional: bool,
) -> Result<Applied, Failed> {
    let context = || format!("appending to {sender_id:?}");
    loop {
        let mut actions = guards.to_vec();
        for item in items {
            actions.push(writes::event_put(db.table, item.clone(), conditional)?);
        }
        let failed = match send_transaction(db.client, &actions, &context).await {
            Ended::Committed => return Ok(Applied::Done),
            Ended::StillConflicting => return Ok(Applied::NotApplied),
            Ended::Failed(failed) => return Err(failed),
            Ended::ConditionsFailed(reasons) => reasons
                .iter()
                .map(|reason| reason.failed)
                .collect::<Vec<_>>(),
        };
        match Canceled::of(&failed, guards.len()) {
            Canceled::Stale => return Ok(Applied::NotApplied),
            Canceled::Leftovers(count) if conditional => {
                tracing::warn!(
                    sender_id,
                    items = count,
                    "overwriting event items left by an interrupted delete"
                );
                conditional = false;
            }
            Canceled::Leftovers(_) => return Err(Failed::from(unconditional_failed(sender_id))),
        }
    }
}

/// The error of a transaction whose unconditional event puts were reported to have failed a
/// condition: DynamoDB said something this store does not understand.
pub(crate) fn unconditional_failed(sender_id: &str) -> Error {
    Error::backend(format!(
        "appending to {sender_id:?}: a condition failed for an action without one"
    ))
}

/// What a canceled append transaction (its guards — the head's update, and for an adoption
/// the check of Rasa's item — then one put per event) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canceled {
    /// A guard's condition failed: another writer got there first.
    Stale,
    /// Only event puts failed their `attribute_not_exists`: items of an interrupted delete.
    Leftovers(usize),
}

impl Canceled {
    /// Reads which actions of an append failed their condition (one flag per action, the
    /// `guards` first).
    pub(crate) fn of(failed: &[bool], guards: usize) -> Self {
        let guards = guards.min(failed.len());
        if failed[..guards].iter().any(|failed| *failed) {
            return Self::Stale;
        }
        Self::Leftovers(failed[guards..].iter().filter(|failed| **failed).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canceled_appends_are_read_by_action() {
        assert_eq!(Canceled::of(&[true, false], 1), Canceled::Stale);
        assert_eq!(Canceled::of(&[true, true], 1), Canceled::Stale);
        assert_eq!(
            Canceled::of(&[false, true, false, true], 1),
            Canceled::Leftovers(2)
        );
        // An adoption: the head, then the check of Rasa's item, then the puts.
        assert_eq!(Canceled::of(&[false, true, false], 2), Canceled::Stale);
        assert_eq!(
            Canceled::of(&[false, false, true, true], 2),
            Canceled::Leftovers(2)
        );
        assert_eq!(Canceled::of(&[], 1), Canceled::Leftovers(0));
    }
}
