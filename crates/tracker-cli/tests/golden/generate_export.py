"""Writes export.json: what Rasa Open Source 3.6.21's `rasa export` publishes for a database
Rasa's own SQL tracker store wrote.

Run with the Python of an environment where `rasa==3.6.21` is installed, from anywhere:

    python crates/tracker-cli/tests/golden/generate_export.py

What it does, with Rasa's own code only:

1. builds conversations: the two of `crates/tracker-cli/sample/restaurant.jsonl` (recorded by
   Rasa 3.6) read with `DialogueStateTracker.from_dict`, and two built from Rasa's event
   classes whose timestamps interleave, tie (within and across conversations) and go
   backwards once, with a non-ASCII sender id;
2. saves them with Rasa's `SQLTrackerStore` into a new SQLite file, and reads back its DDL
   and its rows (`events` in `id` order) — the database the Rust test rebuilds;
3. runs Rasa's `Exporter` (what `rasa export` runs) on that store for each case below, into a
   `PikaEventBroker` whose `publish` keeps the `aio_pika.Message` Rasa's `_message` builds
   (body bytes and headers) instead of sending it, and checks that Rasa's `FileEventBroker`
   writes the same bodies.

Each case records the options and every message published, in the order Rasa published it:
`sender_id` (from the body) and `body` (the exact text). Rasa walks conversations in the
order of a Python set (it depends on the hash seed), each sorted by timestamp; the Rust test
compares each conversation's messages in order and the whole set, not that interleaving.
"""

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.pop("RASA_ENVIRONMENT", None)
os.environ["SQLALCHEMY_SILENCE_UBER_WARNING"] = "1"

import rasa  # noqa: E402
import rasa.shared.core.events as events  # noqa: E402
from rasa.core.brokers.file import FileEventBroker  # noqa: E402
from rasa.core.brokers.pika import PikaEventBroker  # noqa: E402
from rasa.core.exporter import Exporter  # noqa: E402
from rasa.core.tracker_store import SQLTrackerStore  # noqa: E402
from rasa.shared.core.domain import Domain  # noqa: E402
from rasa.shared.core.trackers import DialogueStateTracker  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "..", "sample", "restaurant.jsonl")
TARGET = os.path.join(HERE, "export.json")

ZOE = 'zo\u00eb-\U0001F355 "quoted"'
METADATA = {"model_id": "golden-model", "assistant_id": "golden-assistant"}


def built_conversations():
    """Two conversations from Rasa's event classes, interleaved in time."""
    zoe = [
        events.ActionExecuted("action_session_start", timestamp=1700000100.0, metadata=METADATA),
        events.SessionStarted(timestamp=1700000100.0, metadata=METADATA),
        events.ActionExecuted("action_listen", timestamp=1700000100.0, metadata=METADATA),
        events.UserUttered(
            "gr\u00fc\u00df dich",
            intent={"name": "greet", "confidence": 0.93},
            timestamp=1700000102.5,
            metadata=METADATA,
        ),
        # Earlier than the event before it: Rasa's export sorts it first.
        events.BotUttered("Hallo!", timestamp=1700000101.75, metadata=METADATA),
        events.SlotSet("city", "Z\u00fcrich", timestamp=1700000104.0, metadata=METADATA),
        events.ActionExecuted("action_listen", timestamp=1700000106.0, metadata=METADATA),
    ]
    other = [
        events.ActionExecuted("action_session_start", timestamp=1700000101.0, metadata=METADATA),
        events.SessionStarted(timestamp=1700000101.0, metadata=METADATA),
        events.UserUttered(
            "hi", intent={"name": "greet", "confidence": 0.99}, timestamp=1700000102.5
        ),
        events.BotUttered("Hey!", timestamp=1700000103.0),
        events.ActionExecuted("action_listen", timestamp=1700000104.0),
        events.UserUttered(
            "bye", intent={"name": "goodbye", "confidence": 0.8}, timestamp=1700000105.125
        ),
    ]
    return {ZOE: zoe, "interleaved-b": other}


