//! The connections of a store or a Rasa source: a fred pool and, in a cluster, the store's own
//! connection to each primary, with the routing of each command to the right one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, FredResult};
use fred::types::{Builder, Value};
use tracker_core::Result;

use crate::config::RedisConfig;
use crate::error::driver_error;
use crate::nodes::{Nodes, is_redirection, reconnect_policy};
use crate::scripts::Script;

/// A fred pool, and in a cluster the connections to each primary (see [`crate::nodes`]).
/// Cloning shares the connections.
#[derive(Clone)]
pub(crate) struct Connection {
    pool: Pool,
    nodes: Option<Arc<Nodes>>,
    clustered: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("clustered", &self.clustered)
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl Connection {
    /// Builds a fred pool of `pool_size` connections from `config`, with reconnection
    /// (exponential back-off) and the configured timeouts, and waits until it is connected.
    pub(crate) async fn connect(config: &RedisConfig) -> Result<Self> {
        config.check_pool_size()?;
        let fred_config = config.fred_config()?;
        let timeout = config.timeout();
        let mut builder = Builder::from_config(fred_config);
        builder
            .with_connection_config(|connection| {
                if let Some(timeout) = timeout {
                    connection.connection_timeout = timeout;
                    connection.internal_command_timeout = timeout;
                }
            })
            .with_performance_config(|performance| {
                if let Some(timeout) = timeout {
                    performance.default_command_timeout = timeout;
                }
            })
            .set_policy(reconnect_policy());
        let pool = builder
            .build_pool(config.pool_size)
            .map_err(|e| driver_error("building the Redis client", e))?;
        pool.init()
            .await
            .map_err(|e| driver_error("connecting to Redis", e))?;
        tracing::debug!(
            config = ?config,
            clustered = pool.is_clustered(),
            "connected to Redis"
        );
        Ok(Self::from_pool(pool))
    }

    /// The connections of an existing, connected client.
    pub(crate) fn from_client(client: Client) -> Result<Self> {
        let pool = Pool::from_clients(vec![client])
            .map_err(|e| driver_error("wrapping the Redis client", e))?;
        Ok(Self::from_pool(pool))
    }

    /// The connections of an existing, connected pool; in a cluster, the connections to each
    /// primary copy its configuration.
    pub(crate) fn from_pool(pool: Pool) -> Self {
        let clustered = pool.is_clustered();
        let nodes = clustered.then(|| Arc::new(Nodes::new(&pool)));
        Self {
            pool,
            nodes,
            clustered,
        }
    }

    /// The fred pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One client of the pool.
    pub(crate) fn client(&self) -> &Client {
        self.pool.next()
    }

    /// Whether the connections are to a Redis Cluster.
    pub(crate) fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// Runs `command` on the client for `key`: in a cluster, the own connection to the
    /// primary that owns the key's slot (see [`crate::nodes`]), or the cluster client when
    /// that primary is not known yet or answers with a redirection; else one of the pool's
    /// connections. `command` may run twice (after a redirection, which executes nothing).
    pub(crate) async fn on_key<T, F, Fut>(&self, key: &str, command: F) -> FredResult<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = FredResult<T>>,
    {
        if let Some(nodes) = &self.nodes
            && let Some(client) = nodes.for_key(self.client(), key)
        {
            match command(client).await {
                Err(error) if is_redirection(&error) => tracing::debug!(
                    store = "redis",
                    key,
                    %error,
                    "the slot has moved; sending through the cluster client"
                ),
                result => return result,
            }
        }
        command(self.client().clone()).await
    }

    /// Runs a script; all its keys are in one slot.
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> FredResult<Value> {
        let first = keys.first().cloned().unwrap_or_default();
        self.on_key(&first, |client| {
            let (keys, args) = (keys.clone(), args.clone());
            async move { script.run(&client, keys, args).await }
        })
        .await
    }
}
