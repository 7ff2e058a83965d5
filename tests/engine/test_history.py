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
    # Stored: the enqueue and one row per run, written as it ended (schema 9).
    assert stored(q, job) == ["enqueued", "failed", "failed", "completed"]


def stored(q: Queue, job) -> list[str]:
    Event = q.models.Event
    rows = Event.select().where(Event.job_id == job.id).order_by(Event.id)
    return [e.event for e in rows]


def test_a_running_job_shows_its_start_from_the_job_itself(any_queue, clock):
    q = any_queue
    job = q.enqueue(JobSpec(command="sleep 100", delay=5))
    worker = q.register_worker(1)
    clock.advance(8)  # due 5 s after the enqueue, started 3 s after that
    claimed = q.claim(worker)
    assert claimed.id == job.id
    history = q.history(job.id)
    assert [(e.event, e.attempt, e.worker) for e in history] == [
        ("enqueued", 0, None), ("started", 1, worker),
    ]  # fmt: skip
    assert (history[-1].at, history[-1].waited) == (clock.now, 3)
    assert stored(q, job) == ["enqueued"], "a claim writes no row"
    clock.advance(2)
    q.finish(claimed, OK, worker)
    history = q.history(job.id)
    assert [e.event for e in history] == ["enqueued", "started", "completed"]
    assert (history[1].at, history[2].duration, history[2].waited) == (clock.now - 2, 2, 3)
    assert history[2].started_at == history[1].at


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
        assert events(q, job)[1] == ("started", 1, lost, None, None)
        assert events(q, job)[3] == ("started", 2, second, None, None)
    finally:
        rescuer.close()


def test_a_released_job_keeps_its_attempt_uncounted(any_queue, clock):
    q = any_queue
    job = q.enqueue("sleep 100")
    worker = q.register_worker(1)
    claimed = q.claim(worker)
    clock.advance(3)
    assert q.release(claimed, worker)
    assert events(q, job) == [
        ("enqueued", 0, None, None, None),
        ("started", 1, worker, None, None),
        ("released", 1, worker, None, None),
    ]
    released = q.history(job.id)[-1]
    assert (released.started_at, released.at) == (clock.now - 3, clock.now)
    again = q.claim(worker)
    assert again.attempts == 1
    assert [e[:3] for e in events(q, job)][-2:] == [("released", 1, worker), ("started", 1, worker)]


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
    q.db.execute_sql('DROP INDEX "job_event_window"')
    q.db.execute_sql('CREATE INDEX "job_event_at" ON "job_event" ("at")')
    q.db.execute_sql('ALTER TABLE "job_event" DROP COLUMN "started_at"')
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


def test_each_end_is_recorded_for_its_hook_once(any_queue, clock):
    """The hook of a run's end is recorded by the trigger that records the end; other changes
    (a waiting job cancelled) by a trigger of its own: never both, never neither."""
    q = any_queue
    q.config_set("on-cancelled", "echo cancelled")
    q.config_set("on-completed", "echo done")
    worker = q.register_worker(1)
    done = q.enqueue("true")
    run(q, clock, worker, OK)
    running = q.enqueue("sleep 100")
    claimed = q.claim(worker)
    q.cancel([running.id])  # asks its worker: the run ends cancelled
    assert q.finish(claimed, OK, worker).state == "cancelled"
    waiting = q.enqueue("sleep 100")
    q.cancel([waiting.id])  # cancelled at once: no run
    assert [(d.job_id, d.state) for d in q.deliveries()] == [
        (done.id, "completed"), (running.id, "cancelled"), (waiting.id, "cancelled"),
    ]  # fmt: skip
    assert [e.event for e in q.history(running.id)] == ["enqueued", "started", "cancelled"]
    assert [e.event for e in q.history(waiting.id)] == ["enqueued", "cancelled"]