# The `rasa export` options of each case.
CASES = {
    "all": {},
    # Both bounds are timestamps of events: the minimum is inclusive, the maximum exclusive.
    "window": {"minimum_timestamp": 1700000101.75, "maximum_timestamp": 1700000104.0},
    # One requested id is not in the store (Rasa warns and exports the others).
    "ids": {"requested_conversation_ids": ["interleaved-b", "not-in-the-store"]},
    "offset": {"minimum_timestamp": 1700000102.5, "offset_timestamps_by_seconds": -3600},
}


class RecordingPika(PikaEventBroker):
    """Rasa's Pika broker, keeping the messages it would send."""

    def __init__(self):
        super().__init__("localhost", "guest", "guest", queues=["unused"])
        self.messages = []

    def publish(self, event, headers=None):
        message = self._message(event, headers)
        self.messages.append(
            {
                "sender_id": event["sender_id"],
                "body": message.body.decode("utf-8"),
                "headers": dict(message.headers or {}),
            }
        )

    async def close(self):
        pass


async def main():
    if rasa.__version__ != "3.6.21":
        sys.exit(f"needs Rasa 3.6.21, found {rasa.__version__}")
    domain = Domain.empty()
    trackers = []
    with open(SAMPLE, encoding="utf-8") as sample:
        for line in sample:
            if line.strip():
                dialogue = json.loads(line)
                trackers.append(
                    DialogueStateTracker.from_dict(dialogue["name"], dialogue["events"], [])
                )
    for sender_id, built in built_conversations().items():
        trackers.append(DialogueStateTracker.from_events(sender_id, built))

    with tempfile.TemporaryDirectory() as directory:
        db = os.path.join(directory, "rasa.db")
        store = SQLTrackerStore(domain, dialect="sqlite", db=db)
        for tracker in trackers:
            await store.save(tracker)
        connection = sqlite3.connect(db)
        ddl = [
            sql
            for (sql,) in connection.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            )
        ]
        rows = [
            list(row)
            for row in connection.execute(
                "SELECT sender_id, type_name, timestamp, intent_name, action_name, data "
                "FROM events ORDER BY id"
            )
        ]
        connection.close()

        cases = {}
        for name, options in CASES.items():
            broker = RecordingPika()
            exporter = Exporter(store, broker, "endpoints.yml", **options)
            published = await exporter.publish_events()
            if published != len(broker.messages):
                sys.exit(f"{name}: {published} published, {len(broker.messages)} kept")
            ids = {tuple(m["headers"]) for m in broker.messages}
            if ids != {("rasa-export-process-id",)}:
                sys.exit(f"{name}: unexpected headers {ids}")
            if len({m["headers"]["rasa-export-process-id"] for m in broker.messages}) != 1:
                sys.exit(f"{name}: more than one process id in one run")

            log_path = os.path.join(directory, f"{name}.log")
            file_broker = FileEventBroker(path=log_path)
            await Exporter(store, file_broker, "endpoints.yml", **options).publish_events()
            for handler in file_broker.event_logger.handlers:
                handler.close()
                file_broker.event_logger.removeHandler(handler)
            with open(log_path, encoding="utf-8") as log:
                file_bodies = sorted(log.read().split("\n")[:-1])
            if file_bodies != sorted(m["body"] for m in broker.messages):
                sys.exit(f"{name}: the file broker wrote other bodies")

            cases[name] = {
                "options": options,
                "published": [
                    {"sender_id": m["sender_id"], "body": m["body"]} for m in broker.messages
                ],
            }

    golden = {
        "rasa_version": rasa.__version__,
        "ddl": ddl,
        "rows": rows,
        "cases": cases,
    }
    with open(TARGET, "w", encoding="utf-8", newline="\n") as target:
        json.dump(golden, target, ensure_ascii=False, indent=1)
        target.write("\n")
    counts = {name: len(case["published"]) for name, case in cases.items()}
    print(f"wrote {len(rows)} rows and {counts} messages to {TARGET}")


if __name__ == "__main__":
    asyncio.run(main())
