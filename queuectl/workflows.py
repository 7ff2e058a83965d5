"""Workflows (SPEC 7): dependencies between jobs (``after``) and named queues (limits, pause).

Dependencies are edges in ``job_dep`` (job, the job it runs after). A job's ``waiting_on``
counts its dependencies that have not completed, and a claim takes only jobs at 0 (the claim's
partial indexes leave the others out, so waiting jobs cost it nothing). Triggers (schema 7)
count down the dependents of a job in the statement that completes it, count them up again when
it is retried, and write the `blocked` / `unblocked` history when a dependency dies or is
retried. A job can only name jobs that exist before it (or come before it in one batch), so
the edges never make a cycle. A dependency that is cancelled cancels its waiting dependents,
down the chain (:meth:`Workflows.cancel_dependents`).

Queues are a column of the job; a queue's settings (a limit on the jobs it runs at once,
paused) are a row of ``queue_setting``, read by the claim itself (see
:func:`queuectl.statements.held_queues`). On SQLite the claim runs in the write lock, so the
limit it counts holds. PostgreSQL's claims run side by side: a claim in a limited queue takes
that queue's settings row FOR UPDATE, counts, and claims, in one transaction
(:meth:`Workflows._claim_limited`); queues without a limit keep the one-statement claim.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import peewee

from .errors import InvalidInput, QueueError
from .lifecycle import Lifecycle
from .models import CLAIMABLE, READY, STATES, WAITING_ON_DEPENDENCY, Job, State, sql_in
from .spec import JobSpec, validate_int, validate_name
from .reading import PG_COUNTER_ROWS
from .statements import (NEAR, first_in_queue, first_unheld, not_held, queue_filter,
                         window_held)

# PostgreSQL: how long a worker trusts what it last read about limits existing (a queue just
# limited is served by the locked claim within this time; until then it is not claimed at all).
LIMITS_RECHECK_S = 1.0
LISTING_PAGE = 100  # jobs read at a time by each_job (with their output: up to 1 MiB each)
_CHUNK = 500


@dataclass
class QueueInfo:
    """One named queue (SPEC 7 `queue list`): its jobs per state, limit and pause."""

    name: str
    counts: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in STATES})
    limit: int | None = None
    paused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.counts, "limit": self.limit, "paused": self.paused}


@dataclass
class _Links:
    """The dependencies of a batch being enqueued: for row i, its dependencies as (seq of a job
    that exists, or None; index of an earlier row of the batch, or None; id)."""

    deps: dict[int, list[tuple[int | None, int | None, str]]]
    states: dict[int, str]  # seq -> state, of the jobs that exist
    seqs: dict[str, int] = field(default_factory=dict)  # id -> seq, of the batch's rows
    cancelled: bool = False


class Workflows(Lifecycle):
    # -- dependencies: enqueue -------------------------------------------------------------

    def _resolve_after(self, specs: Sequence[JobSpec], rows: list[dict]) -> _Links:
        """Each spec's ``after`` as jobs: exact ids or unique prefixes of jobs that exist or come
        earlier in ``specs``. Unknown or ambiguous: InvalidInput naming it. Sets each row's
        ``waiting_on``; on PostgreSQL the dependencies are locked (FOR SHARE) until commit, so
        none completes unseen between this count and the edges' insert. One purged between its
        look-up and its lock is unknown, as had the purge come first (counted as not completed,
        it left the new job waiting for good)."""
        earlier: dict[str, int] = {}
        ordered: list[str] = []  # earlier ids, sorted, for prefixes
        # Each reference looked up in the database once a batch: 10,000 jobs after one took
        # 10,000 look-ups (3.4 s on SQLite, 20 s for 50,000; PostgreSQL 47 s).
        looked: dict[str, Job | None | InvalidInput] = {}
        deps: dict[int, list[tuple[int | None, int | None, str]]] = {}
        for index, (spec, row) in enumerate(zip(specs, rows)):
            if spec.after:
                found: dict[tuple[int | None, int | None], str] = {}
                for ref in spec.after:
                    try:
                        seq, position, job_id = self._find_dependency(
                            ref, earlier, ordered, looked
                        )
                    except InvalidInput as exc:
                        exc.index = index  # type: ignore[attr-defined]  # the CLI names the line
                        raise
                    found.setdefault((seq, position), job_id)
                deps[index] = [(seq, position, job_id) for (seq, position), job_id in found.items()]
            earlier[row["id"]] = index
            bisect.insort(ordered, row["id"])
        existing = sorted({seq for links in deps.values() for seq, _, _ in links if seq is not None})
        states: dict[int, str] = {}
        Job = self.models.Job
        for chunk in peewee.chunked(existing, _CHUNK):
            query = Job.select(Job.seq, Job.state).where(Job.seq.in_(chunk)).order_by(Job.seq)
            if not self.is_sqlite:
                query = query.for_update("FOR SHARE")
            states.update({seq: state for seq, state in query.tuples()})
        for index, links in deps.items():
            for seq, _, job_id in links:
                if seq is not None and seq not in states:  # purged since its look-up (PG)
                    exc = InvalidInput(f"'after': no job {job_id!r}")
                    exc.index = index  # type: ignore[attr-defined]
                    raise exc
            rows[index]["waiting_on"] = sum(
                1 for seq, _, _ in links if seq is None or states.get(seq) != State.COMPLETED
            )
        return _Links(deps, states)

    def _find_dependency(
        self,
        ref: str,
        earlier: dict[str, int],
        ordered: list[str],
        looked: dict[str, Job | None | InvalidInput],
    ) -> tuple[int | None, int | None, str]:
        if ref in earlier:
            return None, earlier[ref], ref
        start = bisect.bisect_left(ordered, ref)
        in_batch = []
        for job_id in ordered[start : start + 2]:
            if job_id.startswith(ref):
                in_batch.append(job_id)
        if ref not in looked:
            try:
                looked[ref] = super().get(ref)
            except QueueError as exc:
                ambiguous = "ambiguous" in str(exc)
                looked[ref] = InvalidInput(f"'after': {exc}") if ambiguous else None
        job = looked[ref]
        if isinstance(job, InvalidInput):
            raise InvalidInput(str(job))
        if job is not None and job.id == ref:
            return job.seq, None, job.id
        matches = in_batch + ([job.id] if job is not None else [])
        if not matches:
            raise InvalidInput(f"'after': no job {ref!r}")
        if len(matches) > 1:
            raise InvalidInput(f"'after': {ref!r} is ambiguous: it matches {', '.join(matches)}")
        if job is not None:
            return job.seq, None, job.id
        return None, earlier[matches[0]], matches[0]

    def _link_after(self, rows: list[dict], links: object) -> None:
        """Store the edges of a batch just inserted (in its transaction); a job after a dead
        job is recorded as blocked, one after a cancelled job is cancelled (SPEC 7)."""
        assert isinstance(links, _Links)
        Job = self.models.Job
        wanted = {rows[index]["id"] for index in links.deps}
        wanted |= {rows[position]["id"] for deps in links.deps.values()
                   for _, position, _ in deps if position is not None}  # fmt: skip
        for chunk in peewee.chunked(sorted(wanted), _CHUNK):
            links.seqs.update(Job.select(Job.id, Job.seq).where(Job.id.in_(chunk)).tuples())
        edges = []
        blocked = []
        cancelled = set()
        now = self.clock()
        for index, deps in links.deps.items():
            row = rows[index]
            job_seq = links.seqs[row["id"]]
            dead = None
            for seq, position, job_id in deps:
                dep_seq = seq if seq is not None else links.seqs[rows[position]["id"]]
                edges.append((job_seq, dep_seq, job_id))
                state = links.states.get(dep_seq)
                if state == State.DEAD and dead is None:
                    dead = job_id
                elif state == State.CANCELLED:
                    cancelled.add(dep_seq)
            if dead is not None:
                blocked.append(dict(job_seq=job_seq, job_id=row["id"], queue=row["queue"],
                                    at=now, event="blocked", attempt=0,
                                    error=f"dependency {dead} is dead"))  # fmt: skip
        param = self.db.param
        with peewee.__exception_wrapper__:
            self.db.cursor().executemany(
                'INSERT INTO "job_dep" ("job_seq", "dep_seq", "dep_id") '
                f"VALUES ({param}, {param}, {param})",
                edges,
            )
        for chunk in peewee.chunked(blocked, _CHUNK):
            self.models.Event.insert_many(chunk).execute()
        if cancelled:
            links.cancelled = bool(self.cancel_dependents(sorted(cancelled)))

    def _enqueued(self, rows: list[dict], links: object) -> list[Job]:
        jobs = super()._enqueued(rows, links)
        if not isinstance(links, _Links):
            return jobs
        if links.cancelled:  # some were cancelled at once: read them back as they are
            Job = self.models.Job
            by_id = {job.id: job for job in Job.select().where(Job.id.in_(list(links.seqs)))}
            jobs = [by_id.get(job.id, job) for job in jobs]
        for job in jobs:
            job.seq = links.seqs.get(job.id, job.seq)
        return self.fill_after(jobs)

    # -- dependencies: reading --------------------------------------------------------------

    def fill_after(self, jobs: list[Job]) -> list[Job]:
        """Fill each job's ``after_ids`` (SPEC 7 `after`), ``waiting_for`` (those not completed),
        ``blocked_by`` (those dead) and ``purged_deps``, in one query per 500 jobs. Returns
        ``jobs``. A purged dependency is still named (the edge keeps its id), and is waited for
        no more: the job was released when it completed, or cancelled when it was purged
        without completing."""
        by_seq = {job.seq: job for job in jobs if job.seq is not None}
        found: dict[int, list[tuple[str, str]]] = {}
        for chunk in peewee.chunked(list(by_seq), _CHUNK):
            placeholders = ", ".join([self.db.param] * len(chunk))
            rows = self.db.execute_sql(
                'SELECT d."job_seq", COALESCE(p."id", d."dep_id"), p."state" FROM "job_dep" d '
                f'LEFT JOIN "job" p ON p."seq" = d."dep_seq" WHERE d."job_seq" IN ({placeholders}) '
                'ORDER BY d."job_seq", d."dep_seq"',
                chunk,
            ).fetchall()
            for job_seq, job_id, state in rows:
                if job_id is not None:  # (purged before schema 17 kept ids: nothing to name)
                    found.setdefault(job_seq, []).append((job_id, state))
        for seq, job in by_seq.items():
            deps = found.get(seq, [])
            job.after_ids = tuple(job_id for job_id, _ in deps)
            job.waiting_for = tuple(
                job_id for job_id, state in deps if state not in (State.COMPLETED, None)
            )
            job.blocked_by = tuple(job_id for job_id, state in deps if state == State.DEAD)
            job.purged_deps = tuple(job_id for job_id, state in deps if state is None)
        return jobs

    def _with_after(self, jobs: list[Job]) -> list[Job]:
        return self.fill_after(jobs)

    def _refuse_cancelled_after(self, seqs: Sequence[int]) -> None:
        """Retrying a job that runs after a cancelled one would leave it pending for good (a
        cancelled job never completes, and the cancel that cascaded to it is over): refused,
        naming the dependency, unless that one is retried in the same call. So is one that runs
        after a job purged before it completed, which nothing can bring back."""
        retried = set(seqs)
        for chunk in peewee.chunked(list(seqs), _CHUNK):
            placeholders = ", ".join([self.db.param] * len(chunk))
            # From the edges of these jobs (SQLite: CROSS JOIN keeps that order): SQLite went
            # from every cancelled job to its edges, 10,000 cancelled jobs made each chunk
            # 0.65 s (QA: `retry` of 10,000 ids and their cancelled root took 34 s).
            rows = self.db.execute_sql(
                'SELECT w."id", d."seq", d."id" FROM "job_dep" e '
                'CROSS JOIN "job" d CROSS JOIN "job" w '
                f'WHERE e."job_seq" IN ({placeholders}) AND d."seq" = e."dep_seq" '
                f'AND d."state" = {self.db.param} AND w."seq" = e."job_seq" '
                'ORDER BY e."job_seq", e."dep_seq"',
                [*chunk, State.CANCELLED.value],
            ).fetchall()
            for job_id, dep_seq, dep_id in rows:
                if dep_seq not in retried:
                    raise QueueError(
                        f"job {job_id} runs after {dep_id}, which is cancelled: retry "
                        f"{dep_id} first, or both at once"
                    )
            rows = self.db.execute_sql(
                'SELECT w."id", e."dep_id" FROM "job_dep" e JOIN "job" w ON w."seq" = e."job_seq" '
                f'WHERE e."job_seq" IN ({placeholders}) AND e."dep_seq" < 0 '
                'ORDER BY e."job_seq", e."dep_seq" LIMIT 1',
                chunk,
            ).fetchall()
            for job_id, dep_id in rows:  # (see JobDep.dep_seq)
                raise QueueError(
                    f"job {job_id} runs after {dep_id}, which was purged before it completed: "
                    f"it can never run after it (enqueue it anew without {dep_id})"
                )

    def get(self, prefix: str) -> Job:
        return self.fill_after([super().get(prefix)])[0]

    def each_job(
        self,
        state: str | Iterable[str] | None = None,
        limit: int | None = None,
        *,
        with_output: bool = True,
        queue: str | None = None,
        page: int = LISTING_PAGE,
    ) -> Iterator[Job]:
        """The jobs of :meth:`list_jobs`, read ``page`` at a time, each page a statement of its
        own: a listing of any length in bounded memory (QA: `list --json` of 200,000 jobs held
        850 MB before it printed), and no transaction held open while its reader reads (QA: in
        one snapshot, a pager stopped SQLite's checkpoints: a 158 MB WAL, workers 3× slower).
        Each job comes once; one that changes meanwhile comes as its page found it."""
        left = None if limit is None or limit >= 2**63 else limit
        below = None
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            jobs = self.list_jobs(state, size, with_output=with_output, queue=queue, below=below)
            count, below = len(jobs), jobs[-1].seq if jobs else None
            yield from jobs
            del jobs  # (not held while the next page is read)
            if count < size:
                return
            if left is not None:
                left -= count

    def list_jobs(
        self,
        state: str | Iterable[str] | None = None,
        limit: int | None = None,
        *,
        with_output: bool = True,
        queue: str | None = None,
        below: int | None = None,
    ) -> list[Job]:
        jobs = super().list_jobs(state, limit, with_output=with_output, queue=queue, below=below)
        return self.fill_after(jobs)

    def pane(self, pane: str, limit: int, last: bool = False) -> list[Job]:
        jobs = super().pane(pane, limit, last)
        return self.fill_after(jobs) if pane == "waiting" else jobs

    def dependents(self, job: Job) -> list[Job]:
        """The jobs that run after ``job`` (directly), oldest first."""
        Job, JobDep = self.models.Job, self.models.JobDep
        seqs = JobDep.select(JobDep.job_seq).where(JobDep.dep_seq == job.seq)
        return list(Job.select(*self._list_columns()).where(Job.seq.in_(seqs)).order_by(Job.seq))

    # -- dependencies: cancellation ---------------------------------------------------------

    def cancel_dependents(self, seqs: Iterable[int], reason: str = "was cancelled") -> list[str]:
        """Cancel the waiting (pending or failed) jobs that run after the jobs ``seqs``, and
        theirs, down the chain (SPEC 7): call it in the transaction that cancels ``seqs`` (or
        deletes them without their having completed, before the delete; ``reason`` then says
        so, e.g. "was purged"). Each one's ``error`` names the dependency it waited for,
        "dependency ID was cancelled". Returns the ids cancelled."""
        seqs = list(seqs)
        if not seqs:
            return []
        found = self._waiting_below(seqs)
        if not found:
            return []
        Job = self.models.Job
        names: dict[int, str] = {}
        for chunk in peewee.chunked(sorted(set(found.values()) | set(found)), _CHUNK):
            names.update(Job.select(Job.seq, Job.id).where(Job.seq.in_(chunk)).tuples())
        first = set(seqs)
        by_error: dict[str, list[int]] = {}
        for seq, via in found.items():
            why = reason if via in first else "was cancelled"
            by_error.setdefault(f"dependency {names.get(via, via)} {why}", []).append(seq)
        now = self.clock()
        # A cancelled job is due no later than it was cancelled (see Control._due_by_end), set
        # here in the same change: a second pass made each job a second row version.
        due = peewee.Case(None, [(Job.run_at > now, now)], Job.run_at)
        for error, group in by_error.items():
            for chunk in peewee.chunked(group, _CHUNK):
                Job.update(
                    state=State.CANCELLED.value, error=error, finished_at=now, updated_at=now,
                    run_at=due,
                ).where(Job.seq.in_(chunk), Job.state.in_(CLAIMABLE)).execute()
        self._announce()
        return [names[seq] for seq in sorted(found) if seq in names]

    def _waiting_below(self, seqs: list[int]) -> dict[int, int]:
        """The waiting jobs that run after the jobs ``seqs``, however far down: seq -> the
        lowest seq among the jobs it runs after that were found (or given). One statement a
        chunk of ``seqs``: a walk down the edges that takes each job once, each step's
        dependents found by the index on "dep_seq", then each one's state by the job's key.
        Then each job's edges, read by the key, say which it came from. The walk
        once went by (job, dependency) pairs: a job after 300 jobs was walked from 300 times,
        and each time all that follows it (QA: 300 jobs after a job, 300 after each of those,
        300 after each of those: 18 s)."""
        waiting = sql_in(CLAIMABLE).replace('"state"', 'j."state"')
        if self.is_sqlite:
            step = (
                'SELECT d."job_seq" FROM "job_dep" d JOIN "down" w ON d."dep_seq" = w."seq" '
                f'JOIN "job" j ON j."seq" = d."job_seq" WHERE {waiting}'
            )
        else:
            # PostgreSQL cannot know how many jobs a step finds, and left the join to its
            # planner: hashing the whole of "job_dep" at every step, a chain of 3,000 took
            # 11.8 s; with hash joins off, each of 50,000 jobs after one job was compared with
            # every edge (QA: `cancel` gave up after 30 s; the worker stored it 200 s later).
            # Each LATERAL ... OFFSET 0 is run for each row before it, so the walk goes one
            # way only: from the jobs found, by index (sequential scans off), to their
            # dependents, then to their state.
            step = (
                'SELECT x."job_seq" FROM "down" w, LATERAL (SELECT d."job_seq" FROM "job_dep" d '
                'WHERE d."dep_seq" = w."seq" OFFSET 0) x, LATERAL (SELECT 1 FROM "job" j '
                f'WHERE j."seq" = x."job_seq" AND {waiting} OFFSET 0) y'
            )
            self.db.execute_sql("SET LOCAL enable_seqscan = off")
        below: set[int] = set()
        for chunk in peewee.chunked(seqs, _CHUNK):
            given = ", ".join([self.db.param] * len(chunk))
            below.update(seq for (seq,) in self.db.execute_sql(
                'WITH RECURSIVE "down"("seq") AS ('
                'SELECT d."job_seq" FROM "job_dep" d JOIN "job" j ON j."seq" = d."job_seq" '
                f'WHERE d."dep_seq" IN ({given}) AND {waiting} UNION {step}) '
                'SELECT "seq" FROM "down"',
                chunk,
            ))  # fmt: skip
        # Each one's edges, by the key, from the jobs found or given (a test of membership in
        # the walk's result was a scan of it for each edge on PostgreSQL: 4.6 s for 180,000).
        sources = below | set(seqs)
        found: dict[int, int] = {}
        for chunk in peewee.chunked(sorted(below), _CHUNK):
            placeholders = ", ".join([self.db.param] * len(chunk))
            for seq, via in self.db.execute_sql(
                f'SELECT "job_seq", "dep_seq" FROM "job_dep" WHERE "job_seq" IN ({placeholders})',
                chunk,
            ):
                if via in sources and via < found.get(seq, via + 1):
                    found[seq] = via
        if not self.is_sqlite:  # back to the planner's own choice for the rest of the transaction
            self.db.execute_sql("RESET enable_seqscan")
        return found

    # -- queues ----------------------------------------------------------------------------

    def queues(self) -> list[QueueInfo]:
        """Every queue that has jobs or settings, by name: counts per state (the counters,
        schema 18), limit, paused."""
        QueueSetting = self.models.QueueSetting
        found: dict[str, QueueInfo] = {}
        for (name, state), count in self.counts_by_queue().items():
            if count == 0:  # (a queue whose jobs were all purged keeps its counters' rows)
                continue
            info = found.setdefault(name, QueueInfo(name))
            if state in info.counts:
                info.counts[state] = count
        for setting in QueueSetting.select():
            info = found.setdefault(setting.name, QueueInfo(setting.name))
            info.limit, info.paused = setting.max_running, bool(setting.paused)
        return [found[name] for name in sorted(found)]

    def held_queues(self) -> dict[str, str]:
        """The queues whose jobs no worker claims until a user acts, each with why ("paused",
        "limit 0"): a read of the few queues that have settings."""
        QueueSetting = self.models.QueueSetting
        rows = (
            QueueSetting.select(QueueSetting.name, QueueSetting.paused)
            .where(QueueSetting.paused | (QueueSetting.max_running == 0))
            .tuples()
        )
        return {name: "paused" if paused else "limit 0" for name, paused in rows}

    def queue_counts(self, name: str) -> dict[str, int]:
        """Jobs per state of the queue ``name`` (SPEC 7 `status --queue`): its counters."""
        totals = dict.fromkeys(STATES, 0)
        for (queue, state), count in self.counts_by_queue().items():
            if queue == name and state in totals:
                totals[state] = count
        return {str(state): count for state, count in totals.items()}

    def set_queue_limit(self, name: str, limit: int | None) -> QueueInfo:
        """At most ``limit`` jobs of queue ``name`` processing at once (None: no limit)."""
        name = validate_name("queue", name)
        if limit is not None:
            limit = validate_int("limit", limit, minimum=0)
        return self._set_queue(name, max_running=limit)

    def pause_queue(self, name: str) -> QueueInfo:
        """No job of queue ``name`` is claimed until it is resumed (running ones finish)."""
        return self._set_queue(validate_name("queue", name), paused=True)

    def resume_queue(self, name: str) -> QueueInfo:
        return self._set_queue(validate_name("queue", name), paused=False)

    def _set_queue(self, name: str, **changes: object) -> QueueInfo:
        QueueSetting = self.models.QueueSetting
        with self._write():
            # The row first, then read under its lock: on PostgreSQL two `queue pause` at once
            # both read no row and both inserted it (one failed on the key), and a pause and a
            # limit at once could each write the other's value back.
            found = QueueSetting.select().where(QueueSetting.name == name)
            if not self.is_sqlite:
                found = found.for_update()
            setting = None
            while setting is None:  # (the row may go, back to the defaults, as it is locked)
                QueueSetting.insert(name=name, max_running=None, paused=False).on_conflict_ignore(
                ).execute()  # fmt: skip
                setting = found.get_or_none()
            values = {"max_running": setting.max_running, "paused": bool(setting.paused)}
            values.update(changes)
            if values["max_running"] is None and not values["paused"]:
                # The defaults need no row: the claim reads one table fewer rows.
                QueueSetting.delete().where(QueueSetting.name == name).execute()
            else:
                QueueSetting.update(**values).where(QueueSetting.name == name).execute()
            self._announce()
        # This process sees its own change at once; other processes' pools at their next claim
        # that finds nothing while a job is due (WorkerPool._idle_timeout).
        self.forget_limits()
        self._notify()
        return QueueInfo(name, self.queue_counts(name), values["max_running"],  # type: ignore[arg-type]
                         bool(values["paused"]))  # fmt: skip

    def drained(self, queues: tuple[str, ...] | None = None) -> bool:
        """Nothing left that a worker (of ``queues``, if given) could run now or later: no job
        processing, none ready, and none waiting for a job that runs or is ready (SPEC 4
        `--burst`). Jobs waiting for a dependency that cannot complete unless a user acts (it is
        dead, or waits for one that is), and jobs of paused queues (or limited to 0) do not
        count.

        One statement, so one snapshot: read one after the other, a job claimed between the
        two reads was in neither (not processing yet, then no longer ready), and a `--burst`
        worker stopped with its first job's retry still to come (the suite, once)."""
        only = queue_filter(queues)
        processing = f"\"state\" = '{State.PROCESSING.value}'"
        ready = (
            f'{READY} AND "queue" NOT IN (SELECT "name" FROM "queue_setting" '
            'WHERE "paused" OR "max_running" = 0)'
        )
        statement = (
            f'SELECT EXISTS (SELECT 1 FROM "job" WHERE {processing}{only}) '
            f'OR EXISTS (SELECT 1 FROM "job" WHERE {ready}{only})'
        )
        if queues is not None:
            # A job of these queues that waits for jobs of other queues is left while one of
            # them (or a job they wait for, however far up) runs or is ready: `--burst --queue
            # B` exited while a job of B waited for one that another worker was running (QA).
            statement = (
                'WITH RECURSIVE "up" ("seq") AS ('
                'SELECT "dep_seq" FROM "job_dep" JOIN "job" ON "job"."seq" = "job_seq" '
                f'WHERE {WAITING_ON_DEPENDENCY}{only} '
                'UNION SELECT "job_dep"."dep_seq" FROM "up" '
                'JOIN "job" ON "job"."seq" = "up"."seq" '
                'JOIN "job_dep" ON "job_dep"."job_seq" = "up"."seq" '
                f"WHERE \"state\" <> '{State.COMPLETED.value}') "
                f'{statement} OR EXISTS (SELECT 1 FROM "up" JOIN "job" ON "job"."seq" = "up"."seq" '
                f"WHERE {processing} OR ({ready}))"
            )
        (left,) = self.db.execute_sql(statement).fetchone()
        return not left

    # -- PostgreSQL: claims in limited queues ----------------------------------------------

    def _claim_row(
        self, worker_id: str, queues: tuple[str, ...] | None = None
    ) -> tuple[object, ...] | None:
        if self.is_sqlite:
            return super()._claim_row(worker_id, queues)
        limits, paused_backlog = self._settings_in_use()
        if not (limits or paused_backlog):
            self._with_sorts_again()
            return super()._claim_row(worker_id, queues)
        if limits:
            with self._planned_without_sorts():
                return self._claim_limited(worker_id, queues)
        with self._without_sorts():
            claim = self._sql.held_claim(queues, near=not self._window_held(queues))
            return self.db.execute_sql(claim, (worker_id, self.clock())).fetchone()

    def _claims(self, queues: tuple[str, ...] | None) -> tuple[str, str | None]:
        if not self.is_sqlite:  # (its claims past held queues: see _claim_row, _one_statement)
            return super()._claims(queues)
        return self._sql.claims(queues, near=not self._window_held(queues))

    def _window_held(self, queues: tuple[str, ...] | None) -> bool:
        """Whether some queue has settings and the first NEAR ready jobs in claim order (of
        ``queues``) are all held (statements.window_held), as read at most LIMITS_RECHECK_S ago
        (or since :meth:`forget_limits`). While they are, a claim looks at each queue's first
        job at once, not at those NEAR first (#17, see statements.unheld_queue). Read afresh
        each second, a backlog held or let go since costs the claims its way for that second at
        most: the window's steps, or a probe a queue. (PostgreSQL: read planned without sorts,
        as its claims past a paused backlog are.)"""
        now = time.monotonic()
        read = self._windows_read.get(queues)
        if read is not None and now < read[0] + LIMITS_RECHECK_S:
            return read[1]
        sql = window_held(self._sql.param, queue_filter(queues), is_sqlite=self.is_sqlite)
        with contextlib.nullcontext() if self.is_sqlite else self._without_sorts():
            (held,) = self.db.execute_sql(sql, (self.clock(),)).fetchone()
        self._windows_read[queues] = (now, bool(held))
        return bool(held)

    @functools.cached_property
    def _windows_read(self) -> dict[tuple[str, ...] | None, tuple[float, bool]]:
        return {}

    @contextlib.contextmanager
    def _planned_without_sorts(self) -> Iterator[None]:
        """PostgreSQL: a transaction whose statements are planned without sorts. Each held
        queue's backlog is passed by a probe per queue (statements.first_unheld), in an index's
        order. Planned with statistics taken while few jobs were ready (a queue's table changes
        faster than they are taken), PostgreSQL read every entry of an index and sorted them
        instead (QA: 25 ms a claim past 20,000 paused jobs). The cost that keeps sorts out would
        also make it compile the plans (JIT, ~0.3 s)."""
        with self.db.atomic():
            self.db.execute_sql(
                "SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)"
            )
            yield

    @contextlib.contextmanager
    def _without_sorts(self) -> Iterator[None]:
        """PostgreSQL: where a held claim's one statement (the claim, the complete-and-claim
        past a paused backlog) runs planned without sorts, as :meth:`_planned_without_sorts`
        plans. Outside a transaction, in no transaction of its own: this connection's session
        plans so from the first such claim on (a statement, once), until the claims need it no
        longer (:meth:`_with_sorts_again`). The transaction around each claim cost three round
        trips more (BEGIN, the settings, COMMIT) than its statement's one: past 20,000 paused
        jobs the claims ran at 0.46-0.49x their rate with one job paused, 0.67-0.72x without
        that transaction (#17, 3 other queues, `python -m tests.bench --only held`, two runs
        each way)."""
        if self.db.in_transaction():  # (a result stored in the transaction of its claim)
            with self._planned_without_sorts():
                yield
            return
        connection = self.db.connection()
        if connection not in self._sessions_without_sorts:
            self.db.execute_sql(
                "SELECT set_config('enable_sort', 'off', false), set_config('jit', 'off', false)"
            )
            self._sessions_without_sorts.add(connection)
        yield

    def _with_sorts_again(self) -> None:
        """PostgreSQL: this connection's session planned as configured again, once its claims
        no longer pass a paused backlog (the other statements it runs meanwhile are planned
        without sorts too: a heartbeat, a result stored, each by its key)."""
        if not self._sessions_without_sorts or self.db.in_transaction():
            return
        connection = self.db.connection()
        if connection in self._sessions_without_sorts:
            self.db.execute_sql(
                "SELECT set_config(name, reset_val, false) FROM pg_settings "
                "WHERE name IN ('enable_sort', 'jit')"
            )
            self._sessions_without_sorts.discard(connection)

    @functools.cached_property
    def _sessions_without_sorts(self) -> weakref.WeakSet[object]:
        """PostgreSQL: the connections whose session plans without sorts (see _without_sorts;
        a connection made anew, after an outage, plans as configured)."""
        return weakref.WeakSet()

    def _one_statement(
        self, job: Job, queues: tuple[str, ...] | None
    ) -> tuple[str, AbstractContextManager[object]] | None:
        """PostgreSQL: the claim statements (the claim, the complete-and-claim: see Statements)
        leave limited queues alone, so while some queue has a limit a job is claimed by
        :meth:`_claim_limited` (after a run, in the transaction that stores its result): in
        claim order across every queue, a limited queue's running jobs counted afresh under
        its lock. (Claimed by the statement when it found a job, the next job was the first of
        the queues without a limit: QA saw a limited queue's priority-10 jobs wait behind 40
        of priority 0.)

        And while paused queues hold NEAR jobs or more, the complete-and-claim passes them by a
        probe per queue (Statements.held_complete_and_claim), planned without sorts: the usual
        one passes over them entry by entry. The usual one keeps its simpler form so that, with
        no such backlog (nearly always), it does not set up the probes' plan at every run (~5%
        of a run's time here). A job that had dependents is stored, and the next claimed, by a
        statement each (the held claim does not also look among the finished job's dependents)."""
        if self.is_sqlite:
            return super()._one_statement(job, queues)
        limits, paused_backlog = self._settings_in_use()
        if limits:
            return None
        if not paused_backlog:
            self._with_sorts_again()
            return super()._one_statement(job, queues)
        if job.has_dependents is not False:
            return None
        near = not self._window_held(queues)
        return self._sql.held_complete_and_claim(queues, near), self._without_sorts()

    def forget_limits(self) -> None:
        """The next claim reads whether any queue has a limit or a paused backlog afresh: a
        queue's settings changed here, or a claim found nothing while a job was due (a limit
        set elsewhere: the claim statement leaves limited queues out). Read at most once a
        second, a limit set elsewhere left the queue's jobs unclaimed for up to that second
        (QA: 0.38-0.85 s). So does whether the first entries in claim order are held
        (:meth:`_window_held`)."""
        self._limits_read_at = -LIMITS_RECHECK_S
        self._windows_read.clear()

    def _settings_in_use(self) -> tuple[bool, bool]:
        """Whether some queue has a limit, and whether paused queues hold NEAR jobs or more
        (waiting, as counted), as read at most LIMITS_RECHECK_S ago (or since
        :meth:`forget_limits`). A pause set elsewhere is held at once all the same (every
        claim leaves paused queues out): until it is read here, claims pass its backlog the
        slow way."""
        now = time.monotonic()
        if now >= getattr(self, "_limits_read_at", -LIMITS_RECHECK_S) + LIMITS_RECHECK_S:
            self._settings = self.db.execute_sql(
                'SELECT EXISTS (SELECT 1 FROM "queue_setting" WHERE "max_running" IS NOT NULL), '
                f'COALESCE((SELECT SUM("r"."n") FROM ({PG_COUNTER_ROWS}) AS "r" '
                'JOIN "queue_setting" AS "s" ON "s"."name" = "r"."queue" WHERE "s"."paused" '
                f'AND "r".{sql_in(CLAIMABLE)}), 0) >= {NEAR}'
            ).fetchone()
            self._limits_read_at = now
        return self._settings

    def _claim_limited(
        self, worker_id: str, queues: tuple[str, ...] | None
    ) -> tuple[object, ...] | None:
        """PostgreSQL, in a transaction: the next ready job in claim order across every queue.
        One of a queue without a limit is taken by the claim statement (locked as it is taken,
        past those other claims hold). One of a limited queue is taken under that queue's
        settings row, locked FOR UPDATE: the queue's claims take turns, each counts its running
        jobs afresh and takes the queue's first ready job. A claim locks no job while it waits
        for a turn: one that held the first job it had seen made the others take the next one
        instead (QA: a limit-1 queue's jobs ran 1 3 2 4; held of a queue without a limit, that
        queue's jobs ran out of order), and could close a cycle of waits with a claim in its
        turn (a deadlock, as limits changed)."""
        now = self.clock()
        only = queue_filter(queues)
        due = f'{READY} AND "run_at" <= %s{only}'
        first = 'ORDER BY "priority" DESC, "run_at", "seq" LIMIT 1'
        # Neither look passes over a full queue's backlog entry by entry (QA: 20,000 jobs in a
        # full queue of limit 1 made other queues' claims ~40 times slower): the first job of
        # a queue without settings is found by a probe per queue where the first entries in
        # claim order are held (statements.claim_first), and a limited queue's by a probe of
        # each limited queue with room.
        free_sql = _first_of(not_held(_SETTLED), only)
        free = self.db.execute_sql(free_sql, (now,)).fetchone()  # not locked: looked at
        passed: list[str] = []  # limited queues with nothing to claim now
        while True:
            # Of the limited queues with room as this statement sees them (unlocked: its turn
            # counts again). One seen full is not waited for: with many threads, every claim
            # queued for each full queue's turn in turn, and a run's end waited ~0.1 s for the
            # next start. Room made later comes with a wake-up (a run's end, a limit changed).
            limited = self.db.execute_sql(_first_with_room(only, len(passed)), (now, *passed)).fetchone()
            if free is not None and (limited is None or _sooner(free, limited)):
                # Taken if it still is to be (another claim may have it: then the next one).
                started = self.clock()
                row = self.db.execute_sql(
                    self._claim_if_free_still, (worker_id, started, started, free[0], now)
                ).fetchone()
                if row is not None:
                    return row
                free = self.db.execute_sql(free_sql, (now,)).fetchone()
                continue
            if limited is None:
                return None
            name = limited[3]
            with self.db.atomic() as turn:  # a savepoint: the lock of a queue passed is let go
                setting = self.db.execute_sql(
                    'SELECT "max_running", "paused" FROM "queue_setting" WHERE "name" = %s '
                    "FOR UPDATE",
                    (name,),
                ).fetchone()
                limit = None if setting is None else setting[0]
                room = setting is None or not setting[1]
                if room and limit is not None:
                    room = limit > self.db.execute_sql(
                        f'SELECT COUNT(*) FROM "job" WHERE "state" = \'{State.PROCESSING.value}\' '
                        'AND "queue" = %s',
                        (name,),
                    ).fetchone()[0]
                if room:
                    # Its turn: the queue's first ready job (a queue no longer limited: as any).
                    mine = self.db.execute_sql(
                        f'SELECT "seq", "priority", "run_at" FROM "job" WHERE {due} '
                        f'AND "queue" = %s {first} FOR UPDATE'
                        + (" SKIP LOCKED" if limit is None else ""),
                        (now, name),
                    ).fetchone()
                    if mine is not None:
                        # As it is now: the turn may have been waited for.
                        free = self.db.execute_sql(free_sql, (now,)).fetchone()
                        if free is None or not _sooner(free, mine):
                            return self._claim_seq(worker_id, mine[0])
                        turn.rollback(False)
                        continue  # a job of a queue without a limit comes first
                turn.rollback(False)
            passed.append(name)

    @functools.cached_property
    def _claim_if_free_still(self) -> str:
        """The claim of one job by its seq, if it still is free (_FREE_STILL): its parameters
        the worker, its start twice, the seq and now."""
        return self._sql.claim_where_seq(f"({_FREE_STILL})")

    def _claim_seq(self, worker_id: str, seq: int) -> tuple[object, ...] | None:
        # Its start is now, not when the look began: the queue's lock may have kept it
        # waiting for the run before it to end, and that run's end is before this one's start.
        started = self.clock()
        return self.db.execute_sql(
            self._sql.claim_seq, (worker_id, started, started, seq)
        ).fetchone()


# The queues whose jobs the claim statement leaves alone (PostgreSQL: paused, or limited).
_SETTLED = 'SELECT "name" FROM "queue_setting" WHERE "paused" OR "max_running" IS NOT NULL'
# The job of that seq, if it still is the claim statement's to take: ready, due, of a queue
# still without settings, and not locked by another claim. Found by its key: written as READY,
# the condition let PostgreSQL, its statistics taken while few jobs were ready, walk a partial
# index of the ready jobs for it instead (QA: 13 ms past 20,000 jobs of a full queue).
_READY_BY_KEY = READY.replace('"waiting_on" = 0', '"waiting_on" + 0 = 0')  # (no index says it)
_FREE_STILL = (
    f'SELECT "seq" FROM "job" WHERE "seq" = %s AND {_READY_BY_KEY} AND "run_at" <= %s '
    f'AND "queue" NOT IN ({_SETTLED}) FOR UPDATE SKIP LOCKED'
)


def _first_of(allowed: Callable[[str], str], only: str) -> str:
    """PostgreSQL: the first ready job in claim order, due at now (the parameter), of a queue
    ``allowed``: its seq, priority, run_at and queue (unlocked)."""
    seq = first_unheld("$1::double precision", allowed, only, is_sqlite=False)
    return (
        'WITH "p" AS (SELECT %s::double precision) '  # (never read: it types the parameter)
        f'SELECT "seq", "priority", "run_at", "queue" FROM "job" WHERE "seq" = ({seq})'
    )


def _first_with_room(only: str, passed: int) -> str:
    """PostgreSQL: the first ready job in claim order, due at now (the first parameter), of the
    limited queues that are not paused and run fewer jobs than their limit, but for the
    ``passed`` ones (the parameters after it): each such queue's first job, probed in
    QUEUE_CLAIM_INDEX. Its seq, priority, run_at and queue (unlocked)."""
    given = ", ".join(["%s::double precision", *["%s::varchar"] * passed])
    skip = "".join(f' AND "s"."name" <> ${number}::varchar' for number in range(2, passed + 2))
    only = only.replace('"queue"', '"s"."name"')
    head = first_in_queue('"s"."name"', "$1::double precision", is_sqlite=False,
                          select='"seq", "priority", "run_at", "queue"')  # fmt: skip
    return (
        f'WITH "p" AS (SELECT {given}) '  # (never read: it types the parameters)
        'SELECT "h".* FROM "queue_setting" AS "s" '
        f"CROSS JOIN LATERAL ({head}) AS \"h\" "
        'WHERE NOT "s"."paused" AND "s"."max_running" > (SELECT COUNT(*) FROM "job" '
        f'WHERE "state" = \'{State.PROCESSING.value}\' AND "queue" = "s"."name")'
        f"{skip}{only} "
        'ORDER BY "h"."priority" DESC, "h"."run_at", "h"."seq" LIMIT 1'
    )


def _sooner(one: Sequence[Any], other: Sequence[Any]) -> bool:
    """Whether job ``one`` comes before ``other`` in claim order (their seq, priority and
    run_at first): the higher priority, then the earlier run_at, then the earlier enqueued."""
    return (-one[1], one[2], one[0]) < (-other[1], other[2], other[0])


__all__ = ["QueueInfo", "Workflows"]
