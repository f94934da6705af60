//! Appending to many conversations at once ([`TrackerStore::append_batch`], which calls
//! [`Store::append_batch`]) and the bulk copy on top of it ([`TrackerStore::import_batch`]).

use std::collections::HashSet;
use std::sync::Arc;

use tracker_core::{BatchAppend, Error, ErrorKind, Event, ReadScope, Store, TrackerStore};

use super::{fresh, read_all, session, texts};

/// A batch of 40 conversations: new ones of different lengths (some with two sessions),
/// existing ones at their version, one at a stale version, one expected to exist that does
/// not, one named twice and one with no events. Every right append is written whole, every
/// wrong one is that conversation's error alone and writes nothing, and reads, latest-session
/// reads and the listing see the batch exactly as single appends would have left it.
pub async fn append_batch_writes_each_conversation_alone<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let trackers = TrackerStore::from_arc(store.clone());
    let prefix = fresh("batch");
    let ids: Vec<String> = (0..40).map(|n| format!("{prefix}-{n:02}")).collect();
    // Conversations 30..38 exist before the batch, as does 38 (the stale one).
    let before: Vec<Vec<Event>> = (0..40)
        .map(|n| session(1_700_000_000.0 + n as f64, 1, &format!("before-{n}")))
        .collect();
    for n in 30..39 {
        trackers
            .append(&ids[n], 0, &before[n])
            .await
            .expect("existing conversation");
    }
    let stale = 38;
    trackers
        .append(
            &ids[stale],
            before[stale].len() as u64,
            &[Event::bot("a reply written meanwhile").at(1_700_000_100.0)],
        )
        .await
        .expect("a write the batch has not seen");
    let missing = 39;
    let added: Vec<Vec<Event>> = (0..40)
        .map(|n| {
            let mut events = session(1_700_001_000.0 + n as f64, 1 + n % 4, &format!("b-{n}"));
            if n % 5 == 0 {
                events.extend(session(1_700_050_000.0 + n as f64, 2, &format!("s-{n}")));
            }
            events
        })
        .collect();
    let mut batch: Vec<BatchAppend<'_>> = (0..40)
        .map(|n| BatchAppend {
            sender_id: &ids[n],
            expected_version: match n {
                30..39 => before[n].len() as u64,
                n if n == missing => 3,
                _ => 0,
            },
            events: &added[n],
        })
        .collect();
    let twice = BatchAppend {
        sender_id: &ids[0],
        expected_version: 0,
        events: &added[1],
    };
    let nothing = BatchAppend {
        sender_id: &ids[1],
        expected_version: 0,
        events: &[],
    };
    batch.push(twice);
    batch.push(nothing);

    let results = trackers.append_batch(&batch).await.expect("the batch");
    assert_eq!(results.len(), batch.len(), "one result per entry");
    for (n, result) in results.iter().enumerate().take(40) {
        match n {
            n if n == stale => match result {
                Err(error) => {
                    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
                    assert_eq!(error.current_version(), Some(before[n].len() as u64 + 1));
                }
                Ok(version) => panic!("a stale append was written (version {version})"),
            },
            n if n == missing => match result {
                Err(error) => {
                    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
                    assert_eq!(error.current_version(), Some(0));
                }
                Ok(version) => panic!("an append to a missing conversation: {version}"),
            },
            30..38 => assert_eq!(
                result.as_ref().ok(),
                Some(&((before[n].len() + added[n].len()) as u64)),
                "conversation {n}: {result:?}"
            ),
            _ => assert_eq!(
                result.as_ref().ok(),
                Some(&(added[n].len() as u64)),
                "conversation {n}: {result:?}"
            ),
        }
    }
    for (entry, what) in [(40, "a conversation named twice"), (41, "no events")] {
        match &results[entry] {
            Err(error) => assert_eq!(error.kind(), ErrorKind::InvalidInput, "{what}: {error}"),
            Ok(version) => panic!("{what} was written: {version}"),
        }
    }

    for n in 0..40 {
        let expected: Vec<Event> = match n {
            n if n == stale => {
                let mut events = before[n].clone();
                events.push(Event::bot("a reply written meanwhile").at(1_700_000_100.0));
                events
            }
            n if n == missing => {
                assert!(
                    trackers
                        .read(&ids[n], ReadScope::All)
                        .await
                        .expect("read")
                        .is_none(),
                    "nothing is written for a missing conversation"
                );
                continue;
            }
            30..38 => before[n].iter().chain(&added[n]).cloned().collect(),
            _ => added[n].clone(),
        };
        let read = read_all(&trackers, &ids[n]).await;
        assert_eq!(texts(&read.events), texts(&expected), "conversation {n}");
        assert_eq!(read.version, expected.len() as u64, "conversation {n}");
        let latest = trackers
            .read(&ids[n], ReadScope::LatestSession)
            .await
            .expect("latest session")
            .expect("exists");
        let session_start = expected
            .iter()
            .rposition(|event| event.name() == Some("action_session_start"))
            .expect("a session start") as u64
            + 1;
        assert_eq!(latest.first_seq, session_start, "conversation {n}");
    }
    let listed: HashSet<String> = trackers.keys().await.expect("keys").into_iter().collect();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            listed.contains(id),
            n != missing,
            "conversation {n} in the listing"
        );
    }

    // A batch appends again after itself, and an empty batch is nothing.
    let more = [Event::bot("again").at(1_700_090_000.0)];
    let again = trackers
        .append_batch(&[BatchAppend {
            sender_id: &ids[0],
            expected_version: added[0].len() as u64,
            events: &more,
        }])
        .await
        .expect("batch");
    assert_eq!(again[0].as_ref().ok(), Some(&(added[0].len() as u64 + 1)));
    assert!(trackers.append_batch(&[]).await.expect("empty").is_empty());
}

