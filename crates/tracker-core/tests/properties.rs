//! Property tests of the event model, its Rasa text form, tracker rebuilding and input
//! validation.
//!
//! Events of every kind are generated with arbitrary strings (every Unicode plane, NUL,
//! quotes, backslashes, `$` and dotted keys, braces and glob characters, long strings),
//! arbitrary JSON in the free-form fields and tricky finite floats. The Rasa text is checked
//! against an independent model of Python's `json.dumps` written here (float digits from
//! Rust's own formatting, not from `ryu`), so a formatter that drifts from Python fails.
//!
//! Each property runs a fixed number of cases; `PROPTEST_CASES=N` runs N instead.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::{Number, Value};
use tracker_core::event::deserialise_events;
use tracker_core::json::{python_float_repr, to_python_json};
use tracker_core::{
    Append, Domain, Event, EventKind, EventVerbosity, JsonMap, MAX_SENDER_ID_BYTES, SenderId,
    SlotDefinition, Tracker, UserUttered,
};

// ---------------------------------------------------------------------------------------------
// Configuration

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // Failures are reported with their shrunk input; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// An independent model of Python's `json.dumps` (default arguments)

/// Python's `repr(float)`: the shortest digits that read back as the same float, the nearest
/// to its exact value (ties to an even last digit), in fixed notation when the decimal point
/// position `p` (value = 0.DIGITS × 10^p) is in -3..=16, otherwise `d.ddde±XX`. The digits
/// come from Rust's own float formatting, not from `ryu`.
fn python_repr(value: f64) -> String {
    assert!(value.is_finite(), "JSON holds finite floats only");
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    // `{:e}` gives the shortest digits, but breaks an exact tie between two of them upwards;
    // `{:.N$e}` rounds the exact value half to even, as Python does. Take the latter when it
    // has the same length and still reads back as the value.
    let shortest = format!("{value:e}");
    let length = shortest.split_once('e').map_or(0, |(mantissa, _)| {
        mantissa.chars().filter(char::is_ascii_digit).count()
    });
    let even = format!("{value:.*e}", length.saturating_sub(1));
    let text = if even.parse::<f64>() == Ok(value) {
        even
    } else {
        shortest
    };
    let (mantissa, exponent) = text.split_once('e').expect("exponent form");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = exponent + 1;
    let body = if (-3..=16).contains(&point) {
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{whole}.{fraction}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{sign}{:02}", exponent.unsigned_abs())
    };
    format!("{sign}{body}")
}

/// Python's `json.dumps` string: `ensure_ascii` escapes everything outside `' '..='~'`, with
/// the short forms for `\b \f \n \r \t`, `\uXXXX` (lower-case hex, UTF-16 surrogate pairs for
/// astral characters) for the rest, and `\"` / `\\`; `/` stays as is.
fn python_string(text: &str, out: &mut String) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

fn python_dumps_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => out.push_str(&python_repr(float)),
            _ => out.push_str(&number.to_string()),
        },
        Value::String(text) => python_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                python_dumps_into(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                python_string(key, out);
                out.push_str(": ");
                python_dumps_into(item, out);
            }
            out.push('}');
        }
    }
}

/// What Python's `json.dumps(value)` writes.
fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    python_dumps_into(value, &mut out);
    out
}

/// Whether a text is printable ASCII only, as `json.dumps` writes.
fn printable_ascii(text: &str) -> bool {
    text.bytes().all(|byte| (b' '..=b'~').contains(&byte))
}

// ---------------------------------------------------------------------------------------------
// Strategies: strings, floats, JSON

const KNOWN_TAGS: &[&str] = &[
    "user",
    "user_featurization",
    "entities",
    "bot",
    "slot",
    "restart",
    "rewind",
    "reset_slots",
    "reminder",
    "cancel_reminder",
    "undo",
    "export",
    "followup",
    "pause",
    "resume",
    "action",
    "agent",
    "active_loop",
    "form",
    "loop_interrupted",
    "form_validation",
    "action_execution_rejected",
    "session_started",
];

