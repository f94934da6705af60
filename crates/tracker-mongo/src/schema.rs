//! The document layout: collection and field names, derived document ids, indexes and size
//! limits, for inspecting the collections (the README's "Document layout" section describes
//! the same for people); and, inside the crate, reading head documents and event entries back.

use mongodb::IndexModel;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use sha2::{Digest, Sha256};
use tracker_core::{Error, EventData, EventRecord, Result, StoredEvent};

/// Suffix of the collection of head documents (one per conversation).
pub const HEADS_SUFFIX: &str = ".heads";
/// Suffix of the collection of bucket documents (older events).
pub const EVENTS_SUFFIX: &str = ".events";

/// MongoDB's largest document.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// The most bytes of events (estimated BSON) a head or bucket document holds: the document
/// limit less room for the other fields and the command around an update.
pub const MAX_TAIL_BYTES: usize = MAX_DOCUMENT_BYTES - 64 * 1024;
/// Declared limit of one append's JSON text (and so of one event's). The BSON of an append is
/// bigger than its JSON by a few dozen bytes per event; see [`MAX_TAIL_BYTES`].
pub const MAX_APPEND_BYTES: usize = 14 * 1024 * 1024;
/// Declared limit of events per append.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// Upper bound of the BSON bytes an event's entry takes besides its `type` and `data` text:
/// the entry's array index, its field names and the fixed-size values.
pub const EVENT_OVERHEAD_BYTES: usize = 96;

/// Fields of a head document (collection `<collection>.heads`).
pub mod head {
    /// The sender id, as given.
    pub const SENDER_ID: &str = "sender_id";
    /// The sender id's UTF-8 bytes in lowercase hex: the listing key.
    pub const SENDER_HEX: &str = "sender_hex";
    /// Random id of this incarnation of the conversation (new after a delete).
    pub const GENERATION: &str = "generation";
    /// The number of events.
    pub const VERSION: &str = "version";
    /// Sequence number of the last `session_started` event, when there is one.
    pub const SESSION: &str = "session";
    /// Sequence number of the first event in `tail`.
    pub const TAIL_SEQ: &str = "tail_seq";
    /// Number of events in `tail`.
    pub const TAIL_COUNT: &str = "tail_count";
    /// Estimated BSON bytes of `tail`.
    pub const TAIL_BYTES: &str = "tail_bytes";
    /// The newest events, from `tail_seq` to `version`.
    pub const TAIL: &str = "tail";
    /// `true` on a conversation that has (or had) a copy in Rasa's layout: deleting it leaves
    /// a tombstone, so that the copy is never read again. Absent otherwise.
    pub const ADOPTED: &str = "adopted";
    /// `true` on a tombstone: the head of a deleted conversation whose copy in Rasa's layout
    /// must not be read again. A tombstone has only `_id`, `sender_id`, `sender_hex` and this
    /// field; the conversation does not exist.
    pub const DELETED: &str = "deleted";
    /// With the outbox on: when the oldest append not yet published was made (a date, the
    /// appending client's clock; only an order for relays). Present exactly while the
    /// conversation may have events to publish; set by the same write as the events.
    pub const OUTBOX_PENDING: &str = "outbox_pending";
    /// With the outbox on: the checkpoint, the sequence number up to which every event has
    /// been published. Absent means 0.
    pub const OUTBOX_PUBLISHED: &str = "outbox_published";
    /// With the outbox on: the name of the relay holding the lease, while one does.
    pub const OUTBOX_LEASE: &str = "outbox_lease";
    /// With the outbox on: when the lease was taken (the server's clock).
    pub const OUTBOX_LEASE_AT: &str = "outbox_lease_at";
    /// With the outbox on: how long the lease lasts from `outbox_lease_at`, in milliseconds.
    pub const OUTBOX_LEASE_MS: &str = "outbox_lease_ms";
}

