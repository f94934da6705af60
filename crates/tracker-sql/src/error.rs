//! Driver errors as tracker-core errors.

use diesel::result::{ConnectionError, DatabaseErrorKind};
use diesel_async::pooled_connection::PoolError;
use diesel_async::pooled_connection::deadpool::PoolError as DeadpoolError;
use tracker_core::Error;

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

/// Classifies a query error.
pub(crate) fn query_error(context: &str, error: diesel::result::Error) -> Error {
    use diesel::result::Error as E;
    let temporary = match &error {
        E::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure => true,
            _ => is_temporary_message(info.message()),
        },
        E::BrokenTransactionManager => true,
        _ => false,
    };
    if temporary {
        Error::unavailable(context, error)
    } else {
        Error::backend(context, error)
    }
}

/// Classifies a connection error.
pub(crate) fn connection_error(context: &str, error: ConnectionError) -> Error {
    match error {
        ConnectionError::InvalidConnectionUrl(_) => Error::config_with(context, error),
        _ => Error::unavailable(context, error),
    }
}

/// Classifies an error getting a pooled connection.
pub(crate) fn pool_error(context: &str, error: DeadpoolError) -> Error {
    match error {
        DeadpoolError::Backend(PoolError::ConnectionError(error)) => {
            connection_error(context, error)
        }
        DeadpoolError::Backend(PoolError::QueryError(error)) => query_error(context, error),
        other => Error::unavailable(context, other),
    }
}
