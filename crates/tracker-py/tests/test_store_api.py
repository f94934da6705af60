"""The store through Rasa's `TrackerStore` API, in process, on every backend.

Each store is built by Rasa's own factory (`TrackerStore.create`) from an `EndpointConfig`, as
Rasa builds it from `endpoints.yml`, and used the way Rasa's message processor uses it
(`get_or_create_tracker` -> `update` -> `save`), inside Rasa's `FailSafeTrackerStore`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

import pytest
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import FailSafeTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from tracker_store import RasaTrackerStore

CLASS = "tracker_store.RasaTrackerStore"


class CollectingBroker(EventBroker):
    """An event broker that keeps what it is given."""

    def __init__(self) -> None:
        self.published: List[Dict[str, Any]] = []

    def publish(self, event: Dict[str, Any]) -> None:
        self.published.append(event)


def make_store(
    keys: Dict[str, Any],
    domain: Optional[Domain] = None,
    broker: Optional[EventBroker] = None,
) -> RasaTrackerStore:
    """The store Rasa's factory builds from a `tracker_store` section with these keys."""
    keys = dict(keys)
    url = keys.pop("url", None)
    endpoint = EndpointConfig(url=url, type=CLASS, **keys)
    store = TrackerStore.create(endpoint, domain=domain, event_broker=broker)
    assert isinstance(store, RasaTrackerStore), type(store)
    return store


def start_session(tracker: DialogueStateTracker) -> None:
    tracker.update(ActionExecuted("action_session_start"))
    tracker.update(SessionStarted())
    tracker.update(ActionExecuted("action_listen"))


def turn(tracker: DialogueStateTracker, text: str, city: Optional[str] = None) -> None:
    """One message as the processor records it: the user event, predicted actions, replies."""
    tracker.update(UserUttered(text, {"name": "inform", "confidence": 1.0}))
    if city is not None:
        tracker.update(SlotSet("city", city))
    tracker.update(ActionExecuted("utter_noted"))
    tracker.update(BotUttered(f"noted: {text}"))
    tracker.update(ActionExecuted("action_listen"))


def dicts(tracker: DialogueStateTracker) -> List[Dict[str, Any]]:
    return [event.as_dict() for event in tracker.events]


async def converse(store: TrackerStore, sender_id: str, *texts: str) -> DialogueStateTracker:
    """The processor's flow for one message per text; a new conversation starts a session."""
    tracker = None
    for text in texts:
        tracker = await store.get_or_create_tracker(sender_id, append_action_listen=False)
        if not tracker.events:
            start_session(tracker)
        turn(tracker, text)
        await store.save(tracker)
    assert tracker is not None
    return tracker


def test_save_and_retrieve_round_trip(section):
    _, keys = section

    async def run() -> None:
        store = make_store(keys)
        wrapped = FailSafeTrackerStore(store)
        saved = await converse(wrapped, "alice", "one", "two", "three")
        again = await wrapped.retrieve("alice")
        assert again is not None
        assert dicts(again) == dicts(saved)
        full = await wrapped.retrieve_full_tracker("alice")
        assert dicts(full) == dicts(saved)
        assert await store.exists("alice")
        assert not await store.exists("nobody")
        assert await wrapped.retrieve("nobody") is None
        assert "alice" in list(await wrapped.keys())

    asyncio.run(run())


def test_retrieve_returns_the_latest_session_and_save_keeps_the_others(section):
    _, keys = section

    async def run() -> None:
        store = make_store(keys)
        tracker = store.init_tracker("bob")
        start_session(tracker)
        turn(tracker, "first session")
        start_session(tracker)
        turn(tracker, "second session")
        await store.save(tracker)
        everything = dicts(tracker)

        latest = await store.retrieve("bob")
        # Like Rasa's in-memory and Redis stores: from the last action_session_start on.
        second = len(everything) - 7
        assert everything[second]["name"] == "action_session_start"
        assert dicts(latest) == everything[second:]

        turn(latest, "third message")
        await store.save(latest)
        full = await store.retrieve_full_tracker("bob")
        assert dicts(full) == everything + dicts(latest)[7:]
        assert len(full.events) == len(everything) + 4

    asyncio.run(run())


