"""Following and controlling jobs (SPEC 6): live output, cancel, retry, edit, purge and the
retention of finished jobs.

A running job is cancelled by its own worker, in whichever process or host runs it: ``cancel``
only records the request (``cancel_requested_at``), the worker's service thread sees it within a
heartbeat (:meth:`Control.cancel_requests`) and stops the run, and every end of a run stores
``cancelled`` for such a job (:func:`queuectl.statements.unless_cancelled`): the result a worker
stores, a rescue after its worker was lost, a release after a hard stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import peewee

from .db import WAL_AUTOCHECKPOINT_PAGES
from .errors import InvalidInput, JobRunning, QueueError
from .models import ACTIVE, CLAIMABLE, FINAL, STATS_EVENTS, Job, State
from .registry import Registry
from .workflows import Workflows
from .spec import (
    parse_time,
    validate_command,
    validate_int,
    validate_name,
    validate_seconds,
)

CANCEL_CHUNK = 500  # jobs in one `IN (...)` list of a cancel's updates
# What `purge` deletes unless told otherwise, and what `retention` deletes (SPEC 6).
PURGED_BY_DEFAULT: tuple[State, ...] = (State.COMPLETED, State.CANCELLED)
# Rows deleted per transaction, at most. On SQLite a batch is also sized to hold the write lock
# for about PURGE_HOLD_S (it starts small and follows the rate measured), and the purge then
# leaves the lock free for PURGE_YIELD_S. A writer of another process (a worker's claim) waits in
# SQLite's busy handler, which tries again after 1, 2, 5, 10, 15, 20, 25, 25, 25 ms: a pause
# longer than those gaps is one it wakes in. A purge that took the lock again at once kept a busy
# worker from claiming for over a second (940,000 jobs purged beside it); paused, the purge runs
# about 40 % of the time, and a worker waits for it about PURGE_HOLD_S at a time.
PURGE_BATCH = 1000
PURGE_FIRST_BATCH = 100
PURGE_HOLD_S = 0.02
PURGE_YIELD_S = 0.03
# A batch's jobs are deleted this many at a time, and on SQLite the batch commits as soon as
# PURGE_HOLD_S is spent, whatever its size: the size follows the rate of the batches before,
# and one that ran slow (a cold page, the process descheduled on a busy machine) held the lock
# up to 0.2 s, which a worker's claim waited for, and longer still (the busy handler's sleeps
# grow to 50 and 100 ms).
PURGE_CHUNK = 25
# Meanwhile the purge's own commits copy the WAL into the database file (a checkpoint) once it
# holds this many pages, well before any other writer's commit finds it full (db.py's
# WAL_AUTOCHECKPOINT_PAGES): that commit would wait for the copy and its fsync, which took a
# worker's claim up to 0.6 s beside a busy disk. SQLite checkpoints after the commit, the write
# lock already free.
PURGE_CHECKPOINT_PAGES = 1000
# A purge on SQLite reads the pages a batch will change before it takes the write lock
# (:meth:`Control._warm`): read inside the transaction, from a file larger than the page cache
# beside a disk busy with checkpoints, 25 jobs' pages took up to 0.65 s, and every other writer
# waited that long (9.4M jobs purged beside a worker). Its deletes keep the connection's
# ``secure_delete`` (ON in some builds, Debian's among them): ``FAST`` wrote ~12 % fewer WAL
# pages, but left a purged job's output readable in freed pages, and a purge is asked for to
# make it go.
# Before each batch the purge also copies the WAL into the file (a PASSIVE checkpoint, no lock a
# writer waits for) and, once the WAL holds PURGE_WAL_PAGES frames, waits (up to PURGE_WAL_WAIT_S)
# for it to start again from its beginning, as the next writer does once every frame is copied:
# a WAL left longer than WAL_AUTOCHECKPOINT_PAGES made every commit of a worker beside it run a
# checkpoint of its own, whose fsync of the file waited for the pages the purge's checkpoints had
# just written (0.7 to 3.6 s a claim, 9.4M jobs purged beside a worker).
PURGE_WAL_PAGES = WAL_AUTOCHECKPOINT_PAGES * 5 // 8
PURGE_WAL_WAIT_S = 0.5
PURGE_WAL_STEP_S = 0.005
# How long a worker's service thread spends on retention at a time (it resumes a second later).
RETENTION_BUDGET_S = 2.0

# `edit`: each option's validation, as `enqueue` does it (queuectl.spec).
_EDITS = {
    "command": validate_command,
    "priority": lambda v: validate_int("priority", v),
    "max_retries": lambda v: validate_int("max_retries", v, minimum=0),
    "timeout": lambda v: validate_seconds("timeout", v, positive=True),
    "delay": lambda v: validate_seconds("delay", v, positive=False),
    "run_at": lambda v: v if isinstance(v, float) else parse_time("run_at", v),
    "queue": lambda v: validate_name("queue", v),
}
EDITABLE = tuple(_EDITS)


class Control(Workflows, Registry):
    # -- live output ------------------------------------------------------------------------

    def store_output(self, job: Job, worker_id: str, output: str, printed: int) -> bool:
        """Store a running job's output so far (its capped tail) and how many bytes it printed,
        if ``worker_id`` still runs it in the same run; whether it did."""
        changes = {"output": output, "output_bytes": printed}
        with self._turn():  # one UPDATE: atomic without a transaction around it
            return self._update_same_run(job, worker_id, changes) is not None

    def progress(self, seq: int) -> Job | None:
        """A job's state and run, without its output: cheap enough to ask on every change
        (``logs -f`` reads :meth:`output_of` only when ``output_bytes`` moved)."""
        Job = self.models.Job
        return (
            Job.select(Job.seq, Job.id, Job.state, Job.attempts, Job.started_at, Job.output_bytes)
            .where(Job.seq == seq)
            .get_or_none()
        )

    def output_of(self, seq: int) -> Job | None:
        """A job's stored output with its state and run (see :meth:`progress`)."""
        Job = self.models.Job
        return (
            Job.select(
                Job.seq, Job.id, Job.state, Job.attempts, Job.started_at, Job.output_bytes,
                Job.output,
            )
            .where(Job.seq == seq)
            .get_or_none()
        )  # fmt: skip

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, prefixes: Iterable[str], *, running: bool = True) -> list[Job]:
        """Cancel jobs (SPEC 6): waiting ones at once; for running ones, ask their worker to
        stop them (see :meth:`wait_stopped`). All or nothing: if any id is unknown, ambiguous or
        of a finished job, nothing changes; nor if one is running and ``running`` is False
        (JobRunning: a job shown as waiting has started, and stopping it was not asked for).
        Returns the jobs as it left them (a running one still processing)."""
        Job = self.models.Job
        now = self.clock()
        with self._write():
            jobs = self._locked(prefixes)
            for job in jobs:
                if job.state in FINAL:
                    raise QueueError(f"job {job.id} is {job.state}: it cannot be cancelled")
                if job.state in ACTIVE and not running:
                    raise JobRunning(f"job {job.id} has started: it runs now")
            waiting = [job for job in jobs if job.state in CLAIMABLE]
            running = [
                job for job in jobs if job.state in ACTIVE and job.cancel_requested_at is None
            ]
            if waiting:
                from .executor import CANCELLED

                seqs = [job.seq for job in waiting]
                Job.update(
                    state=State.CANCELLED.value, error=CANCELLED, finished_at=now, updated_at=now
                ).where(Job.seq.in_(seqs), Job.state.in_(CLAIMABLE)).execute()
                self._cancelled(seqs)
                for job in waiting:  # (the jobs returned: as the cancel left them)
                    job.state, job.error = State.CANCELLED.value, CANCELLED
                    job.finished_at = job.updated_at = now
            if running:
                Job.update(cancel_requested_at=now, updated_at=now).where(
                    Job.seq.in_([job.seq for job in running]), Job.state.in_(ACTIVE)
                ).execute()
                for job in running:
                    job.cancel_requested_at = job.updated_at = now
            self._announce()
        self._notify()
        return jobs

    def _cancelled(self, seqs: list[int]) -> None:
        """Called in the transaction that cancelled the jobs ``seqs``: what follows from a
        cancel is done here (SPEC 7: the jobs that wait for them are cancelled too). A running
        job becomes cancelled where its run ends (:meth:`_ended_cancelled`)."""
        self.cancel_dependents(seqs)  # (which makes those it cancels due by their end too)
        Job = self.models.Job
        for chunk in peewee.chunked(seqs, CANCEL_CHUNK):
            self._due_by_end(Job.seq.in_(chunk))

    def _due_by_end(self, which: peewee.Expression) -> None:
        """A cancelled job is final: its ``run_at`` moved back to when it was cancelled where
        it was later. A run that ended cancelled was stored as a failure would be (the retry
        rule set ``run_at`` ahead by the backoff), and a failed or delayed job was due later:
        either showed a due time that never comes. Otherwise ``run_at`` is kept, as it is for
        the other final states."""
        Job = self.models.Job
        Job.update(run_at=Job.finished_at).where(
            which, Job.state == State.CANCELLED, Job.run_at > Job.finished_at
        ).execute()

    def _ended_cancelled(self, seq: int) -> None:
        with self._write():
            self._cancelled([seq])

    def cancel_requests(self, worker_id: str) -> list[int]:
        """The seqs of the jobs ``worker_id`` runs that a user asked to cancel: one read over
        the processing jobs (served by the (state, seq) index), asked once a heartbeat."""
        Job = self.models.Job
        query = Job.select(Job.seq).where(
            Job.state == State.PROCESSING,
            Job.worker == worker_id,
            Job.cancel_requested_at.is_null(False),
        )
        return [seq for (seq,) in query.tuples()]

    def runs_of(self, worker_id: str) -> dict[int, bool]:
        """The jobs the database says ``worker_id`` runs, by seq: whether a user asked to
        cancel each (one read over the processing jobs, as :meth:`cancel_requests`)."""
        Job = self.models.Job
        query = Job.select(Job.seq, Job.cancel_requested_at.is_null(False)).where(
            Job.state == State.PROCESSING, Job.worker == worker_id
        )
        return {seq: bool(requested) for seq, requested in query.tuples()}

    def wait_stopped(self, seqs: list[int], timeout: float) -> bool:
        """Wait until none of the jobs ``seqs`` is processing, woken by changes rather than
        polling; meanwhile, once a second, rescue the jobs of workers that are gone (a
        cancelled job's rescue makes it cancelled). Whether they all stopped in time."""
        Job = self.models.Job
        deadline = time.monotonic() + timeout
        next_rescue = time.monotonic() + 1.0
        changes = self.change_detector()
        try:
            while True:
                running = Job.select(Job.seq).where(
                    Job.seq.in_(seqs), Job.state == State.PROCESSING
                )
                if not running.exists():
                    return True
                now = time.monotonic()
                if now >= next_rescue:
                    next_rescue = now + 1.0
                    self.rescue_lost()
                if now >= deadline:
                    return False
                changes.wait(min(deadline - now, next_rescue - now, 0.5))
        finally:
            changes.close()

    # -- retry and edit ---------------------------------------------------------------------

    def retry(self, prefixes: Iterable[str]) -> list[Job]:
        """Put dead, cancelled or completed jobs back to pending: attempts 0, error cleared,
        due now (SPEC 6). All or nothing: if any id is unknown, ambiguous or of a job in
        another state, nothing changes."""
        Job = self.models.Job
        with self._write():
            jobs = self._locked(prefixes)
            for job in jobs:
                if job.state not in FINAL:
                    raise QueueError(
                        f"job {job.id} is {job.state}: only a dead, cancelled or completed job "
                        "can be retried"
                    )
            self._revive(Job.seq.in_([job.seq for job in jobs]), FINAL)
            jobs = self._as_left([job.seq for job in jobs])
        self._notify()
        return jobs

    def edit(self, prefix: str, changes: Mapping[str, Any]) -> Job:
        """Change a waiting (pending or failed) job: any of :data:`EDITABLE`, validated as
        ``enqueue`` does (``delay`` is seconds from now, for ``run_at``). Atomic against a
        claim: the job is either changed before it starts, or refused (QueueError)."""
        unknown = sorted(set(changes) - set(_EDITS))
        if unknown:
            raise InvalidInput(f"cannot edit {', '.join(map(repr, unknown))}")
        if not changes:
            raise InvalidInput(f"nothing to change: give one of {', '.join(EDITABLE)}")
        if "delay" in changes and "run_at" in changes:
            raise InvalidInput("give 'delay' or 'run_at', not both")
        values = {key: _EDITS[key](value) for key, value in changes.items()}
        now = self.clock()
        if "delay" in values:
            values["run_at"] = now + values.pop("delay")
        Job, Event = self.models.Job, self.models.Event
        with self._write():
            job = self.get(prefix)
            refused = f"job {job.id} is {{}}: only a pending or failed job can be edited"
            if job.state not in CLAIMABLE:
                raise QueueError(refused.format(job.state))
            if "run_at" in values:
                values.update(_due_from(job, values["run_at"], now))
            updated = (
                Job.update(**values, updated_at=now)
                .where(Job.seq == job.seq, Job.state.in_(CLAIMABLE))
                .execute()
            )
            if not updated:  # claimed between the read and the update (PostgreSQL)
                raise QueueError(refused.format("starting"))
            Event.insert(
                job_seq=job.seq, job_id=job.id, queue=values.get("queue", job.queue), at=now,
                event="edited", attempt=job.attempts,
            ).execute()  # fmt: skip
            self._announce()
            job = self._as_left([job.seq])[0]
        self._notify()
        return job

    # -- purge and retention ----------------------------------------------------------------

    def purge(
        self,
        states: Iterable[str] = (),
        older_than: float | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs of ``states`` (default completed and cancelled) that finished
        more than ``older_than`` seconds ago (None: any), of ``queue`` (None: every queue), with
        their history; how many. A waiting or running job is never deleted."""
        chosen = tuple(dict.fromkeys(State(state) for state in states)) or PURGED_BY_DEFAULT
        for state in chosen:
            if state not in FINAL:
                raise InvalidInput(
                    f"only finished jobs can be purged ({', '.join(FINAL)}), not {state}"
                )
        deleted, _ = self._purge(chosen, older_than, queue, budget=None)
        return deleted

    def purge_expired(self, budget: float = RETENTION_BUDGET_S) -> tuple[int, bool]:
        """Config ``retention``: delete completed and cancelled jobs older than it (0: none),
        in batches, for at most ``budget`` seconds. Returns (how many, whether more are due)."""
        retention = self.config()["retention"]
        if not retention:
            return 0, False
        return self._purge(PURGED_BY_DEFAULT, retention, None, budget)

    def _purge(
        self,
        states: tuple[State, ...],
        older_than: float | None,
        queue: str | None,
        budget: float | None,
    ) -> tuple[int, bool]:
        from .minutes import forget  # (only a purge: not on every command's path)

        Job, Event = self.models.Job, self.models.Event
        started = time.monotonic()
        where = [Job.state.in_(states)]
        if older_than is not None:
            where.append(Job.finished_at < self.clock() - older_than)
        if queue is not None:
            where.append(Job.queue == queue)
        total = 0
        size = PURGE_FIRST_BATCH if self.is_sqlite else PURGE_BATCH
        if self.is_sqlite:
            self.db.execute_sql(f"PRAGMA wal_autocheckpoint = {PURGE_CHECKPOINT_PAGES}")
        try:
            while True:
                if self.is_sqlite:
                    self._wal_room()
                    self._warm(where, size)
                with self._write():
                    began = time.monotonic()
                    batch = Job.select(Job.seq).where(*where).limit(size)
                    if not self.is_sqlite:  # a job retried meanwhile is not deleted, nor its history
                        batch = batch.for_update()
                    seqs = [seq for (seq,) in batch.tuples()]
                    done, step = 0, PURGE_CHUNK if self.is_sqlite else max(len(seqs), 1)
                    while done < len(seqs):
                        chunk = seqs[done : done + step]
                        self._purged(chunk)
                        events = Event.delete().where(Event.job_seq.in_(chunk))
                        if self.is_sqlite:  # and the stats summaries of their minutes
                            forget(self.db, chunk, events.execute)
                        else:
                            events.execute()
                        Job.delete().where(Job.seq.in_(chunk)).execute()
                        done += len(chunk)
                        if self.is_sqlite and time.monotonic() - began >= PURGE_HOLD_S:
                            break  # the lock held long enough: the rest in the next batch
                    if done:
                        self._announce()
                    held = max(time.monotonic() - began, 1e-4)
                total += done
                more = len(seqs) == size or done < len(seqs)
                if not more or (budget is not None and time.monotonic() - started >= budget):
                    break
                if self.is_sqlite:  # the next batch's size, then the other writers' turn
                    rate = done * min(2.0, PURGE_HOLD_S / held)  # jobs the hold would delete
                    size = max(PURGE_CHUNK, min(PURGE_BATCH, int(max(rate, done))))
                    self._let_writers_in(PURGE_YIELD_S)
        finally:
            if self.is_sqlite:
                self.db.execute_sql(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        if total:
            self._notify()
        return total, more

    def _warm(self, where: list[Any], size: int) -> None:
        """SQLite, before a batch takes the write lock: read the pages its DELETEs will change,
        the jobs' rows and their entries in each index a finished job is in, their history's
        rows and index entries, so that the transaction finds them in the page cache. These
        reads take no lock a writer waits for (each statement is read to its end: no read
        transaction is left open to hold a checkpoint back); the transaction selects its batch
        again, so a job retried meanwhile is not deleted. Only a speed-up: a read that fails
        (the file changed under it) leaves the rest to the transaction."""
        Job, Event = self.models.Job, self.models.Event
        job, event = Job._meta.table_name, Event._meta.table_name

        def read(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
            found = []
            for done in range(0, len(params), 500):
                chunk = params[done : done + 500]
                marks = ", ".join("?" * len(chunk))
                found += self.db.execute_sql(sql % marks, chunk).fetchall()
            return found

        try:
            rows = list(Job.select(Job.seq, Job.id, Job.state, Job.finished_at)
                        .where(*where).limit(size).tuples())  # fmt: skip
            read(f'SELECT count(*) FROM "{job}" INDEXED BY "job_id" WHERE "id" IN (%s)',
                 [id_ for _, id_, _, _ in rows])  # fmt: skip
            for state in {state for _, _, state, _ in rows}:
                mine = [row for row in rows if row[2] == state]
                read(f'SELECT count(*) FROM "{job}" INDEXED BY "job_state_seq" '
                     f"WHERE \"state\" = '{State(state)}' AND \"seq\" IN (%s)",
                     [seq for seq, *_ in mine])  # fmt: skip
                read(f'SELECT count(*) FROM "{job}" INDEXED BY "job_state_finished" '
                     f"WHERE \"state\" = '{State(state)}' AND \"finished_at\" IN (%s)",
                     [at for *_, at in mine if at is not None])  # fmt: skip
            ats = read(f'SELECT "at" FROM "{event}" WHERE "job_seq" IN (%s)',
                       [seq for seq, *_ in rows])  # fmt: skip
            read(f'SELECT count(*) FROM "{event}" INDEXED BY "job_event_window" '
                 f'WHERE {STATS_EVENTS} AND "at" IN (%s)',
                 [at for (at,) in ats])  # fmt: skip
        except peewee.DatabaseError:
            pass

    def _wal_room(self) -> None:
        """SQLite, before a batch: a PASSIVE checkpoint, then, while the WAL holds
        PURGE_WAL_PAGES frames or more, the others' turn to start it again (see PURGE_WAL_PAGES),
        a checkpoint every PURGE_WAL_STEP_S, for PURGE_WAL_WAIT_S at most."""
        deadline = time.monotonic() + PURGE_WAL_WAIT_S
        while True:
            # main's only: with no schema named, SQLite checkpoints the temp database too, and
            # on a file this process had just made (its schema's RENAME had opened the temp
            # database) that failed with "database table is locked": `purge` on a new queue.
            _, frames, _ = self.db.execute_sql("PRAGMA main.wal_checkpoint(PASSIVE)").fetchone()
            if frames < PURGE_WAL_PAGES or time.monotonic() >= deadline:
                return
            time.sleep(PURGE_WAL_STEP_S)

    def _let_writers_in(self, seconds: float) -> None:
        """Between two of a purge's transactions on SQLite: the write lock is free meanwhile."""
        time.sleep(max(seconds, 0.0))

    def _purged(self, seqs: list[int]) -> None:
        """Called in the transaction that deletes the finished jobs ``seqs``, before they go:
        the jobs waiting on one that never completed are cancelled (SPEC 7)."""
        Job, JobDep = self.models.Job, self.models.JobDep
        found = Job.select(Job.seq).where(Job.seq.in_(seqs), Job.state != State.COMPLETED)
        unfinished = [seq for (seq,) in found.tuples()]
        self.cancel_dependents(unfinished, reason="was purged")
        # Their edges say so (see JobDep.dep_seq): a retry of a job that ran after one of them
        # is refused. QA: it ran, though what it waited for had never completed.
        for chunk in peewee.chunked(unfinished, CANCEL_CHUNK):
            JobDep.update(dep_seq=JobDep.dep_seq * -1).where(JobDep.dep_seq.in_(chunk)).execute()

    # -- helpers ----------------------------------------------------------------------------


def _due_from(job: Job, run_at: float, now: float) -> dict[str, float]:
    """`edit`'s change to ``job``'s ready_at for its new ``run_at``: a time already past makes
    it due from when it was due before (it was waiting for a worker since then), or from now if
    it was not due yet; never from before. QA: a job edited to `--run-at 2026-01-01` had
    waited, said stats, since then."""
    was_due = max(job.run_at, job.ready_at or job.run_at)
    since = min(was_due, now)
    return {"ready_at": since} if since > run_at else {}
