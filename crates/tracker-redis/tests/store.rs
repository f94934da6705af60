//! Redis-specific behaviour, on a single server and on a cluster: expiry of every key, stale
//! appends, hash slots, corrupt data, and the index behind listings.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestStore, eventually, keys_of, store, store_configured, store_with};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracker_core::json::to_python_json;
use tracker_core::{
    BatchAppend, Error, ErrorKind, Event, EventData, ReadScope, SenderId, Store, TrackerStore,
};
use tracker_redis::fred::prelude::*;
use tracker_redis::fred::types::{ClusterHash, CustomCommand};
use tracker_redis::fred::util::redis_keyslot;
use tracker_redis::{KeyLayout, MAX_EVENT_BYTES, RedisConfig, RedisStore, hash_tag, tracker_core};
use tracker_testkit::Service;

on_both!(
    record_exp_expires_every_key,
    writes_without_record_exp_remove_the_expiry,
    expired_conversations_leave_the_index,
    stale_append_writes_nothing,
    conversation_keys_share_a_slot,
    corrupt_data_is_corrupt_for_that_conversation_only,
    listing_skips_and_prunes_missing_conversations,
    existing_client_and_pool,
    ensure_schema_changes_nothing,
    readme_states_the_capabilities,
    batch_writes_each_conversation_alone,
    batch_adopts_rasa_records,
    batch_corrupt_conversation_is_its_own_error,
    reads_racing_appends_and_deletes_are_consistent,
);

fn session(t: f64) -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.01),
        Event::action("action_listen").at(t + 0.02),
        Event::user("hi", "greet", 0.9).at(t + 1.0),
        Event::bot("hello").at(t + 1.1),
    ]
}

fn api(store: &TestStore) -> TrackerStore {
    TrackerStore::new(store.0.clone())
}

/// The two keys of a conversation.
fn conversation_keys(store: &RedisStore, id: &str) -> [String; 2] {
    [store.layout().events(id), store.layout().head(id)]
}

async fn pttl(store: &RedisStore, key: &str) -> i64 {
    store.client().pttl(key).await.expect("PTTL")
}

async fn exists(store: &RedisStore, key: &str) -> bool {
    let n: i64 = store.client().exists(key).await.expect("EXISTS");
    n == 1
}

async fn in_index(store: &RedisStore, id: &str) -> (bool, bool) {
    let client = store.client();
    let ids: Option<f64> = client
        .zscore(store.layout().index(), id)
        .await
        .expect("ZSCORE");
    let hint: Option<f64> = client
        .zscore(store.layout().index_expiry(), id)
        .await
        .expect("ZSCORE");
    (ids.is_some(), hint.is_some())
}

async fn pending_score(store: &RedisStore, id: &str) -> Option<f64> {
    store
        .client()
        .zscore(store.layout().outbox_pending(), id)
        .await
        .expect("ZSCORE")
}

async fn all_ids(api: &TrackerStore) -> Vec<String> {
    api.keys().await.expect("keys")
}

/// `record_exp` puts the same expiry on every key of a conversation, renewed by each write,
/// and the whole conversation disappears.
async fn record_exp_expires_every_key(service: Service) {
    let Some(store) = store_with(service, Some(1)).await else {
        return;
    };
    assert!(store.capabilities().expiry);
    let api = api(&store);
    let id = "expiring {conversation} 100%";
    let events = session(1_700_000_000.0);
    api.append(id, 0, &events[..3]).await.expect("append");
    for key in conversation_keys(&store, id) {
        let ttl = pttl(&store, &key).await;
        assert!(ttl > 0 && ttl <= 1_000, "{key}: PTTL {ttl}");
    }
    api.append(id, 3, &events[3..]).await.expect("append again");
    for key in conversation_keys(&store, id) {
        let ttl = pttl(&store, &key).await;
        assert!(
            ttl > 0 && ttl <= 1_000,
            "{key}: PTTL {ttl} after the second write"
        );
    }
    let gone = eventually(Duration::from_secs(20), || async {
        let mut any = false;
        for key in conversation_keys(&store, id) {
            any |= exists(&store, &key).await;
        }
        !any
    })
    .await;
    assert!(gone, "the conversation's keys did not expire");
    assert_eq!(api.version(id).await.expect("version"), 0);
    assert!(api.read(id, ReadScope::All).await.expect("read").is_none());
    assert!(!all_ids(&api).await.contains(&id.to_owned()));
    // Every key of the namespace is gone except the index, whose entry the listing dropped.
    assert_eq!(in_index(&store, id).await, (false, false));
    let left = keys_of(&store).await;
    assert!(
        left.iter()
            .all(|key| !key.contains(&*hash_tag(id)) && key.contains("{index}")),
        "{left:?}"
    );
    // It can be created anew.
    assert_eq!(api.append(id, 0, &events).await.expect("re-create"), 5);
}