def downgrade_to_8(q: Queue) -> None:
    """The job_event table as schema 8 left it: no started_at, an index on "at" alone (and no
    history triggers: the test writes schema 8's rows itself)."""
    on = "" if q.is_sqlite else ' ON "job"'
    for name in schema.HISTORY_TRIGGERS:
        q.db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"{on}')
    q.db.execute_sql('DROP INDEX IF EXISTS "job_event_window"')
    q.db.execute_sql('CREATE INDEX "job_event_at" ON "job_event" ("at")')
    q.db.execute_sql('ALTER TABLE "job_event" DROP COLUMN "started_at"')
    q.db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '8' WHERE \"key\" = 'version'")


def test_a_schema_8_history_reads_as_before_after_the_upgrade(target, clock):
    """Schema 8 wrote a `started` row per claim and ends without started_at: those rows are
    kept and read as they are, a run started before the upgrade and ended after it shows one
    start, and what follows is recorded the new way."""
    q = Queue(target, clock=clock)
    job = q.enqueue(JobSpec(command="flaky", max_retries=5))
    worker = q.register_worker(1)
    seq, t0 = q.get(job.id).seq, clock.now
    downgrade_to_8(q)
    Event = q.models.Event
    columns = ("job_seq", "job_id", "queue", "at", "event", "attempt", "worker", "exit_code",
               "error", "duration", "waited")  # fmt: skip
    old_rows = [  # a failed run, then the run under way at the upgrade
        (seq, job.id, "default", t0 + 1, "started", 1, worker, None, None, None, 1.0),
        (seq, job.id, "default", t0 + 3, "failed", 1, worker, 3, "exit code 3", 2.0, None),
        (seq, job.id, "default", t0 + 6, "started", 2, worker, None, None, None, 1.0),
    ]
    marks = ", ".join([q.db.param] * len(columns))
    names = ", ".join(f'"{name}"' for name in columns)
    for row in old_rows:
        q.db.execute_sql(f'INSERT INTO "job_event" ({names}) VALUES ({marks})', row)
    q.db.execute_sql(
        f'UPDATE "job" SET "state" = \'processing\', "attempts" = 2, "worker" = {q.db.param}, '
        f'"started_at" = {q.db.param}, "run_at" = {q.db.param}, "updated_at" = {q.db.param} '
        f'WHERE "seq" = {q.db.param}',
        (worker, t0 + 6, t0 + 5, t0 + 6, seq),
    )
    q.close()
    clock.now = t0 + 10
    upgraded = Queue(target, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        expected = [
            ("enqueued", 0, None, None, None),
            ("started", 1, worker, None, None),
            ("failed", 1, worker, 3, "exit code 3"),
            ("started", 2, worker, None, None),
        ]
        assert events(upgraded, job) == expected, "the run under way: its own row, once"
        running = upgraded.get(job.id)
        assert upgraded.finish(running, FAIL, worker).state == "failed"
        expected.append(("failed", 2, worker, 3, "exit code 3"))
        assert events(upgraded, job) == expected, "ended after the upgrade: still one start"
        clock.advance(100)
        run(upgraded, clock, worker, OK, seconds=4)
        expected += [("started", 3, worker, None, None), ("completed", 3, worker, 0, None)]
        assert events(upgraded, job) == expected
        history = upgraded.history(job.id)
        assert [e.at - t0 for e in history] == [0, 1, 3, 6, 10, 110, 114]
        # Stats read both forms: the old rows' waits and durations, and the new run's.
        figures = upgraded.stats(3600).queues["default"]
        assert figures.runs == {"completed": 1, "failed": 2, "dead": 0, "cancelled": 0}
        assert figures.run_max == 4
        # (The run that spans the upgrade has its wait on both its rows: counted twice, once.)
        waits = [e.waited for e in upgraded.models.Event.select() if e.waited is not None]
        assert sorted(waits) == [1, 1, 1, 96]  # its retry was due at 14 s, started at 110 s
        assert (figures.wait_p50, figures.wait_p95) == (1, pytest.approx(81.75))
    finally:
        upgraded.close()
