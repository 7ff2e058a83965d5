"""This app's own worker pool, as the UI drives it.

The pool is registered like any `worker start` process, so it is only created once the app
wants threads (``--workers 0`` watches without being a worker). Starting it writes to the
database, so that happens in a thread of its own; ``+``, ``-`` and ``p`` pressed meanwhile are
remembered and applied once it runs. Safe to call from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from queuectl.queue import Queue
from queuectl.limits import STOP_TIMEOUT_S
from queuectl.worker import UNANSWERED_GRACE_S, JobEvent, WorkerPool

# A quit that waited for jobs runs the hooks due as its pool ends, taken within this long: those
# of its jobs' ends (made due as they ended), not all of a busy queue's.
QUIT_HOOKS_S = 2.0
JOIN_POLL_S = 0.1  # a quit's wait for the pool looks this often whether to give it up
STOP_ASKED = "`queuectl worker stop` asked them to (their running jobs finish)"


class PoolControl:
    def __init__(
        self,
        queue: Queue,
        on_event: Callable[[JobEvent], None],
        on_error: Callable[[str], None],
        queues: tuple[str, ...] | None = None,
    ) -> None:
        self.queue, self.on_event, self.on_error = queue, on_event, on_error
        self.queues = queues  # claim only jobs of these named queues (`tui --queue`)
        self.pool: WorkerPool | None = None
        self._lock = threading.Lock()
        self._threads, self._paused = 0, False
        self._starting = False
        self._stopping = False
        self._stopped_at = 0.0  # (monotonic) when the quit asked the pool to stop
        self._room_wanted = ""  # why its start waits (reconnect.start_waits): full, or locked
        self._unregistering = False  # `worker stop` asked it to stop: it is being joined
        self._settled = threading.Event()  # no start in progress
        self._settled.set()
        # The quit left the pool's last writes undone: the database did not answer (see join).
        self._given_up = threading.Event()

    @property
    def started(self) -> bool:
        return self.pool is not None

    @property
    def starting(self) -> bool:
        """Whether the pool's start is under way, and not yet known to wait for room or for
        another process's lock (its registration can wait a minute for that lock: the bar
        said "▶ running" meanwhile, QA)."""
        return self.pool is None and self._starting and not self._room_wanted

    @property
    def threads(self) -> int:
        """Threads the running pool aims for (0 before it starts)."""
        pool = self.pool
        return pool.threads if pool is not None else 0

    @property
    def paused(self) -> bool:
        pool = self.pool
        return pool.paused if pool is not None else self._paused

    @property
    def busy(self) -> int:
        """Jobs this app's workers are running now."""
        pool = self.pool
        return pool.busy if pool is not None else 0

    @property
    def problem(self) -> str | None:
        """Why the pool stopped by itself (its database file deleted or replaced, or `worker
        stop` asked it to), if it did."""
        pool = self.pool
        if pool is None:
            return None
        if pool.problem is None and pool.stop_asked:
            self._unregister_once(pool)
            return STOP_ASKED
        return pool.problem

    def _unregister_once(self, pool: WorkerPool) -> None:
        """Once `worker stop` asked the pool to stop: its jobs finish and it unregisters, on a
        thread of its own (`worker stop` waits for that). QA: it claimed no more, but stayed
        registered: `worker stop` waited its whole timeout and failed, and `status` counted
        it while the bar said "running"."""
        with self._lock:
            if self._unregistering:
                return
            self._unregistering = True
        threading.Thread(target=pool.join, name="queuectl-tui-pool-stop", daemon=True).start()

    @property
    def outage(self) -> str:
        """Why the workers cannot use the database now, once their log said so ("" if they
        can): a full disk, which the panes' reads do not meet."""
        pool = self.pool
        return pool.outage.said if pool is not None else self._room_wanted

    @property
    def results_waiting(self) -> int:
        """Runs of this app's workers that have ended, their result (or release) not yet
        stored: the database is away."""
        pool = self.pool
        return max(pool.holding - pool.busy, 0) if pool is not None else 0

    def unstored_said(self) -> str | None:
        """Once the pool has stopped (or was given up on, see :meth:`join`): what it could not
        write, in words (see WorkerPool.unstored_said); None if nothing."""
        pool = self.pool
        if pool is None:
            if not self._given_up.is_set():
                return None
            # (Its registration may have reached the server, the answer lost.)
            return ("stopped while this app's workers were starting (the database has not "
                    "answered): if they registered, they read as live until their lease runs "
                    "out")  # fmt: skip
        if self._given_up.is_set():  # its threads still wait: what they hold is not stored
            said = pool.unstored_said(max(pool.holding, len(pool.unstored)))
        else:
            said = pool.unstored_said()
        if said is None and (pool.left_registered or self._given_up.is_set()):
            said = ("stopped without unregistering this app's workers (the database has not "
                    "answered): they read as live until their lease runs out")  # fmt: skip
        return said

    @property
    def unanswered_for(self) -> float | None:
        """Seconds the database has not answered since the quit began (PostgreSQL), if so: the
        pool's heartbeat has not landed since, or its start still waits (SQLite's start gives
        up its wait for a lock at the quit)."""
        pool = self.pool
        if pool is not None:
            return pool.unanswered_since_the_stop
        if self._settled.is_set() or not self._stopping:
            return None
        return time.monotonic() - self._stopped_at

    @property
    def given_up(self) -> bool:
        """Whether the quit left the pool's last writes undone (see :meth:`join`): its threads
        still wait on the database, and may hold its connections' locks."""
        return self._given_up.is_set()

    def give_up(self) -> None:
        """Quit now, without the pool's last writes, while the database does not answer (the
        quitting dialog's ctrl+c with no job running): :meth:`join` returns at once."""
        self.stop()
        self._given_up.set()

    @property
    def hooks(self) -> int:
        """Notification hooks this app's workers are running now."""
        pool = self.pool
        return pool.hooks_running if pool is not None else 0

    @property
    def retiring(self) -> int:
        """Threads taken away (``-``) that still run their last job."""
        pool = self.pool
        return pool.retiring if pool is not None else 0

    def want(self, threads: int, paused: bool) -> None:
        """Run ``threads`` worker threads, paused or not; start the pool the first time."""
        with self._lock:
            self._threads, self._paused = threads, paused
            if self._stopping:
                return
            if self.pool is not None:
                self._apply(self.pool)
            elif threads and not self._starting:
                self._starting = True
                self._settled.clear()
                threading.Thread(target=self._start, name="queuectl-tui-pool", daemon=True).start()

    def _apply(self, pool: WorkerPool) -> None:
        pool.set_threads(self._threads)
        pool.pause() if self._paused else pool.resume()

    def _start(self) -> None:
        from queuectl.db import lock_waits_end_when
        from queuectl.heap import large_buffers_given_back
        from queuectl.reconnect import Backoff, start_waits

        large_buffers_given_back()  # (jobs run in this process: see there)
        backoff = Backoff()
        while True:
            with self._lock:
                # Its quit waits for the hooks running (asked about first), not for those due.
                pool = WorkerPool(self.queue, self._threads, on_event=self.on_event,
                                  queues=self.queues, hooks_at_stop=False)  # fmt: skip
                if self._paused:
                    pool.pause()  # before it claims anything
            try:
                # The app's quit ends a wait for another process's write lock.
                with lock_waits_end_when(self.queue.db, lambda: self._stopping):
                    pool.start()
            except Exception as exc:
                pool = None
                why = start_waits(exc)
                if why is None:
                    self.on_error(f"could not start workers: {exc}")  # stay a watcher
                elif self._waited_for_room(why, backoff.next()):
                    continue
            finally:
                self.queue.close()
            break
        with self._lock:
            self.pool, self._starting, self._room_wanted = pool, False, ""
            if pool is not None:
                self._apply(pool)  # what was asked for while it started
                if self._stopping:
                    pool.stop()
        self._settled.set()

    def _waited_for_room(self, why: str, delay: float) -> bool:
        """Wait ``delay`` seconds to start again on a full disk, or behind another process's
        write lock, as `worker start` does; False if the app quits meanwhile. QA: a pool opened
        so never started once room was made or the lock let go, while the bar said
        "running"."""
        self._room_wanted = why  # the bar says so (see outage)
        deadline = time.monotonic() + delay
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._stopping

    def stop(self, hooks: bool = False) -> None:
        """Claim nothing more; running jobs finish. ``hooks``: the quit waits for them (the
        user said yes to it): the hooks due by the end are run too (the jobs it waited for
        finished with changes to notify of: left to the next worker, with none started they
        were never run), not only those running."""
        with self._lock:
            if not self._stopping:
                self._stopped_at = time.monotonic()
            self._stopping = True
            if self.pool is not None:
                if hooks:  # (join's stop, after it, leaves it so)
                    # Those its jobs' ends made due, not every one due in the database: with
                    # workers elsewhere busy, a quit ran their hooks too, for 27 s (QA).
                    self.pool.hooks_at_stop = QUIT_HOOKS_S
                self.pool.stop()

    def kill(self) -> None:
        """Kill running jobs: they go back to pending, their attempt not counted (and running
        hooks: another process runs them again)."""
        self.stop()
        if self.pool is not None:
            self.pool.kill()

    def join(self, timeout: float | None = None) -> bool:
        """Stop and wait for running jobs, and for the pool to unregister (blocks: not on the UI
        thread); whether it did within ``timeout``. With no job running, a database that has not
        answered for the stop's timeout (see WorkerPool.gives_up_on_the_database), or the user
        (:meth:`give_up`), ends the wait: its statements would wait for the network to give up,
        and a quit with a silent network took 40 s, saying only "stopping"."""
        self.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._given_up.is_set():
            step = JOIN_POLL_S
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
            if step <= 0:
                return False
            if not self._settled.wait(step):
                # Its start waits for the database, as long as a stop would (a quit as the
                # network went silent waited for the start's statements to give up).
                if (self.unanswered_for or 0) >= STOP_TIMEOUT_S + UNANSWERED_GRACE_S:
                    self._given_up.set()
                continue
            pool = self.pool
            if pool is None or pool.join(step):
                return True
            if pool.gives_up_on_the_database():
                self._given_up.set()
        return True
