"""``RasaTrackerStore``: a Rasa custom tracker store backed by tracker-store's Rust stores."""

from __future__ import annotations

import json
import logging
import numbers
from typing import Any, Dict, Iterable, List, Optional, Text, Tuple, Type

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SerializedTrackerAsText, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event
from rasa.shared.core.trackers import DialogueStateTracker

from tracker_store.errors import (
    TrackerStoreConfigError,
    TrackerStoreError,
    TrackerStoreUnavailable,
)

try:
    from tracker_store import _native
except ImportError as error:  # a broken install must not look like a missing class to Rasa
    _native = None  # type: ignore[assignment]
    _NATIVE_IMPORT_ERROR: Optional[BaseException] = error
else:
    _NATIVE_IMPORT_ERROR = None

logger = logging.getLogger(__name__)

#: The attribute that keeps, on a tracker this store read or saved, the conversation's
#: version then and how many of the tracker's events were stored: ``(version, count)``.
POSITION_ATTRIBUTE = "_tracker_store_position"

#: The key of the ``tracker_store`` section that chooses the backend (Rasa consumes
#: ``type`` and ``store_type``).
BACKEND_KEY = "backend"

#: Conversation ids per page when listing them.
KEYS_PAGE_SIZE = 1000

#: How long temporary failures are retried by default, in seconds.
DEFAULT_RETRY_SECONDS = 5.0


def _error(error: BaseException) -> TrackerStoreError:
    """The Rasa exception for an exception of the native module."""
    if _native is not None:
        if isinstance(error, _native.ConfigError):
            return TrackerStoreConfigError(str(error))
        if isinstance(error, _native.UnavailableError):
            return TrackerStoreUnavailable(str(error))
    return TrackerStoreError(str(error))


def _position(tracker: DialogueStateTracker) -> Optional[Tuple[int, int]]:
    """The ``(version, count)`` this store left on ``tracker``, if any."""
    position = vars(tracker).get(POSITION_ATTRIBUTE)
    if (
        isinstance(position, tuple)
        and len(position) == 2
        and 0 <= position[1] <= len(tracker.events)
    ):
        return position
    return None


def _set_position(tracker: DialogueStateTracker, version: int, count: int) -> None:
    setattr(tracker, POSITION_ATTRIBUTE, (version, count))


def deserialise_events(dicts: List[Dict[Text, Any]]) -> List[Event]:
    """Rasa's ``rasa.shared.core.events.deserialise_events``, with the same result, and each
    event type's class looked up once per call instead of once per event.

    Rasa's ``Event.from_parameters`` resolves the class of every event by walking every
    subclass of ``Event`` (``Event.resolve_by_type``): about 90 % of the time Rasa takes to
    build a tracker of a few thousand events. The lookup is Rasa's own, so custom event
    classes, the legacy ``topic`` tag and unknown tags behave as in Rasa.
    """
    classes: Dict[Any, Optional[Type[Event]]] = {}
    events: List[Event] = []
    for parameters in dicts:
        if "event" not in parameters:
            continue
        name = parameters.get("event")
        if name is None:
            event = None
        else:
            try:
                event_class = classes[name]
            except KeyError:
                event_class = classes[name] = Event.resolve_by_type(name)
            event = event_class._from_parameters(parameters) if event_class else None
        if event:
            events.append(event)
        else:
            logger.warning("An event could not be deserialised and is left out: %s", parameters)
    return events


