//! Listing conversations: first the ones Rasa's table holds (when adopting), then the ones
//! only this store's table holds, each once.
//!
//! Rasa's items are listed first because they stay put while this store runs (only a delete
//! removes one, and the conversation is then gone): an id listed from Rasa's table and
//! adopted during the listing is skipped in this store's table, where it may appear later.
//! Listing this store's table first would miss an id adopted after the scan passed it.

use aws_sdk_dynamodb::types::AttributeValue;
use tracker_core::{Error, ListPage, ListRequest, Result};

use crate::config::{RASA_EVENTS, RASA_HASH_KEY};
use crate::error::driver_error;
use crate::items::{Db, is_missing_table};
use crate::schema::{
    HASH_KEY, HEAD_SEQ, Item, RANGE_KEY, continuation, key, number, rasa_key, read_key,
};

/// Scan requests one [`list`] call makes at most before returning a shorter page (with a
/// cursor), so a page over a table of long conversations stays quick.
const SCANS_PER_PAGE: usize = 16;

/// Where the listing stands.
enum Position {
    /// In Rasa's table, after this key (from its start with `None`).
    Rasa(Option<Item>),
    /// In this store's table, after this key (from its start with `None`).
    Store(Option<Item>),
}

/// One page of at most `request.limit` conversation ids.
pub(crate) async fn list(db: &Db<'_>, request: &ListRequest) -> Result<ListPage> {
    if request.limit == 0 {
        return Err(Error::invalid_input(
            "a page of 0 conversations was asked for",
        ));
    }
    let mut position = match request.cursor.as_deref().map(Cursor::decode).transpose()? {
        None if db.rasa_table.is_some() => Position::Rasa(None),
        Some(Cursor::Rasa(sender_id)) if db.rasa_table.is_some() => {
            Position::Rasa(Some(rasa_key(&sender_id)))
        }
        None | Some(Cursor::Rasa(_) | Cursor::StoreStart) => Position::Store(None),
        Some(Cursor::Store(sender_id, seq)) => Position::Store(Some(key(&sender_id, seq))),
    };
    let mut sender_ids = Vec::new();
    for _ in 0..SCANS_PER_PAGE {
        position = match position {
            Position::Rasa(start) => {
                match rasa_page(db, start, &mut sender_ids, request.limit).await? {
                    Step::Full(cursor) => return Ok(page(sender_ids, cursor)),
                    Step::Continue(key) => Position::Rasa(Some(key)),
                    Step::End => Position::Store(None),
                }
            }
            Position::Store(start) => {
                match store_page(db, start, &mut sender_ids, request.limit).await? {
                    Step::Full(cursor) => return Ok(page(sender_ids, cursor)),
                    Step::Continue(key) => Position::Store(Some(key)),
                    Step::End => return Ok(page(sender_ids, None)),
                }
            }
        };
    }
    // Enough scanning for one call: a shorter page that continues where the scan stopped.
    let cursor = match position {
        Position::Rasa(Some(key)) => match key.get(RASA_HASH_KEY) {
            Some(AttributeValue::S(id)) => Cursor::Rasa(id.clone()),
            _ => {
                return Err(Error::backend(format!(
                    "a key of Rasa's table without a string `{RASA_HASH_KEY}`"
                )));
            }
        },
        Position::Rasa(None) | Position::Store(None) => Cursor::StoreStart,
        Position::Store(Some(key)) => {
            let (sender_id, seq) = read_key(&key)?;
            Cursor::Store(sender_id, seq)
        }
    };
    Ok(page(sender_ids, Some(cursor)))
}

/// A page with the cursor that continues it.
fn page(sender_ids: Vec<String>, cursor: Option<Cursor>) -> ListPage {
    ListPage {
        sender_ids,
        next_cursor: cursor.map(|cursor| cursor.encode()),
    }
}

/// What one scan request did.
enum Step {
    /// The page is full; more may follow from this cursor.
    Full(Option<Cursor>),
    /// The table continues after this key.
    Continue(Item),
    /// The table is done.
    End,
}

/// One scan of Rasa's table for items with events, adding their ids to `sender_ids`.
async fn rasa_page(
    db: &Db<'_>,
    start: Option<Item>,
    sender_ids: &mut Vec<String>,
    limit: usize,
) -> Result<Step> {
    let Some(table) = db.rasa_table else {
        return Ok(Step::End);
    };
    let output = match db
        .client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .filter_expression("attribute_exists(#e) AND size(#e) > :zero")
        .projection_expression("#k")
        .expression_attribute_names("#k", RASA_HASH_KEY)
        .expression_attribute_names("#e", RASA_EVENTS)
        .expression_attribute_values(":zero", number(0))
        .set_limit(db.page_size)
        .set_exclusive_start_key(start)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error) if is_missing_table(&error) => return Ok(Step::End),
        Err(error) => {
            return Err(driver_error(
                format!("listing Rasa's table {table:?}"),
                error,
            ));
        }
    };
    let last_key = continuation(output.last_evaluated_key);
    for item in output.items.unwrap_or_default() {
        let Some(AttributeValue::S(sender_id)) = item.get(RASA_HASH_KEY) else {
            tracing::debug!("skipping an item of Rasa's table without a string sender_id");
            continue;
        };
        sender_ids.push(sender_id.clone());
        if sender_ids.len() >= limit {
            // This store's table may hold more: the cursor continues in any case.
            return Ok(Step::Full(Some(Cursor::Rasa(sender_id.clone()))));
        }
    }
    Ok(last_key.map_or(Step::End, Step::Continue))
}

