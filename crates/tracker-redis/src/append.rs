//! Appending: one Lua script per conversation (`scripts/append.lua`) checks its version,
//! adopts Rasa's record of it when this store's layout lacks it, and writes the events, the
//! head and the expiry all or nothing.
//!
//! A batch runs the same script for every conversation, all sent in one pipeline (one per
//! primary in a cluster, see [`Connection::pipeline`]); each script stays atomic on its own
//! and its reply is that conversation's result. What a single append does around its script,
//! a batch does once for all its conversations: in a cluster, reading Rasa's records before
//! creating conversations (adoption), marking them pending in the outbox and adding them to
//! the index before the scripts, and the index and outbox updates after them.

use fred::types::Value;
use tracker_core::{Append, Error, Result, SenderId};

use crate::adopt::{Fetched, RasaRecord, fetch, fetch_each};
use crate::connection::Connection;
use crate::error::{conflict, conversation_error, driver_error, unexpected_reply};
use crate::index::Index;
use crate::schema::{KeyLayout, parse_version};
use crate::scripts::{APPEND, OUTBOX_MARK, ScriptKeys};

/// Attempts of an append that adopts a Rasa record which keeps changing meanwhile.
const ADOPT_ATTEMPTS: usize = 5;

/// What an append works with.
pub(crate) struct Appending<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) layout: &'a KeyLayout,
    pub(crate) index: Index<'a>,
    pub(crate) record_exp: Option<u64>,
    pub(crate) adopt: bool,
    pub(crate) outbox: bool,
}

/// What the append script answered.
enum Reply {
    /// Written: the new version, whether the conversation was created in this layout, and
    /// (told in a cluster with the outbox on) whether its outbox checkpoint was at the
    /// version before the append.
    Appended {
        version: u64,
        created: bool,
        settled: bool,
    },
    /// At another version: nothing written.
    Conflict(u64),
    /// Rasa's record must be read (again) first: nothing written.
    ReadRasa,
}

/// A conversation an append wrote, for the steps that follow the script.
struct Written<'a> {
    sender_id: &'a str,
    /// Created in this layout by the append.
    created: bool,
    /// To be marked pending again (cluster, outbox).
    mark_again: bool,
    /// The SHA-1 of the Rasa record it adopted, to check again (cluster).
    adopted: Option<String>,
}

