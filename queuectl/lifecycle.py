"""A job's lifecycle rules, in one place: enqueue, claim, finish (completed, or failed and retried
with backoff, or dead), release after a hard stop, and the DLQ's retry (SPEC 3 and 4)."""

from __future__ import annotations

import base64
import collections
import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

import peewee

from . import schema
from .core import setting
from .db import WaitAbandoned
from .errors import InvalidInput, QueueError
from .models import DEFAULT_QUEUE, READY, READY_QUEUE_INDEX, Job, State, ready_queues
from .reading import Reading, storable
from .spec import JobSpec, current_directory
from .statements import (
    COLUMN_NAMES, ENDED_AS_CANCELLED, JOB_TIMEOUT, completed_run, held_queues, queue_filter,
)

# SQLite: a claim that took this long waited for the write lock (see _started_when_claimed).
LATE_CLAIM_S = 0.05

if TYPE_CHECKING:  # the executor (subprocess, signal) is the worker's, not an enqueue's
    from .executor import RunResult

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base 32: no i, l, o, u
ID_LENGTH = 12
MAX_BACKOFF_S = 1e9  # ~31 years: backoff_base ** attempts is capped here, never overflows
_INSERT_BATCH = 500
_READ_CHUNK = 500  # keys in one `IN (...)` list of a read

_T = TypeVar("_T")

_B32_TO_ID = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ID_ALPHABET.encode())


