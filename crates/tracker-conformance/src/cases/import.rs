//! Copying whole conversations into a store ([`TrackerStore::import`]): batches that fit the
//! store's limits, resuming after an interruption, and refusing a different history.

use tracker_core::{ErrorKind, Event, ReadScope, Store};

use super::{fresh, read_all, session, texts, tracker_store};

/// A conversation of 286 events (more than one append may carry on a store with DynamoDB's
/// limits) is imported whole; one interrupted after part of it: importing it again writes only the rest, and a third import
/// writes nothing.
pub async fn import_resumes_after_an_interruption<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("import-resume");
    let mut events = session(1_700_000_000.0, 60, "first");
    events.extend(session(1_700_100_000.0, 10, "second"));
    let imported = store.import(&id, &events).await.expect("import");
    assert_eq!(imported.written, events.len() as u64);
    assert_eq!(imported.already_present, 0);
    assert_eq!(imported.version, events.len() as u64);
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), texts(&events));

    // An earlier run stopped after the first 37 events.
    let other = fresh("import-resume-partial");
    let stopped_at = 37;
    store
        .append(&other, 0, &events[..stopped_at])
        .await
        .expect("first part");
    let resumed = store.import(&other, &events).await.expect("resume");
    assert_eq!(resumed.already_present, stopped_at as u64);
    assert_eq!(resumed.written, (events.len() - stopped_at) as u64);
    let read = read_all(&store, &other).await;
    assert_eq!(texts(&read.events), texts(&events));
    let latest = store
        .read(&other, ReadScope::LatestSession)
        .await
        .expect("latest")
        .expect("exists");
    let second_session_starts = (3 + 60 * 4 + 1) as u64;
    assert_eq!(latest.first_seq, second_session_starts);
    let again = store.import(&other, &events).await.expect("again");
    assert_eq!(again.written, 0);
    assert_eq!(again.version, events.len() as u64);
}

/// A destination holding other events for the conversation is left unchanged, and the error
/// names the conversation and the first differing event.
pub async fn import_refuses_a_different_prefix<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("import-diverged");
    let events = session(1_700_000_000.0, 3, "source");
    let mut stored = events[..5].to_vec();
    stored[3] = Event::bot("someone else's reply").at(events[3].timestamp);
    store.append(&id, 0, &stored).await.expect("append");
    let error = store.import(&id, &events).await.expect_err("diverged");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error}");
    let message = error.to_string();
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("at event 4"), "{message}");
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), texts(&stored), "left unchanged");

    // A destination longer than the source is a difference too.
    let longer = fresh("import-longer");
    store.append(&longer, 0, &events).await.expect("append");
    let error = store
        .import(&longer, &events[..4])
        .await
        .expect_err("longer");
    assert_eq!(error.kind(), ErrorKind::Diverged, "{error}");
    assert!(error.to_string().contains("at event 5"), "{error}");
    assert_eq!(
        store.version(&longer).await.expect("version"),
        events.len() as u64
    );
}
