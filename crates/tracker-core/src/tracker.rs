//! A conversation and the state Rasa derives from its events.
//!
//! [`Tracker`] reproduces Rasa 3.6's `DialogueStateTracker`: applying an event changes
//! slots, the latest user message, bot utterance and action, the follow-up action, the
//! paused flag and the active loop exactly as Rasa's `Event.apply_to` does, and
//! [`Tracker::current_state`] gives the body of Rasa's `GET /conversations/<id>/tracker`.

use serde_json::{Number, Value};

use crate::domain::Domain;
use crate::event::{ACTION_LISTEN, ACTION_SESSION_START, Event, EventKind, JsonMap};

/// Which events [`Tracker::current_state`] includes (Rasa's `EventVerbosity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventVerbosity {
    /// No events: `events` is `null`.
    None,
    /// The events [`Tracker::applied_events`] keeps.
    Applied,
    /// Every event after the last `restart`.
    AfterRestart,
    /// Every event.
    All,
}

impl std::str::FromStr for EventVerbosity {
    type Err = String;

    /// Parses `ALL`, `APPLIED`, `AFTER_RESTART` or `NONE`, case-insensitively, as Rasa's
    /// `include_events` parameter.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ALL" => Ok(Self::All),
            "APPLIED" => Ok(Self::Applied),
            "AFTER_RESTART" => Ok(Self::AfterRestart),
            "NONE" => Ok(Self::None),
            _ => Err(format!(
                "unknown event verbosity {s:?}: expected ALL, APPLIED, AFTER_RESTART or NONE"
            )),
        }
    }
}

/// The latest action, as Rasa's `tracker.latest_action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatestAction {
    /// No action yet (`{}`).
    None,
    /// An action by name (`{"action_name": ...}`).
    Name(String),
    /// End-to-end bot text (`{"action_text": ...}`).
    Text(Option<String>),
}

/// The active loop (form), as Rasa's `tracker.active_loop`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveLoop {
    /// The loop's name.
    pub name: String,
    /// Whether the loop is interrupted.
    pub is_interrupted: bool,
    /// Whether the loop's action was rejected.
    pub rejected: bool,
    /// Index into [`Tracker::events`] of the user message that triggered the loop; `None`
    /// when no user message preceded it.
    pub trigger_message: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct Slot {
    name: String,
    value: Value,
    initial: Value,
}

/// A conversation: its sender id, its events, and the state derived from them.
///
/// A tracker also remembers how much of it is already stored: the events read from a store
/// (or written by the last save) are not written again, so saving a tracker twice never
/// duplicates events.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    sender_id: String,
    events: Vec<Event>,
    slots: Vec<Slot>,
    any_slot: bool,
    latest_message: Option<usize>,
    latest_bot_utterance: Option<usize>,
    latest_action: LatestAction,
    followup_action: Option<String>,
    paused: bool,
    active_loop: Option<ActiveLoop>,
    model_id: Option<String>,
    assistant_id: Option<String>,
    stored_events: usize,
    version: u64,
    first_seq: u64,
}

impl Tracker {
    /// A new tracker with the domain's slots at their initial values.
    pub fn new(sender_id: impl Into<String>, domain: &Domain) -> Self {
        let slots = domain
            .slots()
            .iter()
            .map(|definition| Slot {
                name: definition.name.clone(),
                value: definition.initial_value.clone(),
                initial: definition.initial_value.clone(),
            })
            .collect();
        Self::with_slots(sender_id.into(), slots, false)
    }

    /// A new tracker without a domain: any slot can be set (Rasa's `AnySlotDict`).
    pub fn without_domain(sender_id: impl Into<String>) -> Self {
        Self::with_slots(sender_id.into(), Vec::new(), true)
    }

    fn with_slots(sender_id: String, slots: Vec<Slot>, any_slot: bool) -> Self {
        Self {
            sender_id,
            events: Vec::new(),
            slots,
            any_slot,
            latest_message: None,
            latest_bot_utterance: None,
            latest_action: LatestAction::None,
            followup_action: Some(ACTION_LISTEN.to_owned()),
            paused: false,
            active_loop: None,
            model_id: None,
            assistant_id: None,
            stored_events: 0,
            version: 0,
            first_seq: 1,
        }
    }

