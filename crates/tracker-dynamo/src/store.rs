//! The store: [`DynamoStore`], its constructors, and its [`Store`] implementation.

use std::fmt;
use std::sync::Arc;

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tracker_core::{
    Append, Capabilities, Error, EventData, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, StoredEvent, async_trait,
};

use crate::config::{DynamoConfig, redact_url, validate_table_name};
use crate::error::{CONDITION_FAILED, cancellation_reasons, driver_error};
use crate::migrate;
use crate::schema::{
    self, Canceled, DATA, HASH_KEY, HEAD_SEQ, Item, MAX_APPEND_BYTES, MAX_EVENT_BYTES,
    MAX_EVENTS_PER_APPEND, RANGE_KEY, SESSION_START, VERSION, continuation, key, number, read_key,
    read_number,
};

/// Attempts of a read whose head and events disagree (a delete ran in between).
const READ_ATTEMPTS: usize = 3;
/// Scan requests one [`Store::list`] call makes at most before returning a shorter page
/// (with a cursor), so a page over a table of long conversations stays quick.
const SCANS_PER_PAGE: usize = 16;

/// A conversation store on DynamoDB: one item per event and a head item per conversation,
/// appended to with conditional transactions (see the crate documentation for the layout).
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    page_size: Option<i32>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// What a conversation's head item holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    version: u64,
    session_start: Option<u64>,
}

impl DynamoStore {
    /// Connects as configured, with credentials from the standard AWS chain, then creates
    /// the table with [`DynamoStore::ensure_schema`] when `config.migrate` is set (the
    /// default), or checks it with [`DynamoStore::check_schema`] otherwise.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, a missing table (with `migrate: false`)
    /// or a table of another layout (such as Rasa's own `states` table);
    /// [`Error::Unavailable`] when DynamoDB cannot be reached.
    pub async fn connect(config: &DynamoConfig) -> Result<Self> {
        Self::connect_with(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// [`DynamoStore::connect`] with AWS settings of your own (credentials provider, retry
    /// and timeout settings, HTTP client, ...). The configuration's region and endpoint are
    /// applied on top of `loader`.
    ///
    /// ```no_run
    /// use tracker_dynamo::aws_config::{self, BehaviorVersion};
    /// use tracker_dynamo::aws_sdk_dynamodb::config::Credentials;
    /// use tracker_dynamo::{DynamoConfig, DynamoStore};
    ///
    /// # async fn demo() -> tracker_dynamo::tracker_core::Result<()> {
    /// let config = DynamoConfig {
    ///     endpoint_url: Some("http://127.0.0.1:8000".to_owned()),
    ///     ..DynamoConfig::with_table("conversations")
    /// };
    /// let loader = aws_config::defaults(BehaviorVersion::latest())
    ///     .credentials_provider(Credentials::new("test", "test", None, None, "static"));
    /// let store = DynamoStore::connect_with(&config, loader).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DynamoStore::connect`].
    pub async fn connect_with(config: &DynamoConfig, loader: ConfigLoader) -> Result<Self> {
        config.validate()?;
        let store = Self::from_client(config.client(loader).await, config)?;
        if config.migrate {
            for change in store.ensure_schema().await? {
                tracing::info!(table = %store.table, change, "set up the DynamoDB table");
            }
        } else {
            store.check_schema().await?;
        }
        tracing::info!(
            table = %store.table,
            region = %config.region,
            endpoint = ?config.endpoint_url.as_deref().map(redact_url),
            "connected to the DynamoDB tracker store"
        );
        Ok(store)
    }

    /// A store on a client you built (with the re-exported [`aws_sdk_dynamodb`] crate), in
    /// the table `config.table_name`; the other keys are the client's business and ignored
    /// here. Nothing is sent: run [`DynamoStore::ensure_schema`] (or
    /// [`DynamoStore::check_schema`]) once if the table may be missing.
    ///
    /// ```
    /// use tracker_dynamo::aws_sdk_dynamodb::{self, config::{BehaviorVersion, Region}};
    /// use tracker_dynamo::{DynamoConfig, DynamoStore};
    ///
    /// let sdk_config = aws_sdk_dynamodb::Config::builder()
    ///     .behavior_version(BehaviorVersion::latest())
    ///     .region(Region::new("eu-west-1"))
    ///     .build();
    /// let client = aws_sdk_dynamodb::Client::from_conf(sdk_config);
    /// let store = DynamoStore::from_client(client, &DynamoConfig::with_table("conversations"))
    ///     .expect("a valid table name");
    /// assert_eq!(store.table_name(), "conversations");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a table name DynamoDB does not accept.
    pub fn from_client(client: Client, config: &DynamoConfig) -> Result<Self> {
        validate_table_name(&config.table_name)?;
        Ok(Self {
            client,
            table: Arc::from(config.table_name.as_str()),
            page_size: None,
        })
    }

    /// Sets the `Limit` of every `Query` and `Scan` this store sends (at least 1; default:
    /// none, i.e. DynamoDB's 1 MB pages). Results are complete either way, as every listing
    /// follows `LastEvaluatedKey`; smaller pages mean more requests. For tests and tuning.
    #[must_use]
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(i32::try_from(items.max(1)).unwrap_or(i32::MAX));
        self
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist — hash key `sender_id` (string), range key
    /// `seq` (number), on-demand billing — and waits until it is `ACTIVE` (at most 5
    /// minutes). Safe to run concurrently and repeatedly; an existing table's key schema is
    /// checked. Returns a description of each change made: one line when this call created
    /// the table, none when it existed (or another process created it meanwhile).
    ///
    /// # Errors
    /// [`Error::Config`] when a table of that name has another key schema (Rasa's `states`
    /// table has the key `sender_id` only) or is being deleted; [`Error::Unavailable`] when
    /// it does not become active in time.
    pub async fn ensure_schema(&self) -> Result<Vec<String>> {
        migrate::ensure_schema(&self.client, &self.table).await
    }

    /// Checks that the table exists with this store's key schema (waiting while it is being
    /// created), changing nothing.
    ///
    /// # Errors
    /// [`Error::Config`] when it does not exist or has another key schema.
    pub async fn check_schema(&self) -> Result<()> {
        migrate::check_schema(&self.client, &self.table).await
    }

    /// The head item of a conversation, read consistently; `None` if it has none.
    async fn head(&self, sender_id: &str) -> Result<Option<Head>> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key(sender_id, HEAD_SEQ)))
            .consistent_read(true)
            .projection_expression("#v, #s")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#s", SESSION_START)
            .send()
            .await
            .map_err(|e| driver_error(format!("reading conversation {sender_id:?}"), e))?;
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

