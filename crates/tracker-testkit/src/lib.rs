#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(feature = "containers")]
pub mod certs;
#[cfg(feature = "containers")]
mod containers;
mod local;
mod plan;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub mod secrets;
mod service;

pub use plan::{running_in_ci, skip};
pub use service::Service;

use plan::{Plan, docker_reachable, plan};

/// Where a service URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The service's environment variable (see [`Service::env_var`]).
    Env,
    /// A server at the service's usual local address (PostgreSQL at `127.0.0.1:5432`,
    /// MySQL / MariaDB at `127.0.0.1:3306`, Redis at `127.0.0.1:6379`), found when the
    /// environment variable is unset.
    Local,
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
/// counts as unset); else, for PostgreSQL, MySQL / MariaDB and Redis, from a server that
/// answers at the usual local address (its own database `tracker_test`, created when
/// missing; checked once per test process, unless `TRACKER_TEST_LOCAL` is `0` or `false`);
/// else — with the `containers` feature and a reachable Docker engine — from a container
/// started once per test process and shared by all its tests. When none is available this
/// prints `SKIPPED <backend>: <reason>` to stderr and returns `None`, or, when
/// [`running_in_ci`] is true, panics with that message.
pub async fn service_url(service: Service) -> Option<ServiceUrl> {
    let lookup = |name: &str| std::env::var(name).ok();
    let found = |url, source| {
        Some(ServiceUrl {
            service,
            url,
            source,
        })
    };
    match plan(
        service,
        &lookup,
        &local::url,
        docker_reachable(),
        cfg!(feature = "containers"),
    ) {
        Plan::Env(url) => found(url, Source::Env),
        Plan::Local(url) => found(url, Source::Local),
        Plan::Container { local } => container_url(service, local).await,
        Plan::Skip(line) => {
            plan::print_skip(service.name(), &line);
            None
        }
        Plan::Fail(line) => panic!("{line}"),
    }
}

#[cfg(feature = "containers")]
async fn container_url(service: Service, local: Option<String>) -> Option<ServiceUrl> {
    match containers::url(service).await {
        Ok(url) => Some(ServiceUrl {
            service,
            url,
            source: Source::Container,
        }),
        Err(error) => {
            let cause = format!(
                "starting a {name} container failed: {error}",
                name = service.name()
            );
            skip(
                service.name(),
                &plan::reason(service, local.as_deref(), &cause),
            );
            None
        }
    }
}

#[cfg(not(feature = "containers"))]
async fn container_url(service: Service, local: Option<String>) -> Option<ServiceUrl> {
    // `plan` never answers `Plan::Container` without the feature.
    let cause = "tracker-testkit was built without its `containers` feature";
    skip(
        service.name(),
        &plan::reason(service, local.as_deref(), cause),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::process::Command;
    use std::task::{Context, Poll, Waker};

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
            Ok("skip-twice") => {
                skip("local-bin", "the frobnicator binary is missing");
                skip("local-bin", "the frobnicator binary is missing");
                skip("other-bin", "the widget binary is missing");
            }
            Ok("local") => {
                for service in [Service::Postgres, Service::Mysql, Service::Redis] {
                    if let Some(got) = now(service_url(service)) {
                        assert_eq!(got.service, service);
                        println!("FOUND {} {:?} {}", service.name(), got.source, got.url);
                    }
                }
            }
            _ => {}
        }
    }

    fn run_probe(mode: &str, extra: &[(&str, &str)]) -> (bool, String) {
        run_probe_with(mode, extra, true)
    }

    fn run_probe_with(mode: &str, extra: &[(&str, &str)], nocapture: bool) -> (bool, String) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "tests::probe", "--test-threads=1"])
            .args(nocapture.then_some("--nocapture"))
            .env(PROBE, mode)
            .env_remove("CI")
            .env_remove(plan::LOCAL_VAR);
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

        // Without --nocapture, the first line of each backend still shows.
        let (ok, stderr) = run_probe_with("skip-twice", &[], false);
        assert!(ok, "{stderr}");
        assert_eq!(
            skipped_lines(&stderr),
            [
                "SKIPPED local-bin: the frobnicator binary is missing",
                "SKIPPED other-bin: the widget binary is missing"
            ],
            "{stderr}"
        );
        let (ok, stderr) = run_probe_with("skip-twice", &[], true);
        assert!(ok, "{stderr}");
        assert_eq!(skipped_lines(&stderr).len(), 3, "{stderr}");

        let (ok, stderr) = run_probe("skip", &[("CI", "1")]);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains("SKIPPED local-bin: the frobnicator binary is missing"),
            "{stderr}"
        );
    }

    /// Without the environment variables, the servers at the usual local addresses are used
    /// when they answer (always under CI, where they run there), and skipped with the reason
    /// otherwise.
    #[test]
    fn local_servers_in_a_child_process() {
        if docker_reachable() {
            // Where nothing answers locally the child would start containers.
            return;
        }
        let (ok, output) = run_probe("local", &[]);
        assert!(ok, "{output}");
        for service in [Service::Postgres, Service::Mysql, Service::Redis] {
            let server = service.local().expect("a local address");
            let address = server.address.parse().expect("an address");
            let listening =
                std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2))
                    .is_ok();
            let found = format!("FOUND {} Local {}", service.name(), server.url);
            let skipped = format!(
                "SKIPPED {}: {} is not set, no usable {} at {} (",
                service.name(),
                service.env_var(),
                server.label,
                server.address
            );
            let used = output.lines().any(|line| line.ends_with(&found));
            let why = output.lines().find(|line| line.starts_with(&skipped));
            if running_in_ci() {
                // CI runs every local service at its usual address, usable by the tests.
                assert!(used, "{found:?} expected in:\n{output}");
            } else if !listening {
                let why = why.unwrap_or_else(|| panic!("{skipped:?} expected in:\n{output}"));
                assert!(why.contains("(nothing answers: "), "{why}");
            } else {
                assert!(used || why.is_some(), "{service:?}: {output}");
            }
            assert!(used != why.is_some(), "{service:?}: {output}");
        }

        // Turned off, the local servers are not looked for.
        let (ok, output) = run_probe("local", &[(plan::LOCAL_VAR, "0")]);
        assert!(ok, "{output}");
        assert!(!output.contains("FOUND"), "{output}");
        assert_eq!(skipped_lines(&output).len(), 3, "{output}");
        assert!(
            output.contains(
                "SKIPPED redis: TRACKER_TEST_REDIS_URL is not set, TRACKER_TEST_LOCAL turns off \
                 the Redis at 127.0.0.1:6379 and"
            ),
            "{output}"
        );
    }
}
