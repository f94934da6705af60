//! The `tracker` binary never prints a password or token: not on standard output, not on
//! standard error, whether the store connects, refuses the credentials, cannot be reached or
//! is misconfigured, with the secret written in `endpoints.yml` or taken from the environment
//! through `${...}`.
//!
//! Every secret here holds `S3cr3t` or `p4ss` (looked for case-insensitively, so encoded forms
//! count), or is the password of digits [`NUMERIC`].

use std::path::Path;

use assert_cmd::Command;
use tracker_testkit::secrets::{
    AWS_SECRET_KEY, AWS_SESSION_TOKEN, NUMERIC, SECRET, SECRET_VAR, SPECIAL, closed_port, encode,
    host_port, leak,
};
use tracker_testkit::{Service, service_url};

/// The URL of a test service (or `None` after the harness's loud skip), from a plain test.
fn service(service: Service) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(service_url(service))
        .map(|service| service.url)
}

/// What a run printed.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tracker` in `dir` with `args`, the secrets in its environment (for `${...}` and the
/// AWS credential chain), and checks that neither output shows one.
#[track_caller]
fn tracker(dir: &Path, args: &[&str]) -> Output {
    let output = Command::cargo_bin("tracker")
        .expect("the binary is built")
        .current_dir(dir)
        .args(args)
        .env(SECRET_VAR, SECRET)
        .env("AWS_ACCESS_KEY_ID", "AKIDCREDSTEST")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
        .env("AWS_SESSION_TOKEN", AWS_SESSION_TOKEN)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("runs");
    let output = Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        if let Some(needle) = leak(text) {
            panic!("tracker {args:?} shows a secret ({needle:?}) on {stream}:\n{text}");
        }
    }
    output
}

/// Writes `tracker_store:` with `section` (one key per line) as `name` in `dir`.
fn endpoints(dir: &Path, name: &str, section: &str) -> String {
    let text = format!(
        "tracker_store:\n{}",
        section
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect::<String>()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs `list`, with progress output and without, and every other subcommand that opens the
/// store of `file` too when `every` is set; each fails and says why on standard error.
#[track_caller]
fn commands_fail(dir: &Path, file: &str, every: bool) {
    let export = dir.join("export.jsonl");
    let import = dir.join("import.jsonl");
    std::fs::write(&import, "").expect("write");
    for args in [
        vec!["list"],
        vec!["--quiet", "list", "--all"],
        vec!["show", "alice"],
        vec!["export", "--output", export.to_str().expect("UTF-8")],
        vec!["import", import.to_str().expect("UTF-8")],
        vec!["delete", "alice"],
        vec!["prune", "--inactive-for", "30d", "--dry-run"],
    ]
    .into_iter()
    .take(if every { 7 } else { 2 })
    {
        let mut all = vec!["--endpoints", file];
        all.extend(args);
        let output = tracker(dir, &all);
        assert!(!output.success, "tracker {all:?} should fail");
        assert!(
            output.stderr.starts_with("error: "),
            "tracker {all:?} says why: {}",
            output.stderr
        );
    }
}

#[test]
fn help_and_version_show_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = endpoints(
        dir.path(),
        "endpoints.yml",
        &format!("type: sql\nurl: postgresql://bot:{SECRET}@127.0.0.1:1/rasa"),
    );
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["list", "--help"],
        vec!["--endpoints", &file, "--help"],
        vec!["--endpoints", &file, "migrate", "--help"],
        vec!["--endpoints", &file, "list", "--no-such-flag"],
    ] {
        let output = tracker(dir.path(), &args);
        assert!(
            !output.stdout.is_empty() || !output.stderr.is_empty(),
            "tracker {args:?} prints something"
        );
    }
}

