//! `delete` and `prune` delete a conversation only at the version they read: a conversation
//! written to in between is kept ("still live"), never deleted with events nobody read; and a
//! conversation that fails is reported while the others go on.
//!
//! The race is driven by a writer in this process that keeps appending to one conversation
//! of an SQLite file while `tracker` runs against the same file. Each append holds SQLite's
//! write lock for its transaction, so a `tracker` that reads the conversation meanwhile
//! reads the version before that append, and its delete — which needs the write lock — runs
//! after the append committed: at a stale version. Whatever the interleaving, every delete
//! `tracker` reports must have removed exactly the events the writer had acknowledged by
//! then, and no acknowledged event may be lost otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tracker_store::sql::diesel::{self, Connection, connection::SimpleConnection};
use tracker_store::sql::{SqlConfig, SqlStore};
use tracker_store::{Error, Event, TrackerStore};

/// The store `tracker` races the writer on. Not migrating at connect (the writer set the
/// schema up): a migration check would wait for the writer's lock and then run `tracker`'s
/// read and delete right after the writer's commit, away from its appends.
const RACE_YML: &str = "tracker_store:\n  type: sqlite\n  db: race.db\n  migrate: false\n";

/// The conversation the writer keeps appending to.
const LIVE: &str = "live";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn open(db: &Path) -> TrackerStore {
    let config = SqlConfig::sqlite(db.to_str().expect("a UTF-8 path"));
    TrackerStore::new(SqlStore::connect(&config).await.expect("the SQLite store"))
}

/// What the writer saw: the version each generation of the conversation had reached when a
/// delete ended it, and the version it left.
struct Written {
    ended: Vec<u64>,
    last: u64,
}

/// A writer appending batches of old events (a new session each) to [`LIVE`] until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Written>,
}

impl Writer {
    fn start(db: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let store = open(&db).await;
                let mut version = store.version(LIVE).await.expect("version");
                let mut ended = Vec::new();
                let mut batch = 0_u64;
                // A minute old: inactive for `--inactive-for 0s`.
                let timestamp = || {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("clock")
                        .as_secs_f64()
                        - 60.0
                };
                while !flag.load(Ordering::SeqCst) {
                    batch += 1;
                    let at = timestamp();
                    let mut events = vec![
                        Event::action("action_session_start").at(at),
                        Event::session_started().at(at),
                    ];
                    // Big enough that the append's transaction takes a while.
                    let filler = "x".repeat(500);
                    events.extend(
                        (0..100).map(|n| Event::bot(format!("batch {batch} #{n} {filler}")).at(at)),
                    );
                    match store.append(LIVE, version, &events).await {
                        Ok(new) => version = new,
                        Err(Error::Conflict { actual, .. }) => {
                            // Only a delete writes here besides this writer.
                            assert_eq!(actual, 0, "the conversation moved under the writer");
                            ended.push(version);
                            version = 0;
                        }
                        Err(error) => panic!("the writer failed: {error}"),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Written {
                    ended,
                    last: version,
                }
            })
        });
        Self { stop, thread }
    }

    fn stop(self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the writer")
    }
}

