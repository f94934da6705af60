//! Rasa's conversation events and their JSON form.
//!
//! Every event type of Rasa 3.x is a variant of [`EventKind`]; an [`Event`] adds the fields
//! every event has (`timestamp`, `metadata`). [`Event::to_value`] gives exactly the object
//! Rasa's `Event.as_dict()` gives (same keys, same order, nulls where Rasa writes them), and
//! [`Event::to_rasa_json`] the exact text Rasa stores. [`Event::from_value`] parses what
//! Rasa's `Event.from_parameters` parses, legacy tags included. An event whose tag this
//! version does not know is kept as [`EventKind::Unknown`] and written back unchanged,
//! instead of failing the whole conversation as Rasa does.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

use crate::json::{self, Item};

mod read;
mod scan;

pub use crate::json::JsonMap;

/// The name of the action Rasa runs when it listens for the next user message.
pub const ACTION_LISTEN: &str = "action_listen";
/// The name of the action that starts a conversation session.
pub const ACTION_SESSION_START: &str = "action_session_start";

/// An event that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {message}")]
pub struct InvalidEvent {
    message: String,
}

impl InvalidEvent {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What is wrong with the event.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// One event of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the event happened, in seconds since the Unix epoch.
    pub timestamp: f64,
    /// Free-form metadata. Written only when non-empty, except for `user` and `bot` events,
    /// which always carry it (as Rasa does).
    pub metadata: JsonMap,
    /// What happened.
    pub kind: EventKind,
}

/// The type-specific part of an [`Event`]; variants are named after Rasa's event classes and
/// their doc comments give the JSON tag.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// `user`: the user said something.
    UserUttered(UserUttered),
    /// `user_featurization`: whether the previous user message is featurized by its text.
    DefinePrevUserUtteredFeaturization {
        /// Use the text rather than the intent.
        use_text_for_featurization: bool,
    },
    /// `entities`: entities added to the latest user message.
    EntitiesAdded {
        /// The entities, as NLU writes them.
        entities: Vec<Value>,
    },
    /// `bot`: the assistant said something.
    BotUttered {
        /// The text, if any.
        text: Option<String>,
        /// Rich content (buttons, images, custom payloads); Rasa writes `{}` when there is none.
        data: Value,
    },
    /// `slot`: a slot was set.
    SlotSet {
        /// The slot's name.
        name: String,
        /// The new value, any JSON.
        value: Value,
    },
    /// `restart`: the conversation was restarted.
    Restarted,
    /// `rewind`: the last user message is to be forgotten.
    UserUtteranceReverted,
    /// `reset_slots`: every slot back to its initial value.
    AllSlotsReset,
    /// `reminder`: an intent to trigger later.
    ReminderScheduled {
        /// The intent to trigger.
        intent: Option<String>,
        /// When, as an ISO-8601 string.
        date_time: String,
        /// Entities to send with the intent (`null` or a list).
        entities: Value,
        /// The reminder's name (a random id when not given).
        name: String,
        /// Whether a user message cancels the reminder.
        kill_on_user_msg: bool,
    },
    /// `cancel_reminder`: cancel reminders. Rasa does not write the selectors, so they are
    /// read but not written (written events are Rasa's text, byte for byte).
    ReminderCancelled {
        /// Name of the reminder to cancel.
        name: Option<String>,
        /// Intent of the reminders to cancel.
        intent: Option<String>,
        /// Entities of the reminders to cancel.
        entities: Option<Value>,
    },
    /// `undo`: the last action is to be forgotten.
    ActionReverted,
    /// `export`: the story was exported. `path` is read but not written, as in Rasa.
    StoryExported {
        /// The file the story was written to.
        path: Option<String>,
    },
    /// `followup`: force the next action.
    FollowupAction {
        /// The action to run next.
        name: String,
    },
    /// `pause`: the assistant stops responding.
    ConversationPaused,
    /// `resume`: the assistant responds again.
    ConversationResumed,
    /// `action`: an action ran.
    ActionExecuted {
        /// The action's name (`null` for end-to-end bot text).
        name: Option<String>,
        /// The policy that predicted it.
        policy: Option<String>,
        /// The prediction's confidence (integer or float, kept as written).
        confidence: Option<Number>,
        /// End-to-end bot text predicted instead of an action name.
        action_text: Option<String>,
        /// Whether rule-only turns hide this action.
        hide_rule_turn: bool,
    },
    /// `agent`: an agent (human hand-off) said something.
    AgentUttered {
        /// The text, if any.
        text: Option<String>,
        /// Any data.
        data: Value,
    },
    /// `active_loop` (legacy `form`): a loop (form) was activated, or deactivated with `None`.
    ActiveLoop {
        /// The loop's name, `None` to deactivate.
        name: Option<String>,
    },
    /// `loop_interrupted` (legacy `form_validation`): the active loop was interrupted or not.
    LoopInterrupted {
        /// Whether the loop is interrupted.
        is_interrupted: bool,
    },
    /// `action_execution_rejected`: an action refused to run.
    ActionExecutionRejected {
        /// The rejected action.
        name: String,
        /// The policy that predicted it.
        policy: Option<String>,
        /// The prediction's confidence.
        confidence: Option<Number>,
    },
    /// `session_started`: a new conversation session began.
    SessionStarted,
    /// An event whose tag this version does not know, kept exactly as read.
    Unknown(UnknownEvent),
}

