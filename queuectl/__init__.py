"""queuectl: a durable job queue for shell commands.

The Python API that the CLI and the TUI are built on::

    from queuectl import Queue, WorkerPool
    queue = Queue("jobs.db")
    queue.enqueue("make test")
    WorkerPool(queue, threads=2, burst=True).start().run_until_stopped()

The engine (peewee and the database drivers) is imported on first use of a name below, not by
``import queuectl``: ``queuectl --help`` and the other commands that need no database stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, QueueError

if TYPE_CHECKING:
    from .queue import Queue
    from .spec import JobSpec, parse_job
    from .worker import JobEvent, WorkerPool

# name -> the module that defines it, imported when the name is first asked for (PEP 562).
_LAZY = {
    "Queue": ".queue",
    "JobSpec": ".spec",
    "parse_job": ".spec",
    "JobEvent": ".worker",
    "WorkerPool": ".worker",
}

__all__ = ["InvalidInput", "JobEvent", "JobSpec", "Queue", "QueueError", "WorkerPool", "parse_job"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
