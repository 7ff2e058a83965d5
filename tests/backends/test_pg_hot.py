"""PostgreSQL schema 11 (issue #17): the state trigger's function sets no search path (its tables
are named in its own schema) and takes a shorter path for a claim and for a run's end; the
complete-and-claim finds the finished job by its seq. What is recorded does not change (the
comparison with schema 9's triggers is tests/backends/test_pg_triggers.py); these tests cover
the upgrade, a change made from a session whose search path is elsewhere, and the lookup."""

from __future__ import annotations

import psycopg
import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.models import Job
from support import assert_a_job_runs_and_is_recorded, pg_schema, pg_server

pytestmark = pytest.mark.postgres

OK = RunResult(0, None, "done")

# Schema 10's function as schema 10 made it: the search path set on every call.
SCHEMA_10_FUNCTION = (
    'CREATE OR REPLACE FUNCTION "job_state_changed"() RETURNS trigger LANGUAGE plpgsql '
    "SET search_path FROM CURRENT AS $$ DECLARE e text; d float8; t float8; BEGIN "
    'INSERT INTO "job_count" AS c ("state", "shard", "n") VALUES (OLD."state", '
    'pg_backend_pid(), -1), (NEW."state", pg_backend_pid(), 1) ON CONFLICT ("state", "shard") '
    'DO UPDATE SET "n" = c."n" + EXCLUDED."n"; '
    f'IF NEW."state" <> \'processing\' THEN {schema._pg_history_body(True)} END IF; '
    "RETURN NULL; END $$"
)


def state_function(q: Queue) -> tuple[str, list[str] | None]:
    """The source and the settings (proconfig) of this schema's "job_state_changed"."""
    return q.db.execute_sql(
        "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'job_state_changed' "
        "AND pronamespace = current_schema()::regnamespace"
    ).fetchone()


def schema_of(target: str) -> str:
    return target.rsplit("%3D", 1)[1]


def test_a_schema_10_database_upgrades_to_the_function_of_a_new_one(pg_target):
    q = Queue(pg_target)
    expected = state_function(q)
    with q._write():
        q.db.execute_sql(SCHEMA_10_FUNCTION)
        q.db.execute_sql(
            "UPDATE \"queuectl_schema\" SET \"value\" = '10' WHERE \"key\" = 'version'"
        )
    assert state_function(q)[1] is not None  # schema 10's: `SET search_path`
    q.close()
    upgraded = Queue(pg_target)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 11
        source, settings = state_function(upgraded)
        assert (source, settings) == expected
        assert settings is None
        assert f'"{schema_of(pg_target)}"."job_event"' in source
        # and it works: a job runs, completes, and is counted and recorded
        assert_a_job_runs_and_is_recorded(upgraded)
    finally:
        upgraded.close()


def test_a_change_made_from_another_search_path_is_recorded_in_the_jobs_schema():
    """The trigger's tables are its schema's, whatever the search path of the session that
    changes the job: another queue's schema is not written to."""
    with pg_schema(pg_server()) as first, pg_schema(pg_server()) as second:
        a, b = Queue(first), Queue(second)
        try:
            job = b.enqueue("true")
            a.enqueue("true")
            # A session on the first queue's schema cancels the second queue's waiting job.
            a.db.execute_sql(
                f'UPDATE "{schema_of(second)}"."job" SET "state" = \'cancelled\', '
                '"finished_at" = 1, "updated_at" = 1 WHERE "id" = %s', (job.id,)
            )
            assert b.counts()["cancelled"] == 1 and b.counts()["pending"] == 0
            assert [e.event for e in b.history(job.id)] == ["enqueued", "cancelled"]
            assert a.counts()["cancelled"] == 0 and a.counts()["pending"] == 1
            assert a.db.execute_sql('SELECT COUNT(*) FROM "job_event"').fetchone()[0] == 1
        finally:
            a.close()
            b.close()


def test_the_complete_and_claim_finds_the_finished_job_by_its_seq(pg_target):
    """With many jobs running, the finished one is looked up by its seq (the primary key), not
    by a scan of the running jobs' entries in an index on the state."""
    q = Queue(pg_target)
    try:
        q.enqueue_many([JobSpec(command="true")] * 3000)  # many pages: no seq scan
        worker = q.register_worker(1)
        jobs = [q.claim(worker) for _ in range(30)]
        q.db.execute_sql('ANALYZE "job"')
        job = jobs[0]
        ended = job.started_at + 1
        params = (job.seq, worker, ended, 0, "", job.attempts, job.started_at, 0, ended)
        with q._write():  # rolled back: EXPLAIN ANALYZE runs the statement
            plan = "\n".join(
                row[0] for row in q.db.execute_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + q._sql.complete_and_claim, params
                ).fetchall()
            )  # fmt: skip
            q.db.rollback()
        done = plan.split("CTE next")[0]
        assert "job_pkey" in done, plan
        assert "job_state_seq" not in done and "job_state_finished" not in done, plan
        # and it stores the result and claims the next job, exactly once
        stored, following = q.finish_and_claim(job, OK, worker)
        assert stored is not None and stored.state == "completed"
        assert following is not None and following.seq not in {j.seq for j in jobs}
        assert q.counts()["completed"] == 1 and q.counts()["processing"] == 30
    finally:
        q.close()