impl Appending<'_> {
    /// Appends `append` if the conversation is at its expected version; returns the new
    /// version.
    pub(crate) async fn one(&self, append: &Append) -> Result<u64> {
        let sender_id = append.sender_id();
        let id = sender_id.as_str();
        let clustered = self.connection.is_clustered();
        let expected = append.expected_version();
        let (keys, positions) = self.keys(id);
        // In a cluster the script cannot see Rasa's key (another slot): a conversation is
        // created only after Rasa's record was read. On a single server the script looks.
        let mut rasa = if !self.adopt {
            RasaArgs::Own
        } else if clustered && expected == 0 {
            self.rasa_args(sender_id).await?
        } else {
            RasaArgs::Probe
        };
        // With the outbox on in a cluster, the pending set lives in another slot than the
        // conversation, so the append script cannot mark the conversation pending: mark it
        // before the append, so that the set holds every conversation with events to publish
        // (a failed append leaves an entry with nothing to publish, which the outbox's
        // `pending` takes off). The README's outbox section explains the second mark after.
        let mark = clustered && self.outbox;
        if mark {
            self.mark_pending(&[id]).await?;
        }
        let mut indexed = false;
        for _ in 0..ADOPT_ATTEMPTS {
            // The index lives in another slot in a cluster: add the id before the
            // conversation can come into being in this layout, so the index always holds
            // every conversation. (On a single server the script adds it.)
            if clustered && rasa.creates(expected) && !indexed {
                self.index.touch(&[id]).await?;
                indexed = true;
            }
            let reply = self
                .connection
                .run(
                    &APPEND,
                    keys.clone(),
                    rasa.append_args(append, self.record_exp, positions),
                )
                .await
                .map_err(|e| conversation_error(id, "append", e))?;
            match parse_reply(id, &reply)? {
                Reply::Appended {
                    version,
                    created,
                    settled,
                } => {
                    let written = Written {
                        sender_id: id,
                        created,
                        mark_again: mark && settled,
                        adopted: rasa.adopted(created && clustered),
                    };
                    self.finish(&[written]).await;
                    return Ok(version);
                }
                Reply::Conflict(actual) => return Err(conflict(id, "append", expected, actual)),
                // Rasa's record is needed, or changed since it was read: read it (again).
                Reply::ReadRasa => rasa = self.rasa_args(sender_id).await?,
            }
        }
        // Rasa's record changed every time it was read: report its last version, for the
        // caller to read again.
        Err(Error::conflict(id, expected, rasa.version()))
    }

    /// Appends to several conversations (distinct ones), each as [`Appending::one`] would:
    /// every script in one pipeline per round, and a further round only for the
    /// conversations whose Rasa record had to be read (again). Each conversation's result is
    /// at its position.
    ///
    /// # Errors
    /// For the whole batch when a connection failed during a round, or when a step shared by
    /// the batch failed (in a cluster, marking the conversations pending or adding them to
    /// the index before a round): the appends of that round may or may not have been written
    /// (each all or nothing), those of earlier rounds were.
    pub(crate) async fn batch(&self, appends: &[Append]) -> Result<Vec<Result<u64>>> {
        let mut results: Vec<Option<Result<u64>>> = appends.iter().map(|_| None).collect();
        let mut written = Vec::new();
        let outcome = self.rounds(appends, &mut results, &mut written).await;
        // The appends written before a failure get their index and outbox updates too.
        self.finish(&written).await;
        outcome?;
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(Error::backend("no result"))))
            .collect())
    }

    /// The rounds of [`Appending::batch`]: fills `results` and lists what was written.
    async fn rounds<'a>(
        &self,
        appends: &'a [Append],
        results: &mut [Option<Result<u64>>],
        written: &mut Vec<Written<'a>>,
    ) -> Result<()> {
        let clustered = self.connection.is_clustered();
        let mark = clustered && self.outbox;
        let mut rasa: Vec<RasaArgs> = appends
            .iter()
            .map(|_| {
                if self.adopt {
                    RasaArgs::Probe
                } else {
                    RasaArgs::Own
                }
            })
            .collect();
        let mut todo: Vec<usize> = (0..appends.len()).collect();
        if self.adopt && clustered {
            // As for one append: Rasa's records of the conversations to create, read first.
            let unread: Vec<usize> = todo
                .iter()
                .copied()
                .filter(|&i| appends[i].expected_version() == 0)
                .collect();
            self.read_rasa(appends, &unread, &mut rasa, results).await?;
            todo.retain(|&i| results[i].is_none());
        }
        if mark && !todo.is_empty() {
            self.mark_pending(&sender_ids(appends, &todo)).await?;
        }
        let mut indexed = vec![false; appends.len()];
        for _ in 0..ADOPT_ATTEMPTS {
            if todo.is_empty() {
                return Ok(());
            }
            if clustered {
                let creating: Vec<usize> = todo
                    .iter()
                    .copied()
                    .filter(|&i| !indexed[i] && rasa[i].creates(appends[i].expected_version()))
                    .collect();
                if !creating.is_empty() {
                    self.index.touch(&sender_ids(appends, &creating)).await?;
                    for i in creating {
                        indexed[i] = true;
                    }
                }
            }
            let calls = todo
                .iter()
                .map(|&i| {
                    let (keys, positions) = self.keys(appends[i].sender_id().as_str());
                    let args = rasa[i].append_args(&appends[i], self.record_exp, positions);
                    (keys, args)
                })
                .collect();
            let replies = self
                .connection
                .run_each(&APPEND, calls)
                .await
                .map_err(|e| driver_error("appending to a batch of conversations", e))?;
            let mut again = Vec::new();
            for (&i, reply) in todo.iter().zip(replies) {
                let append = &appends[i];
                let id = append.sender_id().as_str();
                let reply = reply
                    .map_err(|e| conversation_error(id, "append", e))
                    .and_then(|reply| parse_reply(id, &reply));
                match reply {
                    Ok(Reply::Appended {
                        version,
                        created,
                        settled,
                    }) => {
                        results[i] = Some(Ok(version));
                        written.push(Written {
                            sender_id: id,
                            created,
                            mark_again: mark && settled,
                            adopted: rasa[i].adopted(created && clustered),
                        });
                    }
                    Ok(Reply::Conflict(actual)) => {
                        results[i] = Some(Err(conflict(
                            id,
                            "append",
                            append.expected_version(),
                            actual,
                        )));
                    }
                    Ok(Reply::ReadRasa) => again.push(i),
                    Err(error) => results[i] = Some(Err(error)),
                }
            }
            self.read_rasa(appends, &again, &mut rasa, results).await?;
            again.retain(|&i| results[i].is_none());
            todo = again;
        }
        // Rasa's records changed every time they were read.
        for i in todo {
            let append = &appends[i];
            results[i] = Some(Err(Error::conflict(
                append.sender_id().as_str(),
                append.expected_version(),
                rasa[i].version(),
            )));
        }
        Ok(())
    }

    /// What follows the scripts of appends that wrote: in a cluster with the outbox on, the
    /// second mark of conversations that had been published whole; in a cluster, the check of
    /// adopted Rasa records; and for conversations created, the index (expiry hints, and in a
    /// cluster the id again in case a listing pruned it between the first add and the
    /// append), with a check of a few conversations that may have expired. Best effort: the
    /// appends are stored, so failures are logged.
    async fn finish(&self, written: &[Written<'_>]) {
        if written.is_empty() {
            return;
        }
        let clustered = self.connection.is_clustered();
        let again: Vec<&str> = written
            .iter()
            .filter(|w| w.mark_again)
            .map(|w| w.sender_id)
            .collect();
        // Such a conversation was published up to its version before this append: a relay
        // that checkpointed it there may be taking it off the pending set right now, after
        // our first mark. Mark it again, now that the events are stored.
        if !again.is_empty()
            && let Err(error) = self.mark_pending(&again).await
        {
            tracing::warn!(
                store = "redis",
                sender_ids = ?again,
                %error,
                "could not mark conversations pending again after appending; if a relay took \
                 one off the pending set meanwhile, its events wait for the conversation's \
                 next append"
            );
        }
        let checks = written.iter().filter_map(|w| {
            w.adopted
                .as_deref()
                .map(|sha1| self.check_adopted(w.sender_id, sha1))
        });
        futures::future::join_all(checks).await;
        if clustered || self.record_exp.is_some() {
            let created: Vec<&str> = written
                .iter()
                .filter(|w| w.created)
                .map(|w| w.sender_id)
                .collect();
            if !created.is_empty() {
                match self.index.touch(&created).await {
                    Ok(candidates) => self.index.prune(candidates).await,
                    Err(error) => tracing::warn!(
                        store = "redis",
                        sender_ids = ?created,
                        %error,
                        "could not update the index after creating conversations"
                    ),
                }
            }
        }
    }

    /// The keys of the append script and the positions of its optional ones: in a cluster
    /// only the conversation's own (with the outbox on, its outbox hash too); on a single
    /// server the index too, with adoption Rasa's key, and with the outbox on the pending set.
    fn keys(&self, id: &str) -> (Vec<String>, [usize; 4]) {
        let layout = self.layout;
        let single = !self.connection.is_clustered();
        let outbox = self.outbox;
        let mut keys = ScriptKeys::new(vec![layout.events(id), layout.head(id)]);
        let positions = [
            keys.optional(single.then(|| layout.index())),
            keys.optional((single && self.adopt).then(|| layout.rasa(id))),
            keys.optional(outbox.then(|| layout.outbox(id))),
            keys.optional((single && outbox).then(|| layout.outbox_pending())),
        ];
        (keys.into_keys(), positions)
    }

    /// Adds conversations to the outbox's pending set, keeping the place of those already in
    /// it (in a cluster, where the append script cannot reach the set).
    pub(crate) async fn mark_pending(&self, sender_ids: &[&str]) -> Result<()> {
        let pending = self.layout.outbox_pending();
        let args = sender_ids.iter().map(|id| Value::from(*id)).collect();
        self.connection
            .run(&OUTBOX_MARK, vec![pending], args)
            .await
            .map_err(|e| driver_error("marking conversations pending in the outbox", e))?;
        Ok(())
    }

    /// Reads Rasa's record for an append that may adopt it.
    async fn rasa_args(&self, sender_id: &SenderId) -> Result<RasaArgs> {
        let fetched = fetch(self.connection, self.layout, sender_id.as_str()).await?;
        rasa_args(self.layout, sender_id, fetched)
    }

    /// Reads Rasa's records for the appends at `positions`, pipelined, into `rasa`; an
    /// append whose record cannot be read or adopted gets that error as its result.
    async fn read_rasa(
        &self,
        appends: &[Append],
        positions: &[usize],
        rasa: &mut [RasaArgs],
        results: &mut [Option<Result<u64>>],
    ) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let ids = sender_ids(appends, positions);
        let fetched = fetch_each(self.connection, self.layout, &ids).await?;
        for (&i, fetched) in positions.iter().zip(fetched) {
            match fetched.and_then(|f| rasa_args(self.layout, appends[i].sender_id(), f)) {
                Ok(args) => rasa[i] = args,
                Err(error) => results[i] = Some(Err(error)),
            }
        }
        Ok(())
    }

    /// In a cluster this store cannot check inside the script that Rasa's record is unchanged
    /// since it was read (it lives in another slot): check afterwards, and warn.
    async fn check_adopted(&self, id: &str, sha1: &str) {
        let changed = match fetch(self.connection, self.layout, id).await {
            Ok(Fetched::Text(text)) => fred::util::sha1_hash(&text) != sha1,
            Ok(Fetched::Missing | Fetched::NotAString) => true,
            Err(error) => {
                tracing::debug!(
                    store = "redis",
                    sender_id = id,
                    %error,
                    "could not read Rasa's record again after adopting it"
                );
                false
            }
        };
        if changed {
            tracing::warn!(
                store = "redis",
                sender_id = id,
                key = self.layout.rasa(id),
                "Rasa's record changed while this store adopted the conversation: its change \
                 is not in this store (is Rasa still writing to this Redis?)"
            );
        }
    }
}

