//! Configuration parity with Rasa: `endpoints.yml` values written as `${VAR}` reach a store as
//! strings, also where the key is a number or a boolean (`port: ${DB_PORT}`), and every backend
//! starts from such a section through `tracker_store::from_endpoints_file`.
//!
//! Each test runs its store in a child process (this test binary again) whose environment
//! holds the variables, as Rasa's would: a test process cannot set its own environment
//! safely. The parent finds the test service and hands the child the section and the values.

use std::process::Command;

use tracker_store::{ErrorKind, Event, StoreConfig};
use tracker_testkit::{Service, service_url};

/// Set in the child process: the `tracker_store:` section to start.
const SECTION_VAR: &str = "TRACKER_PARITY_SECTION";

/// The variables every section reads: booleans and numbers as Rasa's `${...}` gives them.
const COMMON: [(&str, &str); 4] = [
    ("PARITY_TRUE", "true"),
    ("PARITY_FALSE", "false"),
    ("PARITY_ZERO", "0"),
    ("PARITY_FOUR", "4"),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn service(service: Service) -> Option<tracker_testkit::ServiceUrl> {
    runtime().block_on(service_url(service))
}

/// In the child process: starts the store of the section the parent gave through
/// `from_endpoints_file`, and writes, reads and deletes a conversation. Returns whether this
/// is the child.
fn child() -> bool {
    let Ok(section) = std::env::var(SECTION_VAR) else {
        return false;
    };
    let dir = std::env::temp_dir().join(format!("parity-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let endpoints = dir.join("endpoints.yml");
    std::fs::write(&endpoints, format!("tracker_store:\n{section}")).expect("write");
    let config = StoreConfig::from_endpoints_file(&endpoints).expect("the section parses");
    assert!(
        config.keys.values().any(|value| value.is_string()),
        "the values are strings"
    );
    runtime().block_on(async {
        let store = tracker_store::from_endpoints_file(&endpoints)
            .await
            .unwrap_or_else(|error| panic!("the store starts from {section}: {error}"));
        let id = format!("parity-{}", uuid::Uuid::new_v4().simple());
        let events = [
            Event::user("hi", "greet", 1.0).at(1_700_000_000.0),
            Event::bot("hello").at(1_700_000_001.0),
        ];
        let version = store.append(&id, 0, &events).await.expect("append");
        assert_eq!(version, 2);
        let read = store.retrieve(&id).await.expect("read").expect("exists");
        assert_eq!(read.events().len(), 2);
        assert!(store.delete_at(&id, version).await.expect("delete"));
    });
    let _ = std::fs::remove_dir_all(&dir);
    true
}

/// Runs test `name` again in a child process with `section` and the variables `env` (and
/// [`COMMON`]) in its environment, and checks that it passed.
fn in_child(name: &str, section: &str, env: &[(&str, String)]) {
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(SECTION_VAR, section)
        .envs(COMMON)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a child process, with\n{section}\n{stdout}\n{stderr}"
    );
}

/// The parts of a `scheme://user:password@host:port/db?query` URL.
struct Parts {
    user: String,
    password: String,
    host: String,
    port: String,
    db: String,
}

fn parts(url: &str, default_port: &str) -> Parts {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, address) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (host_port, db) = address.split_once('/').unwrap_or((address, ""));
    let (host, port) = host_port
        .rsplit_once(':')
        .unwrap_or((host_port, default_port));
    Parts {
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.to_owned(),
        db: db.to_owned(),
    }
}

/// A server SQL section of `dialect` reaching `parts` through variables, with `more` keys,
/// and the variables.
fn sql_section(dialect: &str, parts: &Parts, more: &str) -> (String, Vec<(&'static str, String)>) {
    let mut section = format!(
        "  type: sql\n  dialect: {dialect}\n  url: ${{PARITY_HOST}}\n  port: ${{PARITY_PORT}}\n  \
         db: ${{PARITY_DB}}\n  username: ${{PARITY_USER}}\n  pool_size: ${{PARITY_FOUR}}\n  \
         pool_timeout: \"10\"\n  query_timeout: \"30\"\n  migrate: ${{PARITY_TRUE}}\n{more}"
    );
    let mut env = vec![
        ("PARITY_HOST", parts.host.clone()),
        ("PARITY_PORT", parts.port.clone()),
        ("PARITY_DB", parts.db.clone()),
        ("PARITY_USER", parts.user.clone()),
    ];
    if !parts.password.is_empty() {
        section.push_str("  password: \"${PARITY_PASSWORD}\"\n");
        env.push(("PARITY_PASSWORD", parts.password.clone()));
    }
    (section, env)
}

#[test]
fn sqlite_starts_from_string_values() {
    const NAME: &str = "sqlite_starts_from_string_values";
    if child() {
        return;
    }
    let db = std::env::temp_dir().join(format!("parity-{}.db", uuid::Uuid::new_v4().simple()));
    // `${...}` and literal quoted strings alike.
    in_child(
        NAME,
        "  type: sqlite\n  db: ${PARITY_FILE}\n  pool_size: \"${PARITY_FOUR}\"\n  \
         pool_timeout: \"5\"\n  query_timeout: \"7.5\"\n  migrate: ${PARITY_TRUE}\n",
        &[("PARITY_FILE", db.display().to_string())],
    );
    let _ = std::fs::remove_file(&db);
}

#[test]
fn an_invalid_string_names_the_key_and_the_type_but_not_the_value() {
    let section =
        "tracker_store:\n  type: sqlite\n  db: \":memory:\"\n  pool_size: \"lots-of-them\"\n";
    let config = StoreConfig::from_endpoints_yaml(section).expect("parses");
    let error = runtime()
        .block_on(tracker_store::Registry::with_builtins().build(&config))
        .expect_err("not a number");
    assert_eq!(error.kind(), ErrorKind::Config);
    let text = error.to_string();
    assert!(text.contains("pool_size"), "{text}");
    assert!(!text.contains("lots-of-them"), "{text}");
}

#[test]
fn postgres_starts_from_string_values() {
    const NAME: &str = "postgres_starts_from_string_values";
    if child() {
        return;
    }
    let Some(postgres) = service(Service::Postgres) else {
        return;
    };
    let (section, env) = sql_section(
        "postgresql",
        &parts(&postgres.url, "5432"),
        "  query:\n    connect_timeout: 10\n",
    );
    in_child(NAME, &section, &env);
}

#[test]
fn mariadb_starts_from_string_values() {
    const NAME: &str = "mariadb_starts_from_string_values";
    if child() {
        return;
    }
    let Some(mysql) = service(Service::Mysql) else {
        return;
    };
    let (section, env) = sql_section("mysql", &parts(&mysql.url, "3306"), "");
    in_child(NAME, &section, &env);
}

#[test]
fn redis_starts_from_string_values() {
    const NAME: &str = "redis_starts_from_string_values";
    if child() {
        return;
    }
    let Some(redis) = service(Service::Redis) else {
        return;
    };
    let parts = parts(&redis.url, "6379");
    let mut env = vec![
        ("PARITY_HOST", parts.host.clone()),
        ("PARITY_PORT", parts.port.clone()),
    ];
    let mut section = "  type: redis\n  url: ${PARITY_HOST}\n  port: ${PARITY_PORT}\n  \
         db: ${PARITY_ZERO}\n  key_prefix: parity\n  record_exp: \"3600\"\n  \
         use_ssl: ${PARITY_FALSE}\n  cluster: \"false\"\n  pool_size: ${PARITY_FOUR}\n  \
         timeout: \"5\"\n"
        .to_owned();
    if !parts.password.is_empty() {
        env.push(("PARITY_PASSWORD", parts.password.clone()));
        section.push_str("  password: \"${PARITY_PASSWORD}\"\n");
    }
    in_child(NAME, &section, &env);
}

#[test]
fn mongo_starts_from_string_values() {
    const NAME: &str = "mongo_starts_from_string_values";
    if child() {
        return;
    }
    let Some(mongo) = service(Service::Mongo) else {
        return;
    };
    let db = format!("parity{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    in_child(
        NAME,
        "  type: mongod\n  url: \"${PARITY_URL}\"\n  db: ${PARITY_DB}\n  \
         ensure_indexes: ${PARITY_TRUE}\n  bucket_events: \"50\"\n  bucket_bytes: \"65536\"\n",
        &[("PARITY_URL", mongo.url.clone()), ("PARITY_DB", db)],
    );
}

#[test]
fn dynamo_starts_from_string_values() {
    const NAME: &str = "dynamo_starts_from_string_values";
    if child() {
        return;
    }
    let Some(dynamo) = service(Service::Dynamo) else {
        return;
    };
    let table = format!("parity{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    in_child(
        NAME,
        "  type: dynamo\n  table_name: ${PARITY_TABLE}\n  region: ${PARITY_REGION}\n  \
         endpoint_url: ${PARITY_URL}\n  migrate: ${PARITY_TRUE}\n",
        &[
            ("PARITY_TABLE", table),
            ("PARITY_REGION", "us-east-1".to_owned()),
            ("PARITY_URL", dynamo.url.clone()),
            // The local server takes any credentials.
            ("AWS_ACCESS_KEY_ID", "parity".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "parity".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ],
    );
}