/// A store without `record_exp` makes what it writes permanent, as Rasa's `SET` without `EX`.
async fn writes_without_record_exp_remove_the_expiry(service: Service) {
    let Some(expiring) = store_with(service, Some(600)).await else {
        return;
    };
    let prefix = expiring.layout().key_prefix().expect("prefix").to_owned();
    let permanent = RedisStore::from_pool(
        expiring.pool().clone(),
        &RedisConfig::new().with_key_prefix(prefix),
    )
    .expect("same namespace, no expiry");
    assert!(!permanent.capabilities().expiry);
    let id = "becomes permanent";
    let events = session(1_700_000_000.0);
    TrackerStore::new(expiring.0.clone())
        .append(id, 0, &events[..2])
        .await
        .expect("append");
    for key in conversation_keys(&expiring, id) {
        assert!(pttl(&expiring, &key).await > 0);
    }
    TrackerStore::new(permanent.clone())
        .append(id, 2, &events[2..])
        .await
        .expect("append");
    for key in conversation_keys(&expiring, id) {
        assert_eq!(pttl(&expiring, &key).await, -1, "{key} still expires");
    }
}

/// With `record_exp`, creating conversations drops the index entries of expired ones, so the
/// index does not grow without listings.
async fn expired_conversations_leave_the_index(service: Service) {
    let Some(store) = store_with(service, Some(1)).await else {
        return;
    };
    let api = api(&store);
    let old: Vec<String> = (0..5).map(|n| format!("old {n}")).collect();
    for id in &old {
        api.append(id, 0, &[Event::bot("soon gone").at(1_700_000_000.0)])
            .await
            .expect("append");
        assert_eq!(in_index(&store, id).await, (true, true));
    }
    let expired = eventually(Duration::from_secs(20), || async {
        let mut any = false;
        for id in &old {
            any |= exists(&store, &store.layout().head(id)).await;
        }
        !any
    })
    .await;
    assert!(expired, "the conversations did not expire");
    // Hints are set a little after the keys' expiry; wait until the server's clock passed
    // them too, then create another conversation.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.append("new", 0, &[Event::bot("fresh").at(1_700_000_001.0)])
        .await
        .expect("append");
    for id in &old {
        assert_eq!(in_index(&store, id).await, (false, false), "{id}");
    }
    assert_eq!(in_index(&store, "new").await, (true, true));
    assert_eq!(all_ids(&api).await, ["new"]);
}

/// An append at a stale or future version changes no key at all.
async fn stale_append_writes_nothing(service: Service) {
    let Some(store) = store_with(service, Some(600)).await else {
        return;
    };
    let api = api(&store);
    let id = "stale {writer}";
    let events = session(1_700_000_000.0);
    assert_eq!(api.append(id, 0, &events).await.expect("append"), 5);
    let snapshot = raw(&store, id).await;
    assert_eq!(snapshot.events.len(), 5);
    assert_eq!(snapshot.head.get("version").map(String::as_str), Some("5"));
    assert_eq!(snapshot.head.get("session").map(String::as_str), Some("2"));
    for expected in [0, 1, 4, 6, 100] {
        let error = api
            .append(id, expected, &[Event::bot("stale").at(1_700_000_100.0)])
            .await
            .expect_err("stale");
        assert!(
            matches!(
                error,
                Error::Conflict { ref sender_id, expected: e, actual: 5, .. }
                    if sender_id == id && e == expected
            ),
            "{error:?}"
        );
        let now = raw(&store, id).await;
        assert_eq!(now.events, snapshot.events);
        assert_eq!(now.head, snapshot.head);
        // The expiry was not renewed either (it only counts down).
        for (before, after) in snapshot.ttls.iter().zip(&now.ttls) {
            assert!(*after > 0 && after <= before, "{before} -> {after}");
        }
    }
    // A conflicting first append creates nothing, not even an index entry.
    let absent = "never created";
    let error = api
        .append(absent, 3, &events)
        .await
        .expect_err("conversation does not exist");
    assert_eq!(error.current_version(), Some(0));
    for key in conversation_keys(&store, absent) {
        assert!(!exists(&store, &key).await, "{key}");
    }
    assert_eq!(in_index(&store, absent).await, (false, false));
}

