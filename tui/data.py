"""The loader: runs in a worker thread, queries the queue, returns plain data."""

from __future__ import annotations

from collections.abc import Callable

from queuectl.models import Job, State
from queuectl.queue import Queue

from .messages import PANES, JobRow, QueueSnapshot

WINDOW_S = 60  # the throughput chart: the last minute, one bar a second
PANE_LIMIT = 200  # rows loaded per pane when the app does not say (see JobPane.rows_wanted)


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
    queue: Queue,
    clock: Callable[[], float] | None = None,
    limits: dict[str, int] | None = None,
) -> QueueSnapshot:
    """Counts, config, live workers and the first rows of every pane (``limits[pane]`` of them)."""
    limits = limits or {}
    try:
        now = (clock or queue.clock)()
        return QueueSnapshot(
            now=now,
            counts=queue.counts(),
            panes={
                name: [job_row(job) for job in queue.pane(name, limits.get(name, PANE_LIMIT))]
                for name in PANES
            },
            config=queue.config(),
            live_workers=len(queue.live_workers()),
            finished=queue.finished_per_second(WINDOW_S),
        )
    finally:
        queue.close()  # this thread's connection; the executor may hand the thread to others


def pane_summaries(counts: dict[str, int], live_workers: int) -> dict[str, tuple[int, str]]:
    """Per pane: how many jobs it holds in all, and a note for its border."""
    failed = counts[State.FAILED]
    workers = f"{live_workers} worker{'' if live_workers == 1 else 's'} live"
    return {
        "waiting": (counts[State.PENDING] + failed, f"{failed:,} retrying" if failed else ""),
        "processing": (counts[State.PROCESSING], workers),
        "completed": (counts[State.COMPLETED], ""),
        "dead": (counts[State.DEAD], ""),
    }