/// The sender ids of the appends at `positions`.
fn sender_ids<'a>(appends: &'a [Append], positions: &[usize]) -> Vec<&'a str> {
    positions
        .iter()
        .map(|&i| appends[i].sender_id().as_str())
        .collect()
}

/// The append script's reply (see `scripts/append.lua`).
fn parse_reply(id: &str, reply: &Value) -> Result<Reply> {
    let Value::Array(items) = reply else {
        return Err(unexpected_reply(id, "append", reply));
    };
    let version = || {
        items
            .get(1)
            .ok_or_else(|| unexpected_reply(id, "append", reply))
            .and_then(|version| parse_version(id, version))
    };
    match items.first().and_then(Value::as_i64) {
        Some(1) => Ok(Reply::Appended {
            version: version()?,
            created: items.get(2).and_then(Value::as_i64) == Some(1),
            settled: items.get(3).and_then(Value::as_i64) == Some(1),
        }),
        Some(0) => Ok(Reply::Conflict(version()?)),
        Some(2 | 3) => Ok(Reply::ReadRasa),
        _ => Err(unexpected_reply(id, "append", reply)),
    }
}

/// What the append script is told about Rasa's record as `fetched`.
fn rasa_args(layout: &KeyLayout, sender_id: &SenderId, fetched: Fetched) -> Result<RasaArgs> {
    let Fetched::Text(text) = fetched else {
        return Ok(RasaArgs::Absent);
    };
    let id = sender_id.as_str();
    let record = RasaRecord::parse(id, &layout.rasa(id), &text)?;
    let (texts, session) = record.texts(sender_id)?;
    Ok(RasaArgs::Adopt {
        sha1: record.sha1,
        version: texts.len() as u64,
        texts,
        session,
    })
}

