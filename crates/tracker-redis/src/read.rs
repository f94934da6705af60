//! Reading a conversation: its version and the events of a scope, from one instant.
//!
//! The events come from a plain `LRANGE` inside `MULTI`/`EXEC`, with the head's `HMGET` in
//! the same transaction: a Lua script returning them would copy each one into a Lua string
//! and back, which costs the server several times the `LRANGE` itself for a long
//! conversation. A whole conversation is one transaction, one round trip. For the latest
//! session the first event's position is in the head, so the read script comes first: when
//! the session holds few events it returns them itself (one round trip, where a Lua copy
//! costs less than a second round trip); else it returns only where the session starts, and
//! a transaction from there follows. That transaction reads the head again and keeps the
//! events from the session start it finds: a later one (a new session began in between)
//! leaves a few extra events to skip, an earlier one (the conversation was deleted and
//! created again) is read again from there.
//!
//! With adoption, a conversation this store's layout lacks is Rasa's record, if Rasa's key
//! holds one. On a single server the read script returns it, having found the head missing
//! in the same step (a full read's transaction also looks at the type of Rasa's key, so that
//! a conversation neither layout holds still takes one round trip); in a cluster Rasa's key
//! is in another slot, and a `GET` of it follows.

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{
    ClientLike, HashesInterface, KeysInterface, ListInterface, TransactionInterface,
};
use fred::types::Value;
use fred::types::config::Options;
use tracker_core::{Error, EventData, ReadScope, Result, StoredConversation, StoredEvent};

use crate::adopt::{RasaRecord, record_text};
use crate::connection::Connection;
use crate::error::{conversation_error, unexpected_reply};
use crate::schema::{KeyLayout, parse_version};
use crate::scripts::READ;

/// Most events the read script returns itself. Past about this many, copying the events
/// through Lua costs more than the round trip of a separate transaction: measured with events
/// of 270 bytes on a loopback connection, the two break even between 100 and 150 events
/// (about 0.6 µs an event against some 50 µs a round trip); over a network a round trip
/// costs more, so this errs on the side of the script.
const SCRIPT_EVENTS: u64 = 128;

/// Reads before giving up on a conversation that was deleted and created again during each.
const ATTEMPTS: usize = 5;

/// What a read works with.
pub(crate) struct Reading<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) layout: &'a KeyLayout,
    pub(crate) adopt: bool,
}

/// What to do next.
enum Step {
    /// Run the read script.
    Script,
    /// Read the head and the events from this seq in one transaction.
    Transaction(u64),
}

/// What the read script answered.
enum Scripted {
    /// The read's result.
    Done(Option<StoredConversation>),
    /// The scope's events start at this seq; they are too many for the script.
    From(u64),
}

/// What a transaction found.
enum Snapshot {
    /// The conversation.
    Read(StoredConversation),
    /// The scope starts before the seq read from: read again from there.
    Earlier(u64),
    /// The head does not exist.
    Missing,
    /// The head does not exist and Rasa's key holds a string (single servers, with
    /// adoption): the read script reads Rasa's record.
    RasaKey,
}

