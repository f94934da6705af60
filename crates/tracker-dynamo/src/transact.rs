//! Sending a `TransactWriteItems`. DynamoDB cancels a transaction that touches an item another
//! transaction is writing at the same moment, with the reason `TransactionConflict` for that
//! item; such a transaction is sent again, at most [`CONFLICT_ATTEMPTS`] times in all, after a
//! pause with full jitter. A transaction canceled because a condition failed is returned to the
//! caller, which reads what changed; any other failure is an error, told apart by whether the
//! transaction may have been applied all the same ([`Failed::maybe_applied`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use tracker_core::{Error, Result};

use crate::error::{CONDITION_FAILED, cancellation_reasons, driver_error};
use crate::schema::Item;

/// The cancellation reason of an action whose item another transaction was writing.
pub(crate) const TRANSACTION_CONFLICT: &str = "TransactionConflict";
/// The error code of a single-item write that met a transaction on its item.
const TRANSACTION_CONFLICT_EXCEPTION: &str = "TransactionConflictException";
/// The error code of a transaction sent again with the client request token of one DynamoDB
/// is still applying (an earlier attempt of the same request).
const TRANSACTION_IN_PROGRESS_EXCEPTION: &str = "TransactionInProgressException";
/// How many times a transaction is sent at most while it keeps meeting other transactions.
pub(crate) const CONFLICT_ATTEMPTS: u32 = 8;
/// The longest pause before the second attempt; it doubles for each further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// The longest pause between two attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(400);

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// It was applied.
    Committed,
    /// It was canceled because conditions failed (nothing was written): for each action,
    /// whether its condition failed.
    ConditionsFailed(Vec<bool>),
    /// It was canceled because of conflicting transactions at every attempt (nothing was
    /// written).
    StillConflicting,
}

/// What a canceled transaction says of one of its actions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reason {
    /// Whether the action's condition failed.
    pub(crate) failed: bool,
    /// The item as it was, for an action whose condition failed and that asked for it
    /// (`ReturnValuesOnConditionCheckFailure`), when it existed.
    pub(crate) item: Option<Item>,
}

/// A transaction that failed for another reason than its conditions or conflicting
/// transactions.
#[derive(Debug)]
pub(crate) struct Failed {
    /// The error.
    pub(crate) error: Error,
    /// Whether it may have been applied all the same: the request may have reached DynamoDB
    /// and no answer says it was not (a timeout, a lost connection, a server error).
    pub(crate) maybe_applied: bool,
}

impl From<Error> for Failed {
    /// An error after which nothing was written (a read, a refused request).
    fn from(error: Error) -> Self {
        Self {
            error,
            maybe_applied: false,
        }
    }
}

/// How a transaction ended, in full.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It was applied.
    Committed,
    /// It was canceled because conditions failed (nothing was written): one reason per
    /// action, in the request's order (as many as DynamoDB gave).
    ConditionsFailed(Vec<Reason>),
    /// It was canceled because of conflicting transactions at every attempt (nothing was
    /// written).
    StillConflicting,
    /// It failed otherwise.
    Failed(Failed),
}

/// What to do about a failed `TransactWriteItems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Conditions failed: for each action, whether its condition failed.
    ConditionsFailed(Vec<bool>),
    /// Another transaction held an item: send it again.
    Conflicting,
    /// Anything else: an error.
    Failed,
}

/// Reads a failed transaction: its cancellation reasons (one per action, `None` for actions
/// that did not fail; no list at all when it was not canceled) and its error code.
///
/// A cancellation whose reasons are only failed conditions, conflicts and actions that did
/// not fail is [`Verdict::ConditionsFailed`] when a condition failed (the state differs from
/// what the caller read, whatever else happened), else [`Verdict::Conflicting`]; any other
/// reason (throttling, validation) makes it [`Verdict::Failed`].
pub(crate) fn verdict(reasons: Option<&[Option<&str>]>, code: Option<&str>) -> Verdict {
    let Some(reasons) = reasons else {
        return if code == Some(TRANSACTION_CONFLICT_EXCEPTION) {
            Verdict::Conflicting
        } else {
            Verdict::Failed
        };
    };
    let understood = reasons.iter().all(|reason| {
        matches!(
            *reason,
            None | Some(CONDITION_FAILED | TRANSACTION_CONFLICT)
        )
    });
    if !understood {
        return Verdict::Failed;
    }
    if reasons.contains(&Some(CONDITION_FAILED)) {
        return Verdict::ConditionsFailed(
            reasons
                .iter()
                .map(|reason| *reason == Some(CONDITION_FAILED))
                .collect(),
        );
    }
    if reasons.contains(&Some(TRANSACTION_CONFLICT)) {
        Verdict::Conflicting
    } else {
        Verdict::Failed
    }
}

