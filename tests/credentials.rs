//! Passwords and tokens never leak: not in `Debug` of any configuration, not in any error
//! (`Display`, `Debug`, `{:#?}` and every `source()` of the chain), and not in `tracing`
//! output at TRACE level from any target, the drivers' included (their `log` records too).
//!
//! Every secret here holds `S3cr3t` or `p4ss`, looked for case-insensitively, so the
//! percent-encoded and lower-cased forms of a secret count as a leak too; [`NUMERIC`] is a
//! password of digits. Connections go to the local test services (`TRACKER_TEST_*_URL`, as
//! the other tests find them) or to a closed port on 127.0.0.1.
//!
//! A test named `sql_...` shows a leak of `tracker-sql`, where the fix belongs.

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::{Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracker_store::dynamo::aws_config::{self, BehaviorVersion};
use tracker_store::dynamo::aws_sdk_dynamodb::{self, config::Credentials};
use tracker_store::dynamo::{DynamoConfig, DynamoStore};
use tracker_store::mongo::{MongoConfig, MongoStore};
use tracker_store::redis::{RedisConfig, RedisStore};
use tracker_store::sql::{SqlConfig, SqlStore};
use tracker_store::{Error, ErrorKind, Event, Registry, StoreConfig, TrackerStore};
use tracker_testkit::secrets::{
    AWS_SECRET_KEY, AWS_SESSION_TOKEN, NUMERIC, SECRET, SECRET_VAR, SPECIAL, closed_port, encode,
    host_port, leak,
};
use tracker_testkit::{Service, service_url};

/// Set in that child process.
const CHILD_VAR: &str = "TRACKER_CREDENTIALS_CHILD";

/// Targets of driver events known to show a secret at TRACE level, which the library cannot
/// prevent (only a subscriber's filter can, e.g. `aws_smithy_runtime=debug,aws_sigv4=debug`):
/// the AWS SDK logs every request it transmits with its headers, and its signer the canonical
/// request, both with the `x-amz-security-token` header, the session token.
const DRIVER_TRACE_LEAKS: &[&str] = &["aws_smithy_runtime", "aws_sigv4"];

// ---------------------------------------------------------------------------------------------
// Checks

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    if let Some(needle) = leak(text) {
        panic!("{what} shows a secret ({needle:?}):\n{text}");
    }
}

/// `Debug` and `{:#?}` of `value` show no secret.
#[track_caller]
fn assert_debug_clean(what: &str, value: &dyn fmt::Debug) {
    assert_clean(&format!("{what} ({{:?}})"), &format!("{value:?}"));
    assert_clean(&format!("{what} ({{:#?}})"), &format!("{value:#?}"));
}

/// Where `Display`, `Debug` or `{:#?}` of `error` or of a source of it shows a secret.
fn error_leak(what: &str, error: &(dyn StdError + 'static)) -> Option<String> {
    let mut texts = Vec::new();
    let mut chain = String::new();
    let mut current = Some(error);
    let mut depth = 0;
    while let Some(cause) = current {
        let at = if depth == 0 {
            what.to_owned()
        } else {
            format!("{what}, source {depth}")
        };
        texts.push((format!("{at} (Display)"), cause.to_string()));
        texts.push((format!("{at} ({{:?}})"), format!("{cause:?}")));
        texts.push((format!("{at} ({{:#?}})"), format!("{cause:#?}")));
        if depth > 0 {
            chain.push_str(": ");
        }
        write!(chain, "{cause}").expect("a String takes any text");
        current = cause.source();
        depth += 1;
    }
    texts.push((format!("{what} (the whole chain)"), chain));
    texts.into_iter().find_map(|(at, text)| {
        leak(&text).map(|needle| format!("{at} shows a secret ({needle:?}):\n{text}"))
    })
}

/// `Display`, `Debug` and `{:#?}` of `error` and of every source of it show no secret.
#[track_caller]
fn assert_error_clean(what: &str, error: &(dyn StdError + 'static)) {
    if let Some(leak) = error_leak(what, error) {
        panic!("{leak}");
    }
}

/// The error of `result`, checked with [`assert_error_clean`].
#[track_caller]
fn expect_clean_error<T>(what: &str, result: Result<T, Error>) -> Error {
    let Err(error) = result else {
        panic!("{what} should fail");
    };
    assert_error_clean(what, &error);
    error
}

// ---------------------------------------------------------------------------------------------
// URLs and ports

/// `url` with `password` (already encoded) as the password of its user, or of `user` when
/// the URL names none.
fn with_password(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or(user);
            format!("{scheme}://{user}:{password}@{host}")
        }
        None => format!("{scheme}://{user}:{password}@{rest}"),
    }
}

/// `url` with `extra` (`key=value&...`) added to its query.
fn with_query(url: &str, extra: &str) -> String {
    if url.contains('?') {
        format!("{url}&{extra}")
    } else if url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
    {
        format!("{url}?{extra}")
    } else {
        format!("{url}/?{extra}")
    }
}

fn fresh(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

// ---------------------------------------------------------------------------------------------
// Capturing tracing output

/// One captured event or span.
#[derive(Debug, Clone)]
struct Captured {
    /// The test that produced it (the thread's tag), if any.
    tag: Option<&'static str>,
    /// The target: the module for `tracing` events, the `log` target for `log` records.
    target: String,
    level: Level,
    /// The name and every field, formatted.
    text: String,
}

static RECORDS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

thread_local! {
    /// The test whose runtime this thread belongs to.
    static TAG: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Formats every field of an event or span.
#[derive(Default)]
struct Fields {
    text: String,
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.text, " {}={value:?}", field.name());
    }
}

/// A layer keeping every event and span (creation and later values), at every level.
struct Capture;