/// Fields of a bucket document (collection `<collection>.events`).
pub mod bucket {
    /// The sender id, as given.
    pub const SENDER_ID: &str = "sender_id";
    /// The head's `generation` the bucket belongs to.
    pub const GENERATION: &str = "generation";
    /// Sequence number of the first event.
    pub const FIRST_SEQ: &str = "first_seq";
    /// Sequence number of the last event.
    pub const LAST_SEQ: &str = "last_seq";
    /// Number of events.
    pub const COUNT: &str = "count";
    /// The events, from `first_seq` to `last_seq`.
    pub const EVENTS: &str = "events";
}

/// Fields of one event entry, in a head's `tail` or a bucket's `events`.
pub mod event {
    /// Sequence number.
    pub const SEQ: &str = "seq";
    /// The event's tag (Rasa's `type_name`), for people and ad-hoc queries.
    pub const TYPE: &str = "type";
    /// Epoch seconds, for people and ad-hoc queries.
    pub const TIMESTAMP: &str = "timestamp";
    /// The event's exact Rasa JSON text.
    pub const DATA: &str = "data";
}

/// Name of the index of heads by listing key.
pub const HEADS_INDEX: &str = "sender_hex_1";
/// Name of the index of buckets by conversation and position.
pub const EVENTS_INDEX: &str = "sender_id_1_generation_1_last_seq_1";
/// Name of the index of pending heads, with the outbox on.
pub const OUTBOX_INDEX: &str = "outbox_pending_1";

/// The indexes of the heads collection.
pub fn head_indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! { head::SENDER_HEX: 1 })
            .options(IndexOptions::builder().name(HEADS_INDEX.to_owned()).build())
            .build(),
    ]
}

/// The index of the heads collection a store with its outbox on adds: pending heads by age,
/// sparse, so that it holds only the conversations with events to publish.
pub fn outbox_indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! { head::OUTBOX_PENDING: 1 })
            .options(
                IndexOptions::builder()
                    .name(OUTBOX_INDEX.to_owned())
                    .sparse(true)
                    .build(),
            )
            .build(),
    ]
}

/// The indexes of the buckets collection.
pub fn event_indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! { bucket::SENDER_ID: 1, bucket::GENERATION: 1, bucket::LAST_SEQ: 1 })
            .options(
                IndexOptions::builder()
                    .name(EVENTS_INDEX.to_owned())
                    .build(),
            )
            .build(),
    ]
}

/// 12 bytes of SHA-256 over a domain tag and the parts, as an ObjectId.
fn hashed_id(domain: &[u8], parts: &[&[u8]]) -> ObjectId {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update([0]);
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&digest[..12]);
    ObjectId::from_bytes(bytes)
}

/// The `_id` of a conversation's head: derived from the sender id, so that `_id` uniqueness
/// makes creating a conversation a single atomic insert.
pub fn head_id(sender_id: &str) -> ObjectId {
    hashed_id(b"tracker-store/head", &[sender_id.as_bytes()])
}

/// The `_id` of the bucket starting at `first_seq` in a conversation's `generation`: derived,
/// so that concurrent writers sealing the same events write one document.
pub fn bucket_id(sender_id: &str, generation: &ObjectId, first_seq: u64) -> ObjectId {
    hashed_id(
        b"tracker-store/bucket",
        &[
            sender_id.as_bytes(),
            &generation.bytes(),
            &first_seq.to_be_bytes(),
        ],
    )
}

