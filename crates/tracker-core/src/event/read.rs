//! Reading events: from a parsed JSON object, and straight from JSON text.
//!
//! Both ways collect the fields Rasa's `Event.from_parameters` reads into [`Parts`] and build
//! the event with [`Parts::build`], so they cannot disagree on defaults. Reading from text
//! takes one pass over the text without building a `Value` tree for the event: keys are
//! matched in place, fields the event type does not read are checked and skipped, and a user
//! message's NLU result is checked and kept as text until it is asked for (see
//! [`UserUttered`]). That way handles the text Rasa and this crate write (`event` as the
//! first key, a known type); anything else, and any text it cannot read, goes the general way
//! through a `Value`, which gives the same event or the same error.

use std::sync::Arc;

use serde_json::{Number, Value};

use super::scan::{Kind, Scanner, Span};
use super::{Event, EventKind, InvalidEvent, JsonMap, UnknownEvent, UserUttered, now, truthy};

/// An event type this version knows, by its JSON tag (legacy tags included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    User,
    UserFeaturization,
    Entities,
    Bot,
    Slot,
    Restart,
    Rewind,
    ResetSlots,
    Reminder,
    CancelReminder,
    Undo,
    Export,
    Followup,
    Pause,
    Resume,
    Action,
    Agent,
    ActiveLoop,
    LoopInterrupted,
    FormValidation,
    ActionExecutionRejected,
    SessionStarted,
}

impl Tag {
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "user" => Self::User,
            "user_featurization" => Self::UserFeaturization,
            "entities" => Self::Entities,
            "bot" => Self::Bot,
            "slot" => Self::Slot,
            "restart" => Self::Restart,
            "rewind" => Self::Rewind,
            "reset_slots" => Self::ResetSlots,
            "reminder" => Self::Reminder,
            "cancel_reminder" => Self::CancelReminder,
            "undo" => Self::Undo,
            "export" => Self::Export,
            "followup" => Self::Followup,
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "action" => Self::Action,
            "agent" => Self::Agent,
            "active_loop" | "form" => Self::ActiveLoop,
            "loop_interrupted" => Self::LoopInterrupted,
            "form_validation" => Self::FormValidation,
            "action_execution_rejected" => Self::ActionExecutionRejected,
            "session_started" => Self::SessionStarted,
            _ => return None,
        })
    }

    /// The type-specific fields Rasa reads for this type (besides `timestamp` and
    /// `metadata`), in the order they are checked.
    fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Self::User => &[ParseData, Text, InputChannel, MessageId],
            Self::UserFeaturization => &[UseTextForFeaturization],
            Self::Entities => &[Entities],
            Self::Bot | Self::Agent => &[Text, Data],
            Self::Slot => &[Name, Value],
            Self::Reminder => &[Intent, DateTime, Entities, Name, KillOnUserMsg],
            Self::CancelReminder => &[Name, Intent, Entities],
            Self::Export => &[Path],
            Self::Followup | Self::ActiveLoop => &[Name],
            Self::Action => &[Name, ActionText, Policy, Confidence, HideRuleTurn],
            Self::LoopInterrupted => &[IsInterrupted],
            Self::FormValidation => &[Validate],
            Self::ActionExecutionRejected => &[Name, Policy, Confidence],
            Self::Restart
            | Self::Rewind
            | Self::ResetSlots
            | Self::Undo
            | Self::Pause
            | Self::Resume
            | Self::SessionStarted => &[],
        }
    }

    fn reads(self, field: Field) -> bool {
        matches!(field, Field::Timestamp | Field::Metadata) || self.fields().contains(&field)
    }
}

/// A key Rasa reads in some event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Event,
    Timestamp,
    Metadata,
    ParseData,
    Text,
    InputChannel,
    MessageId,
    Name,
    Policy,
    ActionText,
    Intent,
    DateTime,
    Path,
    UseTextForFeaturization,
    HideRuleTurn,
    KillOnUserMsg,
    IsInterrupted,
    Validate,
    Confidence,
    Data,
    Value,
    Entities,
}