/// Corrupts three stored conversations: the head of `bad_version` holds no number, the list of
/// `short` is a row shorter than its head says, and that of `wrong_type` is a string.
async fn corrupt_stored(store: &RedisStore, bad_version: &str, short: &str, wrong_type: &str) {
    let (client, layout) = (store.client(), store.layout());
    let () = client
        .hset(layout.head(bad_version), ("version", "five"))
        .await
        .expect("HSET");
    let _: String = client.rpop(layout.events(short), None).await.expect("RPOP");
    let _: i64 = client.del(layout.events(wrong_type)).await.expect("DEL");
    let () = client
        .set(layout.events(wrong_type), "a string", None, None, false)
        .await
        .expect("SET");
}

fn corrupt<T: std::fmt::Debug>(result: tracker_core::Result<T>, id: &str, what: &str) {
    match result {
        Err(Error::Corrupt { sender_id, .. }) => assert_eq!(sender_id, id, "{what}"),
        Err(other) => panic!("{what} of {id:?}: expected Corrupt, got {other:?}"),
        Ok(value) => panic!("{what} of {id:?}: expected Corrupt, got {value:?}"),
    }
}

struct Raw {
    events: Vec<String>,
    head: HashMap<String, String>,
    ttls: Vec<i64>,
}

async fn raw(store: &RedisStore, id: &str) -> Raw {
    let client = store.client();
    let [events_key, head_key] = conversation_keys(store, id);
    Raw {
        events: client.lrange(&events_key, 0, -1).await.expect("LRANGE"),
        head: client.hgetall(&head_key).await.expect("HGETALL"),
        ttls: vec![pttl(store, &events_key).await, pttl(store, &head_key).await],
    }
}

/// Every key of a conversation hashes to one slot, whatever braces and percent signs its id
/// holds; the server agrees, and appends (which would fail with CROSSSLOT otherwise) work.
async fn conversation_keys_share_a_slot(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let api = api(&store);
    let ids = [
        "a{b}c", "{", "}", "%", "{}", "}{", "%7B", "%7D", "%25", "x}{y", "{a}{b}", "%{%}%", "{{}}",
    ];
    let mut tags = std::collections::HashSet::new();
    for id in ids {
        let [events, head] = conversation_keys(&store, id);
        let slot = redis_keyslot(hash_tag(id).as_bytes());
        assert_eq!(redis_keyslot(events.as_bytes()), slot, "{events}");
        assert_eq!(redis_keyslot(head.as_bytes()), slot, "{head}");
        assert!(
            tags.insert(hash_tag(id).into_owned()),
            "tag of {id:?} not unique"
        );
        if store.is_clustered() {
            for key in [&events, &head] {
                let server: i64 = store
                    .client()
                    .custom(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["KEYSLOT", key.as_str()],
                    )
                    .await
                    .expect("CLUSTER KEYSLOT");
                assert_eq!(server, i64::from(slot), "{key}");
            }
        }
        let events = [Event::bot(format!("for {id}")).at(1_700_000_000.0)];
        assert_eq!(api.append(id, 0, &events).await.expect("append"), 1);
        let read = api
            .read(id, ReadScope::All)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(read.events, events);
    }
    let mut listed = all_ids(&api).await;
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Ids that a naive `{<id>}` tag would put in one slot get distinct tags.
    assert_ne!(hash_tag("{a}x"), hash_tag("{a}y"));
}

