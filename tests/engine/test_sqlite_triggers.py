"""Schema 10 (issue #17): SQLite's triggers on a change of a job's state are three in place of
eight, writing exactly what the eight wrote: the counters, the dependencies' countdown and
`blocked` / `unblocked` events, the history row of each run or change, the run totals and the
hook deliveries. Schema 11: the rarer changes' statements run from the view `job_change`, and a
completed run's countdown of its dependents from a trigger of its own; again writing exactly
what schema 9's and 10's wrote. Schema-9 and schema-10 databases upgrade keeping their rows,
counts and history."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.states import State
from support import FakeClock

OK = RunResult(0, None, "done")
FAIL = RunResult(3, "exit code 3", "")
SCHEMA_10 = {"job_state_changed", "job_counted", "job_run_completed"}
SCHEMA_11 = SCHEMA_10 | {"job_dep_completed"}


def state_triggers(q: Queue) -> dict[str, str]:
    rows = q.db.execute_sql(
        "SELECT \"name\", \"sql\" FROM sqlite_master WHERE \"type\" = 'trigger' "
        "AND \"sql\" LIKE '%AFTER UPDATE OF \"state\"%'"
    ).fetchall()
    return dict(rows)


def schema_9_triggers(q: Queue) -> None:
    """The triggers on a change of state as schema 9 left them on SQLite."""
    db = q.db
    for name in (*schema.SQLITE_STATE_TRIGGERS, schema.SQLITE_HOOK_TRIGGER):
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"')
    counters = [sql for op in schema.sqlite_job_counters(db) for sql in op.statements
                if sql.startswith('CREATE TRIGGER "job_count_update"')]  # fmt: skip
    for sql in counters:
        db.execute_sql(sql)
    for operation in schema.workflow_triggers(db) + schema.history_triggers(db):
        operation.run()
    assert set(state_triggers(q)) == {
        "job_count_update", "job_dep_completed", "job_dep_uncompleted", "job_dep_dead",
        "job_dep_revived", "job_history_end", "job_history_update", "job_hook",
    }  # fmt: skip


def schema_10_triggers(q: Queue) -> None:
    """The triggers on a change of state as schema 10 left them on SQLite."""
    schema_9_triggers(q)
    for operation in schema.sqlite_triggers_of_10(q.db):
        operation.run()
    q.db.execute_sql(f'DROP VIEW IF EXISTS "{schema.SQLITE_CHANGE_VIEW}"')
    assert set(state_triggers(q)) == SCHEMA_10


REFERENCE = {9: schema_9_triggers, 10: schema_10_triggers}


def schema_objects(q: Queue) -> dict[str, str]:
    """The triggers and views of the file, by name."""
    rows = q.db.execute_sql(
        "SELECT \"name\", \"sql\" FROM sqlite_master WHERE \"type\" IN ('trigger', 'view')"
    ).fetchall()
    return dict(rows)


def migrate_from(q: Queue, version: int) -> None:
    """The migration steps after ``version`` up to this one, as ensure() runs them."""
    from playhouse import migrate

    with q._write():
        migrator = migrate.SchemaMigrator.from_database(q.db)
        for step in range(version + 1, schema.SCHEMA_VERSION + 1):
            migrate.migrate(*schema.MIGRATIONS[step](migrator))


def exact_counts(q: Queue) -> dict[str, int]:
    counted = {state.value: 0 for state in State}
    for state, n in q.db.execute_sql('SELECT "state", COUNT(*) FROM "job" GROUP BY 1'):
        counted[state] = n
    return counted


def written(q: Queue) -> dict[str, list[tuple]]:
    """Everything the triggers write, in the order written (ids left out, a worker's id said
    as whether there is one)."""
    db = q.db
    return {
        "events": db.execute_sql(
            'SELECT "job_id", "queue", "at", "event", "attempt", "worker" IS NOT NULL, '
            '"exit_code", "error", "duration", "waited", "started_at" FROM "job_event" '
            'ORDER BY "id"'
        ).fetchall(),
        "totals": db.execute_sql(
            'SELECT "queue", "outcome", "bucket", "n", "seconds" FROM "run_total" ORDER BY 1, 2, 3'
        ).fetchall(),
        "hooks": db.execute_sql(
            'SELECT "job_id", "state", "queue", "command", "attempts", "exit_code", "error", '
            '"hook", "at" FROM "hook_delivery" ORDER BY "id"'
        ).fetchall(),
        "jobs": db.execute_sql(
            'SELECT "id", "state", "attempts", "waiting_on", "exit_code", "error" FROM "job" '
            'ORDER BY "seq"'
        ).fetchall(),
        "counts": sorted(q.counts().items()),
    }


def scenario(q: Queue, clock: FakeClock, reference: bool = False) -> None:
    """Every kind of change of state the engine makes, with dependencies, hooks and a limit.
    ``reference``: on an older schema's triggers (which recorded the hooks themselves)."""
    q.config_set("on-completed", "echo done")
    q.config_set("on-dead", "echo dead")
    q.config_set("on-cancelled", "echo cancelled")
    if reference:  # made by config set (schema 11), which the older schema did not have
        q.db.execute_sql(f'DROP TRIGGER "{schema.SQLITE_HOOK_TRIGGER}"')
    else:
        assert set(state_triggers(q)) == SCHEMA_11 | {schema.SQLITE_HOOK_TRIGGER}
    q.config_set("backoff-base", 1)
    q.set_queue_limit("limited", 1)
    q.enqueue_many([
        JobSpec(command="a", id="a"), JobSpec(command="b", id="b", after=("a",)),
        JobSpec(command="c", id="c", after=("a", "b")), JobSpec(command="d", id="d", max_retries=1),
        JobSpec(command="e", id="e", after=("d",)), JobSpec(command="f", id="f", queue="limited"),
        JobSpec(command="g", id="g", queue="limited"), JobSpec(command="h", id="h"),
        JobSpec(command="i", id="i", after=("h",)), JobSpec(command="j", id="j"),
    ])  # fmt: skip
    worker = q.register_worker(2)
    job = q.claim(worker)
    results = {"a": OK, "b": OK, "c": OK, "d": FAIL, "h": OK, "j": FAIL}
    cancelled_waiting = False
    while job is not None:
        clock.advance(1.5)
        if job.id == "h":  # cancelled while it runs: the run ends cancelled
            q.cancel(["h"])
        if job.id == "g" and not cancelled_waiting:  # a waiting job cancelled: no run
            q.cancel(["i"])
            cancelled_waiting = True
        _, job = q.finish_and_claim(job, results.get(job.id, OK), worker)
        if job is None:
            clock.advance(5)  # the failed ones are due again
            job = q.claim(worker)
    # d went dead (its dependent e is blocked); retried, it unblocks e; a completed job is
    # retried (its dependents counted up again); a run is released, one rescued.
    q.retry(["d"])
    q.retry(["a"])
    job = q.claim(worker)
    assert job is not None and job.id == "a"
    clock.advance(1)
    q.release(job, worker)
    job = q.claim(worker)
    assert job is not None
    clock.advance(2)
    q.db.execute_sql('UPDATE "worker" SET "heartbeat_at" = 0')
    q.rescue_lost()


