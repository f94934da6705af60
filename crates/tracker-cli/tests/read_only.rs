//! Reading changes nothing: `list`, `show`, `export`, `prune --dry-run` and the source side of
//! `migrate --to` and `migrate --from-rasa` leave every byte of an SQLite file, every row and
//! schema object of a PostgreSQL schema and of a MariaDB database, every key of a Redis
//! database (type, expiry, serialised value), every collection, index and document of a
//! MongoDB database and every DynamoDB table (description and items) as they were — the
//! store's own data, and data Rasa 3.6 wrote in its own layout. `migrate-schema` is what
//! changes a schema, and says what it changed.

mod common;

use std::path::Path;

use common::*;
use tracker_store::Event;
use tracker_testkit::Service;

/// Every command that only reads the store of `endpoints` (`None`: the default `rasa.db`),
/// with `id` a conversation it holds; whether each succeeded.
fn read_everything(dir: &Path, endpoints: Option<&Path>, id: &str) -> Vec<bool> {
    read_everything_with(dir, endpoints, id, &[])
}

/// [`read_everything`], every `tracker` run with `env` set.
fn read_everything_with(
    dir: &Path,
    endpoints: Option<&Path>,
    id: &str,
    env: &[(&str, &str)],
) -> Vec<bool> {
    let other = write(
        dir,
        "read-only-destination.yml",
        "tracker_store:\n  type: sqlite\n  db: read-only-destination.db\n",
    );
    let commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--all", "--limit", "1"],
        vec!["show", id, "--include-events", "ALL"],
        vec!["show", id, "--transcript"],
        vec!["export"],
        vec!["prune", "--dry-run", "--inactive-for", "1d"],
    ];
    let mut outcomes: Vec<bool> = commands
        .iter()
        .map(|args| {
            let mut command = tracker(dir);
            command.envs(env.iter().copied());
            if let Some(endpoints) = endpoints {
                command.arg("--endpoints").arg(endpoints);
            }
            command.args(args).output().expect("runs").status.success()
        })
        .collect();
    let mut migrate = tracker(dir);
    migrate.envs(env.iter().copied());
    if let Some(endpoints) = endpoints {
        migrate.arg("--endpoints").arg(endpoints);
    }
    let output = migrate
        .args(["migrate", "--verify", "--to"])
        .arg(&other)
        .output()
        .expect("runs");
    outcomes.push(output.status.success());
    outcomes
}

/// The bytes of an SQLite database, and whether SQLite left a write-ahead log next to it.
fn sqlite_bytes(path: &Path) -> (Vec<u8>, bool) {
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name().expect("a file").to_string_lossy()
    ));
    (
        std::fs::read(path).expect("the database file"),
        wal.exists(),
    )
}

#[test]
fn reading_the_stores_own_sqlite_file_changes_no_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "store.yml",
        "tracker_store:\n  type: sqlite\n  db: store.db\n",
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&endpoints)
            .args(["import", SAMPLE]),
    );
    let before = sqlite_bytes(&dir.join("store.db"));
    let outcomes = read_everything(dir, Some(&endpoints), "restaurant-booking");
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
    assert!(
        before == sqlite_bytes(&dir.join("store.db")),
        "reading changed the SQLite file"
    );
    // The copy happened, into the other store.
    let copied = parse_export(&stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(dir.join("read-only-destination.yml"))
            .arg("export"),
    ));
    assert_eq!(copied.len(), 2);
}