/// How a field's value is read.
enum Shape {
    /// A string or `null`.
    Str,
    /// A boolean or `null`.
    Bool,
    /// A number or `null`.
    Number,
    /// Any JSON, `null` kept.
    Any,
    /// Read by the caller.
    Special,
}

impl Field {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "event" => Self::Event,
            "timestamp" => Self::Timestamp,
            "metadata" => Self::Metadata,
            "parse_data" => Self::ParseData,
            "text" => Self::Text,
            "input_channel" => Self::InputChannel,
            "message_id" => Self::MessageId,
            "name" => Self::Name,
            "policy" => Self::Policy,
            "action_text" => Self::ActionText,
            "intent" => Self::Intent,
            "date_time" => Self::DateTime,
            "path" => Self::Path,
            "use_text_for_featurization" => Self::UseTextForFeaturization,
            "hide_rule_turn" => Self::HideRuleTurn,
            "kill_on_user_msg" => Self::KillOnUserMsg,
            "is_interrupted" => Self::IsInterrupted,
            "validate" => Self::Validate,
            "confidence" => Self::Confidence,
            "data" => Self::Data,
            "value" => Self::Value,
            "entities" => Self::Entities,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Timestamp => "timestamp",
            Self::Metadata => "metadata",
            Self::ParseData => "parse_data",
            Self::Text => "text",
            Self::InputChannel => "input_channel",
            Self::MessageId => "message_id",
            Self::Name => "name",
            Self::Policy => "policy",
            Self::ActionText => "action_text",
            Self::Intent => "intent",
            Self::DateTime => "date_time",
            Self::Path => "path",
            Self::UseTextForFeaturization => "use_text_for_featurization",
            Self::HideRuleTurn => "hide_rule_turn",
            Self::KillOnUserMsg => "kill_on_user_msg",
            Self::IsInterrupted => "is_interrupted",
            Self::Validate => "validate",
            Self::Confidence => "confidence",
            Self::Data => "data",
            Self::Value => "value",
            Self::Entities => "entities",
        }
    }

    fn shape(self) -> Shape {
        match self {
            Self::Text
            | Self::InputChannel
            | Self::MessageId
            | Self::Name
            | Self::Policy
            | Self::ActionText
            | Self::Intent
            | Self::DateTime
            | Self::Path => Shape::Str,
            Self::UseTextForFeaturization
            | Self::HideRuleTurn
            | Self::KillOnUserMsg
            | Self::IsInterrupted
            | Self::Validate => Shape::Bool,
            Self::Confidence => Shape::Number,
            Self::Data | Self::Value | Self::Entities => Shape::Any,
            Self::Event | Self::Timestamp | Self::Metadata | Self::ParseData => Shape::Special,
        }
    }
}

/// A user message's NLU result as read.
#[derive(Default)]
enum NluPart {
    /// Missing or `null`.
    #[default]
    Absent,
    /// An object.
    Given(JsonMap),
    /// An object, checked in the text and kept there.
    InText,
}

/// The fields of one event object that Rasa reads, typed; a missing field and `null` are both
/// `None`, except for the fields read as any JSON, where `null` is kept.
#[derive(Default)]
pub(super) struct Parts {
    timestamp: Option<f64>,
    metadata: JsonMap,
    parse_data: NluPart,
    strings: [Option<String>; 9],
    bools: [Option<bool>; 5],
    confidence: Option<Number>,
    values: [Option<Value>; 3],
}

impl Parts {
    fn string(&mut self, field: Field) -> &mut Option<String> {
        let index = match field {
            Field::Text => 0,
            Field::InputChannel => 1,
            Field::MessageId => 2,
            Field::Name => 3,
            Field::Policy => 4,
            Field::ActionText => 5,
            Field::Intent => 6,
            Field::DateTime => 7,
            _ => 8,
        };
        &mut self.strings[index]
    }

    fn take_string(&mut self, field: Field) -> Option<String> {
        self.string(field).take()
    }

