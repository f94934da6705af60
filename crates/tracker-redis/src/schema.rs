//! The storage layout: the key names of this store's namespace beside Rasa's, and the hash
//! tags that keep a conversation in one cluster slot.

use std::borrow::Cow;

use tracker_core::{Error, Result};

/// The Redis key names of a store, derived from Rasa's `key_prefix`.
///
/// | key | type | holds |
/// |---|---|---|
/// | `N{<tag>}:events` | list | the conversation's events, Rasa's JSON text, event `seq` at index `seq - 1` |
/// | `N{<tag>}:head` | hash | `version` (number of events) and `session` (seq of the last `session_started`) |
/// | `N{index}:ids` | sorted set | every sender id (score 0, ordered by bytes), for listing |
/// | `N{index}:expiry` | sorted set | with `record_exp`: when each conversation may have expired (ms), to find index entries to drop |
/// | `N{<tag>}:outbox` | hash | with the outbox on: `published` (the checkpoint) and a relay's lease (`relay`, `until`) |
/// | `N{outbox}:pending` | sorted set | with the outbox on: the conversations that may have events to publish, scored by when they were marked (ms) |
///
/// `N` is `ts:`, or `<key_prefix>:ts:` with a prefix; `<tag>` is the sender id with `%`,
/// `{` and `}` percent-encoded, so the braces always delimit exactly the whole encoded id and
/// every key of a conversation hashes to the same cluster slot. Rasa's own keys are
/// `tracker:<id>` or `<key_prefix>:tracker:<id>` ([`KeyLayout::rasa`]), and no key of this
/// store can ever equal one of them (see the crate's README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    key_prefix: Option<String>,
    namespace: String,
    rasa_prefix: String,
}

impl KeyLayout {
    /// The layout for Rasa's `key_prefix` (`None` or empty for none). Strict: where Rasa
    /// drops a prefix that is not alphanumeric, this refuses it;
    /// [`RedisConfig::key_layout`](crate::RedisConfig::key_layout) drops it as Rasa does.
    ///
    /// # Errors
    /// [`Error::Config`] when the prefix is not alphanumeric (Python's `str.isalnum()`), or
    /// is `tracker` (this store's keys `tracker:ts:...` would then lie in the namespace of an
    /// unprefixed Rasa store).
    pub fn new(key_prefix: Option<&str>) -> Result<Self> {
        let key_prefix = key_prefix.filter(|prefix| !prefix.is_empty());
        let Some(prefix) = key_prefix else {
            return Ok(Self {
                key_prefix: None,
                namespace: "ts:".to_owned(),
                rasa_prefix: "tracker:".to_owned(),
            });
        };
        if !is_alnum(prefix) {
            return Err(Error::config(format!(
                "key_prefix {prefix:?} must be alphanumeric (letters and digits only, as \
                 Python's str.isalnum())"
            )));
        }
        if prefix == "tracker" {
            return Err(Error::config(
                "key_prefix \"tracker\" would put this store's keys (tracker:ts:...) among the \
                 keys of an unprefixed Rasa store (tracker:<sender id>); choose another prefix",
            ));
        }
        Ok(Self {
            key_prefix: Some(prefix.to_owned()),
            namespace: format!("{prefix}:ts:"),
            rasa_prefix: format!("{prefix}:tracker:"),
        })
    }

    /// Rasa's `key_prefix`, if any.
    pub fn key_prefix(&self) -> Option<&str> {
        self.key_prefix.as_deref()
    }

    /// The start of every key of this store: `ts:` or `<key_prefix>:ts:`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The list of a conversation's events.
    pub fn events(&self, sender_id: &str) -> String {
        format!("{}{{{}}}:events", self.namespace, hash_tag(sender_id))
    }

    /// The hash holding a conversation's version and session start.
    pub fn head(&self, sender_id: &str) -> String {
        format!("{}{{{}}}:head", self.namespace, hash_tag(sender_id))
    }

    /// The hash of a conversation's outbox state, in the conversation's slot: `published`
    /// (the outbox checkpoint), and while a relay holds the lease, `relay` and `until` (epoch
    /// milliseconds by the server's clock).
    pub fn outbox(&self, sender_id: &str) -> String {
        format!("{}{{{}}}:outbox", self.namespace, hash_tag(sender_id))
    }

    /// The sorted set of the conversations that may have events to publish (the outbox's
    /// pending list): sender id to the time (epoch milliseconds) it was marked.
    pub fn outbox_pending(&self) -> String {
        format!("{}{{outbox}}:pending", self.namespace)
    }

    /// The sorted set of every sender id (all scores 0, so ordered by the ids' bytes).
    pub fn index(&self) -> String {
        format!("{}{{index}}:ids", self.namespace)
    }

    /// The sorted set of expiry hints: sender id to the time (epoch milliseconds) after which
    /// its conversation may have expired. Same cluster slot as [`KeyLayout::index`].
    pub fn index_expiry(&self) -> String {
        format!("{}{{index}}:expiry", self.namespace)
    }

