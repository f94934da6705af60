"""Copying conversations between two Rasa tracker stores — e.g. back into Rasa's own store.

As a command::

    python -m tracker_store.copy FROM_ENDPOINTS.yml TO_ENDPOINTS.yml

reads the ``tracker_store`` section of each file with Rasa's own loader (``${VAR}`` expanded),
builds both stores with Rasa's factory, and saves every conversation of the first, whole,
into the second. The destination must not hold these conversations yet: Rasa's SQL and
MongoDB stores append a saved tracker's events after the ones they count, so copying twice
into them writes events twice. No event broker is involved.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Optional, Sequence

from rasa.core.tracker_store import TrackerStore

logger = logging.getLogger(__name__)


async def copy_conversations(source: TrackerStore, destination: TrackerStore) -> int:
    """Saves every conversation of ``source``, with all its sessions, into ``destination``;
    returns how many were copied."""
    copied = 0
    for sender_id in list(await source.keys()):
        tracker = await source.retrieve_full_tracker(sender_id)
        if tracker is None or not tracker.events:
            continue
        await destination.save(tracker)
        copied += 1
    return copied


def _store(path: str) -> TrackerStore:
    from rasa.core.utils import AvailableEndpoints

    section = AvailableEndpoints.read_endpoints(path).tracker_store
    if section is None:
        raise SystemExit(f"{path} has no tracker_store section")
    return TrackerStore.create(section)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tracker_store.copy",
        description="Copy every conversation from one Rasa tracker store to another.",
    )
    parser.add_argument("source", help="endpoints.yml of the store to read")
    parser.add_argument("destination", help="endpoints.yml of the store to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    source, destination = _store(args.source), _store(args.destination)
    copied = asyncio.run(copy_conversations(source, destination))
    print(f"copied {copied} conversation(s)")


if __name__ == "__main__":
    main()