def test_a_connection_of_psycopg_numbers_the_placeholders_in_order(pg_target):
    """The complete-and-claim's $1..$8 are its first eight placeholders (see Statements)."""
    q = Queue(pg_target)
    try:
        connection: psycopg.Connection = q.db.connection()
        query = "WITH p AS (SELECT %s::int, %s::text) SELECT $2::text || $1::int"
        assert connection.execute(query, (7, "x")).fetchone()[0] == "x7"
    finally:
        q.close()


def announcements(q: Queue, action) -> list[str]:
    """The payloads announced on the queue's channel while ``action()`` ran: read up to a
    sentinel sent after it (a session's notifications arrive in the order of their commits)."""
    with psycopg.connect(pg_server(), autocommit=True) as listener:
        listener.execute(f'LISTEN "{q.channel}"')
        action()
        q.db.execute_sql("SELECT pg_notify(%s, 'sentinel')", (q.channel,))
        payloads = []
        for notify in listener.notifies(timeout=10):
            if notify.payload == "sentinel":
                return payloads
            payloads.append(notify.payload)
    raise AssertionError(f"no sentinel: {payloads}")


def _a_with_dependent_b(q: Queue) -> tuple[str, Job]:
    """A registered worker, and job "a" claimed by it: "b" depends on it, "c" and "d" wait."""
    worker = q.register_worker(1)
    q.enqueue_many([JobSpec(command="a", id="a"), JobSpec(command="b", id="b", after=["a"]),
                    JobSpec(command="c", id="c"), JobSpec(command="d", id="d")])  # fmt: skip
    return worker, q.claim(worker)


def test_a_completed_job_wakes_other_processes_only_when_it_had_dependents(pg_target):
    q = Queue(pg_target)
    try:
        worker, a = _a_with_dependent_b(q)
        assert a.id == "a"
        following: list = []
        # a has a dependent: its completion announces it (and b, ready now, is claimed with it)
        assert announcements(q, lambda: following.extend(q.finish_and_claim(a, OK, worker)))
        assert following[1].id == "b"
        # b and c have none: their completions wake nobody
        b = following[1]
        following.clear()
        assert announcements(q, lambda: following.extend(q.finish_and_claim(b, OK, worker))) == []
        c = following[1]
        assert c.id == "c"
        assert announcements(q, lambda: q.finish(c, OK, worker)) == []
        # a dependent's completion through a plain finish announces it too
        q.enqueue_many([JobSpec(command="e", id="e", after=["d"])])
        d = q.claim(worker)
        assert d.id == "d"
        assert announcements(q, lambda: q.finish(d, OK, worker))
        assert q.claim(worker).id == "e"
    finally:
        q.close()


def test_a_run_that_ends_in_a_limited_queue_wakes_other_processes(pg_target):
    q = Queue(pg_target)
    try:
        worker = q.register_worker(1)
        q.set_queue_limit("small", 1)
        q.enqueue_many([JobSpec(command="x", queue="small"), JobSpec(command="y", queue="small"),
                        JobSpec(command="z")])  # fmt: skip
        first = q.claim(worker)
        assert first.queue == "small"
        assert announcements(q, lambda: q.finish(first, OK, worker))
        second = q.claim(worker)
        assert second.queue == "small"
        failed = RunResult(1, "exit code 1", "")
        assert announcements(q, lambda: q.finish(second, failed, worker))
        other = q.claim(worker)
        assert other.queue != "small"
        assert announcements(q, lambda: q.finish(other, OK, worker)) == []
    finally:
        q.close()


def test_a_claim_says_whether_the_job_has_dependents(pg_target):
    """A claim's row tells the worker whether the job had dependents then: the complete-and-claim
    of a job without any claims the next ready job only (Statements.lean_complete_and_claim)."""
    q = Queue(pg_target)
    try:
        worker, a = _a_with_dependent_b(q)
        assert (a.id, a.has_dependents) == ("a", True)
        stored, b = q.finish_and_claim(a, OK, worker)
        # claimed with a, in the statement that completed it (before c, as it was enqueued)
        assert stored.state == "completed" and stored.has_dependents is None
        assert (b.id, b.has_dependents) == ("b", False)
        stored, c = q.finish_and_claim(b, OK, worker)
        assert stored.state == "completed" and (c.id, c.has_dependents) == ("c", False)
        assert q.claim(worker).has_dependents is False  # d, by the plain claim
        assert q.counts()["completed"] == 2 and q.counts()["processing"] == 2
    finally:
        q.close()


def test_a_dependent_enqueued_while_its_dependency_runs_runs_after_it(pg_target):
    """A job claimed without dependents gets one while it runs: its completion (the lean
    complete-and-claim) counts the dependent down and wakes the other processes; the dependent
    is claimed next, once."""
    q = Queue(pg_target)
    try:
        worker = q.register_worker(1)
        q.enqueue_many([JobSpec(command="a", id="a")])
        a = q.claim(worker)
        assert a.has_dependents is False
        q.enqueue_many([JobSpec(command="b", id="b", after=["a"])])
        assert q.claim(worker) is None  # b waits for a
        following: list = []
        assert announcements(q, lambda: following.extend(q.finish_and_claim(a, OK, worker)))
        assert following[0].state == "completed"
        b = following[1] or q.claim(worker)
        assert b.id == "b" and b.state == "processing"
        assert q.claim(worker) is None
        assert q.finish(b, OK, worker).state == "completed"
        assert q.counts()["completed"] == 2 and q.counts()["processing"] == 0
    finally:
        q.close()
