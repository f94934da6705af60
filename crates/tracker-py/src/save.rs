//! Writing a Rasa tracker's new events: at the version the tracker was read at, after another
//! writer's events when one came first, and never twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracker_store::{Error, ErrorKind, Event, ReadScope, Result, TrackerStore};

/// Most conflicts one save resolves before giving up (each one means another writer appended
/// to the same conversation in the few milliseconds between two attempts).
const MAX_CONFLICTS: u32 = 32;

/// First pause before retrying a temporary failure; doubled up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The outcome of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The conversation's version after the save.
    pub version: u64,
    /// Sequence number of the first event this save wrote (`version + 1` when it wrote none).
    pub first_seq: u64,
    /// Indexes, into the events given, of the events written, in the order written.
    pub written: Vec<usize>,
    /// When another writer had appended first: the version the tracker was read at and the
    /// version the events were appended at instead.
    pub moved: Option<(u64, u64)>,
    /// Whether an attempt whose outcome was unknown (a timeout) turned out to have written
    /// the events, so that the retry did not write them again (`written` still lists them).
    pub recovered: bool,
}

/// How long temporary failures ([`ErrorKind::Unavailable`]) are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total time allowed; zero retries nothing.
    pub budget: Duration,
}

impl RetryPolicy {
    /// The pause before the next attempt, if the budget allows one.
    fn next_delay(&self, started: Instant, delay: &mut Duration) -> Option<Duration> {
        let wait = *delay;
        if started.elapsed() + wait > self.budget {
            return None;
        }
        *delay = (*delay * 2).min(MAX_DELAY);
        Some(wait)
    }
}

/// Runs a read-only operation, retrying temporary failures within the policy's budget.
pub async fn with_retry<T, F, Fut>(policy: RetryPolicy, mut operation: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match operation().await {
            Err(error) if error.is_temporary() => match policy.next_delay(started, &mut delay) {
                Some(wait) => {
                    tracing::warn!(error = %error, "retrying after a temporary failure");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(error),
            },
            other => return other,
        }
    }
}

/// Appends `events` — the events a tracker gained since it was read at `expected_version` —
/// to the conversation.
///
/// When another writer appended first (a [`ErrorKind::Conflict`]), the events are appended
/// after the other writer's, at the version found: nothing is dropped. Temporary failures are
/// retried within `policy`; since a timed-out append may have been applied, a conflict after
/// one checks whether the events are already stored there, so nothing is written twice.
///
/// # Errors
/// Whatever the store returns that is neither a conflict nor a temporary failure within the
/// budget; [`ErrorKind::Backend`] after [`MAX_CONFLICTS`] conflicts in a row.
pub async fn append_new(
    store: &TrackerStore,
    sender_id: &str,
    expected_version: u64,
    events: &[Event],
    policy: RetryPolicy,
) -> Result<Saved> {
    if events.is_empty() {
        return Ok(Saved {
            version: expected_version,
            first_seq: expected_version + 1,
            written: Vec::new(),
            moved: None,
            recovered: false,
        });
    }
    let count = events.len() as u64;
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut expected = expected_version;
    let mut conflicts = 0;
    // Versions at which an append may have been applied without our knowing.
    let mut uncertain: Vec<u64> = Vec::new();
    loop {
        match store.append(sender_id, expected, events).await {
            Ok(version) => {
                return Ok(Saved {
                    version,
                    first_seq: version + 1 - count,
                    written: (0..events.len()).collect(),
                    moved: (expected != expected_version).then_some((expected_version, expected)),
                    recovered: false,
                });
            }
            Err(error) if error.kind() == ErrorKind::Conflict => {
                let actual = error.current_version().unwrap_or(expected);
                for &at in &uncertain {
                    if actual >= at + count && stored_at(store, sender_id, at, events).await? {
                        return Ok(Saved {
                            version: at + count,
                            first_seq: at + 1,
                            written: (0..events.len()).collect(),
                            moved: (at != expected_version).then_some((expected_version, at)),
                            recovered: true,
                        });
                    }
                }
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(Error::backend(format!(
                        "conversation {sender_id:?} changed under {MAX_CONFLICTS} attempts in a \
                         row to append {count} events; giving up"
                    )));
                }
                tracing::warn!(
                    sender_id,
                    expected,
                    actual,
                    "another writer appended first; appending after its events"
                );
                expected = actual;
            }
            Err(error) if error.is_temporary() => match policy.next_delay(started, &mut delay) {
                Some(wait) => {
                    tracing::warn!(sender_id, error = %error, "retrying an append after a temporary failure");
                    uncertain.push(expected);
                    tokio::time::sleep(wait).await;
                }
                None => return Err(error),
            },
            Err(error) => return Err(error),
        }
    }
}

