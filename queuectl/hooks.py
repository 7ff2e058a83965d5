"""Notification hooks (SPEC 8): config ``on-completed``, ``on-failed``, ``on-dead``,
``on-cancelled``.

A change to one of those states writes a delivery row (``hook_delivery``) in the statement that
makes the change, when the state's hook is set (the trigger of schema 8: whoever changed the
job, in whatever process). Worker processes (and TUI pools) deliver them: the pool's service
thread takes at most :data:`HOOK_THREADS` at a time, atomically, under its worker id
(:meth:`Hooks.take_deliveries`), runs each through ``/bin/sh -c`` on a small thread pool of its
own (:class:`HookRunner`), and deletes the row once the hook has run. A delivery taken by a
worker process that is gone (the registry's notion: removed by a rescue) is taken again by
another, and one whose take's answer was lost is taken again by its own worker; so a hook runs
once per change, or again only if the process running it died first.

Hooks slower than jobs: the deliveries wait in the database, not in memory, and each process
runs at most :data:`HOOK_THREADS` at once; the worker threads never wait for a hook (they do not
run them, and the delivery rows are written by the job's own statement).

The job's text reaches the hook only through environment variables (``QUEUECTL_JOB_*``), never
through the hook's shell text. A failed hook is logged (one line) and not retried.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from .core import HEARTBEAT_INTERVAL_S
from .models import HookDelivery
from .procs import WORKER_ENV
from .reading import Reading

if TYPE_CHECKING:  # the pool and the executor only where a worker runs hooks
    from concurrent.futures import Future, ThreadPoolExecutor

    from .executor import Execution

log = logging.getLogger(__name__)

HOOK_THREADS = 4  # hooks one process runs at once (and deliveries it holds)
HOOK_TIMEOUT_S = 30.0
HOOK_OUTPUT_LIMIT = 4096  # a hook's output is read (its last line goes in the log), not kept
HOOK_POLL_S = 0.5  # how often an idle service thread looks for deliveries


# Linux's bound on one string of a new program's environment, "NAME=value" and its NUL
# (MAX_ARG_STRLEN, 32 pages of 4 KiB): a longer one fails the exec with E2BIG.
ENV_STRING_MAX = 32 * 4096
CUT = " [cut]"  # ends a value cut to fit


def hook_environment(delivery: HookDelivery) -> dict[str, str]:
    """What a hook gets to know about the change, on top of the worker's environment. A value
    too long for one variable (a command of over 128 KiB: it ran, started directly, as words
    each shorter) is cut to fit, and ends with CUT: whole, it failed the hook's start, and the
    change was never notified (QA)."""

    def text(value: object) -> str:
        return "" if value is None else str(value)

    values = {
        "QUEUECTL_JOB_ID": delivery.job_id,
        "QUEUECTL_JOB_STATE": delivery.state,
        "QUEUECTL_JOB_QUEUE": delivery.queue,
        "QUEUECTL_JOB_COMMAND": delivery.command,
        "QUEUECTL_JOB_ATTEMPTS": text(delivery.attempts),
        "QUEUECTL_EXIT_CODE": text(delivery.exit_code),
        "QUEUECTL_ERROR": text(delivery.error),
    }
    return {name: _fitted(name, value) for name, value in values.items()}


def _fitted(name: str, value: str) -> str:
    room = ENV_STRING_MAX - len(name) - 2  # "=" and the NUL
    if len(value) * 4 <= room:  # (no character is more than 4 bytes)
        return value
    encoded = os.fsencode(value)
    if len(encoded) <= room:
        return value
    end = room - len(CUT)
    while end > 0 and encoded[end] & 0xC0 == 0x80:  # not inside a character's bytes
        end -= 1
    return os.fsdecode(encoded[:end]) + CUT


class Hooks(Reading):
    def take_deliveries(
        self, worker_id: str, limit: int, held: Collection[int] = ()
    ) -> list[HookDelivery]:
        """Up to ``limit`` deliveries for ``worker_id`` to run, oldest first: free ones, those
        of worker processes that are gone, and its own but ``held`` (the ones it runs or ran):
        a take whose answer the connection lost (PostgreSQL cut off at the commit) left them
        under this live worker, run by nobody until it stopped. Atomic: one UPDATE ...
        RETURNING, so two processes never take the same one."""
        HookDelivery = self.models.HookDelivery
        param = self.db.param
        held = sorted(held)
        mine = f'"taken_by" = {param}'
        if held:
            mine += f' AND "id" NOT IN ({", ".join([param] * len(held))})'
        gone = '"taken_by" NOT IN (SELECT "id" FROM "worker")'
        free = f'("taken_by" IS NULL OR ({mine}) OR {gone})'
        if (
            limit <= 0
            or not self.db.execute_sql(
                f'SELECT 1 FROM "hook_delivery" WHERE {free} LIMIT 1', (worker_id, *held)
            ).fetchone()
        ):
            return []  # the usual case: read only, no write lock taken
        skip_locked = "" if self.is_sqlite else " FOR UPDATE SKIP LOCKED"
        columns = ", ".join(f'"{f.column_name}"' for f in HookDelivery._meta.sorted_fields)
        with self._write():
            rows = self.db.execute_sql(
                f'UPDATE "hook_delivery" SET "taken_by" = {param} WHERE "id" IN '
                f'(SELECT "id" FROM "hook_delivery" WHERE {free} ORDER BY "id" '
                f"LIMIT {param}{skip_locked}) RETURNING {columns}",
                (worker_id, worker_id, *held, limit),
            ).fetchall()
        names = [f.name for f in HookDelivery._meta.sorted_fields]
        taken = []
        for row in rows:
            delivery = HookDelivery(__no_default__=1)
            delivery.__data__.update(zip(names, row))
            taken.append(delivery)
        return sorted(taken, key=lambda d: d.id)

    def deliveries_done(self, worker_id: str, ids: list[int]) -> None:
        """The hooks of deliveries ``ids`` have run: they are deleted."""
        if ids:
            HookDelivery = self.models.HookDelivery
            with self._write():
                HookDelivery.delete().where(
                    HookDelivery.id.in_(ids), HookDelivery.taken_by == worker_id
                ).execute()

    def give_back_deliveries(self, worker_id: str, ids: list[int]) -> None:
        """Deliveries ``worker_id`` took but will not run: free for any process again."""
        if ids:
            HookDelivery = self.models.HookDelivery
            with self._write():
                HookDelivery.update(taken_by=None).where(
                    HookDelivery.id.in_(ids), HookDelivery.taken_by == worker_id
                ).execute()

    def deliveries(self) -> list[HookDelivery]:
        """Every delivery not yet done, oldest first."""
        HookDelivery = self.models.HookDelivery
        return list(HookDelivery.select().order_by(HookDelivery.id))


class HookRunner:
    """The hooks of one worker process: driven by its service thread (:meth:`poll`), run on
    at most ``threads`` threads of their own."""

    def __init__(
        self,
        queue: Hooks,
        worker_id: str,
        *,
        threads: int = HOOK_THREADS,
        timeout: float = HOOK_TIMEOUT_S,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.threads = threads
        self.timeout = timeout
        self._base_env = dict(os.environ if environment is None else environment)
        self._base_env[WORKER_ENV] = worker_id  # so a dead worker's leftovers include its hooks
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running: dict[int, Future[Any]] = {}
        self._executions: dict[int, Execution] = {}
        self._done: list[int] = []
        self._next_look = 0.0
        self._closing = False
        self._killed = threading.Event()  # a hard stop: close waits for no hook

    def poll(self, *, now: float | None = None) -> int:
        """Delete the deliveries whose hooks ended, and take new ones for the free threads (at
        most every HOOK_POLL_S while none are found); how many were taken."""
        now = time.monotonic() if now is None else now
        with self._lock:
            done, self._done = self._done, []
            free = self.threads - len(self._running)
        if done:
            try:
                self.queue.deliveries_done(self.worker_id, done)
            except Exception:
                with self._lock:
                    self._done.extend(done)  # deleted at the next poll
                raise
        if free <= 0 or now < self._next_look:
            return 0
        with self._lock:
            held = {*self._running, *self._done}
        taken = self.queue.take_deliveries(self.worker_id, free, held)
        self._next_look = now if taken else now + HOOK_POLL_S
        for delivery in taken:
            self._start(delivery)
        return len(taken)

    @property
    def next_look(self) -> float:
        """When (time.monotonic()) :meth:`poll` next looks for deliveries."""
        return self._next_look

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def _start(self, delivery: HookDelivery) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="queuectl-hook")
        with self._lock:
            self._running[delivery.id] = self._pool.submit(self._run, delivery)

    def _run(self, delivery: HookDelivery) -> None:
        from .executor import Execution

        execution = None
        try:
            env = {**self._base_env, **hook_environment(delivery)}
            execution = Execution(
                delivery.hook, timeout=self.timeout, output_limit=HOOK_OUTPUT_LIMIT, env=env
            )
            with self._lock:
                self._executions[delivery.id] = execution
            result = execution.run()
            if (self._closing or self._killed.is_set()) and execution.killed_by_stop:
                log.warning(
                    "hook on-%s for job %s stopped with the worker: another worker will run it",
                    delivery.state, delivery.job_id,
                )  # fmt: skip
            elif not result.ok:
                last = result.output.strip().splitlines()[-1:] if result.output else []
                log.warning(
                    "hook on-%s for job %s failed: %s%s", delivery.state, delivery.job_id,
                    result.error, f" ({last[0][:200]})" if last else "",
                )  # fmt: skip
        except Exception:  # a hook must never take the pool down
            log.exception("hook on-%s for job %s failed", delivery.state, delivery.job_id)
        finally:
            with self._lock:
                self._running.pop(delivery.id, None)
                self._executions.pop(delivery.id, None)
                if execution is None or not execution.killed_by_stop:
                    self._done.append(delivery.id)  # (a hook killed by a stop is left taken)

    def kill(self) -> None:
        """A hard stop (the worker's second SIGINT): the hooks running are killed, their
        deliveries left for another process once this one is gone (as at :meth:`close`'s
        deadline), and :meth:`close` waits for none."""
        self._killed.set()
        with self._lock:
            running = list(self._executions.values())
        for execution in running:
            execution.kill()

    def abandon(self) -> None:
        """The database is gone (its file deleted): the hooks running end (each within its own
        limit), none is taken, nothing is deleted. Killed, they were said to be left to another
        worker, which no worker could be: their deliveries were in the file that went (QA)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(
        self,
        timeout: float,
        outage: Any = None,
        *,
        take: bool | float = True,
        beat: Callable[[], object] | None = None,
    ) -> None:
        """At the pool's end: run the deliveries still waiting (``take``: those taken within
        ``timeout`` seconds, so a `--burst` run's last changes are delivered), wait for the
        hooks running to end, and delete what ran. A running hook is not cut short by a stop:
        killed, it would run again in another process, twice for one change, where SPEC 8 runs
        it again only if its worker died; its own timeout (30 s) bounds the wait. Only
        :meth:`kill` (a hard stop) kills them, and leaves their deliveries to another process.
        ``outage`` (the pool's reconnect.Outage) is told of each failed look and of the next
        one that works: a stop in an outage said nothing while it waited here. ``beat`` (the
        worker's heartbeat) is called every HEARTBEAT_INTERVAL_S meanwhile: silent past its
        lease, the worker was taken for lost, and its hooks' deliveries were taken again (by
        itself too) and their processes killed by a rescuer on its host (QA: a 25 s hook ran
        six times)."""
        import peewee

        from .reconnect import Backoff, damaged

        deadline = time.monotonic() + timeout
        # (``take`` a number of seconds: only those taken within it, and within ``timeout``)
        take_until = deadline if take is True else time.monotonic() + min(float(take), timeout)
        backoff = Backoff()
        # At once: the pool's last heartbeat may be an interval old already, and one more
        # before the next reached a short lease's end (a stop 0.56 s after it: 1.47 s of 1.5).
        next_beat = time.monotonic()

        def database_failed() -> None:
            """A look failed (the database is away): the hooks running go on; look again soon,
            on a new connection if the old one broke (until the deadline, if none runs)."""
            try:
                self.queue.recover()
            except Exception:  # tried again on the next failure
                pass
            wait = backoff.next()
            if time.monotonic() < deadline:
                wait = min(wait, deadline - time.monotonic())
            self._killed.wait(max(wait, 0.0))

        try:
            while not self._killed.is_set():
                taking = bool(take) and time.monotonic() < take_until
                try:
                    # Look now (whatever the last look found) while taking; else only delete
                    # what ended.
                    taken = self.poll(now=float("inf") if taking else float("-inf"))
                    if beat is not None and time.monotonic() >= next_beat:
                        beat()
                        next_beat = time.monotonic() + HEARTBEAT_INTERVAL_S
                except peewee.PeeweeException as exc:
                    if damaged(exc):
                        raise  # no wait mends it: the pool says so, not as an outage (QA)
                    if outage is not None:
                        outage.failed(exc)
                    if time.monotonic() >= deadline and not self.running:
                        raise
                    database_failed()
                    continue
                if outage is not None:
                    outage.ok(wrote=bool(taken))
                backoff.reset()
                if not taken and not self.running:
                    break
                self._killed.wait(0.02)
            while True:
                try:
                    self.poll(now=float("-inf"))  # deletes what ended last; takes nothing
                    break
                except peewee.PeeweeException as exc:
                    if damaged(exc) or time.monotonic() >= deadline or self._killed.is_set():
                        raise
                    database_failed()
        finally:
            with self._lock:
                self._closing = True
                late = list(self._executions.values())  # (only after a hard stop, or a failure)
            for execution in late:
                execution.kill()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