    /// A tracker built by applying `events` in order (Rasa's `DialogueStateTracker.from_events`).
    pub fn from_events(
        sender_id: impl Into<String>,
        events: impl IntoIterator<Item = Event>,
        domain: &Domain,
    ) -> Self {
        let mut tracker = Self::new(sender_id, domain);
        tracker.extend(events);
        tracker
    }

    /// The conversation's id.
    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }

    /// Every event, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Sets the model id Rasa copies into each new event's metadata (`model_id`).
    pub fn set_model_id(&mut self, model_id: Option<String>) {
        self.model_id = model_id;
    }

    /// Sets the assistant id Rasa copies into each new event's metadata (`assistant_id`).
    pub fn set_assistant_id(&mut self, assistant_id: Option<String>) {
        self.assistant_id = assistant_id;
    }

    /// Appends an event and applies it (Rasa's `tracker.update`).
    pub fn update(&mut self, mut event: Event) {
        for (key, id) in [
            ("model_id", &self.model_id),
            ("assistant_id", &self.assistant_id),
        ] {
            if let Some(id) = id
                && !event.metadata.contains_key(key)
            {
                event
                    .metadata
                    .insert(key.to_owned(), Value::String(id.clone()));
            }
        }
        event.sync_unknown();
        self.events.push(event);
        self.apply(self.events.len() - 1);
    }

    /// Appends and applies several events.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.update(event);
        }
    }

    fn apply(&mut self, index: usize) {
        let event = &self.events[index];
        match &event.kind {
            EventKind::UserUttered(_) => {
                self.latest_message = Some(index);
                self.followup_action = None;
            }
            EventKind::DefinePrevUserUtteredFeaturization { .. } => {}
            EventKind::EntitiesAdded { entities } => {
                if self.latest_action_name() != Some(ACTION_LISTEN) {
                    return;
                }
                let Some(message) = self.latest_message else {
                    return;
                };
                let entities = entities.clone();
                if let EventKind::UserUttered(user) = &mut self.events[message].kind {
                    for entity in &entities {
                        user.add_entity(entity);
                    }
                }
            }
            EventKind::BotUttered { .. } => self.latest_bot_utterance = Some(index),
            EventKind::SlotSet { name, value } => {
                let (name, value) = (name.clone(), value.clone());
                self.set_slot(name, value);
            }
            EventKind::Restarted => {
                self.reset();
                self.followup_action = Some(ACTION_SESSION_START.to_owned());
            }
            EventKind::UserUtteranceReverted | EventKind::ActionReverted => {
                self.reset();
                for applied in self.applied_event_indices() {
                    self.apply(applied);
                }
            }
            EventKind::AllSlotsReset => self.reset_slots(),
            EventKind::FollowupAction { name } => self.followup_action = Some(name.clone()),
            EventKind::ConversationPaused => self.paused = true,
            EventKind::ConversationResumed => self.paused = false,
            EventKind::ActionExecuted {
                name, action_text, ..
            } => {
                let action = match name {
                    Some(name) if !name.is_empty() => LatestAction::Name(name.clone()),
                    _ => LatestAction::Text(action_text.clone()),
                };
                if let Some(active) = &mut self.active_loop {
                    // Any action while a loop is active ends the interruption; the loop's
                    // own action also clears a rejection.
                    active.is_interrupted = false;
                    if matches!(&action, LatestAction::Name(name) if *name == active.name) {
                        active.rejected = false;
                    }
                }
                self.latest_action = action;
                self.followup_action = None;
            }
            EventKind::ActiveLoop { name } => {
                self.active_loop = name.as_ref().map(|name| ActiveLoop {
                    name: name.clone(),
                    is_interrupted: false,
                    rejected: false,
                    trigger_message: self.latest_message,
                });
            }
            EventKind::LoopInterrupted { is_interrupted } => {
                if let Some(active) = &mut self.active_loop {
                    active.is_interrupted = *is_interrupted;
                }
            }
            EventKind::ActionExecutionRejected { name, .. } => {
                if let Some(active) = &mut self.active_loop
                    && &active.name == name
                {
                    active.rejected = true;
                }
            }
            EventKind::SessionStarted => self.reset(),
            EventKind::ReminderScheduled { .. }
            | EventKind::ReminderCancelled { .. }
            | EventKind::StoryExported { .. }
            | EventKind::AgentUttered { .. }
            | EventKind::Unknown(_) => {}
        }
    }

    fn set_slot(&mut self, name: String, value: Value) {
        if let Some(slot) = self.slots.iter_mut().find(|slot| slot.name == name) {
            slot.value = value;
        } else if self.any_slot {
            self.slots.push(Slot {
                name,
                value,
                initial: Value::Null,
            });
        } else {
            tracing::warn!(
                sender_id = %self.sender_id,
                slot = %name,
                "tried to set a slot that is not in the domain; ignored"
            );
        }
    }

    fn reset_slots(&mut self) {
        for slot in &mut self.slots {
            slot.value = slot.initial.clone();
        }
    }

    /// Rasa's `_reset`: everything but the events back to the initial state.
    fn reset(&mut self) {
        self.reset_slots();
        self.paused = false;
        self.latest_action = LatestAction::None;
        self.latest_message = None;
        self.latest_bot_utterance = None;
        self.followup_action = Some(ACTION_LISTEN.to_owned());
        self.active_loop = None;
    }

    /// The value of a slot, if the tracker has that slot.
    pub fn slot(&self, name: &str) -> Option<&Value> {
        self.slots
            .iter()
            .find(|slot| slot.name == name)
            .map(|slot| &slot.value)
    }

    /// Every slot with its current value, in domain order.
    pub fn slots(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.slots
            .iter()
            .map(|slot| (slot.name.as_str(), &slot.value))
    }

    /// The latest user message, if any.
    pub fn latest_message(&self) -> Option<&Event> {
        self.latest_message.map(|index| &self.events[index])
    }

    /// The latest bot utterance, if any.
    pub fn latest_bot_utterance(&self) -> Option<&Event> {
        self.latest_bot_utterance.map(|index| &self.events[index])
    }

    /// The latest action.
    pub fn latest_action(&self) -> &LatestAction {
        &self.latest_action
    }

    /// The latest action's name, or its text for end-to-end bot text.
    pub fn latest_action_name(&self) -> Option<&str> {
        match &self.latest_action {
            LatestAction::None => None,
            LatestAction::Name(name) => Some(name),
            LatestAction::Text(text) => text.as_deref(),
        }
    }

    /// The action to run next regardless of predictions, if any.
    pub fn followup_action(&self) -> Option<&str> {
        self.followup_action.as_deref()
    }

    /// Whether the conversation is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The active loop (form), if any.
    pub fn active_loop(&self) -> Option<&ActiveLoop> {
        self.active_loop.as_ref()
    }

    /// The `input_channel` of the last user message.
    pub fn latest_input_channel(&self) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find_map(|event| match &event.kind {
                EventKind::UserUttered(user) => Some(user.input_channel.as_deref()),
                _ => None,
            })?
    }

    /// The events Rasa treats as applied: without those reverted by `undo` / `rewind`, without
    /// those before the last `restart` or `session_started`, and with repeated executions of a
    /// loop collapsed (Rasa's `applied_events()`).
    pub fn applied_events(&self) -> Vec<&Event> {
        self.applied_event_indices()
            .into_iter()
            .map(|index| &self.events[index])
            .collect()
    }

    /// Indices into [`Tracker::events`] of [`Tracker::applied_events`].
    pub fn applied_event_indices(&self) -> Vec<usize> {
        let loop_names: Vec<&str> = self
            .events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::ActiveLoop { name: Some(name) } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let mut applied: Vec<usize> = Vec::new();
        for (index, event) in self.events.iter().enumerate() {
            match &event.kind {
                EventKind::Restarted | EventKind::SessionStarted => applied.clear(),
                EventKind::ActionReverted => self.undo_till_previous(&mut applied, is_action),
                EventKind::UserUtteranceReverted => {
                    self.undo_till_previous(&mut applied, is_user);
                    self.undo_till_previous(&mut applied, is_action);
                }
                EventKind::ActionExecuted {
                    name: Some(name), ..
                } if loop_names.contains(&name.as_str())
                    && !self.first_loop_execution_or_unhappy_path(name, &applied) =>
                {
                    self.undo_till_previous_loop_execution(name, &mut applied);
                }
                _ => applied.push(index),
            }
        }
        applied
    }

    fn undo_till_previous(&self, applied: &mut Vec<usize>, matches: fn(&Event) -> bool) {
        while let Some(index) = applied.pop() {
            if matches(&self.events[index]) {
                break;
            }
        }
    }

    fn first_loop_execution_or_unhappy_path(&self, loop_name: &str, applied: &[usize]) -> bool {
        let mut next_action: Option<&str> = None;
        for &index in applied.iter().rev() {
            let event = &self.events[index];
            match &event.kind {
                EventKind::ActiveLoop { name: None } => return true,
                EventKind::ActionExecutionRejected { name, .. } if name == loop_name => {
                    return true;
                }
                EventKind::UserUttered(_) if next_action.is_some_and(|next| next != loop_name) => {
                    return true;
                }
                EventKind::ActionExecuted { name, .. } => {
                    if name.as_deref() == Some(loop_name) {
                        return false;
                    }
                    next_action = name.as_deref();
                }
                _ => {}
            }
        }
        true
    }

    fn undo_till_previous_loop_execution(&self, loop_name: &str, applied: &mut Vec<usize>) {
        let mut offset = 0;
        let mut position = applied.len();
        while position > 0 {
            position -= 1;
            let event = &self.events[applied[position]];
            match &event.kind {
                EventKind::ActionExecuted { name, .. } if name.as_deref() == Some(loop_name) => {
                    break;
                }
                EventKind::ActionExecuted { .. }
                | EventKind::UserUttered(_)
                | EventKind::DefinePrevUserUtteredFeaturization { .. } => {
                    let remove = applied.len() - 1 - offset;
                    applied.remove(remove);
                }
                _ => offset += 1,
            }
        }
    }

    /// Index of the first event after the last `restart` (0 if there is none).
    pub fn index_after_latest_restart(&self) -> usize {
        self.events
            .iter()
            .rposition(|event| matches!(event.kind, EventKind::Restarted))
            .map_or(0, |index| index + 1)
    }

    /// Index where the latest session starts: the last `session_started` event, or the
    /// `action_session_start` action right before it; 0 when there is no session start.
    ///
    /// This is the one session boundary every store uses (see `docs/architecture.md`).
    pub fn latest_session_start(&self) -> usize {
        latest_session_start(&self.events)
    }

    /// The events split into sessions at every session boundary (see
    /// [`Tracker::latest_session_start`]). Events before the first session start, if any,
    /// form the first slice.
    pub fn sessions(&self) -> Vec<&[Event]> {
        let mut starts: Vec<usize> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, event)| matches!(event.kind, EventKind::SessionStarted))
            .map(|(index, _)| session_boundary(&self.events, index))
            .filter(|&start| start > 0)
            .collect();
        starts.dedup();
        let mut sessions = Vec::with_capacity(starts.len() + 1);
        let mut from = 0;
        for start in starts {
            if start > from {
                sessions.push(&self.events[from..start]);
                from = start;
            }
        }
        if from < self.events.len() {
            sessions.push(&self.events[from..]);
        }
        sessions
    }

    /// A new tracker holding the events up to the first one later than `timestamp` (Rasa's
    /// `travel_back_in_time`: replay stops at the first event not at or before it, so a NaN
    /// `timestamp` keeps no event).
    pub fn travel_back_in_time(&self, timestamp: f64) -> Tracker {
        let mut tracker = self.empty_copy();
        for event in &self.events {
            match event.timestamp.partial_cmp(&timestamp) {
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal) => {
                    tracker.update(event.clone());
                }
                _ => break,
            }
        }
        tracker
    }

    fn empty_copy(&self) -> Tracker {
        let slots = self
            .slots
            .iter()
            .filter(|_| !self.any_slot)
            .map(|slot| Slot {
                name: slot.name.clone(),
                value: slot.initial.clone(),
                initial: slot.initial.clone(),
            })
            .collect();
        let mut tracker = Self::with_slots(self.sender_id.clone(), slots, self.any_slot);
        tracker.model_id = self.model_id.clone();
        tracker.assistant_id = self.assistant_id.clone();
        tracker
    }

    fn message_data(&self, index: Option<usize>, with_added_entities: bool) -> Value {
        let user = index.and_then(|index| match &self.events[index].kind {
            EventKind::UserUttered(user) => Some(user),
            _ => None,
        });
        let Some(user) = user else {
            let mut empty = JsonMap::new();
            empty.insert("intent".into(), Value::Object(JsonMap::new()));
            empty.insert("entities".into(), Value::Array(Vec::new()));
            empty.insert("text".into(), Value::Null);
            empty.insert("message_id".into(), Value::Null);
            empty.insert("metadata".into(), Value::Object(JsonMap::new()));
            return Value::Object(empty);
        };
        let mut data = user.parse_data().clone();
        if with_added_entities {
            data.insert("entities".into(), Value::Array(user.entities().to_vec()));
        }
        Value::Object(data)
    }

    /// Rasa's `current_state(verbosity)`: the body of `GET /conversations/<id>/tracker`.
    pub fn current_state(&self, verbosity: EventVerbosity) -> Value {
        let events = match verbosity {
            EventVerbosity::None => Value::Null,
            EventVerbosity::Applied => {
                Value::Array(self.applied_events().iter().map(|e| e.to_value()).collect())
            }
            EventVerbosity::AfterRestart => Value::Array(
                self.events[self.index_after_latest_restart()..]
                    .iter()
                    .map(Event::to_value)
                    .collect(),
            ),
            EventVerbosity::All => Value::Array(self.events.iter().map(Event::to_value).collect()),
        };
        let mut slots = JsonMap::new();
        for slot in &self.slots {
            slots.insert(slot.name.clone(), slot.value.clone());
        }
        let latest_event_time = self.events.last().map_or(Value::Null, |event| {
            Number::from_f64(event.timestamp).map_or(Value::Null, Value::Number)
        });
        let active_loop = match &self.active_loop {
            None => JsonMap::new(),
            Some(active) => {
                let mut map = JsonMap::new();
                map.insert("name".into(), Value::String(active.name.clone()));
                map.insert("is_interrupted".into(), Value::Bool(active.is_interrupted));
                map.insert("rejected".into(), Value::Bool(active.rejected));
                map.insert(
                    "trigger_message".into(),
                    self.message_data(active.trigger_message, false),
                );
                map
            }
        };
        let latest_action = match &self.latest_action {
            LatestAction::None => JsonMap::new(),
            LatestAction::Name(name) => {
                JsonMap::from_iter([("action_name".to_owned(), Value::String(name.clone()))])
            }
            LatestAction::Text(text) => JsonMap::from_iter([(
                "action_text".to_owned(),
                text.clone().map_or(Value::Null, Value::String),
            )]),
        };
        let mut state = JsonMap::new();
        state.insert("sender_id".into(), Value::String(self.sender_id.clone()));
        state.insert("slots".into(), Value::Object(slots));
        state.insert(
            "latest_message".into(),
            self.message_data(self.latest_message, true),
        );
        state.insert("latest_event_time".into(), latest_event_time);
        state.insert(
            "followup_action".into(),
            self.followup_action
                .clone()
                .map_or(Value::Null, Value::String),
        );
        state.insert("paused".into(), Value::Bool(self.paused));
        state.insert("events".into(), events);
        state.insert(
            "latest_input_channel".into(),
            self.latest_input_channel()
                .map_or(Value::Null, |c| Value::String(c.to_owned())),
        );
        state.insert("active_loop".into(), Value::Object(active_loop));
        state.insert("latest_action".into(), Value::Object(latest_action));
        state.insert(
            "latest_action_name".into(),
            self.latest_action_name()
                .map_or(Value::Null, |n| Value::String(n.to_owned())),
        );
        Value::Object(state)
    }

    /// The events not yet written to a store: those added since the tracker was read or last
    /// saved.
    pub fn unsaved_events(&self) -> &[Event] {
        &self.events[self.stored_events..]
    }

    /// The stored version this tracker is based on: the number of events the conversation
    /// had in its store when the tracker was read or last saved (0 for a new conversation).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The sequence number (1-based position in the whole conversation) of this tracker's
    /// first event. Greater than 1 when only the latest session was read.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Marks every event as stored at `version`.
    pub(crate) fn mark_saved(&mut self, version: u64) {
        self.stored_events = self.events.len();
        self.version = version;
    }

    /// Marks the tracker as read from a store at `version`, its first event being `first_seq`.
    pub(crate) fn mark_loaded(&mut self, version: u64, first_seq: u64) {
        self.mark_saved(version);
        self.first_seq = first_seq;
    }
}

