//! The suite must fail stores that break the contract: each broken store below violates one
//! rule, and the case that checks that rule must panic on it.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tracker_conformance::cases;
use tracker_core::{
    Append, Capabilities, ExpectedVersion, ListPage, ListRequest, ReadScope, Result, SenderId,
    Store, StoredConversation, async_trait,
};
use tracker_memory::MemoryStore;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Appends whatever the expected version.
    IgnoresExpectedVersion,
    /// Pages overlap: every page after the first repeats the previous page's last id.
    OverlappingPages,
    /// Latest-session reads start at `session_started`, dropping `action_session_start`.
    LatestSessionTooShort,
    /// `delete` reports success but keeps the conversation.
    DeleteKeepsData,
    /// Acknowledges appends over 1 KiB without storing them.
    DropsLargeEvents,
    /// Checks the expected version, then writes in a second step (check-then-act).
    CheckThenWrite,
    /// Acknowledges every 50th append without storing it.
    LosesSomeAppends,
    /// Compares sender ids case-insensitively, as a case-insensitive collation does.
    FoldsCase,
    /// Deletes whatever the expected version.
    DeleteIgnoresVersion,
    /// A batch is all or nothing as a whole: one conflict fails every append of it.
    BatchFailsTogether,
    /// A batch appends whatever the expected versions.
    BatchIgnoresVersions,
}

#[derive(Debug, Clone)]
struct Broken {
    inner: MemoryStore,
    fault: Fault,
    appends: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Broken {
    fn id(&self, sender_id: &SenderId) -> SenderId {
        if self.fault == Fault::FoldsCase {
            SenderId::new(sender_id.as_str().to_lowercase()).expect("a valid id")
        } else {
            sender_id.clone()
        }
    }

    /// The same events appended to another id at another expected version.
    fn rebased(append: &Append, sender_id: SenderId, expected: u64) -> Result<Append> {
        let events: Vec<tracker_core::Event> = append
            .records()
            .iter()
            .map(|r| tracker_core::Event::from_json(&r.json).expect("own json"))
            .collect();
        Append::new(sender_id, expected, &events)
    }
}

#[async_trait]
impl Store for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn outbox(&self) -> Option<&dyn tracker_core::outbox::Outbox> {
        None
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn version(&self, sender_id: &SenderId) -> Result<u64> {
        self.inner.version(&self.id(sender_id)).await
    }

    async fn append(&self, append: &Append) -> Result<u64> {
        if self.fault == Fault::DropsLargeEvents && append.json_bytes() > 1024 {
            return Ok(append.new_version());
        }
        let count = self
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fault {
            Fault::IgnoresExpectedVersion => {
                let current = self.inner.version(append.sender_id()).await?;
                let rebased = Self::rebased(append, append.sender_id().clone(), current)?;
                self.inner.append(&rebased).await
            }
            Fault::CheckThenWrite => {
                let current = self.inner.version(append.sender_id()).await?;
                if current != append.expected_version() {
                    return Err(tracker_core::Error::conflict(
                        append.sender_id().as_str(),
                        append.expected_version(),
                        current,
                    ));
                }
                tokio::task::yield_now().await;
                let current = self.inner.version(append.sender_id()).await?;
                let rebased = Self::rebased(append, append.sender_id().clone(), current)?;
                self.inner.append(&rebased).await?;
                Ok(append.new_version())
            }
            Fault::LosesSomeAppends if count % 50 == 49 => Ok(append.new_version()),
            Fault::FoldsCase => {
                let folded = self.id(append.sender_id());
                let rebased = Self::rebased(append, folded, append.expected_version())?;
                self.inner.append(&rebased).await
            }
            _ => self.inner.append(append).await,
        }
    }

    async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        let mut results = Vec::with_capacity(appends.len());
        match self.fault {
            Fault::BatchFailsTogether => {
                for append in appends {
                    let current = self.inner.version(append.sender_id()).await?;
                    if current != append.expected_version() {
                        let conflict = || {
                            tracker_core::Error::conflict(
                                append.sender_id().as_str(),
                                append.expected_version(),
                                current,
                            )
                        };
                        return Ok(appends.iter().map(|_| Err(conflict())).collect());
                    }
                }
                for append in appends {
                    results.push(self.inner.append(append).await);
                }
            }
            Fault::BatchIgnoresVersions => {
                for append in appends {
                    let current = self.inner.version(append.sender_id()).await?;
                    let rebased = Self::rebased(append, append.sender_id().clone(), current)?;
                    results.push(self.inner.append(&rebased).await);
                }
            }
            _ => {
                for append in appends {
                    results.push(self.append(append).await);
                }
            }
        }
        Ok(results)
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let read = self.inner.read(&self.id(sender_id), scope).await?;
        if self.fault == Fault::LatestSessionTooShort && scope == ReadScope::LatestSession {
            return Ok(read.map(|mut conversation| {
                if conversation.events.len() > 1 && conversation.events[0].seq > 1 {
                    conversation.events.remove(0);
                    conversation.events.remove(0);
                }
                conversation
            }));
        }
        Ok(read)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let mut page = self.inner.list(request).await?;
        if self.fault == Fault::OverlappingPages
            && let Some(cursor) = &request.cursor
        {
            page.sender_ids.insert(0, cursor.clone());
        }
        Ok(page)
    }

