"""The engine against a model: Hypothesis drives one Queue through random sequences of enqueue,
claim, finish (success, failure, timeout), release, lost workers and rescue, DLQ retries,
config changes and clock jumps, and after every step compares the database with a plain-Python
model of SPEC 3. The clock is a FakeClock and results are RunResult objects: no sleeping, no
subprocesses.

The database also goes away (rule ``outage``): a proxy between the Queue and the PostgreSQL
server is taken down, or another connection locks the SQLite file (writes fail as "database is
locked" after a short busy timeout). The rules the machine attempts meanwhile must fail with a
database error and change nothing (their model changes are undone), or, reads on SQLite, succeed;
once it is back, the invariants hold on a new connection.
"""

from __future__ import annotations

import copy
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import hypothesis.strategies as st
import peewee
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuectl import InvalidInput, JobSpec, Queue, QueueError
from queuectl import queue as queue_module
from backends.outage import Outage
from queuectl.db import SQLITE_BUSY_STEP_MS
from queuectl.executor import RunResult
from queuectl.models import STATES, Job
from support import FakeClock, pg_server

LEASE = queue_module.LEASE_S
CAP = 1e9  # SPEC: backoff_base ** attempts seconds; the engine caps it (queue.MAX_BACKOFF_S)


def expected_backoff(base: float, attempts: int) -> float:
    """Written out independently of queue.backoff_delay."""
    try:
        value = float(base) ** attempts
    except OverflowError:
        return CAP
    return min(value, CAP)


@dataclass
class ModelJob:
    id: str
    seq: int  # enqueue order
    max_retries: int | None
    priority: int
    run_at: float
    state: str = "pending"
    attempts: int = 0
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    exit_code: int | None = None
    output: str | None = None
    limit_at_failure: int | None = None  # the effective max when it last failed
    base_at_failure: float | None = None


@dataclass
class Handle:
    """What a worker thread holds between claim and finish."""

    job: Job  # the engine's object, as claim returned it
    worker: str
    attempts: int
    started_at: float


@dataclass
class ModelWorker:
    heartbeat_at: float | None  # None: its row is gone (deleted, or removed by a rescue)


@dataclass
class Model:
    jobs: dict[str, ModelJob] = field(default_factory=dict)
    workers: dict[str, ModelWorker] = field(default_factory=dict)
    max_retries: int = 3
    backoff_base: float = 2


# What the executor can produce: text (no lone surrogates), no NUL.
OUTPUTS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
# Given ids are short, so that their prefixes collide on purpose, and drawn from letters that
# generated ids (Crockford's base 32) never use: what happens must not depend on random ids.
IDS = st.text(alphabet="ilou", min_size=1, max_size=4)
RESULTS = st.one_of(
    st.builds(lambda out: RunResult(0, None, out), OUTPUTS),  # success
    st.builds(
        lambda code, out: RunResult(code, f"exit code {code}", out), st.integers(1, 255), OUTPUTS
    ),
    st.builds(lambda out: RunResult(None, "timed out after 5s", out), OUTPUTS),  # timeout
    st.builds(lambda out: RunResult(None, "killed by signal SIGKILL", out), OUTPUTS),
    st.just(RunResult(None, "cannot start: [Errno 2] No such file or directory", "")),
)


# SQLite during an outage: how long a write waits for the other connection's lock (the engine's
# 60 s would make each step a minute long; what happens after the wait is the same).
LOCKED_BUSY_MS = 10


