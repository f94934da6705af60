"""The package's event deserialisation against Rasa's own, on the events Rasa 3.6.21 wrote.

``tracker_store.store.deserialise_events`` builds the trackers ``retrieve`` returns; it must
give what Rasa's ``deserialise_events`` gives for every event Rasa writes or accepts, and the
trackers built from it must have the state Rasa's ``DialogueStateTracker.from_dict`` builds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List

import pytest
from rasa.shared.core import events as rasa_events
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity

from tracker_store.store import deserialise_events

GOLDEN = Path(__file__).resolve().parents[2] / "tracker-conformance" / "golden"


def lines(name: str) -> List[Dict[str, Any]]:
    with open(GOLDEN / name, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def same_events(ours: List[Event], rasas: List[Event]) -> None:
    assert [type(event) for event in ours] == [type(event) for event in rasas]
    assert [event.as_dict() for event in ours] == [event.as_dict() for event in rasas]
    assert ours == rasas


def test_every_golden_event_deserialises_as_rasa_does(monkeypatch):
    # Events without a timestamp get the current time.
    monkeypatch.setattr(rasa_events.time, "time", lambda: 1700000000.0)
    dicts = [line["as_dict"] for line in lines("events.jsonl")]
    refused = []
    for line in lines("deserialize.jsonl"):
        if "error" in line:
            refused.append(line)
        else:
            dicts.append(line["input"])
    assert len(dicts) + len(refused) == 60 + 17
    same_events(deserialise_events(dicts), rasa_events.deserialise_events(dicts))
    assert refused
    for line in refused:
        with pytest.raises(Exception) as error:
            deserialise_events([line["input"]])
        assert f"{type(error.value).__name__}: {error.value}" == line["error"]


def test_golden_trackers_have_rasas_state():
    domain = Domain.load(str(GOLDEN / "domain.yml"))
    trackers = lines("trackers.jsonl")
    assert len(trackers) == 6
    for line in trackers:
        sender_id, dicts = line["sender_id"], line["events"]
        ours = DialogueStateTracker.from_events(
            sender_id, deserialise_events(dicts), domain.slots
        )
        rasas = DialogueStateTracker.from_dict(sender_id, dicts, domain.slots)
        same_events(list(ours.events), list(rasas.events))
        state = ours.current_state(EventVerbosity.ALL)
        assert state == rasas.current_state(EventVerbosity.ALL), sender_id
        # The state Rasa's own GET /conversations/<id>/tracker returned for it.
        assert json.loads(json.dumps(state)) == line["state_all"], sender_id


def test_custom_event_classes_and_legacy_topics_behave_as_in_rasa(caplog):
    class CustomEvent(Event):
        type_name = "tracker_store_test_custom"

        def __eq__(self, other: Any) -> bool:
            return isinstance(other, CustomEvent) and self.as_dict() == other.as_dict()

        def __hash__(self) -> int:
            return hash(self.timestamp)

        def __str__(self) -> str:
            return "CustomEvent()"

        def as_story_string(self) -> None:
            return None

    dicts = [
        {"event": "tracker_store_test_custom", "timestamp": 1.0},
        {"event": "topic", "timestamp": 2.0, "topic": "old"},
        {"timestamp": 3.0},
        {"event": "action", "timestamp": 4.0, "name": "action_listen"},
    ]
    with caplog.at_level(logging.WARNING):
        ours = deserialise_events(dicts)
    assert [type(event) for event in ours] == [CustomEvent, rasa_events.ActionExecuted]
    same_events(ours, rasa_events.deserialise_events(dicts))
    assert "left out" in caplog.text