/// The listing key of a sender id: its UTF-8 bytes in lowercase hex. Ordered like the bytes on
/// every server and under every collation.
pub fn sender_hex(sender_id: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(sender_id.len() * 2);
    for byte in sender_id.bytes() {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

/// A tombstone: the head of a deleted conversation whose copy in Rasa's layout must not be
/// read again (see [`head::DELETED`]).
pub(crate) fn tombstone(sender_id: &str) -> Document {
    doc! {
        "_id": head_id(sender_id),
        head::SENDER_ID: sender_id,
        head::SENDER_HEX: sender_hex(sender_id),
        head::DELETED: true,
    }
}

/// Whether a head document is a tombstone.
pub(crate) fn is_tombstone(document: &Document) -> bool {
    matches!(document.get(head::DELETED), Some(Bson::Boolean(true)))
}

/// The parts of a new head document.
pub(crate) struct NewHead<'a> {
    /// The conversation.
    pub(crate) sender_id: &'a str,
    /// Its new generation.
    pub(crate) generation: ObjectId,
    /// Its number of events.
    pub(crate) version: u64,
    /// Sequence number of its last `session_started`, if any.
    pub(crate) session: Option<u64>,
    /// Sequence number of the first entry of `tail`.
    pub(crate) tail_seq: u64,
    /// The newest events' entries, up to `version`.
    pub(crate) tail: Vec<Bson>,
    /// Estimated BSON bytes of `tail`.
    pub(crate) tail_bytes: usize,
    /// Whether the conversation has (or had) a copy in Rasa's layout.
    pub(crate) adopted: bool,
    /// Whether to mark it pending in the outbox (the store keeps one).
    pub(crate) pending: bool,
}

impl NewHead<'_> {
    /// The head document.
    pub(crate) fn document(self) -> Result<Document> {
        let mut document = doc! {
            "_id": head_id(self.sender_id),
            head::SENDER_ID: self.sender_id,
            head::SENDER_HEX: sender_hex(self.sender_id),
            head::GENERATION: self.generation,
            head::VERSION: to_i64(self.version)?,
            head::TAIL_SEQ: to_i64(self.tail_seq)?,
            head::TAIL_COUNT: usize_to_i64(self.tail.len()),
            head::TAIL_BYTES: usize_to_i64(self.tail_bytes),
            head::TAIL: self.tail,
        };
        if let Some(session) = self.session {
            document.insert(head::SESSION, to_i64(session)?);
        }
        if self.adopted {
            document.insert(head::ADOPTED, true);
        }
        if self.pending {
            document.insert(head::OUTBOX_PENDING, DateTime::now());
        }
        Ok(document)
    }
}

/// Adds the outbox's pending mark to the update operators of an append: `$min` keeps the
/// time of the oldest append still to publish.
pub(crate) fn mark_pending(update: &mut Document) {
    update.insert("$min", doc! { head::OUTBOX_PENDING: DateTime::now() });
}

/// A sealed bucket document: `entries` are the events from `first_seq` on.
pub(crate) fn bucket_document(
    sender_id: &str,
    generation: ObjectId,
    first_seq: u64,
    entries: Vec<Bson>,
) -> Result<Document> {
    let count = entries.len() as u64;
    let last_seq = (first_seq + count).saturating_sub(1);
    Ok(doc! {
        "_id": bucket_id(sender_id, &generation, first_seq),
        bucket::SENDER_ID: sender_id,
        bucket::GENERATION: generation,
        bucket::FIRST_SEQ: to_i64(first_seq)?,
        bucket::LAST_SEQ: to_i64(last_seq)?,
        bucket::COUNT: to_i64(count)?,
        bucket::EVENTS: entries,
    })
}

/// What a conversation's head slot (its derived `_id`) holds.
pub(crate) enum Slot<T> {
    /// Nothing: the conversation is not in this store's layout.
    Absent,
    /// A tombstone: the conversation was deleted, and its copy in Rasa's layout (if any) is
    /// not to be read.
    Deleted,
    /// A live conversation.
    Live(T),
}

/// Estimated BSON size of an event's entry.
pub(crate) fn encoded_len(record: &EventRecord) -> usize {
    EVENT_OVERHEAD_BYTES + record.type_name.len() + record.json.len()
}

/// An event's entry.
pub(crate) fn event_entry(record: &EventRecord) -> Result<Bson> {
    Ok(Bson::Document(doc! {
        event::SEQ: to_i64(record.seq)?,
        event::TYPE: record.type_name.as_str(),
        event::TIMESTAMP: record.timestamp,
        event::DATA: record.json.as_str(),
    }))
}

/// A sequence number or count as BSON's signed 64-bit integer.
pub(crate) fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid_input(format!("{value} is beyond 2^63")))
}

