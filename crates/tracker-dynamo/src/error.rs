//! AWS SDK errors as tracker-core errors.
//!
//! | DynamoDB says | error |
//! |---|---|
//! | throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`, ...), `TransactionConflictException`, `TransactionInProgressException`, HTTP 5xx, timeouts, connection failures | `Unavailable` (temporary) |
//! | `TransactionCanceledException` whose reason for the head item is `ConditionalCheckFailed` | `Conflict` (decided in the store, which reads the current version) |
//! | `TransactionCanceledException` for throttling or a conflicting transaction | `Unavailable` (the store sends a transaction canceled for a conflicting one again first, and reports a conflict if that keeps happening: see `transact.rs`) |
//! | `ResourceNotFoundException` (no such table), rejected credentials, a request the SDK cannot construct or dispatch for a local reason (no region, bad TLS settings) | `Config` |
//! | anything else (`ValidationException`, ...) | `Backend` |
//!
//! The SDK's error is always kept as the `source`.

use std::any::Any;
use std::error::Error as StdError;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use tracker_core::{Error, ErrorKind};

/// Error codes of throttling and of conflicts between concurrent requests: retrying later
/// may succeed.
const TEMPORARY_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Error codes of rejected credentials or permissions.
const CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
    "AccessDeniedException",
    "ExpiredTokenException",
];

/// Cancellation reason codes of a `TransactionCanceledException` that are temporary.
const TEMPORARY_REASONS: &[&str] = &[
    "TransactionConflict",
    "ProvisionedThroughputExceeded",
    "ThrottlingError",
];

/// The cancellation reason code that means a condition did not hold.
pub(crate) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Classifies a service error by its code and HTTP status: the table above.
fn classify_code(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code {
        Some(code) if TEMPORARY_CODES.contains(&code) => ErrorKind::Unavailable,
        Some(code) if CREDENTIAL_CODES.contains(&code) => ErrorKind::Config,
        Some("ResourceNotFoundException") => ErrorKind::Config,
        _ if status.is_some_and(|s| (500..600).contains(&s)) => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    }
}

/// Classifies the cancellation reasons of a `TransactionCanceledException` the store did not
/// turn into a conflict: throttling or a conflicting transaction is temporary, anything else
/// (`ValidationError`, a condition the store does not interpret, ...) a backend error.
fn classify_reasons(reasons: &[Option<&str>]) -> ErrorKind {
    if reasons
        .iter()
        .flatten()
        .any(|code| TEMPORARY_REASONS.contains(code))
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    }
}

/// What a caller can do about an SDK error of any operation.
pub(crate) fn classify<E>(error: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if let Some(reasons) = transaction_reasons(error) {
        return classify_reasons(&reasons);
    }
    match error {
        SdkError::ConstructionFailure(_) => ErrorKind::Config,
        SdkError::TimeoutError(_) => ErrorKind::Unavailable,
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                ErrorKind::Config
            } else {
                ErrorKind::Unavailable
            }
        }
        SdkError::ResponseError(failure) => {
            if failure.raw().status().is_client_error() {
                ErrorKind::Backend
            } else {
                ErrorKind::Unavailable
            }
        }
        SdkError::ServiceError(failure) => {
            classify_code(failure.err().code(), Some(failure.raw().status().as_u16()))
        }
        _ => ErrorKind::Backend,
    }
}

/// An SDK error of any operation as a tracker-core error: `context`, then DynamoDB's error
/// code (or a canceled transaction's reasons), classified by [`classify`], the SDK's error
/// kept as the source.
pub(crate) fn driver_error<E>(context: impl Into<String>, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let context = context.into();
    let message = match (transaction_reasons(&error), error.code()) {
        (Some(reasons), _) => {
            let codes: Vec<&str> = reasons.iter().flatten().copied().collect();
            format!(
                "{context}: transaction canceled ({})",
                if codes.is_empty() {
                    "no reason given".to_owned()
                } else {
                    codes.join(", ")
                }
            )
        }
        (None, Some(code)) => format!("{context}: {code}"),
        (None, None) => context,
    };
    Error::classified(classify(&error), message, error)
}

