//! Faults: servers killed with SIGKILL in the middle of concurrent appends, then started again
//! on the same port and directory. Each test starts its own servers (a single server, or a
//! 3-master Redis Cluster) on free loopback ports, with `appendonly yes` and `appendfsync
//! always` so that an acknowledged append survives the kill; the shared test servers are
//! never touched. Skipped (a failure under `CI`) without `redis-server` and `redis-cli`.
//!
//! Writers append 2 or 3 events with unique markers to their own conversation; after an
//! error a writer re-reads the version (retrying with a short back-off) and goes on. The
//! checks: every append that returned `Ok` is stored, every append that failed is stored
//! whole or not at all, nothing is stored twice, versions have no gaps, every error is a
//! temporary `Unavailable` (or a `Conflict` after an append whose reply was lost), no
//! operation hangs, and the same store object works again after the restart. On a cluster,
//! conversations on the other masters keep working while one master is down. A last test
//! moves a conversation's slot to another master under a running store. Run with
//! `--nocapture` to see the figures of each run.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{LocalServers, free_port, redis_cli};
use tracker_core::{BatchAppend, ErrorKind, Event, EventKind, ReadScope, TrackerStore};
use tracker_redis::{RedisConfig, RedisStore, tracker_core};

/// The store's `timeout` (seconds) in these tests.
const COMMAND_TIMEOUT: u64 = 2;
/// An operation still running after this long has hung: far above the command timeout.
const HANG: Duration = Duration::from_secs(60);
/// How long the test waits for the writers to make the progress it waits for.
const PROGRESS: Duration = Duration::from_secs(120);
/// How long a server stays down at least.
const MIN_OUTAGE: Duration = Duration::from_secs(5);
/// Successful appends each writer needs in a phase before the test moves on.
const APPENDS_PER_PHASE: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Phase {
    Before,
    Outage,
    After,
}

const PHASES: [Phase; 3] = [Phase::Before, Phase::Outage, Phase::After];

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Before,
            1 => Self::Outage,
            _ => Self::After,
        }
    }
}

/// A failed operation.
#[derive(Debug, Clone)]
struct Failure {
    kind: ErrorKind,
    temporary: bool,
    message: String,
}

impl Failure {
    fn of(error: &tracker_core::Error) -> Self {
        Self {
            kind: error.kind(),
            temporary: error.is_temporary(),
            message: match std::error::Error::source(error) {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            },
        }
    }
}

/// One append of one writer.
#[derive(Debug)]
struct Attempt {
    expected: u64,
    markers: Vec<String>,
    /// The phase when it started.
    phase: Phase,
    took: Duration,
    finished: Instant,
    result: Result<u64, Failure>,
}

/// What one writer did.
#[derive(Debug)]
struct Log {
    sender_id: String,
    attempts: Vec<Attempt>,
    /// Failed version reads: phase, duration, error.
    read_errors: Vec<(Phase, Duration, Failure)>,
}

impl Log {
    fn oks(&self, phase: Phase) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.phase == phase && a.result.is_ok())
            .count()
    }

    fn failed_appends(&self, phase: Phase) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.phase == phase && a.result.is_err())
            .count()
    }

    fn errors(&self, phase: Phase) -> usize {
        self.failed_appends(phase) + self.read_errors.iter().filter(|r| r.0 == phase).count()
    }

    /// Every failure: operation, phase, duration, error.
    fn failures(&self) -> Vec<(&'static str, Phase, Duration, &Failure)> {
        let appends = self.attempts.iter().filter_map(|a| {
            a.result
                .as_ref()
                .err()
                .map(|f| ("append", a.phase, a.took, f))
        });
        let reads = self
            .read_errors
            .iter()
            .map(|(phase, took, f)| ("version", *phase, *took, f));
        appends.chain(reads).collect()
    }
}

