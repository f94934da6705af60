//! The store implementation. See the README's "Document layout" and "Appends and crashes"
//! sections for the design; the comments here name the steps.

use std::fmt;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Collection, Database};
use tracker_core::{
    Append, Capabilities, Error, EventData, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, StoredEvent, async_trait,
};

use crate::config::{MongoConfig, validate_bucket, validate_collection_name, validate_db_name};
use crate::error::{from_driver, is_duplicate_key};
use crate::schema::{
    self, EVENTS_SUFFIX, HEADS_SUFFIX, MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, MAX_TAIL_BYTES,
    as_u64, bucket, event, get_opt_u64, get_u64, head,
};

/// How often an append or a read starts over after losing a race that does not change the
/// conversation's version (it was deleted and re-created meanwhile, or another writer's
/// bucket is not visible yet). Conflicts are never retried.
const MAX_ATTEMPTS: usize = 8;

/// The MongoDB store: a [`Store`] keeping each conversation in a head document (its version,
/// session start and newest events) and bucket documents (older events, sealed).
///
/// Cloning is cheap and shares the client (its connection pool). All operations are safe to
/// call from many tasks and processes at once; every append is one atomic single-document
/// write, so it needs neither transactions nor a replica set.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    database: Database,
    heads: Collection<Document>,
    events: Collection<Document>,
    collection: String,
    bucket_events: usize,
    bucket_bytes: usize,
    /// Where it is connected, without credentials.
    display: String,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("server", &self.display)
            .field("db", &self.database.name())
            .field("collection", &self.collection)
            .field("bucket_events", &self.bucket_events)
            .field("bucket_bytes", &self.bucket_bytes)
            .finish()
    }
}

/// A conversation's head document, read back.
struct Head {
    generation: ObjectId,
    version: u64,
    session: Option<u64>,
    tail_seq: u64,
    tail_count: u64,
    tail_bytes: u64,
    tail: Vec<Bson>,
}

impl Head {
    fn parse(mut document: Document, sender_id: &str) -> Result<Self> {
        let number = |document: &Document, field| get_u64(document, field, sender_id, "head");
        let version = number(&document, head::VERSION)?;
        let tail_seq = number(&document, head::TAIL_SEQ)?;
        let tail_count = number(&document, head::TAIL_COUNT)?;
        let tail_bytes = number(&document, head::TAIL_BYTES)?;
        let session = get_opt_u64(&document, head::SESSION, sender_id, "head")?;
        let generation = match document.get(head::GENERATION) {
            Some(Bson::ObjectId(id)) => *id,
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("the head's `generation` is {other:?}, not an ObjectId"),
                ));
            }
        };
        let tail = match document.remove(head::TAIL) {
            Some(Bson::Array(tail)) => tail,
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("the head's `tail` is {other:?}, not an array"),
                ));
            }
        };
        if tail_seq == 0
            || tail_count == 0
            || tail.len() as u64 != tail_count
            || tail_seq.checked_add(tail_count - 1) != Some(version)
        {
            return Err(Error::corrupt(
                sender_id,
                None,
                format!(
                    "the head is inconsistent: version {version}, tail from {tail_seq} with \
                     {tail_count} events, {} stored",
                    tail.len()
                ),
            ));
        }
        Ok(Self {
            generation,
            version,
            session,
            tail_seq,
            tail_count,
            tail_bytes,
            tail,
        })
    }
}

/// Moves the events of `entries` (numbered from `first_seq`) with a sequence number of at
/// least `from` into `out`, checking each entry's own `seq`.
fn take_events(
    out: &mut Vec<StoredEvent>,
    entries: Vec<Bson>,
    first_seq: u64,
    from: u64,
    sender_id: &str,
) -> Result<()> {
    for (seq, entry) in (first_seq..).zip(entries) {
        if seq < from {
            continue;
        }
        let Bson::Document(mut entry) = entry else {
            return Err(Error::corrupt(
                sender_id,
                Some(seq),
                format!("the event entry is {entry:?}, not a document"),
            ));
        };
        let stored_seq = entry.get(event::SEQ).and_then(as_u64);
        if stored_seq != Some(seq) {
            return Err(Error::corrupt(
                sender_id,
                Some(seq),
                format!("the event entry at this position says `seq` {stored_seq:?}"),
            ));
        }
        match entry.remove(event::DATA) {
            Some(Bson::String(text)) => out.push(StoredEvent {
                seq,
                data: EventData::Text(text),
            }),
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    Some(seq),
                    format!("the event's `data` is {other:?}, not JSON text"),
                ));
            }
        }
    }
    Ok(())
}

