//! The in-memory store passes the whole conformance suite.

tracker_conformance::conformance_suite!(async { Some(tracker_memory::MemoryStore::new()) });

#[test]
fn the_readme_states_the_capabilities() {
    use tracker_memory::tracker_core::Store;
    tracker_conformance::claims::assert_readme_states_capabilities(
        include_str!("../README.md"),
        &tracker_memory::MemoryStore::new().capabilities(),
    );
}

mod outbox {
    tracker_conformance::outbox_suite!(async { Some(tracker_memory::MemoryStore::with_outbox()) });
}