/// One piece of a tricky string.
fn piece() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => "[a-zA-Z0-9_ ]{1,8}",
        1 => proptest::char::range('\0', '\u{1f}').prop_map(String::from),
        1 => (0x80u32..0x800).prop_filter_map("a scalar value", char::from_u32).prop_map(String::from),
        1 => (0x800u32..0x1_0000).prop_filter_map("a scalar value", char::from_u32).prop_map(String::from),
        1 => (0x1_0000u32..=0x10_FFFF).prop_filter_map("a scalar value", char::from_u32).prop_map(String::from),
        3 => prop::sample::select(vec![
            "\0", "\"", "\\", "\\u0000", "\\\"", "'", "/", "</script>", "$set", "$where", "$",
            "a.b", "a.b.c", ".", "..", "{", "}", "{{x}}", "${x}", "*", "?", "[a-z]", "**/*",
            "%s", "\u{7f}", "\u{80}", "\u{ad}", "\u{2028}", "\u{2029}", "\u{feff}", "\u{fffd}",
            "\u{ffff}", "\u{10000}", "\u{10ffff}", "\u{1f355}", "ü", "e\u{301}", "\n", "\r\n",
            "\t", "\u{8}", "\u{c}", "NaN", "Infinity", "null", "true", "1e999", " ", "",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// An arbitrary string: mostly short mixes of pieces, sometimes one piece repeated into a
/// long string.
fn tricky_string() -> BoxedStrategy<String> {
    prop_oneof![
        12 => vec(piece(), 0..8).prop_map(|pieces| pieces.concat()),
        1 => (piece(), 200usize..1000).prop_map(|(piece, times)| piece.repeat(times)),
    ]
    .boxed()
}

/// Finite floats, tricky ones often: huge, tiny, subnormal, negative, integer-valued,
/// timestamps with full precision, powers of ten around Python's notation switch.
fn tricky_f64() -> BoxedStrategy<f64> {
    use proptest::num::f64 as float;
    prop_oneof![
        4 => float::NORMAL | float::SUBNORMAL | float::POSITIVE | float::NEGATIVE,
        2 => any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |f| f.is_finite()),
        3 => 1.0e9f64..2.0e9,
        2 => (1_000_000_000u64..2_000_000_000, 0u64..1_000_000)
            .prop_map(|(seconds, micros)| seconds as f64 + micros as f64 / 1e6),
        2 => any::<i32>().prop_map(f64::from),
        // Exactly halfway between two shortest decimals: Python breaks the tie to even.
        1 => (100_000_000_000_000u64..900_000_000_000_000, prop::sample::select(vec![0.25, 0.75]))
            .prop_map(|(whole, half)| whole as f64 + half),
        1 => any::<i64>().prop_map(|i| i as f64),
        1 => (-30i32..30).prop_map(|e| 10f64.powi(e)),
        1 => float::SUBNORMAL | float::POSITIVE | float::NEGATIVE,
        2 => prop::sample::select(vec![
            f64::MAX, f64::MIN, f64::MIN_POSITIVE, -f64::MIN_POSITIVE, 5e-324, -5e-324,
            2.225_073_858_507_201e-308, 1e16, 1e15, 9_007_199_254_740_993.0, 1e-5, 1e-4, 0.1,
            1e22, 1e23, 1.7e308, 1_700_000_123.456_789, 1_700_000_000.0, 0.5, -1.5, 123.0,
        ]),
    ]
    .boxed()
}

/// Finite, non-zero floats: a zero timestamp means "now" to Rasa.
fn timestamp() -> BoxedStrategy<f64> {
    tricky_f64().prop_filter("not zero", |f| *f != 0.0).boxed()
}

fn number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        tricky_f64().prop_map(|f| Number::from_f64(f).expect("finite")),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => tricky_string(),
        1 => prop::sample::select(vec![
            "event", "timestamp", "metadata", "name", "value", "text", "parse_data",
            "entities", "intent", "data", "$set", "$inc", "a.b", "", "__proto__",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn json_leaf(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        strings.prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
fn json_with(strings: BoxedStrategy<String>, keys: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    json_leaf(strings)
        .prop_recursive(4, 24, 5, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                vec((keys.clone(), inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
        .boxed()
}

fn json() -> BoxedStrategy<Value> {
    json_with(tricky_string(), key())
}

fn json_map_of(
    keys: BoxedStrategy<String>,
    values: BoxedStrategy<Value>,
) -> BoxedStrategy<JsonMap> {
    vec((keys, values), 0..5)
        .prop_map(|entries| entries.into_iter().collect())
        .boxed()
}

/// Python truthiness, which decides whether Rasa keeps a `bot` event's `data`.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies: events

/// What events are made of: free-form text, names (actions, slots, loops, intents), JSON.
#[derive(Clone)]
struct Parts {
    text: BoxedStrategy<String>,
    name: BoxedStrategy<String>,
    json: BoxedStrategy<Value>,
    metadata: BoxedStrategy<JsonMap>,
    timestamp: BoxedStrategy<f64>,
}

impl Parts {
    /// Anything: every field free-form.
    fn arbitrary() -> Self {
        Self {
            text: tricky_string(),
            name: tricky_string(),
            json: json(),
            metadata: json_map_of(key(), json()),
            timestamp: timestamp(),
        }
    }

    /// Conversations that exercise tracker state: names from small pools, so that actions
    /// match loops, slots repeat and `action_listen` / `action_session_start` occur.
    fn conversation() -> Self {
        let name = prop::sample::select(vec![
            "action_listen",
            "action_session_start",
            "restaurant_form",
            "other_form",
            "utter_greet",
            "city",
            "cuisine",
            "requested_slot",
            "session_started_metadata",
            "greet",
            "",
        ])
        .prop_map(str::to_owned)
        .boxed();
        let small_text = prop_oneof![
            3 => "[a-z]{0,6}",
            1 => tricky_string(),
        ]
        .boxed();
        let small_key = prop::sample::select(vec!["entity", "value", "a", "$b", "c.d"])
            .prop_map(str::to_owned)
            .boxed();
        let small_json = json_with(small_text.clone(), small_key.clone());
        Self {
            text: small_text,
            name,
            json: small_json.clone(),
            metadata: json_map_of(small_key, small_json),
            timestamp: prop_oneof![
                4 => (1i32..40).prop_map(f64::from),
                1 => timestamp(),
            ]
            .boxed(),
        }
    }
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    strategy: BoxedStrategy<T>,
) -> BoxedStrategy<Option<T>> {
    option::of(strategy).boxed()
}

/// An NLU entity: usually the object Rasa writes, sometimes any JSON.
fn entity(p: &Parts) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (p.name.clone(), p.json.clone(), 0u32..20).prop_map(|(name, value, start)| {
            serde_json::json!({"entity": name, "start": start, "end": start + 3, "value": value})
        }),
        1 => p.json.clone(),
    ]
    .boxed()
}

/// The NLU result of a user message: Rasa's usual keys, each optional and sometimes of an
/// unusual type, plus extra keys kept verbatim.
fn parse_data(p: &Parts) -> BoxedStrategy<JsonMap> {
    let intent = prop_oneof![
        3 => (p.name.clone(), tricky_f64()).prop_map(|(name, confidence)| {
            serde_json::json!({"name": name, "confidence": confidence})
        }),
        1 => p.json.clone(),
    ];
    let entities = prop_oneof![
        3 => vec(entity(p), 0..3).prop_map(Value::Array),
        1 => p.json.clone(),
    ];
    (
        option::of(intent),
        option::of(entities),
        opt(p.text.clone()),
        json_map_of(key(), p.json.clone()),
    )
        .prop_map(|(intent, entities, text, extra)| {
            let mut map = JsonMap::new();
            for (key, value) in extra {
                map.insert(key, value);
            }
            if let Some(intent) = intent {
                map.insert("intent".into(), intent);
            }
            if let Some(entities) = entities {
                map.insert("entities".into(), entities);
            }
            if let Some(text) = text {
                map.insert("text".into(), Value::String(text));
            }
            map
        })
        .boxed()
}

fn user_event(p: &Parts) -> BoxedStrategy<Event> {
    (
        opt(p.text.clone()),
        opt(parse_data(p)),
        opt(p.text.clone()),
        opt(p.text.clone()),
        p.metadata.clone(),
        p.timestamp.clone(),
    )
        .prop_map(
            |(text, parse_data, input_channel, message_id, metadata, timestamp)| {
                let user = UserUttered::new(text, parse_data, input_channel, message_id, &metadata);
                Event::new(EventKind::UserUttered(user))
                    .at(timestamp)
                    .with_metadata(metadata)
            },
        )
        .boxed()
}

/// An event with a tag this version does not know, built by parsing an arbitrary object.
fn unknown_event(p: &Parts) -> BoxedStrategy<Event> {
    let tag = prop_oneof![
        3 => p.text.clone(),
        1 => prop::sample::select(vec!["User", "action ", "from_the_future", ""])
            .prop_map(str::to_owned),
    ]
    // `topic` is read as an unknown event, but lists of events drop it, as Rasa does.
    .prop_filter("an unknown tag", |tag| {
        tag != "topic" && !KNOWN_TAGS.contains(&tag.as_str())
    });
    let timestamp = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        number().prop_map(|n| Some(Value::Number(n))),
    ];
    let metadata = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        p.metadata.clone().prop_map(|m| Some(Value::Object(m))),
    ];
    (
        tag,
        timestamp,
        metadata,
        json_map_of(key(), p.json.clone()),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(tag, timestamp, metadata, extra, position)| {
            let mut entries: Vec<(String, Value)> = extra
                .into_iter()
                .filter(|(key, _)| !matches!(key.as_str(), "event" | "timestamp" | "metadata"))
                .collect();
            if let Some(timestamp) = timestamp {
                entries.push(("timestamp".into(), timestamp));
            }
            if let Some(metadata) = metadata {
                entries.push(("metadata".into(), metadata));
            }
            let at = position.index(entries.len() + 1);
            entries.insert(at, ("event".into(), Value::String(tag)));
            let raw = Value::Object(entries.into_iter().collect());
            Event::from_value(raw.clone())
                .unwrap_or_else(|e| panic!("an unknown event must be read: {e}: {raw}"))
        })
        .boxed()
}

/// Any event in the form Rasa reads back unchanged: every kind the core models.
fn event_with(p: &Parts) -> BoxedStrategy<Event> {
    let ts = p.timestamp.clone();
    let md = p.metadata.clone();
    let text = || opt(p.text.clone());
    let name = || p.name.clone();
    let kind: BoxedStrategy<EventKind> = prop_oneof![
        any::<bool>().prop_map(|b| EventKind::DefinePrevUserUtteredFeaturization {
            use_text_for_featurization: b
        }),
        vec(entity(p), 0..4).prop_map(|entities| EventKind::EntitiesAdded { entities }),
        (
            text(),
            p.json.clone().prop_filter("Rasa keeps truthy data", truthy)
        )
            .prop_map(|(text, data)| EventKind::BotUttered { text, data }),
        (name(), p.json.clone()).prop_map(|(name, value)| EventKind::SlotSet { name, value }),
        Just(EventKind::Restarted),
        Just(EventKind::UserUtteranceReverted),
        Just(EventKind::AllSlotsReset),
        (
            text(),
            p.text.clone(),
            p.json.clone(),
            name(),
            any::<bool>()
        )
            .prop_map(|(intent, date_time, entities, name, kill_on_user_msg)| {
                EventKind::ReminderScheduled {
                    intent,
                    date_time,
                    entities,
                    name,
                    kill_on_user_msg,
                }
            }),
        Just(EventKind::ReminderCancelled {
            name: None,
            intent: None,
            entities: None,
        }),
        Just(EventKind::ActionReverted),
        Just(EventKind::StoryExported { path: None }),
        name().prop_map(|name| EventKind::FollowupAction { name }),
        Just(EventKind::ConversationPaused),
        Just(EventKind::ConversationResumed),
        (opt(name()), text(), opt(number()), text(), any::<bool>())
            .prop_filter(
                "an action needs a name or a text",
                |(name, _, _, action_text, _)| name.is_some() || action_text.is_some()
            )
            .prop_map(|(name, policy, confidence, action_text, hide_rule_turn)| {
                EventKind::ActionExecuted {
                    name,
                    policy,
                    confidence,
                    action_text,
                    hide_rule_turn,
                }
            }),
        (text(), p.json.clone()).prop_map(|(text, data)| EventKind::AgentUttered { text, data }),
        opt(name()).prop_map(|name| EventKind::ActiveLoop { name }),
        any::<bool>().prop_map(|is_interrupted| EventKind::LoopInterrupted { is_interrupted }),
        (name(), text(), opt(number())).prop_map(|(name, policy, confidence)| {
            EventKind::ActionExecutionRejected {
                name,
                policy,
                confidence,
            }
        }),
        Just(EventKind::SessionStarted),
    ]
    .boxed();
    let other = (kind, md, ts)
        .prop_map(|(kind, metadata, timestamp)| {
            Event::new(kind).at(timestamp).with_metadata(metadata)
        })
        .boxed();
    prop_oneof![
        12 => other,
        3 => user_event(p),
        2 => unknown_event(p),
    ]
    .boxed()
}

fn any_event() -> BoxedStrategy<Event> {
    event_with(&Parts::arbitrary())
}

/// Conversations: events weighted towards those that change tracker state.
fn conversation_event() -> BoxedStrategy<Event> {
    let p = Parts::conversation();
    prop_oneof![
        6 => event_with(&p),
        3 => user_event(&p),
        2 => (p.name.clone(), p.timestamp.clone()).prop_map(|(name, ts)| Event::action(name).at(ts)),
        1 => p.timestamp.clone().prop_map(|ts| Event::action("action_listen").at(ts)),
        1 => p.timestamp.clone().prop_map(|ts| Event::action("action_session_start").at(ts)),
        1 => p.timestamp.clone().prop_map(|ts| Event::session_started().at(ts)),
        1 => (prop::sample::select(vec!["restaurant_form", "other_form"]), p.timestamp.clone())
            .prop_map(|(name, ts)| Event::new(EventKind::ActiveLoop { name: Some(name.into()) }).at(ts)),
        1 => (vec(entity(&p), 1..3), p.timestamp.clone())
            .prop_map(|(entities, ts)| Event::new(EventKind::EntitiesAdded { entities }).at(ts)),
    ]
    .boxed()
}

/// A tracker's starting point: no domain (any slot), Rasa's empty domain, or a domain with
/// slots, with or without forms.
#[derive(Debug, Clone)]
enum Start {
    WithoutDomain,
    Domain(Domain),
}

impl Start {
    fn tracker(&self, sender_id: &str, events: Vec<Event>) -> Tracker {
        match self {
            Start::WithoutDomain => {
                let mut tracker = Tracker::without_domain(sender_id);
                tracker.extend(events);
                tracker
            }
            Start::Domain(domain) => Tracker::from_events(sender_id, events, domain),
        }
    }
}

fn start() -> BoxedStrategy<Start> {
    let slot = (
        prop::sample::select(vec!["city", "cuisine", "requested_slot", "$set", "a.b"]),
        json_with("[a-z]{0,4}".boxed(), "[a-z]{1,3}".boxed()),
    )
        .prop_map(|(name, initial_value)| SlotDefinition {
            name: name.to_owned(),
            initial_value,
        });
    prop_oneof![
        Just(Start::WithoutDomain),
        Just(Start::Domain(Domain::empty())),
        (vec(slot, 0..4), any::<bool>())
            .prop_map(|(slots, forms)| Start::Domain(Domain::with_slots(slots, forms))),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties: floats and strings in Rasa's text

proptest! {
    #![proptest_config(config(1_000))]

    /// Floats are written as Python's `repr`, and read back as the same float by serde_json
    /// (the parser every store's read path uses) and by Rust's own parser.
    #[test]
    fn floats_are_written_as_python_repr_and_read_back_exactly(value in prop_oneof![
        tricky_f64(),
        Just(0.0),
        Just(-0.0),
    ]) {
        let text = python_float_repr(value);
        prop_assert_eq!(&text, &python_repr(value));
        let std_read: f64 = text.parse().expect("a float");
        prop_assert_eq!(std_read.to_bits(), value.to_bits(), "std reads {}", text);
        let json_read: f64 = serde_json::from_str(&text).expect("JSON");
        prop_assert_eq!(
            json_read.to_bits(),
            value.to_bits(),
            "serde_json reads {} as {:e}, not {:e}",
            text,
            json_read,
            value
        );
    }

    /// Strings are escaped exactly as `json.dumps` escapes them, and read back unchanged.
    #[test]
    fn strings_are_escaped_as_python_escapes_them(text in tricky_string()) {
        let written = to_python_json(&Value::String(text.clone())).expect("serialise");
        let mut expected = String::new();
        python_string(&text, &mut expected);
        prop_assert_eq!(&written, &expected);
        prop_assert!(printable_ascii(&written));
        let read: String = serde_json::from_str(&written).expect("JSON");
        prop_assert_eq!(read, text);
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// Any JSON value is written as `json.dumps` writes it and read back equal.
    #[test]
    fn json_values_are_written_as_python_writes_them(value in json()) {
        let written = to_python_json(&value).expect("serialise");
        prop_assert_eq!(&written, &python_dumps(&value));
        prop_assert!(printable_ascii(&written));
        let read: Value = serde_json::from_str(&written).expect("JSON");
        prop_assert_eq!(read, value);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties: events

proptest! {
    #![proptest_config(config(150))]

    /// The Rasa text of an event is `json.dumps` of its serde value, and reads back as that
    /// value; known kinds start with `event` and `timestamp`, as Rasa's `as_dict()` does.
    #[test]
    fn rasa_text_is_python_json_of_the_serde_value(event in any_event()) {
        let text = event.to_rasa_json();
        let serde_value = serde_json::to_value(&event).expect("serialise");
        prop_assert_eq!(&serde_value, &event.to_value());
        prop_assert_eq!(&text, &python_dumps(&serde_value));
        prop_assert!(printable_ascii(&text), "raw non-ASCII or control character in {}", text);
        let read: Value = serde_json::from_str(&text).expect("JSON");
        prop_assert_eq!(&read, &serde_value);
        if !matches!(event.kind, EventKind::Unknown(_)) {
            let keys: Vec<&str> = serde_value
                .as_object()
                .expect("an object")
                .keys()
                .take(2)
                .map(String::as_str)
                .collect();
            prop_assert_eq!(keys, vec!["event", "timestamp"]);
            prop_assert_eq!(&serde_value["event"], event.type_name());
            prop_assert_eq!(serde_value["timestamp"].as_f64(), Some(event.timestamp));
        }
    }

    /// Reading an event's Rasa text, its value or its serde text gives the same event, and
    /// writing it again gives the same text.
    #[test]
    fn events_read_back_unchanged(event in any_event()) {
        let text = event.to_rasa_json();
        let read = Event::from_json(&text).expect("read the Rasa text");
        prop_assert_eq!(&read, &event);
        prop_assert_eq!(read.to_rasa_json(), text);
        prop_assert_eq!(&Event::from_value(event.to_value()).expect("read the value"), &event);
        let serde_text = serde_json::to_string(&event).expect("serialise");
        let serde_read: Event = serde_json::from_str(&serde_text).expect("deserialise");
        prop_assert_eq!(&serde_read, &event);
        let listed = deserialise_events(&[event.to_value()]).expect("a list of one");
        prop_assert_eq!(listed, vec![event]);
    }

    /// What Rasa normalises when reading: a zero, `null` or missing timestamp becomes the
    /// current time, falsy `bot` data becomes `{}`, `cancel_reminder` selectors and the
    /// `export` path are read but not written, legacy `form` / `form_validation` tags become
    /// `active_loop` / `loop_interrupted`, and lists of events skip legacy `topic` events and
    /// objects without an `event` tag.
    #[test]
    fn rasa_normalisations_apply_on_read(
        event in any_event(),
        missing in prop_oneof![Just(None), Just(Some(Value::Null)), Just(Some(Value::from(0))), Just(Some(Value::from(0.0))), Just(Some(Value::from(-0.0)))],
        data in prop_oneof![Just(Value::Null), Just(Value::from(false)), Just(Value::from(0)), Just(Value::from(0.0)), Just(Value::from("")), Just(serde_json::json!([])), Just(serde_json::json!({}))],
        selectors in (opt(tricky_string()), opt(tricky_string()), opt(json())),
        loop_name in opt(tricky_string()),
        validate in option::of(any::<bool>()),
    ) {
        if !matches!(event.kind, EventKind::Unknown(_)) {
            let mut value = event.to_value();
            let object = value.as_object_mut().expect("an object");
            match &missing {
                None => { object.remove("timestamp"); }
                Some(zero) => { object.insert("timestamp".into(), zero.clone()); }
            }
            let before = tracker_core::event::now();
            let read = Event::from_value(value).expect("read");
            let after = tracker_core::event::now();
            prop_assert!(before <= read.timestamp && read.timestamp <= after);
            prop_assert_eq!(read.clone().at(event.timestamp), event.clone());
        }

        let bot = Event::from_value(serde_json::json!({"event": "bot", "timestamp": 1.5, "text": "t", "data": data}))
            .expect("read");
        prop_assert_eq!(&bot.kind, &EventKind::BotUttered { text: Some("t".into()), data: serde_json::json!({}) });

        let (name, intent, entities) = selectors;
        let mut cancel = serde_json::json!({"event": "cancel_reminder", "timestamp": 2.5});
        for (key, value) in [("name", name.clone().map(Value::String)), ("intent", intent.clone().map(Value::String)), ("entities", entities.clone())] {
            if let Some(value) = value {
                cancel[key] = value;
            }
        }
        let read = Event::from_value(cancel).expect("read");
        prop_assert_eq!(&read.kind, &EventKind::ReminderCancelled { name, intent, entities });
        prop_assert_eq!(read.to_rasa_json(), r#"{"event": "cancel_reminder", "timestamp": 2.5}"#);

        let export = Event::from_value(
            serde_json::json!({"event": "export", "timestamp": 2.5, "path": loop_name}),
        )
        .expect("read");
        prop_assert_eq!(&export.kind, &EventKind::StoryExported { path: loop_name.clone() });
        prop_assert_eq!(export.to_rasa_json(), r#"{"event": "export", "timestamp": 2.5}"#);

        let listed = deserialise_events(&[
            serde_json::json!({"event": "topic", "timestamp": 1.0, "topic": "x"}),
            serde_json::json!({"timestamp": 1.0, "name": "no tag"}),
            event.to_value(),
        ])
        .expect("a list");
        prop_assert_eq!(listed, vec![event.clone()], "legacy topics and untagged objects are skipped");
        for item in [Value::Null, serde_json::json!("event"), serde_json::json!([event.to_value()])] {
            let error = deserialise_events(&[event.to_value(), item]).expect_err("not an object");
            prop_assert!(error.message().contains("item 1"), "{}", error.message());
        }

        let legacy = Event::from_value(serde_json::json!({"event": "form", "timestamp": 3.5, "name": loop_name}))
            .expect("read");
        prop_assert_eq!(&legacy.kind, &EventKind::ActiveLoop { name: loop_name });
        let mut validation = serde_json::json!({"event": "form_validation", "timestamp": 4.5});
        if let Some(validate) = validate {
            validation["validate"] = Value::Bool(validate);
        }
        let legacy = Event::from_value(validation).expect("read");
        prop_assert_eq!(&legacy.kind, &EventKind::LoopInterrupted { is_interrupted: validate == Some(false) });
    }
}

// ---------------------------------------------------------------------------------------------
// Properties: trackers

/// Invariants that hold between a tracker's views of its events.
fn check_views(tracker: &Tracker) -> Result<(), TestCaseError> {
    let events = tracker.events();
    let applied = tracker.applied_event_indices();
    prop_assert!(
        applied.windows(2).all(|pair| pair[0] < pair[1]),
        "applied indices ascend"
    );
    prop_assert!(applied.iter().all(|&index| index < events.len()));
    for &index in &applied {
        prop_assert!(!matches!(
            events[index].kind,
            EventKind::Restarted
                | EventKind::SessionStarted
                | EventKind::ActionReverted
                | EventKind::UserUtteranceReverted
        ));
    }
    prop_assert_eq!(tracker.applied_events().len(), applied.len());

    let sessions = tracker.sessions();
    prop_assert_eq!(
        sessions.iter().map(|s| s.len()).sum::<usize>(),
        events.len()
    );
    prop_assert!(sessions.iter().all(|s| !s.is_empty()));
    let start = tracker.latest_session_start();
    prop_assert!(start <= events.len());
    if let Some(last) = sessions.last() {
        prop_assert_eq!(events.len() - last.len(), start);
    } else {
        prop_assert_eq!(start, 0);
    }
    match events
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::SessionStarted))
    {
        None => prop_assert_eq!(start, 0),
        Some(index) => {
            let boundary = if index > 0 && events[index - 1].is_action("action_session_start") {
                index - 1
            } else {
                index
            };
            prop_assert_eq!(start, boundary);
        }
    }

    let after_restart = tracker.index_after_latest_restart();
    prop_assert!(after_restart <= events.len());
    prop_assert!(
        events[after_restart..]
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Restarted))
    );
    let state = tracker.current_state(EventVerbosity::AfterRestart);
    prop_assert_eq!(
        state["events"].as_array().map(Vec::len),
        Some(events.len() - after_restart)
    );
    let state = tracker.current_state(EventVerbosity::Applied);
    prop_assert_eq!(
        state["events"].as_array().map(Vec::len),
        Some(applied.len())
    );

    // Going back to any event's time replays exactly the events up to the first later one.
    let mut times: Vec<f64> = events.iter().map(|e| e.timestamp).collect();
    times.truncate(4);
    times.extend([f64::MIN, f64::MAX]);
    for time in times {
        let past = tracker.travel_back_in_time(time);
        let kept = events.iter().take_while(|e| e.timestamp <= time).count();
        prop_assert_eq!(past.events().len(), kept);
        prop_assert_eq!(past.sender_id(), tracker.sender_id());
    }
    let replayed = tracker.travel_back_in_time(f64::MAX);
    prop_assert_eq!(
        replayed.current_state(EventVerbosity::All),
        tracker.current_state(EventVerbosity::All),
        "replaying every event gives the same state"
    );
    Ok(())
}

fn assert_same_state(left: &Tracker, right: &Tracker) -> Result<(), TestCaseError> {
    for verbosity in [
        EventVerbosity::None,
        EventVerbosity::Applied,
        EventVerbosity::AfterRestart,
        EventVerbosity::All,
    ] {
        prop_assert_eq!(
            left.current_state(verbosity),
            right.current_state(verbosity)
        );
    }
    prop_assert_eq!(left.applied_event_indices(), right.applied_event_indices());
    prop_assert_eq!(left.latest_action(), right.latest_action());
    prop_assert_eq!(left.active_loop(), right.active_loop());
    prop_assert_eq!(left, right);
    Ok(())
}

proptest! {
    #![proptest_config(config(100))]

    /// A tracker dumped as Rasa's `GET /conversations/<id>/tracker` body, read back and
    /// rebuilt, has the same state; so has one rebuilt from the records an append writes
    /// (what every store keeps); and its views of the events agree with each other.
    #[test]
    fn trackers_rebuilt_from_their_dump_have_the_same_state(
        start in start(),
        sender_id in prop_oneof![tricky_string(), Just("alice".to_owned())],
        events in vec(conversation_event(), 0..30),
    ) {
        let tracker = start.tracker(&sender_id, events);
        check_views(&tracker)?;

        // The tracker body, as Python's json.dumps text.
        let dump = to_python_json(&tracker.current_state(EventVerbosity::All)).expect("serialise");
        prop_assert!(printable_ascii(&dump));
        let body: Value = serde_json::from_str(&dump).expect("JSON");
        let read_id = body["sender_id"].as_str().expect("sender_id").to_owned();
        prop_assert_eq!(&read_id, &sender_id);
        let events = deserialise_events(body["events"].as_array().expect("events")).expect("events");
        let rebuilt = start.tracker(&read_id, events);
        assert_same_state(&rebuilt, &tracker)?;

        // The records an append writes, read back one by one.
        if let (Ok(id), false) = (SenderId::new(sender_id.clone()), tracker.events().is_empty()) {
            let append = Append::new(id, 0, tracker.events()).expect("a valid append");
            let events: Vec<Event> = append
                .records()
                .iter()
                .map(|record| Event::from_json(&record.json).expect("a stored event"))
                .collect();
            let rebuilt = start.tracker(&sender_id, events);
            assert_same_state(&rebuilt, &tracker)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties: validation

/// Strings around the sender id limit: made of one character (1 to 4 bytes in UTF-8)
/// repeated to a length near 255 bytes, sometimes with a NUL put in.
fn sender_id_candidate() -> BoxedStrategy<String> {
    let near_limit = (
        prop_oneof![Just('a'), Just('é'), Just('€'), Just('🍕'), any::<char>()],
        0usize..300,
        option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(ch, bytes, nul)| {
            let mut text = String::new();
            while text.len() < bytes {
                text.push(ch);
            }
            if let Some(nul) = nul {
                let boundaries: Vec<usize> = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([text.len()])
                    .collect();
                text.insert(boundaries[nul.index(boundaries.len())], '\0');
            }
            text
        });
    prop_oneof![near_limit, tricky_string()].boxed()
}

proptest! {
    #![proptest_config(config(500))]

    /// A sender id is valid exactly when it is 1 to 255 bytes of UTF-8 without NUL.
    #[test]
    fn sender_ids_are_valid_exactly_as_documented(id in sender_id_candidate()) {
        prop_assert_eq!(MAX_SENDER_ID_BYTES, 255);
        let valid = !id.is_empty() && id.len() <= 255 && !id.contains('\0');
        match SenderId::new(id.clone()) {
            Ok(sender_id) => {
                prop_assert!(valid, "{:?} ({} bytes) was accepted", id, id.len());
                prop_assert_eq!(sender_id.as_str(), id.as_str());
                prop_assert_eq!(sender_id.to_string(), id);
            }
            Err(error) => {
                prop_assert!(!valid, "{:?} ({} bytes) was rejected: {}", id, id.len(), error);
                prop_assert_eq!(error.kind(), tracker_core::ErrorKind::InvalidInput);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(100))]

    /// An append is valid exactly when it has an event, every timestamp is finite and its
    /// sequence numbers fit in a u64; its records then carry each event's Rasa text and
    /// SQL columns, numbered from the expected version on.
    #[test]
    fn appends_are_valid_exactly_as_documented(
        expected_version in prop_oneof![0u64..1_000, any::<u64>(), (u64::MAX - 40)..=u64::MAX],
        events in vec(
            (any_event(), prop_oneof![
                8 => Just(None),
                1 => Just(Some(f64::NAN)),
                1 => Just(Some(f64::INFINITY)),
                1 => Just(Some(f64::NEG_INFINITY)),
            ])
                .prop_map(|(mut event, bad)| {
                    if let Some(bad) = bad {
                        event.timestamp = bad;
                    }
                    event
                }),
            0..6,
        ),
    ) {
        let id = SenderId::new("appender").expect("valid");
        let valid = !events.is_empty()
            && events.iter().all(|event| event.timestamp.is_finite())
            && expected_version.checked_add(events.len() as u64).is_some();
        let append = match Append::new(id.clone(), expected_version, &events) {
            Ok(append) => append,
            Err(error) => {
                prop_assert!(!valid, "a valid append was rejected: {}", error);
                prop_assert_eq!(error.kind(), tracker_core::ErrorKind::InvalidInput);
                return Ok(());
            }
        };
        prop_assert!(valid, "an invalid append was accepted");
        prop_assert_eq!(append.sender_id(), &id);
        prop_assert_eq!(append.expected_version(), expected_version);
        prop_assert_eq!(append.new_version(), expected_version + events.len() as u64);
        prop_assert_eq!(append.records().len(), events.len());
        let mut last_session_started = None;
        let mut bytes = 0;
        for (offset, (record, event)) in append.records().iter().zip(&events).enumerate() {
            let seq = expected_version + 1 + offset as u64;
            prop_assert_eq!(record.seq, seq);
            prop_assert_eq!(record.type_name.as_str(), event.type_name());
            prop_assert_eq!(record.timestamp.to_bits(), event.timestamp.to_bits());
            prop_assert_eq!(record.intent_name.as_deref(), event.intent_name());
            prop_assert_eq!(record.action_name.as_deref(), event.name());
            prop_assert_eq!(&record.json, &event.to_rasa_json());
            prop_assert_eq!(record.is_session_started(), matches!(event.kind, EventKind::SessionStarted));
            if record.is_session_started() {
                last_session_started = Some(seq);
            }
            bytes += record.json.len();
        }
        prop_assert_eq!(append.last_session_started(), last_session_started);
        prop_assert_eq!(append.json_bytes(), bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Counterexamples these properties found, kept as fixed cases

/// Floats that serde_json's default, approximate float parser read back one unit in the last
/// place off (it needs its `float_roundtrip` feature): a timestamp as Python's `time.time()`
/// writes it, a tiny float and a float near the subnormal range.
#[test]
fn floats_once_read_back_off_by_one_unit_round_trip() {
    for value in [
        1_997_184_555.032_741_8,
        3.589_482_971_760_269_4e-23,
        1.850_722_182_288_937_4e-308,
    ] {
        let text = python_float_repr(value);
        let read: f64 = serde_json::from_str(&text).expect("JSON");
        assert_eq!(read.to_bits(), value.to_bits(), "{text}");
        let event = Event::bot("hi").at(value);
        let read = Event::from_json(&event.to_rasa_json()).expect("read");
        assert_eq!(read.timestamp.to_bits(), value.to_bits(), "{text}");
    }
}

/// An append whose sequence numbers would pass `u64::MAX` is invalid input, not an overflow.
#[test]
fn appends_past_the_largest_sequence_number_are_rejected() {
    let id = SenderId::new("overflow").expect("valid");
    let events = [Event::bot("a").at(1.0), Event::bot("b").at(2.0)];
    let error = Append::new(id.clone(), u64::MAX - 1, &events).expect_err("past u64::MAX");
    assert_eq!(error.kind(), tracker_core::ErrorKind::InvalidInput);
    let append = Append::new(id, u64::MAX - 2, &events).expect("ends at u64::MAX");
    assert_eq!(append.new_version(), u64::MAX);
    assert_eq!(append.records()[1].seq, u64::MAX);
}

/// A float exactly halfway between two shortest decimals (…428.25): Python's `repr` and the
/// formatter pick the even digit, where Rust's `{:e}` rounds up. Found by the properties above
/// when the model of `repr` did not break ties to even yet.
#[test]
fn float_ties_are_broken_to_even_as_python_does() {
    // Exactly 619887366423428.25: the float spacing here is 0.125.
    let value = 619_887_366_423_428.0 + 0.25;
    assert_eq!(format!("{value:e}"), "6.198873664234283e14");
    assert_eq!(python_repr(value), "619887366423428.2");
    assert_eq!(python_float_repr(value), "619887366423428.2");
    assert_eq!(python_float_repr(-value), "-619887366423428.2");
}
