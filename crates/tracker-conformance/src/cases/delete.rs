//! Deletes that name the version the caller read ([`TrackerStore::delete_at`]): a stale
//! delete conflicts and deletes nothing.

use tracker_core::{ErrorKind, Store};

use super::{expect_kind, fresh, read_all, session, texts, tracker_store};

/// A delete at the version the caller read deletes; at an older one (another writer appended
/// since) it is a `Conflict` carrying the current version and deletes nothing.
pub async fn delete_at_a_stale_version_conflicts<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("delete-stale");
    let events = session(1_700_000_000.0, 2, "d");
    store.append(&id, 0, &events[..4]).await.expect("append");
    // Another writer appends after the caller read version 4.
    store.append(&id, 4, &events[4..]).await.expect("append");
    let error = store.delete_at(&id, 4).await.expect_err("stale delete");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(events.len() as u64));
    let read = read_all(&store, &id).await;
    assert_eq!(texts(&read.events), texts(&events), "nothing deleted");
    expect_kind(
        store.delete_at(&id, 99).await,
        ErrorKind::Conflict,
        "a delete at a version the conversation never had",
    );
    assert!(
        store
            .delete_at(&id, events.len() as u64)
            .await
            .expect("delete at the current version")
    );
    assert_eq!(store.version(&id).await.expect("version"), 0);
}

/// A delete at version 0 of a conversation that does not exist deletes nothing and succeeds;
/// at version 0 of one that exists it conflicts; at a version of one that is gone it
/// conflicts with version 0.
pub async fn delete_at_version_of_absent_conversations<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let id = fresh("delete-absent");
    assert!(!store.delete_at(&id, 0).await.expect("absent at 0"));
    let error = store.delete_at(&id, 3).await.expect_err("absent at 3");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(0));
    let events = session(1_700_000_000.0, 1, "d");
    store.append(&id, 0, &events).await.expect("append");
    let error = store.delete_at(&id, 0).await.expect_err("exists at 0");
    assert_eq!(error.current_version(), Some(events.len() as u64));
    assert_eq!(
        store.version(&id).await.expect("version"),
        events.len() as u64
    );
}
