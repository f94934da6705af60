//! The part of a Rasa domain that tracker state depends on: its slots.

use serde::Deserialize;
use serde_json::Value;

use crate::event::JsonMap;

/// Rasa's built-in slot holding the active form's requested slot (added when forms exist).
pub const REQUESTED_SLOT: &str = "requested_slot";
/// Rasa's built-in slot holding the metadata a channel sent with a session start.
pub const SESSION_STARTED_METADATA_SLOT: &str = "session_started_metadata";

/// A slot and its initial value.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotDefinition {
    /// The slot's name.
    pub name: String,
    /// The value a new or reset tracker gives the slot.
    pub initial_value: Value,
}

/// The slots a tracker starts with, as Rasa's `Domain` defines them.
///
/// Deserialise it from a `domain.yml` with any serde format (only `slots` and `forms` are
/// read; everything else is ignored), or build it with [`Domain::with_slots`]. Like Rasa, the
/// domain always has the `session_started_metadata` slot, and `requested_slot` when it
/// defines forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    slots: Vec<SlotDefinition>,
}

impl Default for Domain {
    fn default() -> Self {
        Self::empty()
    }
}

impl Domain {
    /// Rasa's `Domain.empty()`: no slots but the built-in `session_started_metadata`.
    pub fn empty() -> Self {
        Self::build(Vec::new(), false)
    }

    /// A domain with these slots (in this order), plus Rasa's built-in slots.
    pub fn with_slots(slots: impl IntoIterator<Item = SlotDefinition>, has_forms: bool) -> Self {
        Self::build(slots.into_iter().collect(), has_forms)
    }

    fn build(mut slots: Vec<SlotDefinition>, has_forms: bool) -> Self {
        let has = |slots: &[SlotDefinition], name: &str| slots.iter().any(|s| s.name == name);
        if has_forms && !has(&slots, REQUESTED_SLOT) {
            slots.push(SlotDefinition {
                name: REQUESTED_SLOT.to_owned(),
                initial_value: Value::Null,
            });
        }
        if !has(&slots, SESSION_STARTED_METADATA_SLOT) {
            slots.push(SlotDefinition {
                name: SESSION_STARTED_METADATA_SLOT.to_owned(),
                initial_value: Value::Null,
            });
        }
        Self { slots }
    }

    /// The slots, in the domain's order.
    pub fn slots(&self) -> &[SlotDefinition] {
        &self.slots
    }
}

#[derive(Deserialize)]
struct RawDomain {
    #[serde(default)]
    slots: Option<JsonMap>,
    #[serde(default)]
    forms: Option<JsonMap>,
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawDomain::deserialize(deserializer)?;
        let slots = raw
            .slots
            .unwrap_or_default()
            .into_iter()
            .map(|(name, definition)| SlotDefinition {
                initial_value: definition
                    .get("initial_value")
                    .cloned()
                    .unwrap_or(Value::Null),
                name,
            })
            .collect();
        let has_forms = raw.forms.is_some_and(|forms| !forms.is_empty());
        Ok(Self::build(slots, has_forms))
    }
}