/// A count or size as BSON's signed 64-bit integer (saturating; sizes are far below).
pub(crate) fn usize_to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative integer read tolerantly: `Int32`, `Int64`, or a whole `Double` up to 2^53
/// (servers and stand-ins that narrow or widen numbers).
pub fn as_u64(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        Bson::Double(f)
            if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f <= 9_007_199_254_740_992.0 =>
        {
            Some(*f as u64)
        }
        _ => None,
    }
}

/// A required non-negative integer field, or `Corrupt` naming the conversation.
pub(crate) fn get_u64(
    document: &Document,
    field: &str,
    sender_id: &str,
    what: &str,
) -> Result<u64> {
    document.get(field).and_then(as_u64).ok_or_else(|| {
        Error::corrupt(
            sender_id,
            None,
            format!(
                "the {what} document's `{field}` is {:?}, not a non-negative integer",
                document.get(field)
            ),
        )
    })
}

/// Checks that a document found by derived `_id` belongs to `sender_id`; another sender id
/// means two ids hash alike (odds 2^-96 per pair), which this store refuses to mix.
pub(crate) fn check_owner(
    document: &Document,
    field: &str,
    sender_id: &str,
    what: &str,
) -> Result<()> {
    match document.get(field) {
        Some(Bson::String(owner)) if owner == sender_id => Ok(()),
        other => Err(Error::backend(format!(
            "the {what} document with the id derived from sender id {sender_id:?} belongs to \
             {other:?}: an id collision; this conversation cannot be stored"
        ))),
    }
}

/// An optional non-negative integer field (absent or `null` is `None`).
pub(crate) fn get_opt_u64(
    document: &Document,
    field: &str,
    sender_id: &str,
    what: &str,
) -> Result<Option<u64>> {
    match document.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => get_u64(document, field, sender_id, what).map(Some),
    }
}

/// A conversation's head document, read back.
pub(crate) struct Head {
    /// `adopted`.
    pub(crate) adopted: bool,
    /// `generation`.
    pub(crate) generation: ObjectId,
    /// `version`.
    pub(crate) version: u64,
    /// `session`, if set.
    pub(crate) session: Option<u64>,
    /// `tail_seq`.
    pub(crate) tail_seq: u64,
    /// `tail_count`.
    pub(crate) tail_count: u64,
    /// `tail_bytes`.
    pub(crate) tail_bytes: u64,
    /// `tail`: as many entries as `tail_count`, the last one `version`.
    pub(crate) tail: Vec<Bson>,
}

impl Head {
    /// Reads a head document of `sender_id`, checking that its counters agree.
    pub(crate) fn parse(mut document: Document, sender_id: &str) -> Result<Self> {
        let number = |document: &Document, field| get_u64(document, field, sender_id, "head");
        let version = number(&document, head::VERSION)?;
        let tail_seq = number(&document, head::TAIL_SEQ)?;
        let tail_count = number(&document, head::TAIL_COUNT)?;
        let tail_bytes = number(&document, head::TAIL_BYTES)?;
        let session = get_opt_u64(&document, head::SESSION, sender_id, "head")?;
        let generation = match document.get(head::GENERATION) {
            Some(Bson::ObjectId(id)) => *id,
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("the head's `generation` is {other:?}, not an ObjectId"),
                ));
            }
        };
        let tail = match document.remove(head::TAIL) {
            Some(Bson::Array(tail)) => tail,
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    None,
                    format!("the head's `tail` is {other:?}, not an array"),
                ));
            }
        };
        if tail_seq == 0
            || tail_count == 0
            || tail.len() as u64 != tail_count
            || tail_seq.checked_add(tail_count - 1) != Some(version)
        {
            return Err(Error::corrupt(
                sender_id,
                None,
                format!(
                    "the head is inconsistent: version {version}, tail from {tail_seq} with \
                     {tail_count} events, {} stored",
                    tail.len()
                ),
            ));
        }
        Ok(Self {
            adopted: matches!(document.get(head::ADOPTED), Some(Bson::Boolean(true))),
            generation,
            version,
            session,
            tail_seq,
            tail_count,
            tail_bytes,
            tail,
        })
    }
}

