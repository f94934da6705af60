//! Items read (and damaged) straight from a table, past the store.

use std::collections::HashMap;

use tracker_dynamo::aws_sdk_dynamodb::Client;
use tracker_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use tracker_dynamo::schema::{HASH_KEY, HEAD_SEQ, RANGE_KEY};

/// An item's attributes.
pub type Item = HashMap<String, AttributeValue>;

/// A number attribute of an item, `None` when the item has no such attribute.
pub fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => Some(text.parse().expect("a number")),
        _ => None,
    }
}

/// Every item of a conversation's partition in `table`, read straight from the table.
pub async fn partition(client: &Client, table: &str, sender_id: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", HASH_KEY)
            .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("query the partition");
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key.filter(|key| !key.is_empty());
        if start.is_none() {
            return items;
        }
    }
}

/// The sequence numbers (range keys) of `items`.
pub fn seqs(items: &[Item]) -> Vec<u64> {
    items
        .iter()
        .map(|item| number(item, RANGE_KEY).expect("seq"))
        .collect()
}

/// A conversation's head item, straight from `table`.
pub async fn head_item(client: &Client, table: &str, sender_id: &str) -> Option<Item> {
    partition(client, table, sender_id)
        .await
        .into_iter()
        .find(|item| number(item, RANGE_KEY) == Some(HEAD_SEQ))
}

/// Deletes a conversation's head item from `table` and nothing else, as a delete that
/// crashed right after removing the head leaves the conversation.
pub async fn delete_head(client: &Client, table: &str, sender_id: &str) {
    client
        .delete_item()
        .table_name(table)
        .key(HASH_KEY, AttributeValue::S(sender_id.to_owned()))
        .key(RANGE_KEY, AttributeValue::N(HEAD_SEQ.to_string()))
        .send()
        .await
        .expect("delete the head");
}
