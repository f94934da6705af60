//! Helpers shared by the integration tests: stores on the test servers, each in a fresh
//! namespace, and raw access to the keys.

#![allow(dead_code)]

use std::time::Duration;

use tracker_core::{
    Append, Capabilities, ExpectedVersion, ListPage, ListRequest, ReadScope, SenderId, Store,
    StoredConversation,
};
use tracker_redis::fred::prelude::*;
use tracker_redis::{RedisConfig, RedisStore, tracker_core};
use tracker_testkit::{Service, service_url};

/// A fresh alphanumeric `key_prefix`, so runs never see each other's keys.
pub fn fresh_prefix() -> String {
    format!("trtest{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A store in a fresh namespace that deletes every key of that namespace when dropped, so
/// the shared test servers keep nothing of a run. Derefs to the [`RedisStore`].
#[derive(Debug)]
pub struct TestStore(pub RedisStore);

impl std::ops::Deref for TestStore {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.0
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // Tests run on a multi-threaded runtime, where a drop may block its worker.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.0.clone();
            tokio::task::block_in_place(|| handle.block_on(clean(&store)));
        }
    }
}

#[tracker_core::async_trait]
impl Store for TestStore {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn outbox(&self) -> Option<&dyn tracker_core::outbox::Outbox> {
        self.0.outbox()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn version(&self, sender_id: &SenderId) -> tracker_core::Result<u64> {
        self.0.version(sender_id).await
    }

    async fn append(&self, append: &Append) -> tracker_core::Result<u64> {
        self.0.append(append).await
    }

    async fn append_batch(
        &self,
        appends: &[Append],
    ) -> tracker_core::Result<Vec<tracker_core::Result<u64>>> {
        self.0.append_batch(appends).await
    }

    async fn read(
        &self,
        sender_id: &SenderId,
        scope: ReadScope,
    ) -> tracker_core::Result<Option<StoredConversation>> {
        self.0.read(sender_id, scope).await
    }

    async fn list(&self, request: &ListRequest) -> tracker_core::Result<ListPage> {
        self.0.list(request).await
    }

    async fn delete(
        &self,
        sender_id: &SenderId,
        expected: ExpectedVersion,
    ) -> tracker_core::Result<bool> {
        self.0.delete(sender_id, expected).await
    }
}

/// The configuration of the test stores on `service` with `key_prefix`; `None` (after the
/// testkit's SKIPPED line) when the service is not available.
pub async fn config(service: Service, key_prefix: &str) -> Option<RedisConfig> {
    let url = service_url(service).await?;
    let mut config = RedisConfig::from_url(url.url).with_key_prefix(key_prefix);
    config.timeout = 30;
    Some(config)
}

/// A store on `service` in a fresh namespace, with `record_exp`; `None` (after the testkit's
/// SKIPPED line) when the service is not available.
pub async fn store_with(service: Service, record_exp: Option<u64>) -> Option<TestStore> {
    store_configured(service, |config| config.record_exp = record_exp).await
}

/// A store on `service` in a fresh namespace, with the test configuration changed by `edit`;
/// `None` (after the testkit's SKIPPED line) when the service is not available.
pub async fn store_configured(
    service: Service,
    edit: impl FnOnce(&mut RedisConfig),
) -> Option<TestStore> {
    let mut config = config(service, &fresh_prefix()).await?;
    edit(&mut config);
    let store = RedisStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {service:?}: {e:?}"));
    assert_eq!(store.is_clustered(), service == Service::RedisCluster);
    Some(TestStore(store))
}

/// A store on `service` in a fresh namespace.
pub async fn store(service: Service) -> Option<TestStore> {
    store_with(service, None).await
}

/// A store on `service` in a fresh namespace with its outbox on.
pub async fn outbox_store(service: Service) -> Option<TestStore> {
    store_configured(service, |config| config.outbox = true).await
}

/// Every key of the store's namespace and of Rasa's keys under its prefix (SCAN on every
/// primary).
pub async fn keys_of(store: &RedisStore) -> Vec<String> {
    use futures::TryStreamExt;
    use tracker_redis::fred::types::scan::Scanner;

    let client = store.client();
    let prefix = store.layout().key_prefix().expect("tests use a prefix");
    let pattern = format!("{prefix}:*");
    let mut pages = if store.is_clustered() {
        Box::pin(client.scan_cluster(pattern, Some(1000), None))
            as std::pin::Pin<Box<dyn futures::Stream<Item = _> + Send>>
    } else {
        Box::pin(client.scan(pattern, Some(1000), None))
    };
    let mut keys = Vec::new();
    while let Some(mut page) = pages.try_next().await.expect("scan") {
        for key in page.take_results().unwrap_or_default() {
            keys.push(key.into_string().expect("UTF-8 key"));
        }
        page.next();
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Deletes every key of the store's namespace (and Rasa keys under its prefix).
pub async fn clean(store: &RedisStore) {
    for key in keys_of(store).await {
        let _: i64 = store.client().del(key).await.expect("del");
    }
}

/// Waits up to `bound` for `condition` to hold, polling; false if it never did.
pub async fn eventually<F, Fut>(bound: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Declares `single` and `cluster` modules running each listed `async fn(Service)` test on a
/// single Redis and on Redis Cluster.
#[macro_export]
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(tracker_testkit::Service::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(tracker_testkit::Service::RedisCluster).await
                }
            )*
        }
    };
}