def new_id() -> str:
    """A random id, short enough to type, long enough (60 bits) never to collide in practice."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """``count`` ids from one read of the OS's random source: 15 random bytes are 24 base-32
    digits, two ids (drawing digit by digit was a third of a bulk enqueue's time)."""
    pairs = (count + 1) // 2
    digits = base64.b32encode(os.urandom(15 * pairs)).translate(_B32_TO_ID).decode()
    return [digits[start : start + ID_LENGTH] for start in range(0, ID_LENGTH * count, ID_LENGTH)]


def backoff_delay(base: float, attempts: int) -> float:
    """Seconds before retry number ``attempts``: ``base ** attempts``, capped (SPEC 3)."""
    try:
        return min(float(base) ** attempts, MAX_BACKOFF_S)
    except OverflowError:
        return MAX_BACKOFF_S


class Lifecycle(Reading):
    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(self, spec: JobSpec | str) -> Job:
        if isinstance(spec, str):
            spec = JobSpec(command=spec)
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Enqueue all of ``specs`` in one transaction, or none of them."""
        rows, links = self._enqueue_rows(specs)
        return self._enqueued(rows, links)

    def enqueue_ids(self, specs: Sequence[JobSpec]) -> list[str]:
        """:meth:`enqueue_many`, giving the new jobs' ids only: a large `enqueue --file` holds
        no Job for each of its lines (a Job cost ~850 bytes of the ~1.9 KB a line took)."""
        rows, _ = self._enqueue_rows(specs)
        return [row["id"] for row in rows]

    def _enqueue_rows(self, specs: Sequence[JobSpec]) -> tuple[list[dict], object]:
        """The rows inserted for ``specs``, in one transaction, and their dependencies' links
        (see :meth:`_insert`)."""
        rows = self._new_rows(specs)
        try:
            with self._write():
                links = self._insert(specs, rows)
                self._announce()
        except (peewee.IntegrityError, *_integrity_errors(self.db)):
            # Another process took one of the ids between our check and our insert.
            raise InvalidInput("duplicate id: a job with it exists") from None
        self._notify()
        return rows, links

    def _new_rows(self, specs: Sequence[JobSpec], schedule: str | None = None) -> list[dict]:
        """The rows that enqueue ``specs`` (see INSERTED)."""
        now = self.clock()
        here = None if all(spec.cwd for spec in specs) else current_directory()
        rows = []
        ids = iter(new_ids(sum(1 for spec in specs if not spec.id)))
        for spec in specs:
            cwd = spec.cwd or here
            run_at = spec.run_at if spec.run_at is not None else now + (spec.delay or 0.0)
            rows.append(
                {
                    "id": spec.id or next(ids),
                    "command": spec.command,
                    "state": State.PENDING.value,
                    "attempts": 0,
                    "max_retries": spec.max_retries,
                    "priority": spec.priority or 0,
                    "timeout": spec.timeout,
                    "run_at": run_at,
                    "created_at": now,
                    "updated_at": now,
                    "cwd": cwd,
                    "queue": spec.queue or DEFAULT_QUEUE,
                    "schedule": schedule,
                    "waiting_on": 0,
                    # A job given a time already past is due from its enqueue: it cannot have
                    # waited for a worker before it existed (QA: `--run-at 2020-01-01` made
                    # stats' waits and the oldest-waiting age years long).
                    "ready_at": now if run_at < now else None,
                }
            )
        return rows

    def _insert(self, specs: Sequence[JobSpec], rows: list[dict]) -> object:
        """Insert ``rows`` (made from ``specs``), inside the caller's write transaction. Returns
        what :meth:`_enqueued` needs to finish the jobs (their dependencies), or None."""
        given = [spec.id for spec in specs if spec.id]
        seen: set[str] = set()
        for job_id in given:
            if job_id in seen:
                raise InvalidInput(f"duplicate id {job_id!r}")
            seen.add(job_id)
        Job = self.models.Job
        for chunk in peewee.chunked(given, _INSERT_BATCH):
            taken = Job.select(Job.id).where(Job.id.in_(chunk)).limit(1).scalar()
            if taken is not None:
                raise InvalidInput(f"duplicate id {taken!r}: a job with it exists")
        # Dependencies (SPEC 7) are resolved first: an unknown one changes nothing.
        links = self._resolve_after(specs, rows) if any(spec.after for spec in specs) else None
        # One prepared statement run per row (executemany): peewee's insert_many spent
        # most of a large `enqueue --file` building SQL text. A raw cursor raises the
        # driver's errors: wrapped, they are peewee's like the rest (a read-only file or
        # a full disk is then one CLI error line, no traceback).
        with peewee.__exception_wrapper__:
            if self.is_sqlite:  # the new rows' seqs follow it (one writer at a time)
                last = self.db.execute_sql('SELECT MAX("seq") FROM "job"').fetchone()[0]
            if self.is_sqlite:
                # (The rows' values as they go: a list of them cost ~160 bytes a job more.)
                self.db.cursor().executemany(self._sql.insert,
                                             (tuple(row.values()) for row in rows))  # fmt: skip
            else:
                # Many rows a statement: PostgreSQL counts the jobs inserted per statement (the
                # schema's transition tables). A statement a row updated one counter row once a
                # job in one transaction, each update walking that row's versions before it: 40,000
                # lines took 7.6 times as long as 10,000 (QA).
                cursor = self.db.cursor()
                for chunk in peewee.chunked(rows, _INSERT_BATCH):
                    cursor.execute(self._sql.insert_rows(len(chunk)),
                                   [value for row in chunk for value in row.values()])  # fmt: skip
            if self.is_sqlite:  # counted here, not by a trigger per row (schema 4)
                counted = collections.Counter((row["queue"], row["state"]) for row in rows)
                self.db.cursor().executemany(
                    self._sql.count_inserted, [(*key, n) for key, n in counted.items()]
                )
                # and their history too (schema 8)
                self.db.execute_sql(schema.SQLITE_ENQUEUED, (last or 0,))
        if links is not None:
            self._link_after(rows, links)
        return links

    def _resolve_after(self, specs: Sequence[JobSpec], rows: list[dict]) -> object:
        """Dependencies: see :class:`queuectl.workflows.Workflows`."""
        raise InvalidInput("'after' is not supported here")

    def _link_after(self, rows: list[dict], links: object) -> None:
        """Dependencies: see :class:`queuectl.workflows.Workflows`."""

    def _enqueued(self, rows: list[dict], links: object) -> list[Job]:
        """The jobs ``rows`` made (with their dependencies, see Workflows)."""
        return [self._job(row) for row in rows]

    # -- the worker's side: claim and finish ------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: tuple[str, ...] | None = None,
        abandon: Callable[[], bool] | None = None,
    ) -> Job | None:
        """Atomically take the next due job for ``worker_id`` (of ``queues`` only, if given):
        one UPDATE ... RETURNING (atomic on its own: no transaction around it). ``abandon``:
        on SQLite, a wait for another process's write lock gives up (no job) once it says so
        (a worker's stop)."""
        with self._turn(), self._abandoning(abandon):
            try:
                row = self._claim_row(worker_id, queues)
            except WaitAbandoned:
                return None
        if row is None:
            return None
        job = self._claimed(row)
        return self._started_when_claimed(job) if self.is_sqlite else job

    def _started_when_claimed(self, job: Job) -> Job:
        """SQLite: a claim's statement takes the time it stamps before it waits for the write
        lock (another process's, held for up to the busy timeout). When it waited, its job's
        start is moved to when the claim was made: a 1 s job read 8.7 s in `show`, `stats` and
        the run-time histogram after another process held the lock 8 s."""
        now = self.clock()
        if now - (job.started_at or now) < LATE_CLAIM_S:
            return job  # the usual case: nothing waited
        Job = self.models.Job
        with self._turn():
            moved = Job.update(started_at=now, updated_at=now).where(
                Job.seq == job.seq, Job.state == State.PROCESSING, Job.worker == job.worker,
                Job.attempts == job.attempts, Job.started_at == job.started_at,
            ).execute()  # fmt: skip
        if moved:
            job.started_at = job.updated_at = now
        return job

    def _claim_row(
        self, worker_id: str, queues: tuple[str, ...] | None = None
    ) -> tuple[object, ...] | None:
        now = self.clock()
        claim, _ = self._claims(queues)
        return self.db.execute_sql(claim, (worker_id, now)).fetchone()

    def _claims(self, queues: tuple[str, ...] | None) -> tuple[str, str | None]:
        """The claim and the complete-and-claim of a worker of ``queues`` (Statements.claims)."""
        return self._sql.claims(queues)

    def finish(
        self, job: Job, result: RunResult, worker_id: str, ended_at: float | None = None
    ) -> Job | None:
        """Store a run's result: completed, or a failure decided by the retry rules. The run
        ended at ``ended_at`` (this queue's clock; default: now), its ``finished_at``: a result
        stored late, after an outage, keeps the run's own time.

        Returns the job as stored, or None when ``worker_id`` no longer held it (it was
        rescued from a worker presumed dead); the result is then dropped.
        """
        if result.ok:
            with self._turn():  # one UPDATE: atomic without BEGIN/COMMIT around it
                return self._store_result(job, result, worker_id, ended_at)
        with self._write():
            return self._store_result(job, result, worker_id, ended_at)

    def finish_and_claim(
        self,
        job: Job,
        result: RunResult,
        worker_id: str,
        queues: tuple[str, ...] | None = None,
        ended_at: float | None = None,
        abandon: Callable[[], bool] | None = None,
    ) -> tuple[Job | None, Job | None]:
        """:meth:`finish`, then :meth:`claim` in the same transaction: a busy worker commits
        once a job, not twice. Returns (the job as stored or None, the next job or None).
        ``abandon``: as for :meth:`claim`; given up, the result is stored alone."""
        try:
            with self._abandoning(abandon):
                one = self._one_statement(job, queues) if result.ok else None
                if one is not None:
                    return self._complete_and_claim(job, result, worker_id, *one, ended_at)
                with self._write():
                    stored = self._store_result(job, result, worker_id, ended_at)
                    row = self._claim_row(worker_id, queues)
        except WaitAbandoned:  # (before anything was written)
            return self.finish(job, result, worker_id, ended_at), None
        return stored, None if row is None else self._claimed(row)

    def _abandoning(self, abandon: Callable[[], bool] | None) -> AbstractContextManager[None]:
        if abandon is None or not self.is_sqlite:
            return contextlib.nullcontext()
        return self.db.abandoning(abandon)

    def _one_statement(
        self, job: Job, queues: tuple[str, ...] | None
    ) -> tuple[str, AbstractContextManager[object]] | None:
        """The statement that stores ``job``'s successful run and claims the next job (of
        ``queues``) in one, and the transaction it runs in (none: it is atomic on its own); None
        where the two take a statement each (see Workflows: on PostgreSQL while a queue has a
        limit)."""
        statement = self._claims(queues)[1]
        if job.has_dependents is False:  # PostgreSQL, as its claim saw it (see Statements)
            statement = self._sql.lean_complete_and_claim(queues)
        return None if statement is None else (statement, contextlib.nullcontext())

    def _complete_and_claim(
        self,
        job: Job,
        result: RunResult,
        worker_id: str,
        statement: str,
        within: AbstractContextManager[object],
        ended_at: float | None,
    ) -> tuple[Job | None, Job | None]:
        now = self.clock()
        with self._turn(), within:
            rows = self.db.execute_sql(
                statement,
                (job.seq, worker_id, now, result.exit_code, result.output, job.attempts,
                 job.started_at, result.output_bytes, now if ended_at is None else ended_at),
            ).fetchall()  # fmt: skip
        stored = following = None
        for row in rows:
            updated = self._claimed(row)
            # By its state, not its seq: PostgreSQL's statement may claim, as a new run, the
            # job whose old run it did not store (taken from this worker, and due again).
            if row[_STATE_AT] != State.PROCESSING:
                updated.output = result.output  # as stored (not read back, see Statements)
                updated.configured_timeout = job.configured_timeout  # read at its own claim
                stored = updated
            else:
                following = updated
        if stored is not None and stored.state == State.CANCELLED:
            self._ended_cancelled(stored.seq)
        if following is not None and self.is_sqlite:
            following = self._started_when_claimed(following)
        return stored, following

    def _store_result(
        self, job: Job, result: RunResult, worker_id: str, ended_at: float | None
    ) -> Job | None:
        now = self.clock()
        ended_at = now if ended_at is None else ended_at
        if result.ok:
            changes = completed_run(
                now, result.exit_code, result.output, result.output_bytes, ended_at
            )
        else:
            changes = {
                **self._failure(job, result.error or "failed"),
                "exit_code": result.exit_code,
                "output": result.output,
                "output_bytes": result.output_bytes,
                "finished_at": ended_at,
                "updated_at": now,
            }
        return self._finish(job, worker_id, changes)

    def _finish(self, job: Job, worker_id: str, changes: dict[str, object]) -> Job | None:
        """Apply a finished run's ``changes`` to ``job`` (see :meth:`_update_same_run`)."""
        stored = self._update_same_run(job, worker_id, changes)
        if stored is None:
            return None
        for key, value in changes.items():
            setattr(job, key, value)
        job.state = stored  # 'cancelled' if a user cancelled it meanwhile
        if stored == State.CANCELLED:
            if job.error is None:  # as statements.error_unless_cancelled stored it
                job.error = ENDED_AS_CANCELLED
            self._ended_cancelled(job.seq)
        return job

    def _ended_cancelled(self, seq: int) -> None:
        """A run of job ``seq`` ended cancelled: a user cancelled it while it ran (see
        statements.unless_cancelled). What follows from that is
        :class:`queuectl.control.Control`'s."""

    def _update_same_run(
        self, job: Job, worker_id: str, changes: dict[str, object]
    ) -> str | None:
        """Apply ``changes`` to ``job`` only if ``worker_id`` still runs it, in the same run (see
        Statements.same_run_update); the job's state as stored, or None if it did not."""
        rows = self.db.execute_sql(
            self._sql.same_run_update(tuple(changes)),
            (*changes.values(), job.seq, worker_id, job.attempts, job.started_at),
        ).fetchall()
        return rows[0][0] if rows else None

    def _failure(self, job: Job, error: str) -> dict[str, object]:
        """The retry rule (SPEC 3): dead once attempts reach max, else failed with backoff."""
        settings = self.config()
        limit = job.max_retries if job.max_retries is not None else settings["max-retries"]
        if job.attempts >= limit:
            return {"state": State.DEAD.value, "error": error}
        delay = backoff_delay(settings["backoff-base"], job.attempts)
        return {"state": State.FAILED.value, "error": error, "run_at": self.clock() + delay}

    def release(self, job: Job, worker_id: str, result: RunResult | None = None) -> bool:
        """Give a job back after a hard stop: pending again, its attempt not counted, and its
        place in the queue kept (its run_at is untouched: it was due when it was claimed); its
        next wait counts from now (ready_at), not from run_at, which would count this run in.
        ``result``: the run's, killed; its output is kept, up to its end (QA: what it printed
        after the last store of its output, ~0.75 s, was lost to `logs` and `show`)."""
        now = self.clock()
        changes: dict[str, object] = {
            "state": State.PENDING.value,
            "attempts": job.attempts - 1,  # the update applies only while attempts is unchanged
            "worker": None,
            "started_at": None,
            "updated_at": now,
            "ready_at": now,
        }
        if result is not None:
            changes["output"], changes["output_bytes"] = result.output, result.output_bytes
        with self._turn():
            updated = self._update_same_run(job, worker_id, changes)
            if updated == State.CANCELLED:  # a user cancelled it meanwhile: it ended now
                Job = self.models.Job
                Job.update(finished_at=changes["updated_at"]).where(Job.seq == job.seq).execute()
                self._ended_cancelled(job.seq)
        if updated:
            self._announce()
            self._notify()
        return bool(updated)

    def next_due_in(self, queues: tuple[str, ...] | None = None) -> float | None:
        """Seconds until the earliest ready job (of ``queues``, if given; in a queue that is
        neither paused nor at its limit) is due (0 if one is due), None if none waits."""
        with self._turn():
            if self.is_sqlite and queues is None:
                # "job_due"'s first entry while no queue has settings (nearly always); else a
                # probe per queue: "job_due" in order passed over a paused queue's backlog.
                first = self.db.execute_sql(
                    'SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM "queue_setting") THEN '
                    f'(SELECT MIN("run_at") FROM "job" INDEXED BY "job_due" WHERE {READY}) '
                    f"ELSE ({_next_due_by_queue(None, is_sqlite=True)}) END"
                ).fetchone()[0]
            else:
                sql = _next_due_by_queue(queues, is_sqlite=self.is_sqlite)
                first = self.db.execute_sql(sql).fetchone()[0]
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
        with self._turn():
            return self.config()[JOB_TIMEOUT]

    # -- the DLQ ----------------------------------------------------------------------------

    def retry_dead(self, prefixes: Iterable[str]) -> list[Job]:
        """Put dead jobs back to pending (attempts 0, error cleared, due now). All or nothing:
        if any id is unknown, ambiguous or not dead, nothing changes."""
        Job = self.models.Job
        with self._write():
            jobs = self._locked(prefixes)  # each once (`d1 d1` printed two), as retry's
            for job in jobs:
                if job.state != State.DEAD:
                    raise QueueError(f"job {job.id} is not dead (it is {job.state})")
            self._revive(Job.seq.in_([job.seq for job in jobs]))
            jobs = self._as_left([job.seq for job in jobs])
        self._notify()
        return jobs

    def _named(self, prefixes: list[str]) -> list[Job]:
        """The jobs ``prefixes`` name, in order (as :meth:`get` finds each): whole ids read
        _READ_CHUNK to a statement, the rest one by one. A statement each made `retry` of
        10,000 ids take 23 s before it changed anything (QA)."""
        Job = self.models.Job
        whole: dict[str, Job] = {}
        named = dict.fromkeys(str(prefix) for prefix in prefixes if storable(prefix))
        for chunk in peewee.chunked(list(named), _READ_CHUNK):
            rows = Job.select(*self._list_columns()).where(Job.id.in_(chunk))  # (no output)
            whole.update((job.id, job) for job in rows)
        self._with_after(list(whole.values()))  # (as get fills them)
        return [whole[prefix] if prefix in whole else self.get(prefix) for prefix in prefixes]

    def _locked(self, prefixes: Iterable[str]) -> list[Job]:
        """The jobs ``prefixes`` name (each once, in order), read again under a row lock on
        PostgreSQL (SQLite's write transaction already excludes every other writer), so that
        the states checked are the states changed. Call inside :meth:`_write`."""
        Job = self.models.Job
        found = {job.seq: job for job in self._named(list(prefixes))}
        if self.is_sqlite or not found:
            return list(found.values())
        fresh = {
            job.seq: job
            for job in Job.select(*self._list_columns())
            .where(Job.seq.in_(list(found)))
            .order_by(Job.seq)
            .for_update()
        }
        for seq, job in found.items():  # purged between the two reads (QA: `retry` said done)
            if seq not in fresh:
                raise QueueError(f"no job {job.id!r}")
        return [fresh[seq] for seq in found]

    def retry_all_dead(self, dead_by: float | None = None) -> list[str]:
        """Every dead job back to pending, or those dead by ``dead_by`` (this queue's clock: a
        count the user was shown, the jobs that died since left out); returns their ids."""
        return self._retry_all_dead(lambda found: [job_id for _, job_id in found], dead_by)

    def retry_all_dead_jobs(self) -> list[Job]:
        """:meth:`retry_all_dead`, returning the jobs as it left them (see :meth:`_as_left`)."""
        return self._retry_all_dead(lambda found: self._as_left([seq for seq, _ in found]))

    def _retry_all_dead(
        self, report: Callable[[list[tuple[int, str]]], _T], dead_by: float | None = None
    ) -> _T:
        """Every dead job (by ``dead_by``) back to pending; what ``report`` makes of their keys
        and ids, in the same transaction."""
        Job = self.models.Job
        chosen = Job.state == State.DEAD
        if dead_by is not None:
            chosen &= Job.updated_at <= dead_by
        with self._write():
            dead = Job.select(Job.seq, Job.id).where(chosen)
            if not self.is_sqlite:  # (SQLite's write transaction holds the file already)
                # Locked, so two at once do not both list them: the second reads them again
                # once the first commits, no longer dead (QA).
                dead = dead.for_update()
            found = list(dead.tuples())
            self._revive(chosen)
            reported = report(found)
        if found:
            self._notify()
        return reported

    def _revive(
        self, where: peewee.Expression, states: tuple[State, ...] = (State.DEAD,)
    ) -> int:
        """Back to pending, as new (no error, exit code or output of the last run): the jobs of
        ``states`` that ``where`` selects; how many.
        Their open dependencies are counted again from the jobs they still name: a dependency
        purged since is gone, and does not hold a retried job forever; one that is cancelled
        would, and refuses the whole call (see Workflows) unless it is revived with them."""
        Job = self.models.Job
        chosen = (where, Job.state.in_(states))
        self._refuse_cancelled_after([seq for (seq,) in Job.select(Job.seq).where(*chosen).tuples()])
        now = self.clock()
        self._announce()
        return Job.update(
            state=State.PENDING.value,
            attempts=0,
            error=None,
            exit_code=None,
            output=None,  # the last run's (its history keeps its end): not the new run's
            output_bytes=None,
            worker=None,
            started_at=None,
            finished_at=None,
            cancel_requested_at=None,
            waiting_on=_OPEN_DEPENDENCIES,
            run_at=now,
            updated_at=now,
        ).where(*chosen).execute()

    # -- rows to jobs -----------------------------------------------------------------------

    def _with_after(self, jobs: list[Job]) -> list[Job]:
        """``jobs`` with their dependencies filled in (see Workflows.fill_after)."""
        return jobs

    def _as_left(self, seqs: Sequence[int]) -> list[Job]:
        """The jobs ``seqs``, in that order, every field, as the transaction this is called in
        left them. Read after it, one that ran at once and was purged failed the command that
        had changed it: exit 1, "no job X", its change done (QA: `dlq retry --all --json`)."""
        found = self._by_seq(seqs)
        return self._with_after([found[seq] for seq in seqs])

    def reread(self, jobs: Sequence[Job]) -> list[Job]:
        """``jobs`` as they are now, in their order; one deleted since (purged: it had
        finished) comes as it is given."""
        found = self._by_seq([job.seq for job in jobs])
        return self._with_after([found.get(job.seq, job) for job in jobs])

    def _by_seq(self, seqs: Sequence[int]) -> dict[int, Job]:
        Job = self.models.Job
        found: dict[int, Job] = {}
        for chunk in peewee.chunked(seqs, _READ_CHUNK):
            found.update((job.seq, job) for job in Job.select().where(Job.seq.in_(chunk)))
        return found

    def _refuse_cancelled_after(self, seqs: Sequence[int]) -> None:
        """Raise QueueError if one of the jobs ``seqs``, retried, would wait for good (see
        Workflows); this layer knows no dependencies."""

    def _claimed(self, row: Sequence[object]) -> Job:
        """The Job a claim's row holds (its columns, then the config `job-timeout` it read)."""
        job = self._job_of(dict(zip(COLUMN_NAMES, row)))  # zip leaves the last one out
        stored = row[_COLUMNS]
        timeout = _TIMEOUTS.get(stored, _TIMEOUTS)  # two a job: each parsed once
        if timeout is _TIMEOUTS:
            timeout = setting(JOB_TIMEOUT, stored)
            if len(_TIMEOUTS) < 16:
                _TIMEOUTS[stored] = timeout
        job.configured_timeout = timeout
        if len(row) > _HAS_DEPENDENTS_AT:  # PostgreSQL's claims
            job.has_dependents = row[_HAS_DEPENDENTS_AT]
        return job

    def _job(self, data: dict[str, object]) -> Job:
        """A Job holding ``data`` as stored (what peewee's row-to-model path gives, at a fraction
        of its cost: Model.__init__ sets each field through its descriptor)."""
        return self._job_of(dict(data))

    def _job_of(self, data: dict[str, object]) -> Job:
        """:meth:`_job`, the Job taking ``data`` itself (made for it) as its own."""
        Job = self.models.Job
        job = Job.__new__(Job)
        job.__data__ = data
        job._dirty = set()
        job.__rel__ = {}
        return job


# config `job-timeout` as stored (text) -> as parsed
_TIMEOUTS: dict[object, object] = {}
# A claim's row: the columns, then the config `job-timeout`; where the state is among them.
_COLUMNS = len(COLUMN_NAMES)
_HAS_DEPENDENTS_AT = _COLUMNS + 1  # after config `job-timeout` (see Statements.columns)
_STATE_AT = COLUMN_NAMES.index("state")


# The dependencies of the job being updated that have not completed (see Workflows).
_OPEN_DEPENDENCIES = peewee.SQL(
    '(SELECT COUNT(*) FROM "job_dep" AS "d" JOIN "job" AS "p" ON "p"."seq" = "d"."dep_seq" '
    f'WHERE "d"."job_seq" = "job"."seq" AND "p"."state" <> \'{State.COMPLETED.value}\')'
)


def _integrity_errors(db: peewee.Database) -> tuple[type[Exception], ...]:
    """The driver's own duplicate-key errors (a raw cursor's errors are not peewee's)."""
    if isinstance(db, peewee.SqliteDatabase):
        import sqlite3

        return (sqlite3.IntegrityError,)
    import psycopg

    return (psycopg.errors.IntegrityError,)


def _next_due_by_queue(queues: tuple[str, ...] | None, is_sqlite: bool = False) -> str:
    """The earliest due time of a ready job in a queue that is not held (of ``queues``, if
    given): each queue with ready jobs (the loose index scan of models.ready_queues, as
    History.oldest_waiting), then its first entry in the same index. A probe per queue that
    has ready jobs, not a pass over them. PostgreSQL's always (schema 13: no "job_due" there);
    SQLite's is told the index (it has no statistics: it took "job_state_seq", every pending
    job)."""
    table = f'"job" INDEXED BY "{READY_QUEUE_INDEX}"' if is_sqlite else '"job"'
    first = (
        f'(SELECT "run_at" FROM {table} WHERE {READY} AND "queue" = "q"."name" '
        'ORDER BY "queue", "run_at" LIMIT 1)'
    )
    return (
        f'{ready_queues(table)} SELECT MIN({first}) FROM "q" '
        f'WHERE "name" IS NOT NULL AND "name" NOT IN ({held_queues()})'
        + queue_filter(queues).replace('"queue"', '"name"')
    )