/// An event with a tag this version does not know; written back exactly as it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownEvent {
    raw: JsonMap,
}

impl UnknownEvent {
    /// The event's tag.
    pub fn tag(&self) -> &str {
        self.raw.get("event").and_then(Value::as_str).unwrap_or("")
    }

    /// The event exactly as read.
    pub fn raw(&self) -> &JsonMap {
        &self.raw
    }

    /// The event as read, with the timestamp and metadata given instead where they differ
    /// from what was read (set with [`Event::at`], [`Event::with_metadata`], or added by the
    /// tracker): everything else stays verbatim.
    fn with_changes(&self, timestamp: f64, metadata: &JsonMap) -> JsonMap {
        let mut map = self.raw.clone();
        let read = read::timestamp_of(self.raw.get("timestamp"))
            .ok()
            .flatten()
            .filter(|read| *read != 0.0)
            .unwrap_or(0.0);
        if timestamp.to_bits() != read.to_bits() {
            let value = Number::from_f64(timestamp).map_or(Value::Null, Value::Number);
            map.insert("timestamp".into(), value);
        }
        let read = match self.raw.get("metadata") {
            Some(Value::Object(read)) => read,
            _ => &JsonMap::new(),
        };
        if metadata != read {
            map.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        map
    }
}

/// A user message (`user` event).
///
/// Its `parse_data` is built as Rasa builds it: `{intent, entities, text, message_id,
/// metadata}` overlaid with the NLU result, so extra NLU keys (`intent_ranking`,
/// `response_selector`, ...) are kept verbatim and in order.
///
/// A message read from its stored JSON text keeps that text and builds `parse_data` only when
/// it is first asked for: most messages of a read conversation are only passed on, and the NLU
/// result is most of their size.
#[derive(Clone)]
pub struct UserUttered {
    /// The message text.
    pub text: Option<String>,
    /// The channel the message came through.
    pub input_channel: Option<String>,
    /// The message's id.
    pub message_id: Option<String>,
    nlu: Nlu,
}

/// The NLU part of a user message: built, or to be built from the event's JSON text.
#[derive(Clone)]
enum Nlu {
    Built(ParseData),
    /// `source` is the whole event's JSON text, already checked to read as a `user` event.
    Deferred {
        source: Arc<str>,
        built: OnceLock<ParseData>,
    },
}

/// A user message's `parse_data` and entities.
#[derive(Debug, Clone, PartialEq)]
struct ParseData {
    map: JsonMap,
    /// Entities added by `entities` events while `map.entities` is not the message's entity
    /// list (see `shared`).
    added: Vec<Value>,
    /// Whether `map.entities` is the message's entity list, as in Rasa's object model, where
    /// `parse_data["entities"]` and `UserUttered.entities` are the same list when NLU found
    /// entities: entities added later then show in the written `parse_data` too.
    shared: bool,
}

impl ParseData {
    /// Rasa's `UserUttered` constructor: `{intent, entities, text, message_id, metadata}`
    /// overlaid with the NLU result.
    fn build(
        text: &Option<String>,
        message_id: &Option<String>,
        metadata: &JsonMap,
        parse_data: Option<JsonMap>,
    ) -> Self {
        let given = |key: &str| parse_data.as_ref().and_then(|p| p.get(key));
        // Where the NLU result has a value the overlay replaces it: only the key's position
        // is taken from the defaults then.
        let intent = match given("intent") {
            Some(value) if truthy(value) => Value::Null,
            _ => Value::Object(JsonMap::new()),
        };
        let shared = matches!(given("entities"), Some(Value::Array(list)) if !list.is_empty());
        let mut map = JsonMap::new();
        map.insert("intent".into(), intent);
        map.insert("entities".into(), Value::Array(Vec::new()));
        map.insert("text".into(), opt_string(text));
        map.insert("message_id".into(), opt_string(message_id));
        map.insert("metadata".into(), Value::Object(metadata.clone()));
        if let Some(given) = parse_data {
            for (key, value) in given {
                map.insert(key, value);
            }
        }
        Self {
            map,
            added: Vec::new(),
            shared,
        }
    }

