//! Tracing spans and metrics for every store operation, written once.
//!
//! Each [`TrackerStore`](crate::TrackerStore) operation runs in a `tracing` span named
//! `store_operation` with the fields `store`, `operation`, `sender_id`, `events`, `version`,
//! `outcome` (`ok` or the error kind) and `duration_us`, and is counted through the `metrics`
//! facade (no exporter is linked; install any `metrics` recorder to collect them):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tracker_store_operations_total` | counter | `store`, `operation`, `outcome` |
//! | `tracker_store_operation_seconds` | histogram | `store`, `operation` |
//! | `tracker_store_events_total` | counter (events appended or read) | `store`, `operation` |
//!
//! Conflicts are the operations with `outcome="conflict"`, errors by kind those with any other
//! outcome but `ok`.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;
use tracing::field::Empty;

use crate::error::Result;

/// Name of the operations counter.
pub const OPERATIONS_TOTAL: &str = "tracker_store_operations_total";
/// Name of the latency histogram, in seconds.
pub const OPERATION_SECONDS: &str = "tracker_store_operation_seconds";
/// Name of the counter of events appended or read.
pub const EVENTS_TOTAL: &str = "tracker_store_events_total";

/// One operation about to run.
pub(crate) struct Operation<'a> {
    pub store: &'a str,
    pub name: &'static str,
    pub sender_id: Option<&'a str>,
    /// Events the operation writes (0 for reads, which count what they return).
    pub events: usize,
}

/// What an operation's result says for the span and the metrics.
pub(crate) trait Outcome {
    /// The conversation's version afterwards, if the result tells it.
    fn version(&self) -> Option<u64> {
        None
    }
    /// Events the result carries (for reads).
    fn events(&self) -> usize {
        0
    }
}

impl Outcome for u64 {
    fn version(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Outcome for bool {}

impl Outcome for crate::store::ListPage {}

impl Outcome for crate::rasa::Imported {
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
}

impl<T: Outcome> Outcome for Option<T> {
    fn version(&self) -> Option<u64> {
        self.as_ref().and_then(Outcome::version)
    }
    fn events(&self) -> usize {
        self.as_ref().map_or(0, Outcome::events)
    }
}

/// Runs `future` as `operation`: in a span, timed, counted, and with the operation attached
/// to its error.
pub(crate) async fn observe<T: Outcome>(
    operation: Operation<'_>,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = tracing::debug_span!(
        "store_operation",
        store = operation.store,
        operation = operation.name,
        sender_id = operation.sender_id,
        events = operation.events,
        version = Empty,
        outcome = Empty,
        duration_us = Empty,
    );
    let started = Instant::now();
    let result = future.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(value) => {
            if let Some(version) = value.version() {
                span.record("version", version);
            }
            "ok"
        }
        Err(error) => error.kind().as_str(),
    };
    span.record("outcome", outcome);
    span.record(
        "duration_us",
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    );
    let store = operation.store.to_owned();
    metrics::counter!(
        OPERATIONS_TOTAL,
        "store" => store.clone(),
        "operation" => operation.name,
        "outcome" => outcome,
    )
    .increment(1);
    metrics::histogram!(
        OPERATION_SECONDS,
        "store" => store.clone(),
        "operation" => operation.name,
    )
    .record(elapsed.as_secs_f64());
    let events = match &result {
        Ok(value) if operation.events == 0 => value.events(),
        Ok(_) => operation.events,
        Err(_) => 0,
    };
    if events > 0 {
        metrics::counter!(
            EVENTS_TOTAL,
            "store" => store,
            "operation" => operation.name,
        )
        .increment(events as u64);
    }
    result.map_err(|error| error.with_context(operation.store, operation.name, operation.sender_id))
}