/// Concurrent writers on one shared store, one conversation each.
struct Run {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    logs: Vec<Arc<Mutex<Log>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    fn start(api: &TrackerStore, sender_ids: &[String]) -> Self {
        let phase = Arc::new(AtomicU8::new(Phase::Before as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for id in sender_ids {
            let log = Arc::new(Mutex::new(Log {
                sender_id: id.clone(),
                attempts: Vec::new(),
                read_errors: Vec::new(),
            }));
            logs.push(log.clone());
            tasks.push(tokio::spawn(writer(
                api.clone(),
                id.clone(),
                log,
                phase.clone(),
                stop.clone(),
            )));
        }
        Self {
            phase,
            stop,
            logs,
            tasks,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// `f` of each writer's log.
    fn each<T>(&self, f: impl Fn(&Log) -> T) -> Vec<T> {
        self.logs
            .iter()
            .map(|log| f(&log.lock().expect("log")))
            .collect()
    }

    /// Waits until `condition` holds for the writers' logs; panics (with the counts) if the
    /// writers never get there or one of them panicked.
    async fn wait_until(&self, what: &str, condition: impl Fn(&[&Log]) -> bool) {
        let done = common::eventually(PROGRESS, || async {
            let guards: Vec<_> = self.logs.iter().map(|l| l.lock().expect("log")).collect();
            let logs: Vec<&Log> = guards.iter().map(|g| &**g).collect();
            condition(&logs) || self.tasks.iter().any(|t| t.is_finished())
        })
        .await;
        assert!(
            self.tasks.iter().all(|t| !t.is_finished()),
            "a writer stopped while waiting for: {what}"
        );
        assert!(
            done,
            "the writers never got to: {what}; appends Ok/failed per phase: {:?}",
            self.each(|l| PHASES.map(|p| (l.oks(p), l.failed_appends(p))))
        );
    }

    async fn finish(self) -> Vec<Log> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a writer panicked");
        }
        self.logs
            .into_iter()
            .map(|log| {
                Arc::try_unwrap(log)
                    .expect("writers are done")
                    .into_inner()
                    .expect("log")
            })
            .collect()
    }
}

/// `operation`, which must finish (with a result or an error) well within [`HANG`].
async fn bounded<T>(what: &str, operation: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, operation)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG:?}"))
}

