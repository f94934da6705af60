//! The document layout and its setup: what heads and buckets hold, the indexes
//! `ensure_schema` creates, and the number types a real server keeps.

mod common;

use common::{append, bots, buckets_of, head_document, number, read_texts, texts};
use tracker_core::{Event, ReadScope};
use tracker_mongo::mongodb::bson::Bson;
use tracker_mongo::schema::{self, bucket, head};
use tracker_mongo::{MongoConfig, MongoStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn layout_of_heads_and_buckets() {
    let Some(store) = common::store_with(|c| c.with_bucket_size(4, 1 << 20)).await else {
        return;
    };
    let sender = "layout ü";
    let mut events = vec![
        Event::action("action_session_start").at(1_700_000_000.0),
        Event::session_started().at(1_700_000_000.5),
    ];
    events.extend(bots("first", 2));
    assert_eq!(append(&store, sender, 0, &events).await, 4);
    let more = bots("second", 3);
    assert_eq!(append(&store, sender, 4, &more).await, 7);

    let head = head_document(&store, sender).await;
    assert_eq!(head.get_str(head::SENDER_ID).ok(), Some(sender));
    assert_eq!(
        head.get_str(head::SENDER_HEX).ok(),
        Some("6c61796f757420c3bc")
    );
    assert_eq!(number(&head, head::VERSION), 7);
    assert_eq!(number(&head, head::SESSION), 2);
    assert_eq!(number(&head, head::TAIL_SEQ), 5, "the full tail was sealed");
    assert_eq!(number(&head, head::TAIL_COUNT), 3);
    assert!(matches!(
        head.get(head::GENERATION),
        Some(Bson::ObjectId(_))
    ));
    let tail = head.get_array(head::TAIL).expect("tail");
    let entry = tail[0].as_document().expect("entry");
    assert_eq!(number(entry, "seq"), 5);
    assert_eq!(entry.get_str("type").ok(), Some("bot"));
    assert_eq!(
        entry.get_str("data").ok(),
        Some(more[0].to_rasa_json().as_str()),
        "events are stored as Rasa's exact JSON text"
    );

    let buckets = buckets_of(&store, sender).await;
    assert_eq!(buckets.len(), 1);
    let sealed = &buckets[0];
    assert_eq!(
        (
            number(sealed, bucket::FIRST_SEQ),
            number(sealed, bucket::LAST_SEQ),
            number(sealed, bucket::COUNT)
        ),
        (1, 4, 4)
    );
    assert_eq!(sealed.get(bucket::GENERATION), head.get(head::GENERATION));
    assert_eq!(
        sealed.get_object_id("_id").ok(),
        Some(schema::bucket_id(
            sender,
            &head.get_object_id(head::GENERATION).expect("generation"),
            1
        ))
    );
    let all: Vec<Event> = [events, more].concat();
    assert_eq!(
        read_texts(&store, sender, ReadScope::All).await,
        Some(texts(&all))
    );
}

/// `ensure_schema` creates the missing indexes and says which; run again, or after a
/// `connect` that created them, it changes nothing and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ensure_schema_creates_the_missing_indexes() {
    let Some(store) = common::store_with(|c| MongoConfig {
        ensure_indexes: false,
        ..c
    })
    .await
    else {
        return;
    };
    // The collections do not exist yet: nothing was written.
    let created = store.ensure_schema().await.expect("indexes");
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(
        created[0].contains(schema::HEADS_INDEX) && created[0].contains(".heads"),
        "{created:?}"
    );
    assert!(
        created[1].contains(schema::EVENTS_INDEX) && created[1].contains(".events"),
        "{created:?}"
    );
    assert_eq!(
        store.ensure_schema().await.expect("again"),
        Vec::<String>::new(),
        "nothing to do the second time"
    );
    append(&store, "x", 0, &bots("x", 1)).await;
    let heads = store
        .heads()
        .list_index_names()
        .await
        .expect("head indexes");
    assert!(heads.contains(&schema::HEADS_INDEX.to_owned()), "{heads:?}");
    let buckets = store.buckets().list_index_names().await.expect("indexes");
    assert!(
        buckets.contains(&schema::EVENTS_INDEX.to_owned()),
        "{buckets:?}"
    );

    // `connect` with `ensure_indexes` (the default) creates them: nothing is left to do.
    let Some(connected) = common::store().await else {
        return;
    };
    assert_eq!(
        connected.ensure_schema().await.expect("after connect"),
        Vec::<String>::new()
    );
    let config = MongoConfig::default()
        .with_db(common::TEST_DB)
        .with_collection(connected.collection_name());
    let on_client = MongoStore::from_client(connected.client().clone(), &config).expect("client");
    assert!(on_client.ensure_schema().await.expect("shared").is_empty());
}

/// Numbers in this store's own documents come back as the types written on a real server;
/// the store reads them tolerantly either way (checked by every other test on the stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_server_keeps_64_bit_counters() {
    let Some(store) = common::store().await else {
        return;
    };
    if !common::real_server(&store, "schema::real_server_keeps_64_bit_counters").await {
        return;
    }
    append(&store, "typed", 0, &bots("x", 2)).await;
    let head = head_document(&store, "typed").await;
    for field in [
        head::VERSION,
        head::TAIL_SEQ,
        head::TAIL_COUNT,
        head::TAIL_BYTES,
    ] {
        assert!(
            matches!(head.get(field), Some(Bson::Int64(_))),
            "{field}: {:?}",
            head.get(field)
        );
    }
}

/// With the outbox on, `ensure_schema` also creates the sparse index of pending heads (and
/// `connect` does, with `ensure_indexes`); without it, that index is never created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_outbox_index_comes_with_the_outbox() {
    let Some(store) = common::store_with(|c| MongoConfig {
        ensure_indexes: false,
        ..c.with_outbox(true)
    })
    .await
    else {
        return;
    };
    let created = store.ensure_schema().await.expect("indexes");
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(
        created
            .iter()
            .any(|index| index.contains(schema::OUTBOX_INDEX) && index.contains(".heads")),
        "{created:?}"
    );
    append(&store, "x", 0, &bots("x", 1)).await;
    let heads = store
        .heads()
        .list_index_names()
        .await
        .expect("head indexes");
    assert!(
        heads.contains(&schema::OUTBOX_INDEX.to_owned()),
        "{heads:?}"
    );

    let Some(connected) = common::store_with(|c| c.with_outbox(true)).await else {
        return;
    };
    assert_eq!(
        connected.ensure_schema().await.expect("after connect"),
        Vec::<String>::new()
    );
    let Some(without) = common::store().await else {
        return;
    };
    append(&without, "x", 0, &bots("x", 1)).await;
    let heads = without
        .heads()
        .list_index_names()
        .await
        .expect("head indexes");
    assert!(
        !heads.contains(&schema::OUTBOX_INDEX.to_owned()),
        "{heads:?}"
    );
}
