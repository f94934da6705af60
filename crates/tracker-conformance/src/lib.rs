#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod cases;
pub mod claims;
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
            import_resumes_after_an_interruption,
            import_refuses_a_different_prefix,
            append_batch_writes_each_conversation_alone,
            import_batch_copies_resumes_and_refuses,
            delete_at_a_stale_version_conflicts,
            delete_at_version_of_absent_conversations,
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

/// Expands one `#[tokio::test]` per outbox case (see `tracker_core::outbox`) for a store with
/// its outbox on.
///
/// `$make` is as for [`conformance_suite!`], with one more requirement: every evaluation must
/// give a store of its own — no conversations of any other store or case (e.g. a fresh
/// database, key prefix or table), because a relay publishes every pending conversation of
/// the store it is given.
///
/// ```no_run
/// tracker_conformance::outbox_suite!(async {
///     Some(tracker_memory::MemoryStore::with_outbox())
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! outbox_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            outbox_lease_and_checkpoint,
            outbox_lease_expires,
            outbox_failed_appends_and_deletes,
            relays_deliver_every_event_in_order,
        );
    };
}

#[cfg(test)]
mod tests {
    /// Names of the public case functions: `pub async fn NAME<S: Store` in the case files,
    /// and the re-exported ones.
    fn case_functions() -> Vec<String> {
        let sources = [
            include_str!("cases.rs"),
            include_str!("cases/batch.rs"),
            include_str!("cases/delete.rs"),
            include_str!("cases/hostile.rs"),
            include_str!("cases/import.rs"),
            include_str!("cases/outbox.rs"),
            include_str!("cases/races.rs"),
        ];
        let mut names: Vec<String> = sources
            .iter()
            .flat_map(|source| source.lines())
            .filter_map(|line| {
                let rest = line.strip_prefix("pub async fn ")?;
                let (name, rest) = rest.split_once('<')?;
                rest.starts_with("S: Store").then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    fn macro_cases() -> Vec<String> {
        // Every `@cases $make;` list: the conformance suite's and the outbox suite's.
        let source = include_str!("lib.rs");
        let macros = &source[..source.find("#[cfg(test)]").expect("the tests")];
        let mut names: Vec<String> = macros
            .split("@cases $make;")
            .skip(1)
            .filter_map(|rest| rest.find(");").map(|end| &rest[..end]))
            .filter(|list| !list.contains('$'))
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    fn readme_cases() -> Vec<String> {
        let mut names: Vec<String> = include_str!("../README.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split_once('`'))
            .map(|(name, _)| name.to_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_macro_runs_every_case() {
        let functions = case_functions();
        assert!(functions.len() > 10, "{functions:?}");
        assert_eq!(macro_cases(), functions);
    }

    #[test]
    fn the_readme_lists_every_case() {
        assert_eq!(readme_cases(), case_functions());
    }
}
