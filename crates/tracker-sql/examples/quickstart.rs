//! Stores a short conversation the way Rasa's message processor does (a session start, then
//! one save per turn), reads it back and prints the transcript and Rasa's tracker state.
//!
//! The conversation is stored in SQLite, in `rasa.db` in the current directory (Rasa's
//! default), so a second run finds it there. Run with
//! `cargo run -p tracker-sql --example quickstart`.

use tracker_sql::tracker_core::{
    Domain, Event, EventKind, EventVerbosity, Result, SlotDefinition, TrackerStore,
};
use tracker_sql::{SqlConfig, SqlStore};

#[tokio::main]
async fn main() -> Result<()> {
    // The domain's slots seed every tracker, as in Rasa.
    let domain = Domain::with_slots(
        [SlotDefinition {
            name: "num_people".into(),
            initial_value: serde_json::Value::Null,
        }],
        false,
    );
    let sql = SqlStore::connect(&SqlConfig::default()).await?;
    let store = TrackerStore::new(sql).with_domain(domain);
    let sender = "alice";
    if store.delete(sender).await? {
        println!("deleted {sender:?} from an earlier run");
    }

    // First message: a new conversation starts with a session.
    let mut tracker = store.get_or_create_tracker(sender).await?;
    tracker.extend([
        Event::action("action_session_start"),
        Event::session_started(),
        Event::action("action_listen"),
        Event::user("hi!", "greet", 0.98),
        Event::action("utter_greet"),
        Event::bot("Hey! How can I help you?"),
        Event::action("action_listen"),
    ]);
    let version = store.save(&mut tracker).await?;
    println!("saved turn 1: conversation {sender:?} is at version {version}");

    // Second message: read the latest session, add the turn, save only what is new.
    let mut tracker = store.retrieve(sender).await?.expect("stored above");
    tracker.extend([
        Event::user("a table for two, please", "request_restaurant", 0.91),
        Event::slot("num_people", 2),
        Event::action("utter_submit"),
        Event::bot("All done!"),
        Event::action("action_listen"),
    ]);
    let version = store.save(&mut tracker).await?;
    println!("saved turn 2: version {version}");

    // Saving again writes nothing: the tracker knows what is stored.
    assert_eq!(store.save(&mut tracker).await?, version);

    let tracker = store
        .retrieve_full_tracker(sender)
        .await?
        .expect("stored above");
    println!(
        "\ntranscript of {sender:?} ({} events):",
        tracker.events().len()
    );
    for event in tracker.events() {
        match &event.kind {
            EventKind::UserUttered(user) => println!(
                "  user: {} [{}]",
                user.text.as_deref().unwrap_or(""),
                user.intent_name().unwrap_or("?")
            ),
            EventKind::BotUttered { text, .. } => {
                println!("  bot:  {}", text.as_deref().unwrap_or(""));
            }
            _ => {}
        }
    }
    println!(
        "\nGET /conversations/{sender}/tracker would return:\n{}",
        serde_json::to_string_pretty(&tracker.current_state(EventVerbosity::None))
            .expect("a JSON value always serialises")
    );
    Ok(())
}
