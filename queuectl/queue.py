"""The queue's lifecycle rules, in one place: enqueue, claim, finish, fail, rescue, DLQ retry,
config, and the worker registry. The CLI and the TUI call :class:`Queue`; neither holds SQL
or a lifecycle rule of its own.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager

import peewee

from . import config as config_keys
from . import schema
from .db import Target, _redact, open_database, resolve_target, use_wal
from .errors import InvalidInput, QueueError
from .executor import RunResult, kill_leftovers
from .models import CLAIMABLE, STATES, Config, Job, WorkerProcess, current_database, database
from .spec import JobSpec
from .watch import ChangeDetector, detector_for, notify_channel

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base 32: no i, l, o, u
ID_LENGTH = 12
HEARTBEAT_INTERVAL_S = 1.0
LEASE_S = 15.0  # a worker silent for this long is presumed gone, its jobs rescued
MAX_BACKOFF_S = 1e9  # ~31 years: backoff_base ** attempts is capped here, never overflows
WORKER_LOST = "worker lost"
_INSERT_BATCH = 500
# The claimable states as a literal, so SQLite can match the partial index `job_claim_order`.
_CLAIMABLE_SQL = peewee.SQL("\"state\" IN ('pending', 'failed')")
HOSTNAME = socket.gethostname()

# The columns a listing shows; `output` (up to 1 MiB a job) is fetched only for one job.
LIST_COLUMNS = tuple(field for field in Job._meta.sorted_fields if field.name != "output")


_B32_TO_ID = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ID_ALPHABET.encode())


def new_id() -> str:
    """A random id, short enough to type, long enough (60 bits) never to collide in practice."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """``count`` ids from one read of the OS's random source: 15 random bytes are 24 base-32
    digits, two ids (a per-digit ``secrets.choice`` cost 45 us an id, a third of a bulk enqueue)."""
    pairs = (count + 1) // 2
    digits = base64.b32encode(secrets.token_bytes(15 * pairs)).translate(_B32_TO_ID).decode()
    return [digits[start : start + ID_LENGTH] for start in range(0, ID_LENGTH * count, ID_LENGTH)]


def backoff_delay(base: float, attempts: int) -> float:
    """Seconds before retry number ``attempts``: ``base ** attempts``, capped (SPEC 3)."""
    try:
        return min(float(base) ** attempts, MAX_BACKOFF_S)
    except OverflowError:
        return MAX_BACKOFF_S


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The worker's hot path: these hold the write lock around their SQL themselves (timeout_for,
# through config(), when it reads any), and build the jobs they return after letting go of it.
_TAKE_TURNS_THEMSELVES = frozenset(
    {"claim", "finish", "finish_and_claim", "release", "timeout_for"}
)


def _in_own_database(method: Callable[..., object]) -> Callable[..., object]:
    """Run a Queue method with the models bound to that Queue's database (see models.py), and
    on a Queue whose threads share one connection (see for_worker_threads), in turn."""
    take_turns = method.__name__ not in _TAKE_TURNS_THEMSELVES

    @functools.wraps(method)
    def bound(self: Queue, *args: object, **kwargs: object) -> object:
        token = current_database.set(self.db)
        try:
            if take_turns and self._one_connection:
                with self._writers:
                    return method(self, *args, **kwargs)
            return method(self, *args, **kwargs)
        finally:
            current_database.reset(token)

    return bound


def _each_method_in_own_database(cls: type[Queue]) -> type[Queue]:
    """Two Queues in one process (two files, or one file twice) each use their own database.
    Public methods only: the private ones run inside them (a worker's finish went through four)."""
    for name, method in list(vars(cls).items()):
        if inspect.isfunction(method) and not name.startswith("_"):
            setattr(cls, name, _in_own_database(method))
    return cls


@_each_method_in_own_database
class Queue:
    """One queue, in the database named by ``target`` (see :func:`queuectl.db.resolve_target`).

    ``clock`` returns UTC epoch seconds; tests inject their own to step through backoffs.
    ``host`` names this machine in the worker registry, and ``lease`` is how long a worker
    may be silent before its jobs are rescued. Across hosts (PostgreSQL), times come from each
    host's clock: keep the clocks in step (NTP) to well within the lease.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        host: str = HOSTNAME,
        lease: float = LEASE_S,
        one_connection: bool = False,
    ) -> None:
        self.target: Target = resolve_target(target)
        self.db = open_database(self.target, one_connection=one_connection)
        if not one_connection:  # one for worker threads (see for_worker_threads) is never
            database.initialize(self.db)  # the models' default outside a Queue method
        self.clock = clock
        self.host = host
        self.lease = lease
        self.is_sqlite = isinstance(self.db, peewee.SqliteDatabase)
        self._sql = _Statements(self.db.param, self.is_sqlite)
        # SQLite has one writer. This process's threads take turns on a lock of their own before
        # asking SQLite: a thread that finds SQLite's lock taken sleeps in its busy handler (1 ms,
        # then 2, 5, ...: longer than a whole `true` job), one waiting here wakes at once.
        self._writers: AbstractContextManager[object] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._one_connection = one_connection and self.is_sqlite
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        try:
            schema.ensure(self.db, self._write)
            if self.is_sqlite:
                use_wal(self.db)
            # PostgreSQL: where writers announce changes (see _announce and queuectl.watch).
            self.channel = None if self.is_sqlite else notify_channel(self.db)
        except peewee.DatabaseError as exc:  # e.g. "database disk image is malformed"
            self.db.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = _redact(str(self.target))
            raise QueueError(f"{where} is not a usable database ({first})") from None

    # -- plumbing ---------------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[object]:
        """A write transaction that takes the write lock up front, so that a read followed by a
        write never fails with "database is locked" (SQLite waits on BEGIN IMMEDIATE instead)."""
        if self.is_sqlite:
            return _both(self._writers, _first_error(self.db.atomic("IMMEDIATE")))
        return self.db.atomic()

    def for_worker_threads(self) -> Queue:
        """The Queue a pool's worker threads use. On SQLite they share one connection, each call
        made in turn under this Queue's write lock (which they took for every write anyway).
        With a connection each, every commit of one emptied the page cache of the others
        (SQLite cannot tell which pages changed), so each job read ~17 pages back from the
        file: one connection saves 15 to 30 us of CPU a job. Other threads (the service
        thread, the TUI's reads) keep connections of their own, and never wait for these.
        On PostgreSQL this Queue itself: claims with SKIP LOCKED run side by side."""
        if not self.is_sqlite:
            return self
        shared = Queue(
            self.target.location, clock=self.clock, host=self.host, lease=self.lease,
            one_connection=True,
        )  # fmt: skip
        shared._writers = self._writers  # this process's writers still take turns on one lock
        return shared

    def close(self) -> None:
        """Close this thread's connection (each thread has its own), or the one connection of
        a Queue made by :meth:`for_worker_threads`."""
        if not self.db.is_closed():
            self.db.close()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback`` runs after every enqueue or retry made through this object (same process)."""
        with self._listeners_lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._listeners_lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def _via(
        self, index: str, build: Callable[[type[Job]], peewee.ModelSelect]
    ) -> peewee.ModelSelect:
        """``build(J)`` over ``J``, an alias of Job, with SQLite's planner pinned to ``index``:
        without statistics it would rather sort every waiting job than walk a partial index."""
        alias = Job.alias("j")
        query = build(alias)  # type: ignore[arg-type]
        if self.is_sqlite:
            query = query.from_(peewee.SQL(f'"job" AS "j" INDEXED BY "{index}"'))
        return query

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(self, spec: JobSpec | str) -> Job:
        if isinstance(spec, str):
            spec = JobSpec(command=spec)
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Enqueue all of ``specs`` in one transaction, or none of them."""
        now = self.clock()
        try:
            here = os.getcwd()
        except FileNotFoundError:
            here = None
        rows = []
        ids = iter(new_ids(sum(1 for spec in specs if not spec.id)))
        for spec in specs:
            cwd = spec.cwd or here
            if cwd is None:
                raise QueueError("the current directory no longer exists: give 'cwd'")
            run_at = spec.run_at if spec.run_at is not None else now + (spec.delay or 0.0)
            rows.append(
                {
                    "id": spec.id or next(ids),
                    "command": spec.command,
                    "state": "pending",
                    "attempts": 0,
                    "max_retries": spec.max_retries,
                    "priority": spec.priority or 0,
                    "timeout": spec.timeout,
                    "run_at": run_at,
                    "created_at": now,
                    "updated_at": now,
                    "cwd": cwd,
                }
            )
        given = [spec.id for spec in specs if spec.id]
        seen: set[str] = set()
        for job_id in given:
            if job_id in seen:
                raise InvalidInput(f"duplicate id {job_id!r}")
            seen.add(job_id)
        try:
            with self._write():
                for chunk in peewee.chunked(given, _INSERT_BATCH):
                    taken = Job.select(Job.id).where(Job.id.in_(chunk)).limit(1).scalar()
                    if taken is not None:
                        raise InvalidInput(f"duplicate id {taken!r}: a job with it exists")
                # One prepared statement run per row (executemany): peewee's insert_many spent
                # 100 us a row building SQL text, two thirds of a 10,000-line `enqueue --file`.
                # A raw cursor raises the driver's errors: wrapped, they are peewee's like the
                # rest (a read-only file or a full disk is then one CLI error line, no traceback).
                with peewee.__exception_wrapper__:
                    self.db.cursor().executemany(
                        self._sql.insert, [tuple(row.values()) for row in rows]
                    )
                    if self.is_sqlite:  # counted here, not by a trigger per row (schema 4)
                        self.db.execute_sql(self._sql.count_inserted, (len(rows),))
                self._announce()
        except (peewee.IntegrityError, *_integrity_errors(self.db)):
            # Another process took one of the ids between our check and our insert.
            raise InvalidInput("duplicate id: a job with it exists") from None
        self._notify()
        return [_job(row) for row in rows]

    # -- the worker's side: claim and finish ------------------------------------------------

    def claim(self, worker_id: str) -> Job | None:
        """Atomically take the next due job for ``worker_id``: one UPDATE ... RETURNING."""
        # A single statement is atomic on its own; no explicit transaction needed.
        with self._writers:
            row = self._claim_row(worker_id)
        return None if row is None else _claimed(row)

    def _claim(self, worker_id: str) -> Job | None:
        row = self._claim_row(worker_id)
        return None if row is None else _claimed(row)

    def _claim_row(self, worker_id: str) -> tuple[object, ...] | None:
        now = self.clock()
        # Its text is built once (see _Statements): building it with peewee cost 280 us a claim.
        return self.db.execute_sql(self._sql.claim, (worker_id, now, now, now)).fetchone()

    def finish(self, job: Job, result: RunResult, worker_id: str) -> Job | None:
        """Store a run's result: completed, or a failure decided by the retry rules.

        Returns the job as stored, or None when ``worker_id`` no longer held it (it was
        rescued from a worker presumed dead); the result is then dropped.
        """
        if result.ok:
            with self._writers:  # one UPDATE: atomic without BEGIN/COMMIT around it
                return self._store_result(job, result, worker_id)
        with self._write():
            return self._store_result(job, result, worker_id)

    def finish_and_claim(
        self, job: Job, result: RunResult, worker_id: str
    ) -> tuple[Job | None, Job | None]:
        """:meth:`finish`, then :meth:`claim` in the same transaction: a busy worker commits
        once a job, not twice. Returns (the job as stored or None, the next job or None)."""
        if result.ok and self._sql.complete_and_claim is not None:
            return self._complete_and_claim(job, result, worker_id)
        with self._write():
            return self._store_result(job, result, worker_id), self._claim(worker_id)

    def _complete_and_claim(
        self, job: Job, result: RunResult, worker_id: str
    ) -> tuple[Job | None, Job | None]:
        now = self.clock()
        with self._writers:
            rows = self.db.execute_sql(
                self._sql.complete_and_claim,
                (job.seq, worker_id, now, result.exit_code, result.output, job.attempts,
                 job.started_at),
            ).fetchall()  # fmt: skip
        stored = following = None
        for row in rows:
            updated = _claimed(row)
            if updated.seq == job.seq:
                updated.output = result.output  # as stored (not read back, see _Statements)
                updated.configured_timeout = job.configured_timeout  # read at its own claim
                stored = updated
            else:
                following = updated
        return stored, following

    def _store_result(self, job: Job, result: RunResult, worker_id: str) -> Job | None:
        if result.ok:
            changes = {"state": "completed", "exit_code": result.exit_code, "error": None}
        else:
            changes = {**self._failure(job, result.error or "failed"), "exit_code": result.exit_code}
        return self._finish(job, worker_id, {**changes, "output": result.output})

    def _finish(self, job: Job, worker_id: str, changes: dict[str, object]) -> Job | None:
        now = self.clock()
        changes = {"updated_at": now, "finished_at": now, **changes}
        if not self._update_same_run(job, worker_id, changes):
            return None
        for key, value in changes.items():
            setattr(job, key, value)
        return job

    def _update_same_run(self, job: Job, worker_id: str, changes: dict[str, object]) -> bool:
        """Apply ``changes`` to ``job`` only if ``worker_id`` still runs it, in the same run (see
        _Statements.same_run_update); whether it did."""
        cursor = self.db.execute_sql(
            self._sql.same_run_update(tuple(changes)),
            (*changes.values(), job.seq, worker_id, job.attempts, job.started_at),
        )
        return bool(cursor.rowcount)

    def _failure(self, job: Job, error: str) -> dict[str, object]:
        """The retry rule (SPEC 3): dead once attempts reach max, else failed with backoff."""
        settings = self.config()
        limit = job.max_retries if job.max_retries is not None else settings["max-retries"]
        if job.attempts >= limit:
            return {"state": "dead", "error": error}
        delay = backoff_delay(settings["backoff-base"], job.attempts)
        return {"state": "failed", "error": error, "run_at": self.clock() + delay}

    def release(self, job: Job, worker_id: str) -> bool:
        """Give a job back after a hard stop: pending again, its attempt not counted, and its
        place in the queue kept (its run_at is untouched: it was due when it was claimed)."""
        changes = {
            "state": "pending",
            "attempts": job.attempts - 1,  # the update applies only while attempts is unchanged
            "worker": None,
            "started_at": None,
            "updated_at": self.clock(),
        }
        with self._writers:
            updated = self._update_same_run(job, worker_id, changes)
        if updated:
            self._announce()
            self._notify()
        return bool(updated)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest waiting job is due (0 if one is due), None if none waits."""
        first = self._via(
            "job_due", lambda j: j.select(peewee.fn.MIN(j.run_at)).where(_CLAIMABLE_SQL)
        ).scalar()
        if first is None:
            return None
        return max(first - self.clock(), 0.0)

    def timeout_for(self, job: Job) -> float:
        """The job's own timeout, else config `job-timeout`: as the claim that started this run
        read it, or as it is now."""
        if job.timeout is not None:
            return job.timeout
        if job.configured_timeout is not None:
            return job.configured_timeout
        return self.config()[JOB_TIMEOUT]

    # -- crash safety: workers, heartbeats, rescue ------------------------------------------

    def register_worker(self, threads: int) -> str:
        """Add a pool of this process to the registry; returns its id, ``host:pid:tag``. The tag
        is random and short, so it is drawn again if the id is taken: by another pool of this
        process (one in 65,536 for two), or by a dead process that had the same pid."""
        now = self.clock()
        while True:
            worker_id = f"{self.host}:{os.getpid()}:{secrets.token_hex(2)}"
            row = dict(id=worker_id, host=self.host, pid=os.getpid(), threads=threads,
                       started_at=now, heartbeat_at=now)  # fmt: skip
            if self.db.execute(WorkerProcess.insert(**row).on_conflict_ignore()).rowcount:
                return worker_id

    def heartbeat(self, worker_id: str, threads: int) -> bool:
        """Record that ``worker_id`` lives. Returns True when it has been asked to stop."""
        now = self.clock()
        updated = (
            WorkerProcess.update(heartbeat_at=now, threads=threads)
            .where(WorkerProcess.id == worker_id)
            .execute()
        )
        if not updated:
            # Presumed dead while it was not (a long pause): its jobs were already rescued.
            WorkerProcess.insert(
                id=worker_id,
                host=self.host,
                pid=os.getpid(),
                threads=threads,
                started_at=now,
                heartbeat_at=now,
            ).on_conflict_ignore().execute()
            return False
        return self.stop_requested(worker_id)

    def stop_requested(self, worker_id: str) -> bool:
        row = (
            WorkerProcess.select(WorkerProcess.stop_requested)
            .where(WorkerProcess.id == worker_id)
            .scalar()
        )
        return bool(row)

    def unregister_worker(self, worker_id: str) -> None:
        WorkerProcess.delete().where(WorkerProcess.id == worker_id).execute()

    def live_workers(self) -> list[WorkerProcess]:
        """Worker processes with a fresh heartbeat (from any process, on any host)."""
        fresh = self.clock() - self.lease
        return list(
            WorkerProcess.select()
            .where(WorkerProcess.heartbeat_at >= fresh)
            .order_by(WorkerProcess.started_at)
        )

    def request_stop(self) -> int:
        """Ask every worker process on this queue to stop gracefully; how many were asked."""
        with self._write():
            self._announce()
            return WorkerProcess.update(stop_requested=True).execute()

    def _is_gone(self, worker: WorkerProcess, now: float) -> bool:
        if worker.heartbeat_at < now - self.lease:
            return True
        return worker.host == self.host and not pid_alive(worker.pid)

    def rescue_lost(self) -> list[Job]:
        """Fail the jobs of workers that are gone (SPEC 3): their lease ran out, or their pid is
        dead on this host. The retry rules then decide what follows. Returns the rescued jobs."""
        now = self.clock()
        workers = [w for w in WorkerProcess.select() if self._is_gone(w, now)]
        gone = [w.id for w in workers]
        # Dead here: what is left of their runs must stop before the jobs run again.
        dead_here = [w.id for w in workers if w.host == self.host and not pid_alive(w.pid)]
        live = WorkerProcess.select(WorkerProcess.id).where(WorkerProcess.id.not_in(gone))
        orphans = Job.select().where(
            Job.state == "processing", (Job.worker.is_null()) | Job.worker.not_in(live)
        )
        if not gone and not orphans.exists():
            return []  # the usual case: read only, no write lock taken
        rescued = []
        with self._write():
            if gone:
                WorkerProcess.delete().where(WorkerProcess.id.in_(gone)).execute()
            for job in orphans.clone():
                changes = {**self._failure(job, WORKER_LOST), "exit_code": None}
                stored = self._finish(job, job.worker, changes)
                if stored is not None:
                    rescued.append(stored)
        for worker_id in dead_here:
            kill_leftovers(worker_id)
        if rescued:
            self._notify()
        return rescued

    def drained(self) -> bool:
        """No job is pending, failed (waiting to retry) or processing."""
        return not Job.select().where(Job.state.in_(("pending", "failed", "processing"))).exists()

    def change_detector(self) -> ChangeDetector:
        """For one thread: tells cheaply when another process changed the queue."""
        return detector_for(self.db, self.channel)

    def _announce(self) -> None:
        """Wake workers in other processes (PostgreSQL; SQLite's data_version needs no help).
        Inside a transaction the notification is sent at commit."""
        if not self.is_sqlite:
            self.db.execute_sql("SELECT pg_notify(%s, '')", (self.channel,))

    # -- reading ----------------------------------------------------------------------------

    def get(self, prefix: str) -> Job:
        """The job whose id is ``prefix`` or uniquely starts with it."""
        if not prefix or not _storable(prefix):  # e.g. undecodable bytes from argv: no id has it
            raise QueueError(f"no job {prefix!r}")
        job = Job.get_or_none(Job.id == prefix)
        if job is not None:
            return job
        if self.is_sqlite:
            # Case-sensitive, and served by the unique index (LIKE would be neither).
            after = _after_prefix(prefix)
            starts = Job.id >= prefix if after is None else (Job.id >= prefix) & (Job.id < after)
        else:
            starts = peewee.fn.substr(Job.id, 1, len(prefix)) == prefix
        matches = list(Job.select(Job.id).where(starts).order_by(Job.id).limit(3))
        if not matches:
            raise QueueError(f"no job {prefix!r}")
        if len(matches) > 1:
            shown = ", ".join(m.id for m in matches[:2]) + (", ..." if len(matches) > 2 else "")
            raise QueueError(f"{prefix!r} is ambiguous: it matches {shown}")
        return Job.get(Job.id == matches[0].id)

    def finished_per_second(self, window: int = 60) -> list[int]:
        """How many jobs finished (completed or dead) in each of the last ``window`` seconds,
        oldest first, by any worker: the TUI's throughput chart. Served by (state, finished_at)."""
        end = int(self.clock()) + 1
        start = end - window
        offset = Job.finished_at - start
        # Whole seconds since ``start``: SQLite's CAST truncates, PostgreSQL's rounds.
        second = peewee.Cast(offset if self.is_sqlite else peewee.fn.FLOOR(offset), "INTEGER")
        rows = (
            Job.select(second, peewee.fn.COUNT(Job.seq))
            .where(Job.state.in_(("completed", "dead")), Job.finished_at >= start)
            .group_by(peewee.SQL("1"))  # by position: PostgreSQL can't match a bound parameter
            .tuples()
        )
        buckets = [0] * window
        for index, count in rows:
            if 0 <= index < window:
                buckets[index] = count
        return buckets

    def counts(self) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        # Kept exact by triggers (schema.job_counters): a few rows, whatever the queue's size.
        if self.is_sqlite:
            query = self.db.execute_sql(f'SELECT "state", "n" FROM "{schema.COUNTER_TABLE}"')
        else:
            query = self.db.execute_sql(
                f'SELECT "state", SUM("n"), COUNT(*) FROM "{schema.COUNTER_TABLE}" '
                'GROUP BY "state"'
            ).fetchall()
            if sum(shards for _, _, shards in query) > _MAX_COUNTER_SHARDS:
                self.db.execute_sql(_FOLD_COUNTER_SHARDS)
        for state, count, *_ in query:
            if state in totals:
                totals[state] = int(count)
        return totals

    def list_jobs(
        self,
        state: str | None = None,
        limit: int | None = None,
        *,
        with_output: bool = True,
    ) -> list[Job]:
        """Jobs, newest first, optionally of one state."""
        columns = Job._meta.sorted_fields if with_output else LIST_COLUMNS
        query = Job.select(*columns).order_by(Job.seq.desc())
        if state is not None:
            query = query.where(Job.state == check_state(state))
        if limit is not None and limit < 2**63:  # more than SQL can count means no limit
            query = query.limit(limit)
        return list(query)

    def pane(self, pane: str, limit: int) -> list[Job]:
        """The first ``limit`` jobs of a TUI pane, without their output, in the pane's order:
        ``waiting`` (pending and failed, in claim order), ``processing`` (oldest start first),
        ``completed`` and ``dead`` (most recently finished first)."""
        if pane == "waiting":
            return list(
                self._via(
                    "job_claim_order",
                    lambda j: j.select(*(getattr(j, f.name) for f in LIST_COLUMNS))
                    .where(_CLAIMABLE_SQL)
                    .order_by(j.priority.desc(), j.run_at, j.seq)
                    .limit(limit),
                ).objects(Job)
            )
        query = Job.select(*LIST_COLUMNS).limit(limit)
        if pane == "processing":
            query = query.where(Job.state == "processing").order_by(Job.started_at, Job.seq)
        elif pane in ("completed", "dead"):
            query = query.where(Job.state == pane).order_by(
                Job.finished_at.desc(), Job.seq.desc()
            )
        else:
            raise ValueError(f"unknown pane {pane!r}")
        return list(query)

    # -- the DLQ ----------------------------------------------------------------------------

    def retry_dead(self, prefixes: Iterable[str]) -> list[Job]:
        """Put dead jobs back to pending (attempts 0, error cleared, due now). All or nothing:
        if any id is unknown, ambiguous or not dead, nothing changes."""
        with self._write():
            jobs = [self.get(prefix) for prefix in prefixes]
            for job in jobs:
                if job.state != "dead":
                    raise QueueError(f"job {job.id} is not dead (it is {job.state})")
            self._revive(Job.seq.in_([job.seq for job in jobs]))
        self._notify()
        return [Job.get(Job.seq == job.seq) for job in jobs]

    def retry_all_dead(self) -> list[str]:
        """Every dead job back to pending; returns their ids."""
        with self._write():
            ids = [job.id for job in Job.select(Job.id).where(Job.state == "dead")]
            self._revive(Job.state == "dead")
        if ids:
            self._notify()
        return ids

    def _revive(self, where: peewee.Expression) -> None:
        now = self.clock()
        self._announce()
        Job.update(
            state="pending",
            attempts=0,
            error=None,
            exit_code=None,
            worker=None,
            started_at=None,
            finished_at=None,
            run_at=now,
            updated_at=now,
        ).where(where, Job.state == "dead").execute()

    # -- config -----------------------------------------------------------------------------

    def config(self) -> dict[str, int | float]:
        """Every key with its value (the stored one, else the default)."""
        values = {key.name: key.default for key in config_keys.KEYS.values()}
        for key, value in self.db.execute_sql('SELECT "key", "value" FROM "config"'):
            if key in values:
                values[key] = _setting(key, value)
        return values

    def config_get(self, key: str) -> int | float:
        if key not in config_keys.KEYS:
            config_keys.validate(key, "")  # raises, naming the valid keys
        return self.config()[key]

    def config_set(self, key: str, value: object) -> int | float:
        parsed = config_keys.validate(key, value)
        Config.insert(key=key, value=str(parsed)).on_conflict(
            conflict_target=[Config.key], update={Config.value: str(parsed)}
        ).execute()
        return parsed


def _storable(text: str) -> bool:
    """Whether ``text`` can be stored as text (ids are validated so: UTF-8, no NUL)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``, in SQLite's
    BINARY order (UTF-8 bytes, i.e. code points); None when there is none (all U+10FFFF)."""
    head = prefix.rstrip("\U0010ffff")
    if not head:
        return None
    following = ord(head[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters: skip them
        following = 0xE000
    return head[:-1] + chr(following)


def check_state(state: str) -> str:
    """A state name (any case), or InvalidInput listing the valid ones."""
    normal = state.strip().lower()
    if normal not in STATES:
        raise InvalidInput(f"unknown state {state!r} (valid: {', '.join(STATES)})")
    return normal


@contextlib.contextmanager
def _both(
    first: AbstractContextManager[object], second: AbstractContextManager[object]
) -> Iterator[None]:
    with first, second:
        yield


@contextlib.contextmanager
def _first_error(transaction: AbstractContextManager[object]) -> Iterator[None]:
    """``transaction``, but raising the error that ended it: on some errors (a full disk, an I/O
    error) SQLite rolls back by itself, and peewee's ROLLBACK then fails with "no transaction
    is active", which would hide the reason from the user."""
    try:
        with transaction:
            yield
    except (peewee.OperationalError, sqlite3.OperationalError) as exc:  # peewee's or raw
        if "no transaction is active" not in str(exc):
            raise
        first = exc.__context__  # past the failed ROLLBACK (peewee's error wraps the driver's)
        while first is not None and "no transaction is active" in str(first):
            first = first.__context__
        if isinstance(first, Exception):
            raise first from None
        raise


# PostgreSQL counts per connection (schema.postgres_job_counters); once there are this many
# rows, those of connections that are gone are folded into shard 0, keeping the sum.
_MAX_COUNTER_SHARDS = 100
_FOLD_COUNTER_SHARDS = (
    f'WITH "gone" AS (DELETE FROM "{schema.COUNTER_TABLE}" WHERE "shard" <> 0 AND "shard" '
    'NOT IN (SELECT "pid" FROM pg_stat_activity WHERE "pid" IS NOT NULL) '
    'RETURNING "state", "n") '
    f'INSERT INTO "{schema.COUNTER_TABLE}" AS c ("state", "shard", "n") '
    'SELECT "state", 0, SUM("n") FROM "gone" GROUP BY "state" '
    'ON CONFLICT ("state", "shard") DO UPDATE SET "n" = c."n" + EXCLUDED."n"'
)

JOB_TIMEOUT = "job-timeout"
_COLUMN_NAMES = tuple(field.name for field in Job._meta.sorted_fields)
_INSERTED = (
    "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
    "created_at", "updated_at", "cwd",
)  # fmt: skip; the keys, in order, of the rows enqueue_many builds


def _setting(key: str, stored: object) -> int | float:
    """A stored config value as its key parses it; its default if none is stored, or if what is
    stored does not parse (set by hand, or under other bounds): better than failing every job
    run (and `config list`) until someone sets it again."""
    if stored is None:
        return config_keys.KEYS[key].default
    try:
        return config_keys.KEYS[key].parse(stored)  # type: ignore[arg-type]
    except InvalidInput:
        return config_keys.KEYS[key].default


def _claimed(row: Sequence[object]) -> Job:
    """The Job a claim's row holds (its columns, then the config `job-timeout` it read)."""
    job = _job(dict(zip(_COLUMN_NAMES, row)))
    job.configured_timeout = _setting(JOB_TIMEOUT, row[len(_COLUMN_NAMES)])
    return job


def _job(data: dict[str, object]) -> Job:
    """A Job holding ``data`` as stored (what peewee's row-to-model path gives, at a tenth of
    its cost: Model.__init__ sets each field through its descriptor)."""
    job = Job(__no_default__=1)
    job.__data__.update(data)
    return job


def _integrity_errors(db: peewee.Database) -> tuple[type[Exception], ...]:
    """The driver's own duplicate-key errors (a raw cursor's errors are not peewee's)."""
    if isinstance(db, peewee.SqliteDatabase):
        import sqlite3

        return (sqlite3.IntegrityError,)
    import psycopg

    return (psycopg.errors.IntegrityError,)


class _Statements:
    """The SQL of the per-job hot path (enqueue, claim, finish), built once per Queue. Same
    statements as the peewee queries they replace, written once as text."""

    def __init__(self, param: str, is_sqlite: bool) -> None:
        self.param = param
        self.is_sqlite = is_sqlite
        columns = ", ".join(f'"{field.column_name}"' for field in Job._meta.sorted_fields)
        # A claim also reads the config `job-timeout` the run will get (SPEC: read as the run
        # starts): a statement fewer per job than asking for it next.
        columns += f', (SELECT "value" FROM "config" WHERE "key" = \'{JOB_TIMEOUT}\')'
        indexed = ' INDEXED BY "job_claim_order"' if is_sqlite else ""
        skip_locked = "" if is_sqlite else " FOR UPDATE SKIP LOCKED"
        def next_due(now: str) -> str:
            return (
                f'(SELECT "seq" FROM "job"{indexed} WHERE {_CLAIMABLE_SQL.sql} AND "run_at" <= '
                f'{now} ORDER BY "priority" DESC, "run_at", "seq" LIMIT 1{skip_locked})'
            )

        self.claim = (
            f'UPDATE "job" SET "state" = \'processing\', "attempts" = "attempts" + 1, '
            f'"worker" = {param}, "started_at" = {param}, "updated_at" = {param} '
            f'WHERE "seq" = {next_due(param)} RETURNING {columns}'
        )
        # SQLite: a run that succeeded is stored and the next job claimed by one statement
        # (atomic on its own: no BEGIN, no COMMIT, a fifth of a busy worker's statements).
        # It is finish()'s same-run update and claim() above, row by row. Parameters: ?1 the
        # finished job's seq, ?2 the worker, ?3 now, ?4 exit code, ?5 output, ?6 and ?7 the
        # run's attempts and started_at.
        done = '"seq" = ?1'
        # The finished job's output is not read back: the caller has it, and it can be 1 MiB.
        returning = columns.replace('"output"', f'CASE WHEN {done} THEN NULL ELSE "output" END')
        self.complete_and_claim = None if not is_sqlite else (
            f'UPDATE "job" SET '
            f'"state" = CASE WHEN {done} THEN \'completed\' ELSE \'processing\' END, '
            f'"attempts" = "attempts" + CASE WHEN {done} THEN 0 ELSE 1 END, "worker" = ?2, '
            f'"started_at" = CASE WHEN {done} THEN "started_at" ELSE ?3 END, '
            f'"finished_at" = CASE WHEN {done} THEN ?3 ELSE "finished_at" END, '
            f'"exit_code" = CASE WHEN {done} THEN ?4 ELSE "exit_code" END, '
            f'"error" = CASE WHEN {done} THEN NULL ELSE "error" END, '
            f'"output" = CASE WHEN {done} THEN ?5 ELSE "output" END, "updated_at" = ?3 '
            f'WHERE "seq" IN (?1, {next_due("?3")}) AND (NOT {done} OR ("state" = '
            f'\'processing\' AND "worker" IS ?2 AND "attempts" = ?6 AND "started_at" IS ?7)) '
            f"RETURNING {returning}"
        )  # fmt: skip
        names = ", ".join(f'"{name}"' for name in _INSERTED)
        values = ", ".join([param] * len(_INSERTED))
        self.insert = f'INSERT INTO "job" ({names}) VALUES ({values})'
        self.count_inserted = (
            f'UPDATE "{schema.COUNTER_TABLE}" SET "n" = "n" + {param} WHERE "state" = \'pending\''
        )
        self._same_run: dict[tuple[str, ...], str] = {}

    def same_run_update(self, columns: tuple[str, ...]) -> str:
        """UPDATE of ``columns`` of the job (seq, worker) still processing there, in the same
        run (attempts, started_at): a worker presumed lost that claimed the job again must not
        store its old run's result over the new run."""
        sql = self._same_run.get(columns)
        if sql is None:
            assignments = ", ".join(f'"{name}" = {self.param}' for name in columns)
            same = "IS" if self.is_sqlite else "IS NOT DISTINCT FROM"
            sql = self._same_run[columns] = (
                f'UPDATE "job" SET {assignments} WHERE "seq" = {self.param} '
                f"AND \"state\" = 'processing' AND \"worker\" {same} {self.param} "
                f'AND "attempts" = {self.param} AND "started_at" {same} {self.param}'
            )
        return sql


__all__ = ["CLAIMABLE", "Queue", "check_state", "new_id", "backoff_delay"]
