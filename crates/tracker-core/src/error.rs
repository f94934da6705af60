//! The one error type of every store.

/// A boxed driver or library error kept as an error's `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Another writer appended first: re-read the conversation and try again.
    Conflict,
    /// The input was rejected before anything was written.
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// The store cannot do this.
    Unsupported,
    /// The store's configuration is wrong.
    Config,
    /// The store could not be reached or is overloaded; safe to retry.
    Unavailable,
    /// Stored data could not be read.
    Corrupt,
    /// Any other failure of the store's server or driver.
    Backend,
}

/// Errors of stores and of the API built on them.
///
/// Every variant says what a caller can do about it ([`Error::kind`]); driver errors are kept
/// as the `source`, never flattened into the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The append expected a version the conversation no longer has; nothing was written.
    #[error(
        "conflict on conversation {sender_id:?}: expected version {expected}, but it is at {actual}"
    )]
    Conflict {
        /// The conversation.
        sender_id: String,
        /// The version the writer expected.
        expected: u64,
        /// The conversation's version now.
        actual: u64,
    },
    /// The input was rejected before any store was touched.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The store cannot do this.
    #[error("{store} does not support {operation}")]
    Unsupported {
        /// The store's name.
        store: String,
        /// What was asked.
        operation: String,
    },
    /// The configuration is wrong.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store is unreachable or overloaded; retrying later may succeed.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// Stored data of a conversation could not be read.
    #[error("corrupt data in conversation {sender_id:?}{}: {message}", position.map(|p| format!(" at event {p}")).unwrap_or_default())]
    Corrupt {
        /// The conversation.
        sender_id: String,
        /// The event's sequence number, when one event is at fault.
        position: Option<u64>,
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other store or driver failure.
    #[error("store error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Config { .. } => ErrorKind::Config,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same call later may succeed. Only [`ErrorKind::Unavailable`] is
    /// temporary; a conflict needs a fresh read first.
    pub fn is_temporary(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// For a conflict, the conversation's current version.
    pub fn current_version(&self) -> Option<u64> {
        match self {
            Self::Conflict { actual, .. } => Some(*actual),
            _ => None,
        }
    }

    /// A conflict: `sender_id` is at `actual`, not `expected`.
    pub fn conflict(sender_id: impl Into<String>, expected: u64, actual: u64) -> Self {
        Self::Conflict {
            sender_id: sender_id.into(),
            expected,
            actual,
        }
    }

    /// Rejected input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source`.
    pub fn config_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Config {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The store is unavailable because of `source`.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A store or driver failure caused by `source`.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Unreadable stored data in `sender_id`, at event `position` if known.
    pub fn corrupt(
        sender_id: impl Into<String>,
        position: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            sender_id: sender_id.into(),
            position,
            message: message.into(),
            source: None,
        }
    }

    /// The store cannot do `operation`.
    pub fn unsupported(store: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::Unsupported {
            store: store.into(),
            operation: operation.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn kinds_and_sources() {
        let conflict = Error::conflict("a", 1, 2);
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert_eq!(conflict.current_version(), Some(2));
        assert!(!conflict.is_temporary());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unavailable = Error::unavailable("connect", io);
        assert!(unavailable.is_temporary());
        let source = unavailable.source().expect("source kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        let corrupt = Error::corrupt("c", Some(7), "not JSON");
        assert_eq!(
            corrupt.to_string(),
            "corrupt data in conversation \"c\" at event 7: not JSON"
        );
    }
}
