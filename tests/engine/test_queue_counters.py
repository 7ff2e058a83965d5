"""Schema 18: the job counters are kept per queue and state. `queue list`, `status --queue`, the
TUI's queues screen and every Prometheus scrape read them instead of counting every job (1.5 s a
read at a million jobs on SQLite). They must stay exact through every way a job is added,
changes state, moves to another queue or goes, on both backends, and an older database must
come up with them right."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult

OK = RunResult(0, None, "ok\n")
FAILED = RunResult(1, "exit code 1", "")


def exact(q: Queue) -> dict[tuple[str, str], int]:
    """The truth: the jobs counted row by row."""
    rows = q.db.execute_sql('SELECT "queue", "state", COUNT(*) FROM "job" GROUP BY 1, 2')
    return {(name, state): int(n) for name, state, n in rows}


def counted(q: Queue) -> dict[tuple[str, str], int]:
    """What the counters say, without the zero rows (a queue's state that had jobs)."""
    return {key: n for key, n in q.counts_by_queue().items() if n}


def test_counts_per_queue_stay_exact_through_every_change(any_queue, clock):
    q = any_queue
    q.config_set("max-retries", 2)
    q.enqueue_many([
        JobSpec(command="a", id="a", queue="alpha"),
        JobSpec(command="b", id="b", queue="beta"),
        JobSpec(command="c", id="c", queue="alpha", after=("a",)),
        *(JobSpec(command=f"g{n}", id=f"g{n}", queue="gamma") for n in range(5)),
        JobSpec(command="d", id="d"),
    ])  # fmt: skip
    assert counted(q) == exact(q) == {
        ("alpha", "pending"): 2, ("beta", "pending"): 1, ("gamma", "pending"): 5,
        ("default", "pending"): 1,
    }  # fmt: skip
    q.edit("g0", {"queue": "beta"})  # pending, to another queue
    q.edit("g1", {"queue": "delta"})  # to a queue no job had
    assert counted(q) == exact(q)
    assert q.queue_counts("delta")["pending"] == 1 and q.queue_counts("gamma")["pending"] == 3

    worker = q.register_worker(1)
    jobs = {}
    for _ in range(4):
        job = q.claim(worker)
        jobs[job.id] = job
    assert counted(q) == exact(q)  # claimed: pending -> processing, each in its queue
    first, second, third, fourth = jobs.values()
    q.finish(first, OK, worker)  # processing -> completed
    q.finish(second, FAILED, worker)  # processing -> failed (one retry left)
    q.release(third, worker)  # processing -> pending
    q.cancel([fourth.id])  # a running job asked to stop: still processing until it ends
    q.finish(fourth, FAILED, worker)
    assert counted(q) == exact(q)
    q.edit(second.id, {"queue": "epsilon", "delay": 0})  # failed, moved
    assert counted(q) == exact(q)
    for _ in range(4):  # the rest run; the failed one fails again until it is dead
        clock.advance(3600)
        while (job := q.claim(worker)) is not None:
            q.finish(job, FAILED if job.id == second.id else OK, worker)
    assert counted(q) == exact(q)
    assert exact(q).get(("epsilon", "dead")) == 1

    q.retry_dead([second.id])  # dead -> pending
    q.enqueue_many([JobSpec(command="w", id="w1", queue="alpha"),
                    JobSpec(command="w", id="w2", queue="eta", after=("w1",))])  # fmt: skip
    q.cancel(["w1"])  # and its dependent, in its own queue
    assert exact(q)[("eta", "cancelled")] == 1
    q.enqueue(JobSpec(command="z", id="z", queue="zeta"))
    q.unregister_worker(worker)
    worker = q.register_worker(1)
    q.claim(worker)
    q.unregister_worker(worker)
    q.rescue_lost()  # processing -> failed ("worker lost")
    assert counted(q) == exact(q)
    q.purge(["completed", "cancelled", "dead"])
    assert counted(q) == exact(q)
    names = [info.name for info in q.queues()]  # a queue whose jobs all went is not listed
    assert names == sorted({name for name, _ in exact(q)})
    assert sum(q.counts().values()) == sum(exact(q).values())


def test_a_large_enqueue_of_many_queues_is_counted_per_queue(any_queue):
    q = any_queue
    q.enqueue_many([JobSpec(command="true", queue=f"q{n % 7}") for n in range(3000)])
    assert counted(q) == exact(q)
    assert q.counts_by_queue()[("q3", "pending")] == 429
    q.db.execute_sql("DELETE FROM \"job\" WHERE \"queue\" IN ('q1', 'q2')")  # any deleter
    assert counted(q) == exact(q)
    assert [info.name for info in q.queues()] == ["q0", "q3", "q4", "q5", "q6"]


def back_to_schema_17(q: Queue) -> None:
    """The counters as schema 17 left them, per state only (their rows the jobs' counts), and the
    version: what an upgrade of a file or database written by the last release finds."""
    db = q.db
    states = 'SELECT "state", COUNT(*) FROM "job" GROUP BY "state"'
    with q._write():
        db.execute_sql(f'DROP TABLE "{schema.COUNTER_TABLE}"')
        if q.is_sqlite:
            db.execute_sql(f'CREATE TABLE "{schema.STATE_COUNTER_TABLE}" ("state" VARCHAR(16) '
                           'NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL) WITHOUT ROWID')  # fmt: skip
            db.execute_sql(f'INSERT INTO "{schema.STATE_COUNTER_TABLE}" {states}')
            db.execute_sql(f'DROP TRIGGER "{schema.REQUEUE_TRIGGER}"')
        else:
            db.execute_sql(f'DROP TABLE "{schema.COUNTER_CHANGES}"')
            db.execute_sql(f'CREATE TABLE "{schema.STATE_COUNTER_TABLE}" ("state" VARCHAR(16) '
                           'NOT NULL, "shard" INTEGER NOT NULL, "n" BIGINT NOT NULL, '
                           'PRIMARY KEY ("state", "shard"))')  # fmt: skip
            db.execute_sql(
                f'INSERT INTO "{schema.STATE_COUNTER_TABLE}" SELECT "state", 0, COUNT(*) '
                'FROM "job" GROUP BY "state"'
            )
            db.execute_sql(f'CREATE TABLE "{schema.COUNTER_CHANGES}" '
                           '("state" VARCHAR(16) NOT NULL, "n" INTEGER NOT NULL)')  # fmt: skip
            db.execute_sql(f'DROP TRIGGER "{schema.REQUEUE_TRIGGER}" ON "job"')
        # What writes them, made for the table per state by the builders the steps use.
        if q.is_sqlite:
            _, drop = schema._sqlite_counted(by_queue=False)
            db.execute_sql('DROP TRIGGER "job_count_delete"')
            db.execute_sql(f'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN {drop} END')
            for operation in schema.sqlite_triggers(db):
                operation.run()
        else:
            for statement in schema._pg_counter_functions(by_queue=False):
                db.execute_sql(statement)
            db.execute_sql(schema._pg_state_function(db))
        db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '17' WHERE \"key\" = 'version'")
    assert not schema.counted_by_queue(db)


