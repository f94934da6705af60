"""Moving back to Rasa's own stores, as docs/rasa.md describes it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from rasa.core.tracker_store import RedisTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.trackers import DialogueStateTracker

import support
from test_store_api import dicts, make_store, start_session, turn

#: What tracker-store adds to Rasa's `events` table, removed again (the `down.sql` of its
#: `event_sequence` migration, and the migration's record so that it runs again).
DOWN_SQL = {
    "sqlite": [
        "DROP TRIGGER tracker_events_seq",
        "DROP INDEX ix_events_first",
        "DROP INDEX ix_events_session_starts",
        "DROP INDEX ux_events_sender_seq",
        "ALTER TABLE events DROP COLUMN seq",
        "DELETE FROM __diesel_schema_migrations WHERE version IN ('20240101000002', '20240101000003')",
    ],
    "postgres": [
        "DROP TRIGGER tracker_events_seq ON events",
        "DROP FUNCTION tracker_events_next_seq()",
        "DROP INDEX ix_events_first",
        "DROP INDEX ix_events_session_starts",
        "ALTER TABLE events DROP CONSTRAINT ux_events_sender_seq",
        "ALTER TABLE events DROP COLUMN seq",
        "DELETE FROM __diesel_schema_migrations WHERE version IN ('20240101000002', '20240101000003')",
    ],
}


async def fill(store: TrackerStore, count: int) -> Dict[str, List[Dict[str, Any]]]:
    """`count` conversations of two sessions each; their events by id."""
    written = {}
    for index in range(count):
        tracker = store.init_tracker(f"mover-{index}")
        start_session(tracker)
        turn(tracker, f"first {index}")
        start_session(tracker)
        turn(tracker, f"second {index}")
        await store.save(tracker)
        written[tracker.sender_id] = dicts(tracker)
    return written


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_copy_into_rasas_own_store(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        ours_keys: Dict[str, Any] = {"backend": "sql", "dialect": "sqlite", "db": str(tmp_path / "ours.db")}
        rasa_section: Dict[str, Any] = {"type": "sql", "dialect": "sqlite", "db": str(tmp_path / "rasa.db")}
    else:
        ours_keys = {"backend": "redis", **support.redis_keys(f"{support.RUN}moveours")}
        rasa_section = {"type": "redis", **support.redis_keys(f"{support.RUN}moverasa")}
    written = asyncio.run(fill(make_store(ours_keys), 3))

    ours_file = support.write_yaml(
        tmp_path / "ours.yml",
        {"tracker_store": {"type": "tracker_store.RasaTrackerStore", **ours_keys}},
    )
    rasa_file = support.write_yaml(tmp_path / "rasa.yml", {"tracker_store": rasa_section})
    result = subprocess.run(
        [sys.executable, "-m", "tracker_store.copy", str(ours_file), str(rasa_file)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "copied 3 conversation(s)" in result.stdout

    async def check() -> None:
        keys = dict(rasa_section)
        del keys["type"]
        if backend == "sqlite":
            rasa: TrackerStore = SQLTrackerStore(None, **keys)
        else:
            keys["host"] = keys.pop("url")
            rasa = RedisTrackerStore(None, **keys)
        for sender_id, events in written.items():
            full = await rasa.retrieve_full_tracker(sender_id)
            assert dicts(full) == events, sender_id

    asyncio.run(check())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rasas_sql_store_takes_the_table_over_in_place(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        keys: Dict[str, Any] = {"dialect": "sqlite", "db": str(tmp_path / "shared.db")}
    else:
        keys = support.postgres_keys(f"{support.RUN}inplace")

    def execute(statements: List[str]) -> None:
        if backend == "sqlite":
            import sqlite3

            connection = sqlite3.connect(keys["db"])
            for statement in statements:
                connection.execute(statement)
            connection.commit()
            connection.close()
        else:
            for statement in statements:
                support.postgres_query(keys["db"], statement)

    def rasa_store() -> SQLTrackerStore:
        rasa_keys = dict(keys)
        if "url" in rasa_keys:
            rasa_keys["host"] = rasa_keys.pop("url")
        return SQLTrackerStore(None, **rasa_keys)

    async def run() -> None:
        written = await fill(make_store({"backend": "sql", **keys}), 2)
        # Rasa's own store reads what tracker-store wrote, as it is.
        rasa = rasa_store()
        for sender_id, events in written.items():
            assert dicts(await rasa.retrieve_full_tracker(sender_id)) == events
        # Coexistence: Rasa's store writes to the migrated table as it is, and this store
        # sees its rows.
        tracker = await rasa.retrieve("mover-1")
        turn(tracker, "written by Rasa on the migrated table")
        await rasa.save(tracker)
        shared = written["mover-1"] + dicts(tracker)[-4:]
        assert dicts(await rasa.retrieve_full_tracker("mover-1")) == shared
        ours = make_store({"backend": "sql", **keys})
        assert dicts(await ours.retrieve_full_tracker("mover-1")) == shared
        # Removing what tracker-store added; Rasa's store then writes as before.
        execute(DOWN_SQL[backend])
        rasa = rasa_store()
        tracker = await rasa.retrieve("mover-0")
        turn(tracker, "written by Rasa")
        await rasa.save(tracker)
        expected = written["mover-0"] + dicts(tracker)[-4:]
        assert dicts(await rasa.retrieve_full_tracker("mover-0")) == expected
        # And forward again: the migration numbers every event, Rasa's included.
        ours = make_store({"backend": "sql", **keys})
        assert dicts(await ours.retrieve_full_tracker("mover-0")) == expected
        again = await ours.retrieve("mover-0")
        turn(again, "ours again")
        await ours.save(again)
        assert len((await ours.retrieve_full_tracker("mover-0")).events) == len(expected) + 4

    asyncio.run(run())
