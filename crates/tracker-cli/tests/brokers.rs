//! `tracker export --to-broker`: Rasa's `rasa export` against real brokers — RabbitMQ
//! (`TRACKER_TEST_RABBITMQ_URL`), the file broker, the SQL broker on SQLite and a
//! Kafka-protocol server (`TRACKER_TEST_KAFKA_URL`) — from a database Rasa 3.6.21's own SQL
//! tracker store wrote.
//!
//! `golden/export.json` (made by `golden/generate_export.py` with Rasa's own `Exporter`) holds
//! that database (Rasa's DDL and rows) and what Rasa's export published for four option sets.
//! Rasa walks conversations in the order of a Python set; these tests compare each
//! conversation's messages in order, byte for byte, and check that the whole export is in
//! timestamp order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracker_store::Event;
use tracker_store::sql::diesel::{
    self, Connection as _, RunQueryDsl, connection::SimpleConnection, sql_types,
};
use tracker_testkit::rabbitmq::{self, Received, lapin::Connection};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/export.json");
const PROCESS_ID_HEADER: &str = "rasa-export-process-id";

// ---------------------------------------------------------------------------------------------
// The golden export

/// A row of Rasa's `events` table: `sender_id`, `type_name`, `timestamp`, `intent_name`,
/// `action_name`, `data`.
type RasaRow = (
    String,
    String,
    Option<f64>,
    Option<String>,
    Option<String>,
    String,
);

#[derive(Debug, serde::Deserialize)]
struct Golden {
    rasa_version: String,
    ddl: Vec<String>,
    rows: Vec<RasaRow>,
    cases: BTreeMap<String, Case>,
}

