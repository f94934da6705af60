"""The exceptions of the tracker store, as Rasa sees them.

Every one is a :class:`rasa.shared.exceptions.RasaException`, and none is an ``ImportError``
or ``AttributeError``: Rasa's tracker store factory turns those two into a silent fallback to
its in-memory store, which would lose every conversation at the next restart.
"""

from __future__ import annotations

from rasa.shared.exceptions import RasaException


class TrackerStoreError(RasaException):
    """A tracker store operation failed."""


class TrackerStoreConfigError(TrackerStoreError, ValueError):
    """The ``tracker_store`` section of ``endpoints.yml`` is wrong; the message names the key."""


class TrackerStoreUnavailable(TrackerStoreError, ConnectionError):
    """The store's server could not be reached (Rasa reports it as a ``ConnectionException``)."""
