//! Reading what Rasa's own tracker stores wrote, and copying it into a store.
//!
//! Each backend crate parses its Rasa layout (an SQL table, Redis strings, Mongo documents,
//! DynamoDB items) behind [`RasaSource`]; copying is written once, in
//! [`TrackerStore::import`](crate::TrackerStore::import) and
//! [`TrackerStore::import_from`](crate::TrackerStore::import_from): batched by the
//! destination's limits, checked like every other append, and resumable.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::Event;

/// A conversation as Rasa stored it, parsed as Rasa's `deserialise_events` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RasaConversation {
    /// The conversation.
    pub sender_id: String,
    /// Its events, in Rasa's order.
    pub events: Vec<Event>,
}

/// Conversations in the layout Rasa 3.6's own tracker store of a backend writes, read as they
/// are: a source never writes, migrates or deletes anything.
#[async_trait]
pub trait RasaSource: Send + Sync + fmt::Debug {
    /// What is read, for messages, such as `"Rasa's Redis keys tracker:*"`.
    fn describe(&self) -> String;

    /// Every conversation id Rasa stored, sorted, without duplicates.
    async fn sender_ids(&self) -> Result<Vec<String>>;

    /// One conversation, or `None` if Rasa has no record of it.
    ///
    /// # Errors
    /// [`Error::Corrupt`](crate::Error::Corrupt) naming the conversation (and the event's
    /// position, from 1, when one event is at fault) for data Rasa could not read either.
    async fn read(&self, sender_id: &str) -> Result<Option<RasaConversation>>;
}

/// What [`TrackerStore::import`](crate::TrackerStore::import) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Events that were already in the destination (an earlier run's), compared, not written.
    pub already_present: u64,
    /// Events written now.
    pub written: u64,
    /// The conversation's version afterwards.
    pub version: u64,
}
