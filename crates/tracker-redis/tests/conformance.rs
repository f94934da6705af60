//! The Redis store passes the whole conformance suite, on a single server and on a Redis
//! Cluster, and the outbox suite on both with its outbox on. Each case gets a store in a
//! fresh key namespace, deleted when the case ends.

mod common;

/// A single Redis server (`TRACKER_TEST_REDIS_URL`).
mod single {
    tracker_conformance::conformance_suite!(async {
        crate::common::store(tracker_testkit::Service::Redis).await
    });

    /// With the outbox on: the pending set is exact, updated inside the scripts.
    mod outbox {
        tracker_conformance::outbox_suite!(async {
            crate::common::outbox_store(tracker_testkit::Service::Redis).await
        });
    }
}

/// A Redis Cluster (`TRACKER_TEST_REDIS_CLUSTER_URL`).
mod cluster {
    tracker_conformance::conformance_suite!(async {
        crate::common::store(tracker_testkit::Service::RedisCluster).await
    });

    /// With the outbox on: the pending set lives in another slot than the conversations.
    mod outbox {
        tracker_conformance::outbox_suite!(async {
            crate::common::outbox_store(tracker_testkit::Service::RedisCluster).await
        });
    }
}
