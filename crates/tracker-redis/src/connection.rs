//! The connections of a store or a Rasa source: a fred pool and, in a cluster, the store's own
//! connection to each primary, with the routing of each command to the right one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use fred::clients::{Client, Pool};
use fred::error::{Error as FredError, ErrorKind as FredKind};
use fred::interfaces::{ClientLike, FredResult};
use fred::types::config::Server;
use fred::types::{Builder, ClusterHash, CustomCommand, Value};
use tracker_core::Result;

use crate::config::RedisConfig;
use crate::error::{driver_error, is_connection_failure};
use crate::nodes::{Nodes, is_redirection, reconnect_policy};
use crate::scripts::Script;

/// Most commands one pipeline carries: a longer batch goes as several pipelines, one after
/// another on each connection.
const PIPELINE_COMMANDS: usize = 1_000;

/// Bytes of arguments after which a pipeline is cut, so that each one is sent and answered
/// well within the command timeout.
const PIPELINE_BYTES: usize = 16 * 1024 * 1024;

/// One command of a pipeline: its name, a key of the slot it works on (for the routing in a
/// cluster), and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) name: &'static str,
    pub(crate) key: String,
    pub(crate) args: Vec<Value>,
}

impl Command {
    /// The command for fred, routed by its key's slot.
    fn custom(&self) -> CustomCommand {
        let slot = fred::util::redis_keyslot(self.key.as_bytes());
        CustomCommand::new_static(self.name, ClusterHash::Custom(slot), false)
    }