/// Inside a Rasa project — Rasa's own `rasa.db`, the default store — reading commands read
/// Rasa's table as it is, neither migrating it nor changing any byte of the file;
/// `migrate --from-rasa` into that same file is refused; `migrate-schema` is what migrates
/// it, and says so.
#[test]
fn reading_rasas_own_sqlite_file_changes_no_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let conversations = sample();
    let rasa_db = dir.join("rasa.db");
    rasa_sqlite(&rasa_db, &conversations);
    let before = sqlite_bytes(&rasa_db);

    let outcomes = read_everything(dir, None, "restaurant-booking");
    assert!(
        outcomes.iter().all(|ok| *ok),
        "Rasa's table is read as it is: {outcomes:?}"
    );
    assert!(
        before == sqlite_bytes(&rasa_db),
        "reading Rasa's database changed it"
    );

    // Into its own source: refused, and nothing changes.
    let rasa = write(dir, "rasa.yml", "tracker_store:\n  type: SQL\n");
    let error = failure(tracker(dir).args(["migrate", "--from-rasa"]).arg(&rasa));
    assert!(error.contains("migrate-schema"), "{error}");
    let same = write(
        dir,
        "same.yml",
        "tracker_store:\n  type: sql\n  dialect: sqlite\n  db: ./rasa.db\n",
    );
    failure(
        tracker(dir)
            .arg("--endpoints")
            .arg(&same)
            .args(["migrate", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(
        before == sqlite_bytes(&rasa_db),
        "a refused migration changed it"
    );

    // From Rasa's file into another store: the source is only read.
    let new = write(
        dir,
        "new.yml",
        "tracker_store:\n  type: sqlite\n  db: new.db\n",
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&new)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(
        before == sqlite_bytes(&rasa_db),
        "migrating from Rasa's database changed it"
    );

    // migrate-schema migrates Rasa's table in place and says so; then the store reads it.
    let changes = stdout(tracker(dir).arg("migrate-schema"));
    assert!(!changes.trim().is_empty(), "migrations are listed");
    assert!(before != sqlite_bytes(&rasa_db), "the schema was migrated");
    assert!(
        stdout(tracker(dir).arg("migrate-schema")).trim().is_empty(),
        "nothing more to do"
    );
    let exported = parse_export(&stdout(tracker(dir).arg("export")));
    assert_eq!(exported.len(), conversations.len());
    for (name, events) in &exported {
        let (_, expected) = conversations
            .iter()
            .find(|(n, _)| n == name)
            .expect("a sample conversation");
        assert_eq!(texts(events), texts(expected), "{name}");
    }
}

/// A PostgreSQL schema, dumped through the server: its tables' columns, indexes,
/// constraints and every row as text.
async fn dump(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let query = |sql: String| async move {
        client
            .simple_query(&sql)
            .await
            .expect("a catalogue query")
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                        .collect::<Vec<_>>()
                        .join(" | "),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let tables = query(format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' \
         ORDER BY table_name"
    ))
    .await;
    lines.extend(tables.iter().map(|table| format!("table {table}")));
    lines.extend(
        query(format!(
            "SELECT table_name, column_name, data_type, is_nullable, column_default \
             FROM information_schema.columns WHERE table_schema = '{schema}' \
             ORDER BY table_name, ordinal_position"
        ))
        .await,
    );
    lines.extend(
        query(format!(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{schema}' \
             ORDER BY indexname"
        ))
        .await,
    );
    lines.extend(
        query(format!(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE connamespace = '\"{schema}\"'::regnamespace ORDER BY conname"
        ))
        .await,
    );
    for table in &tables {
        lines.extend(
            query(format!(
                "SELECT t::text FROM \"{schema}\".\"{table}\" t ORDER BY 1"
            ))
            .await,
        );
    }
    lines
}

/// Checks that two dumps are the same, showing the first difference (not the whole dumps).
#[track_caller]
fn assert_same_dump(before: &[String], after: &[String], what: &str) {
    if before == after {
        return;
    }
    let at = before
        .iter()
        .zip(after)
        .position(|(a, b)| a != b)
        .unwrap_or(before.len().min(after.len()));
    let cut = |line: Option<&String>| -> String {
        line.map_or("<none>".to_owned(), |line| line.chars().take(300).collect())
    };
    panic!(
        "{what} changed what it read: {} lines before, {} after; line {at} was\n  {}\nand is\n  {}",
        before.len(),
        after.len(),
        cut(before.get(at)),
        cut(after.get(at))
    );
}

/// Rasa's table on PostgreSQL, as Rasa's SQLTrackerStore creates and fills it.
const RASA_POSTGRES_DDL: &str = "
    CREATE SEQUENCE events_id_seq;
    CREATE TABLE events (
        id INTEGER NOT NULL DEFAULT nextval('events_id_seq'),
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp DOUBLE PRECISION,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT,
        CONSTRAINT events_pkey PRIMARY KEY (id)
    );
    ALTER SEQUENCE events_id_seq OWNED BY events.id;
    CREATE INDEX ix_events_sender_id ON events (sender_id);";

/// `text` as an SQL string literal.
fn literal(text: Option<&str>) -> String {
    text.map_or("NULL".to_owned(), |t| {
        format!("'{}'", t.replace('\'', "''"))
    })
}

#[test]
fn reading_postgresql_changes_no_row_and_no_schema() {
    let Some(postgres) = service(Service::Postgres) else {
        return;
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let ours = format!("cli_ro_own_{suffix}");
    let rasas = format!("cli_ro_rasa_{suffix}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres.url, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{ours}\"; CREATE SCHEMA \"{rasas}\"; SET search_path TO \"{rasas}\"; {RASA_POSTGRES_DDL}"
            ))
            .await
            .expect("Rasa's table");
        let conversations = sample();
        let longest = conversations.iter().map(|c| c.1.len()).max().unwrap_or(0);
        let mut inserts = String::new();
        for index in 0..longest {
            for (name, events) in &conversations {
                let Some(event) = events.get(index) else {
                    continue;
                };
                inserts.push_str(&format!(
                    "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) \
                     VALUES ({}, {}, {}, {}, {}, {});",
                    literal(Some(name)),
                    literal(Some(event.type_name())),
                    event.timestamp,
                    literal(event.intent_name()),
                    literal(event.name()),
                    literal(Some(&event.to_rasa_json())),
                ));
            }
        }
        client.batch_execute(&inserts).await.expect("Rasa's rows");
        client
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let section = |schema: &str| {
        format!(
            "tracker_store:\n  type: postgresql\n  url: {}\n  schema: {schema}\n",
            yaml_string(&postgres.url)
        )
    };
    let own = write(dir, "own.yml", &section(&ours));
    let rasa = write(dir, "rasa.yml", &section(&rasas));

    // The store's own schema, set up by an import.
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&own)
            .args(["import", SAMPLE]),
    );
    let before = runtime.block_on(dump(&client, &ours));
    assert!(before.len() > 100, "the dump holds the rows: {before:?}");
    let outcomes = read_everything(dir, Some(&own), "restaurant-booking");
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
    assert_same_dump(
        &before,
        &runtime.block_on(dump(&client, &ours)),
        "reading the store",
    );

    // Rasa's schema: read commands, and migrating from it, change nothing.
    let before = runtime.block_on(dump(&client, &rasas));
    let outcomes = read_everything(dir, Some(&rasa), "restaurant-booking");
    assert!(
        outcomes.iter().all(|ok| *ok),
        "Rasa's table is read as it is: {outcomes:?}"
    );
    let into = write(
        dir,
        "into.yml",
        "tracker_store:\n  type: sqlite\n  db: into.db\n",
    );
    stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&into)
            .args(["migrate", "--verify", "--from-rasa"])
            .arg(&rasa),
    );
    assert_same_dump(
        &before,
        &runtime.block_on(dump(&client, &rasas)),
        "reading Rasa's table, or migrating from it,",
    );
    // Into itself: refused.
    let error = failure(
        tracker(dir)
            .arg("--endpoints")
            .arg(&rasa)
            .args(["migrate", "--from-rasa"])
            .arg(&rasa),
    );
    assert!(error.contains("itself"), "{error}");
    assert_same_dump(
        &before,
        &runtime.block_on(dump(&client, &rasas)),
        "a refused migration",
    );
    // migrate-schema changes it, in place, and lists what it did.
    let changes = stdout(
        tracker(dir)
            .arg("--endpoints")
            .arg(&rasa)
            .arg("migrate-schema"),
    );
    assert!(!changes.trim().is_empty());
    assert!(
        before != runtime.block_on(dump(&client, &rasas)),
        "migrate-schema changed the schema"
    );
    let listing = stdout(tracker(dir).arg("--endpoints").arg(&rasa).arg("list"));
    assert!(listing.contains("restaurant-booking"), "{listing}");

    runtime.block_on(async {
        client
            .batch_execute(&format!(
                "DROP SCHEMA \"{ours}\" CASCADE; DROP SCHEMA \"{rasas}\" CASCADE;"
            ))
            .await
            .expect("clean up");
    });
}