class RasaTrackerStore(TrackerStore, SerializedTrackerAsText):
    """Rasa's tracker store on tracker-store's Rust stores.

    Rasa builds it from ``endpoints.yml`` as ``cls(host=url, domain=domain,
    event_broker=event_broker, **keys)``. ``backend`` chooses the store (``sql``, ``redis``,
    ``mongod``, ``dynamo``, ``memory``, or an alias such as ``postgresql``, ``sqlite``,
    ``mongodb``, ``dynamodb``, ``in_memory``); every other key is a key of that backend —
    every key Rasa's own store of the backend takes, with the same meaning, plus
    tracker-store's own. ``retry_seconds`` (default 5) bounds the retries of temporary
    failures.

    A wrong configuration raises :class:`TrackerStoreConfigError` naming the key; a server
    that cannot be reached, :class:`TrackerStoreUnavailable`. Either stops Rasa at start-up.
    """

    def __init__(
        self,
        domain: Optional[Domain] = None,
        host: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        backend: Optional[Text] = None,
        retry_seconds: Any = DEFAULT_RETRY_SECONDS,
        **kwargs: Any,
    ) -> None:
        """Connects to the store the keys describe (blocking, as Rasa's stores do)."""
        super().__init__(domain, event_broker)
        if _native is None:
            raise TrackerStoreConfigError(
                "the native module of the tracker_store package failed to load "
                f"({_NATIVE_IMPORT_ERROR}); reinstall the wheel built for this platform"
            )
        if backend is None:
            raise TrackerStoreConfigError(
                f"{BACKEND_KEY}: missing; set it in the tracker_store section of "
                "endpoints.yml to sql, redis, mongod, dynamo or memory"
            )
        if not isinstance(backend, str):
            raise TrackerStoreConfigError(f"{BACKEND_KEY}: must be a string")
        if isinstance(retry_seconds, bool) or not isinstance(
            retry_seconds, (numbers.Real, str)
        ):
            raise TrackerStoreConfigError("retry_seconds: must be a number of seconds")
        try:
            retry = float(retry_seconds)
        except ValueError:
            raise TrackerStoreConfigError(
                "retry_seconds: must be a number of seconds"
            ) from None
        if not retry >= 0:
            raise TrackerStoreConfigError("retry_seconds: must be 0 or more")
        try:
            known = _native.NativeStore.known_keys(backend)
        except _native.StoreError as error:
            raise _error(error) from None
        keys: Dict[Text, Any] = dict(kwargs)
        if host is not None:
            if "url" in known:
                keys["url"] = host
            else:
                logger.warning(
                    "The %s tracker store does not use `url`; it is ignored, as Rasa's "
                    "own store ignores it.",
                    backend,
                )
        try:
            keys_json = json.dumps(keys)
        except (TypeError, ValueError) as error:
            raise TrackerStoreConfigError(
                f"the tracker_store keys must be plain YAML values: {error}"
            ) from None
        try:
            self._store = _native.NativeStore.connect(backend, keys_json, retry)
        except _native.StoreError as error:
            raise _error(error) from None
        logger.debug("Connected to the %s tracker store.", self._store.name)

    @property
    def backend(self) -> Text:
        """The backend's type name: ``memory``, ``sql``, ``redis``, ``mongod`` or ``dynamo``."""
        return self._store.backend

    async def _read(self, sender_id: Text, full: bool) -> Optional[DialogueStateTracker]:
        try:
            result = await self._store.read(sender_id, full)
        except _native.StoreError as error:
            raise _error(error) from error
        if result is None:
            return None
        version, _first_seq, events_json = result
        tracker = DialogueStateTracker.from_events(
            sender_id, deserialise_events(json.loads(events_json)), self.domain.slots
        )
        _set_position(tracker, version, len(tracker.events))
        return tracker

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The tracker of the conversation's latest session (from its
        ``action_session_start``), read without reading earlier sessions; ``None`` if the
        conversation does not exist."""
        return await self._read(sender_id, full=False)

    async def retrieve_full_tracker(
        self, conversation_id: Text
    ) -> Optional[DialogueStateTracker]:
        """The tracker with every event of every session; ``None`` if the conversation does
        not exist."""
        return await self._read(conversation_id, full=True)

    async def exists(self, conversation_id: Text) -> bool:
        """Whether the conversation has any event (reads its version only)."""
        try:
            return await self._store.version(conversation_id) > 0
        except _native.StoreError as error:
            raise _error(error) from error

    async def keys(self) -> Iterable[Text]:
        """Every conversation id, read a page at a time."""
        ids: List[Text] = []
        cursor: Optional[Text] = None
        try:
            while True:
                page, cursor = await self._store.list(cursor, KEYS_PAGE_SIZE)
                ids.extend(page)
                if cursor is None:
                    return ids
        except _native.StoreError as error:
            raise _error(error) from error

    async def delete(self, sender_id: Text) -> bool:
        """Deletes a conversation; whether it existed. (Not part of Rasa's API.)"""
        try:
            return await self._store.delete(sender_id)
        except _native.StoreError as error:
            raise _error(error) from error

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Appends the events ``tracker`` gained since this store read (or last saved) it,
        at the version it was read at, then publishes exactly those events to the event
        broker.

        When another Rasa process appended to the conversation in between, the events are
        appended after the other writer's, with a warning: nothing is dropped and nothing is
        written twice. A tracker this store did not read (built by hand, or sent whole
        through Rasa's HTTP API) gets those of its events the conversation does not hold
        yet, compared by their JSON.
        """
        sender_id = tracker.sender_id
        events = tracker.events
        total = len(events)
        position = _position(tracker)
        try:
            if position is not None:
                version, count = position
                if count == total:
                    return None
                # Indexing a deque near its end is cheap; islice would walk from the start.
                dicts = [events[index].as_dict() for index in range(count, total)]
                result = await self._store.append(sender_id, version, json.dumps(dicts))
            else:
                if total == 0:
                    return None
                dicts = [event.as_dict() for event in events]
                result = await self._store.merge(sender_id, json.dumps(dicts))
        except _native.StoreError as error:
            raise _error(error) from error
        new_version, _first_seq, written, moved_from, moved_to, recovered = result
        if moved_from is not None:
            logger.warning(
                "Conversation '%s' was changed by another writer since it was read "
                "(version %d, now %d): its %d new event(s) were appended after the other "
                "writer's. Use a shared lock store (e.g. Redis) when several Rasa "
                "processes serve the same conversations.",
                sender_id,
                moved_from,
                moved_to,
                len(written),
            )
        if recovered:
            logger.warning(
                "Conversation '%s': an append whose outcome was unknown had been applied; "
                "it was not written again.",
                sender_id,
            )
        _set_position(tracker, new_version, total)
        if self.event_broker is not None:
            self._publish(sender_id, [dicts[index] for index in written])
        return None

    def _publish(self, sender_id: Text, dicts: List[Dict[Text, Any]]) -> None:
        """Publishes events to the broker in Rasa's shape; the events are stored already, so
        a failing broker is logged, not raised (Rasa would save again to its fallback)."""
        for event in dicts:
            body: Dict[Text, Any] = {"sender_id": sender_id}
            body.update(event)
            try:
                self.event_broker.publish(body)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - the broker's failures are its own
                logger.exception(
                    "The event broker failed to publish an event of conversation '%s'; "
                    "the event is stored.",
                    sender_id,
                )
