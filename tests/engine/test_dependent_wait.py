"""A job enqueued with `after` is due from its last dependency's end, not from its enqueue
(schema 15's ready_at): the time it waited for a worker (history, stats) and its queue's
oldest-waiting age count from there. Claims keep their order (by run_at)."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult

OK = RunResult(0, None, "done\n")


def at(seconds: float):
    return pytest.approx(seconds, abs=1e-6)


@pytest.fixture
def q(target, clock):
    queue = Queue(target, clock=clock).for_worker_threads()
    yield queue
    queue.close()


def started_waits(q: Queue, job) -> list[float]:
    return [e.waited for e in q.history(job.id) if e.event == "started"]


@pytest.mark.parametrize("how", ["finish", "finish_and_claim"])
def test_a_dependent_waits_from_its_dependency_s_end(q, clock, how):
    build = q.enqueue(JobSpec(command="build", queue="ci"))
    deploy = q.enqueue(JobSpec(command="deploy", queue="ci", after=(build.id,)))
    worker = q.register_worker(1)
    claimed = q.claim(worker)
    assert claimed.id == build.id
    clock.advance(100)  # a long build; deploy was enqueued 100 s ago
    if how == "finish":
        q.finish(claimed, OK, worker)
        clock.advance(0.5)
        assert q.oldest_waiting() == {"ci": at(clock.now - 0.5)}
        assert q.stats().queues["ci"].oldest_waiting == pytest.approx(0.5)
        running = q.claim(worker)
        waited = 0.5
    else:  # the worker's own path: stored and the dependent claimed in one statement
        _, running = q.finish_and_claim(claimed, OK, worker)
        if running is None:  # SQLite's statement claims what was ready as it began
            running = q.claim(worker)
        waited = 0.0
    assert running.id == deploy.id
    assert started_waits(q, deploy) == [at(waited)], "read from the running job"
    clock.advance(2)
    q.finish(running, OK, worker)
    assert started_waits(q, deploy) == [at(waited)], "read from its stored run"
    assert q.stats().queues["ci"].wait_p95 < 1  # 100.5 s when counted from the enqueue


def test_the_last_of_two_dependencies_counts(q, clock):
    fetch = q.enqueue(JobSpec(command="fetch", queue="a"))
    compile_ = q.enqueue(JobSpec(command="compile", queue="b"))
    link = q.enqueue(JobSpec(command="link", queue="c", after=(fetch.id, compile_.id)))
    worker = q.register_worker(1)
    first, second = q.claim(worker, queues=("a",)), q.claim(worker, queues=("b",))
    clock.advance(10)
    q.finish(first, OK, worker)
    assert q.oldest_waiting() == {}, "still waiting for a dependency"
    clock.advance(20)
    q.finish(second, OK, worker)
    ended = clock.now
    clock.advance(3)
    assert q.oldest_waiting() == {"c": at(ended)}
    assert q.get(link.id).ready_at == at(ended)


def test_a_dependency_retried_and_completed_again_moves_it(q, clock):
    setup = q.enqueue(JobSpec(command="setup", queue="a"))
    test = q.enqueue(JobSpec(command="test", queue="b", after=(setup.id,)))
    worker = q.register_worker(1)
    q.finish(q.claim(worker, queues=("a",)), OK, worker)
    assert q.get(test.id).ready_at == at(clock.now)
    clock.advance(50)
    q.retry([setup.id])  # run again: test waits for it again
    assert q.oldest_waiting() == {"a": at(clock.now)}
    clock.advance(5)
    q.finish(q.claim(worker, queues=("a",)), OK, worker)
    assert q.get(test.id).ready_at == at(clock.now)
    clock.advance(1)
    assert q.oldest_waiting() == {"b": at(clock.now - 1)}


def test_the_oldest_is_found_behind_a_job_released_late(q, clock):
    """The index is in run_at order: a job released by a dependency long after its enqueue
    comes first there, though a job enqueued later has waited longer."""
    start = clock.now
    long_job = q.enqueue(JobSpec(command="long", queue="other"))
    released = q.enqueue(JobSpec(command="then", queue="work", after=(long_job.id,)))
    clock.advance(50)
    plain = q.enqueue(JobSpec(command="plain", queue="work"))
    worker = q.register_worker(1)
    running = q.claim(worker, queues=("other",))
    clock.advance(50)
    q.finish(running, OK, worker)  # released at start + 100
    clock.advance(10)
    assert q.oldest_waiting("work") == {"work": at(start + 50)}
    assert q.oldest_waiting() == {"work": at(start + 50)}
    assert q.stats().queues["work"].oldest_waiting == pytest.approx(60)
    # The claim order is as it was: by run_at, the released job first.
    assert q.claim(worker, queues=("work",)).id == released.id
    assert q.oldest_waiting() == {"work": at(plain.run_at)}
    assert q.claim(worker, queues=("work",)).id == plain.id
    assert q.oldest_waiting() == {}


def test_a_job_enqueued_after_a_completed_job_waits_from_its_enqueue(q, clock):
    done = q.enqueue(JobSpec(command="done", queue="a"))
    worker = q.register_worker(1)
    q.finish(q.claim(worker), OK, worker)
    clock.advance(30)
    later = q.enqueue(JobSpec(command="later", queue="a", after=(done.id,)))
    assert later.ready_at is None
    clock.advance(4)
    assert q.oldest_waiting() == {"a": at(later.run_at)}


def test_a_job_given_a_time_already_past_waits_from_its_enqueue(q, clock):
    """QA: `enqueue --run-at 2020-01-01T00:00:00Z` made the oldest-waiting age and stats'
    waits years long: a job cannot wait for a worker before it exists. It still goes first."""
    earlier = q.enqueue(JobSpec(command="earlier", queue="a"))
    clock.advance(5)
    enqueued = clock.now
    backdated = q.enqueue(JobSpec(command="backdated", queue="a", run_at=enqueued - 2e8))
    clock.advance(10)
    assert q.oldest_waiting() == {"a": at(earlier.run_at)}, "the earlier job waited longest"
    worker = q.register_worker(1)
    first = q.claim(worker)
    assert first.id == backdated.id, "claimed by its run_at, as before"
    assert started_waits(q, backdated) == [at(10)]
    q.finish(first, OK, worker)
    q.finish(q.claim(worker), OK, worker)
    # Waits of 10 s and 15 s (not 2e8): p95 between them, as percentile_cont interpolates.
    assert q.stats().queues["a"].wait_p95 == pytest.approx(14.75)
    alone = q.enqueue(JobSpec(command="alone", queue="b", run_at=clock.now - 3600))
    clock.advance(2)
    assert q.stats().queues["b"].oldest_waiting == pytest.approx(2)
    assert alone.run_at == at(clock.now - 2 - 3600), "its run_at is the one given"


def test_an_edit_to_a_past_time_keeps_when_the_job_fell_due(q, clock):
    """A waiting job edited to a time already past has waited since it fell due (no longer);
    a delayed one edited so falls due at the edit (QA: `edit --run-at 2026-01-01` of a delayed
    job counted its wait from that date)."""
    due = q.enqueue(JobSpec(command="due", queue="a"))
    delayed = q.enqueue(JobSpec(command="delayed", queue="b", delay=600))
    clock.advance(20)
    edited_at = clock.now
    q.edit(due.id, {"run_at": edited_at - 1e7})
    q.edit(delayed.id, {"run_at": edited_at - 1e7})
    clock.advance(5)
    assert q.oldest_waiting() == {"a": at(due.run_at), "b": at(edited_at)}
    q.edit(delayed.id, {"run_at": edited_at - 2e7})  # edited again: due as it was
    q.edit(delayed.id, {"priority": 3})
    assert q.oldest_waiting()["b"] == at(edited_at)


def test_a_schema_14_database_gains_ready_at_keeping_a_waiting_dependent(target, clock):
    queue = Queue(target, clock=clock)
    try:
        first = queue.enqueue(JobSpec(command="first", queue="a"))
        waiting = queue.enqueue(JobSpec(command="second", queue="b", after=(first.id,)))
        earlier = queue.enqueue(JobSpec(command="earlier", queue="c"))
        released = queue.enqueue(JobSpec(command="then", queue="d", after=(earlier.id,)))
        worker = queue.register_worker(1)
        clock.advance(5)
        queue.finish(queue.claim(worker, queues=("c",)), OK, worker)
        ended = clock.now  # d's job released: a waiting job to keep its due time
        clock.advance(5)
        db = queue.db
        # Schema 14 had no ready_at: what names it goes with it (SQLite refuses to drop a
        # column a trigger or view names; schema 15 makes them all again).
        if isinstance(db, __import__("peewee").SqliteDatabase):
            for kind, name in db.execute_sql(
                "SELECT type, name FROM sqlite_master WHERE sql LIKE '%ready_at%' "
                "AND type IN ('trigger', 'view') ORDER BY type = 'view'"
            ).fetchall():
                db.execute_sql(f'DROP {kind.upper()} "{name}"')
        db.execute_sql('ALTER TABLE "job" DROP COLUMN "ready_at"')
        db.execute_sql("UPDATE queuectl_schema SET value = '14' WHERE key = 'version'")
        assert "ready_at" not in {c.name for c in db.get_columns("job")}
    finally:
        queue.close()
    upgraded = Queue(target, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert upgraded.get(waiting.id).waiting_for == (first.id,)
        assert upgraded.get(released.id).ready_at == at(ended), "from its dependency's end"
        assert upgraded.oldest_waiting("d") == {"d": at(ended)}
        assert upgraded.claim(worker, queues=("d",)).id == released.id
        assert started_waits(upgraded, released) == [at(5)]
        running = upgraded.claim(worker, queues=("a",))
        clock.advance(40)
        upgraded.finish(running, OK, worker)
        clock.advance(2)
        assert upgraded.oldest_waiting() == {"b": at(clock.now - 2)}
        assert upgraded.claim(worker).id == waiting.id
        assert started_waits(upgraded, waiting) == [at(2)]
    finally:
        upgraded.close()


def test_a_job_given_back_waits_from_its_release_keeping_its_place(q, clock):
    """A hard stop gives a run back (pending again, its attempt not counted) and the job keeps
    its place in the queue: its next wait counted from its old due time, the run it was given
    back from counted in (the last note: "a released job's wait includes its first run")."""
    first = q.enqueue(JobSpec(command="long", queue="work"))
    clock.advance(2)
    second = q.enqueue(JobSpec(command="next", queue="work"))
    worker = q.register_worker(1)
    clock.advance(3)
    running = q.claim(worker)
    assert running.id == first.id
    clock.advance(10)
    assert q.release(running, worker)
    clock.advance(1)
    assert q.oldest_waiting() == {"work": at(second.run_at)}, "the second waited longer"
    assert q.claim(worker).id == first.id, "its place kept"
    assert started_waits(q, first) == [at(5), at(1)]  # (16 s counted from its due time)
    stray = q.claim(worker)
    assert stray.id == second.id
    clock.advance(4)
    assert q.give_back_strays(worker, held={running.seq}) == 1  # (see WorkerPool)
    clock.advance(2)
    assert q.oldest_waiting() == {"work": at(clock.now - 2)}
    assert q.claim(worker).id == second.id
    assert started_waits(q, second) == [at(14), at(2)]