/// Sends `actions` as one transaction, again after a jittered pause while it is canceled for
/// conflicting transactions (at most [`CONFLICT_ATTEMPTS`] times in all).
///
/// # Errors
/// Any failure other than failed conditions and conflicts, classified by
/// [`driver_error`] with `context()`.
pub(crate) async fn transact(
    client: &Client,
    actions: &[TransactWriteItem],
    context: &(dyn Fn() -> String + Send + Sync),
) -> Result<Sent> {
    match send_transaction(client, actions, context).await {
        Ended::Committed => Ok(Sent::Committed),
        Ended::ConditionsFailed(reasons) => Ok(Sent::ConditionsFailed(
            reasons.iter().map(|reason| reason.failed).collect(),
        )),
        Ended::StillConflicting => Ok(Sent::StillConflicting),
        Ended::Failed(failed) => Err(failed.error),
    }
}

/// [`transact`], telling how it ended in full: the items returned with failed conditions,
/// and for any other failure whether the transaction may have been applied.
pub(crate) async fn send_transaction(
    client: &Client,
    actions: &[TransactWriteItem],
    context: &(dyn Fn() -> String + Send + Sync),
) -> Ended {
    for attempt in 0..CONFLICT_ATTEMPTS {
        let error = match client
            .transact_write_items()
            .set_transact_items(Some(actions.to_vec()))
            .send()
            .await
        {
            Ok(_) => return Ended::Committed,
            Err(error) => error,
        };
        match verdict(cancellation_reasons(&error).as_deref(), error.code()) {
            Verdict::ConditionsFailed(failed) => {
                let mut items = cancellation_items(&error).into_iter();
                return Ended::ConditionsFailed(
                    failed
                        .into_iter()
                        .map(|failed| Reason {
                            failed,
                            item: items.next().flatten(),
                        })
                        .collect(),
                );
            }
            Verdict::Failed => {
                let maybe_applied = may_have_applied(&error);
                return Ended::Failed(Failed {
                    error: driver_error(context(), error),
                    maybe_applied,
                });
            }
            Verdict::Conflicting => {
                tracing::debug!(
                    attempt = attempt + 1,
                    what = %context(),
                    "transaction canceled by a conflicting transaction"
                );
                if attempt + 1 < CONFLICT_ATTEMPTS {
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
    Ended::StillConflicting
}

/// The items a `TransactionCanceledException` returned, one per action (`None` where it
/// returned none), or nothing for other errors.
fn cancellation_items(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Vec<Option<Item>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => canceled
            .cancellation_reasons()
            .iter()
            .map(|reason| reason.item().filter(|item| !item.is_empty()).cloned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a failed `TransactWriteItems` may have been applied all the same. Not when it was
/// never sent, nor when DynamoDB answered with a client error (a canceled transaction, a
/// validation error, throttling, a missing table: the request was refused, and any earlier
/// attempt of it the SDK made would have made a retry with the same client request token
/// succeed), except that another attempt of it is still being applied. Otherwise (a server
/// error, a timeout, a lost connection, an answer that could not be read) it may have been.
pub(crate) fn may_have_applied(error: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(failure) => {
            failure.raw().status().is_server_error()
                || failure.err().code() == Some(TRANSACTION_IN_PROGRESS_EXCEPTION)
        }
        _ => true,
    }
}

/// The pause after attempt `attempt` (from 0): uniformly random up to
/// `min(BACKOFF_MAX, BACKOFF_BASE * 2^attempt)` ("full jitter"), so that writers that met
/// each other do not meet again.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1_u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(random_fraction())
}

/// A number in `[0, 1)`, different on every call: std's randomly keyed hasher (its keys change
/// with every `RandomState`) over the current time.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::error::{ErrorMetadata, SdkError};
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    type TransactError = SdkError<TransactWriteItemsError, HttpResponse>;

    /// A `TransactionCanceledException` as the SDK deserialises DynamoDB's reply: one reason
    /// per action, `Code` `"None"` for the actions that did not fail (DynamoDB sends the
    /// string), or no code at all.
    fn canceled(reasons: &[Option<&str>]) -> TransactError {
        let codes: Vec<&str> = reasons.iter().map(|r| r.unwrap_or("<absent>")).collect();
        let mut builder = TransactionCanceledException::builder()
            .message(format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons \
                 [{}]",
                codes.join(", ")
            ))
            .meta(
                ErrorMetadata::builder()
                    .code("TransactionCanceledException")
                    .build(),
            );
        for reason in reasons {
            let mut reason_builder = CancellationReason::builder();
            if let Some(code) = reason {
                reason_builder = reason_builder.code(*code);
                if *code == TRANSACTION_CONFLICT {
                    reason_builder = reason_builder.message("Transaction is ongoing for the item");
                } else if *code == CONDITION_FAILED {
                    reason_builder = reason_builder.message("The conditional request failed");
                }
            }
            builder = builder.cancellation_reasons(reason_builder.build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(builder.build()),
            HttpResponse::new(StatusCode::try_from(400).expect("status"), SdkBody::empty()),
        )
    }

    fn verdict_of(error: &TransactError) -> Verdict {
        verdict(cancellation_reasons(error).as_deref(), error.code())
    }

    #[test]
    fn conflicting_transactions_are_sent_again() {
        // As DynamoDB reports two transactions on one item: the conflicting action names
        // `TransactionConflict`, every other one `None`.
        for reasons in [
            &[Some("None"), Some(TRANSACTION_CONFLICT)][..],
            &[Some(TRANSACTION_CONFLICT), Some("None"), Some("None")],
            &[None, Some(TRANSACTION_CONFLICT)],
            &[Some(TRANSACTION_CONFLICT), Some(TRANSACTION_CONFLICT)],
        ] {
            assert_eq!(
                verdict_of(&canceled(reasons)),
                Verdict::Conflicting,
                "{reasons:?}"
            );
        }
        // A single-item write that met a transaction.
        let error: TransactError = SdkError::service_error(
            TransactWriteItemsError::generic(
                ErrorMetadata::builder()
                    .code(TRANSACTION_CONFLICT_EXCEPTION)
                    .build(),
            ),
            HttpResponse::new(StatusCode::try_from(400).expect("status"), SdkBody::empty()),
        );
        assert_eq!(verdict_of(&error), Verdict::Conflicting);
    }

    #[test]
    fn failed_conditions_go_back_to_the_caller() {
        assert_eq!(
            verdict_of(&canceled(&[Some(CONDITION_FAILED), Some("None")])),
            Verdict::ConditionsFailed(vec![true, false])
        );
        // A failed condition decides, whatever else happened.
        assert_eq!(
            verdict_of(&canceled(&[
                Some("None"),
                Some(CONDITION_FAILED),
                Some(TRANSACTION_CONFLICT)
            ])),
            Verdict::ConditionsFailed(vec![false, true, false])
        );
        assert_eq!(
            verdict_of(&canceled(&[None, Some(CONDITION_FAILED)])),
            Verdict::ConditionsFailed(vec![false, true])
        );
    }

    #[test]
    fn other_cancellations_are_errors() {
        for reasons in [
            &[Some("ThrottlingError"), Some("None")][..],
            &[
                Some(TRANSACTION_CONFLICT),
                Some("ProvisionedThroughputExceeded"),
            ],
            &[Some("None"), Some("ValidationError")],
            &[Some("None"), Some("None")],
            &[],
        ] {
            assert_eq!(
                verdict_of(&canceled(reasons)),
                Verdict::Failed,
                "{reasons:?}"
            );
        }
        let error: TransactError = SdkError::timeout_error("timed out");
        assert_eq!(verdict_of(&error), Verdict::Failed);
    }

    #[test]
    fn only_refusals_say_nothing_was_applied() {
        let service = |code: &str, status: u16| -> TransactError {
            SdkError::service_error(
                TransactWriteItemsError::generic(ErrorMetadata::builder().code(code).build()),
                HttpResponse::new(
                    StatusCode::try_from(status).expect("status"),
                    SdkBody::empty(),
                ),
            )
        };
        // DynamoDB answered that it did not apply it.
        assert!(!may_have_applied(&canceled(&[Some(CONDITION_FAILED)])));
        assert!(!may_have_applied(&canceled(&[Some("ThrottlingError")])));
        assert!(!may_have_applied(&service("ValidationException", 400)));
        assert!(!may_have_applied(&service("ThrottlingException", 400)));
        assert!(!may_have_applied(&SdkError::construction_failure(
            "no region"
        )));
        // No answer, or one that does not tell.
        assert!(may_have_applied(&service("InternalServerError", 500)));
        assert!(may_have_applied(&service("ServiceUnavailable", 503)));
        assert!(may_have_applied(&service(
            TRANSACTION_IN_PROGRESS_EXCEPTION,
            400
        )));
        assert!(may_have_applied(&SdkError::timeout_error("timed out")));
    }

    #[test]
    fn pauses_are_jittered_and_bounded() {
        let mut pauses = std::collections::HashSet::new();
        for attempt in 0..CONFLICT_ATTEMPTS {
            let ceiling = (BACKOFF_BASE * 2_u32.pow(attempt)).min(BACKOFF_MAX);
            for _ in 0..50 {
                let pause = backoff(attempt);
                assert!(pause <= ceiling, "{pause:?} > {ceiling:?}");
                pauses.insert(pause);
            }
        }
        assert!(pauses.len() > 300, "{} distinct pauses", pauses.len());
        assert!(backoff(40) <= BACKOFF_MAX);
        let worst: Duration = (0..CONFLICT_ATTEMPTS - 1)
            .map(|attempt| (BACKOFF_BASE * 2_u32.pow(attempt)).min(BACKOFF_MAX))
            .sum();
        assert!(worst < Duration::from_secs(2), "{worst:?}");
    }
}
