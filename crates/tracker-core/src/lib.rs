#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod batch;
pub mod broker;
pub mod config;
pub mod domain;
pub mod error;
pub mod event;
mod import;
pub mod json;
pub mod observe;
pub mod outbox;
pub mod rasa;
pub mod redact;
pub mod registration;
pub mod relay;
mod sender_id;
pub mod store;
pub mod tracker;
pub mod tracker_store;

pub use batch::BatchAppend;
pub use broker::{BrokerMessage, ChannelBroker, EventBroker, PublishFailure, PublishStats};
pub use domain::{Domain, SlotDefinition};
pub use error::{BoxError, Error, ErrorContext, ErrorKind, Result};
pub use event::{Event, EventKind, InvalidEvent, JsonMap, UnknownEvent, UserUttered};
pub use import::{batches, first_difference};
pub use outbox::{Outbox, OutboxEntry};
pub use rasa::{Imported, RasaConversation, RasaSource};
pub use registration::{RasaSourceFuture, Registration, SchemaFuture, StoreFuture};
pub use relay::{Relay, RelayOptions, RelayRound, RelayStats};
pub use store::{
    Append, Capabilities, EventData, EventRecord, ExpectedVersion, ListPage, ListRequest,
    MAX_SENDER_ID_BYTES, ReadScope, SenderId, Store, StoredConversation, StoredEvent,
};
pub use tracker::{ActiveLoop, EventVerbosity, LatestAction, Tracker};
pub use tracker_store::{Conversation, ConversationJson, TrackerStore};

/// Re-exported so stores implement [`Store`] with the same `async_trait` version.
pub use async_trait::async_trait;