    fn required_string(&mut self, field: Field) -> Result<String, InvalidEvent> {
        self.take_string(field)
            .ok_or_else(|| InvalidEvent::new(format!("missing `{}`", field.key())))
    }

    fn flag(&mut self, field: Field) -> &mut Option<bool> {
        let index = match field {
            Field::UseTextForFeaturization => 0,
            Field::HideRuleTurn => 1,
            Field::KillOnUserMsg => 2,
            Field::IsInterrupted => 3,
            _ => 4,
        };
        &mut self.bools[index]
    }

    fn flag_or(&mut self, field: Field, default: bool) -> bool {
        self.flag(field).unwrap_or(default)
    }

    fn value(&mut self, field: Field) -> &mut Option<Value> {
        let index = match field {
            Field::Data => 0,
            Field::Value => 1,
            _ => 2,
        };
        &mut self.values[index]
    }

    fn take_value(&mut self, field: Field) -> Option<Value> {
        self.value(field).take()
    }

    /// Reads the fields `tag` uses from an event object, taking their values out of it.
    pub(super) fn from_map(tag: Tag, map: &mut JsonMap) -> Result<Self, InvalidEvent> {
        let mut parts = Self {
            metadata: match map.remove("metadata") {
                None | Some(Value::Null) => JsonMap::new(),
                Some(Value::Object(metadata)) => metadata,
                Some(_) => return Err(InvalidEvent::new("`metadata` must be an object")),
            },
            timestamp: timestamp_of(map.get("timestamp"))?,
            ..Self::default()
        };
        for &field in tag.fields() {
            let key = field.key();
            let value = map.remove(key);
            match field.shape() {
                Shape::Str => {
                    *parts.string(field) = match value {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s),
                        Some(_) => {
                            return Err(InvalidEvent::new(format!("`{key}` must be a string")));
                        }
                    }
                }
                Shape::Bool => {
                    *parts.flag(field) = match value {
                        None | Some(Value::Null) => None,
                        Some(Value::Bool(b)) => Some(b),
                        Some(_) => {
                            return Err(InvalidEvent::new(format!("`{key}` must be a boolean")));
                        }
                    }
                }
                Shape::Number => {
                    parts.confidence = match value {
                        None | Some(Value::Null) => None,
                        Some(Value::Number(n)) => Some(n),
                        Some(_) => {
                            return Err(InvalidEvent::new(format!("`{key}` must be a number")));
                        }
                    }
                }
                Shape::Any => *parts.value(field) = value,
                Shape::Special => {
                    parts.parse_data = match value {
                        None | Some(Value::Null) => NluPart::Absent,
                        Some(Value::Object(p)) => NluPart::Given(p),
                        Some(_) => return Err(InvalidEvent::new("`parse_data` must be an object")),
                    }
                }
            }
        }
        Ok(parts)
    }

    /// Builds the event as Rasa's `Event.from_parameters` does. `source` is the event's JSON
    /// text when it was read from text, kept by a user message whose NLU result is in it.
    pub(super) fn build(mut self, tag: Tag, source: Option<&str>) -> Result<Event, InvalidEvent> {
        use Field as F;
        let kind = match tag {
            Tag::User => {
                let text = self.take_string(F::Text);
                let input_channel = self.take_string(F::InputChannel);
                let message_id = self.take_string(F::MessageId);
                let parse_data = match (std::mem::take(&mut self.parse_data), source) {
                    (NluPart::InText, Some(source)) => {
                        let user = UserUttered::deferred(
                            text,
                            input_channel,
                            message_id,
                            Arc::from(source),
                        );
                        return Ok(self.finish(EventKind::UserUttered(user)));
                    }
                    (NluPart::InText, None) => {
                        return Err(InvalidEvent::new("the event's text is missing"));
                    }
                    (NluPart::Given(map), _) => Some(map),
                    (NluPart::Absent, _) => None,
                };
                EventKind::UserUttered(UserUttered::new(
                    text,
                    parse_data,
                    input_channel,
                    message_id,
                    &self.metadata,
                ))
            }
            Tag::UserFeaturization => EventKind::DefinePrevUserUtteredFeaturization {
                use_text_for_featurization: self.flag_or(F::UseTextForFeaturization, false),
            },
            Tag::Entities => EventKind::EntitiesAdded {
                entities: match self.take_value(F::Entities) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(list)) => list,
                    Some(_) => return Err(InvalidEvent::new("`entities` must be a list")),
                },
            },
            Tag::Bot => EventKind::BotUttered {
                text: self.take_string(F::Text),
                data: match self.take_value(F::Data) {
                    Some(data) if truthy(&data) => data,
                    _ => Value::Object(JsonMap::new()),
                },
            },
            Tag::Slot => EventKind::SlotSet {
                name: self.required_string(F::Name)?,
                value: self.take_value(F::Value).unwrap_or(Value::Null),
            },
            Tag::Restart => EventKind::Restarted,
            Tag::Rewind => EventKind::UserUtteranceReverted,
            Tag::ResetSlots => EventKind::AllSlotsReset,
            Tag::Reminder => EventKind::ReminderScheduled {
                intent: self.take_string(F::Intent),
                date_time: self.required_string(F::DateTime)?,
                entities: self.take_value(F::Entities).unwrap_or(Value::Null),
                name: self
                    .take_string(F::Name)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                kill_on_user_msg: self.flag_or(F::KillOnUserMsg, true),
            },
            Tag::CancelReminder => EventKind::ReminderCancelled {
                name: self.take_string(F::Name),
                intent: self.take_string(F::Intent),
                entities: self.take_value(F::Entities),
            },
            Tag::Undo => EventKind::ActionReverted,
            Tag::Export => EventKind::StoryExported {
                path: self.take_string(F::Path),
            },
            Tag::Followup => EventKind::FollowupAction {
                name: self.required_string(F::Name)?,
            },
            Tag::Pause => EventKind::ConversationPaused,
            Tag::Resume => EventKind::ConversationResumed,
            Tag::Action => {
                let name = self.take_string(F::Name);
                let action_text = self.take_string(F::ActionText);
                if name.is_none() && action_text.is_none() {
                    return Err(InvalidEvent::new(
                        "an `action` event needs `name` or `action_text`",
                    ));
                }
                EventKind::ActionExecuted {
                    name,
                    policy: self.take_string(F::Policy),
                    confidence: self.confidence.take(),
                    action_text,
                    hide_rule_turn: self.flag_or(F::HideRuleTurn, false),
                }
            }
            Tag::Agent => EventKind::AgentUttered {
                text: self.take_string(F::Text),
                data: self.take_value(F::Data).unwrap_or(Value::Null),
            },
            Tag::ActiveLoop => EventKind::ActiveLoop {
                name: self.take_string(F::Name),
            },
            Tag::LoopInterrupted => EventKind::LoopInterrupted {
                is_interrupted: self.flag_or(F::IsInterrupted, false),
            },
            Tag::FormValidation => EventKind::LoopInterrupted {
                is_interrupted: !self.flag_or(F::Validate, true),
            },
            Tag::ActionExecutionRejected => EventKind::ActionExecutionRejected {
                name: self.required_string(F::Name)?,
                policy: self.take_string(F::Policy),
                confidence: self.confidence.take(),
            },
            Tag::SessionStarted => EventKind::SessionStarted,
        };
        Ok(self.finish(kind))
    }

    /// The event of `kind` with these parts' timestamp (the current time for a missing,
    /// `null` or zero one) and metadata.
    fn finish(self, kind: EventKind) -> Event {
        Event {
            timestamp: self
                .timestamp
                .filter(|timestamp| *timestamp != 0.0)
                .unwrap_or_else(now),
            metadata: self.metadata,
            kind,
        }
    }
}