/// One scan of this store's table for head items, adding the ids Rasa's table does not hold
/// to `sender_ids`.
async fn store_page(
    db: &Db<'_>,
    start: Option<Item>,
    sender_ids: &mut Vec<String>,
    limit: usize,
) -> Result<Step> {
    let output = match db
        .client
        .scan()
        .table_name(db.table)
        .consistent_read(true)
        .filter_expression("#s = :head")
        .projection_expression("#k, #s")
        .expression_attribute_names("#k", HASH_KEY)
        .expression_attribute_names("#s", RANGE_KEY)
        .expression_attribute_values(":head", number(HEAD_SEQ))
        .set_limit(db.page_size)
        .set_exclusive_start_key(start)
        .send()
        .await
    {
        Ok(output) => output,
        // Not created yet: it holds no conversation.
        Err(error) if db.pending_table(&error) => return Ok(Step::End),
        Err(error) => return Err(driver_error("listing conversations", error)),
    };
    let last_key = continuation(output.last_evaluated_key);
    let mut heads = Vec::new();
    for item in output.items.unwrap_or_default() {
        heads.push(read_key(&item)?.0);
    }
    // Conversations Rasa holds were listed from Rasa's table.
    let listed = db.rasa_holds(&heads).await?;
    let mut heads = heads.into_iter().filter(|id| !listed.contains(id));
    while let Some(sender_id) = heads.next() {
        sender_ids.push(sender_id);
        if sender_ids.len() >= limit {
            let more = heads.next().is_some() || last_key.is_some();
            let cursor = more.then(|| {
                let last = sender_ids.last().cloned().unwrap_or_default();
                Cursor::Store(last, HEAD_SEQ)
            });
            return Ok(Step::Full(cursor));
        }
    }
    Ok(last_key.map_or(Step::End, Step::Continue))
}

/// Where a listing continues. Conversations Rasa holds are listed first (from Rasa's table),
/// then this store's others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// In Rasa's table, after this sender id.
    Rasa(String),
    /// In this store's table, from its start.
    StoreStart,
    /// In this store's table, after this primary key (`sender_id`, `seq`).
    Store(String, u64),
}

impl Cursor {
    /// Encodes the cursor as an opaque ASCII string: `r.<hex id>`, `s`, or `<seq>.<hex id>`.
    pub(crate) fn encode(&self) -> String {
        fn hex(sender_id: &str) -> String {
            sender_id
                .as_bytes()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        }
        match self {
            Self::Rasa(sender_id) => format!("r.{}", hex(sender_id)),
            Self::StoreStart => "s".to_owned(),
            Self::Store(sender_id, seq) => format!("{seq}.{}", hex(sender_id)),
        }
    }

    /// Decodes a cursor made by [`Cursor::encode`].
    pub(crate) fn decode(cursor: &str) -> Result<Self> {
        let invalid = || Error::invalid_input(format!("invalid list cursor {cursor:?}"));
        if cursor == "s" {
            return Ok(Self::StoreStart);
        }
        let (position, hex) = cursor.split_once('.').ok_or_else(invalid)?;
        if hex.is_empty() || hex.len() % 2 != 0 || !hex.is_ascii() {
            return Err(invalid());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let sender_id = String::from_utf8(bytes).map_err(|_| invalid())?;
        if position == "r" {
            return Ok(Self::Rasa(sender_id));
        }
        let seq: u64 = position.parse().map_err(|_| invalid())?;
        Ok(Self::Store(sender_id, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let mut cursors = vec![Cursor::StoreStart];
        for (id, seq) in [("alice", 0), ("ü 🍕\t\n.:", 17), ("x", u64::MAX)] {
            cursors.push(Cursor::Store(id.to_owned(), seq));
            cursors.push(Cursor::Rasa(id.to_owned()));
        }
        for cursor in cursors {
            let text = cursor.encode();
            assert!(text.is_ascii());
            assert_eq!(Cursor::decode(&text).expect("valid"), cursor);
        }
        // Cursors of earlier versions (this store's table only) still decode.
        assert_eq!(
            Cursor::decode("0.61").expect("valid"),
            Cursor::Store("a".to_owned(), 0)
        );
        for bad in [
            "", "0", "0.", "x.61", "0.6", "0.zz", "0.ff", "-1.61", "0.é1", "r", "r.", "s.61", "S",
        ] {
            let error = Cursor::decode(bad).expect_err(bad);
            assert_eq!(error.kind(), tracker_core::ErrorKind::InvalidInput);
        }
    }
}
