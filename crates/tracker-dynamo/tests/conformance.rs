//! The whole conformance suite on DynamoDB (URL from `TRACKER_TEST_DYNAMO_URL`, else a
//! DynamoDB Local container, else a loud skip), each case on a table of its own: once with
//! DynamoDB's own page size, once with pages of 3 items, so that every read, listing and
//! delete follows `LastEvaluatedKey` many times, and once configured with a Rasa table as
//! `table_name` (so that every operation also looks at Rasa's table).

mod common;

mod dynamo {
    tracker_conformance::conformance_suite!(crate::common::store());
}

mod small_pages {
    tracker_conformance::conformance_suite!(crate::common::store_with_page_size(3));
}

mod adopting {
    tracker_conformance::conformance_suite!(crate::common::adopting_store());
}