impl Capture {
    fn keep(metadata: &Metadata<'_>, fields: Fields) {
        let captured = Captured {
            tag: TAG.with(Cell::get),
            target: fields
                .log_target
                .unwrap_or_else(|| metadata.target().to_owned()),
            level: *metadata.level(),
            text: format!("{}:{}", metadata.name(), fields.text),
        };
        RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(captured);
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        Self::keep(attrs.metadata(), fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(metadata) = ctx.metadata(id) {
            Self::keep(metadata, fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        Self::keep(event.metadata(), fields);
    }
}

/// Installs [`Capture`] as the process's subscriber, `log` records included, once.
fn install_capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::registry()
            .with(Capture)
            .try_init()
            .expect("no other subscriber in this test binary");
    });
}

/// Runs `future` on a runtime of its own whose threads are tagged `tag`, capturing tracing
/// output at every level.
fn run<F: Future>(tag: &'static str, future: F) -> F::Output {
    install_capture();
    TAG.with(|t| t.set(Some(tag)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || TAG.with(|t| t.set(Some(tag))))
        .build()
        .expect("runtime");
    let output = runtime.block_on(future);
    runtime.shutdown_background();
    output
}

/// The records `tag` produced.
fn records(tag: &str) -> Vec<Captured> {
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|r| r.tag == Some(tag))
        .cloned()
        .collect()
}

/// Checks that no record of `tag` shows a secret (but those of [`DRIVER_TRACE_LEAKS`] at
/// TRACE level), that the library's own records never do, and that records of each target
/// prefix in `expected` were captured (so the capture works); returns the targets whose TRACE
/// records were let through as known driver leaks.
#[track_caller]
fn assert_tracing_clean(tag: &str, expected: &[&str]) -> Vec<String> {
    let records = records(tag);
    let mut driver_leaks = std::collections::BTreeSet::new();
    for record in &records {
        let known_driver_leak = record.level == Level::TRACE
            && DRIVER_TRACE_LEAKS
                .iter()
                .any(|prefix| record.target.starts_with(prefix));
        if known_driver_leak && leak(&record.text).is_some() {
            driver_leaks.insert(record.target.clone());
            continue;
        }
        assert_clean(
            &format!("a {} record of {}", record.level, record.target),
            &record.text,
        );
    }
    let targets: std::collections::BTreeMap<String, usize> =
        records.iter().fold(Default::default(), |mut counts, r| {
            let crate_name = r.target.split("::").next().unwrap_or_default().to_owned();
            *counts.entry(crate_name).or_default() += 1;
            counts
        });
    eprintln!("{tag}: records by crate {targets:?}; known driver leaks at TRACE: {driver_leaks:?}");
    for prefix in expected {
        assert!(
            records.iter().any(|r| r.target.starts_with(prefix)),
            "no record of {prefix} was captured; records by crate: {targets:?}"
        );
    }
    driver_leaks.into_iter().collect()
}

/// Checks that records at TRACE level of `prefix` were captured for `tag`.
#[track_caller]
fn assert_trace_captured(tag: &str, prefix: &str) {
    assert!(
        records(tag)
            .iter()
            .any(|r| r.level == Level::TRACE && r.target.starts_with(prefix)),
        "nothing of {prefix} at TRACE level was captured"
    );
}

// ---------------------------------------------------------------------------------------------
// Stores

/// Saves two events, reads them back, lists and deletes: every kind of call with the
/// credentials in play.
async fn round_trip(store: TrackerStore) {
    let id = fresh("creds-");
    let mut tracker = store.get_or_create_tracker(&id).await.expect("tracker");
    tracker.update(Event::user("hi", "greet", 1.0).at(1_700_000_000.0));
    tracker.update(Event::bot("hello").at(1_700_000_001.0));
    assert_eq!(store.save(&mut tracker).await.expect("save"), 2);
    let read = store.retrieve(&id).await.expect("read").expect("exists");
    assert_eq!(read.events(), tracker.events());
    store.list(None, 10).await.expect("list");
    assert!(store.delete(&id).await.expect("delete"));
}

async fn build(yaml: &str) -> tracker_store::Result<TrackerStore> {
    let config = StoreConfig::from_endpoints_yaml(yaml)?;
    assert_debug_clean(&format!("StoreConfig of {yaml}"), &config);
    Ok(TrackerStore::from_arc(
        Registry::with_builtins().build(&config).await?,
    ))
}

/// A DynamoDB configuration and a loader with [`AWS_SECRET_KEY`] and [`AWS_SESSION_TOKEN`].
fn dynamo_with_secrets(endpoint: &str) -> (DynamoConfig, aws_config::ConfigLoader) {
    let config = DynamoConfig {
        endpoint_url: Some(endpoint.to_owned()),
        ..DynamoConfig::with_table(fresh("creds_"))
    };
    let loader =
        aws_config::defaults(BehaviorVersion::latest()).credentials_provider(Credentials::new(
            "AKIDCREDSTEST",
            AWS_SECRET_KEY,
            Some(AWS_SESSION_TOKEN.to_owned()),
            None,
            "static",
        ));
    (config, loader)
}