#[test]
fn misconfigured_stores_show_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let var = format!("${{{SECRET_VAR}}}");
    let sections = [
        // Not a mapping; an unterminated `${`; a password of digits.
        format!("postgresql://bot:{SECRET}@127.0.0.1/rasa"),
        format!("type: sql\nurl: postgresql://bot:{var}@127.0.0.1/${{DB"),
        format!("type: sql\nurl: postgresql://bot:{SECRET}@127.0.0.1/${{DB"),
        format!("type: sql\nusername: bot\npassword: {NUMERIC}"),
        format!("type: redis\npassword: {NUMERIC}"),
        format!("type: mongod\nusername: bot\npassword: {NUMERIC}"),
        // Invalid YAML on a line with a password.
        format!("type: sql\npassword: \"{SECRET}"),
        // Bad URLs and keys with a password in play.
        format!("type: redis\nurl: \"redis://:{SPECIAL}@127.0.0.1:6379\""),
        format!("type: redis\nurl: redis://bot:{var}@127.0.0.1:notaport"),
        format!("type: redis\nurl: redis://bot:{SECRET}@127.0.0.1\nkey_prefix: \"no-alnum!\""),
        format!("type: redis\nurl: \"bot:{var}@127.0.0.1\""),
        format!("type: mongod\nurl: \"mongodb://bot:{SPECIAL}@127.0.0.1:27017\""),
        format!("type: mongod\nurl: \"bot:{var}@127.0.0.1:27017\""),
        format!("type: sql\nurl: oracle://bot:{SECRET}@127.0.0.1/rasa"),
        format!("type: dynamo\nendpoint_url: \"proxy:{var}@127.0.0.1:8000\""),
    ];
    for (index, section) in sections.iter().enumerate() {
        let text = if index == 0 {
            format!("tracker_store: {section}\n")
        } else {
            String::new()
        };
        let file = if text.is_empty() {
            endpoints(dir, &format!("bad{index}.yml"), section)
        } else {
            let path = dir.join(format!("bad{index}.yml"));
            std::fs::write(&path, text).expect("write");
            path.to_str().expect("UTF-8").to_owned()
        };
        commands_fail(dir, &file, false);
    }
}

#[test]
fn unreachable_stores_show_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let var = format!("${{{SECRET_VAR}}}");
    let closed = closed_port();
    let encoded = encode(SPECIAL);
    let sections = [
        format!("type: sql\nurl: postgresql://postgres:{SECRET}@127.0.0.1:{closed}/test"),
        format!("type: sql\nurl: postgresql://postgres:{encoded}@127.0.0.1:{closed}/test"),
        format!(
            "type: postgresql\nurl: 127.0.0.1\nport: {closed}\nusername: postgres\npassword: {var}\nlogin_db: postgres"
        ),
        format!("type: mysql\nurl: mysql://root:{var}@127.0.0.1:{closed}/test"),
        format!("type: redis\nurl: redis://default:{var}@127.0.0.1:{closed}\ntimeout: 2"),
        format!("type: redis\nurl: 127.0.0.1\nport: {closed}\npassword: \"{SPECIAL}\"\ntimeout: 2"),
        format!(
            "type: redis\nurl: 127.0.0.1\nport: {closed}\nsentinel_service_name: primary\nsentinel_password: {var}\ntimeout: 2"
        ),
        format!(
            "type: redis\nurl: redis-cluster://default:{SECRET}@127.0.0.1:{closed}\ntimeout: 2"
        ),
        format!(
            "type: mongod\nurl: \"mongodb://bot:{var}@127.0.0.1:{closed}/?serverSelectionTimeoutMS=500\""
        ),
        format!(
            "type: mongod\nurl: \"mongodb://127.0.0.1:{closed}/?serverSelectionTimeoutMS=500\"\nusername: bot\npassword: {SECRET}"
        ),
        // The AWS chain reads the secret key and the session token from the environment.
        format!("type: dynamo\ntable_name: creds\nendpoint_url: http://127.0.0.1:{closed}"),
    ];
    for (index, section) in sections.iter().enumerate() {
        let file = endpoints(dir, &format!("closed{index}.yml"), section);
        let output = tracker(dir, &["--endpoints", &file, "list"]);
        assert!(!output.success, "{section}");
        assert!(output.stderr.starts_with("error: "), "{}", output.stderr);
    }
    // The same through migrate, as the destination and as Rasa's own store.
    let good = endpoints(dir, "memory.yml", "type: in_memory");
    for index in [0, 4, 8] {
        let file = dir.join(format!("closed{index}.yml"));
        let file = file.to_str().expect("UTF-8");
        for args in [
            vec!["--endpoints", &good, "migrate", "--to", file],
            vec!["--endpoints", &good, "migrate", "--from-rasa", file],
        ] {
            let output = tracker(dir, &args);
            assert!(!output.success, "{args:?}");
        }
    }
}

