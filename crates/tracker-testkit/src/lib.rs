#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(feature = "containers")]
pub mod certs;
mod containers;
pub mod secrets;

use std::path::Path;

/// A service a backend's integration tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// PostgreSQL (`TRACKER_TEST_POSTGRES_URL`).
    Postgres,
    /// MySQL or MariaDB (`TRACKER_TEST_MYSQL_URL`).
    Mysql,
    /// A single Redis server (`TRACKER_TEST_REDIS_URL`).
    Redis,
    /// A Redis Cluster (`TRACKER_TEST_REDIS_CLUSTER_URL`); never started in a container.
    RedisCluster,
    /// MongoDB (`TRACKER_TEST_MONGO_URL`).
    Mongo,
    /// DynamoDB or DynamoDB Local (`TRACKER_TEST_DYNAMO_URL`).
    Dynamo,
}

impl Service {
    /// Every service, in declaration order.
    pub const ALL: [Service; 6] = [
        Service::Postgres,
        Service::Mysql,
        Service::Redis,
        Service::RedisCluster,
        Service::Mongo,
        Service::Dynamo,
    ];

    /// The environment variable that holds this service's URL, e.g. `"TRACKER_TEST_POSTGRES_URL"`.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "TRACKER_TEST_POSTGRES_URL",
            Service::Mysql => "TRACKER_TEST_MYSQL_URL",
            Service::Redis => "TRACKER_TEST_REDIS_URL",
            Service::RedisCluster => "TRACKER_TEST_REDIS_CLUSTER_URL",
            Service::Mongo => "TRACKER_TEST_MONGO_URL",
            Service::Dynamo => "TRACKER_TEST_DYNAMO_URL",
        }
    }

    /// The short name of this service, e.g. `"postgres"`, as used in the `SKIPPED` line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Mysql => "mysql",
            Service::Redis => "redis",
            Service::RedisCluster => "redis-cluster",
            Service::Mongo => "mongo",
            Service::Dynamo => "dynamo",
        }
    }

    /// A sample URL for the `SKIPPED` hint.
    fn example_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            Service::Mysql => "mysql://root@127.0.0.1:3306/test",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::RedisCluster => "redis://127.0.0.1:7000",
            Service::Mongo => "mongodb://127.0.0.1:27017",
            Service::Dynamo => "http://127.0.0.1:8000",
        }
    }

    /// Whether the `containers` feature knows how to start this service.
    fn has_container(self) -> bool {
        !matches!(self, Service::RedisCluster)
    }
}

/// Where a service URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The service's environment variable (see [`Service::env_var`]).
    Env,
    /// A container started by this process through testcontainers.
    Container,
}

/// A reachable service.
#[derive(Debug, Clone)]
pub struct ServiceUrl {
    /// The service this URL points at.
    pub service: Service,
    /// The URL to connect to, e.g. `postgres://postgres:postgres@127.0.0.1:32768/postgres`.
    pub url: String,
    /// Where the URL came from.
    pub source: Source,
}

/// Returns the URL of `service`, or None after printing the SKIPPED line (panics under CI).
///
/// The URL comes from the service's environment variable (read at run time; an empty value
/// counts as unset), else — with the `containers` feature and a reachable Docker engine — from
/// a container started once per test process and shared by all its tests. When neither is
/// available this prints `SKIPPED <backend>: <reason>` to stderr and returns `None`, or, when
/// [`running_in_ci`] is true, panics with that message.
pub async fn service_url(service: Service) -> Option<ServiceUrl> {
    let lookup = |name: &str| std::env::var(name).ok();
    match plan(
        service,
        &lookup,
        docker_reachable(),
        cfg!(feature = "containers"),
    ) {
        Plan::Env(url) => Some(ServiceUrl {
            service,
            url,
            source: Source::Env,
        }),
        Plan::Container => container_url(service).await,
        Plan::Skip(line) => {
            eprintln!("{line}");
            None
        }
        Plan::Fail(line) => panic!("{line}"),
    }
}

#[cfg(feature = "containers")]
async fn container_url(service: Service) -> Option<ServiceUrl> {
    match containers::url(service).await {
        Ok(url) => Some(ServiceUrl {
            service,
            url,
            source: Source::Container,
        }),
        Err(error) => {
            skip(service.name(), &container_failed_reason(service, &error));
            None
        }
    }
}

