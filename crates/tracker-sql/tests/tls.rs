//! PostgreSQL over TLS with libpq's `sslmode` and `sslrootcert`, against a private PostgreSQL
//! server with `ssl=on` whose `pg_hba.conf` allows TLS connections only; and MySQL's
//! `ssl_mode`, `ssl_ca`, `ssl_cert` and `ssl_key` against a private MariaDB server that
//! requires secure transport. Certificates are made by `openssl` for this run. Skipped (a
//! failure under `CI`) when the server programs or `openssl` are missing.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::servers::{Mariadb, Postgres, Server};
use tracker_sql::tracker_core::{Error, ErrorKind, Event, TrackerStore};
use tracker_sql::{SqlConfig, SqlStore};
use tracker_testkit::certs::{ca, issue, openssl};

/// Certificates in a directory of their own, removed on drop.
struct Pki(std::path::PathBuf);

impl Pki {
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// A new directory with a CA `ca`, an unrelated CA `other-ca`, and a server certificate
    /// `server` for `localhost` (and the `subject_alt_names` given) issued by `ca`; `None`
    /// after a loud skip when `openssl` is missing.
    fn new(name: &str, subject_alt_names: &str) -> Option<Self> {
        if Command::new("openssl").arg("version").output().is_err() {
            tracker_testkit::skip(
                name,
                "openssl is not installed (Debian: apt-get install openssl)",
            );
            return None;
        }
        let pki =
            Pki(std::env::temp_dir()
                .join(format!("tracker-sql-pki-{}", uuid::Uuid::new_v4().simple())));
        std::fs::create_dir_all(&pki.0).expect("pki dir");
        ca(&pki.0, "ca", "/CN=tracker-sql test ca");
        ca(&pki.0, "other-ca", "/CN=tracker-sql test other-ca");
        issue(
            &pki.0,
            "ca",
            "server",
            "/CN=localhost",
            &format!("subjectAltName={subject_alt_names}\nextendedKeyUsage=serverAuth\n"),
        );
        Some(pki)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The password of the SCRAM user; must never appear in an error.
const PASSWORD: &str = "s3cr3t-Pa55word";

/// A PostgreSQL server with TLS on, reachable over TCP only through TLS (`hostssl`), with a
/// trust user `postgres` and a SCRAM user `scram`; and the CA that issued its certificate
/// plus an unrelated CA.
fn start() -> Option<(Postgres, Pki)> {
    let pki = Pki::new("postgres-tls", "DNS:localhost,IP:127.0.0.1")?;
    let mut server = Postgres::init("postgres-tls")?;
    let read = |name: &str| std::fs::read(pki.0.join(name)).expect("read a certificate");
    let cert = server.write("server.crt", &read("server.crt"));
    let key = server.write("server.key", &read("server.key"));
    server.set("ssl", "on");
    server.set("ssl_cert_file", &cert.display().to_string());
    server.set("ssl_key_file", &key.display().to_string());
    server.hba(
        "local all all trust\n\
         hostssl all scram 127.0.0.1/32 scram-sha-256\n\
         hostssl all all 127.0.0.1/32 trust\n",
    );
    server.start();
    server.psql(&format!(
        "CREATE ROLE scram LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
    ));
    Some((server, pki))
}

async fn connect(url: &str) -> tracker_sql::tracker_core::Result<SqlStore> {
    let config = SqlConfig {
        pool_size: Some(4),
        ..SqlConfig::from_url(url)
    };
    SqlStore::connect(&config).await
}

/// Writes a conversation and reads it back.
async fn round_trip(store: SqlStore) {
    let store = TrackerStore::new(store);
    let sender = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let events = [
        Event::user("hi over TLS", "greet", 0.9).at(1_700_000_000.0),
        Event::bot("hello over TLS").at(1_700_000_001.0),
    ];
    assert_eq!(store.append(&sender, 0, &events).await.expect("append"), 2);
    let read = store
        .retrieve_full_tracker(&sender)
        .await
        .expect("retrieve")
        .expect("stored");
    assert_eq!(read.events(), events);
    assert!(store.delete(&sender).await.expect("delete"));
}

/// An error that must be a configuration error (not temporary) saying `what` (itself or
/// through its sources), without the password.
fn assert_config_error(error: &Error, what: &str) {
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    assert!(!error.is_temporary(), "{error:?}");
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(text.contains(what), "{text:?} does not say {what:?}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!format!("{error:?}").contains(PASSWORD), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_a_tls_only_server() {
    let Some((server, pki)) = start() else {
        return;
    };
    let ca = pki.path("ca.crt");
    let other_ca = pki.path("other-ca.crt");

    // require: encrypted, certificate not checked; the server accepts TCP only over TLS.
    round_trip(
        connect(&server.url_for("postgres", "sslmode=require"))
            .await
            .expect("sslmode=require"),
    )
    .await;
    // prefer (also the default) and allow end up on TLS too.
    for query in ["", "sslmode=prefer", "sslmode=allow"] {
        connect(&server.url_for("postgres", query))
            .await
            .unwrap_or_else(|e| panic!("{query:?}: {e:?}"));
    }

    // verify-full with the right CA, by host name and by IP address (both in the
    // certificate).
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port
    );
    round_trip(connect(&url).await.expect("verify-full via localhost")).await;
    let url = server.url_for("postgres", &format!("sslmode=verify-full&sslrootcert={ca}"));
    round_trip(connect(&url).await.expect("verify-full via 127.0.0.1")).await;

    // verify-full with a CA that did not issue the server's certificate.
    let url = server.url_for(
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let error = connect(&url).await.expect_err("untrusted CA");
    assert_config_error(&error, "untrusted CA");
    // So does require once a CA file is given (libpq's rule).
    let url = server.url_for(
        "postgres",
        &format!("sslmode=require&sslrootcert={other_ca}"),
    );
    let error = connect(&url).await.expect_err("require with a CA file");
    assert_config_error(&error, "untrusted CA");

    // verify-full against a host name the certificate does not name (connecting to
    // 127.0.0.1 through `hostaddr`); verify-ca does not check the name.
    let wrong_host = |mode: &str| {
        format!(
            "postgres://postgres@db.example.invalid:{}/postgres?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}",
            server.port
        )
    };
    let error = connect(&wrong_host("verify-full"))
        .await
        .expect_err("name mismatch");
    assert_config_error(&error, "host name mismatch");
    assert!(error.to_string().contains("db.example.invalid"), "{error}");
    round_trip(
        connect(&wrong_host("verify-ca"))
            .await
            .expect("verify-ca ignores the name"),
    )
    .await;

    // disable: the server allows no plaintext connection over TCP.
    let error = connect(&server.url_for("postgres", "sslmode=disable"))
        .await
        .expect_err("plaintext refused");
    assert_config_error(&error, "no pg_hba.conf entry");

    // A CA file that does not exist is a configuration error before any connection.
    let error = connect(&server.url_for(
        "postgres",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    .expect_err("missing sslrootcert");
    assert_config_error(&error, "/nonexistent/ca.pem");

    // Rasa's endpoints.yml keys, TLS through `query`, with a SCRAM password and channel
    // binding required (so the tls-server-end-point hash must be right).
    let config = |password: &str| SqlConfig {
        dialect: "postgresql".to_owned(),
        url: Some("localhost".to_owned()),
        port: Some(server.port),
        db: "postgres".to_owned(),
        username: Some("scram".to_owned()),
        password: Some(password.to_owned()),
        query: BTreeMap::from([
            ("sslmode".to_owned(), "verify-full".to_owned()),
            ("sslrootcert".to_owned(), ca.clone()),
            ("channel_binding".to_owned(), "require".to_owned()),
        ]),
        pool_size: Some(4),
        ..SqlConfig::default()
    };
    round_trip(
        SqlStore::connect(&config(PASSWORD))
            .await
            .expect("query map with verify-full"),
    )
    .await;
    let error = SqlStore::connect(&config("wrong-password"))
        .await
        .expect_err("wrong password");
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    assert!(
        !format!("{error:?}").contains("wrong-password"),
        "{error:?}"
    );

    // The same from YAML, as in endpoints.yml.
    let yaml = format!(
        "dialect: postgresql\nurl: localhost\nport: {}\ndb: postgres\nusername: scram\npassword: {PASSWORD}\nquery:\n  sslmode: verify-full\n  sslrootcert: {ca}\n",
        server.port
    );
    let config: SqlConfig = serde_norway::from_str(&yaml).expect("endpoints.yml keys");
    round_trip(SqlStore::connect(&config).await.expect("YAML config")).await;
    drop(server);
}

/// A MariaDB server that requires secure transport, with a certificate for `localhost` only
/// (not for 127.0.0.1), and a user `x509` who must show a client certificate. Also issues an
/// RSA client certificate (the MySQL driver reads only RSA keys) and the CAs of `start`.
fn start_mariadb() -> Option<(Mariadb, Pki)> {
    let pki = Pki::new("mariadb-tls", "DNS:localhost")?;
    let mut server = Mariadb::init("mariadb-tls")?;
    // A client certificate with an RSA key in PKCS#1 form.
    openssl(
        &pki.0,
        &["genrsa", "-traditional", "-out", "client.key", "2048"],
    );
    openssl(
        &pki.0,
        &[
            "req",
            "-new",
            "-key",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=x509",
        ],
    );
    std::fs::write(pki.0.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write");
    openssl(
        &pki.0,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "client.crt",
            "-extfile",
            "client.ext",
        ],
    );
    server.option(&format!("--ssl-ca={}", pki.path("ca.crt")));
    server.option(&format!("--ssl-cert={}", pki.path("server.crt")));
    server.option(&format!("--ssl-key={}", pki.path("server.key")));
    server.option("--require-secure-transport=ON");
    server.start();
    server.sql("CREATE USER 'x509'@'%' REQUIRE X509; GRANT ALL ON test.* TO 'x509'@'%';");
    Some((server, pki))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_modes_against_a_secure_transport_mariadb() {
    let Some((server, pki)) = start_mariadb() else {
        return;
    };
    let (ca, other_ca) = (pki.path("ca.crt"), pki.path("other-ca.crt"));
    let url = |host: &str, user: &str, query: &str| {
        format!("mysql://{user}@{host}:{}/test?{query}", server.port)
    };

    // REQUIRED: encrypted, certificate not checked.
    round_trip(
        connect(&url("127.0.0.1", "root", "ssl_mode=REQUIRED"))
            .await
            .expect("ssl_mode=REQUIRED"),
    )
    .await;
    // Without TLS the server refuses.
    let error = connect(&url("127.0.0.1", "root", ""))
        .await
        .expect_err("plaintext refused");
    // MariaDB says "Access denied" (MySQL: "insecure transport are prohibited").
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    let debug = format!("{error:?}");
    assert!(
        debug.contains("Access denied") || debug.contains("insecure transport"),
        "{debug}"
    );

    // VERIFY_IDENTITY with the right CA, by the name in the certificate.
    let verify = format!("ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}");
    round_trip(
        connect(&url("localhost", "root", &verify))
            .await
            .expect("VERIFY_IDENTITY via localhost"),
    )
    .await;
    // ... but not by an address the certificate does not name, also with a CA file alone
    // (VERIFY_IDENTITY is then the default).
    for query in [verify.clone(), format!("ssl_ca={ca}")] {
        let error = connect(&url("127.0.0.1", "root", &query))
            .await
            .expect_err("name mismatch");
        assert_config_error(&error, "not valid for name \"127.0.0.1\"");
    }
    round_trip(
        connect(&url("localhost", "root", &format!("ssl_ca={ca}")))
            .await
            .expect("a CA file alone"),
    )
    .await;
    // A CA that did not issue the server's certificate.
    let error = connect(&url("localhost", "root", &format!("ssl_ca={other_ca}")))
        .await
        .expect_err("untrusted CA");
    assert_config_error(&error, "TLS");

    // A user who must show a client certificate: with it, through the `query` map of Rasa's
    // keys; without it, refused.
    let config = SqlConfig {
        dialect: "mysql".to_owned(),
        url: Some("localhost".to_owned()),
        port: Some(server.port),
        db: "test".to_owned(),
        username: Some("x509".to_owned()),
        query: BTreeMap::from([
            ("ssl_ca".to_owned(), ca.clone()),
            ("ssl_cert".to_owned(), pki.path("client.crt")),
            ("ssl_key".to_owned(), pki.path("client.key")),
        ]),
        pool_size: Some(4),
        ..SqlConfig::default()
    };
    round_trip(
        SqlStore::connect(&config)
            .await
            .expect("client certificate"),
    )
    .await;
    let error = connect(&url("localhost", "x509", &format!("ssl_ca={ca}")))
        .await
        .expect_err("no client certificate");
    assert_config_error(&error, "Access denied");

    // Files: missing, or a key the driver cannot read, are configuration errors up front.
    let error = connect(&url("localhost", "root", "ssl_ca=/nonexistent/ca.pem"))
        .await
        .expect_err("missing ssl_ca");
    assert_config_error(&error, "/nonexistent/ca.pem");
    let ec_key = format!(
        "ssl_mode=REQUIRED&ssl_cert={}&ssl_key={}",
        pki.path("server.crt"),
        pki.path("server.key")
    );
    let error = connect(&url("localhost", "root", &ec_key))
        .await
        .expect_err("an EC key");
    assert_config_error(&error, "RSA");
    // PREFERRED would fall back to plaintext and VERIFY_CA skip the name check; the driver
    // can do neither, so they are refused rather than quietly made something else.
    for mode in ["PREFERRED", "VERIFY_CA"] {
        let error = connect(&url("localhost", "root", &format!("ssl_mode={mode}")))
            .await
            .expect_err(mode);
        assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    }
    drop(server);
}
