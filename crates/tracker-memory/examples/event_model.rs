//! What the event model costs: CPU instructions per saved and per read event, and the time
//! the in-memory store takes to return the latest session (50 events) of a 1,000-event
//! conversation. No server and no I/O: this is the floor under every backend's reads and
//! saves.
//!
//! ```sh
//! cargo run --release -p tracker-memory --example event_model
//! ```
//!
//! prints the timings; with `valgrind` installed it also runs itself under callgrind, once per
//! phase, and prints the instructions counted inside that phase only (repeatable from run to
//! run, unlike timings on a shared machine). `--no-valgrind` skips that.
//!
//! The events are the ones `tracker-bench` appends: per turn a user message with a full NLU
//! result (intent ranking, entities, response selector), the predicted action, the bot's
//! answer and `action_listen`.

use std::hint::black_box;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde_json::json;
use tracker_memory::MemoryStore;
use tracker_memory::tracker_core::{
    Append, Conversation, Event, ReadScope, SenderId, Store, StoredConversation, Tracker,
    TrackerStore,
};

/// Runs a future of the in-memory store, which never waits.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// `action_session_start`, `session_started`, `action_listen` at `t`.
fn session_start(t: f64) -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.001),
        Event::action("action_listen").at(t + 0.002),
    ]
}

/// One turn of 4 events, as `tracker-bench` writes it.
fn turn(n: usize, t: f64) -> Vec<Event> {
    let intents = [
        "greet",
        "goodbye",
        "affirm",
        "deny",
        "inform",
        "request_restaurant",
        "chitchat",
        "thankyou",
        "out_of_scope",
        "restart",
    ];
    let ranking: Vec<_> = intents
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"name": name, "confidence": 0.9 / (i as f64 + 1.0)}))
        .collect();
    let text = format!(
        "I would like a table for {} people in Berlin, turn {n}",
        n % 8 + 1
    );
    let user = json!({
        "event": "user", "timestamp": t,
        "metadata": {"model_id": "5f2c1d7e9b3a4c8d8e6f0a1b2c3d4e5f", "assistant_id": "bench"},
        "text": text,
        "parse_data": {
            "intent": {"name": "inform", "confidence": 0.93},
            "entities": [
                {"entity": "number", "start": 26, "end": 27, "value": n % 8 + 1, "extractor": "DIETClassifier", "confidence_entity": 0.99},
                {"entity": "location", "start": 38, "end": 44, "value": "berlin", "extractor": "DIETClassifier", "confidence_entity": 0.97}
            ],
            "text": text,
            "message_id": format!("m{n:08}"),
            "metadata": {},
            "text_tokens": [[0, 1], [2, 7], [8, 12], [13, 17], [18, 23], [24, 27]],
            "intent_ranking": ranking,
            "response_selector": {"all_retrieval_intents": [], "default": {"response": {"responses": null, "confidence": 0.0, "intent_response_key": null, "utter_action": "utter_None"}, "ranking": []}}
        },
        "input_channel": "rest",
        "message_id": format!("m{n:08}")
    });
    let action = json!({"event": "action", "timestamp": t + 0.05, "name": "utter_ask_num_people",
        "policy": "TEDPolicy", "confidence": 0.97, "action_text": null, "hide_rule_turn": false});
    let bot = json!({"event": "bot", "timestamp": t + 0.06, "metadata": {"utter_action": "utter_ask_num_people"},
        "text": "For how many people?", "data": {"buttons": null, "quick_replies": null}});
    [user, action, bot]
        .into_iter()
        .map(|value| Event::from_value(value).expect("a valid event"))
        .chain([Event::action("action_listen").at(t + 0.07)])
        .collect()
}

/// A conversation of 1,000 events whose latest session has 50 (`tracker-bench`'s read
/// scenario).
fn long_conversation() -> Vec<Event> {
    let mut events = session_start(1_600_000_000.0);
    let mut n = 0;
    while events.len() < 944 {
        events.extend(turn(n, 1_600_000_001.0 + n as f64));
        n += 1;
    }
    while events.len() < 950 {
        events.push(Event::bot("filler").at(1_600_100_000.0));
    }
    events.extend(session_start(1_700_000_000.0));
    while events.len() < 997 {
        events.extend(turn(n, 1_700_000_001.0 + n as f64));
        n += 1;
    }
    while events.len() < 1_000 {
        events.push(Event::bot("filler").at(1_700_100_000.0));
    }
    events
}

const SENDER: &str = "reader";
const LATEST_SESSION_EVENTS: usize = 50;

/// Saving: events → a validated append carrying each event's Rasa JSON text.
#[inline(never)]
fn measure_save(events: &[Event]) -> Append {
    let id = SenderId::new(SENDER).expect("a valid sender id");
    Append::new(id, 0, events).expect("a valid append")
}

/// Parsing only: stored texts → events.
#[inline(never)]
fn measure_parse(texts: &[String]) -> Vec<Event> {
    texts
        .iter()
        .map(|text| Event::from_json(text).expect("a stored event"))
        .collect()
}

/// The memory store's read alone: stored texts out, nothing parsed.
#[inline(never)]
fn measure_store_read(store: &MemoryStore, id: &SenderId) -> StoredConversation {
    ready(store.read(id, ReadScope::LatestSession))
        .expect("read")
        .expect("stored")
}

/// `TrackerStore::read`: the latest session read and parsed into events.
#[inline(never)]
fn measure_read(store: &TrackerStore) -> Conversation {
    ready(store.read(SENDER, ReadScope::LatestSession))
        .expect("read")
        .expect("stored")
}

