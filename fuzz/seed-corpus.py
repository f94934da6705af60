#!/usr/bin/env python3
"""Seeds the fuzz corpora from the golden files Rasa 3.6.21 wrote.

    python3 fuzz/seed-corpus.py [CORPUS_DIR]      (default: fuzz/corpus)

Writes one file per event to CORPUS_DIR/event_json (Rasa's exact text from events.jsonl,
the inputs of deserialize.jsonl, every event of trackers.jsonl) and one file per conversation
to CORPUS_DIR/tracker_json (each golden tracker as `{"events": [...], "name": ...}`, its
sessions and its first events as shorter conversations, and every golden event as a
conversation of one). File names are content hashes, so running it again adds nothing.
"""

import hashlib
import json
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
GOLDEN = FUZZ.parent / "crates" / "tracker-conformance" / "golden"


def lines(name):
    with open(GOLDEN / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(directory, text):
    data = text.encode("utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / hashlib.sha1(data).hexdigest()
    if not path.exists():
        path.write_bytes(data)
        return 1
    return 0


def main():
    corpus = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else FUZZ / "corpus"
    events_dir, trackers_dir = corpus / "event_json", corpus / "tracker_json"
    written = {"event_json": 0, "tracker_json": 0}

    events = []
    for line in lines("events.jsonl"):
        written["event_json"] += write(events_dir, line["json"])
        events.append(line["as_dict"])
    for line in lines("deserialize.jsonl"):
        written["event_json"] += write(events_dir, json.dumps(line["input"]))
        events.append(line["input"])
    for line in lines("trackers.jsonl"):
        conversation = line["events"]
        for event in conversation:
            written["event_json"] += write(events_dir, json.dumps(event))
        name = line.get("sender_id") or line.get("name")
        written["tracker_json"] += write(
            trackers_dir, json.dumps({"events": conversation, "name": name})
        )
        # Shorter conversations: each session, and the first 4, 8, 16, ... events.
        starts = [i for i, e in enumerate(conversation) if e.get("event") == "session_started"]
        bounds = [0] + starts + [len(conversation)]
        for begin, end in zip(bounds, bounds[1:]):
            if end > begin:
                written["tracker_json"] += write(trackers_dir, json.dumps(conversation[begin:end]))
        size = 4
        while size < len(conversation):
            written["tracker_json"] += write(
                trackers_dir, json.dumps({"sender_id": name, "events": conversation[:size]})
            )
            size *= 2
    for event in events:
        written["tracker_json"] += write(trackers_dir, json.dumps([event]))

    for target, count in written.items():
        print(f"{target}: {count} new seed files in {corpus / target}")


if __name__ == "__main__":
    main()