/// Moves the events of `entries` (numbered from `first_seq`) with a sequence number of at
/// least `from` into `out`, checking each entry's own `seq`.
pub(crate) fn take_events(
    out: &mut Vec<StoredEvent>,
    entries: Vec<Bson>,
    first_seq: u64,
    from: u64,
    sender_id: &str,
) -> Result<()> {
    for (seq, entry) in (first_seq..).zip(entries) {
        if seq < from {
            continue;
        }
        let Bson::Document(mut entry) = entry else {
            return Err(Error::corrupt(
                sender_id,
                Some(seq),
                format!("the event entry is {entry:?}, not a document"),
            ));
        };
        let stored_seq = entry.get(event::SEQ).and_then(as_u64);
        if stored_seq != Some(seq) {
            return Err(Error::corrupt(
                sender_id,
                Some(seq),
                format!("the event entry at this position says `seq` {stored_seq:?}"),
            ));
        }
        match entry.remove(event::DATA) {
            Some(Bson::String(text)) => out.push(StoredEvent {
                seq,
                data: EventData::Text(text),
            }),
            other => {
                return Err(Error::corrupt(
                    sender_id,
                    Some(seq),
                    format!("the event's `data` is {other:?}, not JSON text"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(head_id("alice"), head_id("alice"));
        assert_ne!(head_id("alice"), head_id("alice "));
        // Pinned (computed independently: SHA-256 of the tag, NUL, the length as 8 big-endian
        // bytes and the id), so a change of the derivation — which would orphan every stored
        // conversation — fails a test.
        assert_eq!(head_id("alice").to_hex(), "48a591d6823f9b53908fcabc");
        let generation = ObjectId::from_bytes([1; 12]);
        let other = ObjectId::from_bytes([2; 12]);
        assert_ne!(
            bucket_id("alice", &generation, 1),
            bucket_id("alice", &generation, 2)
        );
        assert_ne!(
            bucket_id("alice", &generation, 1),
            bucket_id("alice", &other, 1)
        );
        // Length-prefixed parts: no ambiguity between ("ab", ..) and ("a", ..).
        assert_ne!(
            bucket_id("ab", &generation, 1),
            bucket_id("a", &generation, 1)
        );
    }

    #[test]
    fn listing_key_orders_like_bytes() {
        assert_eq!(sender_hex("a"), "61");
        assert_eq!(sender_hex("ü"), "c3bc");
        let mut ids = vec!["b", "B", "a", "ü", "🍕", "中", "a\u{0}", "", "ab"];
        let mut by_hex = ids.clone();
        ids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        by_hex.sort_by_key(|id| sender_hex(id));
        assert_eq!(ids, by_hex);
    }

    #[test]
    fn numbers_are_read_tolerantly() {
        assert_eq!(as_u64(&Bson::Int32(7)), Some(7));
        assert_eq!(as_u64(&Bson::Int64(7)), Some(7));
        assert_eq!(as_u64(&Bson::Double(7.0)), Some(7));
        assert_eq!(as_u64(&Bson::Double(5_000_000_000.0)), Some(5_000_000_000));
        assert_eq!(as_u64(&Bson::Double(7.5)), None);
        assert_eq!(as_u64(&Bson::Double(f64::NAN)), None);
        assert_eq!(as_u64(&Bson::Int32(-1)), None);
        assert_eq!(as_u64(&Bson::String("7".to_owned())), None);
        let document = doc! {"a": 3_i32, "b": "x", "c": Bson::Null};
        assert_eq!(get_u64(&document, "a", "s", "head").ok(), Some(3));
        assert!(get_u64(&document, "b", "s", "head").is_err());
        assert_eq!(get_opt_u64(&document, "c", "s", "head").ok(), Some(None));
        assert_eq!(get_opt_u64(&document, "d", "s", "head").ok(), Some(None));
    }
}