/// `TrackerStore::retrieve`: the latest session's tracker, its state rebuilt.
#[inline(never)]
fn measure_retrieve(store: &TrackerStore) -> Tracker {
    ready(store.retrieve(SENDER))
        .expect("read")
        .expect("stored")
}

struct Setup {
    events: Vec<Event>,
    texts: Vec<String>,
    memory: MemoryStore,
    store: TrackerStore,
    id: SenderId,
}

fn setup() -> Setup {
    let events = long_conversation();
    let memory = MemoryStore::new();
    let store = TrackerStore::new(memory.clone());
    let mut version = 0;
    for chunk in events.chunks(90) {
        version = ready(store.append(SENDER, version, chunk)).expect("append");
    }
    let texts = events[events.len() - LATEST_SESSION_EVENTS..]
        .iter()
        .map(Event::to_rasa_json)
        .collect();
    Setup {
        events,
        texts,
        memory,
        store,
        id: SenderId::new(SENDER).expect("a valid sender id"),
    }
}

/// Median time of one call of `f`, over `samples` runs of `calls` calls each; what `f`
/// returns is dropped after the clock stops (as `tracker-bench` times a read).
fn median<T>(samples: usize, calls: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let mut kept = Vec::with_capacity(calls);
            let started = Instant::now();
            for _ in 0..calls {
                kept.push(f());
            }
            let elapsed = started.elapsed();
            drop(black_box(kept));
            elapsed / calls as u32
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The phases: name, function (callgrind counts inside it only), events it handles, and
/// what its count per event means.
const PHASES: [(&str, &str, &str); 5] = [
    (
        "save",
        "measure_save",
        "per saved event: event → append record with its Rasa JSON",
    ),
    (
        "parse",
        "measure_parse",
        "per read event: stored JSON text → event",
    ),
    (
        "store",
        "measure_store_read",
        "per read event: the memory store's read alone",
    ),
    (
        "read",
        "measure_read",
        "per read event: TrackerStore::read (store read + parse)",
    ),
    (
        "retrieve",
        "measure_retrieve",
        "per read event: TrackerStore::retrieve (+ tracker state)",
    ),
];

/// Runs one phase once; the value is dropped outside the measured function.
fn run_phase(phase: &str) {
    let setup = setup();
    match phase {
        "save" => drop(black_box(measure_save(&setup.events))),
        "parse" => drop(black_box(measure_parse(&setup.texts))),
        "store" => drop(black_box(measure_store_read(&setup.memory, &setup.id))),
        "read" => drop(black_box(measure_read(&setup.store))),
        "retrieve" => drop(black_box(measure_retrieve(&setup.store))),
        other => panic!("unknown phase {other}"),
    }
}

/// Instructions callgrind counts inside `function` while this binary runs `phase` once.
fn instructions(phase: &str, function: &str) -> Option<u64> {
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            &format!("--toggle-collect=*{function}"),
        ])
        .arg(std::env::current_exe().ok()?)
        .args(["--phase", phase])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|count| count.trim().parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|arg| arg == "--phase") {
        run_phase(args.get(position + 1).map_or("", String::as_str));
        return;
    }
    let setup = setup();
    assert_eq!(
        measure_read(&setup.store).events.len(),
        LATEST_SESSION_EVENTS
    );
    assert_eq!(
        measure_retrieve(&setup.store).events().len(),
        LATEST_SESSION_EVENTS
    );
    let saved = setup.events.len();
    let read = LATEST_SESSION_EVENTS;
    let bytes: usize = setup.texts.iter().map(String::len).sum();

    let save = median(21, 5, || measure_save(&setup.events));
    let parse = median(101, 20, || measure_parse(&setup.texts));
    let store_read = median(101, 20, || measure_store_read(&setup.memory, &setup.id));
    let read_time = median(101, 20, || measure_read(&setup.store));
    let retrieve = median(101, 20, || measure_retrieve(&setup.store));

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "event model: {saved} events as tracker-bench writes them; the latest session has \
         {read} ({bytes} bytes of JSON). Median times:"
    );
    println!(
        "  save {saved} events (append records)          {:>8.3} ms  {:>6.2} µs/event",
        ms(save),
        per(save, saved)
    );
    println!(
        "  parse {read} stored texts                     {:>8.3} ms  {:>6.2} µs/event",
        ms(parse),
        per(parse, read)
    );
    println!("memory store, latest session of a 1,000-event conversation ({read} events):");
    println!(
        "  store read alone (texts)                    {:>8.3} ms",
        ms(store_read)
    );
    println!(
        "  TrackerStore::read                          {:>8.3} ms  {:>6.2} µs/event",
        ms(read_time),
        per(read_time, read)
    );
    println!(
        "  TrackerStore::retrieve (tracker state)      {:>8.3} ms  {:>6.2} µs/event",
        ms(retrieve),
        per(retrieve, read)
    );

    if args.iter().any(|arg| arg == "--no-valgrind") {
        return;
    }
    println!("CPU instructions (callgrind, counted inside the phase only):");
    for (phase, function, what) in PHASES {
        let events = if phase == "save" { saved } else { read };
        match instructions(phase, function) {
            Some(total) => println!("  {:>9} {what}", total / events as u64),
            None => {
                println!("  (no valgrind: `--no-valgrind` skips this part)");
                return;
            }
        }
    }
}
