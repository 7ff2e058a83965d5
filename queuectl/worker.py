"""The worker pool: N threads claiming and running jobs, plus one service thread that
heartbeats, rescues the jobs of dead workers and wakes idle threads when the queue changes.

`queuectl worker start` and the TUI both run a :class:`WorkerPool`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import peewee

from .db import file_replaced
from .executor import OUTPUT_LIMIT, Execution, RunResult
from .heap import give_back_freed
from .hooks import HookRunner
# MAX_THREADS re-exported: the TUI takes it here
from .limits import MAX_STOP_TIMEOUT_S, MAX_THREADS, STOP_TIMEOUT_S
from .procs import WORKER_ENV
from .models import Job
from .outputs import OutputWriter
from .queue import HEARTBEAT_INTERVAL_S, Queue
from .reconnect import (HELD, MAX_RETRY_S, Backoff, Outage, damaged, first_line, in_words,
                        no_answer)
from .schedules import ScheduleTimer
from .schema import SCHEMA_VERSION, read_version
from .warden import Warden
from .watch import OUTPUT_PAYLOAD, PostgresNotifications

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.25  # an idle thread re-checks at least this often, whatever it is told
SERVICE_TICK_S = 0.1  # the service thread's round: change watch, then `--burst`'s check
RETENTION_EVERY_S = 60.0  # config `retention` is applied at most this often (SPEC 6)
# PostgreSQL: every write that makes a job claimable announces it (LISTEN/NOTIFY), and an idle
# thread's timer is the next due time, so an idle pool runs no statement but its heartbeat.
ANNOUNCED_IDLE_WAIT_S = 30.0  # an idle thread's look anyway (a safety net only)
QUIET_TICK_S = 0.25  # the service thread's round while quiet (a look at the clock, no statement)
QUIET_AFTER_S = 2.0  # quiet: nothing ran in the pool for this long, and no hook runs
QUIET_HOOKS_S = 5.0  # while quiet, hook deliveries are looked for this often
WATCH_START_S = 10.0  # at most this long, the threads' first claims wait for the watch to start
STOP_LOOK_S = 0.05  # how often that wait looks for a stop
# A pool just started takes workers silent past the lease for gone only after this long: one cut
# off by an outage that has just ended beats again within about a second (it retries every
# MAX_RETRY_S). Three heartbeats, not a lease: pools that live less than a lease (a `--burst`
# run from cron, a restart loop) never rescued the jobs of workers really gone.
STARTUP_GRACE_S = 3 * HEARTBEAT_INTERVAL_S
# PostgreSQL: a pool that has not heartbeaten for its lease less this margin (a fifth of the
# lease, three heartbeats at least) kills its running jobs, and claims none until a heartbeat
# lands. Past the lease, the workers of other hosts take it for gone and run its jobs again: cut
# off from the database, it ran them on beside their next runs, past their queue's limit (SPEC
# 3, 7). Each goes back to pending, its attempt not counted, once the database is back (unless
# it was rescued meanwhile). The margin covers the kill itself and the hosts' clocks being a
# little apart. Never less than two heartbeats (nor more than the lease): a heartbeat is due
# every second, and one a little slow is no outage.
FENCE_MARGIN_S = 3 * HEARTBEAT_INTERVAL_S
FENCE_TICK_S = 0.25  # how often the pool looks whether it is past that point
# Characters of a running job's output past which its store is followed by dropping the
# connection's cached pages and giving their memory back (see QueueCore.drop_page_cache and
# queuectl.heap): a job printing on stores its 1 MiB tail a second, and a worker that had kept
# the pages of the last ones grew 10.5 MiB at the end of a 1 GB job, 9.4 with this.
LARGE_OUTPUT = 128 * 1024
OUTAGE_BEAT_S = 0.25  # a heartbeat that failed is tried again this soon (not a second later)
# A stopping pool that runs no job, and still waits on a database that has not answered for
# --stop-timeout (a statement sent into a network that drops it without a word never fails),
# is left this much longer, then its process ends (`worker start` exits 1, the TUI quits): its
# jobs are rescued as "worker lost", as on any outage. A job still running is never left behind
# (on PostgreSQL the pool kills it itself once silent near its lease, see fence_after).
UNANSWERED_GRACE_S = 2.0


def fence_after(lease: float) -> float:
    """Seconds without a heartbeat after which a PostgreSQL pool kills its running jobs."""
    return max(lease - max(FENCE_MARGIN_S, lease / 5), min(2 * HEARTBEAT_INTERVAL_S, lease))

T = TypeVar("T")


class ResultNotStored(Exception):
    """The database stayed unreachable past the stop timeout while a result waited."""


class JobEvent(NamedTuple):
    """What happened to a job in this pool; ``kind`` is one of started, completed, failed,
    dead, cancelled, released, rescued, scheduled (enqueued by a schedule). A named tuple:
    two are made a job (a frozen dataclass's __init__ cost three times as much)."""

    kind: str
    job: Job
    thread: str

    reason = ""  # see Released


class Released(JobEvent):
    """A "released" event: its run was killed, and the job given back, for ``reason``: "stop"
    (a hard stop), "outage" or "suspended" (see WorkerPool._fence). Still the three in order,
    unpacked."""

    def __new__(cls, job: Job, thread: str, reason: str) -> Released:
        event = super().__new__(cls, "released", job, thread)
        event.reason = reason  # type: ignore[misc]
        return event


EventCallback = Callable[[JobEvent], None]


class WorkerPool:
    def __init__(
        self,
        queue: Queue,
        threads: int = 2,
        *,
        on_event: EventCallback | None = None,
        burst: bool = False,
        output_limit: int = OUTPUT_LIMIT,
        stop_timeout: float = STOP_TIMEOUT_S,
        queues: Sequence[str] | None = None,
        hooks_at_stop: bool | float = True,
        started_at: float | None = None,
    ) -> None:
        if not 0 <= threads <= MAX_THREADS:
            raise ValueError(f"threads must be 0 to {MAX_THREADS}")
        self.queue = queue
        # Claim only jobs of these named queues (SPEC 7), else of every queue.
        self.queues: tuple[str, ...] | None = tuple(sorted(set(queues))) if queues else None
        self._schedules = ScheduleTimer()
        self._ended_at = float("-inf")  # time.monotonic() of the last end of a run here
        self._jobs = queue  # what the worker threads use: Queue.for_worker_threads(), once started
        self.on_event = on_event
        self.burst = burst
        self.output_limit = output_limit
        # At most MAX_STOP_TIMEOUT_S (~31 years), well within what a thread can wait
        # (threading.TIMEOUT_MAX): `--stop-timeout 1e10` means "wait for ever", not a crash on
        # the way out.
        self.stop_timeout = min(stop_timeout, MAX_STOP_TIMEOUT_S)
        # At the stop, start the hooks still due (within the stop timeout, or within that many
        # seconds), or leave them in the database for another process (False).
        self.hooks_at_stop = hooks_at_stop
        # When the process started (the queue's clock): a `worker stop` on this host since
        # then stops the pool as it registers (see Registry.register_worker).
        self.started_at = started_at
        self.outage = Outage(log)
        self.unstored: list[str] = []  # ids of jobs whose result was given up on (see _store)
        self.problem: str | None = None  # why the pool stopped by itself (see _beat)
        self.worker_id: str | None = None
        self._env: Mapping[str, str] = {}
        self._target = threads
        self._slots: dict[int, threading.Thread] = {}
        self._running: dict[int, Execution] = {}
        self._running_jobs: dict[int, Execution] = {}  # by job seq: what a cancel stops
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._waiting = 0  # worker threads in _idle
        self._someone_waits = threading.Event()
        self._paused = False
        self._stopping = threading.Event()  # no new claims
        self._hard = threading.Event()  # running jobs were killed: give them back
        self._service_done = threading.Event()
        self._service: threading.Thread | None = None
        self._stop_deadline = float("inf")
        # The jobs this pool's threads hold (claimed, not yet stored), and the claims under way:
        # after an outage, a job the database says this worker runs but no thread holds was
        # claimed by a statement whose reply was lost with the connection (see _give_back_strays).
        self._held: set[int] = set()
        self._claims_under_way = 0
        self._strays_pending = False
        self._hooks: HookRunner | None = None  # the notification hooks this process runs
        self._watching = threading.Event()  # the service thread watches for changes
        # This pool's last heartbeat (monotonic), and when it may rescue other workers again
        # after it was silent itself (see _beat).
        self._last_beat: float | None = None
        self._rescue_from = float("-inf")
        # When the heartbeat that last landed began (monotonic): the time it recorded is later.
        self._beat_began = time.monotonic()
        self._fence_after = fence_after(self.queue.lease)
        # Why the fence last killed runs: "outage", or "suspended" (this process stood still).
        self._fenced_why = "outage"
        self._closing: threading.Thread | None = None  # runs _shutdown, once (see join)
        self.stop_asked = False  # `worker stop` asked this pool to stop (its heartbeat read so)
        # Its stop could not unregister it (the database away past the stop timeout): other
        # workers read it as live until its lease runs out.
        self.left_registered = False
        # Running jobs' output so far, stored on a thread of its own: a store that waits for
        # the database must not hold up the thread that reads the job's pipe (queuectl.outputs).
        self._outputs = OutputWriter(self._store_output, self._close_own_connection)
        # Kills the jobs' processes if this process dies without standing it down (see warden).
        self._warden: Warden | None = None

    # -- control (any thread) ---------------------------------------------------------------

    def start(
        self,
        announce: Callable[[str], None] | None = None,
        stop_came: Callable[[], bool] = lambda: False,
    ) -> "WorkerPool":
        """Register this worker process and start its threads. ``announce`` is called with the
        worker's id before any thread starts: `worker start`'s first line comes before any
        job's (QA: a --burst worker's first job was said first). ``stop_came``: whether a stop
        was asked for meanwhile (`worker start`'s signals): then the threads start without
        waiting for the watch, and the caller acts on the stop at once."""
        self._beat_began = time.monotonic()
        self.worker_id = self.queue.register_worker(self._target, self.started_at)
        if announce is not None:
            announce(self.worker_id)
        # Every job's environment: this process's, as the pool starts, plus its worker id
        # (encoded once: per job, that cost more than starting the shell).
        from .spawn import Environment  # here: `import queuectl` must not load ctypes

        self._env = Environment({**os.environ, WORKER_ENV: self.worker_id})
        if os.path.isdir("/proc"):  # (where the jobs' processes can be found: see procs)
            self._warden = Warden(self.worker_id)
        self._hooks = HookRunner(self.queue, self.worker_id)
        self._jobs = self.queue.for_worker_threads()
        self.queue.add_listener(self.wake)
        self._service = threading.Thread(target=self._serve, name="queuectl-service", daemon=True)
        self._service.start()
        if not self.queue.is_sqlite:  # (SQLite's workers share a host: see rescue_lost)
            threading.Thread(target=self._fence, name="queuectl-fence", daemon=True).start()
        # The threads' first claims come after the watch's start: a job enqueued between a
        # thread's first look and the watch's would wait for the safety net's look. A stop
        # ends the wait (CI: SIGTERM as a silent network held the watch's LISTEN was acted on
        # only once that ended, 3 s later, and the stop ended past --stop-timeout's grace).
        until = time.monotonic() + WATCH_START_S
        while not self._watching.wait(STOP_LOOK_S):
            if stop_came() or time.monotonic() >= until:
                break
        with self._lock:
            self._fill_slots()
        return self

    def waited_out(self, grace: float = 0.0, failing_since: float | None = None) -> bool:
        """Whether a stop has waited --stop-timeout (and ``grace``) for the database: since
        the stop, and since the database was lost (a job that ends long after the stop, in an
        outage, gets the whole timeout too). ``failing_since``: when the caller's own write
        first failed, where it failed every try since: it counts from then, not from the
        outage's start. Other threads' writes that go through end the outage, and the write's
        next failure began it anew, every heartbeat (QA: a store retried for ever, the stop
        never came); and a job that ended long after the stop, in a full disk that began
        before it, got no time at all (QA)."""
        if not self._stopping.is_set():
            return False
        lost = self.outage.since  # (None: it answers others; this failure is this write's)
        if failing_since is not None:
            lost = failing_since
        until = self._stop_deadline if lost is None else lost + self.stop_timeout
        return time.monotonic() >= max(self._stop_deadline, until) + grace

    def unanswered_past_the_stop(self, grace: float = 0.0) -> bool:
        """PostgreSQL: whether a stop has waited --stop-timeout (and ``grace``) with no heartbeat
        landing since it began (the service thread's, or those of the stop's last hooks). A
        network that drops packets without a word is said as an outage only once a connection
        gives up (a connect's timeout, 5 s; a statement's, 15 s): the stop's timeout counted
        from then, and `worker start --stop-timeout 2` took 9-12 s to end (the suite).
        (SQLite's statements wait only for a lock, up to the stop's end.)"""
        unanswered = self.unanswered_since_the_stop
        return unanswered is not None and unanswered >= self.stop_timeout + grace

    @property
    def unanswered_since_the_stop(self) -> float | None:
        """PostgreSQL: seconds since a stop began, if no heartbeat has landed since; else None
        (no stop, a heartbeat landed, or SQLite)."""
        if self.queue.is_sqlite or not self._stopping.is_set():
            return None
        stopped_at = self._stop_deadline - self.stop_timeout
        if self._last_beat is not None and self._last_beat >= stopped_at:
            return None
        return time.monotonic() - stopped_at

    def gives_up_on_the_database(self, grace: float = UNANSWERED_GRACE_S) -> bool:
        """Whether a stop with no job running has waited for the database as long as it may
        (its --stop-timeout, and ``grace``): lost (see :meth:`waited_out`), or silent since the
        stop began (:meth:`unanswered_past_the_stop`). The process then ends without the
        pool's last writes: results not stored, the worker left registered; its jobs are
        rescued as "worker lost", as on any outage. A running job is never left behind."""
        return not self.busy and (
            (self.outage.down and self.waited_out(grace)) or self.unanswered_past_the_stop(grace)
        )

    @property
    def holding(self) -> int:
        """Jobs this pool's threads hold: claimed, their result not yet stored."""
        with self._lock:
            return len(self._held)

    @property
    def threads(self) -> int:
        """Worker threads this pool aims to run."""
        return self._target

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def hooks_running(self) -> int:
        """Notification hooks this process runs now (a stop waits for them: see HookRunner)."""
        hooks = self._hooks
        return hooks.running if hooks is not None else 0

    @property
    def retiring(self) -> int:
        """Threads taken away by set_threads that still run their last job (a slot past the
        target ends once its job does)."""
        with self._lock:
            return sum(1 for slot in self._slots if slot >= self._target)

    @property
    def waiting(self) -> int:
        """Worker threads waiting for a job (neither claiming nor running one)."""
        with self._lock:
            return self._waiting

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def set_threads(self, count: int) -> None:
        """Grow at once; shrink as threads finish their current job."""
        with self._lock:
            self._target = max(0, min(count, MAX_THREADS))
            self._fill_slots()
            self._wake_locked()

    def pause(self) -> None:
        """Stop claiming; running jobs finish."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._wake_locked()

    def wake(self) -> None:
        """Something changed in the queue: idle threads should look again."""
        with self._lock:
            self._wake_locked()

    def stop(self) -> None:
        """Graceful stop: claim nothing more; running jobs finish."""
        with self._lock:
            if not self._stopping.is_set():
                self._stop_deadline = deadline = time.monotonic() + self.stop_timeout
                if self._jobs is not self.queue:  # SQLite: waits for another process's lock
                    # end with the stop timeout: the worker threads' (see _store), and the
                    # service thread's, whose heartbeat holds this process's writers' turn
                    # meanwhile (QA: a stop with --stop-timeout 5 waited out a 40 s lock).
                    for db in (self._jobs.db, self.queue.db):
                        db.stop_waiting = lambda: time.monotonic() >= deadline  # type: ignore[attr-defined]
        self._stopping.set()
        self.wake()

    def kill(self) -> None:
        """Hard stop: kill running jobs' process groups; they go back to pending, uncounted."""
        self._hard.set()
        self.stop()
        with self._lock:
            running = list(self._running.values())
        for execution in running:
            execution.kill()
        if self._hooks is not None:
            self._hooks.kill()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker threads after :meth:`stop`; True once all are gone, and the
        pool has unregistered itself. The pool's last steps (its hooks still due, at most the
        stop timeout) run on a thread of their own: a caller that waits with a timeout, as
        `worker start` does, acts on a second signal meanwhile (:meth:`kill`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._slots.values()):
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            thread.join(remaining)
            if thread.is_alive():
                return False
        with self._lock:
            if self._closing is None:
                self._closing = threading.Thread(
                    target=self._shutdown, name="queuectl-shutdown", daemon=True
                )
                self._closing.start()
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        self._closing.join(remaining)
        if self._closing.is_alive():
            return False
        if self._warden is not None:  # every run has ended: what they left is theirs
            self._warden.stand_down()
        if self.queue.is_sqlite:  # (a TUI's queue goes on after its pool)
            self.queue.db.stop_waiting = None  # type: ignore[attr-defined]
        return True

    def run_until_stopped(self, poll: float = 0.1) -> None:
        """Block until the pool stops (by :meth:`stop`, a stop request or burst's end)."""
        while not self._stopping.is_set():
            self._stopping.wait(poll)
        while not self.join(poll):
            pass

    # -- internals --------------------------------------------------------------------------

    def _wake_locked(self) -> None:
        self._generation += 1
        self._changed.notify_all()

    def _fill_slots(self) -> None:
        for slot in range(self._target):
            thread = self._slots.get(slot)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._work, args=(slot,), name=f"worker-{slot + 1}", daemon=True
                )
                self._slots[slot] = thread
                thread.start()

    def _emit(self, kind: str, job: Job, thread: str | None = None, reason: str = "") -> None:
        """Tell ``on_event``; ``thread``: the calling thread's name (looked up if not given);
        ``reason``: a released run's (see Released)."""
        if self.on_event is not None:
            thread = thread or threading.current_thread().name
            try:
                self.on_event(Released(job, thread, reason) if reason else
                              JobEvent(kind, job, thread))  # fmt: skip
            except Exception as exc:  # a display callback must never kill a worker
                log.error("event callback failed (%s: %s)", type(exc).__name__, exc,
                          exc_info=True)  # (the CLI's log keeps the line, not the traceback)

    def _work(self, slot: int) -> None:
        try:
            job: Job | None = None
            name = threading.current_thread().name  # its events' (looked up once, not twice a job)
            while True:
                if job is None:
                    job = self._next_job(slot)
                    if job is None:
                        return
                try:
                    job = self._run(slot, job, name)
                except ResultNotStored:
                    self._gave_up(job)
                    job = None
                except Exception as exc:  # a surprise must not kill the thread and strand the job
                    log.exception("running job %s failed", job.id)
                    self._fail_unexpectedly(slot, job, exc)
                    job = None
        finally:
            with self._lock:
                if self._slots.get(slot) is threading.current_thread():
                    del self._slots[slot]
            self._close_own_connection()

    def _close_own_connection(self) -> None:
        """At the end of a thread that used ``_jobs``: its own connection, where each thread
        has one (else the threads' shared one is closed at shutdown)."""
        if self._jobs is self.queue:
            self.queue.close()

    def _next_job(self, slot: int) -> Job | None:
        """Wait for a job to claim; None once this thread should end (a stop, or retired)."""
        backoff = Backoff()
        while True:
            with self._lock:
                if not self._goes_on(slot):
                    # Retired by set_threads: free the slot under this same lock, so that a
                    # set_threads growing it again meanwhile starts a new thread there.
                    if slot >= self._target and self._slots.get(slot) is threading.current_thread():
                        del self._slots[slot]
                    return None
                generation = self._generation
                paused = self._paused
            if paused or self._fenced():
                self._idle(generation, IDLE_WAIT_S)
                continue
            try:
                job = self._claiming(lambda: self._jobs.claim(
                    self.worker_id, self.queues, abandon=lambda: self._holds_off(slot)))  # type: ignore[arg-type]
            except peewee.PeeweeException as exc:
                self._database_failed(self._jobs, exc)
                self._idle(generation, backoff.next())
                continue
            except Exception:  # a surprise must not end the thread: the pool would shrink
                log.exception("claiming a job failed")
                self._idle(generation, backoff.next())
                continue
            backoff.reset()
            self.outage.ok(wrote=job is not None)
            if job is None:
                self._idle(generation, self._idle_timeout())
            else:
                return job  # _run looks whether it still is to run it

    def _give_back(self, job: Job) -> None:
        """A job this thread claimed but is not to run (see _run): it goes back, uncounted."""
        worker_id: str = self.worker_id  # type: ignore[assignment]
        try:
            self._store(lambda: self._jobs.release(job, worker_id))
        except ResultNotStored:
            self._gave_up(job)
        self._let_go(job)

    def _goes_on(self, slot: int) -> bool:
        """Whether this slot's thread is to go on claiming (called under the lock)."""
        return not self._stopping.is_set() and slot < self._target

    def _holds_off(self, slot: int) -> bool:
        """Whether this slot's thread is to claim nothing now: stopped, retired or paused."""
        return not self._goes_on(slot) or self._paused

    def _idle_timeout(self) -> float:
        try:
            due = self._jobs.next_due_in(self.queues)
        except peewee.PeeweeException as exc:
            self._database_failed(self._jobs, exc)
            return MAX_RETRY_S
        if due == 0 and not self.queue.is_sqlite:
            # A job is due that the claim just passed over. On PostgreSQL that may be one of a
            # queue given a limit elsewhere since this pool last read whether any queue has one
            # (the claim statement leaves limited queues out): the next claim reads that
            # afresh. Else the thread spun, claiming nothing, until the read's second was up
            # (QA: 0.39-0.85 s, ~1,400 claims a second).
            self._jobs.forget_limits()  # type: ignore[attr-defined]
        wait = self._idle_wait()
        return wait if due is None else min(due, wait)

    def _idle_wait(self) -> float:
        """How long an idle thread waits when nothing wakes it and nothing is due: a safety
        net's. Every change wakes it: on SQLite, any commit of another connection (the service
        thread's watch: the kernel's file events, and data_version at least every QUIET_TICK_S
        where a file system reports no writes); on PostgreSQL, every write that makes a job
        claimable (LISTEN), and every run's end in a queue with a limit (schema 11's state
        trigger: the place it frees). A short look while some queue had a limit, from before
        that trigger, made an idle PostgreSQL thread run ~10 transactions a second (QA)."""
        return ANNOUNCED_IDLE_WAIT_S

    def _idle(self, generation: int, timeout: float) -> None:
        with self._lock:
            self._waiting += 1
            self._someone_waits.set()  # the service thread watches the queue again
            try:
                self._changed.wait_for(
                    lambda: self._generation != generation or self._stopping.is_set(), timeout
                )
            finally:
                self._waiting -= 1

    def _run(self, slot: int, job: Job, name: str | None = None) -> Job | None:
        """Run ``job`` (just claimed by this thread) and store its result; returns the next job
        when it was claimed in the same transaction. The claim ran outside the lock, so a
        pause, stop or retirement can have come since: the job then goes back, uncounted,
        before it started ("no new job starts" holds exactly).

        The lock is taken three times a job: to look whether to run it and to enter it as
        running, to take it out and decide on claiming the next, and after the store."""
        execution = Execution(
            job.command,
            cwd=job.cwd,
            timeout=self._jobs.timeout_for(job),
            output_limit=self.output_limit,
            env=self._env,
            on_output=lambda output, printed: self._outputs.hand_over(job, output, printed),
        )
        seq = job.seq
        with self._lock:
            kept = not self._holds_off(slot)
            if kept:
                self._running[slot] = execution
                self._running_jobs[seq] = execution
        if not kept:
            self._give_back(job)
            return None
        if self._hard.is_set():
            execution.kill()
        self._emit("started", job, name)
        result = execution.run()
        ended_at = self._jobs.clock()  # the run's finished_at, however late its result is stored
        self._outputs.forget(seq)  # (its result carries its output)
        self._ended_at = time.monotonic()
        killed = execution.killed_by_stop
        with self._lock:
            self._running.pop(slot, None)
            self._running_jobs.pop(seq, None)
            claim_next = not killed and not self._holds_off(slot)
            claim_next = claim_next and not self._fenced()
            if claim_next:  # counted once for all the store's tries (see _give_back_strays)
                self._claims_under_way += 1
        worker_id: str = self.worker_id  # type: ignore[assignment]
        if killed:  # by a hard stop, or by _fence
            released = self._store(lambda: self._jobs.release(job, worker_id, result))
            self._let_go(job)
            if released:
                self._emit("released", job, name,
                           "stop" if self._hard.is_set() else self._fenced_why)  # fmt: skip
            else:
                log.warning("job %s: not given back: it is no longer this run's (it was rescued "
                            "while this worker was silent)", job.id)  # fmt: skip
            return None
        following: Job | None = None
        if claim_next:

            def store_and_claim() -> tuple[Job | None, Job | None]:
                # Fenced is asked at each try, not only as the run ended: a result stored as
                # the database came back from a long outage claimed the next job before this
                # pool's heartbeat landed, and the fence killed it at once (QA: its command
                # started twice). Its claim waits for the heartbeat, as a thread's claim does.
                # So is a stop: one asked for while the result waited to be stored (an outage)
                # claimed the next job as the database came back, then gave it back (QA).
                # On SQLite a stop may come while the statement waits for another process's
                # write lock: the claim is given up then, the result stored alone (QA).
                if self._fenced() or self._holds_off(slot):
                    return self._jobs.finish(job, result, worker_id, ended_at), None
                return self._jobs.finish_and_claim(job, result, worker_id, self.queues, ended_at,
                                                   abandon=lambda: self._holds_off(slot))  # fmt: skip

            try:
                stored, following = self._store(store_and_claim)
            except BaseException:
                with self._lock:
                    self._claims_under_way -= 1
                raise
            with self._lock:
                self._claims_under_way -= 1
                self._held.discard(seq)
                if following is not None:
                    self._held.add(following.seq)
        else:
            stored = self._store(lambda: self._jobs.finish(job, result, worker_id, ended_at))
            self._let_go(job)
        if len(result.output) >= LARGE_OUTPUT:
            self._let_go_of_pages()
        if stored:
            self._emit(stored.state, stored, name)
        else:
            log.warning(
                "job %s: its result is not stored: the job is no longer this run's (it was "
                "rescued while this worker was silent, or the result was stored as the "
                "connection broke)", job.id,
            )
        return following

    def _store_output(self, job: Job, output: str, printed: int) -> None:
        """A running job's output so far, stored at most once a second (see Execution), on the
        output writer's thread (see queuectl.outputs): seen by `logs`, `show` and the TUI of
        every process. Skipped while the database is away (the run's result carries its
        output)."""
        if self.outage.down:
            return
        try:
            stored = self._jobs.store_output(job, self.worker_id, output, printed)  # type: ignore[arg-type]
            if stored and not self._jobs.is_sqlite:  # `logs -f` and the TUI wake on it, pools not
                self._jobs.db.execute_sql("SELECT pg_notify(%s, %s)",
                                          (self._jobs.channel, OUTPUT_PAYLOAD))  # fmt: skip
            if len(output) >= LARGE_OUTPUT:
                self._let_go_of_pages()
        except peewee.PeeweeException as exc:  # (not tried again: the result carries it)
            self._database_failed(self._jobs, exc, waits=False)

    def _let_go_of_pages(self) -> None:
        """After a large output's store, on the thread that stored it: the pages it wrote
        dropped from the connection's cache, and their memory given back (see LARGE_OUTPUT)."""
        with contextlib.suppress(peewee.PeeweeException):  # a cache kept costs only memory
            self._jobs.drop_page_cache()
        give_back_freed()

    def _stop_cancelled(self, quiet: bool = False) -> None:
        """Stop the runs of this pool's jobs that a user cancelled (from any process), and the
        runs whose job is no longer this worker's: rescued while this worker was silent (the
        database away past the lease), then cancelled, retried or run again elsewhere. Their
        results would be refused; left running, they ran on beside the job's next run, or
        after the job was cancelled. ``quiet``: a failure only replaces a broken connection,
        and the next heartbeat reports an outage (a change is also what a connection broken by
        an outage looks like)."""
        with self._lock:
            if not self._running_jobs:
                return
            # Taken before the read: each of these runs' claims is committed, so the read sees it.
            running = dict(self._running_jobs)
        try:
            held = self.queue.runs_of(self.worker_id)  # type: ignore[arg-type]
            requested = [seq for seq in running if held.get(seq, True)]
        except peewee.PeeweeException:
            if not quiet:
                raise
            try:
                self.queue.recover()
            except Exception:  # tried again on the next failure
                pass
            return
        for seq in requested:
            with self._lock:
                execution = self._running_jobs.get(seq)
            if execution is running[seq] and not execution.cancelled:
                if seq not in held:
                    log.warning("a job this worker ran was rescued while it was silent: stopped")
                execution.cancel()

    def _apply_retention(self) -> float:
        """Config `retention`: delete old finished jobs; seconds until the next time. On
        PostgreSQL, also a count, which folds the counters' rows once they are many (the rarer
        changes of state add rows, schema.COUNTER_CHANGES): a queue nobody looks at (no
        `status`, no TUI, no scrape) kept every one of them."""
        try:
            deleted, more = self.queue.purge_expired()
            if not self.queue.is_sqlite:
                self.queue.counts()
        except peewee.PeeweeException as exc:
            self._database_failed(self.queue, exc)
            return RETENTION_EVERY_S
        if deleted:
            log.info("retention: deleted %d finished job(s)", deleted)
        return HEARTBEAT_INTERVAL_S if more else RETENTION_EVERY_S

    def _fail_unexpectedly(self, slot: int, job: Job, exc: Exception) -> None:
        """Store a failed run for ``job``: left 'processing' under this live worker, it would
        never be rescued."""
        with self._lock:
            self._running.pop(slot, None)
            self._running_jobs.pop(job.seq, None)
        result = RunResult(None, f"worker error: {type(exc).__name__}: {exc}", "")
        worker_id: str = self.worker_id  # type: ignore[assignment]
        try:
            stored = self._store(lambda: self._jobs.finish(job, result, worker_id))
        except ResultNotStored:
            self._gave_up(job)
            return
        except Exception:
            log.exception("storing the failure of job %s failed", job.id)
            return
        finally:
            self._let_go(job)
        if isinstance(stored, Job):
            self._emit(stored.state, stored)

    def _store(self, write: Callable[[], T]) -> T:
        """Write a result, retrying through database trouble (on a new connection when the old
        one broke): a finished job is never dropped while this process lives, and if it dies the
        job is rescued as "worker lost". Once a stop is asked for, it gives up at the stop
        timeout (ResultNotStored), so an unreachable database cannot hold a stop forever."""
        backoff = Backoff()
        tries = 0
        failing_since = None
        while True:
            tries += 1
            began = time.monotonic()
            try:
                stored = write()
            except peewee.PeeweeException as exc:
                if tries == 1 and self._stale_connection_replaced():
                    continue
                # From the first failed write's start: it may have waited long for its answer
                # (a lock held by another process, a server that said nothing).
                failing_since = began if failing_since is None else failing_since
                self._database_failed(self._jobs, exc)
                if self.problem is not None:  # the file is damaged: no try will do
                    raise ResultNotStored() from exc
                # Not at the first failure: it may be this thread's connection, broken by an
                # outage that has ended since (the next try is on a new one).
                if tries > 1 and self.waited_out(failing_since=failing_since):
                    raise ResultNotStored() from exc
                time.sleep(backoff.next())
            else:
                self.outage.ok()
                return stored

    def _stale_connection_replaced(self) -> bool:
        """PostgreSQL, after a thread's first failed try at a store, while the database is up:
        whether its connection was broken and is replaced (the next try is on a new one, at
        once, and the failure is not said). A thread whose connection sat idle through an
        outage that is over learns of it only now: the log said a second outage, "reachable
        again after 0.1s", though the database had answered all along (QA). Its reply may
        have been lost with the connection: a claim made with the store is looked for (see
        _give_back_strays)."""
        if self._jobs.is_sqlite or self.outage.down:
            return False
        try:
            replaced = self._jobs.recover()
        except Exception:
            return False
        if replaced:
            self._strays_pending = True
        return replaced

    def unstored_said(self, count: int | None = None) -> str | None:
        """Once stopped: the results given up on, in words (None: none), for the last line a
        process prints as it ends (`worker start`, the TUI) with exit code 1. ``count``: that
        many, where the threads have not given them up yet (`worker start` leaving at the stop
        timeout)."""
        count = len(self.unstored) if count is None else count
        if not count:
            return None
        why = "see above" if self.problem else (
            "the database could not be written" if self.outage.unwritable
            else "the database was unreachable"
        )  # fmt: skip
        return (f"stopped with {count} result(s) not stored ({why}); their jobs are rescued as "
                "\"worker lost\"")  # fmt: skip

    def _gave_up(self, job: Job) -> None:
        self.unstored.append(job.id)
        if self.problem is not None:
            log.error("job %s: result not stored (the workers stopped: see above); the job will "
                      "be rescued as \"worker lost\"", job.id)  # fmt: skip
            return
        log.error(
            "job %s: result not stored: the database still %s %.0fs after the stop; the job "
            "will be rescued as \"worker lost\"", job.id,
            "cannot be written" if self.outage.unwritable else "is unreachable", self.stop_timeout,
        )

    def _database_failed(self, queue: Queue, exc: Exception, waits: bool = True) -> None:
        """A use of the database failed: replace the connection if it broke, log once. A
        damaged SQLite file stops the pool, said once: no wait mends it. ``waits``: see
        :meth:`Outage.failed`."""
        try:
            queue.recover()
        except Exception:  # replacing it is tried again on the next failure
            log.debug("closing a broken connection failed", exc_info=True)
        if queue.is_sqlite and damaged(exc):
            self._stop_for(
                f"the database file {queue.target.location} is damaged ({first_line(exc)}); "
                "the workers stop (README: 'A damaged database file'). The jobs they ran are "
                "rescued as \"worker lost\" by the next worker on a usable file"
            )
            return
        newer = _upgraded_past_this(queue, exc)
        if newer is not None:
            self._stop_for(
                f"the database was upgraded by a newer queuectl (schema {newer}, this one knows "
                f"{SCHEMA_VERSION}): {first_line(exc)}; the workers stop. Start them with the "
                "newer queuectl"
            )
            return
        self.outage.failed(exc, waits=waits)
        if not queue.is_sqlite:
            self._strays_pending = True  # looked for once the database answers again

    def _stop_for(self, problem: str) -> None:
        """Stop the pool for good, saying ``problem`` once (no wait mends it)."""
        with self._lock:
            said, self.problem = self.problem, self.problem or problem
        if said is None:
            log.error("%s", self.problem)
            self.stop()

    def _claiming(self, claim: Callable[[], T]) -> T:
        """Run ``claim`` (a claim, or a finish that claims the next job), holding the job it
        returns (see _held)."""
        with self._lock:
            self._claims_under_way += 1
        try:
            result = claim()
        finally:
            with self._lock:
                self._claims_under_way -= 1
        following = result[1] if isinstance(result, tuple) else result
        if following is not None:
            with self._lock:
                self._held.add(following.seq)  # type: ignore[union-attr]
        return result

    def _let_go(self, job: Job) -> None:
        with self._lock:
            self._held.discard(job.seq)

    def _give_back_strays(self) -> None:
        """After an outage (PostgreSQL): give back the jobs that the database says this worker
        runs but that no thread holds. A claim whose COMMIT reached the server but whose reply
        was lost with the connection took such a job; nothing else would ever free it, since
        this worker is alive. Done under the lock while no claim is under way, so a job just
        claimed is never taken for a stray."""
        with self._lock:
            if self._claims_under_way:
                self._strays_pending = True
                return
            self._strays_pending = False
            count = self.queue.give_back_strays(self.worker_id, self._held)  # type: ignore[arg-type]
        if count:
            log.warning("gave back %d job(s) claimed as the connection broke", count)

    def _serve(self) -> None:
        """Heartbeat, rescue, stop requests, change detection and burst's end."""
        try:
            changes = self.queue.change_detector()
            if isinstance(changes, PostgresNotifications):
                changes.ignored = frozenset({OUTPUT_PAYLOAD})
            changes.prime()
        finally:
            self._watching.set()  # the threads may claim: a change from now on is seen
        next_beat = next_drain_check = next_retention = next_cancel_check = time.monotonic()
        next_hooks = time.monotonic()
        surprise = ""  # the last unexpected failure said (see below)
        try:
            while not self._service_done.is_set():
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT_INTERVAL_S
                    if not self._beat():  # tried again soon: the fence (see fence_after)
                        next_beat = time.monotonic() + OUTAGE_BEAT_S  # counts from the last
                    changes.wrote()  # its own commit: no change to wake for
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self._apply_retention()
                still = self._still()
                # Up to the next thing to do: a schedule fires on time, not up to a tick late.
                # A still pool's rounds are longer: changes wake it all the same (SQLite: the
                # kernel's file events; PostgreSQL: notifications), and each round costs CPU.
                # A stopping pool fires no schedule: one due, its rounds took no time at all
                # (the thread spun while the last hooks ran, and they were taken for lost).
                schedules = float("inf") if self.stopping else self._schedules.due_in(
                    self.queue.clock())  # fmt: skip
                tick = min(QUIET_TICK_S if still else SERVICE_TICK_S,
                           max(next_beat - time.monotonic(), 0.0), schedules)  # fmt: skip
                try:
                    if self._all_busy():
                        # Nobody to wake: watching would cost a wake-up every few ms, taken from
                        # a busy pool's throughput. An idle thread resumes it at once. Unwatched,
                        # a schedule may have changed: the timer reads it again (at most once a second).
                        self._someone_waits.wait(tick)
                        self._schedules.unwatched()
                    elif changes.wait(tick):
                        self.wake()
                        if self._hooks is not None:  # a delivery may be due: a look soon
                            next_hooks = min(next_hooks, self._hooks.next_look)
                        self._schedules.changed()
                        # A cancel is a change too: looked for sooner than the next heartbeat,
                        # though not on every change of a busy queue.
                        if time.monotonic() >= next_cancel_check:
                            next_cancel_check = time.monotonic() + SERVICE_TICK_S * 3
                            self._stop_cancelled(quiet=True)
                    # Once a tick, not on every change: while jobs run the queue changes every
                    # few ms, and this query was much of the service thread's CPU.
                    if self._hooks is not None and (not still or time.monotonic() >= next_hooks):
                        looked_for = self._hooks.next_look
                        self._hooks.poll()  # (on its own threads: never a worker's)
                        if self._hooks.next_look == looked_for and looked_for > time.monotonic():
                            # Not looked: the last look was too recent. A change seen meanwhile
                            # (a job cancelled, a hook due) is looked for then, not a quiet
                            # round later: a pool gone still just then ran it 5 s late.
                            next_hooks = looked_for
                        else:
                            next_hooks = time.monotonic() + QUIET_HOOKS_S
                    if self.burst and not self.stopping and time.monotonic() >= next_drain_check:
                        began = time.monotonic()
                        if self.queue.drained(self.queues):
                            self.stop()
                        # Its read walks up from a queue's waiting jobs (`--queue`): 100,000 of
                        # them took 50 ms. A tenth of the thread's time at most, however many.
                        took = time.monotonic() - began
                        next_drain_check = time.monotonic() + max(SERVICE_TICK_S, 9 * took)
                    if not self.stopping:  # schedules that are due (SPEC 7): a time comparison
                        for job in self._schedules.tick(self.queue):
                            self._emit("scheduled", job)
                except peewee.PeeweeException as exc:
                    self._database_failed(self.queue, exc)
                    self._service_done.wait(MAX_RETRY_S)
                except Exception as exc:
                    # A surprise must not end this thread: without it the pool would run on
                    # unseen (no heartbeat: taken for dead, its jobs rescued from it) and deaf
                    # (no stop request, cancel or schedule). Said once, not every round (again
                    # if it comes back after a round that went through).
                    said = f"{type(exc).__name__}: {exc}"
                    if said != surprise:
                        log.error("the worker's service round failed (%s); it goes on", said,
                                  exc_info=True)  # fmt: skip
                        surprise = said
                    self._service_done.wait(MAX_RETRY_S)
                else:
                    surprise = ""
        finally:
            changes.close()
            self.queue.close()

    def _still(self) -> bool:
        """Whether the pool is still (no run for QUIET_AFTER_S, no hook running): the service
        thread then waits for changes QUIET_TICK_S at a time, looks for hook deliveries after
        a change and otherwise every QUIET_HOOKS_S, and reads schedules less often (SQLite:
        the kernel's file events wake it; PostgreSQL: it sleeps on the LISTEN connection
        between heartbeats). A running pool is never still, nor a `--burst` one (it checks
        whether the queue is drained)."""
        if self.burst:
            return False
        with self._lock:
            if self._running:
                return False
        if self._hooks is not None and self._hooks.running:
            return False
        return time.monotonic() >= self._ended_at + QUIET_AFTER_S

    def _all_busy(self) -> bool:
        """Whether no worker thread waits for work (then the next one to wait sets
        _someone_waits). Changes missed meanwhile still wake it: the watch reports them."""
        with self._lock:
            if self._waiting:
                return False
            self._someone_waits.clear()
            return True

    def _beat(self) -> bool:
        """The heartbeat, and what follows it; whether it landed."""
        began = time.monotonic()
        if self.queue.is_sqlite and self.problem is None and file_replaced(self.queue.db):
            self.problem = (
                f"the database file {self.queue.target.location} was deleted or replaced; "
                "the workers stop, as they could only run the jobs of the file they opened, "
                "which no other process sees"
            )
            log.error("%s", self.problem)
            self.stop()
            if self.busy:  # (a graceful stop: their commands may be half way through)
                log.warning("waiting for %d running job(s) to end; their results go to the file "
                            "that was opened", self.busy)  # fmt: skip
            return True
        try:
            if self.queue.is_sqlite:
                stop, rescue = self.queue.heartbeat(self.worker_id, self._target), True  # type: ignore[arg-type]
            else:  # one statement: the heartbeat and the look for lost workers
                stop, rescue = self.queue.beat(self.worker_id, self._target)  # type: ignore[arg-type]
            self._beat_began = began
            if stop:
                self.stop_asked = True
                self.stop()
            # Silent itself for half a lease or more (the database was away, or its lock held, or
            # this process stopped): the other workers most likely were too, and their
            # heartbeats are as old as ours. They get one lease from now to beat again before
            # their jobs are taken for lost: else the first worker back rescues the jobs the
            # others still run, and those run twice at once (past a queue's limit, too). At a
            # lease of two heartbeats, half a heartbeat past the usual interval: not the whole
            # lease, as ours is measured from our last heartbeat's end, after the others' reads.
            # A pool's first heartbeat gives them STARTUP_GRACE_S: a worker started as the
            # database came back (by hand, or by a supervisor) took the jobs that the others
            # had run through the outage for lost, and threw their results away. Workers dead
            # on this host, and jobs of no worker, are rescued at once all the same: nothing is
            # in doubt there.
            beat = time.monotonic()
            silent = max(1.5 * HEARTBEAT_INTERVAL_S, self.queue.lease / 2)
            if self._last_beat is None:
                self._rescue_from = beat + STARTUP_GRACE_S
            elif beat - self._last_beat > silent:
                self._rescue_from = beat + self.queue.lease
            self._last_beat = beat
            self._stop_cancelled()
            self.outage.ok()
            if self._strays_pending:
                self._give_back_strays()
            if rescue:
                for job in self.queue.rescue_lost(silent=beat >= self._rescue_from):
                    self._emit("rescued", job)
        except peewee.PeeweeException as exc:
            self._database_failed(self.queue, exc)
            return self._beat_began >= began
        return True

    def _fenced(self) -> bool:
        """PostgreSQL: whether this pool has been silent so long that other hosts may soon take
        its jobs for lost (see fence_after): it claims nothing until a heartbeat lands."""
        return (not self.queue.is_sqlite
                and time.monotonic() - self._beat_began >= self._fence_after)  # fmt: skip

    def _fence(self) -> None:
        """PostgreSQL, on a thread of its own (the service thread may wait on a connection that
        gets no answer): kill the running jobs once the pool has been silent for
        :func:`fence_after` the lease, before other hosts may take them for lost."""
        after = self._fence_after
        killed: set[Execution] = set()
        ticked = time.monotonic()
        excused = None  # the heartbeat (its start) whose silence a suspension explained
        while not self._service_done.wait(FENCE_TICK_S):
            now = time.monotonic()
            stood_still, ticked = now - ticked, now
            silent = now - self._beat_began
            if stood_still >= after:
                # Silent that long whatever the heartbeat says: the service thread may have
                # begun one as the process resumed, before this thread ran (the suite, under
                # load: a suspension past the fence's point went unsaid, its run not stopped).
                silent = max(silent, stood_still)
            if silent < after:
                killed.clear()
                continue
            # A statement waits for an answer that does not come; unless the database has
            # answered since the last heartbeat began (the outage is over, and the next beat
            # not yet in: QA, "unreachable (no answer for 92s)" logged after the return).
            # Unless this process itself stood still that long (SIGSTOP, a paused machine: its
            # threads, this one too, ran not at all): QA, "database unreachable" of a database
            # that answered all along.
            if stood_still >= after / 2:
                excused = self._beat_began
                log.warning("this worker process did not run for %.0fs (suspended?): no "
                            "heartbeat for %.0fs", stood_still, silent)  # fmt: skip
            elif (excused != self._beat_began and not self.outage.down
                  and self.outage.back_at < self._beat_began):  # fmt: skip
                self.outage.failed(TimeoutError(no_answer(silent)),
                                   since=self._beat_began)  # fmt: skip
            suspended = excused == self._beat_began
            self._fenced_why = "suspended" if suspended else "outage"
            with self._lock:
                running = [e for e in self._running_jobs.values() if e not in killed]
            for execution in running:
                execution.kill()
                killed.add(execution)
            if running:
                back = "" if suspended else (
                    " once the database is back (a stop waits --stop-timeout for it, then "
                    "leaves them to be rescued as \"worker lost\")"
                )  # fmt: skip (QA: said beside a stop's "rescued as worker lost")
                log.warning(
                    "no heartbeat for %.0fs: killed %d running job(s) before the lease (%gs) lets "
                    "other workers take them for lost; each goes back to pending%s", silent,
                    len(running), self.queue.lease, back,
                )

    def _beat_while_closing(self) -> None:
        """The heartbeat while the last hooks run (no thread claims: 0 threads); landed, it
        tells unanswered_past_the_stop that the database answers (a hook running past the
        stop timeout runs to its end)."""
        self.queue.heartbeat(self.worker_id, 0)  # type: ignore[arg-type]
        self._last_beat = time.monotonic()

    def _shutdown(self) -> None:
        """The pool's last steps, on a thread of its own (see :meth:`join`), so on a connection
        of its own: the caller's may be from before an outage, unused since and cut in it
        (PostgreSQL: "unregistering failed", the worker read as live for a lease, its last
        hooks left to another worker)."""
        if self._service_done.is_set():
            return
        self._service_done.set()
        deadline = time.monotonic() + self.stop_timeout  # for the database, if it is away
        if self.outage.down and self.waited_out():
            # The stop has waited its timeout for the database already (its threads gave up
            # their results): not a second one for these last steps (QA: a TUI's quit in an
            # outage took 60 s, where `worker start`'s main loop left at 30).
            deadline = time.monotonic()
        if self._service is not None:
            # Its statement may wait for an answer that never comes (a network that drops it
            # without a word): not past the stop timeout, but for the round it is in (a stop
            # timeout of 0 said "database unreachable (no answer)" at every stop, QA).
            self._service.join(max(self.stop_timeout, MAX_RETRY_S)
                               if deadline > time.monotonic() else MAX_RETRY_S)
            if self._service.is_alive():  # (SQLite's statements wait only for a lock: QA)
                stuck = HELD if self.queue.is_sqlite else "no answer"
                self.outage.failed(TimeoutError(stuck), since=self._beat_began)
        self.queue.remove_listener(self.wake)
        self._outputs.stop()
        self._outputs.join(min(max(deadline - time.monotonic(), 0), 5.0))  # (one may wait)
        if self._jobs is not self.queue:
            self._jobs.close()
        if self.problem is not None:  # its file is gone: nothing left to write to
            if self._hooks is not None:
                self._hooks.abandon()
            self.queue.close()
            return
        try:
            if self._hooks is not None:  # (rides out an outage up to the stop timeout's end)
                self._hooks.close(max(deadline - time.monotonic(), 0), self.outage,
                                  take=self.hooks_at_stop, beat=self._beat_while_closing)
        except peewee.PeeweeException as exc:
            self._database_failed(self.queue, exc)  # (a damaged file: said as one, QA)
            if self.problem is None:
                log.warning("delivering hooks failed (%s)", in_words(exc))
        backoff = Backoff()
        try:
            while self.problem is None:  # else read as live for a lease, by other hosts' workers
                try:
                    self.queue.unregister_worker(self.worker_id)  # type: ignore[arg-type]
                    self.outage.ok()  # (its log says so if this write ends an outage)
                    break
                except peewee.PeeweeException as exc:
                    self._database_failed(self.queue, exc)
                    if self.problem is not None:
                        break  # a damaged file: no wait mends it
                    if time.monotonic() >= deadline or self._hard.is_set():
                        log.warning("unregistering failed (%s)", in_words(exc))
                        self.left_registered = True
                        break
                    self._hard.wait(min(backoff.next(), max(deadline - time.monotonic(), 0)))
        finally:
            self.queue.close()  # this thread's connection


# What a statement of this queuectl fails with where a newer one changed the schema under it (a
# table or column renamed or dropped; PostgreSQL: a prepared statement's result type changed).
_SCHEMA_CHANGED = ("no such table", "no such column", "does not exist", "cached plan must not")


def _upgraded_past_this(queue: Queue, exc: Exception) -> int | None:
    """The database's schema version where ``exc`` comes of a newer queuectl having upgraded it
    under this process (None otherwise). QA: an older worker on a file upgraded under it
    claimed on, but its schedules failed at every round ("no such table"), said as an outage
    that was over a second later, and never fired again."""
    if not any(words in str(exc) for words in _SCHEMA_CHANGED):
        return None
    try:
        version = read_version(queue.db)
    except Exception:  # (the database is away too: an outage, said as one)
        return None
    return version if version is not None and version > SCHEMA_VERSION else None
