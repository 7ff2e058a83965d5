"""Workers: ``worker start`` (a pool in the foreground) and ``worker stop`` (from anywhere)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

import click

from ..limits import MAX_THREADS, STOP_TIMEOUT_S
from ..procs import process_started_at
from ..states import State
from ..text import escaped_line, relative_time, rounded_duration, utc_time
from . import STARTED_AT
from .common import FiniteNumber, Settings, WholeNumber, pass_settings, queues_option
from .common import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..models import Job
    from ..worker import JobEvent, WorkerPool

# SIGHUP: the terminal the worker runs in went away (its window closed). Left to its default, it
# killed the worker with jobs running: they ran on as orphans, and ran again once rescued.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
JOIN_POLL_S = 0.1


@click.group(no_args_is_help=False)  # no command: "Error: Missing command." (SPEC 4)
def worker() -> None:
    """Run workers in the foreground, or stop running ones."""


class EventLog:
    """One line per job event on stderr, whole lines only (threads write at once).

    Lines go straight to ``sys.stderr`` (line-buffered: one write each). click.echo asked the
    terminal whether to strip colours (an ioctl) on every line, a tenth of a busy worker's CPU;
    these lines have none to strip: job text comes through :func:`_shown`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def line(self, thread: str, text: str) -> None:
        with self._lock:
            second = int(time.time())
            if second != self._second:  # formatted once a second, not once a line
                self._second, self._stamp = second, utc_time(second)
            stamp = self._stamp
            try:
                sys.stderr.write(f"{stamp} {thread} {text}\n")
            except (OSError, ValueError):
                pass  # stderr is gone (a closed pipe): the jobs matter more than the log

    def __call__(self, event: JobEvent) -> None:
        job, kind = event.job, event.kind
        if kind == "started":  # (with completed, two lines a job: each formatted in one go)
            self.line(event.thread, f"started {_shown(job.id)} {_command(job.command)}")
            return
        if kind == "completed":
            self.line(event.thread, f"completed {_shown(job.id)} exit 0{_took(job)}")
            return
        head = f"{kind} {_shown(job.id)}"
        if kind in ("failed", "dead", "cancelled", "rescued"):
            detail = _failure(job)
        elif kind == "released":
            cause = {"outage": "while the database did not answer",
                     "suspended": "as this process had not run"}.get(event.reason, "by stop")
            detail = f"killed {cause}: back to pending, attempt not counted"
        elif kind == "scheduled":
            detail = f"by schedule {_shown(job.schedule)}: {_command(job.command)}"
        else:
            detail = job.state
        self.line(event.thread, f"{head} {detail}")


class _LogHandler(logging.Handler):
    """The engine's warnings (database trouble it retries through) as log lines too."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        message = f"{record.levelname.lower()}: {_shown(record.getMessage())}"
        self.log.line(record.threadName or "-", message)


COMMAND_SHOWN = 500  # characters of a command in its log line (`show ID` has all of it)


def _command(command: str) -> str:
    """A job's command for its log line: a 300,000-character command was one line as long."""
    if len(command) <= COMMAND_SHOWN:
        return _shown(command)
    return f"{_shown(command[:COMMAND_SHOWN])}… ({len(command) - COMMAND_SHOWN:,} characters more)"


def _shown(text: object) -> str:
    """Job text on one line, made safe to print: common.clean's ``one_line``, without its import
    on each call (three calls a job)."""
    return "-" if text is None else escaped_line(str(text))


def _took(job: Job) -> str:
    started, finished = job.started_at, job.finished_at  # (each read once: a field's descriptor)
    if started is None or finished is None:
        return ""
    return f" in {rounded_duration(finished - started)}"


def _failure(job: Job) -> str:
    why = _shown(job.error)
    if job.exit_code is not None:
        why = f"exit {job.exit_code} ({why})" if why != f"exit code {job.exit_code}" else why
    after = f"{why}{_took(job)}, attempt {job.attempts}"
    if job.state == State.FAILED:
        return f"{after}: retry {relative_time(job.run_at, time.time())}"
    if job.state == State.DEAD:
        return f"{after}: moved to the DLQ"
    return f"{after}: {job.state}"


