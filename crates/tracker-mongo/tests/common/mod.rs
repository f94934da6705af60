//! Test stores: each in its own collections of the database `tracker_mongo_test` on the
//! server of `TRACKER_TEST_MONGO_URL` (else a container, else a loud skip), removed when the
//! store is dropped, so cases can run in parallel and leave nothing behind.

#![allow(dead_code)]

use std::io::Write;
use std::ops::Deref;
use std::time::Duration;

use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use tracker_core::{
    Append, Capabilities, Event, ExpectedVersion, ListPage, ListRequest, ReadScope, Result,
    SenderId, Store, StoredConversation, TrackerStore, async_trait,
};
use tracker_mongo::mongodb::bson::oid::ObjectId;
use tracker_mongo::mongodb::bson::{Bson, Document, doc};
use tracker_mongo::mongodb::options::ClientOptions;
use tracker_mongo::mongodb::{Client, Collection, Database};
use tracker_mongo::schema::{self, bucket};
use tracker_mongo::{MongoConfig, MongoStore};
use tracker_testkit::{Service, service_url};

/// The database every test store lives in.
pub const TEST_DB: &str = "tracker_mongo_test";

/// Set to `1` to require the cases that need a real MongoDB (they fail on a stand-in).
pub const REAL_ENV: &str = "TRACKER_TEST_MONGO_REAL";

/// A store in fresh collections, dropped (with a scratch collection of the same name for Rasa
/// documents) when the store is dropped.
#[derive(Debug)]
pub struct TestStore {
    store: MongoStore,
    url: String,
}

impl Deref for TestStore {
    type Target = MongoStore;

    fn deref(&self) -> &MongoStore {
        &self.store
    }
}

impl TestStore {
    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let url = self.url.clone();
        let base = self.store.collection_name().to_owned();
        // The test's runtime may be shutting down: clean up on a runtime of our own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut options) = ClientOptions::parse(url.as_str()).await else {
                    return;
                };
                options.server_selection_timeout = Some(Duration::from_secs(5));
                let Ok(client) = Client::with_options(options) else {
                    return;
                };
                let database = client.database(TEST_DB);
                for suffix in ["", ".heads", ".events", ".probe"] {
                    let _ = database
                        .collection::<Document>(&format!("{base}{suffix}"))
                        .drop()
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[async_trait]
impl Store for TestStore {
    fn name(&self) -> &str {
        self.store.name()
    }

    fn outbox(&self) -> Option<&dyn tracker_core::outbox::Outbox> {
        self.store.outbox()
    }

    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        self.store.version(sender_id).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        self.store.append(append).await
    }

    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        self.store.append_batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        self.store.read(sender_id, scope).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.store.list(request).await
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        self.store.delete(sender_id, expected).await
    }
}

/// A fresh collection name.
pub fn fresh_collection() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// The test server's URL, or `None` after a loud skip.
pub async fn url() -> Option<String> {
    service_url(Service::Mongo).await.map(|url| url.url)
}

/// A store with the default bucket sizes.
pub async fn store() -> Option<TestStore> {
    store_with(|config| config).await
}

/// A store whose heads keep at most 3 events (and 2 KiB), so nearly every append seals a
/// bucket: the roll-over paths get the whole conformance suite.
pub async fn small_buckets() -> Option<TestStore> {
    store_with(|config| config.with_bucket_size(3, 2048)).await
}

/// A store in fresh collections with a configuration changed by `configure`.
pub async fn store_with(configure: impl FnOnce(MongoConfig) -> MongoConfig) -> Option<TestStore> {
    let url = url().await?;
    let config = configure(
        MongoConfig::from_url(url.clone())
            .with_db(TEST_DB)
            .with_collection(fresh_collection()),
    );
    let store = MongoStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e:?}", config.display_url()));
    Some(TestStore { store, url })
}

/// The test database on `store`'s client.
pub fn database(store: &MongoStore) -> Database {
    store.client().database(TEST_DB)
}

/// Whether the server keeps BSON number types (a real MongoDB does; the CongoDB stand-in
/// turns `1.0` into `1` and 64-bit integers into 32-bit ones or doubles). When it does not,
/// prints (past the test harness's capture) that `case` was not run, and returns false — or
/// panics when `TRACKER_TEST_MONGO_REAL=1` demands a real server.
pub async fn real_server(store: &MongoStore, case: &str) -> bool {
    let probe = store
        .database()
        .collection::<Document>(&format!("{}.probe", store.collection_name()));
    let id = ObjectId::new();
    probe
        .insert_one(doc! { "_id": id, "double": 1.0, "long": 1_i64 })
        .await
        .expect("probe insert");
    let back = probe
        .find_one(doc! { "_id": id })
        .await
        .expect("probe read")
        .expect("probe document");
    let _ = probe.drop().await;
    let real = matches!(back.get("double"), Some(Bson::Double(_)))
        && matches!(back.get("long"), Some(Bson::Int64(_)));
    if real {
        return true;
    }
    let line = format!(
        "NOT RUN {case}: needs a real MongoDB (this server turns BSON 1.0 into {:?} and a \
         64-bit 1 into {:?}, as the CongoDB stand-in does); point TRACKER_TEST_MONGO_URL at a \
         real server to run it",
        back.get("double"),
        back.get("long"),
    );
    if std::env::var(REAL_ENV).is_ok_and(|value| value.trim() == "1") {
        panic!("{REAL_ENV}=1: {line}");
    }
    // Straight to the process's stderr, so the line shows although the test passes.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    false
}

/// A sender id.
pub fn id(text: &str) -> SenderId {
    SenderId::new(text).expect("valid sender id")
}

/// `n` bot events with distinct texts.
pub fn bots(tag: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::bot(format!("{tag} {i}")).at(1_700_000_000.0 + i as f64))
        .collect()
}

/// The events as Rasa's JSON text.
pub fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_rasa_json).collect()
}

/// Appends `events` at `version` through the store itself, and returns the new version.
pub async fn append(store: &MongoStore, sender: &str, version: u64, events: &[Event]) -> u64 {
    store
        .append(&Append::new(id(sender), version, events).expect("valid append"))
        .await
        .expect("append")
}

/// Reads a conversation through the Rasa-facing API, as Rasa's JSON text.
pub async fn read_texts(store: &MongoStore, sender: &str, scope: ReadScope) -> Option<Vec<String>> {
    let conversation = TrackerStore::new(store.clone())
        .read(sender, scope)
        .await
        .expect("read")?;
    Some(texts(&conversation.events))
}

/// The head document of a conversation that exists.
pub async fn head_document(store: &MongoStore, sender: &str) -> Document {
    store
        .heads()
        .find_one(doc! { "_id": schema::head_id(sender) })
        .await
        .expect("read head")
        .expect("head exists")
}

/// The bucket documents of a conversation (every generation), by first event.
pub async fn buckets_of(store: &MongoStore, sender: &str) -> Vec<Document> {
    store
        .buckets()
        .find(doc! { bucket::SENDER_ID: sender })
        .sort(doc! { bucket::FIRST_SEQ: 1 })
        .await
        .expect("find buckets")
        .try_collect()
        .await
        .expect("read buckets")
}

/// Every document of `collection`, in insertion order (by `_id`).
pub async fn documents<T>(collection: &Collection<T>) -> Vec<T>
where
    T: DeserializeOwned + Send + Sync,
{
    collection
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read")
}

/// A counter field of a document, read as the store reads it.
pub fn number(document: &Document, field: &str) -> u64 {
    document
        .get(field)
        .and_then(schema::as_u64)
        .unwrap_or_else(|| panic!("{field} in {document}"))
}
