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

    /// The script's SHA-1, for `EVALSHA`.
    pub(crate) fn sha1(&self) -> &str {
        &self.sha1
    }

    /// The script's text, for `EVAL`.
    pub(crate) fn lua(&self) -> &'static str {
        self.lua
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

/// A script that uses the helpers for Rasa's keys (`scripts/rasa.lua`, prepended).
macro_rules! with_rasa_helpers {
    ($file:literal) => {
        concat!(include_str!("scripts/rasa.lua"), include_str!($file))
    };
}

/// A script that uses the helpers of the outbox scripts (`scripts/outbox.lua`, prepended).
macro_rules! with_outbox_helpers {
    ($file:literal) => {
        concat!(include_str!("scripts/outbox.lua"), include_str!($file))
    };
}

/// Checks the version, adopts Rasa's record when the conversation is only there, appends,
/// updates the head and the expiry (and, on a single server, the index and the outbox's
/// pending set).
pub(crate) static APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("append", with_rasa_helpers!("scripts/append.lua")));

/// Reads the version and the events of a scope, atomically, when they are few (else only where
/// they start), or Rasa's record.
pub(crate) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new("read", include_str!("scripts/read.lua")));

/// Reads the version, or Rasa's record when the conversation is only there (single servers).
pub(crate) static VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new("version", include_str!("scripts/version.lua")));

/// Adds ids to the index with expiry hints; returns ids whose hint has passed.
pub(crate) static TOUCH: LazyLock<Script> =
    LazyLock::new(|| Script::new("touch", include_str!("scripts/touch.lua")));

/// Removes ids from the index (cluster).
pub(crate) static FORGET: LazyLock<Script> =
    LazyLock::new(|| Script::new("forget", include_str!("scripts/forget.lua")));

/// Deletes a conversation at an expected version: its keys, Rasa's record and (single
/// servers) its index and pending-set entries.
pub(crate) static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new("delete", with_rasa_helpers!("scripts/delete.lua")));

/// Deletes Rasa's record of a conversation if it is unchanged (cluster).
pub(crate) static RASA_DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new("rasa_delete", with_rasa_helpers!("scripts/rasa_delete.lua")));

/// Whether Rasa's record of a conversation holds events (cluster).
pub(crate) static RASA_HOLDS: LazyLock<Script> =
    LazyLock::new(|| Script::new("rasa_holds", with_rasa_helpers!("scripts/rasa_holds.lua")));

/// Which conversations exist, in this store's layout or Rasa's (single servers).
pub(crate) static EXIST: LazyLock<Script> =
    LazyLock::new(|| Script::new("exist", with_rasa_helpers!("scripts/exist.lua")));

/// Removes index entries of conversations that no longer exist (single servers).
pub(crate) static PRUNE: LazyLock<Script> =
    LazyLock::new(|| Script::new("prune", with_rasa_helpers!("scripts/prune.lua")));

/// Adds conversations to the outbox's pending set (cluster).
pub(crate) static OUTBOX_MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "outbox_mark",
        with_outbox_helpers!("scripts/outbox_mark.lua"),
    )
});

/// Gives a relay the lease of a conversation; returns its version and checkpoint.
pub(crate) static OUTBOX_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "outbox_lease",
        with_outbox_helpers!("scripts/outbox_lease.lua"),
    )
});

/// Moves a conversation's checkpoint under the relay's lease and gives the lease back (and,
/// on a single server, takes it off the pending set at its version).
pub(crate) static OUTBOX_CHECKPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "outbox_checkpoint",
        with_outbox_helpers!("scripts/outbox_checkpoint.lua"),
    )
});

/// What a relay should do with each pending conversation (and, on a single server, takes
/// those published whole off the pending set).
pub(crate) static OUTBOX_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "outbox_status",
        with_outbox_helpers!("scripts/outbox_status.lua"),
    )
});

/// Whether a conversation has events past its checkpoint (cluster).
pub(crate) static OUTBOX_UNSETTLED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "outbox_unsettled",
        include_str!("scripts/outbox_unsettled.lua"),
    )
});

/// The keys of a script call: the fixed ones first, then optional ones, whose positions the
/// script is given as arguments (1-based, 0 for a key not given).
pub(crate) struct ScriptKeys {
    keys: Vec<String>,
}

impl ScriptKeys {
    /// The fixed keys.
    pub(crate) fn new(fixed: Vec<String>) -> Self {
        Self { keys: fixed }
    }

    /// Adds `key` when there is one; returns its position for the script (0 without).
    pub(crate) fn optional(&mut self, key: Option<String>) -> usize {
        match key {
            Some(key) => {
                self.keys.push(key);
                self.keys.len()
            }
            None => 0,
        }
    }

    /// The keys, in order.
    pub(crate) fn into_keys(self) -> Vec<String> {
        self.keys
    }
}
