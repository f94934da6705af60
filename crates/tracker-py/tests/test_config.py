"""Configuration: Rasa's keys are accepted, and a wrong section stops Rasa's factory with an
error naming the key — never Rasa's silent fallback to its in-memory store."""

from __future__ import annotations

import inspect
from typing import Any, Dict

import pytest
from rasa.core.tracker_store import (
    DynamoTrackerStore,
    MongoTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)
from rasa.shared.exceptions import ConnectionException, RasaException
from rasa.utils.endpoints import EndpointConfig

import support
import tracker_store.store
from tracker_store import RasaTrackerStore, TrackerStoreConfigError
from tracker_store._native import NativeStore

CLASS = "tracker_store.RasaTrackerStore"


def create(**section: Any) -> TrackerStore:
    """What Rasa's factory builds from a `tracker_store` section."""
    url = section.pop("url", None)
    return TrackerStore.create(EndpointConfig(url=url, type=CLASS, **section))


@pytest.mark.parametrize(
    "rasa_class, backend",
    [
        (SQLTrackerStore, "sql"),
        (RedisTrackerStore, "redis"),
        (MongoTrackerStore, "mongod"),
        (DynamoTrackerStore, "dynamo"),
    ],
)
def test_every_key_of_rasas_own_store_is_accepted(rasa_class, backend):
    parameters = set(inspect.signature(rasa_class.__init__).parameters)
    parameters -= {"self", "domain", "event_broker", "kwargs"}
    # `host` is how Rasa hands over the section's `url`.
    rasa_keys = {"url" if name == "host" else name for name in parameters}
    assert rasa_keys, rasa_class
    assert rasa_keys <= set(NativeStore.known_keys(backend)), rasa_keys - set(
        NativeStore.known_keys(backend)
    )


def test_the_class_loads_through_rasas_factory_as_an_async_store():
    store = create(backend="in_memory")
    assert type(store) is RasaTrackerStore
    assert store.backend == "memory"


@pytest.mark.parametrize(
    "section, named",
    [
        ({}, "backend"),
        ({"backend": "postgress"}, "backend"),
        ({"backend": 3}, "backend"),
        ({"backend": "sql", "dailect": "postgresql"}, "dailect"),
        ({"backend": "sql", "dialect": "sqlite", "port": "not-a-port"}, "port"),
        ({"backend": "redis", "record_exp": "soon"}, "record_exp"),
        ({"backend": "mongod", "collection": ["a"]}, "collection"),
        ({"backend": "dynamo", "table_name": "x", "colour": "blue"}, "colour"),
        ({"backend": "memory", "retry_seconds": "never"}, "retry_seconds"),
        ({"backend": "memory", "retry_seconds": -1}, "retry_seconds"),
    ],
)
def test_a_wrong_section_is_an_error_naming_the_key(section: Dict[str, Any], named: str):
    with pytest.raises(TrackerStoreConfigError) as raised:
        create(**section)
    assert named in str(raised.value)
    # Rasa turns only ImportError and AttributeError into its silent fallback.
    assert isinstance(raised.value, (ValueError, RasaException))
    assert not isinstance(raised.value, (ImportError, AttributeError))


def test_dynamo_ignores_the_url_as_rasa_does(caplog):
    store_keys: Dict[str, Any] = {
        "backend": "dynamo",
        "table_name": f"{support.RUN}url",
        "endpoint_url": support.server_url("DYNAMO"),
    }
    store = create(url="http://ignored.invalid", **store_keys)
    assert store.backend == "dynamo"
    assert any("does not use `url`" in r.getMessage() for r in caplog.records)


def test_an_unreachable_server_stops_rasa_with_a_connection_error():
    port = support.free_port()  # nothing listens there
    with pytest.raises(ConnectionException):
        create(
            backend="sql",
            dialect="postgresql",
            url="127.0.0.1",
            port=port,
            db="rasa",
            username="rasa",
            pool_timeout=2,
        )


def test_a_missing_native_module_is_a_configuration_error(monkeypatch):
    monkeypatch.setattr(tracker_store.store, "_native", None)
    monkeypatch.setattr(
        tracker_store.store, "_NATIVE_IMPORT_ERROR", ImportError("no _native")
    )
    with pytest.raises(TrackerStoreConfigError, match="native module"):
        create(backend="memory")


@pytest.mark.parametrize("alias, store_name", [("SQLite", "sqlite"), ("postgresql", "postgres")])
def test_an_sql_alias_sets_the_dialect(alias: str, store_name: str, tmp_path) -> None:
    if alias == "SQLite":
        section: Dict[str, Any] = {"db": str(tmp_path / "alias.db")}
    else:
        section = support.postgres_keys(f"{support.RUN}alias")
        del section["dialect"]
    store = create(backend=alias, **section)
    assert store.backend == "sql"
    assert store._store.name == store_name
