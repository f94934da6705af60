//! Reading changes nothing: `list`, `show`, `export`, `prune --dry-run` and the source side of
//! `migrate --to` and `migrate --from-rasa` leave every byte of an SQLite file and every row
//! and schema object of a PostgreSQL schema as they were — the store's own database, and a
//! database Rasa wrote. `migrate-schema` is what changes a schema, and says what it changed.

mod common;

use std::path::Path;

use common::*;
use tracker_testkit::Service;

/// Every command that only reads the store of `endpoints` (`None`: the default `rasa.db`),
/// with `id` a conversation it holds; whether each succeeded.
fn read_everything(dir: &Path, endpoints: Option<&Path>, id: &str) -> Vec<bool> {
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
            if let Some(endpoints) = endpoints {
                command.arg("--endpoints").arg(endpoints);
            }
            command.args(args).output().expect("runs").status.success()
        })
        .collect();
    let mut migrate = tracker(dir);
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
        "{what} changed the schema: {} lines before, {} after; line {at} was\n  {}\nand is\n  {}",
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