def test_a_schema_17_database_upgrades_to_counts_per_queue(target, clock):
    q = Queue(target, clock=clock)
    try:
        q.enqueue_many([JobSpec(command="true", queue=name) for name in ("a", "b", "b", "c")])
        worker = q.register_worker(1)
        running = q.claim(worker)
        q.finish(q.claim(worker), OK, worker)
        back_to_schema_17(q)
    except Exception:
        q.close()
        raise
    q.close()
    upgraded = Queue(target, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert schema.counted_by_queue(upgraded.db)
        assert counted(upgraded) == exact(upgraded)
        # The run under way at the upgrade ends, and the rest run: counted in their queues.
        upgraded.finish(running, OK, worker)
        while (job := upgraded.claim(worker)) is not None:
            upgraded.finish(job, OK, worker)
        upgraded.edit(upgraded.enqueue(JobSpec(command="true", queue="a")).id, {"queue": "d"})
        assert counted(upgraded) == exact(upgraded)
        assert upgraded.queue_counts("b")["completed"] == 2
        assert upgraded.queue_counts("d")["pending"] == 1
    finally:
        upgraded.close()


@pytest.mark.postgres
def test_postgresql_counts_per_queue_hold_across_connections_and_their_fold(pg_target):
    queues = [Queue(pg_target) for _ in range(3)]
    try:
        for n, q in enumerate(queues):  # each connection counts in rows of its own
            q.enqueue_many([JobSpec(command="true", queue=f"q{n}")] * (n + 1))
        first = queues[0]
        worker = first.register_worker(1)
        first.finish(first.claim(worker), OK, worker)
        queues[1].edit(queues[1].list_jobs(queue="q1")[0].id, {"queue": "q0"})
        assert counted(first) == exact(first)
        # Rows of connections long gone, and many changes, are folded into shard 0.
        first.db.execute_sql(
            'INSERT INTO "job_count_by_queue" ("queue", "state", "shard", "n") '
            "SELECT 'q2', 'pending', -g, 0 FROM generate_series(1, 150) AS g"
        )
        assert counted(first) == exact(first)
        rows = first.db.execute_sql('SELECT COUNT(*) FROM "job_count_by_queue"').fetchone()[0]
        assert rows < 20
        assert counted(first) == exact(first)
    finally:
        for q in queues:
            q.close()


def test_the_per_state_counters_are_gone_so_an_older_writer_fails_instead_of_miscounting(target):
    """QA: a process of the last release still running as the file was upgraded counted each job
    it enqueued into the pending count of every queue (its `UPDATE job_count ... WHERE state =
    'pending'` matched one row a queue), for good. Its statement now finds no such table: its
    enqueue fails (nothing is inserted), and the counts stay exact."""
    import peewee

    q = Queue(target)
    try:
        q.enqueue_many([JobSpec(command="true", queue=name) for name in ("a", "b")])
        with pytest.raises((peewee.OperationalError, peewee.ProgrammingError)):
            q.db.execute_sql('UPDATE "job_count" SET "n" = "n" + 1 WHERE "state" = \'pending\'')
    finally:
        q.close()
    q = Queue(target)
    try:
        assert counted(q) == exact(q) == {("a", "pending"): 1, ("b", "pending"): 1}
    finally:
        q.close()


def test_a_database_of_schema_18s_first_commits_is_made_again_under_the_tables_name(target):
    """Schema 18's first commits kept the counters per queue under the old name (job_count): a
    database of theirs says 18. Schema 19 makes the table again under its own name."""
    q = Queue(target)
    try:
        q.enqueue_many([JobSpec(command="true", queue=name) for name in ("a", "b", "b")])
        with q._write():
            q.db.execute_sql(f'ALTER TABLE "{schema.COUNTER_TABLE}" '
                             f'RENAME TO "{schema.STATE_COUNTER_TABLE}"')  # fmt: skip
            q.db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '18' "
                             "WHERE \"key\" = 'version'")  # fmt: skip
    finally:
        q.close()
    upgraded = Queue(target)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 19
        assert schema.counted_by_queue(upgraded.db)
        assert not upgraded.db.get_columns(schema.STATE_COUNTER_TABLE)
        worker = upgraded.register_worker(1)
        upgraded.finish(upgraded.claim(worker), OK, worker)
        upgraded.edit(upgraded.enqueue(JobSpec(command="true", queue="a")).id, {"queue": "c"})
        assert counted(upgraded) == exact(upgraded)
        assert upgraded.queue_counts("b")["pending"] + upgraded.queue_counts("a")["pending"] == 2
    finally:
        upgraded.close()