    /// The prefix of Rasa's keys: `tracker:` or `<key_prefix>:tracker:`.
    pub fn rasa_prefix(&self) -> &str {
        &self.rasa_prefix
    }

    /// The key under which Rasa's `RedisTrackerStore` keeps a conversation.
    pub fn rasa(&self, sender_id: &str) -> String {
        format!("{}{sender_id}", self.rasa_prefix)
    }

    /// The record Rasa stores for a conversation before its first event (its first
    /// `get_or_create_tracker` saves one): `{"events": [], "name": <id>}`, as Python's
    /// `json.dumps` writes it. Such a record holds no conversation.
    pub fn rasa_empty_record(sender_id: &str) -> String {
        format!(
            "{{\"events\": [], \"name\": {}}}",
            python_json_string(sender_id)
        )
    }
}

/// The version held in a head (`version`), or returned by a script.
///
/// # Errors
/// [`Error::Corrupt`] naming the conversation when the value is not a version number.
pub(crate) fn parse_version(sender_id: &str, value: &fred::types::Value) -> Result<u64> {
    value
        .as_str()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                sender_id,
                None,
                format!("the stored version {value:?} is not a version number"),
            )
        })
}

/// `text` as Python's `json.dumps` writes a string: quoted, with `"`, `\\` and control
/// characters escaped and everything outside ASCII as `\uXXXX` (UTF-16 code units).
fn python_json_string(text: &str) -> String {
    use std::fmt::Write as _;

    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// The sender id as it appears between the braces of a hash tag: `%`, `{` and `}` are
/// percent-encoded (`%25`, `%7B`, `%7D`), everything else is kept. The encoding is
/// injective, never empty for a valid id, and contains no `}`, so Redis hashes exactly this
/// text.
pub fn hash_tag(sender_id: &str) -> Cow<'_, str> {
    if !sender_id.contains(['%', '{', '}']) {
        return Cow::Borrowed(sender_id);
    }
    let mut encoded = String::with_capacity(sender_id.len() + 8);
    for c in sender_id.chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '{' => encoded.push_str("%7B"),
            '}' => encoded.push_str("%7D"),
            c => encoded.push(c),
        }
    }
    Cow::Owned(encoded)
}

/// Python's `str.isalnum()`: non-empty, and every character a letter or a digit (Unicode
/// `Alphabetic` or `Numeric`).
pub(crate) fn is_alnum(text: &str) -> bool {
    !text.is_empty() && text.chars().all(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let plain = KeyLayout::new(None).expect("valid");
        assert_eq!(plain.events("alice"), "ts:{alice}:events");
        assert_eq!(plain.head("alice"), "ts:{alice}:head");
        assert_eq!(plain.index(), "ts:{index}:ids");
        assert_eq!(plain.index_expiry(), "ts:{index}:expiry");
        assert_eq!(plain.outbox("alice"), "ts:{alice}:outbox");
        assert_eq!(plain.outbox_pending(), "ts:{outbox}:pending");
        assert_eq!(plain.rasa("alice"), "tracker:alice");
        assert_eq!(KeyLayout::new(Some("")).expect("valid"), plain);

        let bot = KeyLayout::new(Some("bot1")).expect("valid");
        assert_eq!(bot.events("a{b}%c"), "bot1:ts:{a%7Bb%7D%25c}:events");
        assert_eq!(bot.index(), "bot1:ts:{index}:ids");
        assert_eq!(bot.rasa("x"), "bot1:tracker:x");
        assert_eq!(bot.key_prefix(), Some("bot1"));
        assert!(KeyLayout::new(Some("büro2")).is_ok());
    }

    #[test]
    fn bad_prefixes() {
        for bad in ["bot-1", "bot 1", "a:b", "{x}", "tracker", "x*"] {
            let error = KeyLayout::new(Some(bad)).expect_err(bad);
            assert_eq!(error.kind(), tracker_core::ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn empty_records_are_pythons() {
        for id in [
            "alice",
            "bob {x} % \"quoted\" ü",
            "tab\tnew\nline\\",
            "🍕\u{1}\u{7f}",
        ] {
            let python = tracker_core::json::to_python_json(&serde_json::json!({
                "events": [],
                "name": id,
            }))
            .expect("renders");
            assert_eq!(KeyLayout::rasa_empty_record(id), python, "{id}");
        }
    }

    #[test]
    fn tags_are_injective_and_brace_free() {
        let ids = ["a%7Bb", "a{b", "a%b", "%", "{", "}", "{}", "%25", "a}b{"];
        let tags: std::collections::HashSet<String> =
            ids.iter().map(|id| hash_tag(id).into_owned()).collect();
        assert_eq!(tags.len(), ids.len());
        for tag in &tags {
            assert!(!tag.contains(['{', '}']), "{tag}");
        }
    }
}
