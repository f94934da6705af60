//! Driver errors as tracker-core errors: [`classify`] decides the kind, [`driver_error`]
//! builds the error with the driver's error kept as the `source`.

use mongodb::error::{
    Error as DriverError, ErrorKind as DriverKind, IndexedWriteError, InsertManyError, WriteError,
    WriteFailure,
};
use tracker_core::{Error, ErrorKind};

/// MongoDB's duplicate key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// MongoDB's error code for a collection or database that does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// Server error codes that go away when the server is reachable, elected or less loaded again:
/// host and network failures, shutdowns and elections, time limits, lock and write conflicts,
/// and write-concern timeouts.
const TEMPORARY_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    24,    // LockTimeout
    46,    // LockBusy
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    133,   // FailedToSatisfyReadPreference
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    202,   // NetworkInterfaceExceededTimeLimit
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Server error codes of a wrong configuration: credentials and permissions.
const CONFIG_CODES: &[i32] = &[
    11, // UserNotFound
    13, // Unauthorized
    18, // AuthenticationFailed
];

/// Labels the server or driver put on errors that are safe to retry.
const TEMPORARY_LABELS: &[&str] = &[
    mongodb::error::RETRYABLE_WRITE_ERROR,
    mongodb::error::TRANSIENT_TRANSACTION_ERROR,
    mongodb::error::SYSTEM_OVERLOADED_ERROR,
    mongodb::error::RETRYABLE_ERROR,
];

/// The error code of a server-side failure, if it is one.
fn server_code(error: &DriverError) -> Option<i32> {
    match error.kind.as_ref() {
        DriverKind::Command(command) => Some(command.code),
        DriverKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        DriverKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        _ => None,
    }
}

/// What kind of [`tracker_core::Error`] a driver error is:
///
/// - [`ErrorKind::Unavailable`] (temporary) for I/O and connection failures, a cleared
///   connection pool, server selection (no reachable server, the usual symptom of a wrong host
///   or a down server), DNS failures, server errors with a retryable label, and the codes of
///   elections, shutdowns, time limits, lock or write conflicts and write-concern timeouts;
/// - [`ErrorKind::Config`] for authentication failures, invalid arguments (a bad connection
///   string), TLS configuration, and the codes `UserNotFound`, `Unauthorized` and
///   `AuthenticationFailed`;
/// - [`ErrorKind::Backend`] for everything else.
pub(crate) fn classify(error: &DriverError) -> ErrorKind {
    if TEMPORARY_LABELS
        .iter()
        .any(|label| error.contains_label(label))
    {
        return ErrorKind::Unavailable;
    }
    match error.kind.as_ref() {
        DriverKind::Io(_)
        | DriverKind::ConnectionPoolCleared { .. }
        | DriverKind::ServerSelection { .. }
        | DriverKind::DnsResolve { .. } => ErrorKind::Unavailable,
        DriverKind::Authentication { .. }
        | DriverKind::InvalidArgument { .. }
        | DriverKind::InvalidTlsConfig { .. } => ErrorKind::Config,
        _ => match server_code(error) {
            Some(code) if TEMPORARY_CODES.contains(&code) => ErrorKind::Unavailable,
            Some(code) if CONFIG_CODES.contains(&code) => ErrorKind::Config,
            _ => ErrorKind::Backend,
        },
    }
}

/// The driver error as a tracker-core error of its [`classify`] kind, with `context` as the
/// message and the driver error as the source.
pub(crate) fn driver_error(context: impl Into<String>, error: DriverError) -> Error {
    Error::classified(classify(&error), context, error)
}

/// Whether the error is a duplicate key error (an insert whose `_id` exists).
pub(crate) fn is_duplicate_key(error: &DriverError) -> bool {
    server_code(error) == Some(DUPLICATE_KEY)
}

/// The per-document errors of an unordered `insert_many` that failed only for some documents
/// (the others were inserted); any other error (no write errors, a write-concern error, a
/// network or server failure) is given back.
pub(crate) fn insert_many_write_errors(
    error: DriverError,
) -> std::result::Result<Vec<IndexedWriteError>, DriverError> {
    match error.kind.as_ref() {
        DriverKind::InsertMany(InsertManyError {
            write_errors: Some(write_errors),
            write_concern_error: None,
            ..
        }) if !write_errors.is_empty() => Ok(write_errors.clone()),
        _ => Err(error),
    }
}

/// One document's error of an `insert_many` as a tracker-core error of its [`classify`] kind,
/// with `context` as the message.
pub(crate) fn indexed_write_error(context: impl Into<String>, error: IndexedWriteError) -> Error {
    let failure = WriteFailure::WriteError(WriteError::from(error));
    driver_error(context, DriverError::from(DriverKind::Write(failure)))
}

/// Whether the error says the collection does not exist (listing the indexes of a collection
/// nothing was written to yet).
pub(crate) fn is_namespace_not_found(error: &DriverError) -> bool {
    server_code(error) == Some(NAMESPACE_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_temporary() {
        let io = DriverError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(classify(&io), ErrorKind::Unavailable);
        let error = driver_error("reading", io);
        assert!(error.is_temporary());
        let source = std::error::Error::source(&error).expect("source kept");
        assert!(source.downcast_ref::<DriverError>().is_some());
    }
}