/// Unreadable stored data is `Corrupt` naming its conversation; others are unaffected.
async fn corrupt_data_is_corrupt_for_that_conversation_only(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let api = api(&store);
    let client = store.client();
    let events = session(1_700_000_000.0);
    let ids = [
        "bad event",
        "bad version",
        "wrong type",
        "short list",
        "no version",
        "bad session",
        "fine",
    ];
    for id in ids {
        api.append(id, 0, &events).await.expect("append");
    }
    let layout = store.layout();
    let () = client
        .lset(layout.events("bad event"), 3, "{not json")
        .await
        .expect("LSET");
    corrupt_stored(&store, "bad version", "short list", "wrong type").await;
    let _: i64 = client
        .hdel(layout.head("no version"), "version")
        .await
        .expect("HDEL");
    let () = client
        .hset(layout.head("bad session"), ("session", "two"))
        .await
        .expect("HSET");

    match api.read("bad event", ReadScope::All).await {
        Err(Error::Corrupt {
            sender_id,
            position,
            ..
        }) => {
            assert_eq!(sender_id, "bad event");
            assert_eq!(position, Some(4));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Both ways of reading: a transaction (a full read) and the read script (a short latest
    // session).
    for scope in [ReadScope::All, ReadScope::LatestSession] {
        for id in ["bad version", "wrong type", "short list", "no version"] {
            corrupt(api.read(id, scope).await, id, &format!("{scope:?} read"));
        }
    }
    corrupt(
        api.read("bad session", ReadScope::LatestSession).await,
        "bad session",
        "read",
    );
    // A full read does not need the session start.
    let read = api
        .read("bad session", ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.events, events);
    corrupt(api.version("bad version").await, "bad version", "version");
    corrupt(
        api.append("bad version", 5, &events[..1]).await,
        "bad version",
        "append",
    );
    corrupt(
        api.append("wrong type", 5, &events[..1]).await,
        "wrong type",
        "append",
    );
    corrupt(
        api.append("short list", 5, &events[..1]).await,
        "short list",
        "append",
    );
    assert_eq!(
        api.append("short list", 5, &events[..1])
            .await
            .expect_err("corrupt")
            .kind(),
        ErrorKind::Corrupt
    );
    let fine = api
        .read("fine", ReadScope::All)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(fine.events, events);
    // Listing does not read events: every conversation is listed.
    let mut listed = all_ids(&api).await;
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Deleting repairs a conversation.
    assert!(api.delete("bad version").await.expect("delete"));
    assert_eq!(
        api.append("bad version", 0, &events).await.expect("anew"),
        5
    );
}

/// Index entries without a conversation (expired, or left by a writer that stopped between
/// steps) are skipped, never break paging, and are removed.
async fn listing_skips_and_prunes_missing_conversations(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let api = api(&store);
    let ids: Vec<String> = (0..9).map(|n| format!("conversation {n}")).collect();
    for id in &ids {
        api.append(id, 0, &[Event::bot("here").at(1_700_000_000.0)])
            .await
            .expect("append");
    }
    // Remove some conversations behind the store's back, and add index entries for
    // conversations that were never written.
    let client = store.client();
    for id in [&ids[0], &ids[4], &ids[5], &ids[8]] {
        for key in conversation_keys(&store, id) {
            let _: i64 = client.del(key).await.expect("DEL");
        }
    }
    let ghosts = ["conversation 4a", "conversation 4b", "zzz"];
    for ghost in ghosts {
        let _: i64 = client
            .zadd(
                store.layout().index(),
                None,
                None,
                false,
                false,
                (0.0, ghost),
            )
            .await
            .expect("ZADD");
    }
    let expected: Vec<String> = [1, 2, 3, 6, 7].iter().map(|n| ids[*n].clone()).collect();
    for limit in [1, 2, 3, 5, 100] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = api.list(cursor, limit).await.expect("list");
            assert!(page.sender_ids.len() <= limit);
            seen.extend(page.sender_ids);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "page size {limit}");
    }
    for gone in [&ids[0], &ids[4], &ids[5], &ids[8]] {
        assert_eq!(in_index(&store, gone).await, (false, false), "{gone}");
    }
    for ghost in ghosts {
        assert_eq!(in_index(&store, ghost).await, (false, false), "{ghost}");
    }
}

/// A store on a client or pool the caller built, with the re-exported fred.
async fn existing_client_and_pool(service: Service) {
    let Some(url) = tracker_testkit::service_url(service).await else {
        return;
    };
    let prefix = common::fresh_prefix();
    let config = Config::from_url(&url.url).expect("URL");
    let client = Builder::from_config(config.clone())
        .build()
        .expect("client");
    client.init().await.expect("connect");
    let store = TestStore(
        RedisStore::from_client(client, &RedisConfig::new().with_key_prefix(prefix.clone()))
            .expect("store"),
    );
    assert_eq!(store.is_clustered(), service == Service::RedisCluster);
    let api = api(&store);
    api.append("a", 0, &session(1_700_000_000.0))
        .await
        .expect("append");

    let pool = Builder::from_config(config).build_pool(3).expect("pool");
    pool.init().await.expect("connect");
    // Only the key prefix and the expiry of the configuration are used: not its address.
    let unused_address = RedisConfig::from_url("redis://192.0.2.1:1").with_key_prefix(prefix);
    let pooled = RedisStore::from_pool(pool, &unused_address).expect("store");
    let read = TrackerStore::new(pooled.clone())
        .retrieve("a")
        .await
        .expect("retrieve")
        .expect("shared namespace");
    assert_eq!(read.events().len(), 5);
    assert_eq!(pooled.capabilities().max_event_bytes, Some(MAX_EVENT_BYTES));
    assert!(pooled.capabilities().native_latest_session);
    assert!(!pooled.capabilities().expiry);
    for bad in [
        RedisConfig::new().with_key_prefix("tracker"),
        RedisConfig::new().with_record_exp(0),
    ] {
        let error = RedisStore::from_pool(pooled.pool().clone(), &bad).expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    }
}

/// Redis needs no setup: `ensure_schema` checks that the server answers, reports no change
/// and writes nothing.
async fn ensure_schema_changes_nothing(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    assert!(store.ensure_schema().await.expect("answers").is_empty());
    assert!(store.ensure_schema().await.expect("again").is_empty());
    assert!(keys_of(&store).await.is_empty());
}

/// The README's capability table states what the store, as configured by default, declares.
async fn readme_states_the_capabilities(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    tracker_conformance::claims::assert_readme_states_capabilities(
        include_str!("../README.md"),
        &store.capabilities(),
    );
}

/// Connecting to a port where nothing listens is `Unavailable` (temporary).
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let mut config = tracker_redis::RedisConfig::from_url("redis://127.0.0.1:1");
    config.timeout = 5;
    let error = RedisStore::connect(&config)
        .await
        .expect_err("nothing listens");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    assert!(error.is_temporary());
    assert!(std::error::Error::source(&error).is_some());
}

