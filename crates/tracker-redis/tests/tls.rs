//! TLS with Rasa's `use_ssl`, `ssl_ca_certs`, `ssl_certfile` and `ssl_keyfile`, against a
//! local `redis-server` with TLS on a free loopback port, with certificates made by `openssl`
//! for this run. Skipped (a failure under `CI`) when either binary is missing.

mod common;

use common::{LocalServers, free_port};
use tracker_core::{ErrorKind, Event, TrackerStore};
use tracker_redis::{RedisConfig, RedisStore, tracker_core};
use tracker_testkit::certs::{ca, issue};

/// A TLS-only redis-server that requires client certificates; its port.
fn start() -> Option<(LocalServers, u16)> {
    let mut servers = LocalServers::new("redis-tls", &["redis-server", "openssl"])?;
    let dir = servers.dir.clone();
    ca(&dir, "ca", "/CN=tracker-redis test CA");
    issue(
        &dir,
        "ca",
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        &dir,
        "ca",
        "client",
        "/CN=tracker-redis client",
        "extendedKeyUsage=clientAuth\n",
    );
    let port = free_port();
    let port_arg = port.to_string();
    servers.spawn(
        "redis-server",
        &[
            "--port",
            "0",
            "--tls-port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            ".",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "yes",
        ],
        port,
    );
    Some((servers, port))
}

fn config(servers: &LocalServers, port: u16) -> RedisConfig {
    let mut config = RedisConfig::from_url("127.0.0.1").with_key_prefix("tlstest");
    config.port = port;
    config.use_ssl = true;
    config.ssl_ca_certs = Some(servers.dir.join("ca.crt"));
    config.ssl_certfile = Some(servers.dir.join("client.crt"));
    config.ssl_keyfile = Some(servers.dir.join("client.key"));
    config.timeout = 5;
    config
}

async fn round_trip(config: &RedisConfig) {
    let store = TrackerStore::new(RedisStore::connect(config).await.expect("connect over TLS"));
    let events = [Event::bot("over TLS").at(1_700_000_000.0)];
    assert_eq!(store.append("tls", 0, &events).await.expect("append"), 1);
    let read = store
        .retrieve("tls")
        .await
        .expect("retrieve")
        .expect("stored");
    assert_eq!(read.events(), events);
    assert!(store.delete("tls").await.expect("delete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_rasas_ssl_options() {
    let Some((servers, port)) = start() else {
        return;
    };
    // Host + port + use_ssl + the three PEM files.
    round_trip(&config(&servers, port)).await;
    // The same through a rediss:// URL.
    let mut url = config(&servers, port);
    url.url = format!("rediss://127.0.0.1:{port}");
    url.use_ssl = false;
    round_trip(&url).await;

    // The server demands a client certificate: a configuration problem, not a retry.
    let mut anonymous = config(&servers, port);
    anonymous.ssl_certfile = None;
    anonymous.ssl_keyfile = None;
    let error = RedisStore::connect(&anonymous)
        .await
        .expect_err("no client cert");
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    // Without our CA the server's certificate is not trusted.
    let mut untrusted = config(&servers, port);
    untrusted.ssl_ca_certs = None;
    let error = RedisStore::connect(&untrusted)
        .await
        .expect_err("unknown CA");
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    // Without TLS the server hangs up.
    let mut plain = config(&servers, port);
    plain.use_ssl = false;
    plain.ssl_ca_certs = None;
    plain.ssl_certfile = None;
    plain.ssl_keyfile = None;
    assert!(RedisStore::connect(&plain).await.is_err());
}
