//! The whole conformance suite on every dialect: PostgreSQL and MariaDB/MySQL (URLs from
//! `TRACKER_TEST_POSTGRES_URL` / `TRACKER_TEST_MYSQL_URL`, else a container, else a loud
//! skip), and SQLite in a file and in memory.

mod common;

mod postgres {
    tracker_conformance::conformance_suite!(crate::common::postgres());
}

mod mysql {
    tracker_conformance::conformance_suite!(crate::common::mysql());
}

mod sqlite_file {
    tracker_conformance::conformance_suite!(crate::common::sqlite_file());
}

mod sqlite_memory {
    tracker_conformance::conformance_suite!(crate::common::sqlite_memory());
}