/// A bad configuration fails before connecting.
#[tokio::test]
async fn bad_configuration_is_config() {
    let config = tracker_redis::RedisConfig::new().with_key_prefix("tracker");
    let error = RedisStore::connect(&config).await.expect_err("bad prefix");
    assert_eq!(error.kind(), ErrorKind::Config);
}

/// The conversations of a batch test: `count` ids, and for each 20 events of its own.
fn batch_of(prefix: &str, count: usize) -> (Vec<String>, Vec<Vec<Event>>) {
    let ids = (0..count).map(|n| format!("{prefix} {{{n:03}}}")).collect();
    let events = (0..count)
        .map(|n| {
            let t = 1_700_100_000.0 + n as f64;
            let mut events = session(t);
            for turn in 0..5 {
                let at = t + 2.0 + f64::from(turn);
                events.push(Event::user(format!("turn {turn} of {n}"), "inform", 0.8).at(at));
                events.push(Event::action("utter_ok").at(at + 0.1));
                events.push(Event::bot(format!("reply {turn} to {n}")).at(at + 0.2));
            }
            events
        })
        .collect();
    (ids, events)
}

/// A batch of 300 conversations with `record_exp` and the outbox on: 200 new ones, 99 that
/// exist at the version the batch expects, one at another version. Every right append is
/// written whole with the expiry on every key, the conflicting one is its own `Conflict` and
/// is left untouched, the listing finds them all and the outbox lists them all.
async fn batch_writes_each_conversation_alone(service: Service) {
    let Some(store) = store_configured(service, |config| {
        config.record_exp = Some(600);
        config.outbox = true;
    })
    .await
    else {
        return;
    };
    let api = api(&store);
    let (ids, added) = batch_of("batch", 300);
    let before = session(1_700_000_000.0);
    for id in &ids[200..] {
        assert_eq!(api.append(id, 0, &before).await.expect("existing"), 5);
    }
    let stale = 299;
    let meanwhile = [Event::bot("written meanwhile").at(1_700_000_050.0)];
    api.append(&ids[stale], 5, &meanwhile)
        .await
        .expect("a write the batch has not seen");
    let stale_raw = raw(&store, &ids[stale]).await;
    // A relay's lease gives a conversation its outbox hash, which the batch's append renews.
    let outbox = store.outbox().expect("the outbox is on");
    let leased = 250;
    let lease = outbox
        .lease(
            &SenderId::new(ids[leased].as_str()).expect("valid"),
            "relay",
            Duration::from_secs(60),
        )
        .await
        .expect("lease");
    assert!(lease.is_some());
    let batch: Vec<BatchAppend<'_>> = ids
        .iter()
        .zip(&added)
        .enumerate()
        .map(|(n, (id, events))| BatchAppend {
            sender_id: id,
            expected_version: if n < 200 { 0 } else { 5 },
            events,
        })
        .collect();

    let results = api.append_batch(&batch).await.expect("the batch");
    assert_eq!(results.len(), 300);
    for (n, result) in results.iter().enumerate() {
        match result {
            Ok(version) => {
                assert_ne!(n, stale, "the stale append succeeded");
                assert_eq!(*version, if n < 200 { 20 } else { 25 }, "{}", ids[n]);
            }
            Err(error) => {
                assert_eq!(n, stale, "{}: {error:?}", ids[n]);
                assert!(
                    matches!(
                        error,
                        Error::Conflict { sender_id, expected: 5, actual: 6, .. }
                            if *sender_id == ids[stale]
                    ),
                    "{error:?}"
                );
            }
        }
    }
    for (n, id) in ids.iter().enumerate() {
        let read = api
            .read(id, ReadScope::All)
            .await
            .expect("read")
            .expect("exists");
        let expected: Vec<Event> = match n {
            n if n < 200 => added[n].clone(),
            n if n == stale => [&before[..], &meanwhile[..]].concat(),
            n => [&before[..], &added[n][..]].concat(),
        };
        assert_eq!(read.events, expected, "{id}");
        if n != stale {
            for key in conversation_keys(&store, id) {
                let ttl = pttl(&store, &key).await;
                assert!(ttl > 590_000 && ttl <= 600_000, "{key}: PTTL {ttl}");
            }
            // The outbox hash comes with a relay's first lease.
            let key = store.layout().outbox(id);
            let ttl = pttl(&store, &key).await;
            if n == leased {
                assert!(ttl > 590_000 && ttl <= 600_000, "{key}: PTTL {ttl}");
            } else {
                assert_eq!(ttl, -2, "{key}");
            }
        }
    }
    let untouched = raw(&store, &ids[stale]).await;
    assert_eq!(untouched.events, stale_raw.events);
    assert_eq!(untouched.head, stale_raw.head);
    let mut sorted = ids.clone();
    sorted.sort();
    let mut listed = all_ids(&api).await;
    listed.sort();
    assert_eq!(listed, sorted);
    // `pending` leaves out the conversation a relay holds the lease of; it is marked all the
    // same.
    let pending: Vec<String> = outbox
        .pending(1_000)
        .await
        .expect("pending")
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    let missing: Vec<&String> = sorted
        .iter()
        .filter(|id| **id != ids[leased] && !pending.contains(id))
        .collect();
    assert!(missing.is_empty(), "not pending: {missing:?}");
    assert_eq!(pending.len(), 299);
    let marked = pending_score(&store, &ids[leased]).await;
    assert!(marked.is_some(), "the leased conversation is not marked");
}