/// What reading the sealed buckets found.
enum Buckets {
    /// The events, contiguous up to the head's tail.
    Complete,
    /// Buckets are missing (a delete ran meanwhile, or the data is damaged).
    Gap(String),
}

impl MongoStore {
    /// Connects with Rasa's configuration keys: checks the configuration, connects and pings
    /// the server, and creates the indexes unless `ensure_indexes` is off.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or connection string, or rejected
    /// credentials; [`Error::Unavailable`] when no server answers (after the driver's server
    /// selection timeout, 30 s unless the URL sets `serverSelectionTimeoutMS`).
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        config.validate()?;
        let display = config.display_url();
        let options = config.client_options().await?;
        let client = Client::with_options(options)
            .map_err(|e| from_driver(format!("cannot create a client for {display}"), e))?;
        let mut store = Self::from_client(client, config)?;
        store.display = display;
        store.ping().await?;
        if config.ensure_indexes {
            store.ensure_indexes().await?;
        }
        tracing::debug!(store = ?store, "connected to MongoDB");
        Ok(store)
    }

    /// A store on a client you built (with the re-exported [`mongodb`] crate), in the
    /// database `config.db`. Uses `db`, `collection`, `bucket_events` and `bucket_bytes` of
    /// `config`; the connection keys are ignored. Touches no server: call
    /// [`ensure_indexes`](Self::ensure_indexes) yourself.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid database name, collection name or bucket size.
    pub fn from_client(client: Client, config: &MongoConfig) -> Result<Self> {
        validate_db_name(&config.db)?;
        Self::from_database(client.database(&config.db), config)
    }

    /// A store in a database handle you built. Uses `collection`, `bucket_events` and
    /// `bucket_bytes` of `config`; the other keys are ignored. Touches no server: call
    /// [`ensure_indexes`](Self::ensure_indexes) yourself.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid collection name or bucket size.
    pub fn from_database(database: Database, config: &MongoConfig) -> Result<Self> {
        validate_collection_name(&config.collection)?;
        validate_bucket(config.bucket_events, config.bucket_bytes)?;
        let heads = database.collection(&format!("{}{HEADS_SUFFIX}", config.collection));
        let events = database.collection(&format!("{}{EVENTS_SUFFIX}", config.collection));
        Ok(Self {
            client: database.client().clone(),
            database,
            heads,
            events,
            collection: config.collection.clone(),
            bucket_events: config.bucket_events,
            bucket_bytes: config.bucket_bytes,
            display: "<client given>".to_owned(),
        })
    }

    /// Creates the indexes this store uses (idempotent; existing indexes are kept): heads by
    /// listing key, buckets by conversation and position. Correctness never depends on them.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Config`] (no permission) / [`Error::Backend`].
    pub async fn ensure_indexes(&self) -> Result<()> {
        self.heads
            .create_indexes(schema::head_indexes())
            .await
            .map_err(|e| from_driver("creating the index of heads", e))?;
        self.events
            .create_indexes(schema::event_indexes())
            .await
            .map_err(|e| from_driver("creating the index of buckets", e))?;
        tracing::debug!(collection = %self.collection, "indexes are in place");
        Ok(())
    }

    /// Removes the buckets that no conversation refers to any more, and returns how many
    /// it removed. They are left by a delete interrupted between its two steps (the head is
    /// gone, its buckets not yet) and are never read, only taking space. Safe while the
    /// store is in use: a bucket is removed only when no head has its sender id with its
    /// generation, and a generation is never reused (a re-created conversation gets a new
    /// one). It reads every bucket's key, so run it now and then, not per request.
    ///
    /// # Errors
    /// [`Error::Unavailable`] / [`Error::Backend`] from the server; what was removed before
    /// the error stays removed.
    pub async fn collect_orphaned_buckets(&self) -> Result<u64> {
        let context = "collecting orphaned buckets";
        let mut keys = self
            .events
            .find(doc! {})
            .projection(doc! { bucket::SENDER_ID: 1, bucket::GENERATION: 1 })
            .await
            .map_err(|e| from_driver(context, e))?;
        let mut seen = std::collections::HashSet::new();
        let mut removed = 0;
        while let Some(key) = keys.try_next().await.map_err(|e| from_driver(context, e))? {
            let (Ok(sender_id), Some(generation)) =
                (key.get_str(bucket::SENDER_ID), key.get(bucket::GENERATION))
            else {
                continue;
            };
            if !seen.insert((sender_id.to_owned(), generation.to_string())) {
                continue;
            }
            let live = self
                .heads
                .find_one(doc! {
                    "_id": schema::head_id(sender_id),
                    head::SENDER_ID: sender_id,
                    head::GENERATION: generation.clone(),
                })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(|e| from_driver(context, e))?;
            if live.is_none() {
                let result = self
                    .events
                    .delete_many(doc! {
                        bucket::SENDER_ID: sender_id,
                        bucket::GENERATION: generation.clone(),
                    })
                    .await
                    .map_err(|e| from_driver(context, e))?;
                removed += result.deleted_count;
            }
        }
        if removed > 0 {
            tracing::info!(removed, collection = %self.collection, "removed orphaned buckets");
        }
        Ok(removed)
    }

    /// Checks that the server answers (`ping`).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not, [`Error::Config`] for rejected credentials.
    pub async fn ping(&self) -> Result<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(|e| from_driver(format!("pinging MongoDB at {}", self.display), e))
    }

    /// The client (shares its connection pool with this store).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The base name of the collections (`collection` in the configuration).
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// The collection of head documents, `<collection>.heads`, for inspection. Writing to it
    /// bypasses every guarantee of this store.
    pub fn heads(&self) -> &Collection<Document> {
        &self.heads
    }

    /// The collection of bucket documents, `<collection>.events`, for inspection. Writing to
    /// it bypasses every guarantee of this store.
    pub fn buckets(&self) -> &Collection<Document> {
        &self.events
    }

    /// The head document of a conversation, if it exists.
    async fn load_head(&self, sender_id: &str) -> Result<Option<Head>> {
        let Some(document) = self
            .heads
            .find_one(doc! { "_id": schema::head_id(sender_id) })
            .await
            .map_err(|e| from_driver("reading a conversation's head", e))?
        else {
            return Ok(None);
        };
        check_owner(&document, head::SENDER_ID, sender_id, "head")?;
        Head::parse(document, sender_id).map(Some)
    }

    /// Creates a conversation with the append's events: one insert, whose derived `_id` makes
    /// it fail if the conversation exists. Returns whether it was created.
    async fn create(&self, append: &Append, entries: &[Bson], bytes: usize) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let mut document = doc! {
            "_id": schema::head_id(sender_id),
            head::SENDER_ID: sender_id,
            head::SENDER_HEX: schema::sender_hex(sender_id),
            head::GENERATION: ObjectId::new(),
            head::VERSION: schema::to_i64(append.new_version())?,
            head::TAIL_SEQ: 1_i64,
            head::TAIL_COUNT: schema::usize_to_i64(entries.len()),
            head::TAIL_BYTES: schema::usize_to_i64(bytes),
            head::TAIL: entries.to_vec(),
        };
        if let Some(session) = append.last_session_started() {
            document.insert(head::SESSION, schema::to_i64(session)?);
        }
        match self.heads.insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(from_driver("creating a conversation", e)),
        }
    }

    /// Appends to the head's tail: one update guarded by the expected version (and by the
    /// tail having room). Returns whether it matched.
    async fn push(&self, append: &Append, entries: &[Bson], bytes: usize) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let count = entries.len();
        let (Some(count_room), Some(bytes_room)) = (
            self.bucket_events.checked_sub(count),
            self.bucket_bytes.checked_sub(bytes),
        ) else {
            return Ok(false);
        };
        let filter = doc! {
            "_id": schema::head_id(sender_id),
            head::SENDER_ID: sender_id,
            head::VERSION: schema::to_i64(append.expected_version())?,
            head::TAIL_COUNT: { "$lte": schema::usize_to_i64(count_room) },
            head::TAIL_BYTES: { "$lte": schema::usize_to_i64(bytes_room) },
        };
        let mut set = doc! { head::VERSION: schema::to_i64(append.new_version())? };
        if let Some(session) = append.last_session_started() {
            set.insert(head::SESSION, schema::to_i64(session)?);
        }
        let update = doc! {
            "$push": { head::TAIL: { "$each": entries.to_vec() } },
            "$inc": {
                head::TAIL_COUNT: schema::usize_to_i64(count),
                head::TAIL_BYTES: schema::usize_to_i64(bytes),
            },
            "$set": set,
        };
        let result = self
            .heads
            .update_one(filter, update)
            .await
            .map_err(|e| from_driver("appending to a conversation", e))?;
        Ok(result.matched_count == 1)
    }

    /// Seals the head's tail into a bucket and makes the append's events the new tail.
    /// Returns whether the append was committed.
    ///
    /// Step 1 writes a copy of the tail (events that are already committed) to the bucket
    /// with the derived id for `(generation, tail_seq)`; a copy that is already there is only
    /// ever made longer. Step 2, the commit, replaces the tail in one update guarded by the
    /// version, generation and tail start. A crash between the two leaves only the copy,
    /// which no read looks at (reads take buckets that end before the head's `tail_seq`) and
    /// the next roll-over at that point completes.
    async fn roll_over(
        &self,
        current: &Head,
        append: &Append,
        entries: &[Bson],
        bytes: usize,
    ) -> Result<bool> {
        let sender_id = append.sender_id().as_str();
        let generation = current.generation;
        let copy_id = schema::bucket_id(sender_id, &generation, current.tail_seq);
        let first_seq = schema::to_i64(current.tail_seq)?;
        let last_seq = schema::to_i64(current.version)?;
        let count = schema::to_i64(current.tail_count)?;
        let copy = doc! {
            "_id": copy_id,
            bucket::SENDER_ID: sender_id,
            bucket::GENERATION: generation,
            bucket::FIRST_SEQ: first_seq,
            bucket::LAST_SEQ: last_seq,
            bucket::COUNT: count,
            bucket::EVENTS: current.tail.clone(),
        };
        match self.events.insert_one(copy).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                // An earlier copy at this point (from a writer that lost, or crashed): make it
                // complete. It only ever grows, so a slower writer never shortens it.
                let grown = self
                    .events
                    .update_one(
                        doc! {
                            "_id": copy_id,
                            bucket::SENDER_ID: sender_id,
                            bucket::GENERATION: generation,
                            bucket::COUNT: { "$lt": count },
                        },
                        doc! { "$set": {
                            bucket::LAST_SEQ: last_seq,
                            bucket::COUNT: count,
                            bucket::EVENTS: current.tail.clone(),
                        } },
                    )
                    .await
                    .map_err(|e| from_driver("sealing a bucket", e))?;
                if grown.matched_count == 0
                    && !self.copy_is_complete(copy_id, current, sender_id).await?
                {
                    return Ok(false);
                }
            }
            Err(e) => return Err(from_driver("sealing a bucket", e)),
        }
        let mut set = doc! {
            head::VERSION: schema::to_i64(append.new_version())?,
            head::TAIL_SEQ: schema::to_i64(append.expected_version() + 1)?,
            head::TAIL_COUNT: schema::usize_to_i64(entries.len()),
            head::TAIL_BYTES: schema::usize_to_i64(bytes),
            head::TAIL: entries.to_vec(),
        };
        if let Some(session) = append.last_session_started() {
            set.insert(head::SESSION, schema::to_i64(session)?);
        }
        let committed = self
            .heads
            .update_one(
                doc! {
                    "_id": schema::head_id(sender_id),
                    head::SENDER_ID: sender_id,
                    head::GENERATION: generation,
                    head::VERSION: last_seq,
                    head::TAIL_SEQ: first_seq,
                },
                doc! { "$set": set },
            )
            .await
            .map_err(|e| from_driver("appending to a conversation", e))?;
        if committed.matched_count == 1 {
            tracing::debug!(
                sender_id,
                first_seq = current.tail_seq,
                last_seq = current.version,
                "sealed a bucket"
            );
            return Ok(true);
        }
        // Lost. If the conversation was deleted meanwhile, its generation is gone for good and
        // so is any use of the copy: remove it. Otherwise leave it for the next roll-over.
        let generation_alive = matches!(
            self.load_head(sender_id).await?,
            Some(head) if head.generation == generation
        );
        if !generation_alive
            && let Err(e) = self
                .events
                .delete_one(doc! { "_id": copy_id, bucket::GENERATION: generation })
                .await
        {
            tracing::warn!(error = %e, "could not remove a bucket of a deleted conversation");
        }
        Ok(false)
    }

    /// After a duplicate-key insert and an update that changed nothing: whether the bucket at
    /// `copy_id` is this conversation's and holds at least the tail's events. A document of
    /// another conversation under that id (a 96-bit hash collision) is an error.
    async fn copy_is_complete(
        &self,
        copy_id: ObjectId,
        current: &Head,
        sender_id: &str,
    ) -> Result<bool> {
        let Some(document) = self
            .events
            .find_one(doc! { "_id": copy_id })
            .projection(doc! {
                bucket::SENDER_ID: 1, bucket::GENERATION: 1, bucket::COUNT: 1
            })
            .await
            .map_err(|e| from_driver("checking a bucket", e))?
        else {
            return Ok(false);
        };
        check_owner(&document, bucket::SENDER_ID, sender_id, "bucket")?;
        let same_generation =
            document.get(bucket::GENERATION) == Some(&Bson::ObjectId(current.generation));
        let count = document.get(bucket::COUNT).and_then(as_u64);
        Ok(same_generation && count.is_some_and(|count| count >= current.tail_count))
    }

    /// Appends the sealed buckets' events from seq `from` up to (not including) the head's
    /// tail to `out`.
    async fn read_buckets(
        &self,
        sender_id: &str,
        current: &Head,
        from: u64,
        out: &mut Vec<StoredEvent>,
    ) -> Result<Buckets> {
        let filter = doc! {
            bucket::SENDER_ID: sender_id,
            bucket::GENERATION: current.generation,
            bucket::LAST_SEQ: {
                "$gte": schema::to_i64(from)?,
                "$lt": schema::to_i64(current.tail_seq)?,
            },
        };
        let mut cursor = self
            .events
            .find(filter)
            .sort(doc! { bucket::LAST_SEQ: 1 })
            .await
            .map_err(|e| from_driver("reading a conversation's events", e))?;
        let mut next: Option<u64> = None;
        while let Some(mut document) = cursor
            .try_next()
            .await
            .map_err(|e| from_driver("reading a conversation's events", e))?
        {
            let first = get_u64(&document, bucket::FIRST_SEQ, sender_id, "bucket")?;
            let last = get_u64(&document, bucket::LAST_SEQ, sender_id, "bucket")?;
            let count = get_u64(&document, bucket::COUNT, sender_id, "bucket")?;
            let entries = match document.remove(bucket::EVENTS) {
                Some(Bson::Array(entries)) => entries,
                other => {
                    return Err(Error::corrupt(
                        sender_id,
                        Some(first),
                        format!("the bucket's `events` is {other:?}, not an array"),
                    ));
                }
            };
            if count == 0
                || first.checked_add(count - 1) != Some(last)
                || entries.len() as u64 != count
            {
                return Err(Error::corrupt(
                    sender_id,
                    Some(first),
                    format!(
                        "the bucket from {first} to {last} says {count} events and holds {}",
                        entries.len()
                    ),
                ));
            }
            let expected_first = next.unwrap_or(from);
            if next.map_or(first > from, |next| first != next) {
                return Ok(Buckets::Gap(format!(
                    "expected a bucket from event {expected_first}, found one from {first}"
                )));
            }
            take_events(out, entries, first, from, sender_id)?;
            next = Some(last + 1);
        }
        match next {
            Some(next) if next == current.tail_seq => Ok(Buckets::Complete),
            Some(next) => Ok(Buckets::Gap(format!(
                "the events from {next} to {} are missing",
                current.tail_seq - 1
            ))),
            None => Ok(Buckets::Gap(format!(
                "the events from {from} to {} are missing",
                current.tail_seq - 1
            ))),
        }
    }
}