/// The timestamp as given: `None` when missing or `null`.
pub(super) fn timestamp_of(value: Option<&Value>) -> Result<Option<f64>, InvalidEvent> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| InvalidEvent::new("`timestamp` is not a number")),
        Some(_) => Err(InvalidEvent::new("`timestamp` must be a number")),
    }
}

/// Parses an event object (see [`Event::from_value`]).
pub(super) fn from_value(value: Value) -> Result<Event, InvalidEvent> {
    let Value::Object(mut map) = value else {
        return Err(InvalidEvent::new("an event must be a JSON object"));
    };
    let tag = match map.get("event") {
        Some(Value::String(tag)) => Tag::from_name(tag),
        Some(_) => return Err(InvalidEvent::new("`event` must be a string")),
        None => return Err(InvalidEvent::new("missing `event` key")),
    };
    let Some(tag) = tag else {
        let metadata = match map.get("metadata") {
            None | Some(Value::Null) => JsonMap::new(),
            Some(Value::Object(metadata)) => metadata.clone(),
            Some(_) => return Err(InvalidEvent::new("`metadata` must be an object")),
        };
        let timestamp = timestamp_of(map.get("timestamp"))?
            .filter(|timestamp| *timestamp != 0.0)
            .unwrap_or(0.0);
        return Ok(Event {
            timestamp,
            metadata,
            kind: EventKind::Unknown(UnknownEvent { raw: map }),
        });
    };
    Parts::from_map(tag, &mut map)?.build(tag, None)
}