/// Whether the conversation holds exactly `events` from sequence number `at + 1` on.
async fn stored_at(
    store: &TrackerStore,
    sender_id: &str,
    at: u64,
    events: &[Event],
) -> Result<bool> {
    let mut conversation = store.read(sender_id, ReadScope::LatestSession).await?;
    if conversation
        .as_ref()
        .is_some_and(|conversation| conversation.first_seq > at + 1)
    {
        conversation = store.read(sender_id, ReadScope::All).await?;
    }
    let Some(conversation) = conversation else {
        return Ok(false);
    };
    let Some(start) = (at + 1).checked_sub(conversation.first_seq) else {
        return Ok(false);
    };
    let stored = conversation.events.iter().skip(start as usize);
    let same = stored.clone().count() >= events.len()
        && stored
            .zip(events)
            .all(|(stored, ours)| stored.to_rasa_json() == ours.to_rasa_json());
    Ok(same)
}

/// Saves a tracker whose reading is unknown (built by hand, or sent whole through Rasa's HTTP
/// API): appends, in order, those of its events the conversation does not hold yet (compared
/// by their JSON, timestamps included), as Rasa's Redis store merges.
///
/// # Errors
/// As [`append_new`].
pub async fn merge(
    store: &TrackerStore,
    sender_id: &str,
    events: &[Event],
    policy: RetryPolicy,
) -> Result<Saved> {
    let mut conflicts = 0;
    loop {
        let stored = with_retry(policy, || store.read(sender_id, ReadScope::All)).await?;
        let (version, known): (u64, HashSet<String>) = match stored {
            Some(conversation) => (
                conversation.version,
                conversation
                    .events
                    .iter()
                    .map(Event::to_rasa_json)
                    .collect(),
            ),
            None => (0, HashSet::new()),
        };
        let mut seen = known;
        let new: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, event)| seen.insert(event.to_rasa_json()))
            .map(|(index, _)| index)
            .collect();
        if new.is_empty() {
            return Ok(Saved {
                version,
                first_seq: version + 1,
                written: new,
                moved: None,
                recovered: false,
            });
        }
        let batch: Vec<Event> = new.iter().map(|&index| events[index].clone()).collect();
        match store.append(sender_id, version, &batch).await {
            Ok(new_version) => {
                return Ok(Saved {
                    version: new_version,
                    first_seq: version + 1,
                    written: new,
                    moved: None,
                    recovered: false,
                });
            }
            // Read again: the other writer's events may include some of these.
            Err(error) if error.kind() == ErrorKind::Conflict && conflicts < MAX_CONFLICTS => {
                conflicts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_store::memory::MemoryStore;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_secs(1),
        }
    }

    fn events(texts: &[&str]) -> Vec<Event> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| Event::bot(*text).at(1_700_000_000.0 + i as f64))
            .collect()
    }

    #[tokio::test]
    async fn a_conflict_appends_after_the_other_writer() {
        let store = TrackerStore::new(MemoryStore::new());
        store.append("a", 0, &events(&["x"])).await.expect("first");
        // A second writer read version 1 and appended two events.
        store
            .append("a", 1, &events(&["o1", "o2"]))
            .await
            .expect("other");
        // We read version 1 too and now save one event.
        let ours = events(&["ours"]);
        let saved = append_new(&store, "a", 1, &ours, policy())
            .await
            .expect("save");
        assert_eq!(saved.version, 4);
        assert_eq!(saved.first_seq, 4);
        assert_eq!(saved.moved, Some((1, 3)));
        let all = store
            .read("a", ReadScope::All)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(all.events.len(), 4);
        assert_eq!(all.events[3], ours[0]);
    }

    #[tokio::test]
    async fn merge_writes_only_what_is_missing() {
        let store = TrackerStore::new(MemoryStore::new());
        let all = events(&["a", "b", "c", "d"]);
        store.append("m", 0, &all[..2]).await.expect("first");
        let saved = merge(&store, "m", &all, policy()).await.expect("merge");
        assert_eq!(saved.written, vec![2, 3]);
        assert_eq!(saved.version, 4);
        let again = merge(&store, "m", &all, policy())
            .await
            .expect("merge again");
        assert!(again.written.is_empty());
        assert_eq!(again.version, 4);
    }

    #[tokio::test]
    async fn stored_at_recognises_an_applied_append() {
        let store = TrackerStore::new(MemoryStore::new());
        let ours = events(&["p", "q"]);
        store.append("s", 0, &events(&["z"])).await.expect("first");
        store.append("s", 1, &ours).await.expect("ours");
        assert!(stored_at(&store, "s", 1, &ours).await.expect("check"));
        assert!(!stored_at(&store, "s", 0, &ours).await.expect("check"));
        assert!(!stored_at(&store, "s", 2, &ours).await.expect("check"));
    }
}