class QueueMachine(RuleBasedStateMachine):
    # What the machine keeps besides the database; an attempt that failed in an outage puts it
    # back (see the rule `outage`).
    MODEL_STATE: tuple[str, ...] = ("model", "enqueued")

    def __init__(self, pg_url: str | None = None) -> None:
        """On a fresh SQLite file, or on a fresh schema of the PostgreSQL server ``pg_url``."""
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="queuectl-stateful-")
        self.clock = FakeClock()
        self.pg_url = pg_url
        target = f"{self.dir}/q.db"
        if pg_url is not None:
            import psycopg

            self.pg_schema = f"test_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(pg_url, autocommit=True) as connection:
                connection.execute(f'CREATE SCHEMA "{self.pg_schema}"')
            target = f"{pg_url}?options=-csearch_path%3D{self.pg_schema}"
        # On PostgreSQL the Queue under test reaches the server through a proxy that the rule
        # `outage` takes down; on SQLite that rule takes an exclusive lock.
        self.proxy = Outage(target) if pg_url is not None else None
        self.locker: sqlite3.Connection | None = None
        if self.proxy is not None:
            target = self.proxy.url
        self.q = Queue(target, clock=self.clock)
        self.model = Model()
        self.enqueued = 0
        self.handles: list[Handle] = []
        self._rows_sql: tuple[str, list] | None = None  # see _rows
        self.main = self._register()

    def teardown(self) -> None:
        self._back()
        self.q.close()
        if self.proxy is not None:
            self.proxy.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.pg_url is not None:
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA "{self.pg_schema}" CASCADE')

    # -- helpers ------------------------------------------------------------------------------

    def _register(self) -> str:
        worker_id = self.q.register_worker(1)
        self.model.workers[worker_id] = ModelWorker(self.clock.now)
        return worker_id

    def _limit(self, job: ModelJob) -> int:
        return job.max_retries if job.max_retries is not None else self.model.max_retries

    def _fail(self, job: ModelJob, error: str, exit_code: int | None, output: str | None) -> None:
        limit = self._limit(job)
        job.limit_at_failure = limit
        job.base_at_failure = self.model.backoff_base
        job.error = error
        job.exit_code = exit_code
        job.output = output
        job.finished_at = self.clock.now
        event(f"failure -> {'dead' if job.attempts >= limit else 'failed'}")
        if job.attempts >= limit:
            job.state = "dead"
        else:
            job.state = "failed"
            job.run_at = self.clock.now + expected_backoff(self.model.backoff_base, job.attempts)

    def _next_claimable(self) -> ModelJob | None:
        due = [
            j
            for j in self.model.jobs.values()
            if j.state in ("pending", "failed") and j.run_at <= self.clock.now
        ]
        if not due:
            return None
        return min(due, key=lambda j: (-j.priority, j.run_at, j.seq))

    def _resolve(self, prefix: str) -> ModelJob | None:
        """SPEC 3: an exact id, or else the one id that starts with the prefix."""
        if prefix in self.model.jobs:
            return self.model.jobs[prefix]
        matches = [j for j in self.model.jobs.values() if j.id.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def _snapshot(self) -> list[tuple]:
        return [
            (j.id, j.state, j.attempts, j.run_at, j.worker, j.error, j.updated_at)
            for j in self._rows().values()
        ]

    def _enqueue(self, specs: list[JobSpec]) -> None:
        given = [s.id for s in specs if s.id]
        duplicate = len(set(given)) != len(given) or any(i in self.model.jobs for i in given)
        before = self._snapshot()
        try:
            jobs = self.q.enqueue_many(specs)
        except InvalidInput:
            assert duplicate, "a valid batch was refused"
            assert self._snapshot() == before, "a refused batch changed the queue"
            return
        assert not duplicate, f"duplicate ids accepted: {given}"
        for spec, job in zip(specs, jobs):
            assert job.id not in self.model.jobs
            self.model.jobs[job.id] = ModelJob(
                id=job.id,
                seq=self.enqueued,
                max_retries=spec.max_retries,
                priority=spec.priority or 0,
                run_at=self.clock.now + (spec.delay or 0.0),
            )
            self.enqueued += 1

    # -- rules --------------------------------------------------------------------------------

    @rule(
        max_retries=st.sampled_from([None, None, 0, 1, 2, 3, 5]),
        priority=st.integers(-2, 2),
        delay=st.sampled_from([None, 0.0, 0.5, 3.0, 40.0]),
        job_id=st.one_of(st.none(), IDS),
    )
    def enqueue(self, max_retries, priority, delay, job_id) -> None:
        spec = JobSpec(
            command="true", id=job_id, max_retries=max_retries, priority=priority, delay=delay
        )
        self._enqueue([spec])

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from([None, 0, 1, 4]), st.integers(-1, 1), st.one_of(st.none(), IDS)
            ),
            min_size=1,
            max_size=4,
        )
    )
    def enqueue_many(self, batch) -> None:
        self._enqueue(
            [JobSpec(command="true", max_retries=m, priority=p, id=i) for m, p, i in batch]
        )

    @rule(data=st.data())
    def claim(self, data) -> None:
        self.claim_with(data.draw(st.sampled_from(list(self.model.workers)), label="worker"))

    def claim_with(self, worker: str) -> None:
        expected = self._next_claimable()
        job = self.q.claim(worker)
        if expected is None:
            assert job is None, f"claimed {job.id} though nothing was due"
            return
        assert job is not None, f"nothing claimed though {expected.id} was due"
        assert job.id == expected.id, f"claim order: got {job.id}, expected {expected.id}"
        expected.state = "processing"
        expected.attempts += 1
        expected.worker = worker
        expected.output = None  # a run starts with no output (SPEC 6: logs show this run's)
        expected.started_at = self.clock.now
        assert (job.attempts, job.worker, job.state) == (expected.attempts, worker, "processing")
        self.handles.append(Handle(job, worker, job.attempts, job.started_at))

    def _still_holds(self, handle: Handle) -> bool:
        job = self.model.jobs[handle.job.id]
        return (
            job.state == "processing"
            and job.worker == handle.worker
            and job.attempts == handle.attempts
            and job.started_at == handle.started_at
        )

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), result=RESULTS)
    def finish(self, data, result) -> None:
        """A run ends (success, failure, timeout, ...) and its worker stores the result; the
        handle may be stale (its worker was presumed lost): the result is then dropped."""
        index = data.draw(st.integers(0, len(self.handles) - 1), label="handle")
        self.finish_handle(index, result)

    def finish_handle(self, index: int, result: RunResult) -> None:
        handle = self.handles.pop(index)
        holds = self._still_holds(handle)
        before = self._snapshot()
        stored = self.q.finish(handle.job, result, handle.worker)
        event(f"finish: {'current' if holds else 'stale'} handle")
        if not holds:
            assert stored is None, "a stale result overwrote another run"
            assert self._snapshot() == before
            return
        assert stored is not None
        job = self.model.jobs[handle.job.id]
        self._store(job, result)
        assert stored.state == job.state

    def _store(self, job: ModelJob, result: RunResult) -> None:
        """What a run's end the holder stores does to the model."""
        if result.ok:
            job.state = "completed"
            job.error = None
            job.exit_code = result.exit_code
            job.output = result.output
            job.finished_at = self.clock.now
        else:
            self._fail(job, result.error, result.exit_code, result.output)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def release(self, data) -> None:
        """A hard stop gives a running job back, its attempt uncounted."""
        index = data.draw(st.integers(0, len(self.handles) - 1), label="handle")
        handle = self.handles.pop(index)
        holds = self._still_holds(handle)
        assert self.q.release(handle.job, handle.worker) is holds
        if holds:
            job = self.model.jobs[handle.job.id]
            job.state = "pending"
            job.attempts -= 1
            job.worker = None
            job.started_at = None  # run_at stays: the job keeps its place in the queue

    @rule()
    def register_worker(self) -> None:
        if len(self.model.workers) < 4:
            self._register()

    @rule(data=st.data())
    def heartbeat(self, data) -> None:
        """A worker beats (one presumed lost comes back: its row is re-created)."""
        worker = data.draw(st.sampled_from(list(self.model.workers)), label="worker")
        self.q.heartbeat(worker, 1)
        self.model.workers[worker].heartbeat_at = self.clock.now

    @rule(data=st.data())
    def delete_worker_row(self, data) -> None:
        worker = data.draw(st.sampled_from(list(self.model.workers)), label="worker")
        self.q.unregister_worker(worker)
        self.model.workers[worker].heartbeat_at = None

    @rule(seconds=st.sampled_from([0.25, 1.0, 2.0, 7.5, LEASE + 1, 100.0, 1e5, -3.0]))
    def clock_jump(self, seconds) -> None:
        self.clock.advance(seconds)
        # The main worker is alive: it keeps beating whatever the clock does.
        self.q.heartbeat(self.main, 1)
        self.model.workers[self.main].heartbeat_at = self.clock.now

    @rule()
    def rescue_lost(self) -> None:
        now = self.clock.now
        gone = {
            w
            for w, mw in self.model.workers.items()
            if mw.heartbeat_at is not None and mw.heartbeat_at < now - LEASE
        }
        live = {w for w, mw in self.model.workers.items() if mw.heartbeat_at is not None} - gone
        expected = sorted(
            j.id
            for j in self.model.jobs.values()
            if j.state == "processing" and j.worker not in live
        )
        rescued = sorted(job.id for job in self.q.rescue_lost())
        assert rescued == expected, f"rescued {rescued}, expected {expected}"
        event(f"rescued {min(len(rescued), 2)}")
        for w in gone:
            self.model.workers[w].heartbeat_at = None
        for job_id in expected:
            job = self.model.jobs[job_id]
            self._fail(job, "worker lost", None, job.output)

    @rule(data=st.data())
    def rescue_scenario(self, data) -> None:
        """SPEC 3's lost worker: a second worker claims a job and dies (silent past its lease,
        or its row gone); another worker's rescue_lost fails the job by the retry rules."""
        worker = self._register()
        if self._next_claimable() is None:
            self.enqueue(max_retries=data.draw(st.sampled_from([None, 0, 1, 2])), priority=3,
                         delay=None, job_id=None)
        self.claim_with(worker)
        if data.draw(st.booleans(), label="silent"):
            self.clock_jump(LEASE + 1)
        else:
            self.q.unregister_worker(worker)
            self.model.workers[worker].heartbeat_at = None
        self.rescue_lost()

    def _stale(self) -> list[Handle]:
        return [h for h in self.handles if not self._still_holds(h)]

    @precondition(lambda self: self._stale())
    @rule(data=st.data(), result=RESULTS)
    def lost_worker_comes_back(self, data, result) -> None:
        """A worker presumed lost was only paused: it heartbeats again, may claim again (the
        very job it lost, once due), then reports its old run. The old result must be dropped,
        whatever happened to the job since."""
        stale = self._stale()
        handle = stale[data.draw(st.integers(0, len(stale) - 1), label="stale handle")]
        self.q.heartbeat(handle.worker, 1)
        self.model.workers[handle.worker].heartbeat_at = self.clock.now
        if data.draw(st.booleans(), label="revive dead"):
            self.dlq_retry_all()
        if data.draw(st.booleans(), label="claim again"):
            self.clock_jump(data.draw(st.sampled_from([0.25, 2.0, 100.0]), label="wait"))
            self.claim_with(handle.worker)
        self.handles.remove(handle)
        self.handles.append(handle)  # the finish rule below takes the last one
        self.finish_handle(len(self.handles) - 1, result)

    def _check_retry_failure(self, before, call) -> None:
        with_error = False
        try:
            call()
        except QueueError:
            with_error = True
        assert with_error
        assert self._snapshot() == before, "a refused retry changed the queue"

    @rule(data=st.data())
    def dlq_retry(self, data) -> None:
        # In enqueue order, never sorted: generated ids are random, and what Hypothesis draws
        # must not depend on them.
        dead = [j.id for j in self.model.jobs.values() if j.state == "dead"]
        choices = dead + list(self.model.jobs) + ["zzz"]
        wanted = data.draw(st.sampled_from(choices), label="job")
        if data.draw(st.booleans(), label="as prefix") and len(wanted) > 1:
            # A generated id is cut to 8 characters or more (unique: 40 random bits).
            shortest = 8 if len(wanted) == queue_module.ID_LENGTH else 1
            wanted = wanted[: data.draw(st.integers(shortest, len(wanted) - 1), label="cut")]
        target = self._resolve(wanted)
        before = self._snapshot()
        if target is None or target.state != "dead":
            self._check_retry_failure(before, lambda: self.q.retry_dead([wanted]))
            return
        event("dlq retry of a dead job")
        [job] = self.q.retry_dead([wanted])
        assert job.id == target.id
        self._revive(target)

    def _revive(self, job: ModelJob) -> None:
        job.state = "pending"
        job.attempts = 0
        job.error = None
        job.exit_code = None
        job.worker = None
        job.started_at = None
        job.finished_at = None
        job.run_at = self.clock.now

    @rule()
    def dlq_retry_all(self) -> None:
        dead = sorted(j.id for j in self.model.jobs.values() if j.state == "dead")
        assert sorted(self.q.retry_all_dead()) == dead
        for job_id in dead:
            self._revive(self.model.jobs[job_id])

    @rule(value=st.sampled_from([0, 1, 2, 3, 5, -1, "x", "1.5"]))
    def set_max_retries(self, value) -> None:
        if isinstance(value, int) and value >= 0:
            assert self.q.config_set("max-retries", value) == value
            self.model.max_retries = value
        else:
            before = self.q.config()
            try:
                self.q.config_set("max-retries", value)
            except InvalidInput:
                pass
            else:
                raise AssertionError(f"max-retries {value!r} accepted")
            assert self.q.config() == before

    @rule(value=st.sampled_from([1, 1.5, 2, 3, 10, 1e6, 0.5, "nan", "inf", 0]))
    def set_backoff_base(self, value) -> None:
        valid = isinstance(value, (int, float)) and value >= 1
        if valid:
            self.q.config_set("backoff-base", value)
            self.model.backoff_base = value
        else:
            before = self.q.config()
            try:
                self.q.config_set("backoff-base", value)
            except InvalidInput:
                pass
            else:
                raise AssertionError(f"backoff-base {value!r} accepted")
            assert self.q.config() == before

    # -- the database goes away ---------------------------------------------------------------

    def _away(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
            return
        self.locker = sqlite3.connect(self.q.target.location, isolation_level=None, timeout=10)
        self.locker.execute("BEGIN EXCLUSIVE")
        self.q.db.execute_sql(f"PRAGMA busy_timeout = {LOCKED_BUSY_MS}")

    def _back(self) -> None:
        if self.proxy is not None:
            self.proxy.up()
        if self.locker is not None:
            self.locker.execute("ROLLBACK")
            self.locker.close()
            self.locker = None
            # the connection's own wait again: short steps, tried again up to the whole timeout
            self.q.db.execute_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_STEP_MS}")

    @classmethod
    def _attemptable(cls) -> dict[str, object]:
        """The machine's rules, by name, that an outage may interrupt."""
        found = {}
        for name in dir(cls):
            marked = getattr(getattr(cls, name, None), "hypothesis_stateful_rule", None)
            if marked is not None and name != "outage":
                found[name] = marked
        return dict(sorted(found.items()))

    def _connects(self) -> list[int]:
        """Counts the Queue's attempts to open a connection (a use of the database after a
        failure opens a new one): a rule that succeeded in an outage without one did not use the
        database at all; with one, it hid a database error."""
        counter = [0]
        database = self.q.db
        connect = type(database)._connect

        def counted(*args, **kwargs):
            counter[0] += 1
            return connect(database, *args, **kwargs)

        database._connect = counted
        return counter

    @rule(data=st.data(), attempts=st.integers(1, 3),
          passing=st.sampled_from([0.0, 0.0, 3.0, 11.0, 65.0]))  # fmt: skip
    def outage(self, data, attempts, passing) -> None:
        """The database goes away; ``attempts`` of the machine's rules are tried meanwhile, and
        ``passing`` seconds go by (due times of schedules, retries' backoffs, heartbeats pass).
        Each attempt fails with a database error and changes nothing, or (SQLite: reads go on
        under another connection's write lock) succeeds as it would have anyway."""
        rules = self._attemptable()
        connects = self._connects()
        self._away()
        try:
            # The first use finds the connection gone (a read: on SQLite it goes on).
            try:
                self.q.counts()
            except peewee.PeeweeException:
                assert self.q.recover(), "a broken connection was kept"
            else:
                assert self.proxy is None, "a read succeeded while the server was away"
            for n in range(attempts):
                name = data.draw(st.sampled_from(sorted(rules)), label="attempted")
                attempted = rules[name]
                if not all(check(self) for check in attempted.preconditions):
                    continue
                arguments = {
                    key: data if key == "data" else data.draw(strategy, label=key)
                    for key, strategy in attempted.arguments.items()
                }
                saved = copy.deepcopy({key: getattr(self, key) for key in self.MODEL_STATE})
                handles = list(self.handles)
                tried = connects[0]
                try:
                    attempted.function(self, **arguments)
                except peewee.PeeweeException as exc:
                    for key, value in saved.items():
                        setattr(self, key, value)
                    self.handles = handles
                    self.q.recover()  # what every long-lived user does after a database error
                    event(f"outage: {name} failed ({type(exc).__name__})")
                else:
                    # Only reads succeed, and only on SQLite (the server is gone); or the rule
                    # had nothing to do with the database (on PostgreSQL: no connection tried).
                    assert self.proxy is None or connects[0] == tried, (
                        f"{name} succeeded while the server was away"
                    )
                    event(f"outage: {name} went on")
                if n == 0:
                    self.clock.advance(passing)
        finally:
            self._back()
            del self.q.db._connect
        if passing:
            event(f"outage: {passing:g}s passed")

    # -- invariants ---------------------------------------------------------------------------

    def _rows(self) -> dict[str, SimpleNamespace]:
        """Every job's row as the database has it, by id in enqueue order: one statement, its
        SQL made once (built by peewee at each step, and read twice, the rows were a third of
        the machine's time)."""
        if self._rows_sql is None:
            Job = self.q.models.Job
            self._rows_sql = Job.select().order_by(Job.seq).sql()
        cursor = self.q.db.execute_sql(*self._rows_sql)
        names = [column[0] for column in cursor.description]
        rows = [SimpleNamespace(**dict(zip(names, values))) for values in cursor.fetchall()]
        return {row.id: row for row in rows}

    @invariant()
    def rows_hold(self) -> None:
        """The jobs' rows match the model, and keep the retry rules."""
        rows = self._rows()
        self.matches_model(rows)
        self.retry_rules(rows)

    def matches_model(self, rows: dict[str, SimpleNamespace]) -> None:
        assert set(rows) == set(self.model.jobs), "a job appeared or disappeared"
        for job_id, want in self.model.jobs.items():
            got = rows[job_id]
            assert got.state in STATES
            assert (got.state, got.attempts) == (want.state, want.attempts), job_id
            if got.state in ("pending", "failed"):
                assert got.run_at == want.run_at, job_id
            if got.state == "processing":
                assert got.worker == want.worker, job_id
            if got.state in ("failed", "dead"):
                assert got.error == want.error, job_id
                assert got.exit_code == want.exit_code, job_id
            if got.state in ("completed", "failed", "dead"):
                assert got.output == want.output, job_id

    @invariant()
    def counts_add_up(self) -> None:
        counts = self.q.counts()
        assert set(counts) == set(STATES)
        assert sum(counts.values()) == self.enqueued
        for state in STATES:
            assert counts[state] == sum(1 for j in self.model.jobs.values() if j.state == state)

    def retry_rules(self, rows: dict[str, SimpleNamespace]) -> None:
        for got in rows.values():
            want = self.model.jobs[got.id]
            if got.max_retries is not None:
                assert got.attempts <= max(got.max_retries, 1), "ran more often than allowed"
            if got.state == "dead":
                assert got.attempts >= want.limit_at_failure, "dead before its retries ran out"
            if got.state == "failed":
                assert got.attempts < want.limit_at_failure, "failed though retries ran out"
                delay = expected_backoff(want.base_at_failure, got.attempts)
                assert got.run_at == got.finished_at + delay, "backoff is not base ** attempts"


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI can't flake
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
QueueMachine.TestCase.settings = SETTINGS
TestQueueMachine = QueueMachine.TestCase  # on SQLite


@pytest.mark.postgres
def test_the_model_on_postgresql():
    """The same machine on PostgreSQL (SKIP LOCKED claims, its own SQL), fewer examples: each
    one creates and drops a schema."""
    url = pg_server()  # skips without a server (fails in CI)
    run_state_machine_as_test(
        lambda: QueueMachine(pg_url=url), settings=settings(SETTINGS, max_examples=15)
    )
