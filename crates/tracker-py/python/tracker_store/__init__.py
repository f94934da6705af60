"""tracker-store for Rasa: Rasa's tracker stores (SQL, Redis, MongoDB, DynamoDB, memory) backed
by tracker-store's Rust stores.

In ``endpoints.yml``::

    tracker_store:
      type: tracker_store.RasaTrackerStore
      backend: sql          # sql | redis | mongod | dynamo | memory, or an alias
      dialect: postgresql
      url: db.internal
      db: rasa

Every other key is the key of Rasa's own store of that backend, with the same meaning.
"""

from __future__ import annotations

from tracker_store.errors import (
    TrackerStoreConfigError,
    TrackerStoreError,
    TrackerStoreUnavailable,
)
from tracker_store.store import RasaTrackerStore

__all__ = [
    "RasaTrackerStore",
    "TrackerStoreConfigError",
    "TrackerStoreError",
    "TrackerStoreUnavailable",
]