/// Many conversations copied at once: new ones (one longer than one append may carry on a
/// store with DynamoDB's limits), one an earlier run stopped part-way through (continued),
/// one already complete (nothing written), one that differs (`Diverged`, left unchanged)
/// and one named twice. A second run writes nothing.
pub async fn import_batch_copies_resumes_and_refuses<S: Store + 'static>(store: S) {
    let store = TrackerStore::new(store);
    let prefix = fresh("import-batch");
    let ids: Vec<String> = (0..24).map(|n| format!("{prefix}-{n:02}")).collect();
    let mut sources: Vec<Vec<Event>> = (0..24)
        .map(|n| session(1_700_000_000.0 + n as f64, 1 + n % 3, &format!("i-{n}")))
        .collect();
    let long = 0;
    sources[long] = session(1_700_000_000.0, 60, "first");
    sources[long].extend(session(1_700_100_000.0, 10, "second"));
    let (partial, complete, diverged) = (1, 2, 3);
    store
        .append(&ids[partial], 0, &sources[partial][..3])
        .await
        .expect("an interrupted copy");
    store
        .append(&ids[complete], 0, &sources[complete])
        .await
        .expect("a finished copy");
    let mut other = sources[diverged].clone();
    other[2] = Event::bot("someone else's").at(other[2].timestamp);
    store
        .append(&ids[diverged], 0, &other)
        .await
        .expect("other events");

    let mut conversations: Vec<(&str, &[Event])> = ids
        .iter()
        .zip(&sources)
        .map(|(id, events)| (id.as_str(), events.as_slice()))
        .collect();
    conversations.push((ids[5].as_str(), sources[6].as_slice()));
    let results = store.import_batch(&conversations).await;
    assert_eq!(results.len(), conversations.len());
    for (n, result) in results.iter().enumerate().take(24) {
        match n {
            n if n == diverged => {
                failed_with(result, ErrorKind::Diverged, "diverged");
                let read = read_all(&store, &ids[n]).await;
                assert_eq!(texts(&read.events), texts(&other), "left unchanged");
                continue;
            }
            n => {
                let imported = result.as_ref().expect("imported");
                let present = match n {
                    n if n == partial => 3,
                    n if n == complete => sources[n].len() as u64,
                    _ => 0,
                };
                assert_eq!(imported.already_present, present, "conversation {n}");
                assert_eq!(
                    imported.written,
                    sources[n].len() as u64 - present,
                    "conversation {n}"
                );
                assert_eq!(imported.version, sources[n].len() as u64);
            }
        }
        let read = read_all(&store, &ids[n]).await;
        assert_eq!(texts(&read.events), texts(&sources[n]), "conversation {n}");
    }
    failed_with(
        &results[24],
        ErrorKind::InvalidInput,
        "a conversation named twice",
    );

    let again = store.import_batch(&conversations[..24]).await;
    for (n, result) in again.iter().enumerate() {
        if n == diverged {
            failed_with(result, ErrorKind::Diverged, "diverged");
        } else {
            let imported = result.as_ref().expect("imported again");
            assert_eq!(imported.written, 0, "conversation {n}");
        }
    }
}

/// Asserts that one entry of a batch failed with `kind`.
fn failed_with<T: std::fmt::Debug>(result: &Result<T, Error>, kind: ErrorKind, what: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), kind, "{what}: got {error}"),
        Ok(value) => panic!("{what}: expected a {kind:?} error, got Ok({value:?})"),
    }
}
