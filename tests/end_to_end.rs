//! A conversation driven the way Rasa's message processor drives a tracker store, with
//! several processes' worth of writers contending for it.

use std::sync::Arc;

use tracker_conformance::golden;
use tracker_core::{ErrorKind, Event, EventVerbosity, Tracker, TrackerStore};
use tracker_memory::MemoryStore;

/// One user turn as Rasa's processor produces it; a session start first on a new tracker.
fn turn(tracker: &mut Tracker, n: usize, t: f64) {
    if tracker.events().is_empty() {
        tracker.extend([
            Event::action("action_session_start").at(t),
            Event::session_started().at(t),
            Event::action("action_listen").at(t),
        ]);
    }
    tracker.extend([
        Event::user(format!("message {n}"), "inform", 0.9).at(t + 0.1),
        Event::slot("cuisine", format!("dish {n}")).at(t + 0.2),
        Event::action("utter_ask_num_people").at(t + 0.3),
        Event::bot("For how many people?").at(t + 0.4),
        Event::action("action_listen").at(t + 0.5),
    ]);
}

#[tokio::test]
async fn a_conversation_over_many_turns_and_sessions() {
    let store = TrackerStore::new(MemoryStore::new()).with_domain(golden::domain());
    let id = "end-to-end";
    for session in 0..3 {
        for n in 0..5 {
            let t = 1_700_000_000.0 + (session * 10_000 + n * 10) as f64;
            let mut tracker = store.get_or_create_tracker(id).await.expect("tracker");
            if session > 0 && n == 0 {
                // The session expired: carry the slots over, as action_session_start does.
                let carried: Vec<Event> = tracker
                    .applied_events()
                    .into_iter()
                    .filter(|e| e.type_name() == "slot")
                    .cloned()
                    .collect();
                tracker.update(Event::action("action_session_start").at(t));
                tracker.update(Event::session_started().at(t));
                tracker.extend(carried);
                tracker.update(Event::action("action_listen").at(t));
            }
            turn(&mut tracker, n, t);
            store.save(&mut tracker).await.expect("save");
            let again = store.save(&mut tracker).await.expect("save again");
            assert_eq!(again, tracker.version());
        }
    }
    let full = store
        .retrieve_full_tracker(id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(full.sessions().len(), 3);
    let latest = store.retrieve(id).await.expect("read").expect("exists");
    assert!(latest.events()[0].is_action("action_session_start"));
    assert_eq!(latest.slot("cuisine"), Some(&serde_json::json!("dish 4")));
    let state = latest.current_state(EventVerbosity::AfterRestart);
    assert_eq!(state["latest_message"]["text"], "message 4");
    assert_eq!(
        state["events"].as_array().expect("events").len(),
        latest.events().len()
    );
}

/// Writers that re-read and retry on Conflict never lose or duplicate an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_retrying_on_conflict_lose_nothing() {
    const WRITERS: usize = 16;
    const TURNS: usize = 20;
    let store = TrackerStore::new(MemoryStore::new());
    let id = "contended";
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut conflicts = 0;
            for turn in 0..TURNS {
                loop {
                    let mut tracker = store.get_or_create_full_tracker(id).await.expect("read");
                    tracker.update(Event::bot(format!("{writer}/{turn}")).at(1_700_000_000.0));
                    match store.save(&mut tracker).await {
                        Ok(_) => break,
                        Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let full = store
        .retrieve_full_tracker(id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(full.events().len(), WRITERS * TURNS);
    let mut texts: Vec<String> = full
        .events()
        .iter()
        .map(|e| e.to_value()["text"].as_str().expect("text").to_owned())
        .collect();
    // Each writer's own turns are in order, and every turn is there exactly once.
    for writer in 0..WRITERS {
        let own: Vec<usize> = texts
            .iter()
            .filter_map(|t| t.split_once('/'))
            .filter(|(w, _)| *w == writer.to_string())
            .map(|(_, n)| n.parse().expect("turn"))
            .collect();
        assert_eq!(own, (0..TURNS).collect::<Vec<_>>());
    }
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), WRITERS * TURNS);
}
