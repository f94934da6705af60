//! fred's errors as the store's [`Error`]: what a caller can act on, with the fred error kept
//! as the `source`.

use fred::error::{Error as FredError, ErrorKind as FredKind};
use fred::types::Value;
use tracker_core::{Error, ErrorKind};

/// Server replies after which the same command may succeed later: a server still loading its
/// data set, busy with a script, a cluster changing or down, a failover in progress, or out of
/// memory.
const TEMPORARY_REPLIES: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "NOREPLICAS",
    "MOVED",
    "ASK",
    "OOM",
];

/// fred's own errors of kind `Unknown` that are connection failures: a command whose
/// connection dropped every time it was sent (`max_command_attempts`), and a cluster command
/// for a primary the client has no connection to.
const CONNECTION_FAILURES: &[&str] = &["Too many failed write attempts", "Failed to route command"];

/// Server replies that mean the configured credentials or permissions are wrong.
const CONFIG_REPLIES: &[&str] = &["NOAUTH", "WRONGPASS", "NOPERM"];

/// The first word of a server error reply, if the error is one.
fn reply_code(error: &FredError) -> &str {
    error
        .details()
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

/// Whether an I/O error is a TLS handshake that failed on certificates (untrusted server
/// certificate, client certificate missing or refused): retrying will not help. fred keeps
/// only the text of the I/O error, where rustls' error shows as `InvalidData`.
fn is_tls_rejection(error: &FredError) -> bool {
    let details = error.details();
    *error.kind() == FredKind::IO
        && (details.contains("InvalidCertificate")
            || details.contains("AlertReceived")
            || details.contains("kind: InvalidData"))
}

/// What a caller can do about a fred error: [`ErrorKind::Unavailable`] for connection, I/O,
/// timeout, cluster-state and overload errors (`LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`,
/// ..., and fred's "too many failed write attempts" and "failed to route command"),
/// [`ErrorKind::Config`] for bad configuration, URLs, credentials and TLS (including a
/// handshake refused over certificates), and [`ErrorKind::Backend`] for anything else.
pub(crate) fn classify(error: &FredError) -> ErrorKind {
    let code = reply_code(error);
    if TEMPORARY_REPLIES.contains(&code) {
        return ErrorKind::Unavailable;
    }
    if CONFIG_REPLIES.contains(&code) {
        return ErrorKind::Config;
    }
    if is_tls_rejection(error) {
        return ErrorKind::Config;
    }
    if *error.kind() == FredKind::Unknown
        && CONNECTION_FAILURES
            .iter()
            .any(|failure| error.details().starts_with(failure))
    {
        return ErrorKind::Unavailable;
    }
    match error.kind() {
        FredKind::IO
        | FredKind::Timeout
        | FredKind::Canceled
        | FredKind::Cluster
        | FredKind::Backpressure
        | FredKind::Routing
        | FredKind::Sentinel => ErrorKind::Unavailable,
        FredKind::Config | FredKind::Url | FredKind::Auth | FredKind::Tls => ErrorKind::Config,
        _ => ErrorKind::Backend,
    }
}

/// A fred error raised while doing `context`, as classified by [`classify`], keeping it as
/// the source.
pub(crate) fn driver_error(context: impl Into<String>, error: FredError) -> Error {
    Error::classified(classify(&error), context, error)
}

/// Whether a fred error is a script's `CORRUPT ...` reply or a `WRONGTYPE` reply: stored data
/// of the conversation that this store cannot read.
pub(crate) fn is_corrupt_reply(error: &FredError) -> bool {
    let details = error.details();
    matches!(reply_code(error), "CORRUPT" | "WRONGTYPE")
        || details.contains("CORRUPT ")
        || details.contains("WRONGTYPE ")
}

/// Whether a fred error says that a command's connection failed (I/O, timeout, cancelled,
/// no route, fred's own connection failures) rather than that the server answered with an
/// error: the command may or may not have run.
pub(crate) fn is_connection_failure(error: &FredError) -> bool {
    match error.kind() {
        FredKind::IO
        | FredKind::Timeout
        | FredKind::Canceled
        | FredKind::Routing
        | FredKind::Backpressure => true,
        FredKind::Unknown => CONNECTION_FAILURES
            .iter()
            .any(|failure| error.details().starts_with(failure)),
        _ => false,
    }
}

/// A reply of a script or command that is not of the expected shape.
pub(crate) fn unexpected_reply(sender_id: &str, operation: &str, reply: &Value) -> Error {
    Error::backend(format!(
        "{operation} of conversation {sender_id:?}: unexpected reply {reply:?}"
    ))
}

/// A conflict of a conversation's `operation` (`"append"`, `"delete"`): it is at `actual`,
/// not `expected`.
pub(crate) fn conflict(sender_id: &str, operation: &str, expected: u64, actual: u64) -> Error {
    tracing::debug!(
        store = "redis",
        sender_id,
        expected,
        actual,
        "{operation} conflicts"
    );
    Error::conflict(sender_id, expected, actual)
}

/// A fred error of a conversation's read or write: [`Error::Corrupt`] naming the conversation
/// when its stored data is unreadable, else as [`driver_error`].
pub(crate) fn conversation_error(sender_id: &str, operation: &str, error: FredError) -> Error {
    if is_corrupt_reply(&error) {
        let message = format!("{operation}: {}", error.details());
        return Error::corrupt_with(sender_id, None, message, error);
    }
    driver_error(format!("{operation} of conversation {sender_id:?}"), error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn reply(text: &str) -> FredError {
        FredError::new(FredKind::Unknown, text.to_owned())
    }

    #[test]
    fn classification() {
        let temporary = [
            FredError::new(FredKind::IO, "connection refused"),
            FredError::new(FredKind::Timeout, "timed out"),
            FredError::new(FredKind::Canceled, "canceled"),
            FredError::new(FredKind::Cluster, "CLUSTERDOWN The cluster is down"),
            reply("LOADING Redis is loading the dataset in memory"),
            reply("TRYAGAIN Multiple keys request during rehashing of slot"),
            reply("BUSY Redis is busy running a script."),
            reply("MASTERDOWN Link with MASTER is down"),
            reply("READONLY You can't write against a read only replica."),
            FredError::new(FredKind::Unknown, "Too many failed write attempts."),
            FredError::new(FredKind::Unknown, "Failed to route command."),
            FredError::new(FredKind::Cluster, "MOVED 3999 127.0.0.1:7102"),
        ];
        for error in temporary {
            assert_eq!(classify(&error), ErrorKind::Unavailable, "{error}");
            let core = driver_error("op", error);
            assert!(core.is_temporary());
            assert!(core.source().is_some_and(|s| s.is::<FredError>()));
        }
        let config = [
            FredError::new(FredKind::Config, "bad"),
            FredError::new(FredKind::Url, "bad url"),
            FredError::new(FredKind::Auth, "WRONGPASS invalid username-password pair"),
            reply("NOPERM this user has no permissions"),
            FredError::new(
                FredKind::IO,
                "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }",
            ),
            FredError::new(
                FredKind::IO,
                "Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }",
            ),
        ];
        for error in config {
            assert_eq!(classify(&error), ErrorKind::Config, "{error}");
        }
        let backend = [
            reply("ERR unknown command"),
            FredError::new(FredKind::Parse, "bad frame"),
            FredError::new(
                FredKind::InvalidArgument,
                "WRONGTYPE Operation against a key",
            ),
        ];
        for error in backend {
            assert_eq!(classify(&error), ErrorKind::Backend, "{error}");
        }
    }

    #[test]
    fn connection_failures_are_told_from_replies() {
        let failures = [
            FredError::new(FredKind::IO, "connection reset"),
            FredError::new(FredKind::Timeout, "Request timed out."),
            FredError::new(FredKind::Canceled, "Canceled."),
            FredError::new(FredKind::Unknown, "Too many failed write attempts."),
        ];
        for error in failures {
            assert!(is_connection_failure(&error), "{error}");
        }
        let replies = [
            reply("ERR user_script:1: CORRUPT the head has no version"),
            reply("NOSCRIPT No matching script."),
            reply("BUSY Redis is busy running a script."),
            FredError::new(FredKind::Cluster, "MOVED 3999 127.0.0.1:7102"),
        ];
        for error in replies {
            assert!(!is_connection_failure(&error), "{error}");
        }
    }

    #[test]
    fn corrupt_replies_name_the_conversation() {
        let error = conversation_error(
            "alice",
            "read",
            reply("ERR user_script:1: CORRUPT the head has no version"),
        );
        assert_eq!(error.kind(), ErrorKind::Corrupt);
        assert!(error.to_string().contains("\"alice\""), "{error}");
        let error = conversation_error(
            "alice",
            "read",
            FredError::new(
                FredKind::InvalidArgument,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        );
        assert_eq!(error.kind(), ErrorKind::Corrupt);
        let error = conversation_error("alice", "read", FredError::new(FredKind::IO, "reset"));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
}