fn is_action(event: &Event) -> bool {
    matches!(event.kind, EventKind::ActionExecuted { .. })
}

fn is_user(event: &Event) -> bool {
    matches!(event.kind, EventKind::UserUttered(_))
}

/// Where the session started by the `session_started` event at `index` begins: at the
/// `action_session_start` action right before it, if there is one, otherwise at the event.
pub fn session_boundary(events: &[Event], index: usize) -> usize {
    if index > 0 && events[index - 1].is_action(ACTION_SESSION_START) {
        index - 1
    } else {
        index
    }
}

/// Index where the latest session of `events` starts (see [`Tracker::latest_session_start`]).
pub fn latest_session_start(events: &[Event]) -> usize {
    events
        .iter()
        .rposition(|event| matches!(event.kind, EventKind::SessionStarted))
        .map_or(0, |index| session_boundary(events, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SlotDefinition;
    use serde_json::json;

    fn ev(value: Value) -> Event {
        Event::from_value(value).expect("valid event")
    }

    #[test]
    fn any_action_ends_a_loop_interruption_but_only_the_loop_clears_a_rejection() {
        let mut tracker = Tracker::without_domain("loop");
        tracker.update(ev(
            json!({"event": "active_loop", "timestamp": 1.0, "name": "form"}),
        ));
        tracker.update(ev(
            json!({"event": "action_execution_rejected", "timestamp": 2.0, "name": "form"}),
        ));
        tracker.update(ev(
            json!({"event": "loop_interrupted", "timestamp": 3.0, "is_interrupted": true}),
        ));
        let active = tracker.active_loop().expect("active");
        assert!(active.is_interrupted && active.rejected);
        tracker.update(Event::action("utter_chitchat").at(4.0));
        let active = tracker.active_loop().expect("active");
        assert!(!active.is_interrupted && active.rejected);
        tracker.update(Event::action("form").at(5.0));
        assert!(!tracker.active_loop().expect("active").rejected);
        tracker.update(ev(
            json!({"event": "active_loop", "timestamp": 6.0, "name": null}),
        ));
        assert!(tracker.active_loop().is_none());
        assert_eq!(
            tracker.current_state(EventVerbosity::None)["active_loop"],
            json!({})
        );
    }

    #[test]
    fn slots_follow_the_domain_or_accept_anything_without_one() {
        let domain = Domain::with_slots(
            [SlotDefinition {
                name: "city".into(),
                initial_value: json!("berlin"),
            }],
            false,
        );
        let mut tracker = Tracker::new("slots", &domain);
        tracker.update(Event::slot("city", "paris").at(1.0));
        tracker.update(Event::slot("unknown", 1).at(2.0));
        assert_eq!(tracker.slot("city"), Some(&json!("paris")));
        assert_eq!(tracker.slot("unknown"), None);
        tracker.update(ev(json!({"event": "reset_slots", "timestamp": 3.0})));
        assert_eq!(tracker.slot("city"), Some(&json!("berlin")));

        let mut free = Tracker::without_domain("free");
        free.update(Event::slot("anything", json!([1, 2])).at(1.0));
        assert_eq!(free.slot("anything"), Some(&json!([1, 2])));
        free.update(Event::session_started().at(2.0));
        assert_eq!(free.slot("anything"), Some(&Value::Null));
    }

    #[test]
    fn entities_added_show_in_parse_data_only_when_nlu_had_entities() {
        let entity = json!({"entity": "city", "value": "berlin"});
        for (nlu_entities, shown_in_event) in [
            (json!([{"entity": "x", "value": 1}]), true),
            (json!([]), false),
        ] {
            let mut tracker = Tracker::without_domain("entities");
            tracker.update(Event::action("action_listen").at(1.0));
            tracker.update(ev(json!({"event": "user", "timestamp": 2.0, "text": "hi",
                "parse_data": {"intent": {"name": "greet"}, "entities": nlu_entities}})));
            tracker.update(ev(
                json!({"event": "entities", "timestamp": 3.0, "entities": [entity]}),
            ));
            let state = tracker.current_state(EventVerbosity::All);
            let latest = state["latest_message"]["entities"]
                .as_array()
                .expect("list");
            assert!(
                latest.contains(&entity),
                "latest_message always shows added entities"
            );
            let written = state["events"][1]["parse_data"]["entities"]
                .as_array()
                .expect("list");
            assert_eq!(written.contains(&entity), shown_in_event);
        }
        // Not after another action: entities belong to the message right after action_listen.
        let mut tracker = Tracker::without_domain("entities");
        tracker.update(ev(
            json!({"event": "user", "timestamp": 2.0, "text": "hi", "parse_data": {}}),
        ));
        tracker.update(Event::action("utter_x").at(3.0));
        tracker.update(ev(
            json!({"event": "entities", "timestamp": 4.0, "entities": [entity]}),
        ));
        let state = tracker.current_state(EventVerbosity::None);
        assert_eq!(state["latest_message"]["entities"], json!([]));
    }

    #[test]
    fn sessions_and_boundaries() {
        let events = vec![
            Event::slot("session_started_metadata", json!({"a": 1})).at(1.0),
            Event::action(ACTION_SESSION_START).at(2.0),
            Event::session_started().at(3.0),
            Event::user("hi", "greet", 1.0).at(4.0),
            Event::action(ACTION_SESSION_START).at(5.0),
            Event::session_started().at(6.0),
            Event::bot("again").at(7.0),
            Event::session_started().at(8.0),
            Event::bot("bare").at(9.0),
        ];
        let tracker = Tracker::from_events("s", events, &Domain::empty());
        assert_eq!(tracker.latest_session_start(), 7);
        let lengths: Vec<usize> = tracker.sessions().iter().map(|s| s.len()).collect();
        assert_eq!(lengths, vec![1, 3, 3, 2]);
        assert_eq!(latest_session_start(&tracker.events()[..7]), 4);
        assert_eq!(latest_session_start(&tracker.events()[..1]), 0);
    }

    #[test]
    fn travel_back_in_time_stops_at_the_first_later_event() {
        let events = vec![
            Event::bot("one").at(1.0),
            Event::bot("three").at(3.0),
            Event::bot("two").at(2.0),
        ];
        let tracker = Tracker::from_events("t", events, &Domain::empty());
        assert_eq!(tracker.travel_back_in_time(2.5).events().len(), 1);
        assert_eq!(tracker.travel_back_in_time(3.0).events().len(), 3);
        assert_eq!(tracker.travel_back_in_time(f64::NAN).events().len(), 0);
        assert_eq!(tracker.travel_back_in_time(f64::INFINITY).events().len(), 3);
    }

    #[test]
    fn model_and_assistant_ids_are_copied_into_new_events() {
        let mut tracker = Tracker::without_domain("ids");
        tracker.set_model_id(Some("m1".into()));
        tracker.set_assistant_id(Some("bot".into()));
        tracker.update(Event::bot("hi").at(1.0));
        let mut own = JsonMap::new();
        own.insert("model_id".into(), json!("mine"));
        tracker.update(Event::bot("hi").at(2.0).with_metadata(own));
        assert_eq!(tracker.events()[0].metadata["model_id"], "m1");
        assert_eq!(tracker.events()[0].metadata["assistant_id"], "bot");
        assert_eq!(tracker.events()[1].metadata["model_id"], "mine");
        tracker.update(ev(json!({"event": "from_the_future", "timestamp": 3.0})));
        let unknown = tracker.events()[2].to_value();
        assert_eq!(
            unknown["metadata"],
            json!({"model_id": "m1", "assistant_id": "bot"})
        );
    }

    #[test]
    fn restart_sets_the_session_start_followup() {
        let mut tracker = Tracker::without_domain("r");
        tracker.update(Event::user("hi", "greet", 1.0).at(1.0));
        tracker.update(ev(json!({"event": "pause", "timestamp": 2.0})));
        assert!(tracker.is_paused());
        tracker.update(Event::restarted().at(3.0));
        assert!(!tracker.is_paused());
        assert_eq!(tracker.followup_action(), Some(ACTION_SESSION_START));
        assert!(tracker.latest_message().is_none());
        assert_eq!(tracker.index_after_latest_restart(), 3);
        assert!("after_restart".parse::<EventVerbosity>().is_ok());
        assert!("sometimes".parse::<EventVerbosity>().is_err());
    }
}
