//! Conversation ids.

use std::fmt;

use crate::error::{Error, Result};

/// The longest sender id, in bytes (the width of Rasa's SQL `sender_id` column).
pub const MAX_SENDER_ID_BYTES: usize = 255;

/// A validated conversation id: 1 to 255 bytes of UTF-8 without NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SenderId(String);

impl SenderId {
    /// Validates a sender id.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it is empty, longer than [`MAX_SENDER_ID_BYTES`] bytes or
    /// contains NUL.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::invalid_input("the sender id is empty"));
        }
        if id.len() > MAX_SENDER_ID_BYTES {
            return Err(Error::invalid_input(format!(
                "the sender id is {} bytes long; at most {MAX_SENDER_ID_BYTES} are allowed",
                id.len()
            )));
        }
        if id.contains('\0') {
            return Err(Error::invalid_input(
                "the sender id contains a NUL character",
            ));
        }
        Ok(Self(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SenderId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