    /// The events `from..=to` of a conversation, read consistently, following
    /// `LastEvaluatedKey` to the end.
    async fn events(&self, sender_id: &str, from: u64, to: u64) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0).min(4096));
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&*self.table)
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
                .map_err(|e| driver_error(format!("reading the events of {sender_id:?}"), e))?;
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

    /// The conversation's version, read consistently.
    async fn current_version(&self, sender_id: &str) -> Result<u64> {
        Ok(self.head(sender_id).await?.map_or(0, |head| head.version))
    }

    /// Deletes event items in one transaction that first checks the conversation still has
    /// no head. Returns false (deleting nothing) when it has one: it was created anew.
    async fn delete_event_items(&self, sender_id: &str, seqs: &[u64]) -> Result<bool> {
        let actions = schema::event_deletes(&self.table, sender_id, seqs)?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                let recreated = cancellation_reasons(&error)
                    .is_some_and(|reasons| reasons.first() == Some(&Some(CONDITION_FAILED)));
                if recreated {
                    Ok(false)
                } else {
                    Err(driver_error(
                        format!("deleting the events of {sender_id:?}"),
                        error,
                    ))
                }
            }
        }
    }

    /// Deletes every event item of a conversation that has no head (any left by an
    /// interrupted delete included), following `LastEvaluatedKey`, in transactions of up to
    /// 99 deletes. Stops when the conversation is created anew meanwhile: its appends
    /// overwrite what is left. Returns the number of items deleted.
    async fn delete_events(&self, sender_id: &str) -> Result<usize> {
        let mut deleted = 0;
        let mut batch: Vec<u64> = Vec::with_capacity(MAX_EVENTS_PER_APPEND);
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&*self.table)
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

    /// Sends an append's transaction; on leftover items of an interrupted delete, sends it
    /// again with unconditional event puts (the head's condition still guards it).
    async fn transact_append(&self, append: &Append, items: &[Item]) -> Result<u64> {
        let sender_id = append.sender_id().as_str();
        let head = schema::head_update(&self.table, append)?;
        let mut conditional = true;
        loop {
            let mut actions = Vec::with_capacity(items.len() + 1);
            actions.push(head.clone());
            for item in items {
                actions.push(schema::event_put(&self.table, item.clone(), conditional)?);
            }
            let error = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => return Ok(append.new_version()),
                Err(error) => error,
            };
            match Canceled::of(cancellation_reasons(&error).as_deref()) {
                Canceled::Stale => {
                    let actual = self.current_version(sender_id).await?;
                    tracing::debug!(
                        sender_id,
                        expected = append.expected_version(),
                        actual,
                        "append conflicts with another writer"
                    );
                    return Err(Error::conflict(
                        sender_id,
                        append.expected_version(),
                        actual,
                    ));
                }
                Canceled::Leftovers(count) if conditional => {
                    tracing::warn!(
                        sender_id,
                        items = count,
                        "overwriting event items left by an interrupted delete"
                    );
                    conditional = false;
                }
                _ => {
                    return Err(driver_error(format!("appending to {sender_id:?}"), error));
                }
            }
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn name(&self) -> &str {
        "dynamo"
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(MAX_EVENTS_PER_APPEND);
        capabilities.max_event_bytes = Some(MAX_EVENT_BYTES);
        capabilities.max_append_bytes = Some(MAX_APPEND_BYTES);
        capabilities.native_latest_session = true;
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        self.current_version(sender_id.as_str()).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        let sender_id = append.sender_id().as_str();
        let items: Vec<Item> = append
            .records()
            .iter()
            .map(|record| schema::event_item(sender_id, record))
            .collect();
        schema::check_append(append, &items)?;
        self.transact_append(append, &items).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let id = sender_id.as_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(head) = self.head(id).await? else {
                return Ok(None);
            };
            let from = match (scope, head.session_start) {
                (ReadScope::LatestSession, Some(start)) => start.saturating_sub(1).max(1),
                _ => 1,
            };
            if from > head.version {
                return Err(Error::corrupt(
                    id,
                    None,
                    format!(
                        "the head's session start {} is beyond its version {}",
                        head.session_start.unwrap_or_default(),
                        head.version
                    ),
                ));
            }
            let events = self.events(id, from, head.version).await?;
            let complete = events.len() as u64 == head.version - from + 1
                && events
                    .iter()
                    .zip(from..)
                    .all(|(event, seq)| event.seq == seq);
            if complete || attempt >= READ_ATTEMPTS {
                if !complete {
                    tracing::warn!(
                        sender_id = id,
                        version = head.version,
                        read = events.len(),
                        "events are missing below the conversation's version"
                    );
                }
                return Ok(Some(StoredConversation {
                    version: head.version,
                    events,
                }));
            }
            // The conversation was deleted (and maybe created anew) between the two reads.
            tracing::debug!(
                sender_id = id,
                "conversation changed while reading; reading again"
            );
        }
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        if request.limit == 0 {
            return Err(Error::invalid_input(
                "a page of 0 conversations was asked for",
            ));
        }
        let mut start = match &request.cursor {
            Some(cursor) => {
                let (sender_id, seq) = schema::decode_cursor(cursor)?;
                Some(key(&sender_id, seq))
            }
            None => None,
        };
        let mut sender_ids = Vec::new();
        for _ in 0..SCANS_PER_PAGE {
            let output = self
                .client
                .scan()
                .table_name(&*self.table)
                .consistent_read(true)
                .filter_expression("#s = :head")
                .projection_expression("#k, #s")
                .expression_attribute_names("#k", HASH_KEY)
                .expression_attribute_names("#s", RANGE_KEY)
                .expression_attribute_values(":head", number(HEAD_SEQ))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| driver_error("listing conversations", e))?;
            let last_key = continuation(output.last_evaluated_key);
            let mut heads = output.items.unwrap_or_default().into_iter();
            while let Some(item) = heads.next() {
                let (sender_id, _) = read_key(&item)?;
                sender_ids.push(sender_id);
                if sender_ids.len() >= request.limit {
                    let more = heads.next().is_some() || last_key.is_some();
                    let next_cursor = more.then(|| {
                        let last = sender_ids.last().map_or("", String::as_str);
                        schema::encode_cursor(last, HEAD_SEQ)
                    });
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor,
                    });
                }
            }
            match last_key {
                Some(key) => start = Some(key),
                None => {
                    return Ok(ListPage {
                        sender_ids,
                        next_cursor: None,
                    });
                }
            }
        }
        // Enough scanning for one call: a shorter page that continues where the scan stopped.
        let next_cursor = match &start {
            Some(key) => {
                let (sender_id, seq) = read_key(key)?;
                Some(schema::encode_cursor(&sender_id, seq))
            }
            None => None,
        };
        Ok(ListPage {
            sender_ids,
            next_cursor,
        })
    }

    async fn delete(&self, sender_id: &SenderId) -> Result<bool> {
        let id = sender_id.as_str();
        let output = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key(id, HEAD_SEQ)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| driver_error(format!("deleting conversation {id:?}"), e))?;
        let existed = output.attributes.is_some_and(|head| !head.is_empty());
        // The head is gone, so the conversation no longer exists for any reader; what follows
        // only frees space. Items it leaves (on a crash or error) are invisible, overwritten by
        // later appends and removed by the next delete.
        match self.delete_events(id).await {
            Ok(deleted) => {
                tracing::debug!(sender_id = id, existed, deleted, "deleted conversation");
            }
            Err(error) => tracing::warn!(
                sender_id = id,
                error = %error,
                "deleted the conversation, but not all of its event items; the next delete removes them"
            ),
        }
        Ok(existed)
    }
}