/// A request the SDK's builders refused (a required field missing): a bug of this crate,
/// reported as a backend error.
pub(crate) fn build_error(error: BuildError) -> Error {
    Error::backend_with("building a DynamoDB request", error)
}

/// The cancellation reasons of `error` when it is a `TransactionCanceledException` of
/// `TransactWriteItems`.
fn transaction_reasons<E>(error: &SdkError<E, HttpResponse>) -> Option<Vec<Option<&str>>>
where
    E: 'static,
{
    let any: &dyn Any = error;
    cancellation_reasons(any.downcast_ref::<SdkError<TransactWriteItemsError, HttpResponse>>()?)
}

/// The cancellation reason codes of a `TransactionCanceledException`, one per action (in
/// the request's order; `None` for actions that did not fail), or `None` for other errors.
pub(crate) fn cancellation_reasons(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<Option<&str>>> {
    match error.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(canceled) => Some(
            canceled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().filter(|code| *code != "None"))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::operation::query::QueryError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::{
        InternalServerError, ProvisionedThroughputExceededException, RequestLimitExceeded,
        ResourceNotFoundException, ThrottlingException, TransactionCanceledException,
    };
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::empty(),
        )
    }

    /// Error metadata as the SDK's deserialiser fills it from a response.
    fn meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message(format!("{code} from the test"))
            .build()
    }

    fn service<E>(error: E, status: u16) -> SdkError<E, HttpResponse> {
        SdkError::service_error(error, response(status))
    }

    fn kind_of<E>(error: SdkError<E, HttpResponse>) -> ErrorKind
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let kind = classify(&error);
        assert_eq!(driver_error("testing", error).kind(), kind);
        kind
    }

    #[test]
    fn throttling_and_server_errors_are_unavailable() {
        let throttled = QueryError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(meta("ProvisionedThroughputExceededException"))
                .build(),
        );
        assert_eq!(kind_of(service(throttled, 400)), ErrorKind::Unavailable);
        let throttled = QueryError::ThrottlingException(
            ThrottlingException::builder()
                .message("slow down")
                .meta(meta("ThrottlingException"))
                .build(),
        );
        assert_eq!(kind_of(service(throttled, 400)), ErrorKind::Unavailable);
        let limit = QueryError::RequestLimitExceeded(
            RequestLimitExceeded::builder()
                .message("account limit")
                .meta(meta("RequestLimitExceeded"))
                .build(),
        );
        assert_eq!(kind_of(service(limit, 400)), ErrorKind::Unavailable);
        // Not modelled for GetItem: arrives as an unhandled error with its code.
        let conflict = GetItemError::generic(meta("TransactionConflictException"));
        assert_eq!(kind_of(service(conflict, 400)), ErrorKind::Unavailable);
        let internal = GetItemError::InternalServerError(
            InternalServerError::builder()
                .message("oops")
                .meta(meta("InternalServerError"))
                .build(),
        );
        assert_eq!(kind_of(service(internal, 500)), ErrorKind::Unavailable);
        // Any 5xx, whatever its code.
        let unavailable = GetItemError::generic(meta("ServiceUnavailable"));
        assert_eq!(kind_of(service(unavailable, 503)), ErrorKind::Unavailable);
        let unknown = GetItemError::generic(ErrorMetadata::builder().build());
        assert_eq!(kind_of(service(unknown, 502)), ErrorKind::Unavailable);
        let error = driver_error(
            "reading",
            service(GetItemError::generic(meta("ThrottlingException")), 400),
        );
        assert!(error.is_temporary());
        assert!(error.to_string().contains("ThrottlingException"), "{error}");
        let source = std::error::Error::source(&error).expect("the SDK error is kept");
        assert!(
            source
                .downcast_ref::<SdkError<GetItemError, HttpResponse>>()
                .is_some()
        );
    }

    #[test]
    fn transport_failures() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let dispatch: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        assert_eq!(kind_of(dispatch), ErrorKind::Unavailable);
        let timeout: SdkError<GetItemError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(kind_of(timeout), ErrorKind::Unavailable);
        let user: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("bad TLS settings".into()));
        assert_eq!(kind_of(user), ErrorKind::Config);
        let construction: SdkError<GetItemError, HttpResponse> =
            SdkError::construction_failure("no region");
        assert_eq!(kind_of(construction), ErrorKind::Config);
        let garbled: SdkError<GetItemError, HttpResponse> =
            SdkError::response_error("cannot parse", response(502));
        assert_eq!(kind_of(garbled), ErrorKind::Unavailable);
    }

    #[test]
    fn configuration_and_other_errors() {
        let missing = GetItemError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .meta(meta("ResourceNotFoundException"))
                .build(),
        );
        assert_eq!(kind_of(service(missing, 400)), ErrorKind::Config);
        for code in ["UnrecognizedClientException", "AccessDeniedException"] {
            let denied = GetItemError::generic(meta(code));
            assert_eq!(kind_of(service(denied, 400)), ErrorKind::Config, "{code}");
        }
        let invalid = GetItemError::generic(meta("ValidationException"));
        assert_eq!(kind_of(service(invalid, 400)), ErrorKind::Backend);
    }

    fn canceled(codes: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let mut builder = TransactionCanceledException::builder()
            .message("Transaction cancelled")
            .meta(meta("TransactionCanceledException"));
        for code in codes {
            builder =
                builder.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        service(
            TransactWriteItemsError::TransactionCanceledException(builder.build()),
            400,
        )
    }

    #[test]
    fn cancellation_reasons_are_read_per_action() {
        let error = canceled(&[CONDITION_FAILED, "None", "None"]);
        assert_eq!(
            cancellation_reasons(&error),
            Some(vec![Some(CONDITION_FAILED), None, None])
        );
        let error = canceled(&["None", CONDITION_FAILED]);
        assert_eq!(
            cancellation_reasons(&error),
            Some(vec![None, Some(CONDITION_FAILED)])
        );
        let other = service(
            TransactWriteItemsError::generic(meta("ValidationException")),
            400,
        );
        assert_eq!(cancellation_reasons(&other), None);
    }

    #[test]
    fn canceled_transactions_that_are_no_conflict() {
        for reason in [
            "TransactionConflict",
            "ThrottlingError",
            "ProvisionedThroughputExceeded",
        ] {
            let error = driver_error("appending", canceled(&[reason, "None"]));
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{reason}");
            assert!(error.to_string().contains(reason), "{error}");
        }
        let error = driver_error("appending", canceled(&["None", "ValidationError"]));
        assert_eq!(error.kind(), ErrorKind::Backend);
        let error = driver_error("appending", canceled(&[]));
        assert_eq!(error.kind(), ErrorKind::Backend);
        assert!(error.to_string().contains("no reason given"), "{error}");
        // Errors of the call itself are classified as for any operation.
        let throttled = TransactWriteItemsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(meta("ProvisionedThroughputExceededException"))
                .build(),
        );
        assert_eq!(
            driver_error("appending", service(throttled, 400)).kind(),
            ErrorKind::Unavailable
        );
        let conflict = TransactWriteItemsError::generic(meta("TransactionConflictException"));
        assert_eq!(
            driver_error("appending", service(conflict, 400)).kind(),
            ErrorKind::Unavailable
        );
        let internal = TransactWriteItemsError::generic(meta("InternalServerError"));
        assert_eq!(
            driver_error("appending", service(internal, 500)).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn classification_table() {
        assert_eq!(
            classify_code(Some("ThrottlingException"), Some(400)),
            ErrorKind::Unavailable
        );
        assert_eq!(classify_code(None, Some(503)), ErrorKind::Unavailable);
        assert_eq!(
            classify_code(Some("ValidationException"), Some(400)),
            ErrorKind::Backend
        );
        assert_eq!(classify_code(None, None), ErrorKind::Backend);
        assert_eq!(
            classify_code(Some("ResourceNotFoundException"), Some(400)),
            ErrorKind::Config
        );
        assert_eq!(
            classify_code(Some("ExpiredTokenException"), Some(400)),
            ErrorKind::Config
        );
    }
}