#[cfg(not(feature = "containers"))]
async fn container_url(service: Service) -> Option<ServiceUrl> {
    // `plan` never answers `Plan::Container` without the feature.
    skip(
        service.name(),
        &unavailable_reason(service, Unavailable::FeatureOff),
    );
    None
}

/// True when the CI environment variable asks for skips to fail.
///
/// That is when `CI` is set to a non-empty value other than `0` or `false` (any case).
pub fn running_in_ci() -> bool {
    ci_flag(std::env::var("CI").ok().as_deref())
}

/// Prints the SKIPPED line and returns, or panics under CI. Public so tests with other needs (e.g. a local binary that is missing) can skip the same way.
///
/// The line is `SKIPPED <backend>: <reason>` on stderr, on a single line (whitespace in
/// `reason`, newlines included, is collapsed). Under CI (see [`running_in_ci`]) it panics with
/// the same message instead, so an unavailable service fails the test.
pub fn skip(backend: &str, reason: &str) {
    match unavailable(backend, reason, running_in_ci()) {
        Plan::Fail(line) => panic!("{line}"),
        Plan::Skip(line) => eprintln!("{line}"),
        Plan::Env(_) | Plan::Container => {}
    }
}

/// What [`service_url`] will do for a service, decided without side effects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Use this URL from the environment.
    Env(String),
    /// Start (or reuse) this process's container.
    Container,
    /// Print this `SKIPPED` line and return `None`.
    Skip(String),
    /// Panic with this `SKIPPED` message (CI).
    Fail(String),
}

/// Why a service cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unavailable {
    /// The crate was built without the `containers` feature.
    FeatureOff,
    /// The service has no container support (Redis Cluster).
    Unsupported,
    /// No Docker engine is reachable.
    DockerUnreachable,
}

/// The pure decision behind [`service_url`]: `lookup` reads environment variables, the flags
/// say whether a Docker engine is reachable and whether container support is compiled in.
fn plan(
    service: Service,
    lookup: &dyn Fn(&str) -> Option<String>,
    docker_reachable: bool,
    containers_enabled: bool,
) -> Plan {
    if let Some(url) = non_empty(lookup(service.env_var())) {
        return Plan::Env(url);
    }
    let why = if !containers_enabled {
        Unavailable::FeatureOff
    } else if !service.has_container() {
        Unavailable::Unsupported
    } else if !docker_reachable {
        Unavailable::DockerUnreachable
    } else {
        return Plan::Container;
    };
    unavailable(
        service.name(),
        &unavailable_reason(service, why),
        ci_flag(lookup("CI").as_deref()),
    )
}

/// The `SKIPPED` line for `backend`, as a skip or (under CI) a failure.
fn unavailable(backend: &str, reason: &str, ci: bool) -> Plan {
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = format!("SKIPPED {backend}: {reason}");
    if ci {
        Plan::Fail(line)
    } else {
        Plan::Skip(line)
    }
}

fn unavailable_reason(service: Service, why: Unavailable) -> String {
    let var = service.env_var();
    let cause = match why {
        Unavailable::FeatureOff => "tracker-testkit was built without its `containers` feature",
        Unavailable::Unsupported => "there is no container support for it",
        Unavailable::DockerUnreachable => {
            "no Docker engine is reachable (DOCKER_HOST is unset and /var/run/docker.sock does not exist)"
        }
    };
    format!(
        "{var} is not set and {cause}; set {var} (e.g. {example}) to run this test",
        example = service.example_url()
    )
}

#[cfg(feature = "containers")]
fn container_failed_reason(service: Service, error: &str) -> String {
    let var = service.env_var();
    format!(
        "{var} is not set and starting a {name} container failed: {error}; set {var} (e.g. {example}) to run this test",
        name = service.name(),
        example = service.example_url()
    )
}

/// Parses the `CI` variable: set, non-empty and not `0`/`false` means CI.
fn ci_flag(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("" | "0") => false,
        Some(v) => !v.eq_ignore_ascii_case("false"),
    }
}

