//! The one error type of every store.
//!
//! Errors are built by constructors ([`Error::conflict`], [`Error::unavailable_with`], ...),
//! never by literal: every variant is `#[non_exhaustive]`, so a field can be added without
//! breaking the crates that match on them. A backend classifies its driver's errors into an
//! [`ErrorKind`] (each backend's `error.rs` has a `classify` function for that) and builds
//! the error with [`Error::classified`]. [`TrackerStore`](crate::TrackerStore) attaches the
//! store, the operation and the conversation once ([`Error::with_context`]), so a log line
//! says which store failed to do what to which conversation.

use std::fmt;

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
    /// A copy found the destination holding different events for the conversation.
    Diverged,
    /// Any other failure of the store's server or driver.
    Backend,
}

impl ErrorKind {
    /// A short lower-case name, as used in metrics labels and logs (`"conflict"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::Unsupported => "unsupported",
            Self::Config => "config",
            Self::Unavailable => "unavailable",
            Self::Corrupt => "corrupt",
            Self::Diverged => "diverged",
            Self::Backend => "backend",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error happened: the store, the operation and the conversation, attached once by
/// [`TrackerStore`](crate::TrackerStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorContext {
    /// The store's name ([`Store::name`](crate::Store::name)).
    pub store: String,
    /// The operation, such as `"append"` or `"read"`.
    pub operation: &'static str,
    /// The conversation, for operations on one.
    pub sender_id: Option<String>,
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.store, self.operation)?;
        if let Some(sender_id) = &self.sender_id {
            write!(f, " {sender_id:?}")?;
        }
        Ok(())
    }
}

type Context = Option<Box<ErrorContext>>;

