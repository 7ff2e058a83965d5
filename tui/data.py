"""The loader: runs in a worker thread, queries the queue, returns plain data."""

from __future__ import annotations

from collections.abc import Callable

from queuectl.models import Job
from queuectl.queue import Queue

from .messages import PANES, JobRow, QueueSnapshot

PANE_LIMIT = 200  # rows loaded per pane: a screenful and then some, never the whole table


def job_row(job: Job) -> JobRow:
    return JobRow(
        id=job.id,
        command=job.command,
        state=job.state,
        attempts=job.attempts,
        max_retries=job.max_retries,
        priority=job.priority,
        run_at=job.run_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        exit_code=job.exit_code,
        error=job.error,
        worker=job.worker,
    )


def load_snapshot(
    queue: Queue, clock: Callable[[], float] | None = None, limit: int = PANE_LIMIT
) -> QueueSnapshot:
    """Counts, config, live workers and the first ``limit`` rows of every pane."""
    try:
        now = (clock or queue.clock)()
        return QueueSnapshot(
            now=now,
            counts=queue.counts(),
            panes={name: [job_row(job) for job in queue.pane(name, limit)] for name in PANES},
            config=queue.config(),
            live_workers=len(queue.live_workers()),
        )
    finally:
        queue.close()  # this thread's connection; the executor may hand the thread to others