#[test]
fn refused_credentials_show_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let var = format!("${{{SECRET_VAR}}}");
    let mut files = Vec::new();
    if let Some(url) = service(Service::Mysql) {
        // The server denies root with a password.
        let (host, port) = host_port(&url);
        files.push(endpoints(
            dir,
            "mysql.yml",
            &format!(
                "type: mysql\nurl: {host}\nport: {port}\ndb: test\nusername: root\npassword: {var}\npool_size: 1"
            ),
        ));
        files.push(endpoints(
            dir,
            "mysql-url.yml",
            &format!(
                "type: sql\nurl: \"mysql://root:{}@{host}:{port}/test\"\npool_size: 1",
                encode(SPECIAL)
            ),
        ));
    }
    if let Some(url) = service(Service::Postgres) {
        // A database that does not exist.
        let (host, port) = host_port(&url);
        files.push(endpoints(
            dir,
            "postgres.yml",
            &format!(
                "type: sql\nurl: postgresql://postgres:{var}@{host}:{port}/nonexistent_creds_db\npool_size: 1"
            ),
        ));
    }
    if let Some(url) = service(Service::Redis) {
        // A user that does not exist.
        let (host, port) = host_port(&url);
        files.push(endpoints(
            dir,
            "redis.yml",
            &format!("type: redis\nurl: redis://nobody_creds:{var}@{host}:{port}\ntimeout: 5"),
        ));
    }
    for file in &files {
        commands_fail(dir, file, true);
    }
    if let Some(url) = service(Service::Mongo) {
        // The stand-in may accept or refuse credentials: either way nothing shows them.
        let file = endpoints(
            dir,
            "mongo.yml",
            &format!(
                "type: mongod\nurl: \"{url}&serverSelectionTimeoutMS=3000\"\ndb: creds{closed}\nusername: bot\npassword: {var}",
                closed = closed_port()
            ),
        );
        tracker(dir, &["--endpoints", &file, "list"]);
    }
}

#[test]
fn working_stores_with_credentials_show_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let var = format!("${{{SECRET_VAR}}}");
    // (endpoints.yml, whether its store holds only this test's conversations)
    let mut files = Vec::new();
    if let Some(url) = service(Service::Postgres) {
        // The test server trusts local connections: the password is accepted.
        let (host, port) = host_port(&url);
        let section = format!(
            "type: postgresql\nurl: {host}\nport: {port}\ndb: test\nusername: postgres\npassword: {var}\npool_size: 2"
        );
        files.push((endpoints(dir, "postgres.yml", &section), false));
        files.push((
            endpoints(
                dir,
                "postgres-url.yml",
                &format!(
                    "type: sql\nurl: \"postgresql://postgres:{}@{host}:{port}/test\"\npool_size: 2",
                    encode(SPECIAL)
                ),
            ),
            false,
        ));
    }
    if let Some(url) = service(Service::Redis) {
        // The `default` user has no password, so AUTH default <anything> is accepted.
        let (host, port) = host_port(&url);
        files.push((
            endpoints(
                dir,
                "redis.yml",
                &format!("type: redis\nurl: redis://default:{var}@{host}:{port}"),
            ),
            false,
        ));
    }
    if let Some(url) = service(Service::Dynamo) {
        // The stand-in accepts the secret key and session token of the environment.
        files.push((
            endpoints(
                dir,
                "dynamo.yml",
                &format!(
                    "type: dynamo\ntable_name: creds_{}\nendpoint_url: {url}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                ),
            ),
            true,
        ));
    }
    for (file, fresh) in &files {
        let id = format!("creds-{}", uuid::Uuid::new_v4().simple());
        let import = dir.join("import.jsonl");
        std::fs::write(
            &import,
            format!(
                "{{\"name\": \"{id}\", \"events\": [{{\"event\": \"user\", \"timestamp\": 1700000000.0, \"text\": \"hi\", \"parse_data\": {{\"intent\": {{\"name\": \"greet\", \"confidence\": 1.0}}}}}}]}}\n"
            ),
        )
        .expect("write");
        let import = import.to_str().expect("UTF-8");
        let export = dir.join("export.jsonl");
        let export = export.to_str().expect("UTF-8");
        let mut commands = vec![
            vec!["import", import],
            vec!["list", "--limit", "5"],
            vec!["show", &id],
            vec!["show", &id, "--transcript"],
        ];
        if *fresh {
            // Commands that read every conversation, on a store of this test's only.
            commands.push(vec!["list", "--all"]);
            commands.push(vec!["export", "--output", export]);
            commands.push(vec!["prune", "--inactive-for", "1w", "--dry-run"]);
        }
        commands.push(vec!["delete", &id]);
        for args in commands {
            let mut all = vec!["--endpoints", file.as_str()];
            all.extend(args);
            let output = tracker(dir, &all);
            assert!(output.success, "tracker {all:?}: {}", output.stderr);
        }
    }
}

/// `tracker-sql` reads the text after the last `:` of a `url` without a scheme as the port,
/// and quotes it in its error: the password of `user:password@host`.
#[test]
fn sql_url_without_a_scheme_shows_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = endpoints(
        dir.path(),
        "endpoints.yml",
        &format!("type: postgresql\nurl: \"bot:{SECRET}@127.0.0.1\"\ndb: rasa"),
    );
    let output = tracker(dir.path(), &["--endpoints", &file, "list"]);
    assert!(!output.success);
}
