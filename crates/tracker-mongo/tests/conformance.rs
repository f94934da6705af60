//! The whole conformance suite, twice: with the default bucket sizes, and with heads that keep
//! only 3 events, so that nearly every append seals a bucket and the roll-over paths face every
//! case (32 concurrent writers included). The outbox suite likewise, in both configurations
//! with `outbox: true`. Each case gets its own collections. Also: the README states the
//! capabilities the store declares.

mod common;

/// Default bucket sizes (500 events / 512 KiB in the head).
mod default_buckets {
    tracker_conformance::conformance_suite!(crate::common::store());
}

/// Heads of at most 3 events and 2 KiB.
mod small_buckets {
    tracker_conformance::conformance_suite!(crate::common::small_buckets());
}

/// The outbox cases, default bucket sizes.
mod outbox_default_buckets {
    tracker_conformance::outbox_suite!(
        crate::common::store_with(|config| config.with_outbox(true))
    );
}

/// The outbox cases, heads of at most 3 events and 2 KiB: appends that roll over mark the
/// conversation pending in their commit.
mod outbox_small_buckets {
    tracker_conformance::outbox_suite!(crate::common::store_with(|config| config
        .with_bucket_size(3, 2048)
        .with_outbox(true)));
}

/// The README's capability table states what the store declares.
#[tokio::test]
async fn readme_states_the_capabilities() {
    use tracker_core::Store;

    let Some(store) = common::store().await else {
        return;
    };
    tracker_conformance::claims::assert_readme_states_capabilities(
        include_str!("../README.md"),
        &store.capabilities(),
    );
}
