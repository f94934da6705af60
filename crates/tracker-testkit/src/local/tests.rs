//! The protocol checks against the servers at the usual local addresses.

use super::wire::{LOGIN_TIMEOUT, connect};
use super::{mysql, postgres, redis};
use crate::plan::skip;
use crate::service::Service;

/// The address of the local server of `service`, or `None` after a skip when nothing
/// listens there (a failure under CI, which runs every one of them).
fn listening(service: Service) -> Option<&'static str> {
    let server = service.local().expect("a local address");
    match connect(server.address) {
        Ok(_) => Some(server.address),
        Err(why) => {
            skip(
                service.name(),
                &format!("{} at {}: {why}", server.label, server.address),
            );
            None
        }
    }
}

/// A protocol check of one server.
type Check = fn(&str) -> Result<(), String>;

/// A database name of this test run, so runs never share one.
fn scratch_database(what: &str) -> String {
    format!("tracker_testkit_{what}_{}", std::process::id())
}

#[test]
fn postgres_database_is_created_once_then_reused() {
    let Some(address) = listening(Service::Postgres) else {
        return;
    };
    let database = scratch_database("pg");
    let drop = |admin: &mut postgres::Session| {
        admin
            .query(&format!("DROP DATABASE IF EXISTS \"{database}\""))
            .expect("drop the scratch database");
    };
    let mut admin = postgres::Session::start(address, "postgres", "postgres")
        .expect("the local PostgreSQL trusts user postgres");
    drop(&mut admin);
    let exists = format!("SELECT 1 FROM pg_database WHERE datname = '{database}'");
    assert_eq!(admin.query(&exists).expect("query"), 0);

    postgres::ensure_database(address, "postgres", &database).expect("created");
    assert_eq!(admin.query(&exists).expect("query"), 1);
    postgres::ensure_database(address, "postgres", &database).expect("reused");
    assert_eq!(admin.query(&exists).expect("query"), 1);

    drop(&mut admin);
    admin.close();
}

#[test]
fn postgres_errors_are_reported() {
    let Some(address) = listening(Service::Postgres) else {
        return;
    };
    let mut admin = postgres::Session::start(address, "postgres", "postgres").expect("login");
    let failure = admin
        .query("SELECT * FROM no_such_table_here")
        .expect_err("fails");
    assert_eq!(failure.code.as_deref(), Some("42P01"), "{failure:?}");
    // The session is still usable after an error.
    assert_eq!(admin.query("SELECT 1 UNION SELECT 2").expect("query"), 2);
    admin.close();

    let error = postgres::ensure_database(address, "no_such_role_here", "postgres")
        .expect_err("an unknown role is refused");
    assert!(error.contains("no_such_role_here"), "{error}");
}

#[test]
fn mysql_database_is_created_once_then_reused() {
    let Some(address) = listening(Service::Mysql) else {
        return;
    };
    let database = scratch_database("my");
    let mut admin = mysql::Session::start(address, "root").expect("the local MySQL lets root in");
    let drop = format!("DROP DATABASE IF EXISTS `{database}`");
    admin
        .command(0x03, &drop)
        .expect("drop the scratch database");
    let failure = admin.command(0x02, &database).expect_err("no database yet");
    assert_eq!(failure.code, Some(1049), "{failure:?}");

    mysql::ensure_database(address, "root", &database).expect("created");
    admin.command(0x02, &database).expect("the database exists");
    mysql::ensure_database(address, "root", &database).expect("reused");

    admin
        .command(0x03, &drop)
        .expect("drop the scratch database");
    admin.close();
}

#[test]
fn mysql_errors_are_reported() {
    let Some(address) = listening(Service::Mysql) else {
        return;
    };
    let error = mysql::ensure_database(address, "no_such_user_here", "tracker_test")
        .expect_err("an unknown user is refused");
    assert!(error.contains("error 1045"), "{error}");
    let mut admin = mysql::Session::start(address, "root").expect("login");
    let failure = admin.command(0x03, "SELEKT 1").expect_err("a syntax error");
    assert_eq!(failure.code, Some(1064), "{failure:?}");
    admin
        .command(0x03, "SELECT 1")
        .expect_err("rows are not an OK packet");
}

#[test]
fn redis_answers_ping() {
    let Some(address) = listening(Service::Redis) else {
        return;
    };
    redis::check(address).expect("PONG from a single node");
}

#[test]
fn each_check_refuses_the_other_protocols_and_closed_ports() {
    let (Some(pg), Some(my), Some(redis)) = (
        listening(Service::Postgres),
        listening(Service::Mysql),
        listening(Service::Redis),
    ) else {
        return;
    };
    let cases: [(&str, &str, Check); 6] = [
        ("PostgreSQL check on MySQL", my, |a| {
            postgres::ensure_database(a, "postgres", "postgres")
        }),
        ("PostgreSQL check on Redis", redis, |a| {
            postgres::ensure_database(a, "postgres", "postgres")
        }),
        ("MySQL check on PostgreSQL", pg, |a| {
            mysql::ensure_database(a, "root", "tracker_test")
        }),
        ("MySQL check on Redis", redis, |a| {
            mysql::ensure_database(a, "root", "tracker_test")
        }),
        ("Redis check on PostgreSQL", pg, redis::check),
        ("Redis check on MySQL", my, redis::check),
    ];
    // The checks that wait for a reply that never comes run side by side.
    std::thread::scope(|scope| {
        for (what, address, check) in cases {
            scope.spawn(move || {
                let started = std::time::Instant::now();
                let error = check(address).expect_err(what);
                let took = started.elapsed();
                assert!(!error.is_empty(), "{what}");
                assert!(took < LOGIN_TIMEOUT * 2, "{what} took {took:?}: {error}");
            });
        }
    });

    let closed = format!("127.0.0.1:{}", crate::secrets::closed_port());
    for check in [
        |a: &str| postgres::ensure_database(a, "postgres", "postgres"),
        |a: &str| mysql::ensure_database(a, "root", "tracker_test"),
        redis::check,
    ] {
        let error = check(&closed).expect_err("nothing listens");
        assert!(error.starts_with("nothing answers: "), "{error}");
    }
}
