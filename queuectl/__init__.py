"""queuectl: a durable job queue for shell commands.

The Python API that the CLI and the TUI are built on::

    from queuectl import Queue, WorkerPool
    queue = Queue("jobs.db")
    queue.enqueue("make test")
    WorkerPool(queue, threads=2, burst=True).start().run_until_stopped()
"""

from .errors import InvalidInput, QueueError
from .queue import Queue
from .spec import JobSpec, parse_job
from .worker import JobEvent, WorkerPool

__all__ = ["InvalidInput", "JobEvent", "JobSpec", "Queue", "QueueError", "WorkerPool", "parse_job"]
__version__ = "0.1.0"