/// Rasa's exact text of a conversation.
fn rasa_record(sender_id: &str, events: &[Event]) -> String {
    let values: Vec<serde_json::Value> = events
        .iter()
        .map(|event| serde_json::from_str(&event.to_rasa_json()).expect("JSON"))
        .collect();
    to_python_json(&serde_json::json!({"events": values, "name": sender_id})).expect("renders")
}

/// Inside a batch, a conversation only Rasa holds is adopted by an append at Rasa's version
/// (Rasa's key left byte for byte), one appended at version 0 conflicts with Rasa's version
/// and writes nothing, and one whose Rasa record holds no events is created as new.
async fn batch_adopts_rasa_records(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let api = api(&store);
    let client = store.client();
    let (ids, added) = batch_of("rasa", 40);
    let rasa = session(1_600_000_000.0);
    let (adopted, stale, empty) = (3, 17, 29);
    let mut records = Vec::new();
    for n in [adopted, stale, empty] {
        let text = if n == empty {
            KeyLayout::rasa_empty_record(&ids[n])
        } else {
            rasa_record(&ids[n], &rasa)
        };
        let key = store.layout().rasa(&ids[n]);
        let () = client
            .set(&key, text.as_str(), None, None, false)
            .await
            .expect("SET");
        records.push((key, text));
    }
    let batch: Vec<BatchAppend<'_>> = ids
        .iter()
        .zip(&added)
        .enumerate()
        .map(|(n, (id, events))| BatchAppend {
            sender_id: id,
            expected_version: if n == adopted { 5 } else { 0 },
            events,
        })
        .collect();

    let results = api.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.iter().enumerate() {
        match n {
            n if n == stale => assert_eq!(
                result
                    .as_ref()
                    .expect_err("Rasa holds it")
                    .current_version(),
                Some(5)
            ),
            n if n == adopted => assert_eq!(*result.as_ref().expect("adopted"), 25),
            _ => assert_eq!(*result.as_ref().expect("new"), 20, "{}", ids[n]),
        }
    }
    for (n, id) in ids.iter().enumerate() {
        let read = api
            .read(id, ReadScope::All)
            .await
            .expect("read")
            .expect("exists");
        let expected = match n {
            n if n == adopted => [&rasa[..], &added[n][..]].concat(),
            n if n == stale => rasa.clone(),
            n => added[n].clone(),
        };
        assert_eq!(read.events, expected, "{id}");
        assert_eq!(exists(&store, &store.layout().head(id)).await, n != stale);
    }
    for (key, text) in records {
        let now: Option<String> = client.get(&key).await.expect("GET");
        assert_eq!(now.as_deref(), Some(text.as_str()), "{key}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    let mut listed = all_ids(&api).await;
    listed.sort();
    assert_eq!(listed, sorted);
}

/// A conversation whose stored data is corrupt is its own `Corrupt` inside a batch, and the
/// others are written, also when the servers must first be sent the script (their script
/// cache flushed).
async fn batch_corrupt_conversation_is_its_own_error(service: Service) {
    let Some(store) = store(service).await else {
        return;
    };
    let api = api(&store);
    let client = store.client();
    let events = session(1_700_000_000.0);
    let ids: Vec<String> = (0..30).map(|n| format!("conversation {n}")).collect();
    for id in &ids[..20] {
        api.append(id, 0, &events).await.expect("append");
    }
    // A head that is not a number, a list shorter than the head says (the script's error
    // reply) and a list that is a string (an error raised inside the script).
    let bad = [7, 8, 9];
    corrupt_stored(&store, &ids[bad[0]], &ids[bad[1]], &ids[bad[2]]).await;
    if store.is_clustered() {
        client
            .script_flush_cluster(false)
            .await
            .expect("SCRIPT FLUSH");
    } else {
        client.script_flush(false).await.expect("SCRIPT FLUSH");
    }
    let batch: Vec<BatchAppend<'_>> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| BatchAppend {
            sender_id: id,
            expected_version: if n < 20 { 5 } else { 0 },
            events: &events,
        })
        .collect();
    let results = api.append_batch(&batch).await.expect("the batch");
    for (n, result) in results.into_iter().enumerate() {
        if bad.contains(&n) {
            corrupt(result, &ids[n], "batch append");
        } else {
            assert_eq!(result.expect("written"), if n < 20 { 10 } else { 5 });
        }
    }
    for n in bad {
        corrupt(api.read(&ids[n], ReadScope::All).await, &ids[n], "read");
    }
}

