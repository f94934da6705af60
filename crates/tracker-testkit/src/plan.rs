//! Where a service URL comes from, decided step by step: the environment variable, a server
//! at its usual local address, a container, or a skip (a failure under CI).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::service::Service;

/// The environment variable that turns the local-address step off (`0` or `false`).
pub(crate) const LOCAL_VAR: &str = "TRACKER_TEST_LOCAL";

/// What [`crate::service_url`] does for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Use this URL from the environment.
    Env(String),
    /// Use this server found at its usual local address.
    Local(String),
    /// Start (or reuse) this process's container; `local` says why no local server was used.
    Container { local: Option<String> },
    /// Print this `SKIPPED` line and return `None`.
    Skip(String),
    /// Panic with this `SKIPPED` message (CI).
    Fail(String),
}

/// Why a container cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The crate was built without the `containers` feature.
    FeatureOff,
    /// The service has no container support (Redis Cluster).
    Unsupported,
    /// No Docker engine is reachable.
    DockerUnreachable,
}

/// The decision behind [`crate::service_url`]: `lookup` reads environment variables, `local`
/// looks for the service at its usual local address (called only when the environment
/// variable is unset and the service has such an address), and the flags say whether a
/// Docker engine is reachable and whether container support is compiled in.
pub(crate) fn plan(
    service: Service,
    lookup: &dyn Fn(&str) -> Option<String>,
    local: &dyn Fn(Service) -> Result<String, String>,
    docker_reachable: bool,
    containers_enabled: bool,
) -> Plan {
    if let Some(url) = non_empty(lookup(service.env_var())) {
        return Plan::Env(url);
    }
    let local = match service.local() {
        None => None,
        Some(server) if !local_enabled(lookup(LOCAL_VAR).as_deref()) => Some(format!(
            "{LOCAL_VAR} turns off the {label} at {address}",
            label = server.label,
            address = server.address
        )),
        Some(server) => match local(service) {
            Ok(url) => return Plan::Local(url),
            Err(why) => Some(format!(
                "no usable {label} at {address} ({why})",
                label = server.label,
                address = server.address
            )),
        },
    };
    let why = if !containers_enabled {
        Unavailable::FeatureOff
    } else if !service.has_container() {
        Unavailable::Unsupported
    } else if !docker_reachable {
        Unavailable::DockerUnreachable
    } else {
        return Plan::Container { local };
    };
    let cause = match why {
        Unavailable::FeatureOff => {
            "tracker-testkit was built without its `containers` feature".to_owned()
        }
        Unavailable::Unsupported => "there is no container support for it".to_owned(),
        Unavailable::DockerUnreachable => "no Docker engine is reachable (DOCKER_HOST is unset \
             and /var/run/docker.sock does not exist)"
            .to_owned(),
    };
    unavailable(
        service.name(),
        &reason(service, local.as_deref(), &cause),
        ci_flag(lookup("CI").as_deref()),
    )
}

/// The reason in the `SKIPPED` line: what was tried, then how to run the test.
pub(crate) fn reason(service: Service, local: Option<&str>, cause: &str) -> String {
    let var = service.env_var();
    let example = service.example_url();
    match (local, service.local()) {
        (Some(local), Some(server)) => format!(
            "{var} is not set, {local} and {cause}; set {var} (e.g. {example}) or run {label} at \
             {address} ({login}) to run this test",
            label = server.label,
            address = server.address,
            login = server.login,
        ),
        _ => format!("{var} is not set and {cause}; set {var} (e.g. {example}) to run this test"),
    }
}

/// The `SKIPPED` line for `backend`, as a skip or (under CI) a failure.
pub(crate) fn unavailable(backend: &str, reason: &str, ci: bool) -> Plan {
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = format!("SKIPPED {backend}: {reason}");
    if ci {
        Plan::Fail(line)
    } else {
        Plan::Skip(line)
    }
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
        Plan::Skip(line) => print_skip(backend, &line),
        Plan::Env(_) | Plan::Local(_) | Plan::Container { .. } => {}
    }
}