@pytest.mark.parametrize("when", ["new", "upgraded"])
@pytest.mark.parametrize("reference", [9, 10])
def test_schema_11_writes_what_schema_9_and_10_wrote(tmp_path, reference, when):
    """The same changes of state, on schema 9's (or 10's) triggers and on this schema's: the
    same events, totals, hook deliveries, dependencies' countdown and counters, in the same
    order."""
    clock_old, clock_new = FakeClock(), FakeClock()
    old = Queue(str(tmp_path / "old.db"), clock=clock_old)
    new = Queue(str(tmp_path / "new.db"), clock=clock_new)
    try:
        REFERENCE[reference](old)
        if when == "upgraded":  # this schema's triggers made by the steps, not by a new file's
            REFERENCE[reference](new)
            migrate_from(new, reference)
        assert set(state_triggers(new)) == SCHEMA_11
        scenario(old, clock_old, reference=True)
        scenario(new, clock_new)
        before, after = written(old), written(new)
        assert after["counts"] == sorted(exact_counts(new).items())
        for key in before:
            assert after[key] == before[key], key
        events = {event for _, _, _, event, *_ in after["events"]}
        assert {"enqueued", "completed", "failed", "dead", "blocked", "unblocked", "retried",
                "released", "rescued", "cancelled"} <= events  # fmt: skip
        assert {state for _, state, *_ in after["hooks"]} == {"completed", "dead", "cancelled"}
    finally:
        old.close()
        new.close()