impl Reading<'_> {
    /// Reads `scope` of conversation `id`.
    pub(crate) async fn run(
        &self,
        id: &str,
        scope: ReadScope,
    ) -> Result<Option<StoredConversation>> {
        let mut step = match scope {
            ReadScope::All => Step::Transaction(1),
            ReadScope::LatestSession => Step::Script,
        };
        for _ in 0..ATTEMPTS {
            let first = match step {
                Step::Transaction(first) => first,
                Step::Script => match self.script(id, scope).await? {
                    Scripted::Done(read) => return Ok(read),
                    Scripted::From(first) => first,
                },
            };
            step = match self.transaction(id, scope, first).await? {
                Snapshot::Read(conversation) => return Ok(Some(conversation)),
                Snapshot::Earlier(first) => Step::Transaction(first),
                // The script looks at Rasa's key in the same step as the head.
                Snapshot::RasaKey => Step::Script,
                // In a cluster Rasa's key is in another slot.
                Snapshot::Missing if self.adopt && self.connection.is_clustered() => {
                    return self.rasa_record(id, scope).await;
                }
                Snapshot::Missing => return Ok(None),
            };
        }
        Err(Error::unavailable(format!(
            "read of conversation {id:?}: it was deleted and created again during each of \
             {ATTEMPTS} attempts"
        )))
    }

    /// Whether the read script looks at Rasa's key when the head is missing: on single
    /// servers, with adoption (in a cluster Rasa's key is in another slot).
    fn rasa_in_script(&self) -> bool {
        self.adopt && !self.connection.is_clustered()
    }

    /// Rasa's record of `id`, read as `scope`.
    async fn rasa_record(&self, id: &str, scope: ReadScope) -> Result<Option<StoredConversation>> {
        Ok(RasaRecord::read(self.connection, self.layout, id)
            .await?
            .and_then(|record| record.stored(scope)))
    }

    /// The read script: the conversation when the scope holds few events, else where they
    /// start; Rasa's record without the conversation (see [`Reading::rasa_in_script`]).
    async fn script(&self, id: &str, scope: ReadScope) -> Result<Scripted> {
        let layout = self.layout;
        let scope_arg = match scope {
            ReadScope::All => "all",
            ReadScope::LatestSession => "latest",
        };
        let mut keys = vec![layout.events(id), layout.head(id)];
        if self.rasa_in_script() {
            keys.push(layout.rasa(id));
        }
        let args = vec![Value::from(scope_arg), Value::from(SCRIPT_EVENTS as i64)];
        let reply = self
            .connection
            .run(&READ, keys, args)
            .await
            .map_err(|e| conversation_error(id, "read", e))?;
        match reply {
            Value::Null if self.adopt && !self.rasa_in_script() => {
                Ok(Scripted::Done(self.rasa_record(id, scope).await?))
            }
            Value::Null => Ok(Scripted::Done(None)),
            Value::Array(items) if items.len() == 3 => {
                let mut items = items.into_iter();
                let (Some(version), Some(first), Some(texts)) =
                    (items.next(), items.next(), items.next())
                else {
                    return Err(Error::corrupt(id, None, "read: unexpected reply"));
                };
                let version = parse_version(id, &version)?;
                let first = first_seq(id, &first)?;
                conversation(id, version, first, first, texts).map(|c| Scripted::Done(Some(c)))
            }
            Value::Array(mut items) if items.len() == 2 => match items[0].as_str().as_deref() {
                Some("rasa") => {
                    let key = layout.rasa(id);
                    let text = record_text(id, &key, items.remove(1))?.unwrap_or_default();
                    Ok(Scripted::Done(
                        RasaRecord::parse(id, &key, &text)?.stored(scope),
                    ))
                }
                Some("from") => first_seq(id, &items[1]).map(Scripted::From),
                _ => Err(unexpected_reply(id, "read", &Value::Array(items))),
            },
            other => Err(unexpected_reply(id, "read", &other)),
        }
    }

    /// One transaction (see [`read_transaction`]) reading the head and the events from seq
    /// `from`.
    async fn transaction(&self, id: &str, scope: ReadScope, from: u64) -> Result<Snapshot> {
        let keys = Keys {
            head: self.layout.head(id),
            events: self.layout.events(id),
            rasa: self.rasa_in_script().then(|| self.layout.rasa(id)),
        };
        let reply = self
            .connection
            .on_key(&keys.head, |client| {
                let keys = keys.clone();
                async move { read_transaction(&client, keys, from).await }
            })
            .await
            .map_err(|e| conversation_error(id, "read", e))?;
        let Value::Array(replies) = reply else {
            return Err(unexpected_reply(id, "read", &reply));
        };
        let (expected, got) = (3 + usize::from(keys.rasa.is_some()), replies.len());
        let wrong_count = || {
            Error::backend(format!(
                "read of conversation {id:?}: a transaction of {expected} commands got {got} \
                 replies"
            ))
        };
        if got != expected {
            return Err(wrong_count());
        }
        let mut replies = replies.into_iter();
        let (Some(fields), Some(texts), Some(exists)) =
            (replies.next(), replies.next(), replies.next())
        else {
            return Err(wrong_count());
        };
        let rasa_type = replies.next();
        let (version, session) = match fields {
            Value::Array(fields) if fields.len() == 2 => {
                let mut fields = fields.into_iter();
                (fields.next(), fields.next())
            }
            other => return Err(unexpected_reply(id, "read", &other)),
        };
        let version = match version {
            Some(Value::Null) | None => {
                return match exists.as_u64() {
                    Some(0)
                        if rasa_type.and_then(Value::into_string).as_deref() == Some("string") =>
                    {
                        Ok(Snapshot::RasaKey)
                    }
                    Some(0) => Ok(Snapshot::Missing),
                    Some(_) => Err(Error::corrupt(id, None, "read: the head has no version")),
                    None => Err(unexpected_reply(id, "read", &exists)),
                };
            }
            Some(version) => parse_version(id, &version)?,
        };
        let first = match (scope, session) {
            (ReadScope::LatestSession, Some(session)) if !session.is_null() => {
                let session = session
                    .as_str()
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Error::corrupt(
                            id,
                            None,
                            "read: the head has a session start that is not a number",
                        )
                    })?;
                session.saturating_sub(1).max(1)
            }
            _ => 1,
        };
        if first < from {
            return Ok(Snapshot::Earlier(first));
        }
        conversation(id, version, from, first, texts).map(Snapshot::Read)
    }
}

