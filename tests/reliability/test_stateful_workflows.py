"""The state machine of test_stateful, grown with SPEC 6 and 7: enqueue with ``after``
(dependencies on existing jobs and on earlier jobs of a batch, chains), cancel (waiting jobs at
once; running ones by a request that the holder's finish, a release or a rescue turns into
`cancelled`; the cascade to the jobs waiting on them), retry of any final job, edit of waiting
jobs, purge of finished ones, named queues (claims of some queues only, limits of 0-2, pause
and resume) and schedules fired by the fake clock (``fire_due_schedules``, what a pool's
service thread calls).

After every step the engine is compared with the model (states, attempts, errors, queues,
``waiting_on``, counts per state and per queue, schedules), and every claim is checked against
the database itself: all of the job's dependencies completed, its queue not paused and within
its limit, and the job not cancelled since it was last retried.

The database also goes away (rule ``outage``): on PostgreSQL the Queue under test reaches the
server through a proxy (tests/backends/outage.py) that is taken down, on SQLite another
connection holds BEGIN EXCLUSIVE (writes fail as "database is locked" once a short busy timeout
runs out; reads go on). Meanwhile the machine attempts its own rules, with their own arguments:
each must either fail with a database error (peewee's: what the CLI reports as one `Error:` line
and the pools retry) and leave the queue as it was, the model left unchanged, or (SQLite, reads)
succeed as usual. Time may pass during the outage (schedules fall due). Once the database is back
the next steps, on a new connection, find every invariant intact.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import hypothesis.strategies as st
import pytest
from hypothesis import event, settings
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

from queuectl import InvalidInput, JobSpec, QueueError
from queuectl import queue as queue_module
from queuectl.statements import ENDED_AS_CANCELLED
from queuectl.executor import CANCELLED, RunResult
from queuectl.models import STATES
from support import pg_server

from .test_stateful import IDS, RESULTS, SETTINGS, Handle, ModelJob, QueueMachine, expected_backoff

WAITING = ("pending", "failed")
FINAL = ("completed", "dead", "cancelled")
UNFINISHED = ("pending", "failed", "processing")
QUEUES = ["default", "a", "b"]
# What a worker of some queues only claims from (None: every queue).
QUEUE_FILTERS = st.sampled_from([None, None, ("a",), ("default", "b"), ("a", "b")])
UNKNOWN = "nope"  # neither a generated id ('o', 'p', 'e') nor a given one (IDS)
# The error of a job cancelled by one of several cascades whose order the engine does not fix.
ANY_CASCADE = "dependency ... was cancelled"
# A schedule's expression and the seconds between its times (UTC: multiples of the period).
CRONS = {"*/10 * * * * *": 10.0, "* * * * *": 60.0}


@dataclass
class FlowJob(ModelJob):
    queue: str = "default"
    deps: tuple[str, ...] = ()  # the ids of the jobs it runs after (each once)
    schedule: str | None = None
    cancel_requested: bool = False
    # max_retries or run_at changed by `edit`: the base's retry-rule checks no longer apply.
    rules_edited: bool = False


@dataclass
class ModelSchedule:
    period: float
    next_due: float
    queue: str
    priority: int
    no_overlap: bool
    paused: bool = False
    last_job: str | None = None


def next_after(period: float, now: float) -> float:
    """The first multiple of ``period`` seconds after ``now`` (written out without croniter)."""
    return (math.floor(now / period) + 1) * period


class WorkflowMachine(QueueMachine):
    MODEL_STATE = (*QueueMachine.MODEL_STATE, "gone", "limits", "paused", "ceiling",
                   "cancelled_ids", "schedules")  # fmt: skip

    def __init__(self, pg_url: str | None = None) -> None:
        super().__init__(pg_url)
        self.gone: dict[str, FlowJob] = {}  # purged jobs, as they were
        self.limits: dict[str, int] = {}
        self.paused: set[str] = set()
        self.ceiling: dict[str, int] = {}  # the most processing jobs a limited queue may have
        self.cancelled_ids: set[str] = set()  # cancelled, and not retried since
        self.schedules: dict[str, ModelSchedule] = {}

    # The base machine's rules for config, worker rows and the DLQ's retry stay its own: here
    # they would only thin out the steps (the same number as its), so they are plain methods.
    def set_max_retries(self, value) -> None:
        raise AssertionError("not a rule here")

    set_backoff_base = heartbeat = delete_worker_row = register_worker = dlq_retry = set_max_retries

    # -- the model's rules --------------------------------------------------------------------

    def _still_holds(self, handle: Handle) -> bool:
        return handle.job.id in self.model.jobs and super()._still_holds(handle)  # purged?

    def _dep_done(self, dep: str, not_done: frozenset[str] = frozenset()) -> bool:
        job = self.model.jobs.get(dep) or self.gone[dep]
        return dep not in not_done and job.state == "completed"

    def _waiting_on(self, job: FlowJob) -> int:
        return sum(1 for dep in job.deps if not self._dep_done(dep))

    def _running(self) -> Counter:
        return Counter(j.queue for j in self.model.jobs.values() if j.state == "processing")

    def _next_claimable(
        self, queues: tuple[str, ...] | None = None, not_done: frozenset[str] = frozenset()
    ) -> FlowJob | None:
        running = self._running()

        def open_(queue: str) -> bool:
            limit = self.limits.get(queue)
            return queue not in self.paused and (limit is None or running[queue] < limit)

        due = [
            j
            for j in self.model.jobs.values()
            if j.state in WAITING
            and j.run_at <= self.clock.now
            and (queues is None or j.queue in queues)
            and open_(j.queue)
            and all(self._dep_done(dep, not_done) for dep in j.deps)
        ]
        held = [
            j for j in self.model.jobs.values()
            if j.state in WAITING and j.run_at <= self.clock.now and j not in due
        ]  # fmt: skip
        if held:
            event("claim: a due job held (dependency, pause, limit or queue filter)")
        if not due:
            return None
        return min(due, key=lambda j: (-j.priority, j.run_at, j.seq))

    def _cascade(self, seeds: list[str], reason: str = "was cancelled") -> list[str]:
        """Workflows.cancel_dependents, written out: the waiting jobs after ``seeds``, and
        theirs, down the chain, are cancelled; each one's error names its earliest dependency
        among those (``reason`` if that is a seed)."""
        first = set(seeds)
        via: dict[str, int] = {}
        changed = True
        while changed:
            changed = False
            for job in self.model.jobs.values():
                if job.state not in WAITING:
                    continue
                seqs = [self.model.jobs[d].seq for d in job.deps if d in first or d in via]
                if seqs and min(seqs) < via.get(job.id, math.inf):
                    via[job.id] = min(seqs)
                    changed = True
        by_seq = {j.seq: j.id for j in self.model.jobs.values()}
        for job_id, seq in via.items():
            job = self.model.jobs[job_id]
            name = by_seq[seq]
            job.state = "cancelled"
            job.error = f"dependency {name} {reason if name in first else 'was cancelled'}"
            job.finished_at = self.clock.now
            self.cancelled_ids.add(job_id)
        if via:
            event(f"cascade: {min(len(via), 3)} cancelled ({reason})")
        return sorted(via)

    def _cancel_now(self, job: FlowJob, error: str | None) -> None:
        job.state = "cancelled"
        job.error = error
        job.finished_at = self.clock.now
        self.cancelled_ids.add(job.id)

    def _revive(self, job: ModelJob) -> None:
        if job.state == "completed" and any(job.id in j.deps for j in self.model.jobs.values()):
            event("retry: a completed job with dependents (they wait again)")
        super()._revive(job)
        # Its open dependencies are counted again from the jobs that still exist: one purged
        # since it completed no longer holds it (one purged before it completed refuses the
        # retry: see the retry rule).
        job.deps = tuple(dep for dep in job.deps if dep in self.model.jobs)
        job.cancel_requested = False
        job.rules_edited = False
        self.cancelled_ids.discard(job.id)

    def _snapshot(self) -> list[tuple]:
        return [
            (j.id, j.state, j.attempts, j.run_at, j.worker, j.error, j.updated_at, j.priority,
             j.queue, j.max_retries, j.cancel_requested_at, j.waiting_on, j.finished_at)
            for j in self._rows().values()
        ]  # fmt: skip

    def _refused(self, before: list[tuple], error: type[Exception], call) -> None:
        with pytest.raises(error):
            call()
        assert self._snapshot() == before, f"a refused call ({error.__name__}) changed the queue"

    # -- enqueue, with dependencies and queues ------------------------------------------------

    def _pick_ref(self, data, earlier: list[str]) -> str:
        pool = list(self.model.jobs) + earlier
        if not pool or data.draw(st.integers(0, 9), label="unknown") == 0:
            return UNKNOWN
        # The newest jobs most often: chains grow, and they are the ones still waiting.
        wanted = pool[-1 - data.draw(st.integers(0, len(pool) - 1), label="after")]
        if len(wanted) > 1 and data.draw(st.integers(0, 3), label="as prefix") == 0:
            shortest = 8 if len(wanted) == queue_module.ID_LENGTH else 1
            wanted = wanted[: data.draw(st.integers(shortest, len(wanted) - 1), label="cut")]
        return wanted

    def _resolve_ref(self, ref: str, earlier: list[str]) -> str | None:
        """Workflows._find_dependency: an id of the batch before, an existing job's id, or a
        unique prefix of either; None where the engine must refuse the batch."""
        if ref in earlier:
            return ref
        if ref in self.model.jobs:
            return ref
        existing = [i for i in self.model.jobs if i.startswith(ref)]
        if len(existing) > 1:
            return None
        matches = [i for i in earlier if i.startswith(ref)] + existing
        return matches[0] if len(matches) == 1 else None

    def _enqueue(self, specs: list[JobSpec]) -> None:
        given = [s.id for s in specs if s.id]
        duplicate = len(set(given)) != len(given) or any(i in self.model.jobs for i in given)
        deps: list[tuple[str, ...] | None] = []
        earlier: list[str] = []
        for spec in specs:
            found = [self._resolve_ref(ref, earlier) for ref in spec.after or ()]
            deps.append(None if None in found else tuple(dict.fromkeys(found)))
            if spec.id:
                earlier.append(spec.id)
        bad_after = None in deps
        before = self._snapshot()
        try:
            jobs = self.q.enqueue_many(specs)
        except InvalidInput:
            assert duplicate or bad_after, "a valid batch was refused"
            assert self._snapshot() == before, "a refused batch changed the queue"
            event("enqueue refused")
            return
        assert not (duplicate or bad_after), f"a bad batch was accepted: {specs}"
        for spec, job, after in zip(specs, jobs, deps):
            assert job.id not in self.model.jobs
            self.model.jobs[job.id] = FlowJob(
                id=job.id,
                seq=self.enqueued,
                max_retries=spec.max_retries,
                priority=spec.priority or 0,
                run_at=self.clock.now + (spec.delay or 0.0),
                queue=spec.queue or "default",
                deps=after,
            )
            self.enqueued += 1
            if after:
                event(f"enqueue after {min(len(after), 2)} job(s)")
        cancelled = [
            d for d in dict.fromkeys(d for after in deps for d in after)
            if self.model.jobs[d].state == "cancelled"
        ]  # fmt: skip
        cancelled.sort(key=lambda d: self.model.jobs[d].seq)
        self._cascade(cancelled)
        for job in jobs:
            want = self.model.jobs[job.id]
            assert job.state == want.state, f"enqueue returned {job.id} as {job.state}"
            assert set(job.after_ids) == set(want.deps)

    @rule(
        data=st.data(),
        max_retries=st.sampled_from([None, None, 0, 1, 2, 3, 5]),
        priority=st.integers(-2, 2),
        delay=st.sampled_from([None, 0.0, 0.5, 3.0, 40.0]),
        job_id=st.one_of(st.none(), IDS),
        queue=st.sampled_from([None, None, "a", "b"]),
    )
    def enqueue(self, max_retries, priority, delay, job_id, data=None, queue=None) -> None:
        after = ()
        if data is not None and data.draw(st.booleans(), label="with after"):
            count = data.draw(st.integers(1, 3), label="deps")
            after = tuple(self._pick_ref(data, []) for _ in range(count))
        spec = JobSpec(
            command="true", id=job_id, max_retries=max_retries, priority=priority, delay=delay,
            queue=queue, after=after or None,
        )  # fmt: skip
        self._enqueue([spec])

    @rule(data=st.data(), size=st.integers(1, 4))
    def enqueue_many(self, data, size) -> None:
        """A batch whose jobs may name existing jobs and earlier jobs of the batch (a chain)."""
        specs = []
        earlier: list[str] = []
        for _ in range(size):
            job_id = data.draw(st.one_of(st.none(), IDS), label="id")
            after = ()
            if data.draw(st.booleans(), label="with after"):
                after = (self._pick_ref(data, earlier),)
            specs.append(JobSpec(
                command="true", id=job_id, max_retries=data.draw(st.sampled_from([None, 0, 1, 4])),
                priority=data.draw(st.integers(-1, 1)), queue=data.draw(st.sampled_from(QUEUES)),
                after=after or None,
            ))  # fmt: skip
            if job_id:
                earlier.append(job_id)
        self._enqueue(specs)

    # -- claims and ends of runs --------------------------------------------------------------

    @rule(data=st.data(), queues=QUEUE_FILTERS)
    def claim(self, data, queues) -> None:
        worker = data.draw(st.sampled_from(list(self.model.workers)), label="worker")
        self.claim_with(worker, queues)

    def claim_with(self, worker: str, queues: tuple[str, ...] | None = None) -> None:
        expected = self._next_claimable(queues)
        self._claimed(expected, self.q.claim(worker, queues), worker, queues)

    def _claimed(self, expected, job, worker: str, queues) -> None:
        if expected is None:
            assert job is None, f"claimed {job.id} though nothing was claimable"
            return
        assert job is not None, f"nothing claimed though {expected.id} was claimable"
        assert job.id == expected.id, f"claim order: got {job.id}, expected {expected.id}"
        self._check_claim(job, queues)
        expected.state = "processing"
        expected.attempts += 1
        expected.worker = worker
        expected.output = None
        expected.started_at = self.clock.now
        assert (job.attempts, job.worker, job.state) == (expected.attempts, worker, "processing")
        if expected.deps:
            event("claim: a job with dependencies")
        self.handles.append(Handle(job, worker, job.attempts, job.started_at))

    def _check_claim(self, job, queues) -> None:
        """What SPEC 7 says of a claim, read from the database, not from the model."""
        p = self.q.db.param
        states = [
            state for (state,) in self.q.db.execute_sql(
                f'SELECT p."state" FROM "job_dep" d JOIN "job" p ON p."seq" = d."dep_seq" '
                f'WHERE d."job_seq" = {p}', (job.seq,)
            ).fetchall()
        ]  # fmt: skip
        assert all(s == "completed" for s in states), f"{job.id} started before its dependencies"
        assert queues is None or job.queue in queues, f"{job.id} claimed outside {queues}"
        QueueSetting, Job = self.q.models.QueueSetting, self.q.models.Job
        setting = QueueSetting.get_or_none(QueueSetting.name == job.queue)
        assert setting is None or not setting.paused, f"{job.id} claimed from a paused queue"
        if setting is not None and setting.max_running is not None:
            running = Job.select().where(Job.queue == job.queue, Job.state == "processing").count()
            assert running <= setting.max_running, f"queue {job.queue} past its limit"
        assert job.id not in self.cancelled_ids, f"cancelled {job.id} ran again"

    def _store(self, job: FlowJob, result: RunResult) -> None:  # type: ignore[override]
        super()._store(job, result)
        if job.cancel_requested:  # SPEC 6: the run ends cancelled, whatever it did
            event(f"cancel: a running job ended cancelled ({'ok' if result.ok else 'failed'})")
            job.state = "cancelled"
            if result.ok:  # it says why, having no error of its own
                job.error = ENDED_AS_CANCELLED
            self.cancelled_ids.add(job.id)
            self._cascade([job.id])

    def finish_handle(self, index: int, result: RunResult) -> None:
        handle = self.handles.pop(index)
        holds = self._still_holds(handle)
        before = self._snapshot()
        stored = self.q.finish(handle.job, result, handle.worker)
        if not holds:
            assert stored is None, "a stale result overwrote another run"
            assert self._snapshot() == before
            return
        assert stored is not None
        job = self.model.jobs[handle.job.id]
        self._store(job, result)
        assert stored.state == job.state

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), result=RESULTS, queues=QUEUE_FILTERS)
    def finish_and_claim(self, data, result, queues) -> None:
        """A busy worker's finish and next claim in one go. On SQLite a success is one
        statement: the jobs it unblocks are not claimable in it (the next round claims them)."""
        index = data.draw(st.integers(0, len(self.handles) - 1), label="handle")
        self.finish_and_claim_handle(index, result, queues)

    def finish_and_claim_handle(self, index: int, result: RunResult, queues) -> None:
        handle = self.handles.pop(index)
        holds = self._still_holds(handle)
        stored, following = self.q.finish_and_claim(handle.job, result, handle.worker, queues)
        not_done: frozenset[str] = frozenset()
        if holds:
            assert stored is not None
            job = self.model.jobs[handle.job.id]
            self._store(job, result)
            assert stored.state == job.state
            if self.q.is_sqlite and result.ok:
                not_done = frozenset([job.id])
        else:
            assert stored is None, "a stale result overwrote another run"
        expected = self._next_claimable(queues, not_done)
        if self.q.is_sqlite and result.ok and expected is not None and expected.id == handle.job.id:
            # A stale run's success, where the next job is the very job it lost (retried
            # since): the one statement's row of that job is the finished run's, which it
            # leaves alone. Nothing is claimed; the worker's next round claims it.
            event("finish_and_claim: a stale run's own job is next (not claimed)")
            expected = None
        self._claimed(expected, following, handle.worker, queues)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def release(self, data) -> None:
        self.release_handle(data.draw(st.integers(0, len(self.handles) - 1), label="handle"))

    def release_handle(self, index: int) -> None:
        handle = self.handles.pop(index)
        holds = self._still_holds(handle)
        assert self.q.release(handle.job, handle.worker) is holds
        if holds:
            job = self.model.jobs[handle.job.id]
            job.attempts -= 1
            job.worker = None
            job.started_at = None
            if job.cancel_requested:
                event("cancel: a released job ended cancelled")
                self._cancel_now(job, job.error)
                self._cascade([job.id])
            else:
                job.state = "pending"

    @rule()
    def rescue_lost(self) -> None:
        now = self.clock.now
        gone = {
            w
            for w, mw in self.model.workers.items()
            if mw.heartbeat_at is not None and mw.heartbeat_at < now - queue_module.LEASE_S
        }
        live = {w for w, mw in self.model.workers.items() if mw.heartbeat_at is not None} - gone
        expected = sorted(
            j.id
            for j in self.model.jobs.values()
            if j.state == "processing" and j.worker not in live
        )
        rescued = sorted(job.id for job in self.q.rescue_lost())
        assert rescued == expected, f"rescued {rescued}, expected {expected}"
        for w in gone:
            self.model.workers[w].heartbeat_at = None
        cancelled = []
        for job_id in expected:
            job = self.model.jobs[job_id]
            if job.cancel_requested:  # SPEC 6: cancelled, not retried
                event("cancel: a rescued job ended cancelled")
                self._cancel_now(job, queue_module.WORKER_LOST)
                job.exit_code = None
                cancelled.append(job_id)
            else:
                self._fail(job, queue_module.WORKER_LOST, None, job.output)
        # The engine cascades from each in the order it rescued them (not fixed): where two
        # cascades could name different dependencies, any of them will do.
        for job_id in self._cascade(cancelled):
            if len(cancelled) > 1:
                self.model.jobs[job_id].error = ANY_CASCADE

    # -- SPEC 6: cancel, retry, edit, purge -------------------------------------------------

    def _draw_refs(self, data, first: list[str]) -> list[str]:
        pool = first + list(self.model.jobs)
        refs = []
        for _ in range(data.draw(st.integers(1, 2), label="how many")):
            if not pool or data.draw(st.integers(0, 9), label="unknown") == 0:
                refs.append(UNKNOWN)
                continue
            wanted = data.draw(st.sampled_from(pool), label="job")
            if len(wanted) > 1 and data.draw(st.integers(0, 4), label="as prefix") == 0:
                shortest = 8 if len(wanted) == queue_module.ID_LENGTH else 1
                wanted = wanted[: data.draw(st.integers(shortest, len(wanted) - 1), label="cut")]
            refs.append(wanted)
        return refs

    @rule(data=st.data())
    def cancel(self, data) -> None:
        live = [j.id for j in self.model.jobs.values() if j.state in UNFINISHED]
        refs = self._draw_refs(data, live)
        targets = [self._resolve(ref) for ref in refs]
        before = self._snapshot()
        if any(t is None or t.state in FINAL for t in targets):
            self._refused(before, QueueError, lambda: self.q.cancel(refs))
            return
        returned = self.q.cancel(refs)
        assert {j.id for j in returned} == {t.id for t in targets}
        waiting = [t for t in dict.fromkeys(t.id for t in targets)]
        seeds = []
        for job_id in waiting:
            job = self.model.jobs[job_id]
            if job.state in WAITING:
                event(f"cancel: a {job.state} job")
                self._cancel_now(job, CANCELLED)
                seeds.append(job_id)
            elif job.state == "processing":
                event("cancel: a running job (requested)")
                job.cancel_requested = True
        self._cascade(seeds)

    @rule(data=st.data())
    def retry(self, data) -> None:
        final = [j.id for j in self.model.jobs.values() if j.state in FINAL]
        refs = self._draw_refs(data, final)
        targets = [self._resolve(ref) for ref in refs]
        before = self._snapshot()
        if any(t is None or t.state not in FINAL for t in targets):
            self._refused(before, QueueError, lambda: self.q.retry(refs))
            return
        retried = {t.id for t in targets}
        jobs = self.model.jobs
        if any(dep not in jobs and self.gone[dep].state != "completed"
               for t in targets for dep in jobs[t.id].deps):  # fmt: skip
            event("retry: refused, after a job purged before it completed")
            self._refused(before, QueueError, lambda: self.q.retry(refs))
            return
        if any(jobs[dep].state == "cancelled" and dep not in retried
               for t in targets for dep in jobs[t.id].deps if dep in jobs):  # fmt: skip
            event("retry: refused, after a cancelled job not retried with it")
            self._refused(before, QueueError, lambda: self.q.retry(refs))
            return
        returned = self.q.retry(refs)
        assert {j.id for j in returned} == {t.id for t in targets}
        for job_id in dict.fromkeys(t.id for t in targets):
            event(f"retry: a {self.model.jobs[job_id].state} job")
            self._revive(self.model.jobs[job_id])

    @rule(
        data=st.data(),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "priority": st.integers(-2, 3),
                "max_retries": st.sampled_from([0, 1, 4, -1]),
                "delay": st.sampled_from([0.0, 2.0, 50.0, -1.0]),
                "queue": st.sampled_from(["default", "a", "b", "no such"]),
                "command": st.just("true"),
            },
        ),
    )
    def edit(self, data, changes) -> None:
        waiting = [j.id for j in self.model.jobs.values() if j.state in WAITING]
        [ref] = self._draw_refs(data, waiting)[:1]
        target = self._resolve(ref)
        before = self._snapshot()
        invalid = (
            not changes
            or changes.get("max_retries") == -1
            or changes.get("delay") == -1.0
            or changes.get("queue") == "no such"
        )
        if invalid:
            self._refused(before, InvalidInput, lambda: self.q.edit(ref, changes))
            return
        if target is None or target.state not in WAITING:
            event("edit refused (not waiting)")
            self._refused(before, QueueError, lambda: self.q.edit(ref, changes))
            return
        event("edit of a waiting job")
        edited = self.q.edit(ref, changes)
        assert edited.id == target.id
        if "priority" in changes:
            target.priority = changes["priority"]
        if "max_retries" in changes:
            target.max_retries = changes["max_retries"]
            target.rules_edited = True
        if "delay" in changes:
            target.run_at = self.clock.now + changes["delay"]
            target.rules_edited = True
        if "queue" in changes:
            target.queue = changes["queue"]

    @rule(
        states=st.sampled_from(
            [(), (), ("completed",), ("dead",), ("cancelled",), FINAL, ("pending",)]
        ),
        older_than=st.sampled_from([None, None, 0.0, 5.0, 1000.0]),
        queue=st.sampled_from([None, None, "default", "a"]),
    )
    def purge(self, states, older_than, queue) -> None:
        before = self._snapshot()
        if "pending" in states:
            self._refused(before, InvalidInput, lambda: self.q.purge(states, older_than, queue))
            return
        chosen = states or ("completed", "cancelled")
        now = self.clock.now
        doomed = [
            j
            for j in self.model.jobs.values()
            if j.state in chosen
            and (older_than is None or j.finished_at < now - older_than)
            and (queue is None or j.queue == queue)
        ]
        assert self.q.purge(states, older_than, queue) == len(doomed)
        if doomed:
            event(f"purge: {min(len(doomed), 3)} job(s)")
        unfinished = [j.id for j in doomed if j.state != "completed"]
        self._cascade(unfinished, reason="was purged")
        for job in doomed:
            self.gone[job.id] = self.model.jobs.pop(job.id)

    # -- scenarios: a few steps that random rules rarely line up --------------------------

    @rule(data=st.data(), length=st.integers(2, 3), queue=st.sampled_from(QUEUES))
    def chain(self, data, length, queue) -> None:
        """A chain (each job after the one before, the first maybe after an existing job),
        then a worker runs what it can of it, one claim at a time."""
        previous = self._pick_ref(data, []) if data.draw(st.booleans(), label="on a job") else None
        for _ in range(length):
            count = len(self.model.jobs)
            self._enqueue([JobSpec(command="true", priority=3, queue=queue,
                                   after=(previous,) if previous else None)])  # fmt: skip
            if len(self.model.jobs) == count:  # refused (an unknown dependency)
                return
            previous = list(self.model.jobs)[-1]
        for _ in range(data.draw(st.integers(1, length + 1), label="runs")):
            self.claim_with(self.main)
            if self.handles and self.handles[-1].worker == self.main:
                self.finish_handle(len(self.handles) - 1, data.draw(RESULTS, label="result"))

    @rule(data=st.data(), end=st.sampled_from(["finish", "finish_and_claim", "release", "lost"]))
    def cancel_running(self, data, end) -> None:
        """SPEC 6: a running job is cancelled; the run's end (whatever it was) stores
        `cancelled`, and the jobs waiting on it are cancelled too."""
        if not self.handles:
            if self._next_claimable() is None:
                self.enqueue(None, 3, None, None)
            self.claim_with(self.main)
        if not self.handles:
            return
        handle = self.handles[-1]
        if not self._still_holds(handle):
            return
        if data.draw(st.booleans(), label="with a dependent"):
            self._enqueue([JobSpec(command="true", after=(handle.job.id,))])
        before = self._snapshot()
        self.q.cancel([handle.job.id])
        self.model.jobs[handle.job.id].cancel_requested = True
        assert [r[:3] for r in self._snapshot()] == [r[:3] for r in before], "cancel stopped a run"
        index = len(self.handles) - 1
        if end == "finish":
            self.finish_handle(index, data.draw(RESULTS, label="result"))
        elif end == "finish_and_claim":
            result = data.draw(RESULTS, label="result")
            self.finish_and_claim_handle(index, result, data.draw(QUEUE_FILTERS, label="queues"))
        elif end == "release":
            self.release_handle(index)
        else:
            self.q.unregister_worker(handle.worker)
            self.model.workers[handle.worker].heartbeat_at = None
            self.rescue_lost()
            self.q.heartbeat(handle.worker, 1)  # it comes back, its run already rescued
            self.model.workers[handle.worker].heartbeat_at = self.clock.now

    @rule(data=st.data(), queue=st.sampled_from(QUEUES), limit=st.integers(0, 2))
    def crowd(self, data, queue, limit) -> None:
        """A limited queue gets more jobs than its limit; workers of several queue filters
        claim again and again (the claims go to other queues, or to none)."""
        self.set_limit(queue, limit)
        self._enqueue([JobSpec(command="true", priority=2, queue=queue) for _ in range(3)])
        for _ in range(data.draw(st.integers(2, 4), label="claims")):
            worker = data.draw(st.sampled_from(list(self.model.workers)), label="worker")
            self.claim_with(worker, data.draw(QUEUE_FILTERS, label="queues"))

    # -- SPEC 7: queues ---------------------------------------------------------------------

    @rule(name=st.sampled_from(QUEUES), limit=st.sampled_from([None, 0, 1, 1, 2]))
    def set_limit(self, name, limit) -> None:
        info = self.q.set_queue_limit(name, limit)
        assert (info.limit, info.paused) == (limit, name in self.paused)
        if limit is None:
            self.limits.pop(name, None)
            self.ceiling.pop(name, None)
        else:
            self.limits[name] = limit
            self.ceiling[name] = max(limit, self._running()[name])

    @rule(name=st.sampled_from(QUEUES), pause=st.booleans())
    def pause_or_resume(self, name, pause) -> None:
        info = self.q.pause_queue(name) if pause else self.q.resume_queue(name)
        assert info.paused is pause
        if pause:
            self.paused.add(name)
        else:
            self.paused.discard(name)

    # -- SPEC 7: schedules ------------------------------------------------------------------

    @rule(
        name=st.sampled_from(["s1", "s2"]),
        cron=st.sampled_from(sorted(CRONS)),
        queue=st.sampled_from(QUEUES),
        priority=st.integers(-1, 1),
        no_overlap=st.booleans(),
    )
    def add_schedule(self, name, cron, queue, priority, no_overlap) -> None:
        spec = JobSpec(command="true", queue=queue, priority=priority)
        if name in self.schedules:
            with pytest.raises(InvalidInput):
                self.q.add_schedule(name, cron, spec, no_overlap=no_overlap)
            return
        info = self.q.add_schedule(name, cron, spec, no_overlap=no_overlap)
        due = next_after(CRONS[cron], self.clock.now)
        assert info.next_due == due
        self.schedules[name] = ModelSchedule(CRONS[cron], due, queue, priority, no_overlap)

    def _scheduled(self, name: str, job) -> None:
        schedule = self.schedules[name]
        assert (job.schedule, job.queue, job.state) == (name, schedule.queue, "pending")
        self.model.jobs[job.id] = FlowJob(
            id=job.id, seq=self.enqueued, max_retries=None, priority=schedule.priority,
            run_at=self.clock.now, queue=schedule.queue, schedule=name,
        )  # fmt: skip
        self.enqueued += 1
        schedule.last_job = job.id

    @rule()
    def fire_schedules(self) -> None:
        """A pool's service thread: one job per schedule due, none for a --no-overlap one
        whose previous job is still waiting or running; each moves on to its next time."""
        now = self.clock.now
        expected = []
        for name, schedule in self.schedules.items():
            if schedule.paused or schedule.next_due > now:
                continue
            schedule.next_due = next_after(schedule.period, now)
            last = self.model.jobs.get(schedule.last_job or "")
            if schedule.no_overlap and last is not None and last.state in UNFINISHED:
                event("schedule: a time skipped (no overlap)")
                continue
            expected.append(name)
        fired = self.q.fire_due_schedules()
        assert sorted(job.schedule for job in fired) == sorted(expected)
        for job in fired:  # in the order the engine enqueued them
            event("schedule: fired")
            self._scheduled(job.schedule, job)

    @rule(
        name=st.sampled_from(["s1", "s2", "s3"]), action=st.sampled_from(["pause", "resume", "run"])
    )
    def control_schedule(self, name, action) -> None:
        call = {
            "pause": self.q.pause_schedule,
            "resume": self.q.resume_schedule,
            "run": self.q.run_schedule,
        }[action]
        schedule = self.schedules.get(name)
        if schedule is None:
            with pytest.raises(QueueError):
                call(name)
            return
        result = call(name)
        if action == "run":
            self._scheduled(name, result)
        elif action == "pause":
            schedule.paused = True
        else:
            if schedule.paused:
                schedule.next_due = next_after(schedule.period, self.clock.now)
            schedule.paused = False


    # -- invariants ---------------------------------------------------------------------------

    def matches_model(self, rows: dict[str, SimpleNamespace]) -> None:  # (see rows_hold)
        assert set(rows) == set(self.model.jobs), "a job appeared or disappeared"
        for job_id, want in self.model.jobs.items():
            got = rows[job_id]
            assert got.state in STATES
            assert (got.state, got.attempts) == (want.state, want.attempts), job_id
            assert (got.queue, got.priority, got.schedule) == (
                want.queue, want.priority, want.schedule
            ), job_id  # fmt: skip
            assert got.waiting_on == self._waiting_on(want), f"{job_id}: waiting_on"
            if got.state in WAITING:
                assert got.run_at == want.run_at, job_id
            if got.state == "processing":
                assert got.worker == want.worker, job_id
                assert (got.cancel_requested_at is not None) == want.cancel_requested, job_id
            if got.state in ("failed", "dead"):
                assert (got.error, got.exit_code) == (want.error, want.exit_code), job_id
            if got.state == "cancelled":
                if want.error == ANY_CASCADE:
                    assert got.error.startswith("dependency ") and got.error.endswith(
                        " was cancelled"
                    ), job_id
                else:
                    assert got.error == want.error, job_id
            if got.state in ("completed", "failed", "dead"):
                assert got.output == want.output, job_id
            if got.state in FINAL:
                assert got.finished_at == want.finished_at, job_id

    @invariant()
    def counts_add_up(self) -> None:
        counts = self.q.counts()
        assert set(counts) == set(STATES)
        assert sum(counts.values()) == len(self.model.jobs)
        by_state = Counter(j.state for j in self.model.jobs.values())
        assert counts == {state: by_state[state] for state in STATES}
        # SPEC 7 `queue list`: every queue with jobs or settings, its counts, limit, paused.
        names = {j.queue for j in self.model.jobs.values()} | set(self.limits) | self.paused
        per_queue = Counter((j.queue, j.state) for j in self.model.jobs.values())
        want = [
            {"name": name, **{s: per_queue[name, s] for s in STATES},
             "limit": self.limits.get(name), "paused": name in self.paused}
            for name in sorted(names)
        ]  # fmt: skip
        assert [info.to_dict() for info in self.q.queues()] == want

    @invariant()
    def limits_hold(self) -> None:
        """No queue ever runs more jobs than its limit (more only where they were running
        when the limit was lowered, and then never more than that)."""
        Job = self.q.models.Job
        running = Counter(
            j.queue for j in Job.select(Job.queue).where(Job.state == "processing")
        )
        for name, limit in self.limits.items():
            assert running[name] <= self.ceiling[name], f"queue {name} past its limit {limit}"
            self.ceiling[name] = max(limit, running[name])

    @invariant()
    def schedules_match(self) -> None:
        got = {s.name: (s.next_due, s.paused, s.last_job_id) for s in self.q.schedules()}
        want = {n: (s.next_due, s.paused, s.last_job) for n, s in self.schedules.items()}
        assert got == want

    def retry_rules(self, rows: dict[str, SimpleNamespace]) -> None:  # (see rows_hold)
        for got in rows.values():
            want = self.model.jobs[got.id]
            if want.rules_edited:
                continue
            if got.max_retries is not None:
                assert got.attempts <= max(got.max_retries, 1), "ran more often than allowed"
            if got.state == "dead":
                assert got.attempts >= want.limit_at_failure, "dead before its retries ran out"
            if got.state == "failed":
                assert got.attempts < want.limit_at_failure, "failed though retries ran out"
                delay = expected_backoff(want.base_at_failure, got.attempts)
                assert got.run_at == got.finished_at + delay, "backoff is not base ** attempts"


def test_a_job_after_a_dependency_purged_unfinished_is_refused_not_left_waiting(any_queue):
    """Found while modelling: `b` (after `a`) is cancelled, then `a`, and `a` alone is purged
    (purge --queue x). Retrying `b` made it pending with waiting_on 1 on a job that is gone; then
    it ran (QA), though `a` never completed. Refused now, and nothing changes."""
    q = any_queue
    q.enqueue_many(
        [JobSpec(command="x", id="a", queue="x"), JobSpec(command="x", id="b", after=("a",))]
    )
    q.cancel(["b"])
    q.cancel(["a"])
    assert q.purge(queue="x") == 1
    with pytest.raises(QueueError, match="job b runs after a, which was purged before it"):
        q.retry(["b"])
    assert q.get("b").state == "cancelled"
    assert q.claim(q.register_worker(1)) is None


WorkflowMachine.TestCase.settings = SETTINGS
TestWorkflowMachine = WorkflowMachine.TestCase  # on SQLite


@pytest.mark.postgres
def test_the_workflow_model_on_postgresql():
    """The same machine on PostgreSQL (SKIP LOCKED claims, the locked claim of limited
    queues, the triggers), fewer examples: each one creates and drops a schema."""
    url = pg_server()
    run_state_machine_as_test(
        lambda: WorkflowMachine(pg_url=url), settings=settings(SETTINGS, max_examples=15)
    )