/// Errors of stores and of the API built on them.
///
/// Every variant says what a caller can do about it ([`Error::kind`]); driver errors are kept
/// as the `source`, never flattened into the message. Variants can be matched (with `..`)
/// but are built only by the constructors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The append expected a version the conversation no longer has; nothing was written.
    #[non_exhaustive]
    Conflict {
        /// The conversation.
        sender_id: String,
        /// The version the writer expected.
        expected: u64,
        /// The conversation's version now.
        actual: u64,
        /// Where it happened.
        context: Context,
    },
    /// The input was rejected before any store was touched.
    #[non_exhaustive]
    InvalidInput {
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
        /// Where it happened.
        context: Context,
    },
    /// The thing asked for does not exist.
    #[non_exhaustive]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where it happened.
        context: Context,
    },
    /// The store cannot do this.
    #[non_exhaustive]
    Unsupported {
        /// The store's name.
        store: String,
        /// What was asked.
        operation: String,
        /// Where it happened.
        context: Context,
    },
    /// The configuration is wrong.
    #[non_exhaustive]
    Config {
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
        /// Where it happened.
        context: Context,
    },
    /// The store is unreachable or overloaded; retrying later may succeed.
    #[non_exhaustive]
    Unavailable {
        /// What failed.
        message: String,
        /// The driver's error.
        source: Option<BoxError>,
        /// Where it happened.
        context: Context,
    },
    /// Stored data of a conversation could not be read.
    #[non_exhaustive]
    Corrupt {
        /// The conversation.
        sender_id: String,
        /// The event's sequence number, when one event is at fault.
        position: Option<u64>,
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
        /// Where it happened.
        context: Context,
    },
    /// A copy into a store found the conversation there with other events than the source's;
    /// nothing was written.
    #[non_exhaustive]
    Diverged {
        /// The conversation.
        sender_id: String,
        /// The first position (from 1) where the two differ.
        position: u64,
        /// How they differ.
        message: String,
        /// Where it happened.
        context: Context,
    },
    /// Any other store or driver failure.
    #[non_exhaustive]
    Backend {
        /// What failed.
        message: String,
        /// The driver's error.
        source: Option<BoxError>,
        /// Where it happened.
        context: Context,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(context) = self.context() {
            write!(f, "{context}: ")?;
        }
        match self {
            Self::Conflict {
                sender_id,
                expected,
                actual,
                ..
            } => write!(
                f,
                "conflict on conversation {sender_id:?}: expected version {expected}, but it is \
                 at {actual}"
            ),
            Self::InvalidInput { message, .. } => write!(f, "invalid input: {message}"),
            Self::NotFound { what, .. } => write!(f, "not found: {what}"),
            Self::Unsupported {
                store, operation, ..
            } => write!(f, "{store} does not support {operation}"),
            Self::Config { message, .. } => write!(f, "configuration error: {message}"),
            Self::Unavailable { message, .. } => write!(f, "store unavailable: {message}"),
            Self::Corrupt {
                sender_id,
                position,
                message,
                ..
            } => {
                write!(f, "corrupt data in conversation {sender_id:?}")?;
                if let Some(position) = position {
                    write!(f, " at event {position}")?;
                }
                write!(f, ": {message}")
            }
            Self::Diverged {
                sender_id,
                position,
                message,
                ..
            } => write!(
                f,
                "conversation {sender_id:?} differs from the source at event {position}: \
                 {message}; it was left unchanged"
            ),
            Self::Backend { message, .. } => write!(f, "store error: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidInput { source, .. }
            | Self::Config { source, .. }
            | Self::Unavailable { source, .. }
            | Self::Corrupt { source, .. }
            | Self::Backend { source, .. } => source
                .as_deref()
                .map(|source| source as &(dyn std::error::Error + 'static)),
            Self::Conflict { .. }
            | Self::NotFound { .. }
            | Self::Unsupported { .. }
            | Self::Diverged { .. } => None,
        }
    }
}

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
            Self::Diverged { .. } => ErrorKind::Diverged,
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

    /// Where the error happened, once [`Error::with_context`] has been applied.
    pub fn context(&self) -> Option<&ErrorContext> {
        match self {
            Self::Conflict { context, .. }
            | Self::InvalidInput { context, .. }
            | Self::NotFound { context, .. }
            | Self::Unsupported { context, .. }
            | Self::Config { context, .. }
            | Self::Unavailable { context, .. }
            | Self::Corrupt { context, .. }
            | Self::Diverged { context, .. }
            | Self::Backend { context, .. } => context.as_deref(),
        }
    }

    fn context_mut(&mut self) -> &mut Context {
        match self {
            Self::Conflict { context, .. }
            | Self::InvalidInput { context, .. }
            | Self::NotFound { context, .. }
            | Self::Unsupported { context, .. }
            | Self::Config { context, .. }
            | Self::Unavailable { context, .. }
            | Self::Corrupt { context, .. }
            | Self::Diverged { context, .. }
            | Self::Backend { context, .. } => context,
        }
    }

    /// Records which store failed at which operation on which conversation. The first
    /// context set is kept: an error passing through several layers names where it started.
    #[must_use]
    pub fn with_context(
        mut self,
        store: &str,
        operation: &'static str,
        sender_id: Option<&str>,
    ) -> Self {
        let context = self.context_mut();
        if context.is_none() {
            *context = Some(Box::new(ErrorContext {
                store: store.to_owned(),
                operation,
                sender_id: sender_id.map(str::to_owned),
            }));
        }
        self
    }

    /// Keeps `source` as the error's cause, for the kinds that carry one (invalid input,
    /// configuration, unavailable, corrupt, backend); other kinds are returned unchanged.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        match &mut self {
            Self::InvalidInput { source: slot, .. }
            | Self::Config { source: slot, .. }
            | Self::Unavailable { source: slot, .. }
            | Self::Corrupt { source: slot, .. }
            | Self::Backend { source: slot, .. } => *slot = Some(source.into()),
            Self::Conflict { .. }
            | Self::NotFound { .. }
            | Self::Unsupported { .. }
            | Self::Diverged { .. } => {}
        }
        self
    }

    /// A driver error a backend classified as `kind`: unavailable, configuration, invalid
    /// input or not found as such, anything else as a backend error (a conflict or corrupt
    /// data needs the conversation, so backends build those with [`Error::conflict`] and
    /// [`Error::corrupt_with`]).
    pub fn classified(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        let message = message.into();
        let source = Some(source.into());
        let context = None;
        match kind {
            ErrorKind::Unavailable => Self::Unavailable {
                message,
                source,
                context,
            },
            ErrorKind::Config => Self::Config {
                message,
                source,
                context,
            },
            ErrorKind::InvalidInput => Self::InvalidInput {
                message,
                source,
                context,
            },
            ErrorKind::NotFound => Self::NotFound {
                what: message,
                context,
            },
            _ => Self::Backend {
                message,
                source,
                context,
            },
        }
    }

    /// A conflict: `sender_id` is at `actual`, not `expected`.
    pub fn conflict(sender_id: impl Into<String>, expected: u64, actual: u64) -> Self {
        Self::Conflict {
            sender_id: sender_id.into(),
            expected,
            actual,
            context: None,
        }
    }

    /// Rejected input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
            source: None,
            context: None,
        }
    }

    /// Rejected input, because of `source`.
    pub fn invalid_input_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::invalid_input(message).with_source(source)
    }

    /// `what` does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            what: what.into(),
            context: None,
        }
    }

    /// The store cannot do `operation`.
    pub fn unsupported(store: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::Unsupported {
            store: store.into(),
            operation: operation.into(),
            context: None,
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
            source: None,
            context: None,
        }
    }

    /// A configuration error caused by `source`.
    pub fn config_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::config(message).with_source(source)
    }

    /// The store is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
            context: None,
        }
    }

    /// The store is unavailable because of `source`.
    pub fn unavailable_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::unavailable(message).with_source(source)
    }

    /// A store or driver failure.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
            source: None,
            context: None,
        }
    }

    /// A store or driver failure caused by `source`.
    pub fn backend_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::backend(message).with_source(source)
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
            context: None,
        }
    }

    /// Unreadable stored data in `sender_id`, at event `position` if known, because of
    /// `source`.
    pub fn corrupt_with(
        sender_id: impl Into<String>,
        position: Option<u64>,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::corrupt(sender_id, position, message).with_source(source)
    }

    /// A copy found `sender_id` in the destination with other events than the source's,
    /// first differing at `position` (from 1).
    pub fn diverged(
        sender_id: impl Into<String>,
        position: u64,
        message: impl Into<String>,
    ) -> Self {
        Self::Diverged {
            sender_id: sender_id.into(),
            position,
            message: message.into(),
            context: None,
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
        let unavailable = Error::unavailable_with("connect", io);
        assert!(unavailable.is_temporary());
        let source = unavailable.source().expect("source kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        let corrupt = Error::corrupt("c", Some(7), "not JSON");
        assert_eq!(
            corrupt.to_string(),
            "corrupt data in conversation \"c\" at event 7: not JSON"
        );
    }

    #[test]
    fn every_kind_has_a_constructor_and_keeps_a_source() {
        let io = || std::io::Error::other("cause");
        let with_source = [
            Error::invalid_input_with("m", io()),
            Error::config_with("m", io()),
            Error::unavailable_with("m", io()),
            Error::backend_with("m", io()),
            Error::corrupt_with("c", None, "m", io()),
        ];
        for error in &with_source {
            assert!(error.source().is_some(), "{error:?}");
        }
        let kinds: Vec<ErrorKind> = [
            Error::conflict("c", 0, 1),
            Error::invalid_input("m"),
            Error::not_found("x"),
            Error::unsupported("s", "op"),
            Error::config("m"),
            Error::unavailable("m"),
            Error::corrupt("c", None, "m"),
            Error::diverged("c", 3, "m"),
            Error::backend("m"),
        ]
        .iter()
        .map(Error::kind)
        .collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::Conflict,
                ErrorKind::InvalidInput,
                ErrorKind::NotFound,
                ErrorKind::Unsupported,
                ErrorKind::Config,
                ErrorKind::Unavailable,
                ErrorKind::Corrupt,
                ErrorKind::Diverged,
                ErrorKind::Backend,
            ]
        );
    }

    #[test]
    fn classified_errors_keep_kind_and_source() {
        for kind in [
            ErrorKind::Unavailable,
            ErrorKind::Config,
            ErrorKind::InvalidInput,
            ErrorKind::Backend,
        ] {
            let error = Error::classified(kind, "op", std::io::Error::other("x"));
            assert_eq!(error.kind(), kind);
            assert!(error.source().is_some());
        }
        let other = Error::classified(ErrorKind::Conflict, "op", std::io::Error::other("x"));
        assert_eq!(other.kind(), ErrorKind::Backend);
    }

    #[test]
    fn context_is_attached_once_and_shown_first() {
        let error = Error::unavailable("connection refused")
            .with_context("postgres", "append", Some("alice"))
            .with_context("other", "read", None);
        assert_eq!(
            error.to_string(),
            "postgres append \"alice\": store unavailable: connection refused"
        );
        let context = error.context().expect("set");
        assert_eq!(context.operation, "append");
    }
}
