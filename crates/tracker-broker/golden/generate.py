"""Writes bodies.jsonl: the broker message bodies Rasa Open Source 3.6.21 publishes.

Run with the Python of an environment where `rasa==3.6.21` is installed, from anywhere:

    python crates/tracker-broker/golden/generate.py

Input: every event of `crates/tracker-conformance/golden/events.jsonl` (each line names a
Rasa event class and the arguments its constructor got). For each one this script

1. builds the event with Rasa's own class (`rasa.shared.core.events.<class>(**constructor)`);
2. gives the fields Rasa fills with the current time or a random id (the line's
   `nondeterministic` list: a reminder's `name`, a `session_started` timestamp) a fixed
   value, so that the output is the same on every run;
3. builds the message body with Rasa's own code, `TrackerStore._stream_new_events` (what
   `TrackerStore.stream_events` calls: `{"sender_id": id, **event.as_dict()}`), into a
   broker that records what it is given;
4. serialises that body with Rasa's own brokers: the line `FileEventBroker.publish` writes
   to its log file (`json.dumps(body)`) and the bytes of the message
   `PikaEventBroker._message` builds (`json.dumps(body)` in UTF-8) — the Kafka and SQL
   brokers use the same `json.dumps(body)` — and checks that they are the same text.

Each output line holds `class`, `variant`, `sender_id`, `seq` (the event's position in its
conversation: the events are dealt round-robin to a few conversations, numbered from 1),
`event` (`event.as_dict()`, the input a reader of Rasa's stores parses) and `body` (the exact
text published). Rust tests compare their output with `body` byte for byte.
"""

import asyncio
import datetime
import json
import os
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.pop("RASA_ENVIRONMENT", None)
os.environ["SQLALCHEMY_SILENCE_UBER_WARNING"] = "1"

import rasa  # noqa: E402
import rasa.shared.core.events as events  # noqa: E402
from rasa.core.brokers.broker import EventBroker  # noqa: E402
from rasa.core.brokers.file import FileEventBroker  # noqa: E402
from rasa.core.brokers.pika import PikaEventBroker  # noqa: E402
from rasa.core.tracker_store import InMemoryTrackerStore  # noqa: E402
from rasa.shared.core.domain import Domain  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "tracker-conformance", "golden", "events.jsonl")
TARGET = os.path.join(HERE, "bodies.jsonl")

# Conversations the events are dealt to: plain, non-ASCII (escaped by json.dumps), and
# characters JSON must escape.
SENDERS = ["conversation-1", "gespräch-ü-🍕", 'quote"back\\slash\ttab']

# Values for what Rasa fills in at random or from the clock.
FIXED = {"name": "reminder-fixed-name", "timestamp": 1700000999.25}


class RecordingBroker(EventBroker):
    """Keeps the bodies it is given."""

    def __init__(self):
        self.bodies = []

    def publish(self, event):
        self.bodies.append(event)


def decode(value):
    """Turns the `{"$datetime": ...}` markers of the input back into Python objects."""
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.datetime.fromisoformat(value["$datetime"])
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def build(line):
    event = getattr(events, line["class"])(**decode(line["constructor"]))
    for field in line["nondeterministic"]:
        if field not in FIXED or not hasattr(event, field):
            sys.exit(f"no fixed value for {line['class']}.{field}")
        setattr(event, field, FIXED[field])
    return event


async def main():
    if rasa.__version__ != "3.6.21":
        sys.exit(f"needs Rasa 3.6.21, found {rasa.__version__}")
    with open(SOURCE, encoding="utf-8") as source:
        lines = [json.loads(text) for text in source if text.strip()]

    store = InMemoryTrackerStore(Domain.empty())
    recorder = RecordingBroker()
    with tempfile.TemporaryDirectory() as directory:
        log_path = os.path.join(directory, "rasa_event.log")
        file_broker = FileEventBroker(path=log_path)
        pika_broker = PikaEventBroker("localhost", "guest", "guest", queues=["unused"])

        records = []
        seqs = {sender: 0 for sender in SENDERS}
        for index, line in enumerate(lines):
            sender = SENDERS[index % len(SENDERS)]
            seqs[sender] += 1
            event = build(line)
            # Rasa's own body construction, as in TrackerStore.stream_events.
            await store._stream_new_events(recorder, [event], sender)
            body = recorder.bodies[-1]
            file_broker.publish(body)
            pika_body = pika_broker._message(body, None).body.decode("utf-8")
            records.append(
                {
                    "class": line["class"],
                    "variant": line["variant"],
                    "sender_id": sender,
                    "seq": seqs[sender],
                    "event": event.as_dict(),
                    "body": pika_body,
                }
            )
        for handler in file_broker.event_logger.handlers:
            handler.close()
        with open(log_path, encoding="utf-8") as log:
            file_lines = log.read().split("\n")

    if file_lines[-1] != "" or len(file_lines) - 1 != len(records):
        sys.exit("the file broker wrote an unexpected number of lines")
    for record, file_line in zip(records, file_lines):
        if record["body"] != file_line:
            sys.exit(f"file and pika bodies differ for {record['class']}")

    with open(TARGET, "w", encoding="utf-8", newline="\n") as target:
        for record in records:
            target.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} bodies to {TARGET}")


if __name__ == "__main__":
    asyncio.run(main())
