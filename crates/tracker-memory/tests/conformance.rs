//! The in-memory store passes the whole conformance suite.

tracker_conformance::conformance_suite!(async { Some(tracker_memory::MemoryStore::new()) });
