"""The Queue: what the CLI and the TUI call. Neither holds SQL or a lifecycle rule of its own.

Each concern has its own module, and Queue puts them together:

- :mod:`.core`: the database, the models bound to it, transactions, turns, settings;
- :mod:`.reading`: jobs by id or prefix, listings, panes, counts;
- :mod:`.lifecycle`: enqueue, claim, finish, the retry rules, release, the DLQ's retry;
- :mod:`.registry`: worker processes, heartbeats, stop requests, the rescue of lost jobs;
- :mod:`.workflows`: dependencies between jobs, named queues (limits, pause);
- :mod:`.schedules`: recurring jobs from cron expressions;
- :mod:`.control`: live output, cancel, retry, edit, purge and retention (SPEC 6);
- :mod:`.statements`: the hot path's SQL, generated from the states and the lifecycle's rules.
"""

from __future__ import annotations

from .control import Control
from .core import HEARTBEAT_INTERVAL_S, HOSTNAME, LEASE_S
from .history import History
from .hooks import Hooks
from .lifecycle import ID_ALPHABET, ID_LENGTH, MAX_BACKOFF_S, backoff_delay, new_id, new_ids
from .models import CLAIMABLE
from .reading import WholeId, check_state
from .registry import WORKER_LOST, Registry
from .schedules import Schedules
from .workflows import Workflows


class Queue(Control, Schedules, Workflows, History, Hooks, Registry):
    """One queue (see :class:`queuectl.core.QueueCore` for its arguments)."""

    def for_worker_threads(self) -> Queue:
        return super().for_worker_threads()  # type: ignore[return-value]


__all__ = [
    "CLAIMABLE",
    "HEARTBEAT_INTERVAL_S",
    "HOSTNAME",
    "ID_ALPHABET",
    "ID_LENGTH",
    "LEASE_S",
    "MAX_BACKOFF_S",
    "Queue",
    "WORKER_LOST",
    "WholeId",
    "backoff_delay",
    "check_state",
    "new_id",
    "new_ids",
]
