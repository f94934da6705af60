//! The event model alone: CPU instructions per saved and per read event, and the time the
//! in-memory store takes to return the latest session (50 events) of a 1,000-event
//! conversation. No server and no I/O: this is the floor under every backend's reads and
//! saves.
//!
//! Instructions are counted by running this binary again under valgrind's callgrind, once
//! per phase, collecting inside the phase's function only (`--event-model-phase NAME`):
//! repeatable from run to run, unlike timings on a shared machine. Without valgrind the
//! counts are left out and the report says so.

use std::fmt::Write as _;
use std::hint::black_box;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracker_store::memory::MemoryStore;
use tracker_store::{
    Append, Conversation, Event, ReadScope, SenderId, Store, StoredConversation, Tracker,
    TrackerStore,
};

use crate::scenarios::long_conversation;

/// The argument that makes this binary run one phase (under callgrind) and exit.
const PHASE_ARG: &str = "--event-model-phase";

const SENDER: &str = "reader";

/// One phase: its name, the function callgrind counts inside, and what its count per event
/// means.
struct PhaseSpec {
    name: &'static str,
    function: &'static str,
    what: &'static str,
}

const PHASES: [PhaseSpec; 5] = [
    PhaseSpec {
        name: "save",
        function: "measure_save",
        what: "per saved event: event → append record with its Rasa JSON text",
    },
    PhaseSpec {
        name: "parse",
        function: "measure_parse",
        what: "per read event: stored JSON text → event",
    },
    PhaseSpec {
        name: "store",
        function: "measure_store_read",
        what: "per read event: the in-memory store's read alone (texts out)",
    },
    PhaseSpec {
        name: "read",
        function: "measure_read",
        what: "per read event: `TrackerStore::read` (store read + parse)",
    },
    PhaseSpec {
        name: "retrieve",
        function: "measure_retrieve",
        what: "per read event: `TrackerStore::retrieve` (+ tracker state)",
    },
];

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub what: &'static str,
    /// Events the phase handles.
    pub events: usize,
    /// Median time per event, in microseconds.
    pub micros_per_event: f64,
    /// CPU instructions per event (callgrind); `None` without valgrind.
    pub instructions_per_event: Option<u64>,
}

/// The event model's measurements.
#[derive(Debug, Clone)]
pub struct EventModel {
    pub phases: Vec<Phase>,
    /// Median `TrackerStore::read` of the latest session (50 events) on the in-memory store.
    pub memory_read_ms: f64,
    /// Events of the latest session read.
    pub read_events: usize,
}

/// Runs the phase named after [`PHASE_ARG`] if the process was started with it; returns
/// whether it was.
pub fn run_phase_from_args() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let Some(position) = args.iter().position(|arg| arg == PHASE_ARG) else {
        return false;
    };
    let setup = Setup::new();
    match args.get(position + 1).map_or("", String::as_str) {
        "save" => drop(black_box(measure_save(&setup.events))),
        "parse" => drop(black_box(measure_parse(&setup.texts))),
        "store" => drop(black_box(measure_store_read(&setup.memory, &setup.id))),
        "read" => drop(black_box(measure_read(&setup.store))),
        "retrieve" => drop(black_box(measure_retrieve(&setup.store))),
        other => eprintln!("unknown event model phase {other:?}"),
    }
    true
}

/// Measures every phase: median times here, instructions under callgrind.
pub fn measure() -> Result<EventModel, String> {
    let setup = Setup::new();
    let read_events = measure_read(&setup.store).events.len();
    let retrieved = measure_retrieve(&setup.store).events().len();
    if read_events != setup.texts.len() || retrieved != read_events {
        return Err(format!(
            "the latest session has {} events; read {read_events}, retrieved {retrieved}",
            setup.texts.len()
        ));
    }
    let saved = setup.events.len();
    let times = [
        (median(21, 5, || measure_save(&setup.events)), saved),
        (median(101, 20, || measure_parse(&setup.texts)), read_events),
        (
            median(101, 20, || measure_store_read(&setup.memory, &setup.id)),
            read_events,
        ),
        (median(101, 20, || measure_read(&setup.store)), read_events),
        (
            median(101, 20, || measure_retrieve(&setup.store)),
            read_events,
        ),
    ];
    let memory_read_ms = times[3].0.as_secs_f64() * 1e3;
    let phases = PHASES
        .iter()
        .zip(times)
        .map(|(spec, (time, events))| Phase {
            name: spec.name,
            what: spec.what,
            events,
            micros_per_event: time.as_secs_f64() * 1e6 / events as f64,
            instructions_per_event: instructions(spec).map(|total| total / events as u64),
        })
        .collect();
    Ok(EventModel {
        phases,
        memory_read_ms,
        read_events,
    })
}

impl EventModel {
    /// The report's section.
    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## 8. Event model\n\nThe event model alone, with no I/O: the events the scenarios \
             write, a 1,000-event conversation in the in-memory store, its latest session \
             ({} events) read back. Instructions are callgrind's count inside each phase \
             (repeatable from run to run); times are medians of this run. The in-memory \
             store's `TrackerStore::read` of the latest session took {:.3} ms.\n",
            self.read_events, self.memory_read_ms
        );
        let _ = writeln!(out, "| phase | instructions / event | µs / event |");
        let _ = writeln!(out, "|---|---|---|");
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} |",
                phase.what,
                phase
                    .instructions_per_event
                    .map_or("- (no valgrind)".to_owned(), |count| count.to_string()),
                phase.micros_per_event
            );
        }
        let _ = writeln!(out);
    }

    /// The report's JSON.
    pub fn json(&self) -> Value {
        json!({
            "memory_read_ms": self.memory_read_ms,
            "read_events": self.read_events,
            "phases": self.phases.iter().map(|phase| json!({
                "phase": phase.name,
                "events": phase.events,
                "micros_per_event": phase.micros_per_event,
                "instructions_per_event": phase.instructions_per_event,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs a future of the in-memory store, which never waits.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the in-memory store never waits"),
    }
}

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

/// The conversation, stored, and the texts of its latest session.
struct Setup {
    events: Vec<Event>,
    texts: Vec<String>,
    memory: MemoryStore,
    store: TrackerStore,
    id: SenderId,
}

impl Setup {
    fn new() -> Self {
        let (events, session_start) = long_conversation();
        let memory = MemoryStore::new();
        let store = TrackerStore::new(memory.clone());
        let mut version = 0;
        for chunk in events.chunks(90) {
            version = ready(store.append(SENDER, version, chunk)).expect("append");
        }
        let texts = events[session_start..]
            .iter()
            .map(Event::to_rasa_json)
            .collect();
        Self {
            events,
            texts,
            memory,
            store,
            id: SenderId::new(SENDER).expect("a valid sender id"),
        }
    }
}

/// Median time of one call of `f`, over `samples` runs of `calls` calls each; what `f`
/// returns is dropped after the clock stops (as the read scenarios time a read).
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

/// Instructions callgrind counts inside the phase's function while this binary runs the
/// phase once; `None` without valgrind.
fn instructions(phase: &PhaseSpec) -> Option<u64> {
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            &format!("--toggle-collect=*{}", phase.function),
        ])
        .arg(std::env::current_exe().ok()?)
        .args([PHASE_ARG, phase.name])
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
