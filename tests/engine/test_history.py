"""History (SPEC 8): every change of a job's state is recorded, in the statement that made it,
whoever made it; `Queue.history` reads them back oldest first."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.queue import WORKER_LOST

FAIL = RunResult(3, "exit code 3", "")
OK = RunResult(0, None, "done")


def events(q: Queue, job) -> list[tuple]:
    return [(e.event, e.attempt, e.worker, e.exit_code, e.error) for e in q.history(job.id)]


def run(q: Queue, clock, worker: str, result: RunResult, seconds: float = 1.0):
    job = q.claim(worker)
    assert job is not None
    clock.advance(seconds)
    return q.finish(job, result, worker)


def test_two_failures_then_success_in_order_with_attempts(any_queue, clock):
    q = any_queue
    job = q.enqueue("flaky")
    worker = q.register_worker(1)
    enqueued_at = clock.now
    run(q, clock, worker, FAIL)
    clock.advance(2)  # backoff 2 ** 1
    run(q, clock, worker, FAIL)
    clock.advance(4)
    run(q, clock, worker, OK, seconds=2.5)
    assert events(q, job) == [
        ("enqueued", 0, None, None, None),
        ("started", 1, worker, None, None),
        ("failed", 1, worker, 3, "exit code 3"),
        ("started", 2, worker, None, None),
        ("failed", 2, worker, 3, "exit code 3"),
        ("started", 3, worker, None, None),
        ("completed", 3, worker, 0, None),
    ]
    history = q.history(job.id[:6])  # a prefix does too
    assert [e.at - enqueued_at for e in history] == [0, 0, 1, 3, 4, 8, 10.5]
    assert history[-1].duration == 2.5, "a finished run carries its duration"
    assert [e.waited for e in history if e.event == "started"] == [0, 0, 0]


def test_dead_after_retries_and_the_dlq_retry(any_queue, clock):
    q = any_queue
    job = q.enqueue(JobSpec(command="false", max_retries=1))
    worker = q.register_worker(1)
    run(q, clock, worker, FAIL)
    q.retry_dead([job.id])
    assert [e[0] for e in events(q, job)] == ["enqueued", "started", "dead", "retried"]
    assert events(q, job)[2] == ("dead", 1, worker, 3, "exit code 3")


def test_a_rescued_job_shows_the_lost_worker(any_queue, clock):
    q = any_queue
    job = q.enqueue(JobSpec(command="sleep 100", max_retries=2))
    lost = q.register_worker(1)
    assert q.claim(lost).id == job.id
    clock.advance(q.lease + 1)  # its heartbeat stops: presumed dead
    rescuer = Queue(q.target.location, clock=clock, host="another-host")
    try:
        assert [j.id for j in rescuer.rescue_lost()] == [job.id]
        assert events(q, job)[-1] == ("rescued", 1, lost, None, WORKER_LOST)
        # The retry runs, and is lost too: now the rules say dead, with the lost worker named.
        clock.advance(10)
        second = rescuer.register_worker(1)
        assert rescuer.claim(second).id == job.id
        rescuer.unregister_worker(second)
        rescuer.rescue_lost()
        assert [e[0] for e in events(q, job)] == [
            "enqueued", "started", "rescued", "started", "dead",
        ]  # fmt: skip
        assert events(q, job)[-1] == ("dead", 2, second, None, WORKER_LOST)
    finally:
        rescuer.close()


def test_a_released_job_keeps_its_attempt_uncounted(any_queue, clock):
    q = any_queue
    job = q.enqueue("sleep 100")
    worker = q.register_worker(1)
    claimed = q.claim(worker)
    assert q.release(claimed, worker)
    assert events(q, job)[-1] == ("released", 1, worker, None, None)


def test_a_change_made_by_any_code_is_recorded(any_queue, clock):
    """Another process, another version, a user's SQL: the trigger records it all the same."""
    q = any_queue
    job = q.enqueue("true")
    seq = q.get(job.id).seq
    with q._write():
        q.db.execute_sql(
            "UPDATE \"job\" SET \"state\" = 'cancelled', \"error\" = 'by hand', "
            f'"updated_at" = {q.db.param} WHERE "seq" = {q.db.param}',
            (clock.now + 5, seq),
        )
    last = q.history(job.id)[-1]
    assert (last.event, last.error, last.worker) == ("cancelled", "by hand", None)
    assert last.at == clock.now + 5


def test_every_job_of_a_bulk_enqueue_has_its_enqueued_event(any_queue):
    q = any_queue
    jobs = q.enqueue_many([JobSpec(command=f"echo {i}") for i in range(1200)])
    Event = q.models.Event
    assert Event.select().where(Event.event == "enqueued").count() == 1200
    assert [e.event for e in q.history(jobs[777].id)] == ["enqueued"]
    assert q.history(jobs[777].id)[0].job_id == jobs[777].id


def test_the_hot_path_records_both_rows_it_changes(db_path, clock):
    """SQLite stores a success and claims the next job in one statement: both are recorded."""
    q = Queue(db_path, clock=clock).for_worker_threads()
    try:
        first, second = q.enqueue_many([JobSpec(command="true"), JobSpec(command="true")])
        worker = q.register_worker(1)
        job = q.claim(worker)
        clock.advance(1)
        stored, following = q.finish_and_claim(job, OK, worker)
        assert following.id == second.id
        assert [e.event for e in q.history(first.id)] == ["enqueued", "started", "completed"]
        assert [e.event for e in q.history(second.id)] == ["enqueued", "started"]
    finally:
        q.close()


def test_history_of_an_unknown_job_fails(any_queue):
    from queuectl.errors import QueueError

    with pytest.raises(QueueError):
        any_queue.history("nope")


def test_a_schema_5_database_gets_the_history_on_upgrade(db_path, clock):
    q = Queue(db_path, clock=clock)
    job = q.enqueue("true")
    # Back to schema 5 as it was: no triggers, no totals, no deliveries, no new columns.
    for name in schema.HISTORY_TRIGGERS:
        q.db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"')
    q.db.execute_sql('DROP TABLE "run_total"')
    q.db.execute_sql('DROP TABLE "hook_delivery"')
    q.db.execute_sql('ALTER TABLE "job_event" DROP COLUMN "duration"')
    q.db.execute_sql('ALTER TABLE "job_event" DROP COLUMN "waited"')
    q.db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '5' WHERE \"key\" = 'version'")
    q.close()
    upgraded = Queue(db_path, clock=clock)
    try:
        worker = upgraded.register_worker(1)
        run(upgraded, clock, worker, OK, seconds=3)
        assert [e.event for e in upgraded.history(job.id)] == ["enqueued", "started", "completed"]
        assert upgraded.run_totals().runs == {("default", "completed"): 1}
    finally:
        upgraded.close()