    /// Builds the NLU part of the `user` event whose JSON text is `source`.
    fn from_source(source: &str) -> Self {
        let event = serde_json::from_str::<Value>(source)
            .map_err(|e| InvalidEvent::new(format!("not JSON: {e}")))
            .and_then(Event::from_value);
        match event {
            Ok(Event {
                kind:
                    EventKind::UserUttered(UserUttered {
                        nlu: Nlu::Built(data),
                        ..
                    }),
                ..
            }) => data,
            // Unreachable: the text was read as a `user` event before it was kept.
            _ => {
                tracing::error!("a user message's stored text no longer reads as one");
                Self::empty()
            }
        }
    }

    fn empty() -> Self {
        Self {
            map: JsonMap::new(),
            added: Vec::new(),
            shared: false,
        }
    }

    fn add_entity(&mut self, entity: &Value) {
        if self.entities().contains(entity) {
            return;
        }
        if !self.shared {
            self.added.push(entity.clone());
        } else if let Some(Value::Array(list)) = self.map.get_mut("entities") {
            list.push(entity.clone());
        }
    }

    fn entities(&self) -> &[Value] {
        match self.map.get("entities") {
            Some(Value::Array(list)) if self.shared => list,
            _ if self.shared => &[],
            _ => &self.added,
        }
    }
}

impl UserUttered {
    /// Builds a user message as Rasa's `UserUttered(text, intent, entities, parse_data, ...)`
    /// constructor does. `metadata` is the event's metadata, which Rasa copies into
    /// `parse_data.metadata` unless the NLU result has its own.
    pub fn new(
        text: Option<String>,
        parse_data: Option<JsonMap>,
        input_channel: Option<String>,
        message_id: Option<String>,
        metadata: &JsonMap,
    ) -> Self {
        let data = ParseData::build(&text, &message_id, metadata, parse_data);
        Self {
            text,
            input_channel,
            message_id,
            nlu: Nlu::Built(data),
        }
    }

    /// A user message whose NLU part is built from `source`, the event's JSON text, when first
    /// asked for. `source` must read as a `user` event with these fields.
    pub(crate) fn deferred(
        text: Option<String>,
        input_channel: Option<String>,
        message_id: Option<String>,
        source: Arc<str>,
    ) -> Self {
        Self {
            text,
            input_channel,
            message_id,
            nlu: Nlu::Deferred {
                source,
                built: OnceLock::new(),
            },
        }
    }

    fn data(&self) -> &ParseData {
        match &self.nlu {
            Nlu::Built(data) => data,
            Nlu::Deferred { source, built } => built.get_or_init(|| ParseData::from_source(source)),
        }
    }

    /// Builds a deferred NLU part now, so that it can be changed.
    fn make_built(&mut self) {
        if let Nlu::Deferred { .. } = self.nlu {
            let nlu = std::mem::replace(&mut self.nlu, Nlu::Built(ParseData::empty()));
            if let Nlu::Deferred { source, built } = nlu {
                let data = built
                    .into_inner()
                    .unwrap_or_else(|| ParseData::from_source(&source));
                self.nlu = Nlu::Built(data);
            }
        }
    }

    /// The NLU result as Rasa writes it.
    pub fn parse_data(&self) -> &JsonMap {
        &self.data().map
    }

    /// The entities of this message: NLU's plus any added by later `entities` events.
    pub fn entities(&self) -> &[Value] {
        self.data().entities()
    }

    /// The intent's name, if any.
    pub fn intent_name(&self) -> Option<&str> {
        self.parse_data()
            .get("intent")
            .and_then(|intent| intent.get("name"))
            .and_then(Value::as_str)
    }

