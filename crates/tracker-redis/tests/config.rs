//! Configuration parsing: Rasa's keys and defaults, the URL forms, rejected values and the
//! redacted `Debug`. No server needed, except to start a store from a section whose numbers
//! and booleans are strings.

use serde_json::json;
use tracker_core::{ErrorKind, JsonMap, TrackerStore};
use tracker_redis::fred::prelude::{Server, ServerConfig};
use tracker_redis::{KeyLayout, REGISTRATION, RedisConfig, tracker_core};
use tracker_testkit::{Service, service_url};

fn yaml(text: &str) -> RedisConfig {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn config_error(config: &RedisConfig) -> String {
    let error = config.validate().expect_err("invalid");
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    error.to_string()
}

#[test]
fn defaults_are_rasas() {
    let config = RedisConfig::default();
    assert_eq!(config, yaml("{}"));
    assert_eq!(config.url, "localhost");
    assert_eq!(config.port, 6379);
    assert_eq!(config.db, 0);
    assert_eq!(
        (config.username.as_deref(), config.password.as_deref()),
        (None, None)
    );
    assert_eq!(
        (config.key_prefix.as_deref(), config.record_exp),
        (None, None)
    );
    assert!(!config.use_ssl && !config.cluster);
    assert_eq!(config.pool_size, 1);
    assert_eq!(config.timeout, 10);
    let fred = config.fred_config().expect("valid");
    assert_eq!(
        fred.server,
        ServerConfig::Centralized {
            server: Server::new("localhost", 6379)
        }
    );
    assert_eq!(fred.database, None);
    assert!(fred.tls.is_none());
    assert_eq!(
        config.key_layout().expect("valid"),
        KeyLayout::new(None).expect("valid")
    );
}

#[test]
fn rasa_endpoints_section() {
    let config = yaml(
        "type: redis\nurl: redis.example.com\nport: 6380\ndb: 2\nusername: bot\n\
         password: s3cret\nkey_prefix: bot1\nrecord_exp: 3600\nuse_ssl: true\n",
    );
    let fred = config.fred_config().expect("valid");
    assert_eq!(
        fred.server,
        ServerConfig::Centralized {
            server: Server::new("redis.example.com", 6380)
        }
    );
    assert_eq!(fred.database, Some(2));
    assert_eq!(fred.username.as_deref(), Some("bot"));
    assert_eq!(fred.password.as_deref(), Some("s3cret"));
    assert!(fred.tls.is_some(), "use_ssl turns TLS on");
    let layout = config.key_layout().expect("valid");
    assert_eq!(layout.key_prefix(), Some("bot1"));
    assert_eq!(layout.rasa("alice"), "bot1:tracker:alice");
    assert_eq!(config.record_exp, Some(3600));
    // `type` is Rasa's selector: accepted in any case, but only for redis.
    yaml("type: REDIS").validate().expect("redis in capitals");
    assert!(config_error(&yaml("type: sql")).contains("redis"));
}

#[test]
fn url_forms() {
    let cases: Vec<(&str, ServerConfig, Option<u8>)> = vec![
        (
            "redis://127.0.0.1:6390/3",
            ServerConfig::Centralized {
                server: Server::new("127.0.0.1", 6390),
            },
            Some(3),
        ),
        (
            "redis://h",
            ServerConfig::Centralized {
                server: Server::new("h", 6379),
            },
            None,
        ),
        (
            "redis-cluster://127.0.0.1:7101?node=127.0.0.1:7102&node=127.0.0.1:7103",
            ServerConfig::Clustered {
                hosts: vec![
                    Server::new("127.0.0.1", 7102),
                    Server::new("127.0.0.1", 7103),
                    Server::new("127.0.0.1", 7101),
                ],
                policy: Default::default(),
            },
            None,
        ),
        (
            "redis-sentinel://s1:26379/1?sentinelServiceName=mymaster&node=s2:26379",
            ServerConfig::Sentinel {
                hosts: vec![Server::new("s2", 26379), Server::new("s1", 26379)],
                service_name: "mymaster".to_owned(),
                username: None,
                password: None,
            },
            Some(1),
        ),
    ];
    for (url, server, database) in cases {
        let fred = RedisConfig::from_url(url).fred_config().expect(url);
        assert_eq!(fred.server, server, "{url}");
        assert_eq!(fred.database, database, "{url}");
        assert!(fred.tls.is_none(), "{url}");
    }
    let tls = RedisConfig::from_url("rediss://h:6380")
        .fred_config()
        .expect("rediss");
    assert!(tls.tls.is_some());
    let tls = RedisConfig::from_url("rediss-cluster://h:7000")
        .fred_config()
        .expect("rediss");
    assert!(tls.tls.is_some());
    assert!(matches!(tls.server, ServerConfig::Clustered { .. }));
}

#[test]
fn url_and_separate_keys_combine() {
    // Credentials and database in the URL win; the separate keys fill in the rest.
    let config =
        yaml("url: redis://urluser:urlpass@h:1/4\nusername: other\npassword: other\ndb: 2\n");
    let fred = config.fred_config().expect("valid");
    assert_eq!(fred.username.as_deref(), Some("urluser"));
    assert_eq!(fred.password.as_deref(), Some("urlpass"));
    assert_eq!(fred.database, Some(4));
    let fred = yaml("url: redis://h:1\nusername: u\npassword: p\ndb: 2\n")
        .fred_config()
        .expect("valid");
    assert_eq!(fred.username.as_deref(), Some("u"));
    assert_eq!(fred.password.as_deref(), Some("p"));
    assert_eq!(fred.database, Some(2));
    // `cluster` and `sentinel_service_name` apply to a host and to a plain redis:// URL.
    for text in [
        "url: h\nport: 7000\ncluster: true",
        "url: redis://h:7000\ncluster: true",
    ] {
        let fred = yaml(text).fred_config().expect(text);
        assert_eq!(
            fred.server,
            ServerConfig::Clustered {
                hosts: vec![Server::new("h", 7000)],
                policy: Default::default()
            },
            "{text}"
        );
    }
    let fred =
        yaml("url: s1\nport: 26379\nsentinel_service_name: mymaster\nsentinel_password: sp\n")
            .fred_config()
            .expect("sentinel");
    assert_eq!(
        fred.server,
        ServerConfig::Sentinel {
            hosts: vec![Server::new("s1", 26379)],
            service_name: "mymaster".to_owned(),
            username: None,
            password: Some("sp".to_owned()),
        }
    );
}

#[test]
fn rejected_values() {
    let message = config_error(&RedisConfig::new().with_key_prefix("tracker"));
    assert!(message.contains("key_prefix"), "{message}");
    // Rasa drops a prefix that is not alphanumeric (with a warning) and uses none; so do we.
    for prefix in ["bot-1", "bot 1", "bot:1", "bot_1", "{x}"] {
        let config = RedisConfig::new().with_key_prefix(prefix);
        config.validate().expect(prefix);
        assert_eq!(
            config.key_layout().expect(prefix),
            KeyLayout::new(None).expect("valid"),
            "{prefix}"
        );
    }
    // Rasa treats an empty prefix as none; so do we. Unicode letters and digits are
    // alphanumeric for Python too.
    RedisConfig::new()
        .with_key_prefix("")
        .validate()
        .expect("empty");
    RedisConfig::new()
        .with_key_prefix("Bot42ü")
        .validate()
        .expect("alnum");
    assert!(config_error(&RedisConfig::new().with_record_exp(0)).contains("record_exp"));
    assert!(config_error(&yaml("cluster: true\ndb: 2")).contains("database 0"));
    assert!(config_error(&yaml("url: redis-cluster://h:1/3")).contains("database 0"));
    assert!(config_error(&yaml("cluster: true\nsentinel_service_name: m")).contains("exclude"));
    assert!(config_error(&yaml("pool_size: 0")).contains("pool_size"));
    assert!(config_error(&yaml("ssl_ca_certs: /etc/ca.pem")).contains("use_ssl"));
    assert!(
        config_error(&yaml("use_ssl: true\nssl_ca_certs: /nonexistent/ca.pem"))
            .contains("ssl_ca_certs")
    );
    assert!(
        config_error(&yaml(
            "use_ssl: true\nssl_certfile: /nonexistent/c.pem\nssl_ca_certs: /nonexistent/ca.pem"
        ))
        .contains("ssl_")
    );
    config_error(&RedisConfig::from_url("redis://"));
    config_error(&RedisConfig::from_url("redis-sentinel://h:1"));
    config_error(&RedisConfig::from_url("  "));
    // A misspelt key is an error, not silently ignored.
    let error = serde_norway::from_str::<RedisConfig>("recrod_exp: 5").expect_err("typo");
    assert!(error.to_string().contains("recrod_exp"), "{error}");
    assert!(serde_norway::from_str::<RedisConfig>("port: -1").is_err());
}

#[test]
fn debug_never_shows_passwords() {
    let config = yaml(
        "url: redis://user:urlsecret@h:1/2?x=1\npassword: topsecret\nusername: user\n\
         sentinel_password: sentinelsecret\n",
    );
    let shown = format!("{config:?}");
    for secret in ["urlsecret", "topsecret", "sentinelsecret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains("user"), "{shown}");
    let alternate = format!("{config:#?}");
    assert!(!alternate.contains("secret"), "{alternate}");
    let sentinel = RedisConfig::from_url(
        "redis-sentinel://:pw1@h:1?sentinelServiceName=m&sentinelPassword=pw2",
    );
    let shown = format!("{sentinel:?}");
    assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
}

/// A section as Rasa's `endpoints.yml` gives it when values come from `${VAR}`: every number
/// and boolean a string. The store starts from it and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_booleans_given_as_strings_start_the_store() {
    let Some(url) = service_url(Service::Redis).await else {
        return;
    };
    let config = RedisConfig::from_url(url.url.as_str());
    let server = match config.fred_config().expect("valid").server {
        ServerConfig::Centralized { server } => server,
        other => panic!("a single server: {other:?}"),
    };
    let prefix = format!("trtest{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let section = json!({
        "type": "redis",
        "url": server.host.to_string(),
        "port": server.port.to_string(),
        "db": "2",
        "key_prefix": prefix,
        "record_exp": "3600",
        "use_ssl": "false",
        "cluster": "false",
        "pool_size": "2",
        "timeout": "30",
        "adopt_rasa": "true",
    });
    let serde_json::Value::Object(keys) = section else {
        unreachable!("an object literal")
    };
    let store = (REGISTRATION.connect)("redis", keys)
        .await
        .expect("the store starts");
    assert!(store.capabilities().expiry, "record_exp applies");
    let api = TrackerStore::new(store);
    let events = [tracker_core::Event::user("hi", "greet", 0.9).at(1_700_000_000.0)];
    api.append("alice", 0, &events).await.expect("append");
    assert_eq!(api.version("alice").await.expect("version"), 1);
    assert!(api.delete("alice").await.expect("delete"));
    assert_eq!(api.keys().await.expect("keys"), Vec::<String>::new());

    // An invalid value names the key and the type found, never the value.
    let mut keys = JsonMap::new();
    keys.insert("port".to_owned(), json!("6379x"));
    let error = (REGISTRATION.connect)("redis", keys)
        .await
        .expect_err("not a port");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("`port`") && message.contains("a string"),
        "{message}"
    );
    assert!(!message.contains("6379x"), "{message}");
}
