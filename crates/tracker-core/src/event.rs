//! Rasa's conversation events and their JSON form.
//!
//! Every event type of Rasa 3.x is a variant of [`EventKind`]; an [`Event`] adds the fields
//! every event has (`timestamp`, `metadata`). [`Event::to_value`] gives exactly the object
//! Rasa's `Event.as_dict()` gives (same keys, same order, nulls where Rasa writes them), and
//! [`Event::to_rasa_json`] the exact text Rasa stores. [`Event::from_value`] parses what
//! Rasa's `Event.from_parameters` parses, legacy tags included. An event whose tag this
//! version does not know is kept as [`EventKind::Unknown`] and written back unchanged,
//! instead of failing the whole conversation as Rasa does.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::json::to_python_json;

/// A JSON object with keys in insertion order.
pub type JsonMap = Map<String, Value>;

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
        let read = Event::known_timestamp(&self.raw)
            .ok()
            .flatten()
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
#[derive(Debug, Clone, PartialEq)]
pub struct UserUttered {
    /// The message text.
    pub text: Option<String>,
    /// The channel the message came through.
    pub input_channel: Option<String>,
    /// The message's id.
    pub message_id: Option<String>,
    parse_data: JsonMap,
    /// NLU entities plus any added by `entities` events (Rasa's `UserUttered.entities`).
    entities: Vec<Value>,
    /// Whether `parse_data.entities` is the same list as `entities` in Rasa's object model:
    /// true when the NLU result carried a non-empty entity list. Rasa then shows entities
    /// added later in the written `parse_data` too; this reproduces it.
    entities_shared: bool,
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
        let given_intent = parse_data.as_ref().and_then(|p| p.get("intent"));
        let intent = match given_intent {
            Some(value) if truthy(value) => value.clone(),
            _ => Value::Object(JsonMap::new()),
        };
        let (entities, entities_shared) = match parse_data.as_ref().and_then(|p| p.get("entities"))
        {
            Some(Value::Array(list)) if !list.is_empty() => (list.clone(), true),
            _ => (Vec::new(), false),
        };
        let mut built = JsonMap::new();
        built.insert("intent".into(), intent);
        built.insert("entities".into(), Value::Array(entities.clone()));
        built.insert("text".into(), opt_string(&text));
        built.insert("message_id".into(), opt_string(&message_id));
        built.insert("metadata".into(), Value::Object(metadata.clone()));
        if let Some(given) = parse_data {
            for (key, value) in given {
                built.insert(key, value);
            }
        }
        Self {
            text,
            input_channel,
            message_id,
            parse_data: built,
            entities,
            entities_shared,
        }
    }

    /// The NLU result as Rasa writes it.
    pub fn parse_data(&self) -> &JsonMap {
        &self.parse_data
    }

    /// The entities of this message: NLU's plus any added by later `entities` events.
    pub fn entities(&self) -> &[Value] {
        &self.entities
    }

    /// The intent's name, if any.
    pub fn intent_name(&self) -> Option<&str> {
        self.parse_data
            .get("intent")
            .and_then(|intent| intent.get("name"))
            .and_then(Value::as_str)
    }

    /// Adds an entity unless an equal one is present (Rasa's `EntitiesAdded.apply_to`).
    pub(crate) fn add_entity(&mut self, entity: &Value) {
        if self.entities.contains(entity) {
            return;
        }
        self.entities.push(entity.clone());
        if self.entities_shared {
            self.parse_data
                .insert("entities".into(), Value::Array(self.entities.clone()));
        }
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
        Value::Object(self.to_map())
    }

    fn to_map(&self) -> JsonMap {
        if let EventKind::Unknown(unknown) = &self.kind {
            return unknown.with_changes(self.timestamp, &self.metadata);
        }
        let mut map = JsonMap::new();
        map.insert("event".into(), Value::String(self.type_name().to_owned()));
        map.insert(
            "timestamp".into(),
            Number::from_f64(self.timestamp).map_or(Value::Null, Value::Number),
        );
        if !self.metadata.is_empty() {
            map.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_owned(), value);
        };
        match &self.kind {
            EventKind::UserUttered(user) => {
                put("text", opt_string(&user.text));
                put("parse_data", Value::Object(user.parse_data.clone()));
                put("input_channel", opt_string(&user.input_channel));
                put("message_id", opt_string(&user.message_id));
                put("metadata", Value::Object(self.metadata.clone()));
            }
            EventKind::DefinePrevUserUtteredFeaturization {
                use_text_for_featurization,
            } => put(
                "use_text_for_featurization",
                Value::Bool(*use_text_for_featurization),
            ),
            EventKind::EntitiesAdded { entities } => {
                put("entities", Value::Array(entities.clone()))
            }
            EventKind::BotUttered { text, data } => {
                put("text", opt_string(text));
                put("data", data.clone());
                put("metadata", Value::Object(self.metadata.clone()));
            }
            EventKind::SlotSet { name, value } => {
                put("name", Value::String(name.clone()));
                put("value", value.clone());
            }
            EventKind::ReminderScheduled {
                intent,
                date_time,
                entities,
                name,
                kill_on_user_msg,
            } => {
                put("intent", opt_string(intent));
                put("date_time", Value::String(date_time.clone()));
                put("entities", entities.clone());
                put("name", Value::String(name.clone()));
                put("kill_on_user_msg", Value::Bool(*kill_on_user_msg));
            }
            EventKind::FollowupAction { name } => put("name", Value::String(name.clone())),
            EventKind::ActionExecuted {
                name,
                policy,
                confidence,
                action_text,
                hide_rule_turn,
            } => {
                put("name", opt_string(name));
                put("policy", opt_string(policy));
                put(
                    "confidence",
                    confidence.clone().map_or(Value::Null, Value::Number),
                );
                put("action_text", opt_string(action_text));
                put("hide_rule_turn", Value::Bool(*hide_rule_turn));
            }
            EventKind::AgentUttered { text, data } => {
                put("text", opt_string(text));
                put("data", data.clone());
            }
            EventKind::ActiveLoop { name } => put("name", opt_string(name)),
            EventKind::LoopInterrupted { is_interrupted } => {
                put("is_interrupted", Value::Bool(*is_interrupted));
            }
            EventKind::ActionExecutionRejected {
                name,
                policy,
                confidence,
            } => {
                put("name", Value::String(name.clone()));
                put("policy", opt_string(policy));
                put(
                    "confidence",
                    confidence.clone().map_or(Value::Null, Value::Number),
                );
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
        map
    }

    /// The exact text Rasa stores for this event: Python's `json.dumps(event.as_dict())`.
    pub fn to_rasa_json(&self) -> String {
        // Serialising a `serde_json::Value` into memory cannot fail.
        to_python_json(&self.to_value()).unwrap_or_default()
    }

    /// Parses Rasa's JSON text of one event.
    pub fn from_json(text: &str) -> Result<Self, InvalidEvent> {
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
        let Value::Object(map) = value else {
            return Err(InvalidEvent::new("an event must be a JSON object"));
        };
        let tag = match map.get("event") {
            Some(Value::String(tag)) => tag.clone(),
            Some(_) => return Err(InvalidEvent::new("`event` must be a string")),
            None => return Err(InvalidEvent::new("missing `event` key")),
        };
        let fields = Fields { map: &map };
        let metadata = fields.metadata()?;
        let known = Self::known_timestamp(&map)?;
        let kind = match tag.as_str() {
            "user" => {
                let parse_data = match map.get("parse_data") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(p)) => Some(p.clone()),
                    Some(_) => return Err(InvalidEvent::new("`parse_data` must be an object")),
                };
                EventKind::UserUttered(UserUttered::new(
                    fields.opt_str("text")?,
                    parse_data,
                    fields.opt_str("input_channel")?,
                    fields.opt_str("message_id")?,
                    &metadata,
                ))
            }
            "user_featurization" => EventKind::DefinePrevUserUtteredFeaturization {
                use_text_for_featurization: fields.bool_or("use_text_for_featurization", false)?,
            },
            "entities" => EventKind::EntitiesAdded {
                entities: match map.get("entities") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(list)) => list.clone(),
                    Some(_) => return Err(InvalidEvent::new("`entities` must be a list")),
                },
            },
            "bot" => EventKind::BotUttered {
                text: fields.opt_str("text")?,
                data: match map.get("data") {
                    Some(data) if truthy(data) => data.clone(),
                    _ => Value::Object(JsonMap::new()),
                },
            },
            "slot" => EventKind::SlotSet {
                name: fields.req_str("name")?,
                value: map.get("value").cloned().unwrap_or(Value::Null),
            },
            "restart" => EventKind::Restarted,
            "rewind" => EventKind::UserUtteranceReverted,
            "reset_slots" => EventKind::AllSlotsReset,
            "reminder" => EventKind::ReminderScheduled {
                intent: fields.opt_str("intent")?,
                date_time: fields.req_str("date_time")?,
                entities: map.get("entities").cloned().unwrap_or(Value::Null),
                name: match fields.opt_str("name")? {
                    Some(name) => name,
                    None => uuid::Uuid::new_v4().to_string(),
                },
                kill_on_user_msg: fields.bool_or("kill_on_user_msg", true)?,
            },
            "cancel_reminder" => EventKind::ReminderCancelled {
                name: fields.opt_str("name")?,
                intent: fields.opt_str("intent")?,
                entities: map.get("entities").cloned(),
            },
            "undo" => EventKind::ActionReverted,
            "export" => EventKind::StoryExported {
                path: fields.opt_str("path")?,
            },
            "followup" => EventKind::FollowupAction {
                name: fields.req_str("name")?,
            },
            "pause" => EventKind::ConversationPaused,
            "resume" => EventKind::ConversationResumed,
            "action" => {
                let name = fields.opt_str("name")?;
                let action_text = fields.opt_str("action_text")?;
                if name.is_none() && action_text.is_none() {
                    return Err(InvalidEvent::new(
                        "an `action` event needs `name` or `action_text`",
                    ));
                }
                EventKind::ActionExecuted {
                    name,
                    policy: fields.opt_str("policy")?,
                    confidence: fields.opt_number("confidence")?,
                    action_text,
                    hide_rule_turn: fields.bool_or("hide_rule_turn", false)?,
                }
            }
            "agent" => EventKind::AgentUttered {
                text: fields.opt_str("text")?,
                data: map.get("data").cloned().unwrap_or(Value::Null),
            },
            "active_loop" | "form" => EventKind::ActiveLoop {
                name: fields.opt_str("name")?,
            },
            "loop_interrupted" => EventKind::LoopInterrupted {
                is_interrupted: fields.bool_or("is_interrupted", false)?,
            },
            "form_validation" => EventKind::LoopInterrupted {
                is_interrupted: !fields.bool_or("validate", true)?,
            },
            "action_execution_rejected" => EventKind::ActionExecutionRejected {
                name: fields.req_str("name")?,
                policy: fields.opt_str("policy")?,
                confidence: fields.opt_number("confidence")?,
            },
            "session_started" => EventKind::SessionStarted,
            _ => {
                let timestamp = known.unwrap_or(0.0);
                return Ok(Self {
                    timestamp,
                    metadata,
                    kind: EventKind::Unknown(UnknownEvent { raw: map }),
                });
            }
        };
        Ok(Self {
            timestamp: known.unwrap_or_else(now),
            metadata,
            kind,
        })
    }

    /// The timestamp as given, or `None` where Rasa substitutes the current time (missing,
    /// `null`, `0`).
    fn known_timestamp(map: &JsonMap) -> Result<Option<f64>, InvalidEvent> {
        match map.get("timestamp") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                let value = n
                    .as_f64()
                    .ok_or_else(|| InvalidEvent::new("`timestamp` is not a number"))?;
                Ok((value != 0.0).then_some(value))
            }
            Some(_) => Err(InvalidEvent::new("`timestamp` must be a number")),
        }
    }
}

/// Typed access to an event object's fields with Rasa's defaults.
struct Fields<'a> {
    map: &'a JsonMap,
}

impl Fields<'_> {
    fn opt_str(&self, key: &str) -> Result<Option<String>, InvalidEvent> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(InvalidEvent::new(format!("`{key}` must be a string"))),
        }
    }

    fn req_str(&self, key: &str) -> Result<String, InvalidEvent> {
        self.opt_str(key)?
            .ok_or_else(|| InvalidEvent::new(format!("missing `{key}`")))
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, InvalidEvent> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(InvalidEvent::new(format!("`{key}` must be a boolean"))),
        }
    }

    fn opt_number(&self, key: &str) -> Result<Option<Number>, InvalidEvent> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.clone())),
            Some(_) => Err(InvalidEvent::new(format!("`{key}` must be a number"))),
        }
    }

    fn metadata(&self) -> Result<JsonMap, InvalidEvent> {
        match self.map.get("metadata") {
            None | Some(Value::Null) => Ok(JsonMap::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(InvalidEvent::new("`metadata` must be an object")),
        }
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

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
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
