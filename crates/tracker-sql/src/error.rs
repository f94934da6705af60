//! Driver errors as tracker-core errors.

use diesel::result::{ConnectionError, DatabaseErrorKind};
use diesel_async::pooled_connection::PoolError;
use diesel_async::pooled_connection::deadpool::PoolError as DeadpoolError;
use tracker_core::{BoxError, Error, ErrorKind};

use crate::schema::SEQ_CONSTRAINT;

/// Whether a unique violation is the `(sender_id, seq)` constraint, i.e. a concurrent append.
pub(crate) fn is_seq_conflict(error: &diesel::result::Error) -> bool {
    let diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = error
    else {
        return false;
    };
    info.constraint_name() == Some(SEQ_CONSTRAINT)
        || info.message().contains(SEQ_CONSTRAINT)
        // SQLite names the columns, not the index.
        || info.message().contains("events.sender_id, events.seq")
}

/// Whether the server rolled the transaction back to break a deadlock (InnoDB's
/// `ER_LOCK_DEADLOCK`, PostgreSQL's `deadlock_detected`; the drivers give only the message):
/// the transaction did nothing, and running it again is safe.
pub(crate) fn is_deadlock(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message().to_ascii_lowercase().contains("deadlock")
    )
}

/// Messages of failures that go away when the server is reachable again or a lock is
/// released.
fn is_temporary_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "database is locked",
        "database table is locked",
        "connection",
        "broken pipe",
        "timed out",
        "timeout",
        "server has gone away",
        "lost connection",
        "the database system is starting up",
        "the database system is shutting down",
        "terminating connection",
        "too many connections",
        "deadlock",
        "could not serialize",
        "i/o error",
        "io error",
        "eof",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Messages of a server refusing a connection for good: wrong credentials or a missing
/// database (MySQL's driver reports these as text only). Retrying does not help.
fn is_refusal_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "access denied",
        "unknown database",
        "password authentication failed",
        "authentication plugin",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Whether a query error goes away when the server is reachable again or a lock is released.
fn is_temporary_query(error: &diesel::result::Error) -> bool {
    use diesel::result::Error as E;
    match error {
        E::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure => true,
            _ => is_temporary_message(info.message()),
        },
        E::BrokenTransactionManager => true,
        _ => false,
    }
}

/// What a query error means: [`ErrorKind::Unavailable`] when it goes away once the server is
/// reachable again or a lock is released (by diesel's error kind, else by the server's
/// message, which is all some drivers give), [`ErrorKind::Backend`] otherwise.
pub(crate) fn classify(error: &diesel::result::Error) -> ErrorKind {
    if is_temporary_query(error) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    }
}

/// A query error as a tracker-core error, classified by [`classify`].
pub(crate) fn driver_error(context: impl Into<String>, error: diesel::result::Error) -> Error {
    Error::classified(classify(&error), context, error)
}

/// A connection failure classified where the driver's error is at hand (see `tls/`).
///
/// diesel's [`ConnectionError`] has no variant for a typed error except a boxed
/// query-builder error inside `CouldntSetupConfiguration`; that box carries the
/// classification through the connection pool to [`connection_error`].
#[derive(Debug)]
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) struct ConnectFailure {
    kind: ErrorKind,
    message: String,
    /// The server turned the client away (pg_hba.conf, authentication): another `sslmode`
    /// may be accepted.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) refused_by_server: bool,
    source: BoxError,
}

