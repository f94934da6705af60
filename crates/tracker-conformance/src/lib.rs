#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod cases;
pub mod golden;

/// Expands one `#[tokio::test]` per conformance case for a store.
///
/// `$make` is an expression giving a future that resolves to `Option<S>` with `S: Store`:
/// `None` means the store's service is unavailable and the case is skipped (the constructor
/// is expected to have printed why, as `tracker-testkit` does). It is evaluated once per
/// case, so each case may get a fresh store; cases also use fresh sender ids, so they can
/// share one database and run in parallel.
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
///
/// ```no_run
/// tracker_conformance::conformance_suite!(async { Some(tracker_memory::MemoryStore::new()) });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            empty_store,
            golden_events_round_trip,
            golden_trackers_round_trip,
            versions_count_events,
            save_twice_writes_nothing_twice,
            latest_session_and_full_reads,
            session_start_split_across_appends,
            stale_version_conflicts,
            concurrent_writers_one_wins,
            list_pages_are_complete,
            delete_then_read,
            unusual_sender_ids,
            large_event,
            invalid_input_is_rejected,
            hostile_input_round_trips,
            race_on_one_conversation,
            race_on_many_conversations,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(store) = ($make).await {
                    $crate::cases::$case(store).await;
                }
            }
        )*
    };
}