/// The keys a read transaction looks at.
#[derive(Clone)]
struct Keys {
    head: String,
    events: String,
    /// Rasa's key, on single servers with adoption.
    rasa: Option<String>,
}

/// `MULTI`, `HMGET head version session`, `LRANGE events <from - 1> -1`, `EXISTS head` (to
/// tell a missing head from one without a version), `TYPE` of Rasa's key when given (so that
/// a conversation neither layout holds takes one round trip), `EXEC`.
///
/// fred sends a transaction alone on its connection, after the replies to the commands sent
/// before it, and in a cluster to the primary of the keys' slot (all in one, by the hash
/// tag), following `MOVED` and `ASK`. On a connection to one primary of a cluster a `MOVED`
/// reply makes fred reconnect and send the transaction again, so it is told to give up after
/// one redirection (the caller then goes through the cluster client).
async fn read_transaction(client: &Client, keys: Keys, from: u64) -> Result<Value, FredError> {
    let transaction = client.multi();
    let queued = transaction.with_options(&Options {
        max_redirections: Some(1),
        ..Options::default()
    });
    let () = queued.hmget(&keys.head, vec!["version", "session"]).await?;
    let start = i64::try_from(from - 1).unwrap_or(i64::MAX);
    let () = queued.lrange(&keys.events, start, -1).await?;
    let () = queued.exists(&keys.head).await?;
    if let Some(rasa) = &keys.rasa {
        let () = queued.r#type(rasa).await?;
    }
    transaction.exec(false).await
}

/// The seq of the first event a script's reply covers.
fn first_seq(id: &str, value: &Value) -> Result<u64> {
    value
        .as_u64()
        .filter(|first| *first >= 1)
        .ok_or_else(|| Error::corrupt(id, None, "read: the first sequence number is not a number"))
}

/// The conversation at `version` whose events from seq `from` on are `texts`, keeping those
/// from seq `first` on (`first >= from`).
///
/// # Errors
/// [`Error::Corrupt`] when the number of events disagrees with the version (both come from
/// one instant, so only a list that does not match its head does that), or an event is not
/// UTF-8 text.
fn conversation(
    id: &str,
    version: u64,
    from: u64,
    first: u64,
    texts: Value,
) -> Result<StoredConversation> {
    let texts = match texts {
        Value::Array(texts) => texts,
        Value::Null => Vec::new(),
        other => return Err(unexpected_reply(id, "read", &other)),
    };
    let expected = (version + 1).saturating_sub(from);
    if texts.len() as u64 != expected {
        return Err(Error::corrupt(
            id,
            None,
            format!(
                "the head says version {version} but {} events were found from event {from}",
                texts.len()
            ),
        ));
    }
    let skip = usize::try_from(first.saturating_sub(from)).unwrap_or(usize::MAX);
    let mut events = Vec::with_capacity(texts.len().saturating_sub(skip));
    for (text, seq) in texts.into_iter().zip(from..).skip(skip) {
        let text = match text {
            Value::String(text) => text.to_string(),
            Value::Bytes(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|e| Error::corrupt_with(id, Some(seq), "the event is not UTF-8", e))?,
            other => {
                return Err(Error::corrupt(
                    id,
                    Some(seq),
                    format!("the event is not text: {other:?}"),
                ));
            }
        };
        events.push(StoredEvent {
            seq,
            data: EventData::Text(text),
        });
    }
    Ok(StoredConversation { version, events })
}
