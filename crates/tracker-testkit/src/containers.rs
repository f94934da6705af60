//! Process-wide service containers, started through testcontainers (feature `containers`).
//!
//! Each service gets at most one container per process, shared by every test of the binary.
//! The containers are started on a dedicated Tokio runtime that lives as long as the process,
//! so they never depend on the (short-lived) runtime of whichever test asked first.

use std::any::Any;
use std::sync::OnceLock;
use std::time::Duration;

use testcontainers_modules::dynamodb_local::DynamoDb;
use testcontainers_modules::mongo::Mongo;
use testcontainers_modules::mysql::Mysql;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::Redis;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerRequest, Image, ImageExt};
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;

use crate::Service;

/// Label put on every container this crate starts, with the service name as its value.
///
/// Rust never drops statics, so the containers outlive the test process; this label lets
/// `docker rm -f $(docker ps -aq --filter label=org.tracker-store.testkit)` clean them up.
pub(crate) const LABEL: &str = "org.tracker-store.testkit";

/// How long a started container may take to become ready (image pulls are not counted).
/// testcontainers' own default, 60 s, is tight for a first MySQL start on a small machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A started container and its URL; the handle is kept only to keep the container alive.
struct Running {
    url: String,
    _container: Box<dyn Any + Send + Sync>,
}

type Slot = OnceCell<Result<Running, String>>;

static POSTGRES: Slot = OnceCell::const_new();
static MYSQL: Slot = OnceCell::const_new();
static REDIS: Slot = OnceCell::const_new();
static MONGO: Slot = OnceCell::const_new();
static DYNAMO: Slot = OnceCell::const_new();

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The URL of this process's container for `service`, starting it on first use.
///
/// A failed start is remembered too, so it is tried once per process.
pub(crate) async fn url(service: Service) -> Result<String, String> {
    let slot = match service {
        Service::Postgres => &POSTGRES,
        Service::Mysql => &MYSQL,
        Service::Redis => &REDIS,
        Service::Mongo => &MONGO,
        Service::Dynamo => &DYNAMO,
        Service::RedisCluster => {
            return Err("Redis Cluster has no container support".to_owned());
        }
    };
    let running = slot
        .get_or_init(|| async move {
            let runtime = runtime()?;
            runtime
                .spawn(start(service))
                .await
                .map_err(|e| format!("the container start task failed: {e}"))?
        })
        .await;
    match running {
        Ok(running) => Ok(running.url.clone()),
        Err(error) => Err(error.clone()),
    }
}

fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tracker-testkit-docker")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build the Docker runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

async fn start(service: Service) -> Result<Running, String> {
    match service {
        Service::Postgres => {
            run(
                service,
                Postgres::default().with_tag("16-alpine"),
                5432,
                |host, port| format!("postgres://postgres:postgres@{host}:{port}/postgres"),
            )
            .await
        }
        Service::Mysql => {
            // The module's image allows an empty root password and creates database `test`.
            run(service, Mysql::default().into(), 3306, |host, port| {
                format!("mysql://root@{host}:{port}/test")
            })
            .await
        }
        Service::Redis => {
            run(
                service,
                Redis::default().with_tag("7.2"),
                6379,
                |host, port| format!("redis://{host}:{port}"),
            )
            .await
        }
        Service::Mongo => {
            run(service, Mongo::default().into(), 27017, |host, port| {
                format!("mongodb://{host}:{port}")
            })
            .await
        }
        Service::Dynamo => {
            run(service, DynamoDb::default().into(), 8000, |host, port| {
                format!("http://{host}:{port}")
            })
            .await
        }
        Service::RedisCluster => Err("Redis Cluster has no container support".to_owned()),
    }
}

async fn run<I: Image + 'static>(
    service: Service,
    request: ContainerRequest<I>,
    port: u16,
    url: impl FnOnce(&str, u16) -> String,
) -> Result<Running, String> {
    let image = request.descriptor();
    eprintln!(
        "tracker-testkit: starting a {} container ({image}) for this test process; set {} to use a running server instead",
        service.name(),
        service.env_var()
    );
    let container = request
        .with_label(LABEL, service.name())
        .with_startup_timeout(STARTUP_TIMEOUT)
        .start()
        .await
        .map_err(|e| format!("{image}: {e}"))?;
    let host = container
        .get_host()
        .await
        .map_err(|e| format!("{image}: cannot get the Docker host: {e}"))?
        .to_string();
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    let port = container
        .get_host_port_ipv4(port)
        .await
        .map_err(|e| format!("{image}: cannot get the mapped port of {port}: {e}"))?;
    Ok(Running {
        url: url(&host, port),
        _container: Box::new(container),
    })
}