/// What the append script is told about Rasa's record of the conversation.
enum RasaArgs {
    /// Adoption is off: only this store's layout counts.
    Own,
    /// Not read: the script asks for it when this store's layout lacks the conversation (and,
    /// on a single server, Rasa's key holds events).
    Probe,
    /// Rasa's key holds no record.
    Absent,
    /// Rasa's record as read: its text's SHA-1, its events as JSON text, the seq of its last
    /// `session_started`.
    Adopt {
        sha1: String,
        version: u64,
        texts: Vec<String>,
        session: Option<u64>,
    },
}

impl RasaArgs {
    /// Whether an append at `expected` creates the conversation in this layout, if it
    /// succeeds.
    fn creates(&self, expected: u64) -> bool {
        match self {
            RasaArgs::Adopt { version, .. } => *version == expected,
            _ => expected == 0,
        }
    }

    /// The version of Rasa's record as read (0 when not read or absent).
    fn version(&self) -> u64 {
        match self {
            RasaArgs::Adopt { version, .. } => *version,
            _ => 0,
        }
    }

    /// The SHA-1 of the record an append adopted, when `created` and the record held events.
    fn adopted(&self, created: bool) -> Option<String> {
        match self {
            RasaArgs::Adopt { sha1, version, .. } if created && *version > 0 => Some(sha1.clone()),
            _ => None,
        }
    }

