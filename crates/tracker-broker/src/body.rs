//! The bytes a broker publishes for a message: Rasa's body as Python's `json.dumps` writes it.

use tracker_core::json::to_python_json;
use tracker_core::{BrokerMessage, Error, Result};

/// The environment variable Rasa reads for the RabbitMQ `app_id` and the Kafka
/// `RASA_ENVIRONMENT` header.
pub const RASA_ENVIRONMENT: &str = "RASA_ENVIRONMENT";

/// The text Rasa's brokers publish for `message`: `json.dumps({"sender_id": ..., **event})`
/// with Python's default separators and every non-ASCII character escaped.
///
/// ```
/// use tracker_core::{BrokerMessage, Event};
///
/// let message = BrokerMessage::new("zoë", 1, &Event::action("action_listen").at(1.5));
/// assert_eq!(
///     tracker_broker::body_text(&message)?,
///     r#"{"sender_id": "zo\u00eb", "event": "action", "timestamp": 1.5, "name": "action_listen", "policy": null, "confidence": null, "action_text": null, "hide_rule_turn": false}"#
/// );
/// # Ok::<(), tracker_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the body cannot be serialised (it always can for a body
/// built by [`BrokerMessage::new`]).
pub fn body_text(message: &BrokerMessage) -> Result<String> {
    to_python_json(&message.body)
        .map_err(|e| Error::invalid_input_with("serialising a broker message", e))
}

/// The value of `RASA_ENVIRONMENT`, if set (read on each call, as a broker reads it once when
/// it is built).
#[cfg_attr(not(any(feature = "rabbitmq", feature = "kafka")), allow(dead_code))]
pub(crate) fn rasa_environment() -> Option<String> {
    std::env::var(RASA_ENVIRONMENT).ok()
}
