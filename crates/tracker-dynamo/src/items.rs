//! The items of one conversation, read and removed: this store's head and event items, and
//! Rasa's item of it. [`Db`] is what every operation works on: the client and the tables.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use tracker_core::{Error, Event, EventData, Result, StoredEvent};

use crate::config::{RASA_EVENTS, RASA_HASH_KEY};
use crate::error::{build_error, driver_error};
use crate::rasa::parse_rasa_item;
use crate::schema::{
    DATA, HASH_KEY, HEAD_SEQ, Item, MAX_EVENTS_PER_APPEND, RANGE_KEY, SESSION_START, VERSION,
    continuation, key, number, rasa_key, read_number,
};
use crate::transact::{Sent, transact};
use crate::writes;

/// Most keys of one `BatchGetItem`.
pub(crate) const BATCH_GET_KEYS: usize = 100;
/// Attempts of a `BatchGetItem` while DynamoDB leaves keys unprocessed.
pub(crate) const BATCH_GET_ATTEMPTS: u32 = 8;

/// The client and the tables an operation works on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Db<'a> {
    /// The DynamoDB client.
    pub(crate) client: &'a Client,
    /// This store's table.
    pub(crate) table: &'a str,
    /// Rasa's table to adopt conversations from, if any.
    pub(crate) rasa_table: Option<&'a str>,
    /// The `Limit` of queries and scans.
    pub(crate) page_size: Option<i32>,
    /// This store's table did not exist when the store connected without setting it up
    /// (beside Rasa's table, to read Rasa's conversations): while it is missing, it holds
    /// nothing. Otherwise a missing table is an error.
    pub(crate) store_table_pending: bool,
    /// The store keeps an outbox: appends mark their conversation pending.
    pub(crate) outbox: bool,
}

/// What a conversation's head item holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The number of events.
    pub(crate) version: u64,
    /// The seq of the last `session_started` event.
    pub(crate) session_start: Option<u64>,
}

/// Rasa's copy of a conversation, read from its item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RasaCopy {
    /// The events, as Rasa reads them (entries of unknown form skipped, as Rasa does).
    pub(crate) events: Vec<Event>,
    /// The number of entries of the item's `events` list (what conditions compare).
    pub(crate) entries: usize,
}

impl RasaCopy {
    /// The conversation's version: its number of events.
    pub(crate) fn version(&self) -> u64 {
        self.events.len() as u64
    }

    /// The events from seq `from` (1 for all), as stored events numbered from 1.
    pub(crate) fn stored_events(&self, from: u64) -> Vec<StoredEvent> {
        self.events
            .iter()
            .zip(1_u64..)
            .skip(usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX))
            .map(|(event, seq)| StoredEvent {
                seq,
                data: EventData::Text(event.to_rasa_json()),
            })
            .collect()
    }

    /// The seq of the last `session_started` event, if any.
    pub(crate) fn session_start(&self) -> Option<u64> {
        self.events
            .iter()
            .rposition(|event| event.type_name() == "session_started")
            .map(|index| index as u64 + 1)
    }
}

/// Whether an SDK error says the table does not exist (Rasa's default table `states` may not
/// have been created yet, or it was dropped).
pub(crate) fn is_missing_table<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.code() == Some("ResourceNotFoundException")
}

