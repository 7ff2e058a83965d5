"""When an idle worker's next ready job falls due (Lifecycle.next_due_in), on both backends: the
earliest ready job of a queue that is not held, of the worker's queues if it has some. Schema 13
(PostgreSQL): no "job_due" index there (every claim and run's end paid for it); the read takes the
index on (queue, run_at) over ready jobs, a probe per queue, on a new database and on one
upgraded from schema 12."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.lifecycle import _next_due_by_queue

OK = RunResult(0, None, "")
FAIL = RunResult(1, "exit code 1", "")


def test_the_earliest_ready_job_of_a_queue_not_held(any_queue, clock):
    q = any_queue
    assert q.next_due_in() is None
    q.enqueue(JobSpec(command="b", queue="b", delay=300))
    q.enqueue(JobSpec(command="a", queue="a", delay=200))
    q.enqueue(JobSpec(command="c", queue="c", delay=100))
    first = q.enqueue(JobSpec(command="first", queue="d", delay=50))
    q.enqueue(JobSpec(command="blocked", queue="e", delay=10, after=(first.id,)))
    assert q.next_due_in() == pytest.approx(50)
    assert q.next_due_in(("a", "b")) == pytest.approx(200)
    assert q.next_due_in(("b",)) == pytest.approx(300)
    assert q.next_due_in(("e",)) is None  # waits for a dependency: not ready
    assert q.next_due_in(("nothing",)) is None
    q.pause_queue("d")
    assert q.next_due_in() == pytest.approx(100)
    q.set_queue_limit("c", 0)  # at its limit: held
    assert q.next_due_in() == pytest.approx(200)
    q.resume_queue("d")
    clock.advance(60)
    assert q.next_due_in() == 0.0  # d's job is due
    worker = q.register_worker(1)
    job = q.claim(worker)
    assert job.id == first.id
    assert q.next_due_in() == pytest.approx(140)  # a's; c is still held
    q.finish(job, OK, worker)  # e's job is ready now, due 50 s ago
    assert q.next_due_in() == 0.0
    assert q.next_due_in(("e",)) == 0.0


def test_a_failed_job_is_due_at_its_retry(any_queue, clock):
    q = any_queue
    q.enqueue(JobSpec(command="x", max_retries=2))
    q.enqueue(JobSpec(command="later", queue="other", delay=10_000))
    worker = q.register_worker(1)
    job = q.claim(worker)
    assert q.next_due_in() == pytest.approx(10_000)
    stored = q.finish(job, FAIL, worker)
    assert stored.state == "failed" and stored.run_at > clock()
    assert q.next_due_in() == pytest.approx(stored.run_at - clock())


def job_indexes(q: Queue) -> set[str]:
    return {index.name for index in q.db.get_indexes("job")}


@pytest.mark.postgres
def test_a_new_postgresql_database_has_no_due_index_and_reads_the_queue_index(pg_target, clock):
    q = Queue(pg_target, clock=clock)
    try:
        assert "job_due" not in job_indexes(q)
        assert {"job_ready_queue", "job_claim_order", "job_blocked_order"} <= job_indexes(q)
        q.enqueue_many([JobSpec(command="true", queue=f"q{n % 4}", delay=1000 + n)
                        for n in range(3000)])  # fmt: skip
        q.db.execute_sql('ANALYZE "job"')
        for queues in (None, ("q1", "q3")):
            plan = "\n".join(
                row[0] for row in q.db.execute_sql("EXPLAIN " + _next_due_by_queue(queues)).fetchall()
            )
            assert "job_ready_queue" in plan, plan
            assert "Seq Scan on job" not in plan, plan
        assert q.next_due_in() == pytest.approx(1000)
        assert q.next_due_in(("q3",)) == pytest.approx(1003)
    finally:
        q.close()


@pytest.mark.postgres
def test_a_schema_12_postgresql_database_drops_the_due_index_keeping_its_jobs(pg_target, clock):
    q = Queue(pg_target, clock=clock)
    with q._write():
        q.db.execute_sql(
            'CREATE INDEX "job_due" ON "job" ("run_at") WHERE ("state" IN (\'pending\', '
            "'failed') AND \"waiting_on\" = 0)"
        )
        q.db.execute_sql(
            "UPDATE \"queuectl_schema\" SET \"value\" = '12' WHERE \"key\" = 'version'"
        )
    q.enqueue(JobSpec(command="soon", id="soon", delay=30))
    q.enqueue(JobSpec(command="now", id="now"))
    assert "job_due" in job_indexes(q)
    q.close()
    upgraded = Queue(pg_target, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 13
        assert "job_due" not in job_indexes(upgraded)
        assert upgraded.next_due_in() == 0.0
        worker = upgraded.register_worker(1)
        job = upgraded.claim(worker)
        assert job.id == "now"
        assert upgraded.next_due_in() == pytest.approx(30)
        assert upgraded.finish(job, OK, worker).state == "completed"
        assert upgraded.counts()["completed"] == 1 and upgraded.counts()["pending"] == 1
    finally:
        upgraded.close()


def test_an_idle_worker_s_look_does_not_grow_with_a_paused_queue_s_backlog(tmp_path):
    """SQLite, counted in the database's own instructions (not timed): an idle worker's next
    due time, with 4,000 ready jobs of a paused queue due first, costs about what it costs with
    40 (it passed over them one by one in "job_due": a look at every change an idle worker is
    woken for)."""

    def work(backlog: int) -> int:
        q = Queue(str(tmp_path / f"{backlog}.db"))
        try:
            q.enqueue_many([JobSpec(command="h", queue="held", delay=10)] * backlog)
            q.pause_queue("held")
            q.enqueue_many([JobSpec(command="a", queue=f"q{n}", delay=60) for n in range(3)])
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            q.db.connection().set_progress_handler(count, 100)
            for queues in (None, ("q1", "held")):
                assert q.next_due_in(queues) == pytest.approx(60, abs=5)
            return steps[0]
        finally:
            q.close()

    small, large = work(40), work(4000)
    assert large < 2 * small, (small, large)