    async fn delete(&self, sender_id: &SenderId, expected: ExpectedVersion) -> Result<bool> {
        match self.fault {
            Fault::DeleteKeepsData => Ok(true),
            Fault::DeleteIgnoresVersion => {
                self.inner
                    .delete(&self.id(sender_id), ExpectedVersion::Any)
                    .await
            }
            _ => self.inner.delete(&self.id(sender_id), expected).await,
        }
    }
}

fn broken(fault: Fault) -> Broken {
    Broken {
        inner: MemoryStore::new(),
        fault,
        appends: Default::default(),
    }
}

async fn must_fail(what: &str, case: impl std::future::Future<Output = ()>) {
    let outcome = AssertUnwindSafe(case).catch_unwind().await;
    assert!(outcome.is_err(), "the suite did not catch: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicts_are_checked() {
    let store = broken(Fault::IgnoresExpectedVersion);
    must_fail(
        "stale appends accepted",
        cases::stale_version_conflicts(store.clone()),
    )
    .await;
    must_fail(
        "racing appends accepted",
        cases::concurrent_writers_one_wins(store),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_are_checked() {
    must_fail(
        "check-then-write appends",
        cases::race_on_one_conversation(broken(Fault::CheckThenWrite)),
    )
    .await;
    must_fail(
        "acknowledged appends lost under a race",
        cases::race_on_one_conversation(broken(Fault::LosesSomeAppends)),
    )
    .await;
    must_fail(
        "acknowledged appends lost on many conversations",
        cases::race_on_many_conversations(broken(Fault::LosesSomeAppends)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_talk_is_checked() {
    must_fail(
        "ids folded to lower case",
        cases::hostile_input_round_trips(broken(Fault::FoldsCase)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_is_checked() {
    must_fail(
        "overlapping pages",
        cases::list_pages_are_complete(broken(Fault::OverlappingPages)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_reads_are_checked() {
    must_fail(
        "latest session without action_session_start",
        cases::latest_session_and_full_reads(broken(Fault::LatestSessionTooShort)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_is_checked() {
    must_fail(
        "delete keeps data",
        cases::delete_then_read(broken(Fault::DeleteKeepsData)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_deletes_are_checked() {
    must_fail(
        "a stale delete deletes",
        cases::delete_at_a_stale_version_conflicts(broken(Fault::DeleteIgnoresVersion)),
    )
    .await;
    must_fail(
        "a delete at version 0 deletes an existing conversation",
        cases::delete_at_version_of_absent_conversations(broken(Fault::DeleteIgnoresVersion)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_writes_are_checked() {
    must_fail(
        "large event dropped",
        cases::large_event(broken(Fault::DropsLargeEvents)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_are_checked() {
    must_fail(
        "one conflict fails the whole batch",
        cases::append_batch_writes_each_conversation_alone(broken(Fault::BatchFailsTogether)),
    )
    .await;
    must_fail(
        "a batch ignores expected versions",
        cases::append_batch_writes_each_conversation_alone(broken(Fault::BatchIgnoresVersions)),
    )
    .await;
    must_fail(
        "a batched copy over a different history",
        cases::import_batch_copies_resumes_and_refuses(broken(Fault::BatchIgnoresVersions)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_store_passes_the_same_cases() {
    let store = MemoryStore::new();
    cases::stale_version_conflicts(store.clone()).await;
    cases::concurrent_writers_one_wins(store.clone()).await;
    cases::list_pages_are_complete(store.clone()).await;
    cases::latest_session_and_full_reads(store.clone()).await;
    cases::delete_then_read(store.clone()).await;
    cases::delete_at_a_stale_version_conflicts(store.clone()).await;
    cases::delete_at_version_of_absent_conversations(store.clone()).await;
    cases::large_event(store.clone()).await;
    cases::hostile_input_round_trips(store.clone()).await;
    cases::race_on_one_conversation(store.clone()).await;
    cases::race_on_many_conversations(store.clone()).await;
    cases::append_batch_writes_each_conversation_alone(store.clone()).await;
    cases::import_batch_copies_resumes_and_refuses(store).await;
}
