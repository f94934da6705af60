//! Servers at their usual local addresses: PostgreSQL, MySQL / MariaDB and Redis.
//!
//! A server counts only when it answers in its own protocol: PostgreSQL and MySQL / MariaDB
//! must let the usual administrator in without a password and give the tests their own
//! database ([`LOCAL_DATABASE`], created when missing), Redis must answer `PING` without a
//! password and not run in cluster mode. Each service is looked for at most once per
//! process; the answer, good or bad, is kept. The checks use blocking sockets with short
//! timeouts, so they need no runtime and no driver.

mod mysql;
mod postgres;
mod redis;
#[cfg(test)]
mod tests;
mod wire;

use std::sync::OnceLock;

use crate::service::{LOCAL_DATABASE, LocalServer, Service};

type Found = OnceLock<Result<String, String>>;

static POSTGRES: Found = OnceLock::new();
static MYSQL: Found = OnceLock::new();
static REDIS: Found = OnceLock::new();

/// The URL of `service` at its usual local address, or why there is none usable.
pub(crate) fn url(service: Service) -> Result<String, String> {
    let (slot, server) = match (service, service.local()) {
        (Service::Postgres, Some(server)) => (&POSTGRES, server),
        (Service::Mysql, Some(server)) => (&MYSQL, server),
        (Service::Redis, Some(server)) => (&REDIS, server),
        _ => return Err("there is no usual local address for it".to_owned()),
    };
    slot.get_or_init(|| {
        check(service, server)?;
        crate::plan::uncaptured(&format!(
            "tracker-testkit: {var} is not set; using the {label} server at {address} ({url})",
            var = service.env_var(),
            label = server.label,
            address = server.address,
            url = server.url,
        ));
        Ok(server.url.to_owned())
    })
    .clone()
}

/// Checks the local server of `service`, creating the tests' database where there is one.
fn check(service: Service, server: LocalServer) -> Result<(), String> {
    match service {
        Service::Postgres => postgres::ensure_database(server.address, "postgres", LOCAL_DATABASE),
        Service::Mysql => mysql::ensure_database(server.address, "root", LOCAL_DATABASE),
        Service::Redis => redis::check(server.address),
        _ => Err("there is no usual local address for it".to_owned()),
    }
}