/// Processes started by a test (local servers), killed and their directory removed on drop.
pub struct LocalServers {
    /// The processes.
    pub children: Vec<std::process::Child>,
    /// Their working directory.
    pub dir: std::path::PathBuf,
    /// How each process was started (program, arguments, port), to start it again.
    commands: Vec<(String, Vec<String>, u16)>,
}

impl LocalServers {
    /// A fresh temporary directory for `name`; `None` (after the testkit's skip) when one of
    /// `binaries` is not installed.
    pub fn new(name: &str, binaries: &[&str]) -> Option<Self> {
        for binary in binaries {
            let found = std::process::Command::new(binary)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok();
            if !found {
                tracker_testkit::skip(
                    name,
                    &format!(
                        "{binary} is not installed (Debian: apt-get install redis-server openssl)"
                    ),
                );
                return None;
            }
        }
        let dir =
            std::env::temp_dir().join(format!("tracker-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Some(Self {
            children: Vec::new(),
            dir,
            commands: Vec::new(),
        })
    }

    /// Starts `program args` in the directory and waits until `port` accepts connections;
    /// returns the process' index (for [`LocalServers::kill`] and [`LocalServers::restart`]).
    pub fn spawn(&mut self, program: &str, args: &[&str], port: u16) -> usize {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let child = self.start(program, &args, port);
        self.children.push(child);
        self.commands.push((program.to_owned(), args, port));
        self.children.len() - 1
    }

    fn start(&self, program: &str, args: &[String], port: u16) -> std::process::Child {
        let mut child = std::process::Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Kills process `index` with SIGKILL (no shutdown, no final write) and reaps it.
    pub fn kill(&mut self, index: usize) {
        let child = &mut self.children[index];
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Starts process `index` again with the same program, arguments and port (after
    /// [`LocalServers::kill`]).
    pub fn restart(&mut self, index: usize) {
        let (program, args, port) = self.commands[index].clone();
        let child = self.start(&program, &args, port);
        self.children[index] = child;
    }
}

impl Drop for LocalServers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `redis-cli` against `127.0.0.1:port` and returns its output (empty when it fails
/// or takes more than 5 seconds, as against a server that is down).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    use std::io::Read;

    let mut child = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run redis-cli");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait().expect("wait for redis-cli") {
            Some(_) => break,
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return String::new();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut output);
    }
    output
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