@pytest.mark.parametrize("version", [9, 10])
def test_an_older_database_upgrades_keeping_rows_counts_and_history(target, version):
    clock = FakeClock()
    q = Queue(target, clock=clock)
    try:
        q.config_set("on-completed", "echo done")
        first = q.enqueue(JobSpec(command="true", id="first"))
        q.enqueue(JobSpec(command="true", id="second", after=("first",)))
        worker = q.register_worker(1)
        job = q.claim(worker)
        clock.advance(2)
        stored, job = q.finish_and_claim(job, OK, worker)
        assert stored.id == "first"
        if job is None:  # SQLite: the dependent is claimed next time
            job = q.claim(worker)
        assert job.id == "second"
        if q.is_sqlite:
            REFERENCE[version](q)
        q.db.execute_sql(
            f'UPDATE "queuectl_schema" SET "value" = \'{version}\' WHERE "key" = \'version\''
        )
        kept = written(q)
        history = [(e.event, e.attempt) for e in q.history(first.id)]
    finally:
        q.close()
    upgraded = Queue(target, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 11
        if upgraded.is_sqlite:  # on-completed is set: its hook's trigger is there
            assert set(state_triggers(upgraded)) == SCHEMA_11 | {schema.SQLITE_HOOK_TRIGGER}
        assert written(upgraded) == kept
        assert [(e.event, e.attempt) for e in upgraded.history(first.id)] == history
        assert history == [("enqueued", 0), ("started", 1), ("completed", 1)]
        # The run under way at the upgrade ends, the next job fails: counted and recorded.
        upgraded.enqueue(JobSpec(command="false", id="third", max_retries=0))
        clock.advance(1)
        stored, job = upgraded.finish_and_claim(job, OK, worker)
        assert stored.state == "completed" and job.id == "third"
        assert upgraded.finish(job, FAIL, worker).state == "dead"
        assert upgraded.counts() == exact_counts(upgraded)
        assert upgraded.counts()["completed"] == 2 and upgraded.counts()["dead"] == 1
        assert [e.event for e in upgraded.history("second")] == ["enqueued", "started",
                                                                 "completed"]  # fmt: skip
        assert upgraded.run_totals().runs == {("default", "completed"): 2,
                                              ("default", "dead"): 1}  # fmt: skip
        assert [d.job_id for d in upgraded.deliveries()] == ["first", "second"]
        migrate_from(upgraded, version)  # the steps again: harmless
        assert upgraded.counts() == exact_counts(upgraded)
        upgraded.enqueue(JobSpec(command="true", id="fourth"))
        clock.advance(1)
        job = upgraded.claim(worker)
        assert upgraded.finish(job, OK, worker).state == "completed"
        assert upgraded.counts() == exact_counts(upgraded)
        assert upgraded.run_totals().runs == {("default", "completed"): 3,
                                              ("default", "dead"): 1}  # fmt: skip
    finally:
        upgraded.close()


@pytest.mark.parametrize("version", [9, 10])
def test_a_new_file_and_an_upgraded_one_have_the_same_triggers(tmp_path, version):
    new = Queue(str(tmp_path / "new.db"))
    old = Queue(str(tmp_path / "old.db"))
    try:
        REFERENCE[version](old)
        old.db.execute_sql(
            f'UPDATE "queuectl_schema" SET "value" = \'{version}\' WHERE "key" = \'version\''
        )
    finally:
        old.close()
    upgraded = Queue(str(tmp_path / "old.db"))
    try:
        assert schema_objects(upgraded) == schema_objects(new)
        assert set(state_triggers(new)) == SCHEMA_11
    finally:
        upgraded.close()
        new.close()


def test_a_completed_runs_hook_is_recorded_while_one_is_set_whoever_stores_the_run(target):
    """Schema 11: on SQLite the hook of a completed run is recorded by a trigger that `config
    set on-completed` makes and drops; a worker that opened the queue before the hook was set
    (its statements prepared) records it too, and none once it is unset."""
    clock = FakeClock()
    q = Queue(target, clock=clock)
    worker_queue = Queue(target, clock=clock).for_worker_threads()
    try:
        q.enqueue_many([JobSpec(command=f"run {i}", id=f"j{i}") for i in range(4)])
        worker = worker_queue.register_worker(1)
        job = worker_queue.claim(worker)
        stored, job = worker_queue.finish_and_claim(job, OK, worker)  # statements prepared
        assert stored.id == "j0"
        q.config_set("on-completed", "echo done")
        stored, job = worker_queue.finish_and_claim(job, OK, worker)
        assert stored.id == "j1"
        q.config_set("on-completed", "")
        stored, job = worker_queue.finish_and_claim(job, OK, worker)
        assert stored.id == "j2"
        q.config_set("on-completed", "echo again")
        stored, job = worker_queue.finish_and_claim(job, OK, worker)
        assert stored.id == "j3" and job is None
        assert [(d.job_id, d.state, d.hook) for d in q.deliveries()] == [
            ("j1", "completed", "echo done"), ("j3", "completed", "echo again"),
        ]  # fmt: skip
        if q.is_sqlite:
            assert schema.SQLITE_HOOK_TRIGGER in state_triggers(q)
            q.config_set("on-completed", "  ")
            assert schema.SQLITE_HOOK_TRIGGER not in state_triggers(q)
    finally:
        worker_queue.close()
        q.close()
