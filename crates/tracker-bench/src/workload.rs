//! Realistic events: what an assistant appends per turn.

use serde_json::json;
use tracker_store::Event;

/// `action_session_start`, `session_started`, `action_listen` at `t`.
pub fn session_start(t: f64) -> Vec<Event> {
    vec![
        Event::action("action_session_start").at(t),
        Event::session_started().at(t + 0.001),
        Event::action("action_listen").at(t + 0.002),
    ]
}

/// One turn: the user message with a full NLU result, the predicted action, the bot's answer
/// and the next `action_listen` — 4 events.
pub fn turn(n: usize, t: f64) -> Vec<Event> {
    let intents = [
        "greet",
        "goodbye",
        "affirm",
        "deny",
        "inform",
        "request_restaurant",
        "chitchat",
        "thankyou",
        "out_of_scope",
        "restart",
    ];
    let ranking: Vec<_> = intents
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"name": name, "confidence": 0.9 / (i as f64 + 1.0)}))
        .collect();
    let text = format!(
        "I would like a table for {} people in Berlin, turn {n}",
        n % 8 + 1
    );
    let user = json!({
        "event": "user", "timestamp": t,
        "metadata": {"model_id": "5f2c1d7e9b3a4c8d8e6f0a1b2c3d4e5f", "assistant_id": "bench"},
        "text": text,
        "parse_data": {
            "intent": {"name": "inform", "confidence": 0.93},
            "entities": [
                {"entity": "number", "start": 26, "end": 27, "value": n % 8 + 1, "extractor": "DIETClassifier", "confidence_entity": 0.99},
                {"entity": "location", "start": 38, "end": 44, "value": "berlin", "extractor": "DIETClassifier", "confidence_entity": 0.97}
            ],
            "text": text,
            "message_id": format!("m{n:08}"),
            "metadata": {},
            "text_tokens": [[0, 1], [2, 7], [8, 12], [13, 17], [18, 23], [24, 27]],
            "intent_ranking": ranking,
            "response_selector": {"all_retrieval_intents": [], "default": {"response": {"responses": null, "confidence": 0.0, "intent_response_key": null, "utter_action": "utter_None"}, "ranking": []}}
        },
        "input_channel": "rest",
        "message_id": format!("m{n:08}")
    });
    let mut events = vec![Event::from_value(user).unwrap_or_else(|_| Event::bot("unreachable"))];
    events.push(
        Event::from_value(json!({"event": "action", "timestamp": t + 0.05, "name": "utter_ask_num_people",
            "policy": "TEDPolicy", "confidence": 0.97, "action_text": null, "hide_rule_turn": false}))
        .unwrap_or_else(|_| Event::action("utter_ask_num_people")),
    );
    events.push(
        Event::from_value(json!({"event": "bot", "timestamp": t + 0.06, "metadata": {"utter_action": "utter_ask_num_people"},
            "text": "For how many people?", "data": {"buttons": null, "quick_replies": null}}))
        .unwrap_or_else(|_| Event::bot("For how many people?")),
    );
    events.push(Event::action("action_listen").at(t + 0.07));
    events
}