/// Whose data a test reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Written by this store (`tracker import`, which sets the schema up).
    Own,
    /// Written in Rasa 3.6's own layout, as Rasa's tracker store of the backend writes it.
    Rasa,
}

impl Origin {
    /// A short tag for namespaces.
    fn tag(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Rasa => "rasa",
        }
    }
}

/// A fresh lowercase hexadecimal token for the namespace of one test.
fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs every command that only reads the store of `endpoints` (each `tracker` run with `env`)
/// — and, for Rasa's data, the source side of `migrate --from-rasa` into an SQLite file —
/// and checks that each succeeded, that `export` shows the sample conversations, and that
/// `dump` gives the same lines before and after. The dump must show the conversations
/// (`restaurant-booking` somewhere), so that an empty dump cannot pass.
fn assert_reading_changes_nothing(
    dir: &Path,
    endpoints: &Path,
    env: &[(&str, &str)],
    origin: Origin,
    what: &str,
    dump: &dyn Fn() -> Vec<String>,
) {
    let before = dump();
    assert!(
        before
            .iter()
            .any(|line| line.contains("restaurant-booking")),
        "{what}: the dump does not show the conversations: {before:?}"
    );
    let outcomes = read_everything_with(dir, Some(endpoints), "restaurant-booking", env);
    assert!(
        outcomes.iter().all(|ok| *ok),
        "{what}: every read-only command succeeds: {outcomes:?}"
    );
    let exported = parse_export(&stdout(
        tracker(dir)
            .envs(env.iter().copied())
            .arg("--endpoints")
            .arg(endpoints)
            .arg("export"),
    ));
    assert_same_shapes(&exported, &sample());
    if origin == Origin::Rasa {
        let into = write(
            dir,
            "from-rasa.yml",
            "tracker_store:\n  type: sqlite\n  db: from-rasa.db\n",
        );
        stdout(
            tracker(dir)
                .envs(env.iter().copied())
                .arg("--endpoints")
                .arg(&into)
                .args(["migrate", "--verify", "--from-rasa"])
                .arg(endpoints),
        );
        let copied = parse_export(&stdout(
            tracker(dir).arg("--endpoints").arg(&into).arg("export"),
        ));
        assert_same_shapes(&copied, &sample());
    }
    assert_same_dump(&before, &dump(), what);
}

