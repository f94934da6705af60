//! The `events` table: Rasa's seven columns plus the per-conversation sequence number.
//!
//! The DDL for each dialect is in `migrations/<dialect>/`; see the crate README for the
//! exact schema.

diesel::table! {
    /// One row per event, as Rasa's `SQLTrackerStore` writes it, plus `seq`.
    events (id) {
        /// Insertion order (Rasa orders by it).
        id -> BigInt,
        /// The conversation.
        sender_id -> Text,
        /// The event's tag.
        type_name -> Text,
        /// Epoch seconds.
        timestamp -> Nullable<Double>,
        /// Intent of a user message.
        intent_name -> Nullable<Text>,
        /// The event's `name` (action, slot, loop, ...).
        action_name -> Nullable<Text>,
        /// The event's JSON in Rasa's text form.
        data -> Nullable<Text>,
        /// Position in the conversation, from 1; unique per conversation.
        seq -> BigInt,
    }
}

/// The unique constraint that makes appends safe: two writers can't store the same `seq`.
pub const SEQ_CONSTRAINT: &str = "ux_events_sender_seq";
