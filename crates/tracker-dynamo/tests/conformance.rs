//! The whole conformance suite on DynamoDB (URL from `TRACKER_TEST_DYNAMO_URL`, else a
//! DynamoDB Local container, else a loud skip), each case on a table of its own: once with
//! DynamoDB's own page size and once with pages of 3 items, so that every read, listing and
//! delete follows `LastEvaluatedKey` many times.

mod common;

mod dynamo {
    tracker_conformance::conformance_suite!(crate::common::store());
}

mod small_pages {
    tracker_conformance::conformance_suite!(crate::common::store_with_page_size(3));
}
