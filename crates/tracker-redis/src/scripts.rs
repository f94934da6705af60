//! The Lua scripts, run with `EVALSHA` and sent in full (`EVAL`) when the server does not
//! have them cached yet (`NOSCRIPT`), which also caches them there.

use std::sync::LazyLock;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::LuaInterface;
use fred::types::{MultipleKeys, Value};

/// A Lua script and its SHA-1.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) name: &'static str,
    lua: &'static str,
    sha1: String,
}

impl Script {
    fn new(name: &'static str, lua: &'static str) -> Self {
        Self {
            name,
            lua,
            sha1: fred::util::sha1_hash(lua),
        }
    }

    /// Runs the script: `EVALSHA`, then `EVAL` on `NOSCRIPT`.
    pub(crate) async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, FredError> {
        let keys = MultipleKeys::from(keys);
        match client
            .evalsha::<Value, _, _, _>(self.sha1.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                tracing::debug!(
                    script = self.name,
                    "script not cached on the server; sending it"
                );
                client.eval(self.lua, keys, args).await
            }
            result => result,
        }
    }
}

/// Checks the version, appends, updates the head and the expiry (and, on a standalone
/// server, the index).
pub(crate) static APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("append", include_str!("scripts/append.lua")));

/// Reads the version and the events from a position, atomically.
pub(crate) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new("read", include_str!("scripts/read.lua")));

/// Adds ids to the index with expiry hints; returns ids whose hint has passed.
pub(crate) static TOUCH: LazyLock<Script> =
    LazyLock::new(|| Script::new("touch", include_str!("scripts/touch.lua")));

/// Removes ids from the index (cluster).
pub(crate) static FORGET: LazyLock<Script> =
    LazyLock::new(|| Script::new("forget", include_str!("scripts/forget.lua")));

/// Deletes a conversation and its index entries (standalone servers).
pub(crate) static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new("delete", include_str!("scripts/delete.lua")));

/// Removes index entries of conversations that no longer exist (standalone servers).
pub(crate) static PRUNE: LazyLock<Script> =
    LazyLock::new(|| Script::new("prune", include_str!("scripts/prune.lua")));