#[derive(Debug, serde::Deserialize)]
struct Case {
    options: BTreeMap<String, Value>,
    published: Vec<Published>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Published {
    sender_id: String,
    body: String,
}

fn golden() -> Golden {
    let golden: Golden =
        serde_json::from_str(&std::fs::read_to_string(GOLDEN).expect("golden file"))
            .expect("golden JSON");
    assert_eq!(golden.rasa_version, "3.6.21");
    assert_eq!(golden.cases.len(), 4, "cases missing from the golden file");
    golden
}

impl Case {
    /// The case's options as `tracker export` arguments.
    fn args(&self) -> Vec<String> {
        self.options
            .iter()
            .map(|(name, value)| match name.as_str() {
                "minimum_timestamp" => format!("--minimum-timestamp={value}"),
                "maximum_timestamp" => format!("--maximum-timestamp={value}"),
                "offset_timestamps_by_seconds" => format!("--offset-timestamps-by-seconds={value}"),
                "requested_conversation_ids" => {
                    let ids: Vec<&str> = value
                        .as_array()
                        .expect("ids")
                        .iter()
                        .map(|id| id.as_str().expect("id"))
                        .collect();
                    format!("--conversation-ids={}", ids.join(","))
                }
                other => panic!("unknown option {other}"),
            })
            .collect()
    }
}

/// Rasa's database: its DDL and its rows, exactly as Rasa's `SQLTrackerStore` wrote them.
fn rasa_database(path: &Path, golden: &Golden) {
    let mut connection =
        diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    for statement in &golden.ddl {
        connection.batch_execute(statement).expect("Rasa's DDL");
    }
    for (sender_id, type_name, timestamp, intent_name, action_name, data) in &golden.rows {
        diesel::sql_query(
            "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind::<sql_types::Text, _>(sender_id)
        .bind::<sql_types::Text, _>(type_name)
        .bind::<sql_types::Nullable<sql_types::Double>, _>(timestamp)
        .bind::<sql_types::Nullable<sql_types::Text>, _>(intent_name)
        .bind::<sql_types::Nullable<sql_types::Text>, _>(action_name)
        .bind::<sql_types::Text, _>(data)
        .execute(&mut connection)
        .expect("Rasa's row");
    }
}

/// A directory with Rasa's database and the store's `endpoints.yml` reading it.
struct Setup {
    /// Deleted when the setup is dropped (when the setup owns its directory).
    _dir: Option<tempfile::TempDir>,
    dir: PathBuf,
    endpoints: PathBuf,
    database: PathBuf,
}

fn setup_from_golden(golden: &Golden) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let database = path.join("rasa.db");
    rasa_database(&database, golden);
    let endpoints = write(
        &path,
        "endpoints.yml",
        "tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: rasa.db\n",
    );
    Setup {
        _dir: Some(dir),
        dir: path,
        endpoints,
        database,
    }
}

/// Runs `tracker --endpoints <store> export --to-broker <broker> <args>`; its success and
/// standard error.
fn export(setup: &Setup, broker: &Path, args: &[String]) -> (bool, String) {
    let mut command = tracker(&setup.dir);
    command
        .arg("--endpoints")
        .arg(&setup.endpoints)
        .args(["export", "--to-broker"])
        .arg(broker)
        .args(args);
    let output = command.output().expect("runs");
    (
        output.status.success(),
        String::from_utf8(output.stderr).expect("UTF-8"),
    )
}

/// The same, from async code.
async fn export_async(setup: &Setup, broker: &Path, args: &[String]) -> (bool, String) {
    let mut command = tracker(&setup.dir);
    command
        .arg("--endpoints")
        .arg(&setup.endpoints)
        .args(["export", "--to-broker"])
        .arg(broker)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("the command's thread");
    (
        output.status.success(),
        String::from_utf8(output.stderr).expect("UTF-8"),
    )
}

fn timestamp(body: &str) -> f64 {
    let value: Value = serde_json::from_str(body).expect("a JSON body");
    value["timestamp"].as_f64().expect("a timestamp")
}

fn sender(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("a JSON body");
    value["sender_id"].as_str().expect("a sender_id").to_owned()
}

/// Each conversation's bodies, in order.
fn by_conversation(messages: &[Published]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in messages {
        grouped
            .entry(message.sender_id.clone())
            .or_default()
            .push(message.body.clone());
    }
    grouped
}

/// `bodies` (as a broker received them, in order) are what Rasa published in `case`: each
/// conversation's bodies byte for byte and in order, and all of them in timestamp order.
fn assert_rasas_export(case_name: &str, case: &Case, bodies: &[String]) {
    let received: Vec<Published> = bodies
        .iter()
        .map(|body| Published {
            sender_id: sender(body),
            body: body.clone(),
        })
        .collect();
    assert_eq!(
        received.len(),
        case.published.len(),
        "{case_name}: number of messages"
    );
    assert_eq!(
        by_conversation(&received),
        by_conversation(&case.published),
        "{case_name}: each conversation's bodies, in order"
    );
    for pair in bodies.windows(2) {
        assert!(
            timestamp(&pair[0]) <= timestamp(&pair[1]),
            "{case_name}: not in timestamp order:\n{}\n{}",
            pair[0],
            pair[1]
        );
    }
}

/// The sequence numbers each conversation's events have in Rasa's rows (1, 2, ... in `id`
/// order), sorted by timestamp as the export orders them.
fn expected_seqs(golden: &Golden) -> HashMap<String, Vec<u64>> {
    let mut stored: HashMap<String, Vec<f64>> = HashMap::new();
    for (sender_id, _, timestamp, _, _, _) in &golden.rows {
        stored
            .entry(sender_id.clone())
            .or_default()
            .push(timestamp.expect("a timestamp"));
    }
    stored
        .into_iter()
        .map(|(sender_id, timestamps)| {
            let mut seqs: Vec<u64> = (1..=timestamps.len() as u64).collect();
            seqs.sort_by(|a, b| {
                timestamps[*a as usize - 1]
                    .partial_cmp(&timestamps[*b as usize - 1])
                    .expect("finite")
            });
            (sender_id, seqs)
        })
        .collect()
}

fn file_broker(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let endpoints = write(
        dir,
        &format!("{name}-broker.yml"),
        &format!(
            "event_broker:\n  type: file\n  path: {}\n",
            yaml_string(&log.display().to_string())
        ),
    );
    (endpoints, log)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// This test's exchange and queue.
struct Names {
    exchange: String,
    queue: String,
}

impl Names {
    fn new() -> Self {
        Self {
            exchange: unique("tc_exchange"),
            queue: unique("tc_queue"),
        }
    }

    /// A broker `endpoints.yml` in `dir` for RabbitMQ at `url`.
    fn endpoints(&self, dir: &Path, url: &str) -> PathBuf {
        write(
            dir,
            &format!("{}.yml", self.queue),
            &format!(
                "event_broker:\n  type: pika\n  url: {}\n  username: guest\n  password: guest\n  \
                 exchange_name: {}\n  queues:\n    - {}\n  connection_attempts: 2\n  \
                 retry_delay_in_seconds: 0.1\n",
                yaml_string(url),
                self.exchange,
                self.queue
            ),
        )
    }

    async fn delete(&self, connection: &Connection) {
        rabbitmq::delete(
            connection,
            &self.exchange,
            std::slice::from_ref(&self.queue),
        )
        .await;
    }
}

/// The process id of a run: the same on every message, 32 lowercase hex digits (a UUID4).
fn process_id(messages: &[Received]) -> String {
    let id = messages
        .first()
        .expect("messages")
        .text_header(PROCESS_ID_HEADER);
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(id.as_bytes()[12], b'4', "a version 4 UUID: {id}");
    for message in messages {
        assert_eq!(message.text_header(PROCESS_ID_HEADER), id, "one id per run");
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_rasas_database_to_rabbitmq_as_rasa_does() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let golden = golden();
    let setup = setup_from_golden(&golden);
    let before = std::fs::read(&setup.database).expect("the database");
    let seqs = expected_seqs(&golden);
    let mut process_ids = Vec::new();
    for (name, case) in &golden.cases {
        let names = Names::new();
        let broker = names.endpoints(&setup.dir, &rabbitmq::url());
        let (ok, stderr) = export_async(&setup, &broker, &case.args()).await;
        assert!(ok, "{name}: {stderr}");
        let received = rabbitmq::drain(
            &connection,
            &names.queue,
            case.published.len(),
            Duration::from_secs(20),
        )
        .await;
        let bodies: Vec<String> = received.iter().map(|m| m.body.clone()).collect();
        assert_rasas_export(name, case, &bodies);
        process_ids.push(process_id(&received));
        for message in &received {
            assert_eq!(*message.properties.delivery_mode(), Some(2), "persistent");
            assert_eq!(message.text_header("sender_id"), sender(&message.body));
        }
        if name == "all" {
            // The `seq` header is the event's position in its conversation as Rasa stored it.
            let mut got: HashMap<String, Vec<u64>> = HashMap::new();
            for message in &received {
                got.entry(sender(&message.body))
                    .or_default()
                    .push(message.seq());
            }
            assert_eq!(got, seqs, "seq headers");
        }
        names.delete(&connection).await;
    }
    process_ids.sort();
    process_ids.dedup();
    assert_eq!(
        process_ids.len(),
        golden.cases.len(),
        "a new process id per run"
    );
    assert_eq!(
        std::fs::read(&setup.database).expect("the database"),
        before,
        "the export changed Rasa's database"
    );
}

#[test]
fn exports_rasas_database_to_the_file_and_sql_brokers_as_rasa_does() {
    let golden = golden();
    let setup = setup_from_golden(&golden);
    for (name, case) in &golden.cases {
        let (broker, log) = file_broker(&setup.dir, name);
        let (ok, stderr) = export(&setup, &broker, &case.args());
        assert!(ok, "{name}: {stderr}");
        assert_rasas_export(name, case, &lines(&log));
    }

    // The SQL broker on SQLite: one row per event, `id` in the export's order.
    let sql_broker = write(
        &setup.dir,
        "sql-broker.yml",
        "event_broker:\n  type: sql\n  dialect: sqlite\n  db: broker-events.db\n",
    );
    let case = &golden.cases["all"];
    let (ok, stderr) = export(&setup, &sql_broker, &case.args());
    assert!(ok, "{stderr}");
    let rows = broker_rows(&setup.dir.join("broker-events.db"));
    for (sender_id, data) in &rows {
        assert_eq!(*sender_id, sender(data));
    }
    let bodies: Vec<String> = rows.into_iter().map(|(_, data)| data).collect();
    assert_rasas_export("all (sql)", case, &bodies);
}

#[derive(diesel::QueryableByName)]
struct BrokerRow {
    #[diesel(sql_type = sql_types::Text)]
    sender_id: String,
    #[diesel(sql_type = sql_types::Text)]
    data: String,
}

/// The SQL broker's rows, in `id` order.
fn broker_rows(path: &Path) -> Vec<(String, String)> {
    let mut connection =
        diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
    diesel::sql_query("SELECT sender_id, data FROM events ORDER BY id")
        .load::<BrokerRow>(&mut connection)
        .expect("rows")
        .into_iter()
        .map(|row| (row.sender_id, row.data))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Resuming after a failure

/// `conversations` conversations of `events` events each, their timestamps interleaved (and
/// tied across conversations), in Rasa's SQLite layout; the store's endpoints.yml.
fn interleaved_database(dir: &Path, conversations: usize, events: usize) -> Setup {
    let dir_path = dir.to_path_buf();
    let database = dir_path.join("rasa.db");
    let data: Vec<(String, Vec<Event>)> = (0..conversations)
        .map(|c| {
            let name = format!("conversation-{c:02}");
            let list = (0..events)
                .map(|e| {
                    // Pairs of conversations share timestamps: ties across conversations.
                    let at = 1_700_000_000.0 + e as f64 + (c / 2) as f64 * 0.001;
                    if e % 3 == 0 {
                        Event::user(format!("message {e} of {c}"), "inform", 0.9).at(at)
                    } else if e % 3 == 1 {
                        Event::action("utter_ok").at(at)
                    } else {
                        Event::action("action_listen").at(at)
                    }
                })
                .collect();
            (name, list)
        })
        .collect();
    rasa_sqlite(&database, &data);
    let endpoints = write(
        &dir_path,
        "endpoints.yml",
        "tracker_store:\n  type: sqlite\n  db: rasa.db\n",
    );
    Setup {
        _dir: None,
        dir: dir_path,
        endpoints,
        database,
    }
}

/// The resume command `stderr` prints, as `sh` words with the binary's path.
fn resume_command(stderr: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("tracker ") && line.contains("--to-broker"))
        .unwrap_or_else(|| panic!("no resume command in:\n{stderr}"));
    let binary = assert_cmd::cargo::cargo_bin("tracker");
    format!("{} --quiet{}", binary.display(), &line["tracker".len()..])
}

fn run_shell(dir: &Path, command: &str) -> (bool, String) {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    (
        output.status.success(),
        String::from_utf8(output.stderr).expect("UTF-8"),
    )
}

/// The number of confirmed events a failed export reports.
fn confirmed_count(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|line| line.contains(" events were published and confirmed"))
        .unwrap_or_else(|| panic!("no count in:\n{stderr}"));
    line.split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

/// The value of `--minimum-timestamp=` in a command.
fn minimum_of(command: &str) -> Option<f64> {
    command
        .split_whitespace()
        .find_map(|word| word.strip_prefix("--minimum-timestamp="))
        .map(|value| value.parse().expect("a number"))
}

#[test]
fn a_failure_mid_export_prints_the_command_that_resumes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = interleaved_database(dir.path(), 12, 150);
    // The full export, for reference.
    let (reference, reference_log) = file_broker(&setup.dir, "reference");
    let (ok, stderr) = export(&setup, &reference, &[]);
    assert!(ok, "{stderr}");
    let all = lines(&reference_log);
    assert_eq!(all.len(), 12 * 150);

    // An SQL broker whose table refuses rows once it holds 1200 (a trigger in the real
    // database): the third batch of 500 fails as a whole, after two confirmed ones.
    let broker_db = setup.dir.join("broker.db");
    let mut connection =
        diesel::SqliteConnection::establish(&broker_db.display().to_string()).expect("open");
    connection
        .batch_execute(
            "CREATE TABLE events (id INTEGER NOT NULL, sender_id VARCHAR(255), data TEXT, \
             PRIMARY KEY (id)); \
             CREATE TRIGGER full BEFORE INSERT ON events \
             WHEN (SELECT count(*) FROM events) >= 1200 \
             BEGIN SELECT RAISE(ABORT, 'the table is full'); END;",
        )
        .expect("the broker's table with its trigger");
    let broker = write(
        &setup.dir,
        "sql-broker.yml",
        "event_broker:\n  type: sql\n  db: broker.db\n",
    );
    let (ok, stderr) = export(&setup, &broker, &[]);
    assert!(!ok, "the export must fail: {stderr}");
    assert!(stderr.contains("the table is full"), "{stderr}");
    assert_eq!(confirmed_count(&stderr), 1000, "{stderr}");
    assert!(stderr.contains("1000 of 1800 events"), "{stderr}");
    let first: Vec<String> = broker_rows(&broker_db).into_iter().map(|r| r.1).collect();
    assert_eq!(
        first,
        all[..1000],
        "the first run published a prefix, in order"
    );

    let command = resume_command(&stderr);
    let minimum = minimum_of(&command).expect("a minimum timestamp");
    assert_eq!(
        minimum,
        timestamp(&all[999]),
        "the last confirmed event's timestamp"
    );

    connection
        .batch_execute("DROP TRIGGER full;")
        .expect("the table accepts rows again");
    let (ok, stderr) = run_shell(&setup.dir, &command);
    assert!(ok, "{command}: {stderr}");
    let rows: Vec<String> = broker_rows(&broker_db).into_iter().map(|r| r.1).collect();
    let second = &rows[1000..];
    let expected: Vec<String> = all
        .iter()
        .filter(|body| timestamp(body) >= minimum)
        .cloned()
        .collect();
    assert_eq!(
        second, expected,
        "the second run: every event from the minimum on"
    );
    // Nothing is missing; the only copies are events at the resumption timestamp.
    let mut unique = rows.clone();
    unique.sort();
    unique.dedup();
    let mut everything = all.clone();
    everything.sort();
    assert_eq!(unique, everything);
    for body in &rows[1000..] {
        if first.contains(body) {
            assert_eq!(
                timestamp(body),
                minimum,
                "a copy at another timestamp: {body}"
            );
        }
    }
}

#[test]
fn a_broker_failing_at_once_resumes_with_the_same_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = interleaved_database(dir.path(), 2, 5);
    // Writes to /dev/full fail (no space left on the device).
    write(
        &setup.dir,
        "full.yml",
        "event_broker:\n  type: file\n  path: /dev/full\n",
    );
    let args = vec![
        "--minimum-timestamp=1700000001".to_owned(),
        "--maximum-timestamp=1700000004.5".to_owned(),
        "--conversation-ids=conversation-01,conversation-00".to_owned(),
        "--offset-timestamps-by-seconds=-60".to_owned(),
    ];
    let (ok, stderr) = export(&setup, Path::new("full.yml"), &args);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("none of the 8 events was confirmed"),
        "{stderr}"
    );
    let command = resume_command(&stderr);
    assert!(
        command.ends_with(
            " --to-broker full.yml --minimum-timestamp=1700000001.0 \
             --maximum-timestamp=1700000004.5 --conversation-ids conversation-01,conversation-00 \
             --offset-timestamps-by-seconds=-60"
        ),
        "{command}"
    );
    // The same command to a file that can be written publishes the selection.
    let (good, log) = file_broker(&setup.dir, "good");
    let (ok, stderr) = run_shell(
        &setup.dir,
        &command.replace("full.yml", &good.display().to_string()),
    );
    assert!(ok, "{stderr}");
    let published = lines(&log);
    assert_eq!(published.len(), 8);
    for body in &published {
        let shifted = timestamp(body) + 60.0;
        assert!(
            (1_700_000_001.0..1_700_000_004.5).contains(&shifted),
            "{body}"
        );
    }
}

