//! Input that tries to break out of its layer: sender ids and event contents with SQL, Redis
//! and MongoDB metacharacters, every Unicode plane, NUL and very long strings.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tracker_core::{Event, ReadScope, Store};

use super::{fresh, read_all, texts, tracker_store};

/// One character from every Unicode plane that has assigned or private-use code points, plus
/// the edges of the basic plane and characters that change how text is shown or compared.
const PLANES: &str = "\u{0}\u{1}\u{7f}\u{80}\u{a0}\u{ad}\u{2028}\u{2029}\u{200d}\u{202e}\u{feff}\
    \u{fffd}\u{fffe}\u{ffff}\u{10000}\u{1d11e}\u{1f600}\u{20000}\u{2a6d6}\u{30000}\u{e0001}\
    \u{e007f}\u{f0000}\u{10fffd}\u{10ffff}";

/// Sender id suffixes that try to break out of their layer. Several are chosen to collide
/// with each other in stores that compare loosely: case-insensitive or padding collations,
/// Unicode normalisation, glob patterns, key separators and hash tags.
fn hostile_suffixes() -> Vec<String> {
    vec![
        // SQL.
        "'; DROP TABLE events; --".into(),
        "\" OR \"1\"=\"1".into(),
        "%".into(),
        "_".into(),
        "\\".into(),
        "\\'".into(),
        // Comparison: case, trailing spaces, normalisation.
        "Alice".into(),
        "alice".into(),
        "alice ".into(),
        "alice\t".into(),
        "caf\u{e9}".into(),
        "cafe\u{301}".into(),
        "\u{fb01}".into(),
        "fi".into(),
        // Redis: hash tags, globs, key separators.
        "{".into(),
        "}".into(),
        "{}".into(),
        "{tag}".into(),
        "{tag}x".into(),
        "*".into(),
        "?".into(),
        "[ab]".into(),
        "a".into(),
        "b".into(),
        "[^a]".into(),
        ":".into(),
        ":tracker:x".into(),
        "\\*".into(),
        // MongoDB: operators and paths.
        "$gt".into(),
        "$where".into(),
        "a.b".into(),
        ".".into(),
        "$".into(),
        "{\"$ne\": null}".into(),
        // Whitespace and control characters other than NUL.
        " ".into(),
        "\n".into(),
        "\r\n".into(),
        "\u{1b}[31m".into(),
        // Every plane, without NUL (sender ids may not contain it).
        PLANES.replace('\u{0}', ""),
    ]
}

/// Event contents that try to break out of their layer, as one conversation's events.
fn hostile_events(tag: &str, long_text_bytes: usize) -> Vec<Event> {
    let t = 1_700_000_000.0;
    let mut metadata = Map::new();
    metadata.insert("$set".into(), json!({"sender_id": "someone else"}));
    metadata.insert("a.b".into(), json!({"$gt": "", "c.d": [1, {"$in": []}]}));
    metadata.insert("{tag}*?[x]".into(), json!("'; DROP TABLE events; --"));
    metadata.insert(PLANES.into(), json!(PLANES));
    let unknown = json!({
        "event": "hostile_custom",
        "timestamp": t + 6.0,
        "$where": "function() { return true; }",
        "dotted.key": {"$$ROOT": 1, "nested.$": [PLANES]},
        "text": format!("{tag} \u{0} NUL inside"),
    });
    vec![
        Event::user(
            format!("{tag} '); DELETE FROM events; -- \u{0} {PLANES}"),
            "$gt",
            0.5,
        )
        .at(t),
        Event::bot(format!("{tag} *?[{{}}] \\\" \\u0000 {PLANES}"))
            .with_metadata(metadata)
            .at(t + 1.0),
        Event::action("$where").at(t + 2.0),
        Event::slot(
            "a.b",
            json!({"$set": {"x.y": "\u{0}"}, "": [], "{}": "*", "\u{10ffff}": 1e300}),
        )
        .at(t + 3.0),
        // Escaped as `\ud83d\ude00` in the JSON text: 12 bytes each.
        Event::slot(
            "long",
            Value::String(format!("{tag} ") + &"\u{1f600}".repeat(long_text_bytes / 12)),
        )
        .at(t + 4.0),
        Event::from_value(unknown)
            .expect("an unknown event")
            .at(t + 6.0),
    ]
}

/// Sender ids and event contents with SQL, Redis and MongoDB metacharacters, every Unicode
/// plane, NUL and long strings are stored, read, listed and deleted verbatim, each
/// conversation independent of every other: ids that differ only by case, trailing space,
/// Unicode normalisation or a glob pattern never see each other's events.
pub async fn hostile_input_round_trips<S: Store + 'static>(store: S) {
    let store = tracker_store(store);
    let prefix = fresh("hostile");
    let ids: Vec<String> = hostile_suffixes()
        .into_iter()
        .map(|suffix| format!("{prefix}{suffix}"))
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "the ids must differ"
    );
    // 200 KB of text in one event, or what the store allows.
    let long = store
        .capabilities()
        .max_event_bytes
        .map_or(200_000, |max| (max / 2).min(200_000));
    let expected: HashMap<String, Vec<String>> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), texts(&hostile_events(&format!("#{n}"), long))))
        .collect();

    let results: Vec<_> = futures::stream::iter(ids.iter().enumerate())
        .map(|(n, id)| {
            let store = store.clone();
            async move {
                let events = hostile_events(&format!("#{n}"), long);
                (id, store.append(id, 0, &events).await)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, result) in results {
        assert_eq!(
            result.unwrap_or_else(|e| panic!("append to {id:?}: {e:?}")),
            6,
            "{id:?} was written by another conversation's append"
        );
    }
    for id in &ids {
        let read = read_all(&store, id).await;
        assert_eq!(read.sender_id.as_str(), id);
        assert_eq!(&texts(&read.events), &expected[id], "{id:?} read back");
        let tracker = store
            .retrieve(id)
            .await
            .expect("retrieve")
            .unwrap_or_else(|| panic!("{id:?} must exist"));
        assert_eq!(tracker.sender_id(), id);
    }
    let listed: Vec<String> = store
        .keys()
        .await
        .expect("keys")
        .into_iter()
        .filter(|key| key.starts_with(&prefix))
        .collect();
    let listed_set: HashSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), listed_set.len(), "an id listed twice");
    for id in &ids {
        assert!(listed_set.contains(id), "{id:?} missing from keys()");
    }
    assert_eq!(listed.len(), ids.len(), "keys() lists ids never written");

    // Deleting the ids that are patterns or loosely equal to others deletes only them.
    let deleted: Vec<&String> = ids
        .iter()
        .filter(|id| {
            [
                "*",
                "?",
                "[ab]",
                "alice",
                "{tag}",
                "$gt",
                "%",
                "_",
                "caf\u{e9}",
            ]
            .iter()
            .any(|suffix| id.as_str() == format!("{prefix}{suffix}"))
        })
        .collect();
    assert_eq!(deleted.len(), 9);
    for id in &deleted {
        assert!(store.delete(id).await.expect("delete"), "{id:?} existed");
    }
    for id in &ids {
        let read = store.read(id, ReadScope::All).await.expect("read");
        if deleted.contains(&id) {
            assert!(read.is_none(), "{id:?} survived its delete");
        } else {
            let read = read.unwrap_or_else(|| panic!("{id:?} was deleted with another id"));
            assert_eq!(&texts(&read.events), &expected[id], "{id:?} after deletes");
        }
    }
}
