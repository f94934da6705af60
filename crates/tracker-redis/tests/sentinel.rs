//! Redis Sentinel: a local primary and a sentinel monitoring it, on free loopback ports; the
//! store finds the primary through the sentinel, from `sentinel_service_name` or a
//! `redis-sentinel://` URL. Skipped (a failure under `CI`) without `redis-server`.

mod common;

use common::{LocalServers, free_port};
use tracker_core::{Event, ReadScope, TrackerStore};
use tracker_redis::{RedisConfig, RedisStore, tracker_core};

async fn round_trip(config: &RedisConfig) {
    let store = RedisStore::connect(config)
        .await
        .expect("connect through the sentinel");
    assert!(!store.is_clustered());
    let api = TrackerStore::new(store);
    let events = [
        Event::session_started().at(1_700_000_000.0),
        Event::bot("through a sentinel").at(1_700_000_001.0),
    ];
    assert_eq!(api.append("s", 0, &events).await.expect("append"), 2);
    let read = api
        .read("s", ReadScope::LatestSession)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(read.events, events);
    assert_eq!(api.keys().await.expect("keys"), ["s"]);
    assert!(api.delete("s").await.expect("delete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_primary_through_a_sentinel() {
    let Some(mut servers) = LocalServers::new("redis-sentinel", &["redis-server"]) else {
        return;
    };
    let primary = free_port();
    let primary_arg = primary.to_string();
    servers.spawn(
        "redis-server",
        &[
            "--port",
            &primary_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            ".",
        ],
        primary,
    );
    let sentinel = free_port();
    std::fs::write(
        servers.dir.join("sentinel.conf"),
        format!(
            "port {sentinel}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor testprimary 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds testprimary 60000\n",
            dir = servers.dir.display()
        ),
    )
    .expect("write sentinel.conf");
    servers.spawn("redis-server", &["sentinel.conf", "--sentinel"], sentinel);

    let mut config = RedisConfig::from_url("127.0.0.1").with_key_prefix("sentineltest");
    config.port = sentinel;
    config.sentinel_service_name = Some("testprimary".to_owned());
    config.timeout = 5;
    round_trip(&config).await;

    let url = RedisConfig::from_url(format!(
        "redis-sentinel://127.0.0.1:{sentinel}/0?sentinelServiceName=testprimary"
    ))
    .with_key_prefix("sentineltest");
    round_trip(&url).await;

    let mut unknown = config.clone();
    unknown.sentinel_service_name = Some("nosuchprimary".to_owned());
    assert!(RedisStore::connect(&unknown).await.is_err());
}
