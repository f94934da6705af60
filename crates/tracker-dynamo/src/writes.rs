//! The actions of the transactions on the table layout (see [`crate::schema`]): the updates,
//! deletes and checks of head items, the puts and deletes of event items, and the checks and
//! deletes of Rasa's items.

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use tracker_core::{Append, Result};

use crate::config::RASA_EVENTS;
use crate::error::build_error;
use crate::schema::{
    HASH_KEY, HEAD_SEQ, Item, OUTBOX_PENDING, OUTBOX_SHARD, SESSION_START, VERSION, key, number,
    outbox_shard, rasa_key,
};

/// The update of an append's head item in `table`: set the new version (and session start),
/// if the conversation is at the expected version (`attribute_not_exists` for version 0);
/// with `pending` (the time of the append, epoch milliseconds) also the outbox's pending
/// mark.
pub(crate) fn head_update(
    table: &str,
    append: &Append,
    pending: Option<u64>,
) -> Result<TransactWriteItem> {
    head_write(
        table,
        append.sender_id().as_str(),
        append.expected_version(),
        append.new_version(),
        append.last_session_started(),
        pending,
    )
}

/// The update of a head item in `table` from version `expected` (`attribute_not_exists` for
/// 0) to `new_version`, setting the session start when there is one. With `pending` (epoch
/// milliseconds) it also marks the conversation pending in the outbox: [`OUTBOX_SHARD`],
/// and [`OUTBOX_PENDING`] unless the mark is there already (it keeps the oldest time). When
/// its condition fails, the transaction's cancellation reason returns the head as it was.
pub(crate) fn head_write(
    table: &str,
    sender_id: &str,
    expected: u64,
    new_version: u64,
    session_start: Option<u64>,
    pending: Option<u64>,
) -> Result<TransactWriteItem> {
    let mut expression = "SET #v = :new".to_owned();
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key(sender_id, HEAD_SEQ)))
        .expression_attribute_names("#v", VERSION)
        .expression_attribute_values(":new", number(new_version));
    if let Some(seq) = session_start {
        expression.push_str(", #s = :s");
        update = update
            .expression_attribute_names("#s", SESSION_START)
            .expression_attribute_values(":s", number(seq));
    }
    if let Some(now) = pending {
        expression.push_str(", #osh = :osh, #op = if_not_exists(#op, :op)");
        update = update
            .expression_attribute_names("#osh", OUTBOX_SHARD)
            .expression_attribute_names("#op", OUTBOX_PENDING)
            .expression_attribute_values(":osh", number(outbox_shard(sender_id)))
            .expression_attribute_values(":op", number(now));
    }
    update = if expected == 0 {
        update
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", HASH_KEY)
    } else {
        update
            .condition_expression("#v = :expected")
            .expression_attribute_values(":expected", number(expected))
    };
    let update = update
        .update_expression(expression)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The delete of a conversation's head item in `table`, if it is at `version` (`None`: if it
/// exists).
pub(crate) fn head_delete(
    table: &str,
    sender_id: &str,
    version: Option<u64>,
) -> Result<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key(sender_id, HEAD_SEQ)));
    let delete = match version {
        Some(version) => delete
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", number(version)),
        None => delete
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", HASH_KEY),
    };
    Ok(TransactWriteItem::builder()
        .delete(delete.build().map_err(build_error)?)
        .build())
}

/// A check that a conversation has no head item in `table` (it does not exist in this
/// store's layout).
pub(crate) fn head_absent(table: &str, sender_id: &str) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(sender_id, HEAD_SEQ)))
        .condition_expression("attribute_not_exists(#k)")
        .expression_attribute_names("#k", HASH_KEY)
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// The condition that Rasa's item still holds `events` entries (as read before).
fn rasa_unchanged(events: usize) -> (&'static str, AttributeValue) {
    // `size()` of a missing attribute is false on DynamoDB, but an error on some stand-ins:
    // it is only reached for an existing list.
    let expression = if events == 0 {
        "attribute_not_exists(#e) OR size(#e) = :n"
    } else {
        "attribute_exists(#e) AND size(#e) = :n"
    };
    (expression, AttributeValue::N(events.to_string()))
}

/// A check that Rasa's item of a conversation in `table` still has `events` entries.
pub(crate) fn rasa_check(table: &str, sender_id: &str, events: usize) -> Result<TransactWriteItem> {
    let (condition, count) = rasa_unchanged(events);
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(rasa_key(sender_id)))
        .condition_expression(condition)
        .expression_attribute_names("#e", RASA_EVENTS)
        .expression_attribute_values(":n", count)
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// The delete of Rasa's item of a conversation in `table`; with `Some(n)`, only if it still
/// has `n` entries in `events`.
pub(crate) fn rasa_delete(
    table: &str,
    sender_id: &str,
    events: Option<usize>,
) -> Result<TransactWriteItem> {
    let mut delete = Delete::builder()
        .table_name(table)
        .set_key(Some(rasa_key(sender_id)));
    if let Some(events) = events {
        let (condition, count) = rasa_unchanged(events);
        delete = delete
            .condition_expression(condition)
            .expression_attribute_names("#e", RASA_EVENTS)
            .expression_attribute_values(":n", count);
    }
    Ok(TransactWriteItem::builder()
        .delete(delete.build().map_err(build_error)?)
        .build())
}

/// The put of one event item into `table`; `conditional` adds `attribute_not_exists` so that
/// an existing item is never overwritten unnoticed.
pub(crate) fn event_put(table: &str, item: Item, conditional: bool) -> Result<TransactWriteItem> {
    let mut put = Put::builder().table_name(table).set_item(Some(item));
    if conditional {
        put = put
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", HASH_KEY);
    }
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(build_error)?)
        .build())
}

/// A transaction deleting the event items `seqs` of a conversation from `table`, whose first
/// action checks that the conversation has no head (it was not created anew).
pub(crate) fn event_deletes(
    table: &str,
    sender_id: &str,
    seqs: &[u64],
) -> Result<Vec<TransactWriteItem>> {
    let mut actions = vec![head_absent(table, sender_id)?];
    for seq in seqs {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key(sender_id, *seq)))
            .build()
            .map_err(build_error)?;
        actions.push(TransactWriteItem::builder().delete(delete).build());
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_write_carries_the_pending_mark_only_with_the_outbox() {
        let plain = head_write("t", "alice", 0, 3, None, None).expect("write");
        let update = plain.update().expect("an update");
        assert_eq!(update.update_expression(), "SET #v = :new");
        let marked =
            head_write("t", "alice", 3, 5, Some(2), Some(1_700_000_000_000)).expect("write");
        let update = marked.update().expect("an update");
        assert_eq!(
            update.update_expression(),
            "SET #v = :new, #s = :s, #osh = :osh, #op = if_not_exists(#op, :op)"
        );
        assert_eq!(update.condition_expression(), Some("#v = :expected"));
        assert_eq!(
            update.return_values_on_condition_check_failure(),
            Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        );
        let values = update.expression_attribute_values().expect("values");
        assert_eq!(values[":op"], number(1_700_000_000_000));
        assert_eq!(values[":osh"], number(outbox_shard("alice")));
    }
}