async fn writer(
    api: TrackerStore,
    id: String,
    log: Arc<Mutex<Log>>,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) {
    let mut version = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let markers: Vec<String> = (0..2 + n % 2).map(|k| format!("{id}#{n}.{k}")).collect();
        let events: Vec<Event> = markers
            .iter()
            .map(|marker| Event::bot(marker.clone()).at(1_700_000_000.0 + n as f64))
            .collect();
        let expected = version;
        let started_in = Phase::from_u8(phase.load(Ordering::SeqCst));
        let started = Instant::now();
        let result = bounded("append", api.append(&id, expected, &events)).await;
        let took = started.elapsed();
        let failed = result.is_err();
        if let Ok(new_version) = result {
            version = new_version;
        }
        log.lock().expect("log").attempts.push(Attempt {
            expected,
            markers,
            phase: started_in,
            took,
            finished: Instant::now(),
            result: result.map_err(|e| Failure::of(&e)),
        });
        if failed {
            // Re-read the version before going on, retrying with a short back-off.
            let mut backoff = Duration::from_millis(50);
            loop {
                tokio::time::sleep(backoff).await;
                let started_in = Phase::from_u8(phase.load(Ordering::SeqCst));
                let started = Instant::now();
                match bounded("version", api.version(&id)).await {
                    Ok(current) => {
                        version = current;
                        break;
                    }
                    Err(error) => {
                        log.lock().expect("log").read_errors.push((
                            started_in,
                            started.elapsed(),
                            Failure::of(&error),
                        ));
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Figures of one conversation's final check.
#[derive(Debug, Default)]
struct Checked {
    events: usize,
    ok: usize,
    failed_but_stored: usize,
    failed_not_stored: usize,
}

/// Reads every conversation through `api` (the store used all along) and checks it against
/// what its writer saw.
async fn verify(api: &TrackerStore, logs: &[Log]) -> Checked {
    let mut total = Checked::default();
    for log in logs {
        let id = &log.sender_id;
        let conversation = bounded("read", api.read(id, ReadScope::All))
            .await
            .unwrap_or_else(|e| panic!("read {id} after the restart: {e}"))
            .unwrap_or_else(|| panic!("{id} is gone"));
        assert_eq!(conversation.first_seq, 1, "{id}");
        assert_eq!(
            conversation.version,
            conversation.events.len() as u64,
            "{id}: the version counts the events, without gaps"
        );
        let texts: Vec<&str> = conversation
            .events
            .iter()
            .map(|event| match &event.kind {
                EventKind::BotUttered {
                    text: Some(text), ..
                } => text.as_str(),
                other => panic!("{id}: unexpected event {other:?}"),
            })
            .collect();
        let mut position = HashMap::new();
        for (at, text) in texts.iter().enumerate() {
            assert!(
                position.insert(*text, at).is_none(),
                "{id}: {text} is stored twice"
            );
        }
        let mut accounted = 0;
        for attempt in &log.attempts {
            let expected = attempt.expected;
            let found: Vec<Option<usize>> = attempt
                .markers
                .iter()
                .map(|m| position.get(m.as_str()).copied())
                .collect();
            let whole: Vec<Option<usize>> = (0..attempt.markers.len())
                .map(|k| Some(expected as usize + k))
                .collect();
            match &attempt.result {
                Ok(version) => {
                    assert_eq!(
                        found, whole,
                        "{id}: append at version {expected} returned Ok({version}) but its \
                         events are not all there, in place"
                    );
                    total.ok += 1;
                    accounted += found.len();
                }
                Err(_) if found.iter().all(Option::is_none) => {
                    total.failed_not_stored += 1;
                }
                Err(failure) => {
                    assert_eq!(
                        found, whole,
                        "{id}: append at version {expected} failed ({failure:?}) and is only \
                         partly stored or out of place"
                    );
                    total.failed_but_stored += 1;
                    accounted += found.len();
                }
            }
        }
        assert_eq!(
            accounted,
            texts.len(),
            "{id}: events stored that no append made"
        );
        total.events += texts.len();
    }
    total
}

/// Checks that every error was a temporary `Unavailable`, or a `Conflict` of an append.
fn check_errors(logs: &[Log]) {
    for log in logs {
        for (operation, phase, _, failure) in log.failures() {
            let fine = (failure.kind == ErrorKind::Unavailable && failure.temporary)
                || (operation == "append" && failure.kind == ErrorKind::Conflict);
            assert!(
                fine,
                "{}: {operation} in phase {phase:?} failed with {failure:?}",
                log.sender_id
            );
        }
    }
}

/// Prints the run's figures, for each group of writers (name, indexes in `logs`).
fn report(
    name: &str,
    logs: &[Log],
    groups: &[(&str, Vec<usize>)],
    outage: Duration,
    restarted: Instant,
    checked: &Checked,
) {
    println!("== {name}");
    println!(
        "outage (kill to restart): {:.1} s; command timeout {COMMAND_TIMEOUT} s",
        outage.as_secs_f64()
    );
    for (group, members) in groups {
        let logs: Vec<&Log> = members.iter().map(|i| &logs[*i]).collect();
        println!("{group} ({} writers):", logs.len());
        for phase in PHASES {
            let ok: usize = logs.iter().map(|l| l.oks(phase)).sum();
            let failed: usize = logs.iter().map(|l| l.failed_appends(phase)).sum();
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            let mut slowest = Duration::ZERO;
            for log in &logs {
                for (operation, p, took, failure) in log.failures() {
                    if p == phase {
                        *kinds
                            .entry(format!("{operation} {:?}", failure.kind))
                            .or_default() += 1;
                        slowest = slowest.max(took);
                    }
                }
            }
            println!(
                "  {phase:?}: appends ok {ok}, failed {failed}; errors {kinds:?}; slowest \
                 failed operation {:.2} s",
                slowest.as_secs_f64()
            );
        }
        // Recovery of the writers that saw the outage: restart to first Ok append.
        let recovery: Vec<Duration> = logs
            .iter()
            .filter(|log| log.errors(Phase::Outage) > 0)
            .filter_map(|log| {
                log.attempts
                    .iter()
                    .find(|a| a.result.is_ok() && a.finished > restarted)
                    .map(|a| a.finished - restarted)
            })
            .collect();
        if let (Some(first), Some(last)) = (recovery.iter().min(), recovery.iter().max()) {
            println!(
                "  restart to first Ok append of the writers that saw errors: {:.2} s to {:.2} s",
                first.as_secs_f64(),
                last.as_secs_f64()
            );
        }
    }
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for log in logs {
        for (_, _, _, failure) in log.failures() {
            *messages
                .entry(failure.message.replace(&log.sender_id, "<id>"))
                .or_default() += 1;
        }
    }
    println!("errors by message: {messages:#?}");
    println!("final check: {checked:?}");
}

/// Arguments of a `redis-server` on `port` in `dir` that acknowledges only writes that are on
/// disk, and keeps no snapshots.
fn durable_server(port: u16, dir: &std::path::Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn store_config(url: String) -> RedisConfig {
    let mut config = RedisConfig::from_url(url).with_key_prefix(common::fresh_prefix());
    config.timeout = COMMAND_TIMEOUT;
    config
}

/// Starts a durable single server (see [`durable_server`]) among `servers`; returns it and a
/// store on it.
async fn durable_single(servers: &mut LocalServers) -> (usize, TrackerStore) {
    let port = free_port();
    let args = durable_server(port, &servers.dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = servers.spawn("redis-server", &args, port);
    let store = RedisStore::connect(&store_config(format!("redis://127.0.0.1:{port}")))
        .await
        .expect("connect");
    (server, TrackerStore::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_server_killed_mid_run() {
    let Some(mut servers) = LocalServers::new("redis-faults", &["redis-server", "redis-cli"])
    else {
        return;
    };
    let (server, api) = durable_single(&mut servers).await;
    let ids: Vec<String> = (0..8).map(|i| format!("writer{i}")).collect();
    let run = Run::start(&api, &ids);

    run.wait_until("appends of every writer before the kill", |logs| {
        logs.iter()
            .all(|l| l.oks(Phase::Before) >= APPENDS_PER_PHASE)
    })
    .await;
    run.set_phase(Phase::Outage);
    let killed = Instant::now();
    tokio::task::block_in_place(|| servers.kill(server));
    tokio::time::sleep(MIN_OUTAGE).await;
    run.wait_until(
        "an error for every writer while the server is down",
        |logs| logs.iter().all(|l| l.errors(Phase::Outage) >= 1),
    )
    .await;
    let outage = killed.elapsed();
    tokio::task::block_in_place(|| servers.restart(server));
    let restarted = Instant::now();
    run.set_phase(Phase::After);
    run.wait_until("appends of every writer after the restart", |logs| {
        logs.iter()
            .all(|l| l.oks(Phase::After) >= APPENDS_PER_PHASE)
    })
    .await;
    let logs = run.finish().await;

    check_errors(&logs);
    let checked = verify(&api, &logs).await;
    report(
        "single server",
        &logs,
        &[("all conversations", (0..logs.len()).collect())],
        outage,
        restarted,
        &checked,
    );
    assert!(checked.ok > 0);
}

/// The masters of a cluster: slot ranges and the port of their owner, from `CLUSTER NODES`.
fn slot_owners(port: u16) -> Vec<(u16, u16, u16)> {
    let mut owners = Vec::new();
    for line in redis_cli(port, &["cluster", "nodes"]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[2].split(',').any(|f| f == "master") {
            continue;
        }
        let owner: u16 = fields[1]
            .split(['@', ','])
            .next()
            .and_then(|address| address.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("node address");
        for range in fields[8..].iter().filter(|r| !r.starts_with('[')) {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            owners.push((
                start.parse().expect("slot"),
                end.parse().expect("slot"),
                owner,
            ));
        }
    }
    owners
}

/// The port of the master that owns `key`.
fn owner_of(port: u16, owners: &[(u16, u16, u16)], key: &str) -> u16 {
    let slot: u16 = redis_cli(port, &["cluster", "keyslot", key])
        .trim()
        .parse()
        .expect("CLUSTER KEYSLOT");
    owners
        .iter()
        .find(|(start, end, _)| (*start..=*end).contains(&slot))
        .map(|(_, _, owner)| *owner)
        .unwrap_or_else(|| panic!("no master owns slot {slot}"))
}

/// Whether the node on `port` sees the node on `other` as failed (`fail`, not `fail?`).
fn sees_failed(port: u16, other: u16) -> bool {
    redis_cli(port, &["cluster", "nodes"]).lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 2
            && fields[1].starts_with(&format!("127.0.0.1:{other}@"))
            && fields[2].split(',').any(|f| f == "fail")
    })
}

/// Whether every node on `ports` reports a healthy cluster of all of them.
fn cluster_healthy(ports: &[u16]) -> bool {
    ports.iter().all(|port| {
        let info = redis_cli(*port, &["cluster", "info"]);
        info.contains("cluster_state:ok")
            && info.contains("cluster_slots_assigned:16384")
            && info.contains(&format!("cluster_known_nodes:{}", ports.len()))
    })
}

/// Starts a 3-master cluster of durable servers on free ports, each in its own directory
/// under the servers' one; returns their ports and process indexes once it is healthy.
async fn start_cluster(servers: &mut LocalServers) -> (Vec<u16>, Vec<usize>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for port in &ports {
        let dir = servers.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("node dir");
        let mut args = durable_server(*port, &dir);
        args.extend(
            [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &free_port().to_string(),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                // Without replicas, the other masters serve their slots only with this.
                "--cluster-require-full-coverage",
                "no",
            ]
            .map(str::to_owned),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(servers.spawn("redis-server", &args, *port));
    }
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        created.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    let healthy = common::eventually(PROGRESS, || async {
        tokio::task::block_in_place(|| cluster_healthy(&ports))
    })
    .await;
    assert!(healthy, "the cluster never became healthy");
    (ports, nodes)
}

fn cluster_url(ports: &[u16]) -> String {
    format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_master_killed_mid_run() {
    let Some(mut servers) =
        LocalServers::new("redis-cluster-faults", &["redis-server", "redis-cli"])
    else {
        return;
    };
    let (ports, nodes) = start_cluster(&mut servers).await;
    let store = RedisStore::connect(&store_config(cluster_url(&ports)))
        .await
        .expect("connect");
    assert!(store.is_clustered());
    let layout = store.layout().clone();
    let owners = slot_owners(ports[0]);
    // The victim: a master that does not hold the conversation index.
    let index_owner = owner_of(ports[0], &owners, &layout.index());
    let victim = *ports
        .iter()
        .find(|p| **p != index_owner)
        .expect("three masters");
    let victim_node = nodes[ports.iter().position(|p| *p == victim).expect("victim")];
    // Three conversations on each master.
    let mut by_master: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let id = format!("conversation{i}");
        let owner = owner_of(ports[0], &owners, &layout.head(&id));
        let ids = by_master.entry(owner).or_default();
        if ids.len() < 3 {
            ids.push(id);
        }
        if by_master.len() == 3 && by_master.values().all(|ids| ids.len() == 3) {
            break;
        }
    }
    let ids: Vec<String> = by_master.values().flatten().cloned().collect();
    let on_victim: HashSet<&String> = by_master[&victim].iter().collect();
    let victim_writers: Vec<usize> = (0..ids.len())
        .filter(|i| on_victim.contains(&ids[*i]))
        .collect();
    let live_writers: Vec<usize> = (0..ids.len())
        .filter(|i| !on_victim.contains(&ids[*i]))
        .collect();

    let api = TrackerStore::new(store);
    let run = Run::start(&api, &ids);
    run.wait_until("appends of every writer before the kill", |logs| {
        logs.iter()
            .all(|l| l.oks(Phase::Before) >= APPENDS_PER_PHASE)
    })
    .await;

    run.set_phase(Phase::Outage);
    let killed = Instant::now();
    tokio::task::block_in_place(|| servers.kill(victim_node));
    tokio::time::sleep(MIN_OUTAGE).await;
    // Until the other masters have marked the victim as failed...
    let live_port = *ports.iter().find(|p| **p != victim).expect("a live master");
    let flagged = common::eventually(PROGRESS, || async {
        tokio::task::block_in_place(|| sees_failed(live_port, victim))
    })
    .await;
    assert!(
        flagged,
        "the cluster never marked the killed master as failed"
    );
    let flagged_at = run.each(|l| l.oks(Phase::Outage));
    // ...and after that, appends on the live masters succeed, and those on the victim fail.
    run.wait_until(
        "appends on the live masters and errors on the killed one",
        |logs| {
            live_writers
                .iter()
                .all(|i| logs[*i].oks(Phase::Outage) >= flagged_at[*i] + APPENDS_PER_PHASE)
                && victim_writers
                    .iter()
                    .all(|i| logs[*i].errors(Phase::Outage) >= 1)
        },
    )
    .await;
    let outage = killed.elapsed();
    tokio::task::block_in_place(|| servers.restart(victim_node));
    let restarted = Instant::now();
    run.set_phase(Phase::After);
    run.wait_until("appends of every writer after the restart", |logs| {
        logs.iter()
            .all(|l| l.oks(Phase::After) >= APPENDS_PER_PHASE)
    })
    .await;
    let logs = run.finish().await;

    check_errors(&logs);
    for i in &victim_writers {
        let log = &logs[*i];
        assert!(
            log.failures()
                .iter()
                .any(|(_, phase, _, f)| *phase == Phase::Outage
                    && f.kind == ErrorKind::Unavailable),
            "{}: no Unavailable error while its master was down",
            log.sender_id
        );
    }
    let checked = verify(&api, &logs).await;
    report(
        &format!("cluster (killed master {victim}, index on {index_owner})"),
        &logs,
        &[
            ("conversations on the live masters", live_writers.clone()),
            ("conversations on the killed master", victim_writers.clone()),
        ],
        outage,
        restarted,
        &checked,
    );
    for i in &live_writers {
        let log = &logs[*i];
        assert!(
            log.errors(Phase::Outage) == 0,
            "{}: errors while another master was down: {:?}",
            log.sender_id,
            log.failures()
        );
    }
}

/// Moves `slot` from the master on `from` to the one on `to`, keys and all (what a resharding
/// does, slot by slot).
fn move_slot(ports: &[u16], slot: u16, from: u16, to: u16) {
    let id = |port: u16| redis_cli(port, &["cluster", "myid"]).trim().to_owned();
    let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
    let ok = |output: String| assert_eq!(output.trim(), "OK", "moving slot {slot}");
    ok(redis_cli(
        to,
        &["cluster", "setslot", &slot, "importing", &from_id],
    ));
    ok(redis_cli(
        from,
        &["cluster", "setslot", &slot, "migrating", &to_id],
    ));
    let keys = redis_cli(from, &["cluster", "getkeysinslot", &slot, "1000"]);
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(!keys.is_empty(), "slot {slot} holds the conversation");
    let mut migrate = vec![
        "migrate".to_owned(),
        "127.0.0.1".to_owned(),
        to.to_string(),
        String::new(),
        "0".to_owned(),
        "5000".to_owned(),
        "keys".to_owned(),
    ];
    migrate.extend(keys.iter().map(|k| (*k).to_owned()));
    let migrate: Vec<&str> = migrate.iter().map(String::as_str).collect();
    ok(redis_cli(from, &migrate));
    for port in ports {
        ok(redis_cli(
            *port,
            &["cluster", "setslot", &slot, "node", &to_id],
        ));
    }
}

/// A conversation's slot moves to another master while the store runs: its connection to
/// the old master answers `MOVED`, and the store goes through the cluster client, which
/// follows the redirection and refreshes the routing table; the same store keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_slot_moved_under_the_store() {
    let Some(mut servers) =
        LocalServers::new("redis-cluster-moved", &["redis-server", "redis-cli"])
    else {
        return;
    };
    let (ports, _) = start_cluster(&mut servers).await;
    let mut config = store_config(cluster_url(&ports));
    config.pool_size = 2;
    let store = RedisStore::connect(&config).await.expect("connect");
    let head = store.layout().head("moving");
    let api = TrackerStore::new(store);
    let events = |from: u64| -> Vec<Event> {
        (from..from + 2)
            .map(|n| Event::bot(format!("event {n}")).at(1_700_000_000.0 + n as f64))
            .collect()
    };
    assert_eq!(
        api.append("moving", 0, &events(1)).await.expect("append"),
        2
    );

    let owners = slot_owners(ports[0]);
    let from = owner_of(ports[0], &owners, &head);
    let to = *ports.iter().find(|p| **p != from).expect("another master");
    let slot: u16 = redis_cli(ports[0], &["cluster", "keyslot", &head])
        .trim()
        .parse()
        .expect("CLUSTER KEYSLOT");
    tokio::task::block_in_place(|| move_slot(&ports, slot, from, to));
    assert_eq!(owner_of(to, &slot_owners(to), &head), to);

    // The store still routes by its old table: each of these meets MOVED once at most. The
    // read's transaction meets it first, on the connection to the old primary.
    let read = api
        .read("moving", ReadScope::All)
        .await
        .expect("read after the move")
        .expect("stored");
    assert_eq!(read.events, events(1));
    assert_eq!(
        api.version("moving").await.expect("version after the move"),
        2
    );
    assert_eq!(
        api.append("moving", 2, &events(3))
            .await
            .expect("append after the move"),
        4
    );
    assert_eq!(
        api.append("moving", 4, &events(5))
            .await
            .expect("append after the move"),
        6
    );
    let read = api
        .read("moving", ReadScope::All)
        .await
        .expect("read after the move")
        .expect("stored");
    let mut expected = events(1);
    expected.extend(events(3));
    expected.extend(events(5));
    assert_eq!(read.events, expected);
    assert!(
        redis_cli(from, &["exists", &head]).trim() != "1",
        "the conversation left the old master"
    );
}

/// A server killed while batches of appends run: a batch whose pipeline the kill cut is an
/// `Unavailable` error for the whole batch (never a wrong per-conversation result), and every
/// conversation of every batch is afterwards stored whole or not at all; the same store
/// writes batches again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_server_killed_mid_batch() {
    let Some(mut servers) = LocalServers::new("redis-batch-faults", &["redis-server", "redis-cli"])
    else {
        return;
    };
    let (server, api) = durable_single(&mut servers).await;
    let events: Vec<Event> = (0..20)
        .map(|n| Event::bot(format!("event {n}")).at(1_700_000_000.0 + f64::from(n)))
        .collect();
    // Batch number -> its ids and what it returned (per conversation, or the whole batch's
    // error).
    type Outcome = Result<Vec<Result<u64, ErrorKind>>, (bool, String)>;
    type Batches = Arc<Mutex<Vec<(Vec<String>, Outcome)>>>;
    let done: Batches = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let (api, events, done, stop) = (api.clone(), events.clone(), done.clone(), stop.clone());
        tokio::spawn(async move {
            for round in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let ids: Vec<String> = (0..200).map(|n| format!("b{round}-{n}")).collect();
                let batch: Vec<BatchAppend<'_>> = ids
                    .iter()
                    .map(|id| BatchAppend {
                        sender_id: id,
                        expected_version: 0,
                        events: &events,
                    })
                    .collect();
                let outcome = bounded("a batch", api.append_batch(&batch))
                    .await
                    .map(|results| {
                        results
                            .into_iter()
                            .map(|result| result.map_err(|e| e.kind()))
                            .collect()
                    })
                    .map_err(|error| (error.is_temporary(), format!("{error:?}")));
                done.lock().expect("log").push((ids, outcome));
            }
        })
    };
    let settled = |from: usize, count: usize| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + PROGRESS;
            while done.lock().expect("log")[from..]
                .iter()
                .filter(|(_, outcome)| outcome.is_ok())
                .count()
                < count
            {
                assert!(Instant::now() < deadline, "no progress");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    settled(0, 3).await;
    tokio::task::block_in_place(|| servers.kill(server));
    tokio::time::sleep(MIN_OUTAGE).await;
    tokio::task::block_in_place(|| servers.restart(server));
    let after = done.lock().expect("log").len();
    settled(after, 3).await;
    stop.store(true, Ordering::SeqCst);
    runner.await.expect("the batches");

    let done = std::mem::take(&mut *done.lock().expect("log"));
    let whole_failures: Vec<&(bool, String)> = done
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().err())
        .collect();
    assert!(
        !whole_failures.is_empty(),
        "no batch failed while the server was down"
    );
    for (temporary, error) in &whole_failures {
        assert!(temporary, "not temporary: {error}");
    }
    let (mut stored, mut absent) = (0, 0);
    for (ids, outcome) in &done {
        for (n, id) in ids.iter().enumerate() {
            let read = bounded("a read", api.read(id, ReadScope::All))
                .await
                .expect("read");
            match &read {
                Some(conversation) => {
                    assert_eq!(conversation.events, events, "{id} is not whole");
                    stored += 1;
                }
                None => absent += 1,
            }
            if let Ok(results) = outcome {
                match &results[n] {
                    Ok(version) => {
                        assert_eq!(*version, 20);
                        assert!(read.is_some(), "{id} was acknowledged but is not stored");
                    }
                    // A reply lost in the kill: the resent script found the append done.
                    Err(ErrorKind::Conflict) => assert!(read.is_some(), "{id}"),
                    Err(kind) => assert_eq!(*kind, ErrorKind::Unavailable, "{id}"),
                }
            }
        }
    }
    eprintln!(
        "{} batches, {} failed whole; {stored} conversations stored, {absent} not",
        done.len(),
        whole_failures.len()
    );
}
