//! The whole conformance suite on DynamoDB (URL from `TRACKER_TEST_DYNAMO_URL`, else a
//! DynamoDB Local container, else a loud skip), each case on a table of its own: once with
//! DynamoDB's own page size, once with pages of 3 items, so that every read, listing and
//! delete follows `LastEvaluatedKey` many times, and once configured with a Rasa table as
//! `table_name` (so that every operation also looks at Rasa's table). The outbox cases
//! likewise, with `outbox: true`, each on a table of its own (a relay publishes every
//! pending conversation of its store): with pages of 3 items every `pending` merges the
//! index's shards across many pages.

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

mod outbox {
    tracker_conformance::outbox_suite!(crate::common::outbox_store());
}

mod outbox_small_pages {
    tracker_conformance::outbox_suite!(crate::common::outbox_store_with_page_size(3));
}

mod outbox_adopting {
    tracker_conformance::outbox_suite!(crate::common::adopting_outbox_store());
}