/// Parses an event's JSON text in one pass, or `None` when the text needs the general way
/// (see the module docs): then [`from_value`] gives the event or the error.
pub(super) fn from_text(text: &str) -> Option<Event> {
    let mut scanner = Scanner::new(text);
    scanner.begin_object()?;
    let mut first = true;
    let key = scanner.next_key(&mut first)??;
    if key.plain_str()? != "event" {
        return None;
    }
    let tag = Tag::from_name(scanner.value(1)?.plain_str()?)?;
    let mut parts = Parts::default();
    while let Some(key) = scanner.next_key(&mut first)? {
        let value = scanner.value(1)?;
        let field = match Field::from_key(key.plain_str()?) {
            Some(Field::Event) => return None,
            Some(field) if tag.reads(field) => field,
            // Checked by the scanner, not read.
            _ => continue,
        };
        match field {
            Field::Timestamp => parts.timestamp = timestamp(value)?,
            Field::Metadata => parts.metadata = typed::<JsonMap>(value)?.unwrap_or_default(),
            Field::ParseData => {
                parts.parse_data = match value.kind {
                    Kind::Null => NluPart::Absent,
                    Kind::Object => NluPart::InText,
                    _ => return None,
                }
            }
            _ => match field.shape() {
                Shape::Str => *parts.string(field) = string(value)?,
                Shape::Bool => {
                    *parts.flag(field) = match value.kind {
                        Kind::Null => None,
                        Kind::Bool(flag) => Some(flag),
                        _ => return None,
                    }
                }
                Shape::Number => parts.confidence = number(value)?,
                Shape::Any => *parts.value(field) = Some(serde_json::from_str(value.text).ok()?),
                Shape::Special => return None,
            },
        }
    }
    if !scanner.at_end() {
        return None;
    }
    parts.build(tag, Some(text)).ok()
}

/// A value read as `T` by `serde_json`, `None` for `null`; `Err` when it is not a `T`.
fn typed<T: serde::de::DeserializeOwned>(span: Span<'_>) -> Option<Option<T>> {
    match span.kind {
        Kind::Null => Some(None),
        _ => serde_json::from_str(span.text).ok().map(Some),
    }
}

/// A timestamp: a number or `null`. Any JSON number is also Rust float syntax, and both
/// `serde_json` (built with `float_roundtrip`) and Rust round to the nearest `f64`, so this is
/// what reading the number with `serde_json` and taking `as_f64` gives (but for the sign of
/// `-0`, which is a zero either way and so the current time).
fn timestamp(span: Span<'_>) -> Option<Option<f64>> {
    match span.kind {
        Kind::Null => Some(None),
        Kind::Number => span.text.parse().ok().map(Some),
        _ => None,
    }
}

