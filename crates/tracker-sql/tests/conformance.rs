//! The whole conformance suite on every dialect this build enables: PostgreSQL and
//! MariaDB/MySQL (URLs from `TRACKER_TEST_POSTGRES_URL` / `TRACKER_TEST_MYSQL_URL`, else a
//! container, else a loud skip), and SQLite in a file and in memory; the outbox suite on the
//! same, with `outbox: true`, each case on a database of its own (a new PostgreSQL schema, a
//! new MariaDB database, a new SQLite file or in-memory database); and the README's
//! capability table against what the store declares.

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    tracker_conformance::conformance_suite!(crate::common::postgres());
}

#[cfg(feature = "mysql")]
mod mysql {
    tracker_conformance::conformance_suite!(crate::common::mysql());
}

#[cfg(feature = "sqlite")]
mod sqlite_file {
    tracker_conformance::conformance_suite!(crate::common::sqlite_file());
}

#[cfg(feature = "sqlite")]
mod sqlite_memory {
    tracker_conformance::conformance_suite!(crate::common::sqlite_memory());
}

#[cfg(feature = "postgres")]
mod postgres_outbox {
    tracker_conformance::outbox_suite!(crate::common::outbox::postgres());
}

#[cfg(feature = "mysql")]
mod mysql_outbox {
    tracker_conformance::outbox_suite!(crate::common::outbox::mysql());
}

#[cfg(feature = "sqlite")]
mod sqlite_file_outbox {
    tracker_conformance::outbox_suite!(crate::common::outbox::sqlite_file());
}

#[cfg(feature = "sqlite")]
mod sqlite_memory_outbox {
    tracker_conformance::outbox_suite!(crate::common::outbox::sqlite_memory());
}

/// The README states the capabilities the store declares, on every dialect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_states_capabilities() {
    use tracker_sql::tracker_core::Store;

    let readme = include_str!("../README.md");
    #[cfg(feature = "sqlite")]
    {
        let store = common::sqlite_memory().await.expect("SQLite");
        tracker_conformance::claims::assert_readme_states_capabilities(
            readme,
            &store.capabilities(),
        );
    }
    #[cfg(feature = "postgres")]
    if let Some(store) = common::postgres().await {
        tracker_conformance::claims::assert_readme_states_capabilities(
            readme,
            &store.capabilities(),
        );
    }
    #[cfg(feature = "mysql")]
    if let Some(store) = common::mysql().await {
        tracker_conformance::claims::assert_readme_states_capabilities(
            readme,
            &store.capabilities(),
        );
    }
    let _ = readme;
}