/// Imports the sample into the store of `endpoints`, which sets its schema up.
fn import_sample(dir: &Path, endpoints: &Path, env: &[(&str, &str)]) {
    stdout(
        tracker(dir)
            .envs(env.iter().copied())
            .arg("--endpoints")
            .arg(endpoints)
            .args(["import", SAMPLE]),
    );
}

/// The sample's events in Rasa's turn-by-turn order: the conversations interleave, as Rasa
/// writes them one turn at a time.
fn interleaved(conversations: &[(String, Vec<Event>)]) -> Vec<(&str, &Event)> {
    let longest = conversations.iter().map(|c| c.1.len()).max().unwrap_or(0);
    let mut rows = Vec::new();
    for index in 0..longest {
        for (name, events) in conversations {
            if let Some(event) = events.get(index) {
                rows.push((name.as_str(), event));
            }
        }
    }
    rows
}

/// Rasa's value of a conversation in Redis and the JSON text of its dialogue:
/// `json.dumps({"events": [...], "name": id})`.
fn rasa_dialogue_text(name: &str, events: &[Event]) -> String {
    let mut record = tracker_store::JsonMap::new();
    record.insert(
        "events".into(),
        serde_json::Value::Array(events.iter().map(Event::to_value).collect()),
    );
    record.insert("name".into(), serde_json::Value::String(name.to_owned()));
    tracker_store::json::to_python_json(&serde_json::Value::Object(record)).expect("render")
}

// MariaDB

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest.find('?').map_or("", |at| &rest[at..]);
    format!("{scheme}://{}/{database}{query}", &rest[..end])
}

/// A MySQL value as text: strings as strings, other bytes in hex, numbers exactly.
fn mysql_text(value: &mysql_async::Value) -> String {
    match value {
        mysql_async::Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!(
                "0x{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        },
        other => format!("{other:?}"),
    }
}

fn mysql_line(row: mysql_async::Row) -> String {
    row.unwrap()
        .iter()
        .map(mysql_text)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A MariaDB database, dumped through the server: its tables with their `SHOW CREATE
/// TABLE` (columns, keys, indexes, the auto-increment counter), their indexes, triggers and
/// routines from the catalogue, and every row with its exact values (binary protocol).
async fn mariadb_dump(url: &str, database: &str) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .expect("connect to MariaDB");
    let mut lines = Vec::new();
    let tables: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (database,),
        )
        .await
        .expect("the tables");
    for (table, kind) in &tables {
        lines.push(format!("table {table} ({kind})"));
        let create: Vec<mysql_async::Row> = conn
            .query(format!("SHOW CREATE TABLE `{database}`.`{table}`"))
            .await
            .expect("SHOW CREATE TABLE");
        lines.extend(create.into_iter().map(mysql_line));
    }
    let catalogue = [
        "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, INDEX_TYPE, \
         SUB_PART, COLLATION FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
         ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, \
         ACTION_ORDER, ACTION_STATEMENT FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME",
        "SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES \
         WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_NAME",
        "SELECT EVENT_NAME, EVENT_DEFINITION FROM information_schema.EVENTS \
         WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
    ];
    for query in catalogue {
        let rows: Vec<mysql_async::Row> = conn
            .exec(query, (database,))
            .await
            .expect("a catalogue query");
        lines.extend(rows.into_iter().map(mysql_line));
    }
    for (table, _) in &tables {
        let rows: Vec<mysql_async::Row> = conn
            .exec(format!("SELECT * FROM `{database}`.`{table}`"), ())
            .await
            .expect("the rows");
        let mut rows: Vec<String> = rows
            .into_iter()
            .map(|row| format!("{table}: {}", mysql_line(row)))
            .collect();
        rows.sort();
        lines.extend(rows);
    }
    conn.disconnect().await.expect("disconnect");
    lines
}

/// The DDL Rasa's `SQLTrackerStore` runs on MySQL / MariaDB.
const RASA_MYSQL_DDL: &str = "
    CREATE TABLE events (
        id INTEGER NOT NULL AUTO_INCREMENT,
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp FLOAT,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT,
        PRIMARY KEY (id)
    );
    CREATE INDEX ix_events_sender_id ON events (sender_id);";

/// Rasa's INSERT: its six columns, `id` from the auto-increment.
const RASA_INSERT: &str = "INSERT INTO events (sender_id, type_name, timestamp, intent_name, \
                           action_name, data) VALUES (?, ?, ?, ?, ?, ?)";