/// Checks that a document found by derived `_id` belongs to `sender_id`; another sender id
/// means two ids hash alike (odds 2^-96 per pair), which this store refuses to mix.
fn check_owner(document: &Document, field: &str, sender_id: &str, what: &str) -> Result<()> {
    match document.get(field) {
        Some(Bson::String(owner)) if owner == sender_id => Ok(()),
        other => Err(Error::Backend {
            message: format!(
                "the {what} document with the id derived from sender id {sender_id:?} belongs \
                 to {other:?}: an id collision; this conversation cannot be stored"
            ),
            source: None,
        }),
    }
}

#[async_trait]
impl Store for MongoStore {
    fn name(&self) -> &str {
        "mongo"
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(MAX_EVENTS_PER_APPEND);
        capabilities.max_event_bytes = Some(MAX_APPEND_BYTES);
        capabilities.max_append_bytes = Some(MAX_APPEND_BYTES);
        capabilities.native_latest_session = true;
        capabilities
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        let sender_id = sender_id.as_str();
        let Some(document) = self
            .heads
            .find_one(doc! { "_id": schema::head_id(sender_id) })
            .projection(doc! { head::SENDER_ID: 1, head::VERSION: 1 })
            .await
            .map_err(|e| from_driver("reading a conversation's version", e))?
        else {
            return Ok(0);
        };
        check_owner(&document, head::SENDER_ID, sender_id, "head")?;
        get_u64(&document, head::VERSION, sender_id, "head")
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        let sender_id = append.sender_id().as_str();
        let expected = append.expected_version();
        let records = append.records();
        let bytes: usize = records.iter().map(schema::encoded_len).sum();
        if bytes > MAX_TAIL_BYTES {
            return Err(Error::invalid_input(format!(
                "an append of {} events takes about {bytes} bytes as BSON; a MongoDB document \
                 holds at most {MAX_TAIL_BYTES} bytes of events",
                records.len()
            )));
        }
        let entries: Vec<Bson> = records
            .iter()
            .map(schema::event_entry)
            .collect::<Result<_>>()?;

        // The common cases in one round trip: a new conversation is one insert, an append that
        // fits in the head's tail is one guarded update.
        let done = if expected == 0 {
            self.create(append, &entries, bytes).await?
        } else {
            self.push(append, &entries, bytes).await?
        };
        if done {
            return Ok(append.new_version());
        }
        for _ in 0..MAX_ATTEMPTS {
            let committed = match self.load_head(sender_id).await? {
                None if expected == 0 => self.create(append, &entries, bytes).await?,
                None => return Err(Error::conflict(sender_id, expected, 0)),
                Some(current) if current.version != expected => {
                    return Err(Error::conflict(sender_id, expected, current.version));
                }
                Some(current) => {
                    let fits = (current.tail_count as usize).saturating_add(records.len())
                        <= self.bucket_events
                        && (current.tail_bytes as usize).saturating_add(bytes) <= self.bucket_bytes;
                    if fits {
                        self.push(append, &entries, bytes).await?
                    } else {
                        self.roll_over(&current, append, &entries, bytes).await?
                    }
                }
            };
            if committed {
                return Ok(append.new_version());
            }
        }
        Err(Error::Unavailable {
            message: format!(
                "the append to {sender_id:?} lost {MAX_ATTEMPTS} races without a change of \
                 version (the conversation deleted and re-created repeatedly?); nothing was \
                 written"
            ),
            source: None,
        })
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let sender_id = sender_id.as_str();
        let mut last_gap = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut current) = self.load_head(sender_id).await? else {
                return Ok(None);
            };
            let from = match (scope, current.session) {
                (ReadScope::LatestSession, Some(session)) => session.saturating_sub(1).max(1),
                _ => 1,
            };
            let mut events = Vec::new();
            if from < current.tail_seq {
                match self
                    .read_buckets(sender_id, &current, from, &mut events)
                    .await?
                {
                    Buckets::Complete => {}
                    Buckets::Gap(message) => {
                        // Deleted (or deleted and re-created) since the head was read: start
                        // over. Otherwise the data is damaged.
                        match self.load_head(sender_id).await? {
                            None => return Ok(None),
                            Some(now) if now.generation != current.generation => {
                                last_gap = message;
                                continue;
                            }
                            Some(_) => return Err(Error::corrupt(sender_id, None, message)),
                        }
                    }
                }
            }
            let tail = std::mem::take(&mut current.tail);
            take_events(&mut events, tail, current.tail_seq, from, sender_id)?;
            return Ok(Some(StoredConversation {
                version: current.version,
                events,
            }));
        }
        Err(Error::Unavailable {
            message: format!("reading {sender_id:?} raced with {MAX_ATTEMPTS} deletes: {last_gap}"),
            source: None,
        })
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        if request.limit == 0 {
            return Err(Error::invalid_input("page size 0"));
        }
        let filter = match &request.cursor {
            Some(cursor) => doc! { head::SENDER_HEX: { "$gt": schema::sender_hex(cursor) } },
            None => doc! {},
        };
        let limit = i64::try_from(request.limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let documents: Vec<Document> = self
            .heads
            .find(filter)
            .sort(doc! { head::SENDER_HEX: 1 })
            .limit(limit)
            .projection(doc! { "_id": 0, head::SENDER_ID: 1 })
            .await
            .map_err(|e| from_driver("listing conversations", e))?
            .try_collect()
            .await
            .map_err(|e| from_driver("listing conversations", e))?;
        let mut sender_ids = Vec::with_capacity(documents.len());
        for document in &documents {
            match document.get(head::SENDER_ID) {
                Some(Bson::String(id)) => sender_ids.push(id.clone()),
                other => {
                    return Err(Error::corrupt(
                        format!("{other:?}"),
                        None,
                        "a head's `sender_id` is not a string",
                    ));
                }
            }
        }
        Ok(ListPage::from_lookahead(sender_ids, request.limit))
    }

    async fn delete(&self, sender_id: &SenderId) -> Result<bool> {
        let sender_id = sender_id.as_str();
        // One atomic step removes the conversation: its head. Its buckets are unreachable from
        // then on (a re-created conversation gets a new generation) and are removed next.
        let Some(removed) = self
            .heads
            .find_one_and_delete(doc! {
                "_id": schema::head_id(sender_id),
                head::SENDER_ID: sender_id,
            })
            .projection(doc! { head::GENERATION: 1 })
            .await
            .map_err(|e| from_driver("deleting a conversation", e))?
        else {
            return Ok(false);
        };
        if let Some(generation) = removed.get(head::GENERATION) {
            let cleanup = self
                .events
                .delete_many(doc! {
                    bucket::SENDER_ID: sender_id,
                    bucket::GENERATION: generation.clone(),
                })
                .await;
            if let Err(e) = cleanup {
                // The conversation is deleted all the same; its buckets are never read again.
                tracing::warn!(
                    error = %e,
                    sender_id,
                    "deleted a conversation but could not remove its buckets"
                );
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    //! The roll-over's guards, with the interleavings a race produces made deterministic: a
    //! writer holding a head it read earlier commits after others changed the conversation.

    use tracker_core::Event;

    use super::*;

    async fn store() -> Option<MongoStore> {
        let url = tracker_testkit::service_url(tracker_testkit::Service::Mongo).await?;
        let collection = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let config = MongoConfig::from_url(url.url)
            .with_db("tracker_mongo_test")
            .with_collection(collection)
            .with_bucket_size(4, 1 << 20);
        Some(MongoStore::connect(&config).await.expect("connect"))
    }

    async fn drop_collections(store: &MongoStore) {
        store.heads().drop().await.expect("drop heads");
        store.buckets().drop().await.expect("drop buckets");
    }

    fn append(sender: &str, version: u64, tag: &str, n: usize) -> Append {
        let events: Vec<Event> = (0..n)
            .map(|i| Event::bot(format!("{tag} {i}")).at(1_700_000_000.0 + i as f64))
            .collect();
        Append::new(SenderId::new(sender).expect("id"), version, &events).expect("append")
    }

    async fn entries_and_bytes(append: &Append) -> (Vec<Bson>, usize) {
        let entries = append
            .records()
            .iter()
            .map(schema::event_entry)
            .collect::<Result<Vec<_>>>()
            .expect("entries");
        let bytes = append.records().iter().map(schema::encoded_len).sum();
        (entries, bytes)
    }

    async fn texts(store: &MongoStore, sender: &str) -> Vec<String> {
        store
            .read(&SenderId::new(sender).expect("id"), ReadScope::All)
            .await
            .expect("read")
            .expect("exists")
            .events
            .into_iter()
            .map(|event| match event.data {
                EventData::Text(text) => text,
                EventData::Json(value) => value.to_string(),
            })
            .collect()
    }

    /// A roll-over prepared at version 3 must not commit after a push took the conversation
    /// to version 4 with the same tail start: the version guard stops it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roll_over_after_a_push_conflicts() {
        let Some(store) = store().await else {
            return;
        };
        store
            .append(&append("s", 0, "start", 3))
            .await
            .expect("create");
        let stale = store.load_head("s").await.expect("head").expect("exists");
        store
            .append(&append("s", 3, "pushed", 1))
            .await
            .expect("push");
        let before = texts(&store, "s").await;
        assert_eq!(before.len(), 4);

        let late = append("s", 3, "late", 3);
        let (entries, bytes) = entries_and_bytes(&late).await;
        let committed = store
            .roll_over(&stale, &late, &entries, bytes)
            .await
            .expect("roll over");
        assert!(!committed, "a stale roll-over must not commit");
        assert_eq!(texts(&store, "s").await, before, "nothing of it is visible");
        drop_collections(&store).await;
    }

    /// A roll-over prepared before the conversation was deleted and re-created must not
    /// commit into the new conversation (the generation guard), and removes its copy, which
    /// belongs to a generation that is gone for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roll_over_after_a_delete_conflicts_and_cleans_up() {
        let Some(store) = store().await else {
            return;
        };
        store
            .append(&append("s", 0, "old", 4))
            .await
            .expect("create");
        let stale = store.load_head("s").await.expect("head").expect("exists");
        let sender = SenderId::new("s").expect("id");
        assert!(store.delete(&sender).await.expect("delete"));
        store
            .append(&append("s", 0, "new", 4))
            .await
            .expect("re-create");
        let before = texts(&store, "s").await;

        let late = append("s", 4, "late", 2);
        let (entries, bytes) = entries_and_bytes(&late).await;
        let committed = store
            .roll_over(&stale, &late, &entries, bytes)
            .await
            .expect("roll over");
        assert!(
            !committed,
            "a roll-over of a deleted generation must not commit"
        );
        assert_eq!(texts(&store, "s").await, before);
        let copies = store
            .buckets()
            .count_documents(doc! { bucket::GENERATION: stale.generation })
            .await
            .expect("count");
        assert_eq!(copies, 0, "the dead generation's copy was removed");
        drop_collections(&store).await;
    }

    /// A roll-over prepared before the tail grew and was sealed finds the sealed bucket at
    /// its key and must not shorten it (copies only ever grow), nor commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_roll_over_never_shortens_a_sealed_bucket() {
        let Some(store) = store().await else {
            return;
        };
        store
            .append(&append("s", 0, "start", 2))
            .await
            .expect("create");
        let stale = store.load_head("s").await.expect("head").expect("exists");
        store
            .append(&append("s", 2, "more", 1))
            .await
            .expect("push");
        store
            .append(&append("s", 3, "seal", 2))
            .await
            .expect("seal 1..=3");
        let before = texts(&store, "s").await;
        assert_eq!(before.len(), 5);

        let late = append("s", 2, "late", 3);
        let (entries, bytes) = entries_and_bytes(&late).await;
        let committed = store
            .roll_over(&stale, &late, &entries, bytes)
            .await
            .expect("roll over");
        assert!(!committed);
        assert_eq!(
            texts(&store, "s").await,
            before,
            "the sealed bucket is intact"
        );
        drop_collections(&store).await;
    }

    /// Two roll-overs prepared at the same version: the first commits, the second does not,
    /// and the bucket both copied is complete and single.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_roll_overs_share_one_bucket() {
        let Some(store) = store().await else {
            return;
        };
        store
            .append(&append("s", 0, "start", 4))
            .await
            .expect("create");
        let head = store.load_head("s").await.expect("head").expect("exists");
        let first = append("s", 4, "first", 2);
        let second = append("s", 4, "second", 1);
        let (entries, bytes) = entries_and_bytes(&first).await;
        assert!(
            store
                .roll_over(&head, &first, &entries, bytes)
                .await
                .expect("first")
        );
        let (entries, bytes) = entries_and_bytes(&second).await;
        assert!(
            !store
                .roll_over(&head, &second, &entries, bytes)
                .await
                .expect("second")
        );
        assert_eq!(
            store
                .buckets()
                .count_documents(doc! {})
                .await
                .expect("count"),
            1
        );
        assert_eq!(texts(&store, "s").await.len(), 6);
        drop_collections(&store).await;
    }
}
