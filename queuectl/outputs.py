"""Running jobs' output so far, stored on a thread of its own.

The thread that reads a job's pipe hands the output over and goes on reading. It used to store
it itself, and a store waits for the database: for another process's write lock (up to the busy
timeout), for a server that does not answer. Meanwhile nobody read the pipe, it filled, and the
job stood still on its own writes: its timeout fired though it had work left, and its end was
recorded late (QA: a 5 s job "timed out after 8s in 17s" behind a 15 s lock).

Only the latest output of each job waits to be stored: one handed over while the one before is
still waiting replaces it (each holds the whole capped tail). A job's run that has ended is
forgotten: its result carries its output.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .models import Job

log = logging.getLogger("queuectl.worker")

Store = Callable[[Job, str, int], None]


class OutputWriter:
    """Stores what :meth:`hand_over` is given with ``store(job, output, printed)``, in the
    order the jobs were first handed over, on a daemon thread started at the first; ``done``
    is called on that thread as it ends (to close its connection)."""

    def __init__(self, store: Store, done: Callable[[], None], name: str = "queuectl-output"):
        self._store, self._done, self._name = store, done, name
        self._due: dict[int, tuple[Job, str, int]] = {}  # by the job's seq
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False

    def hand_over(self, job: Job, output: str, printed: int) -> None:
        """Store ``output`` (``printed`` bytes so far) of ``job``'s run soon; returns at once."""
        with self._lock:
            if self._stopped:
                return
            self._due[job.seq] = (job, output, printed)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()

    def forget(self, seq: int) -> None:
        """The run of job ``seq`` has ended: what of its output waits is not stored."""
        with self._lock:
            self._due.pop(seq, None)

    def stop(self) -> None:
        """Store nothing more; the thread ends after the store under way, if any."""
        with self._lock:
            self._stopped = True
            self._due.clear()
            self._wake.notify()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def waiting(self) -> int:
        """Jobs whose output waits to be stored."""
        with self._lock:
            return len(self._due)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._wake.wait_for(lambda: self._due or self._stopped)
                    if self._stopped:
                        return
                    seq = next(iter(self._due))
                    due = self._due.pop(seq)
                self._store_one(*due)
                del due  # not held while the thread waits for the next: up to 1 MiB of text
        finally:
            self._done()

    def _store_one(self, job: Job, output: str, printed: int) -> None:
        try:
            self._store(job, output, printed)
        except Exception:  # a surprise must not end the thread: outputs would stop
            log.exception("storing the output of job %s failed", job.id)