/// Runs `args` against the store of `endpoints` while the writer appends to [`LIVE`], until a
/// run kept it as still live (at most 60 s), and checks that every delete a run reported
/// (its version parsed from an output line by `deleted`) is where a generation of the
/// writer's conversation ended: no acknowledged event was deleted unread.
///
/// Whether an append lands between a run's read and its delete is up to the scheduler; on an
/// idle machine it can take many runs. If none did within the time, the line `NOT RUN` says
/// so (the checks above still held for every delete that ran).
fn race(dir: &Path, endpoints: &Path, args: &[&str], deleted: fn(&str) -> Option<u64>) {
    let db = dir.join("race.db");
    let writer = Writer::start(db.clone());
    let probe = runtime();
    let store = probe.block_on(open(&db));
    while probe.block_on(store.version(LIVE)).expect("version") < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut deletions = Vec::new();
    let mut skips = 0;
    let started = std::time::Instant::now();
    for run in 0.. {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let output = tracker(dir)
            .arg("--endpoints")
            .arg(endpoints)
            .args(args)
            .output()
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for line in text.lines() {
            if let Some(version) = deleted(line) {
                deletions.push(version);
            } else if line.starts_with(&format!("skipped {LIVE}: still live")) {
                skips += 1;
            } else if line == format!("conversation {LIVE:?} does not exist") {
                // `delete` just after a delete, before the writer's next append.
            } else {
                panic!("unexpected output of {args:?}: {line}");
            }
        }
        if skips > 0 && run >= 3 {
            break;
        }
    }
    let mut written = writer.stop();
    let now = probe.block_on(store.version(LIVE)).expect("version");
    if now == 0 && written.last > 0 {
        // Deleted after the writer's last append.
        written.ended.push(written.last);
    } else {
        assert_eq!(
            now, written.last,
            "the conversation holds what was acknowledged"
        );
    }
    assert_eq!(
        deletions, written.ended,
        "each delete removed exactly the events acknowledged when it ran"
    );
    if skips == 0 {
        eprintln!(
            "NOT RUN {args:?} racing an append: no run read the conversation while an append \
             was under way in 60 s ({} deletes checked)",
            deletions.len()
        );
    }
}

#[test]
fn prune_keeps_a_conversation_written_to_after_it_was_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(dir, "race.yml", RACE_YML);
    race(
        dir,
        &endpoints,
        &["prune", "--inactive-for", "0s"],
        |line| {
            let rest = line.strip_prefix(&format!("deleted {LIVE}: "))?;
            rest.split(' ').next()?.parse().ok()
        },
    );
}

#[test]
fn delete_keeps_a_conversation_written_to_after_it_was_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(dir, "race.yml", RACE_YML);
    race(dir, &endpoints, &["delete", LIVE], |line| {
        let rest = line.strip_prefix(&format!("deleted {LIVE}: "))?;
        rest.strip_suffix(" events")?.parse().ok()
    });
}

/// One conversation that cannot be read does not stop `prune`: it is reported, the others
/// are deleted, and the exit code says one failed. `delete` goes on past a failure too.
#[test]
fn a_failing_conversation_is_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let lines: String = ["a-first", "broken", "c-last"]
        .iter()
        .map(|name| {
            let events = [Event::bot(format!("hello {name}")).at(1_600_000_000.0)];
            format!("{}\n", dialogue_line(name, &events))
        })
        .collect();
    let file = write(dir, "three.jsonl", &lines);
    stdout(tracker(dir).arg("import").arg(&file));
    let mut conn = diesel::SqliteConnection::establish(&dir.join("rasa.db").display().to_string())
        .expect("open");
    conn.batch_execute("UPDATE events SET data = '{not JSON' WHERE sender_id = 'broken'")
        .expect("break a conversation");
    drop(conn);

    let (ok, stderr) = run_loud(loud(dir).args(["prune", "--inactive-for", "1d"]));
    assert!(!ok, "a failed conversation fails the run: {stderr}");
    assert!(stderr.contains("\"broken\""), "{stderr}");
    assert!(
        stderr.contains("deleted 2 conversations") && stderr.contains("1 conversations failed"),
        "{stderr}"
    );
    // `list` and `export` go on past it too, and say so.
    let output = tracker(dir).arg("list").output().expect("runs");
    assert!(!output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        !listing.contains("a-first") && !listing.contains("c-last"),
        "{listing}"
    );
    assert!(listing.contains("unreadable"), "{listing}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"broken\""));
    let output = tracker(dir).arg("export").output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"broken\""));

    let two = write(
        dir,
        "two.jsonl",
        &lines
            .lines()
            .filter(|line| !line.contains("broken"))
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    );
    stdout(tracker(dir).arg("import").arg(&two));
    let too_long = "x".repeat(300);
    let output = tracker(dir)
        .args(["delete", "a-first", &too_long, "nobody", "c-last"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("deleted a-first: 1 events")
            && printed.contains("deleted c-last: 1 events"),
        "{printed}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"nobody\" does not exist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}