    /// The arguments of the append script (see `scripts/append.lua`); `positions` are those
    /// of its optional keys (index, Rasa's key, outbox hash, pending set; 0 when not given).
    fn append_args(
        &self,
        append: &Append,
        record_exp: Option<u64>,
        positions: [usize; 4],
    ) -> Vec<Value> {
        let id = append.sender_id().as_str();
        let (mode, sha1, texts, session) = match self {
            RasaArgs::Own => ("own", "", &[][..], None),
            RasaArgs::Probe => ("probe", "", &[][..], None),
            RasaArgs::Absent => ("absent", "", &[][..], None),
            RasaArgs::Adopt {
                sha1,
                texts,
                session,
                ..
            } => ("adopt", sha1.as_str(), texts.as_slice(), *session),
        };
        let mut args = Vec::with_capacity(append.records().len() + texts.len() + 14);
        args.push(Value::from(append.expected_version().to_string()));
        args.push(Value::from(append.new_version().to_string()));
        args.push(Value::from(
            append
                .last_session_started()
                .map(|seq| seq.to_string())
                .unwrap_or_default(),
        ));
        args.push(Value::from(
            record_exp
                .map(|seconds| seconds.to_string())
                .unwrap_or_default(),
        ));
        args.push(Value::from(id));
        args.push(Value::from(mode));
        args.push(Value::from(sha1));
        args.push(Value::from(texts.len().to_string()));
        args.push(Value::from(
            session.map(|seq| seq.to_string()).unwrap_or_default(),
        ));
        args.push(Value::from(KeyLayout::rasa_empty_record(id)));
        args.extend(
            positions
                .iter()
                .map(|position| Value::from(position.to_string())),
        );
        args.extend(texts.iter().map(|text| Value::from(text.as_str())));
        args.extend(
            append
                .records()
                .iter()
                .map(|record| Value::from(record.json.as_str())),
        );
        args
    }
}
