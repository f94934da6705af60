//! A clustered store's own connections to each primary, so that a primary that is down only
//! affects the conversations it holds.
//!
//! fred's cluster client sends every command through one routing task, and when it loses a
//! primary that task stays in its reconnection loop, which reconnects to every primary of the
//! routing table at once, until that primary is back: commands for the other primaries wait
//! in its queue meanwhile and time out. So a clustered store also opens its own connections
//! to each primary (as many as the pool has clients), on demand, and sends each command to
//! the primary that owns its keys' slot, looked up in the cluster client's routing table
//! (which that client keeps current, even while it is reconnecting). It falls back to the
//! cluster client when the table does not know the slot yet and when a primary answers with
//! a redirection (`MOVED`, `ASK`: the slot has moved); the cluster client follows the
//! redirection and refreshes its table.

use std::collections::HashMap;
use std::sync::Mutex;

use fred::clients::{Client, Pool};
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, ClusterInterface};
use fred::types::cluster::ClusterRouting;
use fred::types::config::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server, ServerConfig,
};
use fred::types::{Builder, ConnectHandle};

/// The reconnection policy of the store's connections: forever, waiting 100 ms after the
/// first failure, doubling up to 5 s.
pub(crate) fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 5_000, 2)
}

/// fred's error for a transaction that met more redirections than it may follow. On a
/// connection to one primary fred cannot follow them: it reconnects to the same primary and
/// sends the transaction again, which meets the same `MOVED`.
const TRANSACTION_REDIRECTED: &str = "Max redirections exceeded";

/// Whether a fred error is a cluster redirection: the slot is served elsewhere now.
pub(crate) fn is_redirection(error: &FredError) -> bool {
    matches!(
        error.details().split_whitespace().next(),
        Some("MOVED" | "ASK")
    ) || error.details().starts_with(TRANSACTION_REDIRECTED)
}

/// Connections to each primary of a cluster, opened on first use.
pub(crate) struct Nodes {
    /// The cluster client's configuration, with `fail_fast` off so that a connection opened
    /// while its primary is down keeps trying.
    config: Config,
    connection: ConnectionConfig,
    performance: PerformanceConfig,
    policy: ReconnectPolicy,
    /// Connections per primary.
    size: usize,
    clients: Mutex<HashMap<Server, Node>>,
}

struct Node {
    pool: Pool,
    tasks: Vec<ConnectHandle>,
}

impl Node {
    /// Whether every connection task still runs (they end only when a reconnection policy
    /// gives up).
    fn is_running(&self) -> bool {
        self.tasks.iter().all(|task| !task.is_finished())
    }

    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Nodes {
    /// Connections configured as the clients of `cluster` (credentials, TLS, timeouts,
    /// reconnection), as many per primary as it has clients, with the store's reconnection
    /// policy when `cluster` has none: without one, a connection that lost its primary would
    /// never come back.
    pub(crate) fn new(cluster: &Pool) -> Self {
        let size = cluster.size();
        let cluster = cluster.next();
        let mut config = cluster.client_config();
        config.fail_fast = false;
        Self {
            config,
            connection: cluster.connection_config().clone(),
            performance: cluster.perf_config(),
            policy: cluster
                .client_reconnect_policy()
                .unwrap_or_else(reconnect_policy),
            size,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to the primary that owns `key`'s slot according to `cluster`'s routing
    /// table; `None` when the table does not know the slot (or the connection cannot be
    /// built), and the cluster client should be used.
    pub(crate) fn for_key(&self, cluster: &Client, key: &str) -> Option<Client> {
        self.route(cluster, key).map(|(_, client)| client)
    }

    /// As [`Nodes::for_key`], with the primary the connection goes to.
    pub(crate) fn route(&self, cluster: &Client, key: &str) -> Option<(Server, Client)> {
        let routing = cluster.cached_cluster_state()?;
        let primary = routing.get_server(ClusterRouting::hash_key(key.as_bytes()))?;
        let mut clients = self.clients.lock().ok()?;
        if let Some(node) = clients.get(primary)
            && node.is_running()
        {
            return Some((primary.clone(), node.pool.next().clone()));
        }
        // First use, or the connection task ended (a reconnection policy that gives up).
        let node = match self.connect(primary) {
            Ok(node) => node,
            Err(error) => {
                tracing::warn!(
                    store = "redis",
                    primary = %primary,
                    %error,
                    "could not set up a connection to a cluster primary; using the cluster client"
                );
                return None;
            }
        };
        let client = node.pool.next().clone();
        if let Some(old) = clients.insert(primary.clone(), node) {
            old.abort();
        }
        // Drop the connections of nodes that are no longer primaries.
        let primaries = routing.unique_primary_nodes();
        clients.retain(|server, node| {
            let keep = primaries.contains(server);
            if !keep {
                node.abort();
            }
            keep
        });
        Some((primary.clone(), client))
    }

    fn connect(&self, primary: &Server) -> Result<Node, FredError> {
        let mut config = self.config.clone();
        config.server = ServerConfig::Centralized {
            server: primary.clone(),
        };
        let pool = Builder::from_config(config)
            .set_connection_config(self.connection.clone())
            .set_performance_config(self.performance.clone())
            .set_policy(self.policy.clone())
            .build_pool(self.size)?;
        // Commands sent before the connections are up wait for them, within the command
        // timeout.
        let tasks = pool.connect_pool();
        tracing::debug!(store = "redis", primary = %primary, "connecting to a cluster primary");
        Ok(Node { pool, tasks })
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if let Ok(clients) = self.clients.get_mut() {
            for node in clients.values() {
                node.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::ErrorKind as FredKind;

    #[test]
    fn redirections_are_told_from_other_errors() {
        let redirections = [
            FredError::new(FredKind::Cluster, "MOVED 3999 127.0.0.1:7102"),
            FredError::new(FredKind::Cluster, "ASK 3999 127.0.0.1:7102"),
            FredError::new(FredKind::Unknown, "Max redirections exceeded"),
        ];
        for error in redirections {
            assert!(is_redirection(&error), "{error}");
        }
        let others = [
            FredError::new(FredKind::Unknown, "ERR unknown command"),
            FredError::new(FredKind::Cluster, "CLUSTERDOWN The cluster is down"),
            FredError::new(FredKind::IO, "connection reset"),
        ];
        for error in others {
            assert!(!is_redirection(&error), "{error}");
        }
    }
}