def test_save_appends_and_publishes_only_the_new_events(section):
    _, keys = section

    async def run() -> None:
        broker = CollectingBroker()
        store = make_store(keys, broker=broker)
        tracker = await converse(store, "carol", "hello")
        assert [e["sender_id"] for e in broker.published] == ["carol"] * len(tracker.events)
        assert [{k: v for k, v in e.items() if k != "sender_id"} for e in broker.published] == dicts(
            tracker
        )

        broker.published.clear()
        await store.save(tracker)  # nothing new: nothing written, nothing published
        assert broker.published == []

        tracker = await store.get_or_create_tracker("carol")
        before = len(tracker.events)
        turn(tracker, "again")
        await store.save(tracker)
        expected = [{"sender_id": "carol", **e} for e in dicts(tracker)[before:]]
        assert broker.published == expected
        full = await store.retrieve_full_tracker("carol")
        assert len(full.events) == 3 + 4 + 4

    asyncio.run(run())


def test_a_second_writer_appends_after_the_first(shared_section, caplog):
    _, keys = shared_section

    async def run() -> None:
        first, second = make_store(keys), make_store(keys)
        await converse(first, "dave", "base")
        a = await first.retrieve("dave")
        b = await second.retrieve("dave")
        turn(a, "from a")
        turn(b, "from b")
        await first.save(a)
        with caplog.at_level(logging.WARNING, logger="tracker_store.store"):
            await second.save(b)
        assert any("changed by another writer" in r.getMessage() for r in caplog.records)

        full = await first.retrieve_full_tracker("dave")
        texts = [e.text for e in full.events if isinstance(e, UserUttered)]
        assert texts == ["base", "from a", "from b"]
        assert len(full.events) == 3 + 4 + 4 + 4

        # The second tracker goes on from where its events were written.
        turn(b, "b again")
        await second.save(b)
        full = await first.retrieve_full_tracker("dave")
        texts = [e.text for e in full.events if isinstance(e, UserUttered)]
        assert texts == ["base", "from a", "from b", "b again"]

    asyncio.run(run())


def test_a_tracker_the_store_did_not_read_gets_only_missing_events(section):
    _, keys = section

    async def run() -> None:
        store = make_store(keys)
        stored = await converse(store, "erin", "one")
        # As Rasa's HTTP API builds one from a JSON body.
        whole = DialogueStateTracker.from_dict("erin", dicts(stored), store.domain.slots)
        turn(whole, "two")
        await store.save(whole)
        await store.save(
            DialogueStateTracker.from_dict("erin", dicts(whole), store.domain.slots)
        )
        full = await store.retrieve_full_tracker("erin")
        assert dicts(full) == dicts(whole)

    asyncio.run(run())


def test_retrieved_trackers_have_the_domain_slots(section):
    _, keys = section

    async def run() -> None:
        store = make_store(keys)
        # Rasa sets the domain after building the store, when the model is loaded.
        store.domain = Domain.from_dict(
            {"slots": {"city": {"type": "text", "mappings": [{"type": "custom"}]}}}
        )
        tracker = store.init_tracker("frank")
        start_session(tracker)
        turn(tracker, "to Paris", city="Paris")
        await store.save(tracker)
        again = await store.retrieve("frank")
        assert again.get_slot("city") == "Paris"
        assert again.current_state()["slots"] == tracker.current_state()["slots"]

    asyncio.run(run())


@pytest.mark.parametrize("count", [1203])
def test_keys_pages_through_every_conversation(count, tmp_path_factory):
    import conftest

    async def run(keys: Dict[str, Any]) -> None:
        store = make_store(keys)
        for index in range(count):
            tracker = store.init_tracker(f"user-{index:05d}")
            tracker.update(ActionExecuted("action_listen"))
            await store.save(tracker)
        ids = list(await store.keys())
        assert sorted(ids) == [f"user-{index:05d}" for index in range(count)]

    for backend in ("memory", "sqlite"):
        asyncio.run(run(conftest.store_keys(backend, "keys", tmp_path_factory)))
