//! The services backend tests need, their environment variables and usual local addresses.

/// A service a backend's integration tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// PostgreSQL (`TRACKER_TEST_POSTGRES_URL`).
    Postgres,
    /// MySQL or MariaDB (`TRACKER_TEST_MYSQL_URL`).
    Mysql,
    /// A single Redis server (`TRACKER_TEST_REDIS_URL`).
    Redis,
    /// A Redis Cluster (`TRACKER_TEST_REDIS_CLUSTER_URL`); never started in a container.
    RedisCluster,
    /// MongoDB (`TRACKER_TEST_MONGO_URL`).
    Mongo,
    /// DynamoDB or DynamoDB Local (`TRACKER_TEST_DYNAMO_URL`).
    Dynamo,
}

/// A server at its usual local address, used when the environment variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalServer {
    /// The server's name in messages, e.g. `"PostgreSQL"`.
    pub(crate) label: &'static str,
    /// `host:port`.
    pub(crate) address: &'static str,
    /// How the tests log in, e.g. `"user postgres, no password"`.
    pub(crate) login: &'static str,
    /// The URL the tests get when the server answers.
    pub(crate) url: &'static str,
}

/// The database the tests get on a local PostgreSQL or MySQL / MariaDB server, created when
/// missing and never dropped.
pub(crate) const LOCAL_DATABASE: &str = "tracker_test";

impl Service {
    /// Every service, in declaration order.
    pub const ALL: [Service; 6] = [
        Service::Postgres,
        Service::Mysql,
        Service::Redis,
        Service::RedisCluster,
        Service::Mongo,
        Service::Dynamo,
    ];

    /// The environment variable that holds this service's URL, e.g. `"TRACKER_TEST_POSTGRES_URL"`.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "TRACKER_TEST_POSTGRES_URL",
            Service::Mysql => "TRACKER_TEST_MYSQL_URL",
            Service::Redis => "TRACKER_TEST_REDIS_URL",
            Service::RedisCluster => "TRACKER_TEST_REDIS_CLUSTER_URL",
            Service::Mongo => "TRACKER_TEST_MONGO_URL",
            Service::Dynamo => "TRACKER_TEST_DYNAMO_URL",
        }
    }

    /// The short name of this service, e.g. `"postgres"`, as used in the `SKIPPED` line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Mysql => "mysql",
            Service::Redis => "redis",
            Service::RedisCluster => "redis-cluster",
            Service::Mongo => "mongo",
            Service::Dynamo => "dynamo",
        }
    }

    /// A sample URL for the `SKIPPED` hint.
    pub(crate) fn example_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            Service::Mysql => "mysql://root@127.0.0.1:3306/test",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::RedisCluster => "redis://127.0.0.1:7000",
            Service::Mongo => "mongodb://127.0.0.1:27017",
            Service::Dynamo => "http://127.0.0.1:8000",
        }
    }

    /// Whether the `containers` feature knows how to start this service.
    pub(crate) fn has_container(self) -> bool {
        !matches!(self, Service::RedisCluster)
    }

    /// The server looked for at its usual local address, for the services that have one:
    /// PostgreSQL as user `postgres` without a password, MySQL / MariaDB as `root` without a
    /// password (both in database [`LOCAL_DATABASE`]), and Redis (database 0; tests keep to
    /// key prefixes of their own).
    pub(crate) fn local(self) -> Option<LocalServer> {
        match self {
            Service::Postgres => Some(LocalServer {
                label: "PostgreSQL",
                address: "127.0.0.1:5432",
                login: "user postgres, no password",
                url: "postgres://postgres@127.0.0.1:5432/tracker_test",
            }),
            Service::Mysql => Some(LocalServer {
                label: "MySQL / MariaDB",
                address: "127.0.0.1:3306",
                login: "user root, no password",
                url: "mysql://root@127.0.0.1:3306/tracker_test",
            }),
            Service::Redis => Some(LocalServer {
                label: "Redis",
                address: "127.0.0.1:6379",
                login: "no password, not a cluster node",
                url: "redis://127.0.0.1:6379",
            }),
            Service::RedisCluster | Service::Mongo | Service::Dynamo => None,
        }
    }
}