/// A number or `null`, as `serde_json` reads it: a float when written with a fraction or an
/// exponent (the nearest `f64`, see [`timestamp`]), otherwise an integer.
fn number(span: Span<'_>) -> Option<Option<Number>> {
    match span.kind {
        Kind::Null => Some(None),
        Kind::Number if span.text.contains(['.', 'e', 'E']) => {
            Number::from_f64(span.text.parse().ok()?).map(Some)
        }
        _ => typed(span),
    }
}

/// A string or `null`.
fn string(span: Span<'_>) -> Option<Option<String>> {
    match span.kind {
        Kind::Null => Some(None),
        Kind::String { escaped: false } => span.plain_str().map(|s| Some(s.to_owned())),
        Kind::String { escaped: true } => serde_json::from_str(span.text).ok().map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::json::to_python_json;

    /// Golden events as Rasa wrote them, and the inputs Rasa's loader was given.
    fn golden_objects() -> Vec<Value> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracker-conformance/golden");
        let mut objects = Vec::new();
        for (file, key) in [("events.jsonl", "as_dict"), ("deserialize.jsonl", "input")] {
            let text = std::fs::read_to_string(dir.join(file)).expect("golden file");
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                let line: Value = serde_json::from_str(line).expect("JSON line");
                let mut object = line[key].clone();
                if let Some(map) = object.as_object_mut() {
                    if map.get("timestamp").is_none_or(|t| !t.is_number()) {
                        map.insert("timestamp".into(), json!(1700000000.5));
                    }
                    // A reminder without a name gets a random one: give it one.
                    if map.get("event") == Some(&json!("reminder")) {
                        map.entry("name").or_insert(json!("r"));
                    }
                }
                objects.push(object);
            }
        }
        objects
    }

    /// Reads `text` in one pass if it can, and through a `Value`; the one-pass reader must
    /// give exactly the event (and the text) the general way gives, or leave the text to it.
    /// Returns whether the one-pass reader read it.
    fn check(text: &str) -> bool {
        let general = serde_json::from_str::<Value>(text)
            .map_err(|e| InvalidEvent::new(e.to_string()))
            .and_then(from_value);
        if let Ok(event) = &general {
            // The direct writer writes what serde with the Python formatter writes.
            assert_eq!(
                event.to_rasa_json(),
                to_python_json(event).expect("render"),
                "{text}"
            );
        }
        let Some(fast) = from_text(text) else {
            return false;
        };
        let mut general = general
            .unwrap_or_else(|e| panic!("{text}: read in one pass, but the general way says {e}"));
        // What each way makes up: the current time for a missing timestamp, a random
        // reminder name.
        let now = 1.75e9..1e10;
        if now.contains(&fast.timestamp) && now.contains(&general.timestamp) {
            general.timestamp = fast.timestamp;
        }
        if let (
            EventKind::ReminderScheduled { name, .. },
            EventKind::ReminderScheduled { name: made_up, .. },
        ) = (&fast.kind, &mut general.kind)
        {
            made_up.clone_from(name);
        }
        assert_eq!(fast.to_rasa_json(), general.to_rasa_json(), "{text}");
        assert_eq!(fast, general, "{text}");
        true
    }

    #[test]
    fn one_pass_reads_what_rasa_writes_as_the_general_way_does() {
        let objects = golden_objects();
        let mut fast = 0;
        for object in &objects {
            let rasa_text = to_python_json(object).expect("render");
            fast += usize::from(check(&rasa_text));
            check(&serde_json::to_string(object).expect("render"));
            check(&serde_json::to_string_pretty(object).expect("render"));
        }
        // Every object with a known tag first is read in one pass.
        let known = objects
            .iter()
            .filter(|o| {
                o["event"]
                    .as_str()
                    .is_some_and(|tag| Tag::from_name(tag).is_some())
            })
            .count();
        assert!(
            known >= 60 && fast == known,
            "{fast} of {known} read in one pass"
        );
    }

    #[test]
    fn one_pass_agrees_on_odd_and_broken_events() {
        let odd_values = [
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1e300),
            json!("s"),
            json!("caf\u{e9} \u{1F355} \"q\""),
            json!([]),
            json!([1, {"a": null}]),
            json!({}),
            json!({"name": "x", "intent": {"name": "y"}}),
        ];
        for object in golden_objects() {
            let Some(map) = object.as_object() else {
                continue;
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys.iter().chain([&"extra".to_owned()]) {
                for value in &odd_values {
                    let mut changed = map.clone();
                    changed.insert(key.clone(), value.clone());
                    check(&to_python_json(&changed).expect("render"));
                }
                let mut without = map.clone();
                without.shift_remove(key);
                check(&to_python_json(&without).expect("render"));
            }
            let text = to_python_json(&object).expect("render");
            let inner = &text[1..text.len() - 1];
            for extra in [
                r#""name": "dup""#,
                r#""event": "bot""#,
                r#""text": 5"#,
                r#""x": 1e400"#,
                r#""x": "\ud800""#,
                r#""x": "\ud83c\udf55""#,
                r#""x": 1e-400"#,
                r#""timestamp": -0"#,
                r#""timestamp": 1.7e9"#,
                r#""timestamp": 123456789012345678901234"#,
                r#""confidence": 1e2"#,
                r#""confidence": -0"#,
                r#""confidence": 18446744073709551616"#,
                r#""x": 01"#,
                r#""x": [1,]"#,
                r#""parse_data": {"intent": {"name": "late"}}"#,
            ] {
                check(&format!("{{{inner}, {extra}}}"));
                check(&format!("{{{extra}, {inner}}}"));
            }
            check(&format!("{text} x"));
            check(&format!("  {text}\n"));
            check(&text[..text.len() - 1]);
        }
    }

    #[test]
    fn one_pass_agrees_on_every_one_byte_change() {
        let replacements = b"\"\\{}[],:0-e.+ \n\x01ux9";
        let mut state: u64 = 1;
        for object in golden_objects() {
            let text = to_python_json(&object).expect("render");
            for _ in 0..200 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let position = (state >> 33) as usize % text.len();
                let byte = replacements[(state >> 20) as usize % replacements.len()];
                let mut bytes = text.clone().into_bytes();
                bytes[position] = byte;
                if let Ok(changed) = String::from_utf8(bytes) {
                    check(&changed);
                }
            }
        }
    }

    #[test]
    fn a_user_message_builds_its_nlu_result_from_its_text_when_asked() {
        let text = r#"{"event": "user", "timestamp": 2.5, "metadata": {"m": 1}, "text": "hi", "parse_data": {"intent": {"name": "greet", "confidence": 0.9}, "entities": [{"entity": "e", "value": "v"}], "intent_ranking": [{"name": "greet", "confidence": 0.9}]}, "input_channel": "rest", "message_id": "m1"}"#;
        let event = from_text(text).expect("read in one pass");
        let EventKind::UserUttered(user) = &event.kind else {
            panic!("a user message");
        };
        assert!(
            matches!(&user.nlu, super::super::Nlu::Deferred { built, .. } if built.get().is_none())
        );
        assert_eq!(user.intent_name(), Some("greet"));
        assert_eq!(user.entities(), &[json!({"entity": "e", "value": "v"})]);
        assert_eq!(
            user.parse_data().keys().collect::<Vec<_>>(),
            [
                "intent",
                "entities",
                "text",
                "message_id",
                "metadata",
                "intent_ranking"
            ]
        );
        assert_eq!(user.parse_data()["metadata"], json!({"m": 1}));
        let mut changed = user.clone();
        changed.add_entity(&json!({"entity": "f", "value": "w"}));
        assert_eq!(changed.entities().len(), 2);
        assert_eq!(
            changed.parse_data()["entities"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            user.entities().len(),
            1,
            "the clone changed, not the original"
        );
    }
}