    /// About how many bytes its arguments take on the wire.
    fn size(&self) -> usize {
        self.args
            .iter()
            .map(|arg| match arg {
                Value::String(text) => text.len(),
                Value::Bytes(bytes) => bytes.len(),
                _ => 8,
            })
            .sum()
    }
}

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

    /// Sends `commands` pipelined and returns each one's reply at its position: one pipeline
    /// on one connection (split after [`PIPELINE_COMMANDS`] commands or [`PIPELINE_BYTES`]
    /// bytes); in a cluster one per primary, concurrently, on the own connection to it (see
    /// [`Connection::on_key`]), through the cluster client for the slots its routing table
    /// does not know, and again through the cluster client for the commands a primary
    /// answered with a redirection (which ran nothing).
    ///
    /// # Errors
    /// When a connection failed (I/O, timeout): the commands sent on it may or may not have
    /// run, and the replies of the others are dropped too.
    pub(crate) async fn pipeline(
        &self,
        commands: &[Command],
    ) -> FredResult<Vec<FredResult<Value>>> {
        let mut groups: Vec<(Client, Vec<usize>)> = Vec::new();
        match &self.nodes {
            None => groups.push((self.client().clone(), (0..commands.len()).collect())),
            Some(nodes) => {
                let mut by_primary: HashMap<Server, usize> = HashMap::new();
                let mut unrouted = Vec::new();
                for (position, command) in commands.iter().enumerate() {
                    let Some((primary, client)) = nodes.route(self.client(), &command.key) else {
                        unrouted.push(position);
                        continue;
                    };
                    let group = *by_primary.entry(primary).or_insert_with(|| {
                        groups.push((client, Vec::new()));
                        groups.len() - 1
                    });
                    groups[group].1.push(position);
                }
                if !unrouted.is_empty() {
                    groups.push((self.client().clone(), unrouted));
                }
            }
        }
        let sent = futures::future::join_all(
            groups
                .iter()
                .map(|(client, positions)| send(client, commands, positions)),
        )
        .await;
        let mut replies: Vec<Option<FredResult<Value>>> = commands.iter().map(|_| None).collect();
        for ((_, positions), answered) in groups.iter().zip(sent) {
            for (&position, reply) in positions.iter().zip(answered?) {
                replies[position] = Some(reply);
            }
        }
        if self.clustered {
            let moved: Vec<usize> = replies
                .iter()
                .enumerate()
                .filter(|(_, reply)| matches!(reply, Some(Err(error)) if is_redirection(error)))
                .map(|(position, _)| position)
                .collect();
            if !moved.is_empty() {
                tracing::debug!(
                    store = "redis",
                    commands = moved.len(),
                    "slots have moved; sending through the cluster client"
                );
                let answered = send(self.client(), commands, &moved).await?;
                for (position, reply) in moved.into_iter().zip(answered) {
                    replies[position] = Some(reply);
                }
            }
        }
        Ok(replies
            .into_iter()
            .map(|reply| {
                reply.unwrap_or_else(|| {
                    Err(FredError::new(
                        FredKind::Unknown,
                        "no reply to a pipelined command",
                    ))
                })
            })
            .collect())
    }

    /// Runs `script` once per call (its keys, all in one slot, and its arguments), pipelined
    /// as [`Connection::pipeline`] does: `EVALSHA`, then `EVAL` for the calls whose server
    /// did not have the script cached. Returns each call's reply at its position.
    ///
    /// # Errors
    /// As [`Connection::pipeline`].
    pub(crate) async fn run_each(
        &self,
        script: &Script,
        calls: Vec<(Vec<String>, Vec<Value>)>,
    ) -> FredResult<Vec<FredResult<Value>>> {
        let commands: Vec<Command> = calls
            .into_iter()
            .map(|(keys, args)| {
                let mut line = Vec::with_capacity(2 + keys.len() + args.len());
                line.push(Value::from(script.sha1()));
                line.push(Value::from(keys.len() as i64));
                let key = keys.first().cloned().unwrap_or_default();
                line.extend(keys.into_iter().map(Value::from));
                line.extend(args);
                Command {
                    name: "EVALSHA",
                    key,
                    args: line,
                }
            })
            .collect();
        let mut replies = self.pipeline(&commands).await?;
        let uncached: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(
                |(_, reply)| matches!(reply, Err(error) if error.details().starts_with("NOSCRIPT")),
            )
            .map(|(position, _)| position)
            .collect();
        if !uncached.is_empty() {
            tracing::debug!(
                script = script.name,
                calls = uncached.len(),
                "script not cached on the server; sending it"
            );
            let again: Vec<Command> = uncached
                .iter()
                .map(|&position| {
                    let mut command = commands[position].clone();
                    command.name = "EVAL";
                    command.args[0] = Value::from(script.lua());
                    command
                })
                .collect();
            let answered = self.pipeline(&again).await?;
            for (position, reply) in uncached.into_iter().zip(answered) {
                replies[position] = reply;
            }
        }
        Ok(replies)
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

/// Sends the commands at `positions` on `client`, in pipelines of at most
/// [`PIPELINE_COMMANDS`] commands and about [`PIPELINE_BYTES`] bytes, one after another;
/// returns their replies in order.
///
/// # Errors
/// When the connection failed: fred then answers a pipeline with one error, or a command
/// with an I/O or timeout error.
async fn send(
    client: &Client,
    commands: &[Command],
    positions: &[usize],
) -> FredResult<Vec<FredResult<Value>>> {
    let mut replies = Vec::with_capacity(positions.len());
    let mut rest = positions;
    while !rest.is_empty() {
        let mut count = 0;
        let mut bytes = 0;
        for &position in rest {
            let size = commands[position].size();
            if count == PIPELINE_COMMANDS || (count > 0 && bytes + size > PIPELINE_BYTES) {
                break;
            }
            count += 1;
            bytes += size;
        }
        let (chunk, tail) = rest.split_at(count);
        let pipeline = client.pipeline();
        for &position in chunk {
            let command = &commands[position];
            let () = pipeline
                .custom(command.custom(), command.args.clone())
                .await?;
        }
        let answered = pipeline.try_all::<Value>().await;
        let got = answered.len();
        if got != chunk.len() {
            return Err(answered
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| {
                    FredError::new(
                        FredKind::Unknown,
                        format!("a pipeline of {} commands got {} replies", chunk.len(), got),
                    )
                }));
        }
        if let Some(failure) = answered.iter().find_map(|reply| {
            reply
                .as_ref()
                .err()
                .filter(|error| is_connection_failure(error))
        }) {
            return Err(failure.clone());
        }
        replies.extend(answered);
        rest = tail;
    }
    Ok(replies)
}