fn mariadb_case(origin: Origin) {
    let Some(mysql) = service(Service::Mysql) else {
        return;
    };
    use mysql_async::prelude::Queryable;
    let database = format!("cli_ro_{}_{}", origin.tag(), token());
    let url = with_database(&mysql.url, &database);
    let runtime = runtime();
    runtime.block_on(async {
        let mut admin = mysql_async::Conn::from_url(&mysql.url)
            .await
            .expect("connect to MariaDB");
        admin
            .query_drop(format!("CREATE DATABASE `{database}`"))
            .await
            .expect("a database of its own");
        admin.disconnect().await.expect("disconnect");
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "mariadb.yml",
        &format!(
            "tracker_store:\n  type: mysql\n  url: {}\n",
            yaml_string(&url)
        ),
    );
    match origin {
        Origin::Own => import_sample(dir, &endpoints, &[]),
        Origin::Rasa => runtime.block_on(async {
            let mut conn = mysql_async::Conn::from_url(&url)
                .await
                .expect("connect to the database");
            conn.query_drop(RASA_MYSQL_DDL).await.expect("Rasa's table");
            let conversations = sample();
            for (name, event) in interleaved(&conversations) {
                conn.exec_drop(
                    RASA_INSERT,
                    (
                        name,
                        event.type_name(),
                        event.timestamp,
                        event.intent_name(),
                        event.name(),
                        event.to_rasa_json(),
                    ),
                )
                .await
                .expect("Rasa's row");
            }
            conn.disconnect().await.expect("disconnect");
        }),
    }
    assert_reading_changes_nothing(
        dir,
        &endpoints,
        &[],
        origin,
        &format!("reading MariaDB ({origin:?} data)"),
        &|| runtime.block_on(mariadb_dump(&url, &database)),
    );
    runtime.block_on(async {
        let mut admin = mysql_async::Conn::from_url(&mysql.url)
            .await
            .expect("connect to MariaDB");
        admin
            .query_drop(format!("DROP DATABASE `{database}`"))
            .await
            .expect("clean up");
        admin.disconnect().await.expect("disconnect");
    });
}

#[test]
fn reading_the_stores_own_mariadb_database_changes_no_row_and_no_schema() {
    mariadb_case(Origin::Own);
}

#[test]
fn reading_rasas_mariadb_database_changes_no_row_and_no_schema() {
    mariadb_case(Origin::Rasa);
}

// Redis

/// The Redis database each case has to itself (the other tests use database 0 and 1).
fn redis_database(origin: Origin) -> u8 {
    match origin {
        Origin::Own => 13,
        Origin::Rasa => 14,
    }
}

/// Every key of the client's database: its type, its absolute expiry (`PEXPIRETIME`, so that
/// the dump does not change as time passes; -1 without one) and its value as `DUMP`
/// serialises it.
async fn redis_dump(client: &tracker_store::redis::fred::prelude::Client) -> Vec<String> {
    use futures::TryStreamExt;
    use tracker_store::redis::fred::prelude::*;
    let mut keys: Vec<String> = client
        .scan_buffered("*", Some(1000), None)
        .map_ok(|key| key.as_str_lossy().into_owned())
        .try_collect()
        .await
        .expect("SCAN");
    keys.sort();
    let mut lines = Vec::with_capacity(keys.len());
    for key in keys {
        let kind: String = client.r#type(&key).await.expect("TYPE");
        let expires: i64 = client.pexpire_time(&key).await.expect("PEXPIRETIME");
        let value: Value = client.dump(&key).await.expect("DUMP");
        let value = match value {
            Value::Bytes(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            other => format!("{other:?}"),
        };
        lines.push(format!("{key} {kind} expires {expires} {value}"));
    }
    lines
}

fn redis_case(origin: Origin) {
    let Some(redis) = service(Service::Redis) else {
        return;
    };
    use tracker_store::redis::fred::prelude::*;
    let prefix = format!("cliro{}", token());
    let database = redis_database(origin);
    let runtime = runtime();
    let client = runtime.block_on(async {
        let mut config = Config::from_url(&redis.url).expect("url");
        config.database = Some(database);
        let client = Builder::from_config(config).build().expect("client");
        client.init().await.expect("connect");
        client
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    // As Rasa is configured: a prefix, a database, and an expiry Rasa sets on every save.
    let endpoints = write(
        dir,
        "redis.yml",
        &format!(
            "tracker_store:\n  type: redis\n  url: {}\n  db: {database}\n  key_prefix: {prefix}\n  \
             record_exp: 86400\n",
            yaml_string(&redis.url)
        ),
    );
    match origin {
        Origin::Own => import_sample(dir, &endpoints, &[]),
        Origin::Rasa => runtime.block_on(async {
            // Rasa's save: SET <prefix>:tracker:<id> json.dumps(dialogue) EX record_exp.
            for (name, events) in sample() {
                let () = client
                    .set(
                        format!("{prefix}:tracker:{name}"),
                        rasa_dialogue_text(&name, &events),
                        Some(Expiration::EX(86_400)),
                        None,
                        false,
                    )
                    .await
                    .expect("SET");
            }
        }),
    }
    assert_reading_changes_nothing(
        dir,
        &endpoints,
        &[],
        origin,
        &format!("reading Redis ({origin:?} data)"),
        &|| {
            let lines = runtime.block_on(redis_dump(&client));
            assert!(
                lines.iter().all(|line| line.starts_with(&prefix)),
                "database {database} holds only this test's keys (another key is a write \
                 outside the prefix, or another user of the database): {lines:?}"
            );
            lines
        },
    );
    runtime.block_on(async {
        use futures::TryStreamExt;
        let keys: Vec<Key> = client
            .scan_buffered(format!("{prefix}*"), Some(1000), None)
            .try_collect()
            .await
            .expect("SCAN");
        for key in keys {
            let _: i64 = client.del(key).await.expect("clean up");
        }
        client.quit().await.expect("quit");
    });
}

#[test]
fn reading_the_stores_own_redis_keys_changes_none() {
    redis_case(Origin::Own);
}

#[test]
fn reading_rasas_redis_keys_changes_none() {
    redis_case(Origin::Rasa);
}

// MongoDB

/// The raw documents of a cursor.
async fn mongo_documents<T>(
    mut cursor: tracker_store::mongo::mongodb::Cursor<T>,
) -> Vec<tracker_store::mongo::mongodb::bson::Document> {
    use tracker_store::mongo::mongodb::bson::Document;
    let mut documents = Vec::new();
    while cursor.advance().await.expect("the next document") {
        documents.push(Document::try_from(cursor.current()).expect("a document"));
    }
    documents
}

/// A document as canonical extended JSON (every BSON type kept), sorted.
fn mongo_lines(documents: Vec<tracker_store::mongo::mongodb::bson::Document>) -> Vec<String> {
    use tracker_store::mongo::mongodb::bson::Bson;
    let mut lines: Vec<String> = documents
        .into_iter()
        .map(|document| {
            Bson::Document(document)
                .into_canonical_extjson()
                .to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// A MongoDB database: each collection's specification (name, type, options, UUID), its
/// indexes and every document, as canonical extended JSON.
///
/// MongoDB keeps a collection's UUID until it is dropped, which shows a collection dropped
/// and created anew; the stand-in makes up a new one for every listing, so where two
/// listings in a row disagree on it, it is left out.
async fn mongo_dump(client: &tracker_store::mongo::mongodb::Client, db: &str) -> Vec<String> {
    use tracker_store::mongo::mongodb::bson::{Document, doc};
    let database = client.database(db);
    let list = || async {
        mongo_documents(database.list_collections().await.expect("listCollections")).await
    };
    let (first, mut specifications) = (list().await, list().await);
    if first != specifications {
        for specification in &mut specifications {
            if let Ok(info) = specification.get_document_mut("info") {
                info.remove("uuid");
            }
        }
    }
    let mut lines: Vec<String> = mongo_lines(specifications)
        .into_iter()
        .map(|spec| format!("collection {spec}"))
        .collect();
    let mut names = database
        .list_collection_names()
        .await
        .expect("the collections");
    names.sort();
    for name in names {
        let collection = database.collection::<Document>(&name);
        let indexes = mongo_documents(collection.list_indexes().await.expect("listIndexes")).await;
        lines.extend(
            mongo_lines(indexes)
                .into_iter()
                .map(|index| format!("{name} index {index}")),
        );
        let documents = mongo_documents(collection.find(doc! {}).await.expect("find")).await;
        lines.extend(
            mongo_lines(documents)
                .into_iter()
                .map(|document| format!("{name}: {document}")),
        );
    }
    lines
}

/// A JSON value as PyMongo stores it: integers as `Int32` when they fit, else `Int64`; floats
/// as doubles; objects as documents with their key order.
fn pymongo_bson(value: &serde_json::Value) -> tracker_store::mongo::mongodb::bson::Bson {
    use serde_json::Value;
    use tracker_store::mongo::mongodb::bson::Bson;
    match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(*flag),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(int), _) => i32::try_from(int).map_or(Bson::Int64(int), Bson::Int32),
            (None, Some(float)) => Bson::Double(float),
            (None, None) => Bson::Null,
        },
        Value::String(text) => Bson::String(text.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(pymongo_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.iter()
                .map(|(key, value)| (key.clone(), pymongo_bson(value)))
                .collect(),
        ),
    }
}

fn mongo_case(origin: Origin) {
    let Some(mongo) = service(Service::Mongo) else {
        return;
    };
    use tracker_store::mongo::mongodb::bson::{Bson, Document, doc};
    use tracker_store::mongo::mongodb::{self, IndexModel};
    let db = format!("cliro{}{}", origin.tag(), token());
    let runtime = runtime();
    let client = runtime.block_on(async {
        mongodb::Client::with_uri_str(&mongo.url)
            .await
            .expect("client")
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "mongo.yml",
        &format!(
            "tracker_store:\n  type: mongod\n  url: {}\n  db: {db}\n",
            yaml_string(&mongo.url)
        ),
    );
    match origin {
        Origin::Own => import_sample(dir, &endpoints, &[]),
        Origin::Rasa => runtime.block_on(async {
            // Rasa's collection: its `sender_id` index (created at start-up), and a document
            // per conversation, the tracker's state fields in Rasa's order, then `events`.
            let collection = client.database(&db).collection::<Document>("conversations");
            collection
                .create_index(IndexModel::builder().keys(doc! { "sender_id": 1 }).build())
                .await
                .expect("Rasa's index");
            for (name, events) in sample() {
                let last = events.last().expect("events");
                let events: Vec<Bson> = events
                    .iter()
                    .map(|event| pymongo_bson(&event.to_value()))
                    .collect();
                collection
                    .insert_one(doc! {
                        "sender_id": &name,
                        "slots": { "session_started_metadata": Bson::Null },
                        "latest_message": {
                            "intent": { "name": "greet", "confidence": 0.98 },
                            "entities": [],
                            "text": "hi",
                            "message_id": "7f1e0c",
                            "metadata": {},
                        },
                        "latest_event_time": last.timestamp,
                        "followup_action": Bson::Null,
                        "paused": false,
                        "latest_input_channel": "rest",
                        "active_loop": {},
                        "latest_action": { "action_name": "action_listen" },
                        "latest_action_name": "action_listen",
                        "events": events,
                    })
                    .await
                    .expect("Rasa's document");
            }
        }),
    }
    assert_reading_changes_nothing(
        dir,
        &endpoints,
        &[],
        origin,
        &format!("reading MongoDB ({origin:?} data)"),
        &|| runtime.block_on(mongo_dump(&client, &db)),
    );
    runtime.block_on(async {
        client.database(&db).drop().await.expect("clean up");
    });
}

#[test]
fn reading_the_stores_own_mongodb_database_changes_nothing() {
    mongo_case(Origin::Own);
}

#[test]
fn reading_rasas_mongodb_database_changes_nothing() {
    mongo_case(Origin::Rasa);
}

// DynamoDB

/// Python's `Decimal(repr(x)).quantize(Decimal("1e-9"))` (round half to even), as text: how
/// Rasa's `DynamoTrackerStore` turns a float into a DynamoDB number.
fn rasa_decimal(x: f64) -> String {
    let text = format!("{x}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest.to_owned()),
        None => ("", text.clone()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits.as_str(), ""));
    if frac.len() <= 9 {
        return format!("{sign}{int}.{frac:0<9}");
    }
    let mut kept: Vec<u8> = format!("{int}{}", &frac[..9]).into_bytes();
    let rest = &frac[9..];
    let first = rest.as_bytes()[0];
    let round_up = first > b'5'
        || (first == b'5'
            && (rest[1..].bytes().any(|b| b != b'0')
                || (kept.last().copied().unwrap_or(b'0') - b'0') % 2 == 1));
    if round_up {
        let mut at = kept.len();
        loop {
            if at == 0 {
                kept.insert(0, b'1');
                break;
            }
            at -= 1;
            if kept[at] == b'9' {
                kept[at] = b'0';
            } else {
                kept[at] += 1;
                break;
            }
        }
    }
    let kept = String::from_utf8(kept).expect("digits");
    let split = kept.len() - 9;
    format!("{sign}{}.{}", &kept[..split], &kept[split..])
}

/// A JSON value as Rasa 3.6 stores it in DynamoDB (`replace_floats_with_decimals`, then
/// boto3's serialiser): floats rounded to 9 decimals, integers as integers, `None` as `NULL`.
fn rasa_attribute(
    value: &serde_json::Value,
) -> tracker_store::dynamo::aws_sdk_dynamodb::types::AttributeValue {
    use serde_json::Value;
    use tracker_store::dynamo::aws_sdk_dynamodb::types::AttributeValue;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Number(number) if number.is_f64() => {
            AttributeValue::N(rasa_decimal(number.as_f64().expect("a float")))
        }
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(rasa_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(key, value)| (key.clone(), rasa_attribute(value)))
                .collect(),
        ),
    }
}

/// A DynamoDB value as text, map keys sorted (the SDK's maps have no order).
fn dynamo_text(value: &tracker_store::dynamo::aws_sdk_dynamodb::types::AttributeValue) -> String {
    use tracker_store::dynamo::aws_sdk_dynamodb::types::AttributeValue;
    match value {
        AttributeValue::M(map) => {
            let sorted: std::collections::BTreeMap<_, _> = map.iter().collect();
            let entries: Vec<String> = sorted
                .into_iter()
                .map(|(key, value)| format!("{key:?}: {}", dynamo_text(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        AttributeValue::L(values) => format!(
            "[{}]",
            values
                .iter()
                .map(dynamo_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

/// Every DynamoDB table whose name contains `token` (the test's own: a store's table beside
/// Rasa's has Rasa's name in it): its description (key schema, attributes, indexes, billing,
/// status, counts) and time-to-live setting, and every item, read with consistent scans.
async fn dynamo_dump(
    client: &tracker_store::dynamo::aws_sdk_dynamodb::Client,
    token: &str,
) -> Vec<String> {
    let mut tables = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .list_tables()
            .set_exclusive_start_table_name(start)
            .send()
            .await
            .expect("ListTables");
        tables.extend(
            page.table_names()
                .iter()
                .filter(|name| name.contains(token))
                .cloned(),
        );
        start = page.last_evaluated_table_name().map(str::to_owned);
        if start.is_none() {
            break;
        }
    }
    tables.sort();
    let mut lines = Vec::new();
    for table in &tables {
        let description = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTable");
        lines.push(format!("table {table}: {:?}", description.table()));
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTimeToLive");
        lines.push(format!(
            "table {table} ttl: {:?}",
            ttl.time_to_live_description()
        ));
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            for item in page.items() {
                let sorted: std::collections::BTreeMap<_, _> = item.iter().collect();
                let attributes: Vec<String> = sorted
                    .into_iter()
                    .map(|(key, value)| format!("{key:?}: {}", dynamo_text(value)))
                    .collect();
                items.push(format!("{table}: {}", attributes.join(", ")));
            }
            start = page
                .last_evaluated_key()
                .cloned()
                .filter(|key| !key.is_empty());
            if start.is_none() {
                break;
            }
        }
        items.sort();
        lines.extend(items);
    }
    lines
}

fn dynamo_case(origin: Origin) {
    let Some(dynamo) = service(Service::Dynamo) else {
        return;
    };
    use tracker_store::dynamo::aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ProvisionedThroughput,
        ScalarAttributeType,
    };
    use tracker_store::dynamo::{aws_config, aws_sdk_dynamodb};
    let table = format!("cliro{}{}", origin.tag(), token());
    let runtime = runtime();
    let client = runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&dynamo.url)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let endpoints = write(
        dir,
        "dynamo.yml",
        &format!(
            "tracker_store:\n  type: dynamo\n  table_name: {table}\n  region: us-east-1\n  \
             endpoint_url: {}\n",
            yaml_string(&dynamo.url)
        ),
    );
    match origin {
        Origin::Own => import_sample(dir, &endpoints, &AWS_TEST_ENV),
        Origin::Rasa => runtime.block_on(async {
            // Rasa's table as its bootstrap creates it (hash key `sender_id` only, 5/5
            // provisioned), and an item per conversation as its `save` puts it. This store's
            // table beside it does not exist: Rasa's deployment before any setup.
            client
                .create_table()
                .table_name(&table)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("sender_id")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("definition"),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("sender_id")
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("key"),
                )
                .provisioned_throughput(
                    ProvisionedThroughput::builder()
                        .read_capacity_units(5)
                        .write_capacity_units(5)
                        .build()
                        .expect("throughput"),
                )
                .send()
                .await
                .expect("Rasa's table");
            for (name, events) in sample() {
                let events: Vec<AttributeValue> = events
                    .iter()
                    .map(|event| rasa_attribute(&event.to_value()))
                    .collect();
                client
                    .put_item()
                    .table_name(&table)
                    .item("events", AttributeValue::L(events))
                    .item("name", AttributeValue::S(name.clone()))
                    .item("sender_id", AttributeValue::S(name))
                    .send()
                    .await
                    .expect("Rasa's item");
            }
        }),
    }
    let dump = || runtime.block_on(dynamo_dump(&client, &table));
    let tables_before = dump()
        .iter()
        .filter(|line| line.starts_with("table ") && !line.contains(" ttl: "))
        .count();
    assert_eq!(tables_before, 1, "one table to start with");
    assert_reading_changes_nothing(
        dir,
        &endpoints,
        &AWS_TEST_ENV,
        origin,
        &format!("reading DynamoDB ({origin:?} data)"),
        &dump,
    );
    runtime.block_on(async {
        for line in dynamo_dump(&client, &table).await {
            if let Some(name) = line
                .strip_prefix("table ")
                .and_then(|rest| rest.split_once(':'))
                .map(|(name, _)| name.to_owned())
                .filter(|name| !name.contains(' '))
            {
                client
                    .delete_table()
                    .table_name(name)
                    .send()
                    .await
                    .expect("clean up");
            }
        }
    });
}

#[test]
fn reading_the_stores_own_dynamodb_table_changes_nothing() {
    dynamo_case(Origin::Own);
}

/// Rasa's table alone — this store's table beside it not created yet — is read as it is.
#[test]
fn reading_rasas_dynamodb_table_changes_nothing() {
    dynamo_case(Origin::Rasa);
}