class Stopper:
    """The signal handlers: the first SIGINT/SIGTERM/SIGHUP asks for a graceful stop, the second
    for a hard one. Handlers only record; the main loop acts, so no lock is ever taken in a
    handler. A SIGHUP that is ignored (`nohup queuectl worker start`) stays ignored."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}
        self._mask: set[signal.Signals] | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            self._previous[signum] = signal.signal(signum, self._handle)
        # Whatever started us may have blocked them (some supervisors and CI runners block every
        # signal): then `kill` would never reach the handlers, and the worker could not be stopped.
        self._mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, self._previous)

    def restore(self) -> None:
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)


@worker.command()
@click.option(
    "--count", "-c", type=WholeNumber(1, MAX_THREADS), default=1, show_default=True,
    help="Worker threads (jobs run at once).",
)
@click.option(
    "--burst", is_flag=True,
    help="Exit 0 once the queue is drained (no job pending, failed or processing).",
)
@click.option(
    "--stop-timeout", type=FiniteNumber(min=0), default=STOP_TIMEOUT_S, show_default=True,
    metavar="SECONDS",
    help="After a stop, how long a finished job's result may wait for an unreachable database "
    "before the worker exits without it (the job is then rescued as 'worker lost').",
)
@queues_option("Claim only jobs of this queue (repeatable; default: every queue).")
@pass_settings
def start(
    settings: Settings, count: int, burst: bool, stop_timeout: float, queues: tuple[str, ...]
) -> None:
    """Run COUNT worker threads in the foreground, logging job events to stderr.

    Ctrl-C (or SIGTERM, or SIGHUP) once: claim nothing more, let running jobs finish, exit 0.
    Twice: kill the running jobs; they go back to pending, their attempt not counted (exit 130,
    143 for SIGTERM, or 129 for SIGHUP).

    \b
    Examples:
      queuectl worker start --count 4
      queuectl worker start --burst     # run what is queued, then exit
      queuectl worker start --queue deploy --queue reports
    """
    with settings.engine():
        from ..db import lock_waits_end_when, redact, sqlite_without_memory_statistics
        from ..heap import large_buffers_given_back
        from ..worker import WorkerPool

    sqlite_without_memory_statistics()  # before the first connection (see there)
    large_buffers_given_back()
    log = EventLog()
    engine_log = logging.getLogger("queuectl")
    handler = _LogHandler(log)
    engine_log.addHandler(handler)
    stopper = Stopper()
    stopper.install()  # before the pool starts: no window where Ctrl-C gives a traceback
    mode = " (burst)" if burst else ""
    if queues:
        mode += f" for queue(s) {', '.join(sorted(set(queues)))}"

    began = process_started_at()  # (the fork: see there)
    if began is None:
        began = STARTED_AT

    def started() -> WorkerPool:
        queue = settings.queue

        def announce(worker_id: str) -> None:
            log.line("main", f"worker {worker_id} running {count} thread(s){mode} on "
                             f"{_shown(redact(str(queue.target)))}")  # (a log kept: no password)

        # A stop signal ends a wait for another process's write lock.
        with lock_waits_end_when(queue.db, lambda: bool(stopper.received)):
            pool = WorkerPool(
                queue, count, on_event=log, burst=burst, stop_timeout=stop_timeout,
                queues=queues or None, started_at=began,
            )  # fmt: skip
            if stopper.received:  # (came as the lock went: nothing is to start)
                raise _StoppedBeforeItStarted()
            return pool.start(announce, stop_came=lambda: bool(stopper.received))

    try:
        pool = _started_once_there_is_room(started, stopper, log)
        if pool is None:
            sys.exit(0)
        code = _run(pool, stopper, log)
    finally:
        stopper.restore()
        engine_log.removeHandler(handler)
    unstored = pool.unstored_said()
    if unstored:
        log.line("main", unstored)
        sys.exit(code or 1)
    log.line("main", "stopped")
    sys.exit(code or (1 if pool.problem else 0))


def _started_once_there_is_room(
    started: Callable[[], WorkerPool], stopper: Stopper, log: EventLog
) -> WorkerPool | None:
    """``started()``, tried again while the disk is full or another process holds the write
    lock (it opens the queue and registers the worker: both write), as a running worker waits
    them out (see reconnect.start_waits); None if a stop signal came first
    (nothing runs: exit 0). QA: on a full disk `worker start` exited 1 at once, and a
    supervisor that restarts it on failure started it again and again."""
    import peewee

    from ..errors import QueueError
    from ..reconnect import DISK_FULL, Backoff, start_waits

    backoff, said = Backoff(), False
    while True:
        try:
            return started()
        except _StoppedBeforeItStarted:
            pass
        except (QueueError, peewee.PeeweeException) as exc:
            why = start_waits(exc)
            if why is None:
                raise
            if not said and not stopper.received:
                said = True
                once = "there is room" if DISK_FULL in str(exc) else "it lets go"
                log.line("main", f"warning: the database cannot be written ({why}); "
                                 f"starting once {once}")  # fmt: skip
        deadline = time.monotonic() + backoff.next()
        while True:
            if stopper.received:
                name = signal.Signals(stopper.received[0]).name
                log.line("main", f"{name}: stopped before it started")
                return None
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)


class _StoppedBeforeItStarted(Exception):
    """A stop signal came while `worker start` opened the queue: no pool is started."""


def _run(pool: WorkerPool, stopper: Stopper, log: EventLog) -> int:
    """The main thread's loop: join the pool, act on signals. Returns the exit code."""
    seen = 0
    code = 0
    while not pool.join(JOIN_POLL_S):
        if pool.gives_up_on_the_database():  # then exits 1 (see there)
            # Their runs have ended, their results not stored: said as the pool's end says them.
            why = "could not be written" if pool.outage.unwritable else "has not answered"
            said = pool.unstored_said(pool.holding)
            log.line("main", said or f"stopped: the database {why} within the stop timeout")
            sys.stderr.flush()
            os._exit(code or 1)
        while seen < len(stopper.received):
            signum = stopper.received[seen]
            seen += 1
            name = signal.Signals(signum).name
            if seen == 1:
                pool.stop()
                busy, held = pool.busy, pool.holding
                # A run that ended in an outage holds its job until its result is stored.
                stored = f", and {held - busy} result(s) are stored" if held > busy else ""
                log.line("main", f"{name}: stopping after {busy} running job(s) finish{stored} "
                                 f"({name} again kills them)")
            elif seen == 2:
                code = 128 + signum
                pool.kill()
                log.line("main", f"{name}: killing running jobs; they go back to pending "
                                 f"({name} again exits at once)")
            else:
                # The escape hatch, should giving the jobs back hang (a database gone away):
                # whatever is still `processing` is rescued later as "worker lost".
                log.line("main", f"{name}: exiting now")
                os._exit(code or 128 + signum)
    if pool.left_registered:  # (said why above: "unregistering failed (...)")
        log.line("main", "the database could not be written within the stop timeout: this "
                         "worker is read as live until its lease runs out")  # fmt: skip
        return code or 1
    return code