/// Deletes a test table; a failure (the stand-in restarted, say) is only checked for secrets.
async fn drop_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    if let Err(error) = client.delete_table().table_name(table).send().await {
        assert_error_clean("deleting the test table", &error);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Configurations

#[test]
fn redis_config_debug_hides_passwords() {
    let encoded = encode(SPECIAL);
    let yaml = [
        format!("url: 127.0.0.1\nusername: bot\npassword: {SECRET}"),
        format!("url: redis://bot:{SECRET}@127.0.0.1:6379/1"),
        format!("url: redis://:{SECRET}@127.0.0.1"),
        format!("url: rediss://bot:{encoded}@127.0.0.1:6380"),
        format!("url: \"redis://bot:{SPECIAL}@127.0.0.1:6379\""),
        format!("url: \"bot:{SECRET}@127.0.0.1\""),
        format!(
            "url: redis-cluster://bot:{SECRET}@127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002"
        ),
        format!(
            "url: redis-sentinel://bot:{SECRET}@127.0.0.1:26379/2?sentinelServiceName=primary&sentinelUsername=s&sentinelPassword={SECRET}&node=127.0.0.1:26380"
        ),
        format!(
            "url: 127.0.0.1\nport: 26379\nsentinel_service_name: primary\npassword: {SECRET}\nsentinel_username: s\nsentinel_password: \"{SPECIAL}\""
        ),
        format!("url: 127.0.0.1\ncluster: true\npassword: \"{SPECIAL}\""),
        format!("password: \"{NUMERIC}\""),
    ];
    for yaml in &yaml {
        let config: RedisConfig = serde_norway::from_str(yaml).expect(yaml);
        assert!(
            config.password.is_some() || config.url.contains('@'),
            "the test configuration holds a secret: {yaml}"
        );
        assert_debug_clean(&format!("RedisConfig from {yaml}"), &config);
        if let Err(error) = config.validate() {
            assert_error_clean(&format!("RedisConfig::validate of {yaml}"), &error);
        }
    }
    let from_url = RedisConfig::from_url(format!("redis://default:{encoded}@127.0.0.1:6379"));
    assert_debug_clean("RedisConfig::from_url", &from_url);
    let json: RedisConfig = serde_json::from_value(serde_json::json!({
        "url": "127.0.0.1", "username": "bot", "password": SECRET, "sentinel_password": SECRET,
        "sentinel_service_name": "primary"
    }))
    .expect("valid");
    assert_debug_clean("RedisConfig from JSON", &json);
}

#[test]
fn mongo_config_debug_hides_passwords() {
    let encoded = encode(SPECIAL);
    let yaml = [
        format!("url: mongodb://127.0.0.1:27017\nusername: bot\npassword: {SECRET}"),
        format!("url: mongodb://bot:{SECRET}@127.0.0.1:27017/rasa?authSource=admin"),
        format!("url: mongodb://bot:{encoded}@127.0.0.1:27017,127.0.0.1:27018/?replicaSet=rs0"),
        format!("url: \"mongodb://bot:{SPECIAL}@127.0.0.1:27017/?tls=true\""),
        format!("url: mongodb+srv://bot:{SECRET}@cluster.example.net/?retryWrites=true"),
        format!("url: \"bot:{SECRET}@127.0.0.1:27017\""),
        format!("url: mongodb://other:{SECRET}@127.0.0.1\nusername: bot\npassword: \"{NUMERIC}\""),
    ];
    for yaml in &yaml {
        let config: MongoConfig = serde_norway::from_str(yaml).expect(yaml);
        assert_debug_clean(&format!("MongoConfig from {yaml}"), &config);
        assert_clean("MongoConfig::display_url", &config.display_url());
        if let Err(error) = config.validate() {
            assert_error_clean(&format!("MongoConfig::validate of {yaml}"), &error);
        }
    }
    let config = MongoConfig::from_url(format!("mongodb://bot:{encoded}@127.0.0.1:27017"))
        .with_credentials("bot", SECRET);
    assert_debug_clean("MongoConfig::with_credentials", &config);
    assert_clean("MongoConfig::display_url", &config.display_url());
}

#[test]
fn dynamo_config_debug_hides_endpoint_passwords() {
    // DynamoDB's credentials come from the AWS chain, never from the configuration; only an
    // endpoint URL can carry a password.
    for endpoint in [
        format!("http://proxy:{SECRET}@127.0.0.1:8000"),
        format!("https://proxy:{}@127.0.0.1:8443/", encode(SPECIAL)),
        format!("proxy:{SECRET}@127.0.0.1:8000"),
    ] {
        let config: DynamoConfig = serde_norway::from_str(&format!(
            "table_name: states\nregion: eu-west-1\nendpoint_url: \"{endpoint}\""
        ))
        .expect("valid");
        assert_debug_clean(&format!("DynamoConfig with {endpoint}"), &config);
        if let Err(error) = config.validate() {
            assert_error_clean(&format!("DynamoConfig::validate with {endpoint}"), &error);
        }
    }
}

#[test]
fn store_config_debug_hides_secrets() {
    let encoded = encode(SPECIAL);
    let sections = [
        format!(
            "type: SQL\ndialect: postgresql\nurl: 127.0.0.1\ndb: rasa\nusername: bot\npassword: {SECRET}\nquery:\n  sslmode: disable\n  password: {SECRET}"
        ),
        format!("type: sql\nurl: postgresql://bot:{SECRET}@127.0.0.1:5432/rasa"),
        format!("type: sql\nurl: \"postgresql://bot:{SPECIAL}@127.0.0.1:5432/rasa\""),
        format!("type: sql\nurl: postgresql://bot:{encoded}@127.0.0.1:5432/rasa"),
        format!("type: sql\nurl: postgresql://127.0.0.1:5432/rasa?user=bot&password={SECRET}"),
        format!("type: sql\nurl: \"bot:{SECRET}@127.0.0.1\""),
        format!("type: sql\nusername: bot\npassword: \"{NUMERIC}\""),
        format!("type: redis\nurl: 127.0.0.1\nusername: default\npassword: {SECRET}"),
        format!(
            "type: redis\nurl: redis-sentinel://bot:{SECRET}@127.0.0.1:26379?sentinelServiceName=m&sentinelPassword={SECRET}"
        ),
        format!("type: redis\nurl: 127.0.0.1\nsentinel_password: {SECRET}"),
        format!("type: mongod\nurl: mongodb://bot:{SECRET}@127.0.0.1:27017/?authSource=admin"),
        format!("type: mongod\nusername: bot\npassword: {SECRET}"),
        format!("type: dynamo\nendpoint_url: http://proxy:{SECRET}@127.0.0.1:8000"),
        format!(
            "type: my.custom.Store\nurl: http://127.0.0.1\ntoken: {SECRET}\nbasic_auth:\n  username: bot\n  password: {SECRET}\naws_secret_access_key: {AWS_SECRET_KEY}\naws_session_token: {AWS_SESSION_TOKEN}\nnodes:\n  - redis://bot:{SECRET}@127.0.0.1:1\n  - {{url: 'redis://bot:{SECRET}@127.0.0.1:2'}}"
        ),
    ];
    for section in &sections {
        let config = StoreConfig::from_yaml(section).expect(section);
        assert_debug_clean(&format!("StoreConfig of {section}"), &config);
        let endpoints = format!(
            "tracker_store:\n{}",
            section
                .lines()
                .map(|line| format!("  {line}\n"))
                .collect::<String>()
        );
        let config = StoreConfig::from_endpoints_yaml(&endpoints).expect(&endpoints);
        assert_debug_clean(&format!("StoreConfig of {endpoints}"), &config);
    }
    assert_debug_clean("Registry", &Registry::with_builtins());
}

#[test]
fn sql_config_debug_hides_passwords() {
    let encoded = encode(SPECIAL);
    let configs = [
        serde_json::json!({"dialect": "postgresql", "url": "127.0.0.1", "username": "bot", "password": SECRET}),
        serde_json::json!({"dialect": "mysql", "url": "127.0.0.1:3306", "username": "bot", "password": SPECIAL, "db": "rasa"}),
        serde_json::json!({"url": format!("postgresql://bot:{SECRET}@127.0.0.1:5432/rasa")}),
        serde_json::json!({"url": format!("mysql+pymysql://bot:{encoded}@127.0.0.1:3306/rasa")}),
        serde_json::json!({"url": format!("postgresql://bot:{SECRET}@127.0.0.1/rasa"), "login_db": "postgres"}),
    ];
    for value in configs {
        let config: SqlConfig = serde_json::from_value(value.clone()).expect("valid");
        assert_debug_clean(&format!("SqlConfig of {value}"), &config);
    }
    assert_debug_clean(
        "SqlConfig::from_url",
        &SqlConfig::from_url(format!("postgres://bot:{encoded}@127.0.0.1/rasa")),
    );
}

/// `tracker-sql` shows passwords that are not in the URL's user information: the values of
/// `query` (`password`, `sslpassword`, ...), a `password` query parameter of `url` (both of
/// which the PostgreSQL driver reads), a password with an unencoded `/` or `?` (its
/// `redact_url` ends the user information at the first `/`), and user information in a `url`
/// without a scheme.
#[test]
fn sql_config_debug_hides_passwords_outside_the_user_information() {
    let configs = [
        serde_json::json!({"dialect": "postgresql", "url": "127.0.0.1", "username": "bot", "query": {"password": SECRET}}),
        serde_json::json!({"url": format!("postgresql://127.0.0.1:5432/rasa?user=bot&password={SECRET}")}),
        serde_json::json!({"url": format!("postgresql://bot:{SPECIAL}@127.0.0.1:5432/rasa")}),
        serde_json::json!({"dialect": "postgresql", "url": format!("bot:{SECRET}@127.0.0.1")}),
    ];
    let mut leaks = Vec::new();
    for value in configs {
        let config: SqlConfig = serde_json::from_value(value.clone()).expect("valid");
        let debug = format!("{config:?}");
        if leak(&debug).is_some() {
            leaks.push(debug);
        }
    }
    assert!(
        leaks.is_empty(),
        "SqlConfig Debug shows secrets:\n{}",
        leaks.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Errors without a server

#[test]
fn configuration_errors_hide_secrets() {
    let cases = [
        // The section is not a mapping, or the type is not a string.
        format!("tracker_store: postgresql://bot:{SECRET}@127.0.0.1/rasa\n"),
        format!("tracker_store:\n  type:\n    url: redis://bot:{SECRET}@127.0.0.1\n"),
        format!("tracker_store:\n  type: [\"redis://bot:{SECRET}@127.0.0.1\"]\n"),
        // An unterminated `${` in a value holding a password.
        format!("tracker_store:\n  type: sql\n  url: postgresql://bot:{SECRET}@127.0.0.1/${{DB\n"),
        // A password of digits, unquoted, and one in a nested mapping.
        format!("tracker_store:\n  type: sql\n  username: bot\n  password: {NUMERIC}\n"),
        format!("tracker_store:\n  type: sql\n  query:\n    password: {NUMERIC}\n"),
        format!("tracker_store:\n  type: redis\n  sentinel_password: {NUMERIC}\n"),
        format!("tracker_store:\n  type: mongod\n  username: bot\n  password: {NUMERIC}\n"),
        // YAML syntax errors on a line with a password.
        format!("tracker_store:\n  type: sql\n  password: \"{SECRET}\n"),
        format!(
            "tracker_store:\n  type: sql\n  url: postgresql://bot:{SECRET}@127.0.0.1/rasa: x\n"
        ),
        format!("tracker_store:\n  type: sql\n\tpassword: {SECRET}\n"),
    ];
    for yaml in &cases {
        let error = expect_clean_error(yaml, StoreConfig::from_endpoints_yaml(yaml));
        assert_eq!(error.kind(), ErrorKind::Config, "{yaml}: {error}");
    }
    let error = expect_clean_error(
        "a number as a Redis password",
        serde_json::from_value::<RedisConfig>(serde_json::json!({"password": 80085551234_u64}))
            .map_err(|e| Error::config_with("invalid", e)),
    );
    assert!(
        error
            .source()
            .is_some_and(|s| s.to_string().contains("string"))
    );
    expect_clean_error(
        "a number as a Redis password in YAML",
        serde_norway::from_str::<RedisConfig>(&format!("sentinel_password: {NUMERIC}"))
            .map_err(|e| Error::config_with("invalid", e)),
    );
    expect_clean_error(
        "a number as a MongoDB password",
        serde_json::from_value::<MongoConfig>(
            serde_json::json!({"username": "bot", "password": 80085551234.5}),
        )
        .map_err(|e| Error::config_with("invalid", e)),
    );
}

#[test]
fn store_construction_errors_hide_secrets() {
    run("store_construction_errors_hide_secrets", async {
        let encoded = encode(SPECIAL);
        let sections = [
            // SQL: a dialect diesel cannot speak, one that is no dialect, a bad pool size.
            format!("type: sql\nurl: oracle+cx_oracle://bot:{SECRET}@127.0.0.1:1521/rasa"),
            format!("type: sql\nurl: excel://bot:{SECRET}@127.0.0.1/rasa"),
            format!("type: sql\nurl: postgresql://bot:{SECRET}@127.0.0.1/rasa\npool_size: 0"),
            format!("type: sql\ndialect: db2\nurl: 127.0.0.1\nusername: bot\npassword: {SECRET}"),
            // Redis: a bad key prefix, bad URLs, a scheme-less URL with credentials.
            format!(
                "type: redis\nurl: redis://bot:{SECRET}@127.0.0.1:6379\nkey_prefix: \"not-alnum!\""
            ),
            format!("type: redis\nurl: redis://bot:{SECRET}@127.0.0.1\nrecord_exp: 0"),
            format!("type: redis\nurl: redis://bot:{SECRET}@127.0.0.1:notaport"),
            format!("type: redis\nurl: \"redis://:{SPECIAL}@127.0.0.1:6379\""),
            format!("type: redis\nurl: redis://bot:{encoded}@127.0.0.1:6379\ndb: 300"),
            format!("type: redis\nurl: \"bot:{SECRET}@127.0.0.1\""),
            format!("type: redis\nurl: redis-cluster://bot:{SECRET}@127.0.0.1:7000/3"),
            format!(
                "type: redis\nurl: redis://bot:{SECRET}@127.0.0.1\ncluster: true\nsentinel_service_name: m"
            ),
            format!("type: redis\nurl: redis://bot:{SECRET}@127.0.0.1\npool_size: 0"),
            format!(
                "type: redis\nurl: redis://bot:{SECRET}@127.0.0.1\nssl_ca_certs: /nonexistent/ca.pem"
            ),
            format!(
                "type: redis\nurl: rediss://bot:{SECRET}@127.0.0.1\nssl_ca_certs: /nonexistent/ca.pem"
            ),
            // MongoDB: bad URLs, a bad database name.
            format!("type: mongod\nurl: \"mongodb://bot:{SPECIAL}@127.0.0.1:27017\""),
            format!("type: mongod\nurl: mongodb://bot:{SECRET}@127.0.0.1:notaport"),
            "type: mongod\nurl: mongodb://bot:S3cr3t:p4ss@127.0.0.1".to_owned(),
            format!("type: mongod\nurl: mongodb://bot:{SECRET}%zz@127.0.0.1"),
            format!("type: mongod\nurl: \"bot:{SECRET}@127.0.0.1:27017\""),
            format!("type: mongod\nurl: http://bot:{SECRET}@127.0.0.1:27017"),
            format!("type: mongod\nurl: mongodb://bot:{SECRET}@127.0.0.1/?authMechanism=BOGUS"),
            format!("type: mongod\nurl: mongodb://bot:{SECRET}@127.0.0.1\ndb: \"a.b\""),
            format!("type: mongod\npassword: {SECRET}"),
            // DynamoDB: an endpoint without a scheme.
            format!("type: dynamo\nendpoint_url: \"proxy:{SECRET}@127.0.0.1:8000\""),
        ];
        for section in &sections {
            let yaml = format!(
                "tracker_store:\n{}",
                section
                    .lines()
                    .map(|line| format!("  {line}\n"))
                    .collect::<String>()
            );
            let error = expect_clean_error(&yaml, build(&yaml).await);
            assert!(
                matches!(error.kind(), ErrorKind::Config | ErrorKind::Unsupported),
                "{yaml}: {error}"
            );
        }
    });
    assert_tracing_clean("store_construction_errors_hide_secrets", &[]);
}

/// `tracker-sql` quotes the text after the last `:` of a `url` without a scheme as a port,
/// and serde's error for a password of digits quotes the number.
#[test]
fn sql_configuration_errors_hide_secrets() {
    let mut leaks = Vec::new();
    let config: SqlConfig = serde_json::from_value(serde_json::json!({
        "dialect": "postgresql", "url": format!("bot:{SECRET}@127.0.0.1"), "db": "rasa"
    }))
    .expect("valid");
    let result = run(
        "sql_configuration_errors_hide_secrets",
        SqlStore::connect(&config),
    );
    match result {
        Ok(_) => panic!("a URL without a scheme should be refused"),
        Err(error) => {
            if let Some(needle) = leak(&format!("{error} {error:?}")) {
                leaks.push(format!("SqlStore::connect ({needle}): {error}"));
            }
        }
    }
    let number = serde_json::from_value::<SqlConfig>(serde_json::json!({
        "dialect": "postgresql", "username": "bot", "password": 80085551234_u64
    }));
    match number {
        Ok(_) => panic!("a number is no password"),
        Err(error) => {
            if let Some(needle) = leak(&error.to_string()) {
                leaks.push(format!("SqlConfig from JSON ({needle}): {error}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "tracker-sql errors show secrets:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn core_errors_of_every_kind_keep_their_sources_clean() {
    // Every kind, built as the stores build them, each with a driver-like source that holds
    // no secret: the formatting of `Error` itself adds none.
    let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let errors = [
        Error::conflict("alice", 1, 2),
        Error::invalid_input("bad"),
        Error::not_found("conversation \"alice\""),
        Error::unsupported("sql", "EXPLAIN"),
        Error::config("bad"),
        Error::config_with("bad", io()),
        Error::unavailable_with("connecting", io()),
        Error::corrupt("alice", Some(3), "not JSON"),
        Error::diverged("alice", 2, "the source has 3 events and the store 2"),
        Error::backend_with("query", io()),
    ];
    for error in &errors {
        assert_error_clean(&format!("{:?}", error.kind()), error);
    }
    // The check itself sees a secret anywhere in the chain.
    let leaky = Error::unavailable_with(
        "connecting",
        std::io::Error::other(format!("refused for {SECRET}")),
    );
    assert!(
        error_leak("leaky", &leaky).is_some(),
        "a secret in a source is found"
    );
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Errors and tracing with the real servers

#[test]
fn postgres_credentials_never_leak() {
    const TAG: &str = "postgres_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::Postgres)) else {
        return;
    };
    let url = service.url.clone();
    let (host, port) = host_port(&url);
    run(TAG, async {
        // The test server trusts local connections, so the password is accepted (unused).
        for password in [encode(SECRET), encode(SPECIAL)] {
            let with = with_password(&url, "postgres", &password);
            let yaml = format!("tracker_store:\n  type: sql\n  url: \"{with}\"\n  pool_size: 2\n");
            round_trip(build(&yaml).await.expect("connects")).await;
        }
        let yaml = format!(
            "tracker_store:\n  type: postgresql\n  url: {host}\n  port: {port}\n  db: test\n  username: postgres\n  password: \"{SPECIAL}\"\n  pool_size: 2\n"
        );
        round_trip(build(&yaml).await.expect("connects")).await;

        // A closed port, as a URL and as keys; a database that does not exist.
        let closed = closed_port();
        for yaml in [
            format!(
                "tracker_store:\n  type: sql\n  url: postgresql://postgres:{}@127.0.0.1:{closed}/test\n",
                encode(SPECIAL)
            ),
            format!(
                "tracker_store:\n  type: sql\n  dialect: postgresql\n  url: 127.0.0.1\n  port: {closed}\n  db: test\n  username: postgres\n  password: {SECRET}\n  login_db: postgres\n"
            ),
            format!(
                "tracker_store:\n  type: sql\n  url: \"{}\"\n  pool_size: 1\n",
                with_password(
                    &format!(
                        "{}/nonexistent_creds_db",
                        url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base)
                    ),
                    "postgres",
                    SECRET
                )
            ),
        ] {
            let error = expect_clean_error(&yaml, build(&yaml).await);
            assert_ne!(error.kind(), ErrorKind::Conflict, "{error}");
        }
    });
    assert_tracing_clean(TAG, &["tracker_sql", "tokio_postgres"]);
}

#[test]
fn mysql_credentials_never_leak() {
    const TAG: &str = "mysql_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::Mysql)) else {
        return;
    };
    let url = service.url.clone();
    let (host, port) = host_port(&url);
    run(TAG, async {
        // A wrong password: the server denies access.
        let wrong = with_password(&url, "root", &encode(SPECIAL));
        let error = expect_clean_error(
            "a wrong MySQL password",
            SqlStore::connect(&SqlConfig::from_url(wrong)).await,
        );
        assert!(
            error.to_string().contains("denied")
                || std::error::Error::source(&error)
                    .is_some_and(|s| s.to_string().contains("denied")),
            "the server's access-denied error: {error}"
        );
        assert_eq!(
            error.kind(),
            ErrorKind::Config,
            "retrying a wrong password does not help: {error:?}"
        );
        let yaml = format!(
            "tracker_store:\n  type: mysql\n  url: {host}\n  port: {port}\n  db: test\n  username: root\n  password: {SECRET}\n  pool_size: 1\n"
        );
        expect_clean_error(&yaml, build(&yaml).await);
        // A closed port.
        let closed = format!("mysql://root:{SECRET}@127.0.0.1:{}/test", closed_port());
        expect_clean_error(
            "MySQL on a closed port",
            SqlStore::connect(&SqlConfig::from_url(closed)).await,
        );
        // Without a password the server is reachable, so the errors above are about the
        // password.
        round_trip(TrackerStore::new(
            SqlStore::connect(&SqlConfig::from_url(url.clone()))
                .await
                .expect("connects without a password"),
        ))
        .await;
    });
    assert_tracing_clean(TAG, &["tracker_sql"]);
}

/// With a password in `query` (a connection parameter the PostgreSQL driver reads),
/// `tracker-sql` logs the connection URL with it at INFO ("connected to the SQL tracker
/// store").
#[test]
fn sql_tracing_hides_passwords_in_query() {
    const TAG: &str = "sql_tracing_hides_passwords_in_query";
    let Some(service) = run(TAG, service_url(Service::Postgres)) else {
        return;
    };
    let (host, port) = host_port(&service.url);
    run(TAG, async {
        let yaml = format!(
            "tracker_store:\n  type: postgresql\n  url: {host}\n  port: {port}\n  db: test\n  username: postgres\n  pool_size: 1\n  query:\n    password: {SECRET}\n"
        );
        round_trip(build(&yaml).await.expect("connects")).await;
    });
    let leaks: Vec<String> = records(TAG)
        .into_iter()
        .filter(|r| r.target.starts_with("tracker_") && leak(&r.text).is_some())
        .map(|r| format!("{} {}: {}", r.level, r.target, r.text))
        .collect();
    assert!(
        leaks.is_empty(),
        "tracker-sql logs secrets:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn redis_credentials_never_leak() {
    const TAG: &str = "redis_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::Redis)) else {
        return;
    };
    let url = service.url.clone();
    let (host, port) = host_port(&url);
    run(TAG, async {
        // The test server's `default` user has no password, so AUTH default <anything> is
        // accepted: the password goes over the wire and through the driver.
        let yaml = format!(
            "tracker_store:\n  type: redis\n  url: {host}\n  port: {port}\n  username: default\n  password: {SECRET}\n  key_prefix: creds\n"
        );
        round_trip(build(&yaml).await.expect("connects")).await;
        let yaml = format!(
            "tracker_store:\n  type: redis\n  url: \"{}\"\n",
            with_password(&url, "default", &encode(SPECIAL))
        );
        round_trip(build(&yaml).await.expect("connects")).await;

        // AUTH <password> alone (the `default` user, too).
        let mut legacy = RedisConfig::from_url(host.clone());
        legacy.port = port;
        legacy.password = Some(SECRET.to_owned());
        let store = RedisStore::connect(&legacy).await.expect("connects");
        assert_debug_clean("RedisStore", &store);
        round_trip(TrackerStore::new(store)).await;
        // A password the server refuses: a user that does not exist.
        let unknown = RedisConfig::from_url(with_password(
            &format!("redis://nobody_creds@{host}:{port}"),
            "nobody_creds",
            SECRET,
        ));
        let error = expect_clean_error("WRONGPASS", RedisStore::connect(&unknown).await);
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");

        // Closed ports: standalone, cluster and sentinel, passwords everywhere.
        let closed = closed_port();
        for yaml in [
            format!("url: redis://default:{SECRET}@127.0.0.1:{closed}\ntimeout: 2"),
            format!("url: redis-cluster://default:{SECRET}@127.0.0.1:{closed}\ntimeout: 2"),
            format!(
                "url: 127.0.0.1\nport: {closed}\nsentinel_service_name: primary\npassword: {SECRET}\nsentinel_password: \"{SPECIAL}\"\ntimeout: 2"
            ),
            format!(
                "url: redis-sentinel://default:{SECRET}@127.0.0.1:{closed}?sentinelServiceName=primary&sentinelPassword={SECRET}\ntimeout: 2"
            ),
        ] {
            let config: RedisConfig = serde_norway::from_str(&yaml).expect(&yaml);
            assert_debug_clean(&yaml, &config);
            expect_clean_error(&yaml, RedisStore::connect(&config).await);
        }
    });
    assert_tracing_clean(TAG, &["tracker_redis", "fred"]);
    assert_trace_captured(TAG, "fred");
}

#[test]
fn redis_cluster_credentials_never_leak() {
    const TAG: &str = "redis_cluster_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::RedisCluster)) else {
        return;
    };
    let url = service.url.clone();
    run(TAG, async {
        let with = with_password(&url, "default", &encode(SPECIAL));
        let config = RedisConfig::from_url(with);
        assert_debug_clean("a cluster URL with a password", &config);
        round_trip(TrackerStore::new(
            RedisStore::connect(&config).await.expect("connects"),
        ))
        .await;
    });
    assert_tracing_clean(TAG, &["tracker_redis", "fred"]);
}

#[test]
fn mongo_credentials_never_leak() {
    const TAG: &str = "mongo_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::Mongo)) else {
        return;
    };
    let url = with_query(&service.url, "serverSelectionTimeoutMS=3000");
    run(TAG, async {
        let db = fresh("creds");
        // Credentials in the URL and in the keys: the stand-in may accept or refuse them;
        // either way nothing may show them.
        let configs = [
            MongoConfig::from_url(with_password(&url, "bot", &encode(SPECIAL))).with_db(&db),
            MongoConfig::from_url(url.clone())
                .with_db(&db)
                .with_credentials("bot", SECRET),
        ];
        for config in &configs {
            assert_debug_clean("MongoConfig", config);
            match MongoStore::connect(config).await {
                Ok(store) => {
                    assert_debug_clean("MongoStore", &store);
                    round_trip(TrackerStore::new(store)).await;
                }
                Err(error) => {
                    assert_error_clean("MongoStore::connect with credentials", &error);
                    eprintln!("the MongoDB stand-in refused the credentials: {error}");
                }
            }
        }
        // A closed port.
        let closed = MongoConfig::from_url(format!(
            "mongodb://bot:{SECRET}@127.0.0.1:{}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
            closed_port()
        ))
        .with_db(&db);
        let error = expect_clean_error(
            "MongoDB on a closed port",
            MongoStore::connect(&closed).await,
        );
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    });
    assert_tracing_clean(TAG, &[]);
}

#[test]
fn dynamo_credentials_never_leak() {
    const TAG: &str = "dynamo_credentials_never_leak";
    let Some(service) = run(TAG, service_url(Service::Dynamo)) else {
        return;
    };
    let endpoint = service.url.clone();
    run(TAG, async {
        // The stand-in accepts any credentials: a session with a secret key and a token.
        let (config, loader) = dynamo_with_secrets(&endpoint);
        let store = DynamoStore::connect_with(&config, loader)
            .await
            .expect("connects");
        assert_debug_clean("DynamoStore", &store);
        let client = store.client().clone();
        let table = config.table_name.clone();
        round_trip(TrackerStore::new(store)).await;
        drop_table(&client, &table).await;

        // A closed port.
        let (config, loader) = dynamo_with_secrets(&format!("http://127.0.0.1:{}", closed_port()));
        let error = expect_clean_error(
            "DynamoDB on a closed port",
            DynamoStore::connect_with(&config, loader).await,
        );
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    });
    assert_tracing_clean(TAG, &["tracker_dynamo", "aws_smithy_runtime", "aws_sigv4"]);
    assert_trace_captured(TAG, "aws_smithy_runtime");
}

// ---------------------------------------------------------------------------------------------
// `${VAR}` expansion: in a child process whose environment holds the secrets

/// Whether this is the child process; otherwise runs `test` in one, with [`SECRET`] in
/// [`SECRET_VAR`] and the AWS credentials in the environment, and checks that it passed.
fn in_child_with_secrets(test: &str) -> bool {
    if std::env::var_os(CHILD_VAR).is_some() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .env(SECRET_VAR, SECRET)
        .env("AWS_ACCESS_KEY_ID", "AKIDCREDSTEST")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
        .env("AWS_SESSION_TOKEN", AWS_SESSION_TOKEN)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} in a child process:\n{stdout}\n{stderr}"
    );
    // The child's skips, as loud here as there.
    for line in stderr.lines().filter(|line| line.contains("SKIPPED")) {
        eprintln!("{line}");
    }
    false
}

#[test]
fn endpoints_yml_secrets_from_the_environment_never_leak() {
    const TAG: &str = "endpoints_yml_secrets_from_the_environment_never_leak";
    if !in_child_with_secrets(TAG) {
        return;
    }
    assert_eq!(std::env::var(SECRET_VAR).as_deref(), Ok(SECRET));
    let var = format!("${{{SECRET_VAR}}}");
    let servers = run(TAG, async {
        // The test services this run connected to.
        let mut servers = Vec::new();
        let closed = closed_port();
        // Configurations only: the secret comes from the environment.
        for section in [
            format!("type: sql\nurl: 127.0.0.1\nusername: bot\npassword: {var}"),
            format!("type: sql\nurl: postgresql://bot:{var}@127.0.0.1:{closed}/test"),
            format!("type: sql\nurl: 127.0.0.1\nquery:\n  sslpassword: {var}"),
            format!("type: redis\nurl: redis://default:{var}@127.0.0.1:{closed}\ntimeout: 2"),
            format!(
                "type: redis\nurl: 127.0.0.1\nport: {closed}\nsentinel_service_name: m\nsentinel_password: \"{var}\""
            ),
            format!(
                "type: mongod\nurl: \"mongodb://bot:{var}@127.0.0.1:{closed}/?serverSelectionTimeoutMS=500\""
            ),
            format!("type: mongod\nusername: bot\npassword: \"x-{var}-y\""),
            format!("type: dynamo\nendpoint_url: http://proxy:{var}@127.0.0.1:{closed}"),
        ] {
            let yaml = format!(
                "tracker_store:\n{}",
                section
                    .lines()
                    .map(|line| format!("  {line}\n"))
                    .collect::<String>()
            );
            let config = StoreConfig::from_endpoints_yaml(&yaml).expect(&yaml);
            assert!(
                format!("{:?}", config.keys).contains(SECRET),
                "the secret was expanded: {yaml}"
            );
            assert_debug_clean(&yaml, &config);
        }
        // Stores that connect, with the secret in play.
        if let Some(postgres) = service_url(Service::Postgres).await {
            servers.push("postgres");
            let (host, port) = host_port(&postgres.url);
            let yaml = format!(
                "tracker_store:\n  type: sql\n  dialect: postgresql\n  url: {host}\n  port: {port}\n  db: test\n  username: postgres\n  password: {var}\n  pool_size: 1\n"
            );
            round_trip(build(&yaml).await.expect("connects")).await;
            let yaml = format!(
                "tracker_store:\n  type: sql\n  url: postgresql://postgres:{var}@127.0.0.1:{closed}/test\n"
            );
            expect_clean_error(&yaml, build(&yaml).await);
        }
        if let Some(mysql) = service_url(Service::Mysql).await {
            servers.push("mysql");
            let (host, port) = host_port(&mysql.url);
            let yaml = format!(
                "tracker_store:\n  type: mysql\n  url: {host}\n  port: {port}\n  db: test\n  username: root\n  password: {var}\n  pool_size: 1\n"
            );
            expect_clean_error(&yaml, build(&yaml).await);
        }
        if let Some(redis) = service_url(Service::Redis).await {
            servers.push("redis");
            let (host, port) = host_port(&redis.url);
            let yaml = format!(
                "tracker_store:\n  type: redis\n  url: redis://default:{var}@{host}:{port}\n"
            );
            round_trip(build(&yaml).await.expect("connects")).await;
            let yaml = format!(
                "tracker_store:\n  type: redis\n  url: {host}\n  port: {port}\n  password: {var}\n"
            );
            round_trip(build(&yaml).await.expect("connects")).await;
        }
        if let Some(mongo) = service_url(Service::Mongo).await {
            servers.push("mongo");
            let url = with_query(&mongo.url, "serverSelectionTimeoutMS=3000");
            let yaml = format!(
                "tracker_store:\n  type: mongod\n  url: \"{url}\"\n  db: {}\n  username: bot\n  password: {var}\n",
                fresh("creds")
            );
            match build(&yaml).await {
                Ok(store) => round_trip(store).await,
                Err(error) => assert_error_clean(&yaml, &error),
            }
        }
        if let Some(dynamo) = service_url(Service::Dynamo).await {
            servers.push("dynamo");
            // The AWS chain reads the secret key and the session token from the environment.
            let table = fresh("creds_");
            let yaml = format!(
                "tracker_store:\n  type: dynamo\n  table_name: {table}\n  endpoint_url: {}\n",
                dynamo.url
            );
            let store = build(&yaml).await.expect("connects");
            round_trip(store).await;
            let sdk = aws_config::defaults(BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&dynamo.url)
                .load()
                .await;
            drop_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
            let yaml = format!(
                "tracker_store:\n  type: dynamo\n  table_name: {table}\n  endpoint_url: http://127.0.0.1:{closed}\n"
            );
            expect_clean_error(&yaml, build(&yaml).await);
        }
        servers
    });
    if servers.is_empty() {
        // Only configurations were checked: no store ran, so no record of this crate is
        // expected, but none may show a secret either.
        tracker_testkit::skip(
            "credentials",
            "no test service is configured: endpoints.yml secrets were checked in \
             configurations only, not in stores' tracing output",
        );
        assert_tracing_clean(TAG, &[]);
    } else {
        eprintln!("{TAG}: stores connected to: {servers:?}");
        assert_tracing_clean(TAG, &["tracker_"]);
    }
}