/// An environment value, or `None` when it is unset or blank.
fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Cheap check for a Docker engine, done before any attempt to talk to it.
fn docker_reachable() -> bool {
    docker_reachable_from(
        std::env::var("DOCKER_HOST").ok(),
        Path::new("/var/run/docker.sock").exists(),
    )
}

fn docker_reachable_from(docker_host: Option<String>, socket_exists: bool) -> bool {
    non_empty(docker_host).is_some() || socket_exists
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::pin;
    use std::process::Command;
    use std::task::{Context, Poll, Waker};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn env_var_names_and_service_names() {
        let expected = [
            (Service::Postgres, "TRACKER_TEST_POSTGRES_URL", "postgres"),
            (Service::Mysql, "TRACKER_TEST_MYSQL_URL", "mysql"),
            (Service::Redis, "TRACKER_TEST_REDIS_URL", "redis"),
            (
                Service::RedisCluster,
                "TRACKER_TEST_REDIS_CLUSTER_URL",
                "redis-cluster",
            ),
            (Service::Mongo, "TRACKER_TEST_MONGO_URL", "mongo"),
            (Service::Dynamo, "TRACKER_TEST_DYNAMO_URL", "dynamo"),
        ];
        assert_eq!(Service::ALL.len(), expected.len());
        for (service, (want, var, name)) in Service::ALL.into_iter().zip(expected) {
            assert_eq!(service, want);
            assert_eq!(service.env_var(), var);
            assert_eq!(service.name(), name);
        }
    }

    #[test]
    fn env_var_present_wins_over_everything() {
        for service in Service::ALL {
            let lookup = env(&[(service.env_var(), " redis://h:1 "), ("CI", "true")]);
            for docker in [false, true] {
                for containers in [false, true] {
                    assert_eq!(
                        plan(service, &lookup, docker, containers),
                        Plan::Env("redis://h:1".to_owned()),
                        "{service:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        for value in ["", "   "] {
            let lookup = env(&[("TRACKER_TEST_MONGO_URL", value)]);
            assert!(matches!(
                plan(Service::Mongo, &lookup, false, true),
                Plan::Skip(_)
            ));
            assert_eq!(plan(Service::Mongo, &lookup, true, true), Plan::Container);
        }
    }

    #[test]
    fn ci_parsing() {
        assert!(!ci_flag(None));
        assert!(!ci_flag(Some("")));
        assert!(!ci_flag(Some("0")));
        assert!(!ci_flag(Some("false")));
        assert!(!ci_flag(Some("FALSE")));
        assert!(!ci_flag(Some(" ")));
        assert!(ci_flag(Some("true")));
        assert!(ci_flag(Some("1")));
        assert!(ci_flag(Some("yes")));
    }

    #[test]
    fn no_env_no_docker_skips_outside_ci_and_fails_under_ci() {
        for service in Service::ALL {
            for containers in [false, true] {
                for ci in ["", "0", "false"] {
                    match plan(service, &env(&[("CI", ci)]), false, containers) {
                        Plan::Skip(line) => {
                            assert!(line.starts_with(&format!("SKIPPED {}: ", service.name())));
                            assert!(line.contains(service.env_var()), "{line}");
                            assert!(!line.contains('\n'));
                        }
                        other => panic!("expected a skip, got {other:?}"),
                    }
                }
                assert!(matches!(
                    plan(service, &env(&[]), false, containers),
                    Plan::Skip(_)
                ));
                for ci in ["true", "1"] {
                    match plan(service, &env(&[("CI", ci)]), false, containers) {
                        Plan::Fail(line) => {
                            assert!(line.starts_with(&format!("SKIPPED {}: ", service.name())));
                            assert!(line.contains(service.env_var()), "{line}");
                        }
                        other => panic!("expected a failure, got {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn docker_reachable_starts_a_container_except_for_redis_cluster() {
        for service in Service::ALL {
            let got = plan(service, &env(&[]), true, true);
            if service == Service::RedisCluster {
                assert!(matches!(got, Plan::Skip(_)), "{got:?}");
            } else {
                assert_eq!(got, Plan::Container);
            }
            // Without the feature, Docker does not matter.
            assert!(matches!(
                plan(service, &env(&[]), true, false),
                Plan::Skip(_)
            ));
        }
    }

    #[test]
    fn skip_line_is_one_line() {
        assert_eq!(
            unavailable("local-bin", "missing\n  binary\tfoo ", false),
            Plan::Skip("SKIPPED local-bin: missing binary foo".to_owned())
        );
        assert_eq!(
            unavailable("local-bin", "missing", true),
            Plan::Fail("SKIPPED local-bin: missing".to_owned())
        );
    }

    #[test]
    fn docker_detection() {
        assert!(!docker_reachable_from(None, false));
        assert!(!docker_reachable_from(Some(String::new()), false));
        assert!(docker_reachable_from(
            Some("unix:///run/docker.sock".to_owned()),
            false
        ));
        assert!(docker_reachable_from(None, true));
    }

    /// Polls a future that must finish without waiting (no container involved).
    fn now<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("future was expected to complete without waiting"),
        }
    }

    const PROBE: &str = "TRACKER_TESTKIT_PROBE";

    /// Runs inside a child process started by `public_api_in_a_child_process`, where the
    /// environment is set up without `unsafe` `set_var`. A no-op in a normal test run.
    #[test]
    fn probe() {
        match std::env::var(PROBE).as_deref() {
            Ok("env") => {
                let got = now(service_url(Service::Postgres)).expect("env var is set");
                assert_eq!(got.service, Service::Postgres);
                assert_eq!(got.source, Source::Env);
                assert_eq!(got.url, "postgres://u@127.0.0.1:1/db");
            }
            Ok("unavailable") => {
                // Redis Cluster has no container support, so this never touches Docker.
                assert!(now(service_url(Service::RedisCluster)).is_none());
            }
            Ok("skip") => skip("local-bin", "the frobnicator binary\nis missing"),
            _ => {}
        }
    }

    fn run_probe(mode: &str, extra: &[(&str, &str)]) -> (bool, String) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "tests::probe", "--nocapture", "--test-threads=1"])
            .env(PROBE, mode)
            .env_remove("CI");
        for service in Service::ALL {
            cmd.env_remove(service.env_var());
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run the probe child");
        // The SKIPPED line goes to stderr; a panic may be reported on either stream.
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        (out.status.success(), text)
    }

    fn skipped_lines(stderr: &str) -> Vec<&str> {
        stderr
            .lines()
            .filter(|l| l.contains("SKIPPED"))
            .collect::<Vec<_>>()
    }

    #[test]
    fn public_api_in_a_child_process() {
        let (ok, stderr) = run_probe(
            "env",
            &[("TRACKER_TEST_POSTGRES_URL", "postgres://u@127.0.0.1:1/db")],
        );
        assert!(ok, "{stderr}");
        assert!(skipped_lines(&stderr).is_empty(), "{stderr}");

        let (ok, stderr) = run_probe("unavailable", &[("CI", "false")]);
        assert!(ok, "{stderr}");
        let cause = if cfg!(feature = "containers") {
            "there is no container support for it"
        } else {
            "tracker-testkit was built without its `containers` feature"
        };
        assert_eq!(
            skipped_lines(&stderr),
            [format!(
                "SKIPPED redis-cluster: TRACKER_TEST_REDIS_CLUSTER_URL is not set and {cause}; \
                 set TRACKER_TEST_REDIS_CLUSTER_URL (e.g. redis://127.0.0.1:7000) to run this test"
            )],
            "{stderr}"
        );

        let (ok, stderr) = run_probe("unavailable", &[("CI", "true")]);
        assert!(!ok, "under CI an unavailable service must fail: {stderr}");
        assert!(
            stderr.contains("SKIPPED redis-cluster: TRACKER_TEST_REDIS_CLUSTER_URL"),
            "{stderr}"
        );

        let (ok, stderr) = run_probe("skip", &[]);
        assert!(ok, "{stderr}");
        assert_eq!(
            skipped_lines(&stderr),
            ["SKIPPED local-bin: the frobnicator binary is missing"],
            "{stderr}"
        );

        let (ok, stderr) = run_probe("skip", &[("CI", "1")]);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains("SKIPPED local-bin: the frobnicator binary is missing"),
            "{stderr}"
        );
    }
}