/// Events the racing writer gives each generation of its conversation.
const RACING_EVENTS: u64 = 600;

/// Event `seq` of generation `generation` of the racing conversation. A session starts at
/// every 200th event (seqs 1, 201, 401), so its latest session holds from 2 to 201 events:
/// both sessions the read script returns itself and those read by a transaction after it.
fn racing_event(generation: u64, seq: u64) -> Event {
    let t = 1_700_000_000.0 + seq as f64;
    if seq % 200 == 1 {
        Event::session_started().at(t)
    } else {
        Event::bot(format!("generation {generation}, event {seq}")).at(t)
    }
}

/// Reads a conversation while another connection appends to it, a few events at a time, and
/// now and then deletes and writes it again: every read is one state the writer left, its
/// version agreeing with its events (never a spurious `Corrupt`), the events those of one
/// generation, from seq 1 or from the event before the last session start.
async fn reads_racing_appends_and_deletes_are_consistent(service: Service) {
    const GENERATIONS: u64 = 5;
    let Some(store) = store(service).await else {
        return;
    };
    let prefix = store.layout().key_prefix().expect("a prefix").to_owned();
    let config = common::config(service, &prefix).await.expect("config");
    // The readers have their own connection, so their commands interleave with the writer's.
    let reader = RedisStore::connect(&config).await.expect("connect");
    let writer = api(&store);
    let id = "racing";
    let done = Arc::new(AtomicBool::new(false));
    let writing = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for generation in 0..GENERATIONS {
                let (mut version, mut chunk) = (0, 1);
                while version < RACING_EVENTS {
                    let upto = (version + chunk).min(RACING_EVENTS);
                    let events: Vec<Event> = (version + 1..=upto)
                        .map(|seq| racing_event(generation, seq))
                        .collect();
                    version = writer.append(id, version, &events).await.expect("append");
                    chunk = chunk % 7 + 1;
                }
                if generation + 1 < GENERATIONS {
                    assert!(writer.delete(id).await.expect("delete"));
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut readers = Vec::new();
    for scope in [ReadScope::All, ReadScope::LatestSession] {
        let (reader, done) = (reader.clone(), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            let sender = SenderId::new(id).expect("id");
            // Reads that found the conversation, by the number of events they returned.
            let mut sizes = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let read = reader
                    .read(&sender, scope)
                    .await
                    .unwrap_or_else(|e| panic!("{scope:?} read while racing: {e:?}"));
                let Some(read) = read else {
                    continue;
                };
                let version = read.version;
                assert!((1..=RACING_EVENTS).contains(&version), "version {version}");
                // From the event before the last session start (seq 1, 201 or 401).
                let first = match scope {
                    ReadScope::All => 1,
                    ReadScope::LatestSession => ((version - 1) / 200 * 200).max(1),
                };
                let seqs: Vec<u64> = read.events.iter().map(|event| event.seq).collect();
                let expected: Vec<u64> = (first..=version).collect();
                assert_eq!(seqs, expected, "{scope:?} read at version {version}");
                let events: Vec<Event> = read
                    .events
                    .iter()
                    .map(|event| match &event.data {
                        EventData::Text(text) => Event::from_json(text).expect("an event"),
                        other => panic!("not text: {other:?}"),
                    })
                    .collect();
                let generation = (0..GENERATIONS).find(|generation| {
                    events
                        .iter()
                        .zip(first..)
                        .all(|(event, seq)| *event == racing_event(*generation, seq))
                });
                assert!(
                    generation.is_some(),
                    "{scope:?} read at version {version}: events that are not one generation's"
                );
                sizes.push(read.events.len());
            }
            sizes
        }));
    }
    writing.await.expect("writer");
    let all = readers.remove(0).await.expect("reader");
    let latest = readers.remove(0).await.expect("reader");
    assert!(!all.is_empty(), "no full read found the conversation");
    // Both ways a latest session is read: by the script alone, and by a transaction.
    assert!(latest.iter().any(|size| *size <= 100), "{latest:?}");
    assert!(latest.iter().any(|size| *size > 150), "{latest:?}");
}