    /// Adds an entity unless an equal one is present (Rasa's `EntitiesAdded.apply_to`).
    pub(crate) fn add_entity(&mut self, entity: &Value) {
        self.make_built();
        if let Nlu::Built(data) = &mut self.nlu {
            data.add_entity(entity);
        }
    }
}

impl PartialEq for UserUttered {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.input_channel == other.input_channel
            && self.message_id == other.message_id
            && self.data() == other.data()
    }
}

impl fmt::Debug for UserUttered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserUttered")
            .field("text", &self.text)
            .field("input_channel", &self.input_channel)
            .field("message_id", &self.message_id)
            .field("parse_data", self.parse_data())
            .field("entities", &self.entities())
            .finish()
    }
}

fn opt_string(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::String)
}

/// Python truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The current time in epoch seconds, as Rasa's `time.time()`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Event {
    /// An event of `kind` happening now, with no metadata.
    pub fn new(kind: EventKind) -> Self {
        Self {
            timestamp: now(),
            metadata: JsonMap::new(),
            kind,
        }
    }

    /// Sets the timestamp.
    #[must_use]
    pub fn at(mut self, timestamp: f64) -> Self {
        self.timestamp = timestamp;
        self.sync_unknown();
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: JsonMap) -> Self {
        self.metadata = metadata;
        self.sync_unknown();
        self
    }

    /// For an event of an unknown type, writes a changed timestamp or metadata into the
    /// object kept verbatim, so that it equals the event read back from its JSON.
    pub(crate) fn sync_unknown(&mut self) {
        if let EventKind::Unknown(unknown) = &mut self.kind {
            unknown.raw = unknown.with_changes(self.timestamp, &self.metadata);
        }
    }

    /// `action`: the action `name` ran.
    pub fn action(name: impl Into<String>) -> Self {
        Self::new(EventKind::ActionExecuted {
            name: Some(name.into()),
            policy: None,
            confidence: None,
            action_text: None,
            hide_rule_turn: false,
        })
    }

    /// `user`: the user said `text`, classified as `intent` with `confidence`.
    pub fn user(text: impl Into<String>, intent: impl Into<String>, confidence: f64) -> Self {
        let text = text.into();
        let mut intent_map = JsonMap::new();
        intent_map.insert("name".into(), Value::String(intent.into()));
        intent_map.insert(
            "confidence".into(),
            Number::from_f64(confidence).map_or(Value::Null, Value::Number),
        );
        let mut parse_data = JsonMap::new();
        parse_data.insert("intent".into(), Value::Object(intent_map));
        parse_data.insert("entities".into(), Value::Array(Vec::new()));
        parse_data.insert("text".into(), Value::String(text.clone()));
        Self::new(EventKind::UserUttered(UserUttered::new(
            Some(text),
            Some(parse_data),
            None,
            None,
            &JsonMap::new(),
        )))
    }

    /// `bot`: the assistant said `text`.
    pub fn bot(text: impl Into<String>) -> Self {
        Self::new(EventKind::BotUttered {
            text: Some(text.into()),
            data: Value::Object(JsonMap::new()),
        })
    }

    /// `slot`: slot `name` was set to `value`.
    pub fn slot(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(EventKind::SlotSet {
            name: name.into(),
            value: value.into(),
        })
    }

    /// `session_started`.
    pub fn session_started() -> Self {
        Self::new(EventKind::SessionStarted)
    }

    /// `restart`.
    pub fn restarted() -> Self {
        Self::new(EventKind::Restarted)
    }

    /// The JSON tag Rasa writes in the `event` key (and in the SQL `type_name` column).
    pub fn type_name(&self) -> &str {
        match &self.kind {
            EventKind::UserUttered(_) => "user",
            EventKind::DefinePrevUserUtteredFeaturization { .. } => "user_featurization",
            EventKind::EntitiesAdded { .. } => "entities",
            EventKind::BotUttered { .. } => "bot",
            EventKind::SlotSet { .. } => "slot",
            EventKind::Restarted => "restart",
            EventKind::UserUtteranceReverted => "rewind",
            EventKind::AllSlotsReset => "reset_slots",
            EventKind::ReminderScheduled { .. } => "reminder",
            EventKind::ReminderCancelled { .. } => "cancel_reminder",
            EventKind::ActionReverted => "undo",
            EventKind::StoryExported { .. } => "export",
            EventKind::FollowupAction { .. } => "followup",
            EventKind::ConversationPaused => "pause",
            EventKind::ConversationResumed => "resume",
            EventKind::ActionExecuted { .. } => "action",
            EventKind::AgentUttered { .. } => "agent",
            EventKind::ActiveLoop { .. } => "active_loop",
            EventKind::LoopInterrupted { .. } => "loop_interrupted",
            EventKind::ActionExecutionRejected { .. } => "action_execution_rejected",
            EventKind::SessionStarted => "session_started",
            EventKind::Unknown(unknown) => unknown.tag(),
        }
    }

    /// The intent name Rasa's SQL store writes to `intent_name` (user events only).
    pub fn intent_name(&self) -> Option<&str> {
        match &self.kind {
            EventKind::UserUttered(user) => user.intent_name(),
            _ => None,
        }
    }

    /// The event's `name` key, which Rasa's SQL store writes to `action_name`: the action,
    /// slot, loop, follow-up action, reminder or rejected action name.
    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            EventKind::ActionExecuted { name, .. } | EventKind::ActiveLoop { name } => {
                name.as_deref()
            }
            EventKind::SlotSet { name, .. }
            | EventKind::FollowupAction { name }
            | EventKind::ActionExecutionRejected { name, .. }
            | EventKind::ReminderScheduled { name, .. } => Some(name),
            EventKind::Unknown(unknown) => unknown.raw.get("name").and_then(Value::as_str),
            _ => None,
        }
    }

    /// Whether this is the `action` event with the given action name.
    pub fn is_action(&self, action: &str) -> bool {
        matches!(&self.kind, EventKind::ActionExecuted { name: Some(n), .. } if n == action)
    }

    /// The object Rasa's `as_dict()` returns for this event.
    pub fn to_value(&self) -> Value {
        // Serialising into a `Value` fails only for maps with non-string keys; an event has none.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The exact text Rasa stores for this event: Python's `json.dumps(event.as_dict())`.
    pub fn to_rasa_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        match &self.kind {
            EventKind::Unknown(unknown) => {
                json::write_map(
                    &mut out,
                    &unknown.with_changes(self.timestamp, &self.metadata),
                );
            }
            _ => {
                out.push(b'{');
                let mut first = true;
                let written: Result<(), std::convert::Infallible> =
                    self.for_each_item(|key, item| {
                        if !std::mem::take(&mut first) {
                            out.extend_from_slice(b", ");
                        }
                        json::write_str(&mut out, key);
                        out.extend_from_slice(b": ");
                        json::write_item(&mut out, item);
                        Ok(())
                    });
                let Ok(()) = written;
                out.push(b'}');
            }
        }
        json::into_string(out)
    }

    /// Parses Rasa's JSON text of one event.
    ///
    /// Equal to [`Event::from_value`] of the parsed text, but without building a `Value` for
    /// the event: a user message keeps its text and builds its NLU result only when asked for.
    pub fn from_json(text: &str) -> Result<Self, InvalidEvent> {
        if let Some(event) = read::from_text(text) {
            return Ok(event);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| InvalidEvent::new(format!("not JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Parses one event object as Rasa's `Event.from_parameters` does: legacy tags `form` and
    /// `form_validation` become `active_loop` / `loop_interrupted`, missing optional fields
    /// take Rasa's defaults, a missing, `null` or zero timestamp becomes the current time, and
    /// keys Rasa does not read are dropped. A tag this version does not know gives
    /// [`EventKind::Unknown`], kept verbatim.
    pub fn from_value(value: Value) -> Result<Self, InvalidEvent> {
        read::from_value(value)
    }
}

/// Parses a list of event objects as Rasa's `deserialise_events` does: objects without an
/// `event` key and legacy `topic` events are skipped (Rasa drops them too); unknown tags are
/// kept as [`EventKind::Unknown`] rather than failing the whole list.
///
/// # Errors
/// An item that is not an object, rather than skipping it (Rasa fails on most such items —
/// numbers, `null`, strings that contain "event" — and skips the others), or an event that
/// does not parse.
pub fn deserialise_events(values: &[Value]) -> Result<Vec<Event>, InvalidEvent> {
    let mut events = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        if !value.is_object() {
            return Err(InvalidEvent::new(format!(
                "item {index} of the event list is not an object"
            )));
        }
        match value.get("event") {
            None => {
                tracing::debug!("skipping an event object without an `event` key");
            }
            Some(Value::String(tag)) if tag == "topic" => {
                tracing::debug!("skipping a legacy `topic` event");
            }
            Some(_) => events.push(Event::from_value(value.clone())?),
        }
    }
    Ok(events)
}

fn opt(text: &Option<String>) -> Item<'_> {
    Item::OptStr(text.as_deref())
}

impl Event {
    /// Calls `entry` with each key and value of the object Rasa's `as_dict()` returns for an
    /// event of a known type: `event`, `timestamp`, `metadata` when non-empty, then the
    /// type's keys in Rasa's order. `user` and `bot` events always carry `metadata`, last
    /// when it is empty (Rasa's `dict.update` keeps a key where it was first inserted).
    pub(crate) fn for_each_item<E>(
        &self,
        mut entry: impl FnMut(&'static str, Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        entry("event", Item::Str(self.type_name()))?;
        entry("timestamp", Item::Float(self.timestamp))?;
        let metadata_written = !self.metadata.is_empty();
        if metadata_written {
            entry("metadata", Item::Map(&self.metadata))?;
        }
        match &self.kind {
            EventKind::UserUttered(user) => {
                entry("text", opt(&user.text))?;
                entry("parse_data", Item::Map(user.parse_data()))?;
                entry("input_channel", opt(&user.input_channel))?;
                entry("message_id", opt(&user.message_id))?;
                if !metadata_written {
                    entry("metadata", Item::Map(&self.metadata))?;
                }
            }
            EventKind::DefinePrevUserUtteredFeaturization {
                use_text_for_featurization,
            } => entry(
                "use_text_for_featurization",
                Item::Bool(*use_text_for_featurization),
            )?,
            EventKind::EntitiesAdded { entities } => entry("entities", Item::List(entities))?,
            EventKind::BotUttered { text, data } => {
                entry("text", opt(text))?;
                entry("data", Item::Value(data))?;
                if !metadata_written {
                    entry("metadata", Item::Map(&self.metadata))?;
                }
            }
            EventKind::SlotSet { name, value } => {
                entry("name", Item::Str(name))?;
                entry("value", Item::Value(value))?;
            }
            EventKind::ReminderScheduled {
                intent,
                date_time,
                entities,
                name,
                kill_on_user_msg,
            } => {
                entry("intent", opt(intent))?;
                entry("date_time", Item::Str(date_time))?;
                entry("entities", Item::Value(entities))?;
                entry("name", Item::Str(name))?;
                entry("kill_on_user_msg", Item::Bool(*kill_on_user_msg))?;
            }
            EventKind::FollowupAction { name } => entry("name", Item::Str(name))?,
            EventKind::ActionExecuted {
                name,
                policy,
                confidence,
                action_text,
                hide_rule_turn,
            } => {
                entry("name", opt(name))?;
                entry("policy", opt(policy))?;
                entry("confidence", Item::Number(confidence.as_ref()))?;
                entry("action_text", opt(action_text))?;
                entry("hide_rule_turn", Item::Bool(*hide_rule_turn))?;
            }
            EventKind::AgentUttered { text, data } => {
                entry("text", opt(text))?;
                entry("data", Item::Value(data))?;
            }
            EventKind::ActiveLoop { name } => entry("name", opt(name))?,
            EventKind::LoopInterrupted { is_interrupted } => {
                entry("is_interrupted", Item::Bool(*is_interrupted))?;
            }
            EventKind::ActionExecutionRejected {
                name,
                policy,
                confidence,
            } => {
                entry("name", Item::Str(name))?;
                entry("policy", opt(policy))?;
                entry("confidence", Item::Number(confidence.as_ref()))?;
            }
            EventKind::Restarted
            | EventKind::UserUtteranceReverted
            | EventKind::AllSlotsReset
            | EventKind::ReminderCancelled { .. }
            | EventKind::ActionReverted
            | EventKind::StoryExported { .. }
            | EventKind::ConversationPaused
            | EventKind::ConversationResumed
            | EventKind::SessionStarted
            | EventKind::Unknown(_) => {}
        }
        Ok(())
    }
}

/// Writes the object Rasa's `as_dict()` returns, straight from the event (no intermediate
/// `Value`; see `Event::for_each_item`). An event of an unknown type is written as read.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let EventKind::Unknown(unknown) = &self.kind {
            return unknown
                .with_changes(self.timestamp, &self.metadata)
                .serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        self.for_each_item(|key, item| map.serialize_entry(key, &item))?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_tags_are_kept_verbatim() {
        let text = r#"{"timestamp": 5, "event": "from_the_future", "x": [1, 2.50, {"y": null}]}"#;
        let event = Event::from_json(text).expect("kept");
        assert_eq!(event.type_name(), "from_the_future");
        assert_eq!(event.timestamp, 5.0);
        assert_eq!(
            event.to_rasa_json(),
            r#"{"timestamp": 5, "event": "from_the_future", "x": [1, 2.5, {"y": null}]}"#
        );
    }

    #[test]
    fn unknown_events_take_a_new_timestamp_and_metadata() {
        let text = r#"{"timestamp": 5, "event": "from_the_future", "metadata": {"a": 1}}"#;
        let event = Event::from_json(text).expect("kept");
        let moved = event.clone().at(7.5);
        assert_eq!(
            moved.to_rasa_json(),
            r#"{"timestamp": 7.5, "event": "from_the_future", "metadata": {"a": 1}}"#
        );
        assert_eq!(
            Event::from_json(&moved.to_rasa_json()).expect("read"),
            moved
        );
        let mut metadata = event.metadata.clone();
        metadata.insert("model_id".into(), json!("m1"));
        let stamped = event.with_metadata(metadata);
        assert_eq!(
            stamped.to_rasa_json(),
            r#"{"timestamp": 5, "event": "from_the_future", "metadata": {"a": 1, "model_id": "m1"}}"#
        );
        let bare = Event::from_json(r#"{"event": "from_the_future"}"#).expect("kept");
        assert_eq!(bare.to_rasa_json(), r#"{"event": "from_the_future"}"#);
        assert_eq!(
            bare.at(1.0).to_rasa_json(),
            r#"{"event": "from_the_future", "timestamp": 1.0}"#
        );
    }

    #[test]
    fn rasa_defaults_apply_when_fields_are_missing() {
        let before = now();
        let event = Event::from_value(json!({"event": "restart", "timestamp": 0})).expect("ok");
        assert!(
            event.timestamp >= before,
            "a zero timestamp becomes the current time"
        );
        let event = Event::from_value(json!({"event": "user", "text": "hi", "timestamp": 1.5}))
            .expect("a user event without parse_data is read with empty NLU data");
        assert_eq!(
            event.to_value()["parse_data"],
            json!({"intent": {}, "entities": [], "text": "hi", "message_id": null, "metadata": {}})
        );
        let event = Event::from_value(json!({"event": "reminder", "timestamp": 1.5,
            "intent": "EXTERNAL_x", "date_time": "2024-01-01T00:00:00"}))
        .expect("ok");
        assert!(
            matches!(&event.kind, EventKind::ReminderScheduled { name, kill_on_user_msg: true, .. } if !name.is_empty())
        );
    }

    #[test]
    fn malformed_events_are_errors() {
        for bad in [
            json!([1, 2]),
            json!({"timestamp": 1.0}),
            json!({"event": 3}),
            json!({"event": "action", "timestamp": 1.0}),
            json!({"event": "slot", "timestamp": 1.0, "value": 1}),
            json!({"event": "bot", "timestamp": "yesterday"}),
            json!({"event": "bot", "timestamp": 1.0, "metadata": [1]}),
            json!({"event": "user", "timestamp": 1.0, "parse_data": "greet"}),
            json!({"event": "action", "timestamp": 1.0, "name": "a", "confidence": "high"}),
        ] {
            assert!(
                Event::from_value(bad.clone()).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(Event::from_json("{not json").is_err());
    }

    #[test]
    fn sql_columns_follow_rasa() {
        let user = Event::user("hi", "greet", 0.5);
        assert_eq!(
            (user.type_name(), user.intent_name(), user.name()),
            ("user", Some("greet"), None)
        );
        let slot = Event::slot("city", "berlin");
        assert_eq!((slot.type_name(), slot.name()), ("slot", Some("city")));
        let legacy =
            Event::from_value(json!({"event": "form", "timestamp": 1.0, "name": "f"})).expect("ok");
        assert_eq!(
            (legacy.type_name(), legacy.name()),
            ("active_loop", Some("f"))
        );
    }
}