/// Prints a `SKIPPED` line to stderr. The first one of each backend in a test process goes
/// past the test harness's output capture, so a plain `cargo test` shows it; later ones are
/// captured like any test output (shown with `--nocapture`), so a binary with many tests of
/// one backend does not repeat it. Each call prints the line once either way.
pub(crate) fn print_skip(backend: &str, line: &str) {
    static SHOWN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SHOWN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(backend.to_owned());
    if first {
        uncaptured(line);
    } else {
        eprintln!("{line}");
    }
}

/// Writes a line to stderr, past the test harness's output capture (which only takes what
/// `print!` and `eprint!` write).
pub(crate) fn uncaptured(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Parses the `CI` variable: set, non-empty and not `0`/`false` means CI.
pub(crate) fn ci_flag(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("" | "0") => false,
        Some(v) => !v.eq_ignore_ascii_case("false"),
    }
}

/// Parses [`LOCAL_VAR`]: the local step is on unless it is `0` or `false` (any case).
fn local_enabled(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        Some("0") => false,
        Some(v) => !v.eq_ignore_ascii_case("false"),
        None => true,
    }
}

/// An environment value, or `None` when it is unset or blank.
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Cheap check for a Docker engine, done before any attempt to talk to it.
pub(crate) fn docker_reachable() -> bool {
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
    use std::cell::Cell;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    /// A local step that finds nothing.
    fn nothing(_: Service) -> Result<String, String> {
        Err("nothing answers: Connection refused".to_owned())
    }

    /// A local step that finds every service.
    fn found(service: Service) -> Result<String, String> {
        Ok(format!("{}://local", service.name()))
    }

    /// A local step that must not run.
    fn never(service: Service) -> Result<String, String> {
        panic!("the local step ran for {service:?}")
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
    fn local_addresses_are_the_usual_ones() {
        let local = |service: Service| service.local().map(|s| (s.address, s.url));
        assert_eq!(
            local(Service::Postgres),
            Some((
                "127.0.0.1:5432",
                "postgres://postgres@127.0.0.1:5432/tracker_test"
            ))
        );
        assert_eq!(
            local(Service::Mysql),
            Some(("127.0.0.1:3306", "mysql://root@127.0.0.1:3306/tracker_test"))
        );
        assert_eq!(
            local(Service::Redis),
            Some(("127.0.0.1:6379", "redis://127.0.0.1:6379"))
        );
        for service in [Service::RedisCluster, Service::Mongo, Service::Dynamo] {
            assert_eq!(local(service), None);
        }
    }

    #[test]
    fn env_var_present_wins_over_everything() {
        for service in Service::ALL {
            let lookup = env(&[(service.env_var(), " redis://h:1 "), ("CI", "true")]);
            for docker in [false, true] {
                for containers in [false, true] {
                    assert_eq!(
                        plan(service, &lookup, &never, docker, containers),
                        Plan::Env("redis://h:1".to_owned()),
                        "{service:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_local_server_comes_before_a_container_and_a_skip() {
        for service in Service::ALL {
            for ci in ["", "true"] {
                for docker in [false, true] {
                    let got = plan(service, &env(&[("CI", ci)]), &found, docker, true);
                    if service.local().is_some() {
                        assert_eq!(got, Plan::Local(format!("{}://local", service.name())));
                    } else {
                        assert!(!matches!(got, Plan::Local(_)), "{service:?}: {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_local_step_runs_only_where_it_can_find_something() {
        let calls = Cell::new(0);
        let counted = |service: Service| {
            calls.set(calls.get() + 1);
            nothing(service)
        };
        for service in Service::ALL {
            let before = calls.get();
            let _ = plan(service, &env(&[]), &counted, false, true);
            let expected = usize::from(service.local().is_some());
            assert_eq!(calls.get() - before, expected, "{service:?}");
        }
        // Turned off: never called, and the line says so.
        for off in ["0", "false", " FALSE "] {
            let lookup = env(&[(LOCAL_VAR, off)]);
            match plan(Service::Postgres, &lookup, &never, false, true) {
                Plan::Skip(line) => assert!(
                    line.contains("TRACKER_TEST_LOCAL turns off the PostgreSQL at 127.0.0.1:5432"),
                    "{line}"
                ),
                other => panic!("expected a skip, got {other:?}"),
            }
        }
        for on in ["", "1", "true"] {
            let lookup = env(&[(LOCAL_VAR, on)]);
            assert!(matches!(
                plan(Service::Redis, &lookup, &found, false, true),
                Plan::Local(_)
            ));
        }
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        for value in ["", "   "] {
            let lookup = env(&[("TRACKER_TEST_MONGO_URL", value)]);
            assert!(matches!(
                plan(Service::Mongo, &lookup, &nothing, false, true),
                Plan::Skip(_)
            ));
            assert_eq!(
                plan(Service::Mongo, &lookup, &nothing, true, true),
                Plan::Container { local: None }
            );
            let lookup = env(&[("TRACKER_TEST_MYSQL_URL", value)]);
            assert!(matches!(
                plan(Service::Mysql, &lookup, &found, false, true),
                Plan::Local(_)
            ));
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
    fn nothing_found_skips_outside_ci_and_fails_under_ci() {
        for service in Service::ALL {
            for containers in [false, true] {
                for ci in ["", "0", "false"] {
                    match plan(service, &env(&[("CI", ci)]), &nothing, false, containers) {
                        Plan::Skip(line) => {
                            assert!(line.starts_with(&format!("SKIPPED {}: ", service.name())));
                            assert!(line.contains(service.env_var()), "{line}");
                            assert!(!line.contains('\n'));
                        }
                        other => panic!("expected a skip, got {other:?}"),
                    }
                }
                assert!(matches!(
                    plan(service, &env(&[]), &nothing, false, containers),
                    Plan::Skip(_)
                ));
                for ci in ["true", "1"] {
                    match plan(service, &env(&[("CI", ci)]), &nothing, false, containers) {
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
    fn the_skip_line_says_what_was_tried() {
        let line = |service| match plan(service, &env(&[]), &nothing, false, true) {
            Plan::Skip(line) => line,
            other => panic!("expected a skip, got {other:?}"),
        };
        assert_eq!(
            line(Service::Postgres),
            "SKIPPED postgres: TRACKER_TEST_POSTGRES_URL is not set, no usable PostgreSQL at \
             127.0.0.1:5432 (nothing answers: Connection refused) and no Docker engine is \
             reachable (DOCKER_HOST is unset and /var/run/docker.sock does not exist); set \
             TRACKER_TEST_POSTGRES_URL (e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres) \
             or run PostgreSQL at 127.0.0.1:5432 (user postgres, no password) to run this test"
        );
        assert_eq!(
            line(Service::Mongo),
            "SKIPPED mongo: TRACKER_TEST_MONGO_URL is not set and no Docker engine is reachable \
             (DOCKER_HOST is unset and /var/run/docker.sock does not exist); set \
             TRACKER_TEST_MONGO_URL (e.g. mongodb://127.0.0.1:27017) to run this test"
        );
    }

    #[test]
    fn docker_reachable_starts_a_container_except_for_redis_cluster() {
        for service in Service::ALL {
            let got = plan(service, &env(&[]), &nothing, true, true);
            if service == Service::RedisCluster {
                assert!(matches!(got, Plan::Skip(_)), "{got:?}");
            } else {
                let local = service.local().map(|server| {
                    format!(
                        "no usable {} at {} (nothing answers: Connection refused)",
                        server.label, server.address
                    )
                });
                assert_eq!(got, Plan::Container { local });
            }
            // Without the feature, Docker does not matter.
            assert!(matches!(
                plan(service, &env(&[]), &nothing, true, false),
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
}