/// A TCP proxy to RabbitMQ that drops its connections once `limit` bytes went from the client
/// to the server; `unlimited()` lets later connections through whole.
struct CuttingProxy {
    port: u16,
    limit: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
}

impl CuttingProxy {
    async fn start(upstream: String, limit: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let limit = Arc::new(AtomicU64::new(limit));
        let cut = Arc::new(AtomicBool::new(false));
        let (limit_task, cut_task) = (limit.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let limit = limit_task.load(Ordering::SeqCst);
                tokio::spawn(relay(client, server, limit, cut_task.clone()));
            }
        });
        Self { port, limit, cut }
    }

    fn unlimited(&self) {
        self.limit.store(u64::MAX, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

/// Copies both ways; stops both once `limit` bytes went from `client` to `server`.
async fn relay(client: TcpStream, server: TcpStream, limit: u64, cut: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut sent = 0u64;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            let allowed = (limit.saturating_sub(sent)).min(read as u64) as usize;
            if server_write.write_all(&buffer[..allowed]).await.is_err() {
                return;
            }
            sent += allowed as u64;
            if allowed < read {
                cut.store(true, Ordering::SeqCst);
                return;
            }
        }
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    // The first side to finish ends the connection (both halves are dropped).
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_connection_lost_mid_export_is_resumed_without_gaps() {
    let Some(connection) = rabbitmq::connect().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = interleaved_database(dir.path(), 12, 150);
    let (reference, reference_log) = file_broker(&setup.dir, "reference");
    let (ok, stderr) = export_async(&setup, &reference, &[]).await;
    assert!(ok, "{stderr}");
    let all = lines(&reference_log);
    let body_bytes: u64 = all.iter().map(|body| body.len() as u64).sum();

    // Cut the connection after as many bytes as the bodies take: with each message's frames
    // and headers on top, that is in the second or third of the four batches.
    let proxy = CuttingProxy::start(rabbitmq::address(), body_bytes).await;
    let names = Names::new();
    let broker = names.endpoints(&setup.dir, &proxy.url());
    let (ok, stderr) = export_async(&setup, &broker, &[]).await;
    assert!(
        !ok,
        "the export must fail when the connection is cut: {stderr}"
    );
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the proxy cut the connection"
    );
    let confirmed = confirmed_count(&stderr);
    assert!(
        confirmed > 0 && confirmed < all.len(),
        "cut mid-export: {stderr}"
    );
    let command = resume_command(&stderr);
    let minimum = minimum_of(&command).expect("some events were confirmed before the cut");
    assert_eq!(
        minimum,
        timestamp(&all[confirmed - 1]),
        "the last confirmed event"
    );

    proxy.unlimited();
    let (ok, stderr) = tokio::task::spawn_blocking({
        let dir = setup.dir.clone();
        move || run_shell(&dir, &command)
    })
    .await
    .expect("thread");
    assert!(ok, "{stderr}");

    let received = rabbitmq::drain(
        &connection,
        &names.queue,
        all.len(),
        Duration::from_secs(20),
    )
    .await;
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for message in &received {
        let id = message.text_header(PROCESS_ID_HEADER);
        match runs.last_mut() {
            Some((run, bodies)) if *run == id => bodies.push(message.body.clone()),
            _ => runs.push((id, vec![message.body.clone()])),
        }
    }
    assert_eq!(runs.len(), 2, "two runs, one after the other");
    let (first, second) = (&runs[0].1, &runs[1].1);
    // Every confirmed message is there; some of the batch that failed may be too.
    assert!(
        first.len() >= confirmed && first.len() < all.len(),
        "{}",
        first.len()
    );
    assert_eq!(
        first[..],
        all[..first.len()],
        "the first run: a prefix, in order"
    );
    let expected: Vec<String> = all
        .iter()
        .filter(|body| timestamp(body) >= minimum)
        .cloned()
        .collect();
    assert_eq!(
        *second, expected,
        "the second run: every event from the minimum on"
    );
    names.delete(&connection).await;
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn configuration_errors_name_what_is_wrong_and_publish_nothing() {
    let golden = golden();
    let setup = setup_from_golden(&golden);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no section",
            "tracker_store:\n  type: sql\n".to_owned(),
            "has no `event_broker:` section",
        ),
        (
            "unknown type",
            "event_broker:\n  type: acme.brokers.MyBroker\n".to_owned(),
            "unknown event broker type \"acme.brokers.MyBroker\"",
        ),
        (
            "unknown key",
            "event_broker:\n  type: file\n  path: x.log\n  colour: blue\n".to_owned(),
            "colour",
        ),
        (
            "missing variable",
            "event_broker:\n  type: file\n  path: ${TRACKER_SURELY_UNSET_VARIABLE}\n".to_owned(),
            "TRACKER_SURELY_UNSET_VARIABLE",
        ),
        (
            "closed port",
            "event_broker:\n  url: 127.0.0.1\n  port: 1\n  username: guest\n  password: guest\n  \
             connection_attempts: 1\n"
                .to_owned(),
            "event broker `pika`",
        ),
        (
            "kafka without credentials",
            "event_broker:\n  type: kafka\n  url: 127.0.0.1:1\n".to_owned(),
            "sasl_username",
        ),
    ];
    for (what, yaml, expected) in cases {
        let broker = write(&setup.dir, "broken.yml", &yaml);
        let (ok, stderr) = export(&setup, &broker, &[]);
        assert!(!ok, "{what}: must fail");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(!stderr.contains("published"), "{what}: {stderr}");
    }
    let (broker, log) = file_broker(&setup.dir, "errors");
    for (args, expected) in [
        (
            vec!["--minimum-timestamp=5", "--maximum-timestamp=4"],
            "the maximum timestamp 4.0 is smaller than the minimum timestamp 5.0",
        ),
        (
            vec!["--conversation-ids=nobody,nobody-else"],
            "none of the requested conversations",
        ),
    ] {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let (ok, stderr) = export(&setup, &broker, &args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(lines(&log).is_empty(), "nothing was published");
    // The options belong to --to-broker.
    let output = tracker(&setup.dir)
        .args(["export", "--minimum-timestamp", "1"])
        .output()
        .expect("runs");
    assert!(!output.status.success());

    // An empty store has nothing to export, as in Rasa.
    let empty = write(
        &setup.dir,
        "empty.yml",
        "tracker_store:\n  type: sqlite\n  db: empty.db\n",
    );
    stdout(
        tracker(&setup.dir)
            .arg("--endpoints")
            .arg(&empty)
            .arg("migrate-schema"),
    );
    let output = tracker(&setup.dir)
        .arg("--endpoints")
        .arg(&empty)
        .args(["export", "--to-broker"])
        .arg(&broker)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the tracker store has none"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn requested_conversations_missing_from_the_store_are_warned_about() {
    let golden = golden();
    let setup = setup_from_golden(&golden);
    let (broker, log) = file_broker(&setup.dir, "ids");
    let mut command = loud(&setup.dir);
    let output = command
        .arg("--endpoints")
        .arg(&setup.endpoints)
        .args(["export", "--to-broker"])
        .arg(&broker)
        .arg("--conversation-ids=zz-missing,interleaved-b,aa-missing")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("requested conversations not in the tracker store: aa-missing, zz-missing"),
        "{stderr}"
    );
    assert!(stderr.contains(PROCESS_ID_HEADER), "{stderr}");
    assert!(
        lines(&log)
            .iter()
            .all(|body| sender(body) == "interleaved-b")
    );
    assert_eq!(lines(&log).len(), golden.cases["ids"].published.len());
}

// ---------------------------------------------------------------------------------------------
// Kafka

fn kafka_url() -> String {
    std::env::var("TRACKER_TEST_KAFKA_URL").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

async fn listening(address: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_rasas_database_to_kafka() {
    use tracker_store::brokers::rskafka::client::ClientBuilder;
    use tracker_store::brokers::rskafka::client::partition::UnknownTopicHandling;

    let url = kafka_url();
    if !listening(&url).await {
        tracker_testkit::skip(
            "Kafka",
            &format!("no Kafka-protocol server at {url} (start one with .ci/kafka-server.sh)"),
        );
        return;
    }
    let client = tokio::time::timeout(
        Duration::from_secs(20),
        ClientBuilder::new(vec![url.clone()]).build(),
    )
    .await
    .expect("the test server answers in time")
    .expect("the test server speaks Kafka");
    let topic = unique("tc_topic");
    client
        .controller_client()
        .expect("controller")
        .create_topic(topic.as_str(), 1, 1, 5_000)
        .await
        .expect("topic created");

    let golden = golden();
    let setup = setup_from_golden(&golden);
    let broker = write(
        &setup.dir,
        "kafka.yml",
        &format!(
            "event_broker:\n  type: kafka\n  url: {url}\n  topic: {topic}\n  \
             security_protocol: PLAINTEXT\n"
        ),
    );
    let case = &golden.cases["all"];
    let (ok, stderr) = export_async(&setup, &broker, &case.args()).await;
    assert!(ok, "{stderr}");

    let partition = client
        .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition");
    let mut records = Vec::new();
    let mut offset = 0;
    while records.len() < case.published.len() {
        let (batch, _) = partition
            .fetch_records(offset, 1..10_000_000, 1_000)
            .await
            .expect("records");
        if batch.is_empty() {
            break;
        }
        offset = batch.last().map_or(offset, |r| r.offset + 1);
        records.extend(batch.into_iter().map(|r| r.record));
    }
    let bodies: Vec<String> = records
        .iter()
        .map(|record| String::from_utf8(record.value.clone().expect("a value")).expect("UTF-8"))
        .collect();
    assert_rasas_export("all (kafka)", case, &bodies);
    let ids: Vec<&Vec<u8>> = records
        .iter()
        .map(|record| {
            record
                .headers
                .get(PROCESS_ID_HEADER)
                .expect("the process id header")
        })
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] == pair[1]),
        "one process id per run"
    );
}