impl Db<'_> {
    /// The pending mark an append writes with the head (the time now, epoch milliseconds),
    /// when the store keeps an outbox.
    pub(crate) fn pending_mark(&self) -> Option<u64> {
        self.outbox.then(now_ms)
    }

    /// Whether `error`, of a request to this store's table, says the table does not exist
    /// while that is expected (see [`Db::store_table_pending`]).
    pub(crate) fn pending_table<E: ProvideErrorMetadata>(
        &self,
        error: &SdkError<E, HttpResponse>,
    ) -> bool {
        self.store_table_pending && is_missing_table(error)
    }

    /// The head item of a conversation, read consistently; `None` if it has none.
    pub(crate) async fn head(&self, sender_id: &str) -> Result<Option<Head>> {
        let output = match self
            .client
            .get_item()
            .table_name(self.table)
            .set_key(Some(key(sender_id, HEAD_SEQ)))
            .consistent_read(true)
            .projection_expression("#v, #s")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#s", SESSION_START)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if self.pending_table(&error) => return Ok(None),
            Err(error) => {
                return Err(driver_error(
                    format!("reading conversation {sender_id:?}"),
                    error,
                ));
            }
        };
        let Some(item) = output.item else {
            return Ok(None);
        };
        let version = read_number(sender_id, &item, VERSION, None)?
            .ok_or_else(|| Error::corrupt(sender_id, None, "the head item has no `version`"))?;
        if version == 0 {
            return Ok(None);
        }
        let session_start = read_number(sender_id, &item, SESSION_START, None)?;
        Ok(Some(Head {
            version,
            session_start,
        }))
    }

    /// The conversation's version: this store's if it holds the conversation, else the
    /// number of events of Rasa's copy (0 if there is none).
    pub(crate) async fn version(&self, sender_id: &str) -> Result<u64> {
        if let Some(head) = self.head(sender_id).await? {
            return Ok(head.version);
        }
        Ok(self
            .rasa_copy(sender_id)
            .await?
            .map_or(0, |copy| copy.version()))
    }

    /// Rasa's copy of a conversation (a consistent read), or `None` when there is no Rasa
    /// table to adopt from, it does not exist, or holds no item for `sender_id`.
    pub(crate) async fn rasa_copy(&self, sender_id: &str) -> Result<Option<RasaCopy>> {
        let Some(table) = self.rasa_table else {
            return Ok(None);
        };
        let output = match self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(rasa_key(sender_id)))
            .consistent_read(true)
            .projection_expression("#e")
            .expression_attribute_names("#e", RASA_EVENTS)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if is_missing_table(&error) => return Ok(None),
            Err(error) => {
                return Err(driver_error(
                    format!("reading Rasa's conversation {sender_id:?} in table {table:?}"),
                    error,
                ));
            }
        };
        let Some(item) = output.item else {
            return Ok(None);
        };
        let entries = match item.get(RASA_EVENTS) {
            Some(AttributeValue::L(values)) => values.len(),
            _ => 0,
        };
        let events = parse_rasa_item(sender_id, &item)?;
        Ok(Some(RasaCopy { events, entries }))
    }

    /// Whether Rasa's table has an item for `sender_id` (of any content).
    pub(crate) async fn rasa_item_exists(&self, sender_id: &str) -> Result<bool> {
        let Some(table) = self.rasa_table else {
            return Ok(false);
        };
        match self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(rasa_key(sender_id)))
            .consistent_read(true)
            .projection_expression("#k")
            .expression_attribute_names("#k", RASA_HASH_KEY)
            .send()
            .await
        {
            Ok(output) => Ok(output.item.is_some_and(|item| !item.is_empty())),
            Err(error) if is_missing_table(&error) => Ok(false),
            Err(error) => Err(driver_error(
                format!("reading Rasa's conversation {sender_id:?} in table {table:?}"),
                error,
            )),
        }
    }

    /// Every item one `BatchGetItem` request on `table` returns, sending the keys DynamoDB
    /// left unprocessed again (it returns at most 16 MB per call) with a growing pause, at
    /// most [`BATCH_GET_ATTEMPTS`] times; `None` when `missing` says the table is not there.
    /// `what` names the read in errors.
    pub(crate) async fn batch_get(
        &self,
        table: &str,
        request: KeysAndAttributes,
        what: &str,
        missing: impl Fn(&SdkError<BatchGetItemError, HttpResponse>) -> bool,
    ) -> Result<Option<Vec<Item>>> {
        let mut items = Vec::new();
        let mut request = Some(request);
        let mut attempt = 0;
        while let Some(keys) = request.take() {
            attempt += 1;
            let output = match self
                .client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) if missing(&error) => return Ok(None),
                Err(error) => return Err(driver_error(what, error)),
            };
            items.extend(
                output
                    .responses
                    .unwrap_or_default()
                    .remove(table)
                    .unwrap_or_default(),
            );
            request = output
                .unprocessed_keys
                .unwrap_or_default()
                .remove(table)
                .filter(|keys| !keys.keys().is_empty());
            if request.is_some() {
                if attempt >= BATCH_GET_ATTEMPTS {
                    return Err(Error::unavailable(format!(
                        "{what}: keys left unprocessed after {attempt} attempts"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
        Ok(Some(items))
    }

    /// Which of `sender_ids` Rasa's table holds a conversation for (an item with at least
    /// one entry in `events`): consistent `BatchGetItem`s of 100 keys, sending unprocessed
    /// keys again (DynamoDB returns at most 16 MB per call).
    pub(crate) async fn rasa_holds(&self, sender_ids: &[String]) -> Result<HashSet<String>> {
        let mut held = HashSet::new();
        let Some(table) = self.rasa_table else {
            return Ok(held);
        };
        for chunk in sender_ids.chunks(BATCH_GET_KEYS) {
            let keys: Vec<Item> = chunk.iter().map(|id| rasa_key(id)).collect();
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                // The whole list (a read costs the whole item anyway); `#e[0]` would do
                // on DynamoDB, but not on every stand-in.
                .projection_expression("#k, #e")
                .expression_attribute_names("#k", RASA_HASH_KEY)
                .expression_attribute_names("#e", RASA_EVENTS)
                .build()
                .map_err(build_error)?;
            let Some(items) = self
                .batch_get(
                    table,
                    request,
                    &format!("reading Rasa's table {table:?}"),
                    is_missing_table,
                )
                .await?
            else {
                return Ok(held);
            };
            for item in items {
                let has_events =
                    matches!(item.get(RASA_EVENTS), Some(AttributeValue::L(l)) if !l.is_empty());
                if let (true, Some(AttributeValue::S(id))) = (has_events, item.get(RASA_HASH_KEY)) {
                    held.insert(id.clone());
                }
            }
        }
        Ok(held)
    }

    /// The events `from..=to` of a conversation, read consistently, following
    /// `LastEvaluatedKey` to the end.
    pub(crate) async fn events(
        &self,
        sender_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0).min(4096));
        let mut start = None;
        loop {
            let output = match self
                .client
                .query()
                .table_name(self.table)
                .consistent_read(true)
                .key_condition_expression("#k = :k AND #s BETWEEN :from AND :to")
                .projection_expression("#s, #d")
                .expression_attribute_names("#k", HASH_KEY)
                .expression_attribute_names("#s", RANGE_KEY)
                .expression_attribute_names("#d", DATA)
                .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
                .expression_attribute_values(":from", number(from))
                .expression_attribute_values(":to", number(to))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) if self.pending_table(&error) => return Ok(events),
                Err(error) => {
                    return Err(driver_error(
                        format!("reading the events of {sender_id:?}"),
                        error,
                    ));
                }
            };
            for item in output.items.unwrap_or_default() {
                let seq = read_number(sender_id, &item, RANGE_KEY, None)?.ok_or_else(|| {
                    Error::corrupt(sender_id, None, "an event item without `seq`")
                })?;
                let data = match item.get(DATA) {
                    Some(AttributeValue::S(text)) => text.clone(),
                    _ => {
                        return Err(Error::corrupt(
                            sender_id,
                            Some(seq),
                            format!("the event item has no string `{DATA}`"),
                        ));
                    }
                };
                events.push(StoredEvent {
                    seq,
                    data: EventData::Text(data),
                });
            }
            start = continuation(output.last_evaluated_key);
            if start.is_none() {
                return Ok(events);
            }
        }
    }

    /// Deletes event items in one transaction that first checks the conversation still has
    /// no head. Returns false (deleting nothing) when it has one (it was created anew) or
    /// other transactions kept getting in the way.
    async fn delete_event_items(&self, sender_id: &str, seqs: &[u64]) -> Result<bool> {
        let actions = writes::event_deletes(self.table, sender_id, seqs)?;
        let context = || format!("deleting the events of {sender_id:?}");
        Ok(transact(self.client, &actions, &context).await? == Sent::Committed)
    }

    /// Deletes every event item of a conversation that has no head (any left by an
    /// interrupted delete included), following `LastEvaluatedKey`, in transactions of up to
    /// 99 deletes. Stops when the conversation is created anew meanwhile: its appends
    /// overwrite what is left. Returns the number of items deleted.
    pub(crate) async fn delete_events(&self, sender_id: &str) -> Result<usize> {
        let mut deleted = 0;
        let mut batch: Vec<u64> = Vec::with_capacity(MAX_EVENTS_PER_APPEND);
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(self.table)
                .consistent_read(true)
                .key_condition_expression("#k = :k AND #s > :head")
                .projection_expression("#s")
                .expression_attribute_names("#k", HASH_KEY)
                .expression_attribute_names("#s", RANGE_KEY)
                .expression_attribute_values(":k", AttributeValue::S(sender_id.to_owned()))
                .expression_attribute_values(":head", number(HEAD_SEQ))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| driver_error(format!("listing the events of {sender_id:?}"), e))?;
            for item in output.items.unwrap_or_default() {
                if let Some(seq) = read_number(sender_id, &item, RANGE_KEY, None)? {
                    batch.push(seq);
                }
                if batch.len() == MAX_EVENTS_PER_APPEND {
                    if !self.delete_event_items(sender_id, &batch).await? {
                        return Ok(deleted);
                    }
                    deleted += batch.len();
                    batch.clear();
                }
            }
            start = continuation(output.last_evaluated_key);
            if start.is_none() {
                break;
            }
        }
        if !batch.is_empty() && self.delete_event_items(sender_id, &batch).await? {
            deleted += batch.len();
        }
        Ok(deleted)
    }
}

/// The time now, in milliseconds since the epoch (this process's clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