impl ConnectFailure {
    /// A failure of `kind`, said in `message` (which must hold no credentials).
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn new(kind: ErrorKind, message: String, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            message,
            refused_by_server: false,
            source: source.into(),
        }
    }

    /// A failure of the session setup on a connection that was opened.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn setup(error: ConnectionError) -> Self {
        let kind = match &error {
            ConnectionError::CouldntSetupConfiguration(query) if !is_temporary_query(query) => {
                ErrorKind::Backend
            }
            _ => ErrorKind::Unavailable,
        };
        Self::new(kind, "setting up the session failed".to_owned(), error)
    }

    /// Wraps the failure for diesel and the pool.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn into_connection_error(self) -> ConnectionError {
        ConnectionError::CouldntSetupConfiguration(diesel::result::Error::QueryBuilderError(
            Box::new(self),
        ))
    }

    fn into_error(self, context: &str) -> Error {
        let message = format!("{context}: {}", self.message);
        Error::classified(self.kind, message, self.source)
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Classifies a connection error.
pub(crate) fn connection_error(context: &str, error: ConnectionError) -> Error {
    match error {
        ConnectionError::InvalidConnectionUrl(_) => Error::config_with(context, error),
        ConnectionError::CouldntSetupConfiguration(diesel::result::Error::QueryBuilderError(
            inner,
        )) if inner.is::<ConnectFailure>() => match inner.downcast::<ConnectFailure>() {
            Ok(failure) => failure.into_error(context),
            Err(inner) => Error::unavailable_with(
                context,
                ConnectionError::CouldntSetupConfiguration(
                    diesel::result::Error::QueryBuilderError(inner),
                ),
            ),
        },
        ConnectionError::BadConnection(ref message) if is_refusal_message(message) => {
            Error::config_with(context, error)
        }
        ConnectionError::CouldntSetupConfiguration(diesel::result::Error::DatabaseError(
            _,
            ref info,
        )) if is_refusal_message(info.message()) => Error::config_with(context, error),
        _ => Error::unavailable_with(context, error),
    }
}

/// Classifies an error getting a pooled connection.
pub(crate) fn pool_error(context: &str, error: DeadpoolError) -> Error {
    match error {
        DeadpoolError::Backend(PoolError::ConnectionError(error)) => {
            connection_error(context, error)
        }
        DeadpoolError::Backend(PoolError::QueryError(error)) => driver_error(context, error),
        other => Error::unavailable_with(context, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_config_and_outages_unavailable() {
        let refused = connection_error(
            "connecting",
            ConnectionError::BadConnection(
                "Access denied for user 'root'@'localhost' (using password: YES)".into(),
            ),
        );
        assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
        assert!(!refused.is_temporary());
        let missing = connection_error(
            "connecting",
            ConnectionError::BadConnection("Unknown database 'nope'".into()),
        );
        assert_eq!(missing.kind(), ErrorKind::Config, "{missing}");
        // As MySQL's driver reports a refused login.
        let denied = connection_error(
            "connecting",
            ConnectionError::CouldntSetupConfiguration(diesel::result::Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(
                    "Access denied for user 'root'@'127.0.0.1' (using password: YES)".to_owned(),
                ),
            )),
        );
        assert_eq!(denied.kind(), ErrorKind::Config, "{denied}");
        for message in [
            "Connection refused (os error 111)",
            "Connection reset by peer",
        ] {
            let down =
                connection_error("connecting", ConnectionError::BadConnection(message.into()));
            assert_eq!(down.kind(), ErrorKind::Unavailable, "{down}");
            assert!(down.is_temporary());
        }
    }

    #[test]
    fn query_errors_by_kind_then_message() {
        let database = |kind, message: &str| {
            diesel::result::Error::DatabaseError(kind, Box::new(message.to_owned()))
        };
        for temporary in [
            database(DatabaseErrorKind::ClosedConnection, "gone"),
            database(DatabaseErrorKind::SerializationFailure, "retry"),
            database(DatabaseErrorKind::Unknown, "database is locked"),
            diesel::result::Error::BrokenTransactionManager,
        ] {
            assert_eq!(classify(&temporary), ErrorKind::Unavailable, "{temporary}");
        }
        for permanent in [
            database(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            diesel::result::Error::NotFound,
        ] {
            assert_eq!(classify(&permanent), ErrorKind::Backend, "{permanent}");
        }
        let error = driver_error("reading", database(DatabaseErrorKind::Unknown, "timeout"));
        assert!(error.is_temporary(), "{error}");
        assert!(error.to_string().contains("reading"), "{error}");
    }
}