@worker.command()
@click.option(
    "--timeout", type=FiniteNumber(min=0), default=60.0, show_default=True,
    metavar="SECONDS", help="How long to wait for the workers to finish their running jobs.",
)
@pass_settings
def stop(settings: Settings, timeout: float) -> None:
    """Ask every worker process on this queue to stop gracefully, and wait until they are gone.

    Their running jobs finish first. Exit 1 if some are still running after --timeout.
    """
    queue = settings.queue
    asked = {w.id: w for w in queue.live_workers()}
    queue.request_stop()  # (asked of none, it still stops those of this host still starting)
    if not asked:
        click.echo("no workers running", err=True)
        return

    beats = {w.id: w.heartbeat_at for w in asked.values()}
    ended: dict[str, bool] = {}  # worker id: whether presumed lost (silent past the lease, dead)

    def remaining() -> list[str]:
        live = {w.id: w.heartbeat_at for w in queue.live_workers()}
        for worker_id in asked:
            if worker_id in live:
                beats[worker_id] = live[worker_id]
                ended.pop(worker_id, None)  # back (thawed, reconnected): waited for again
        gone = [worker_id for worker_id in asked if not (worker_id in live or worker_id in ended)]
        if gone:
            # A worker that stops unregisters, its last heartbeat a moment old. One frozen
            # (SIGSTOP, a host cut off) is no longer live once it is silent past the lease, and
            # one killed once its pid is found dead; their rows stay until a rescue (QA: a
            # frozen worker was said "stopped").
            registered = {w.id for w in queue.registered_workers(gone)}
            now = queue.clock()
            for worker_id in gone:
                ended[worker_id] = (worker_id in registered
                                    or now - beats[worker_id] >= queue.lease - 1)  # fmt: skip
        return [worker_id for worker_id in asked if worker_id in live]

    plural = "es" if len(asked) != 1 else ""
    their = "their" if len(asked) != 1 else "its"
    if not wait_until(lambda: not remaining(), timeout=min(timeout, 1.0)):
        click.echo(f"waiting for {len(asked)} worker process{plural} to finish {their} jobs...",
                   err=True)
        if not wait_until(lambda: not remaining(), timeout=max(timeout - 1.0, 0.0)):
            left = remaining()
            raise click.ClickException(
                f"{len(left)} of {len(asked)} worker process{plural} still running after "
                f"{timeout:g}s: {', '.join(left)}"
            )
    lost = [worker_id for worker_id, presumed_lost in ended.items() if presumed_lost]
    stopped = len(asked) - len(lost)
    said = f"stopped {stopped} worker process{'es' if stopped != 1 else ''}"
    if lost:
        said += (f"; {len(lost)} presumed lost, not stopped (silent past its lease, or dead): "
                 f"{', '.join(lost)}")
    click.echo(said)
