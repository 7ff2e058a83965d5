"""The statement that stores a successful run and claims the next job (Queue.finish_and_claim),
in the cases its shape must get right on both backends: the two rows it changes are the finished
job's (only while that run is still the job's) and the next due job's, each once."""

from __future__ import annotations

import pytest

from queuectl import JobSpec
from queuectl.executor import RunResult

OK = RunResult(0, None, "fine\n")


@pytest.fixture
def q(any_queue):
    return any_queue


@pytest.fixture
def wid(q):
    return q.register_worker(1)


def test_a_run_stored_and_the_next_job_claimed_together(q, wid):
    first, second, third = q.enqueue_many([JobSpec(command=c) for c in ("a", "b", "c")])
    job = q.claim(wid)
    stored, following = q.finish_and_claim(job, OK, wid)
    assert (stored.id, stored.state, stored.exit_code) == (first.id, "completed", 0)
    assert (following.id, following.state, following.attempts) == (second.id, "processing", 1)
    assert q.get(third.id).state == "pending"
    stored, following = q.finish_and_claim(following, OK, wid)
    assert (stored.id, following.id) == (second.id, third.id)
    stored, following = q.finish_and_claim(following, OK, wid)
    assert (stored.id, following) == (third.id, None)
    assert q.counts()["completed"] == 3 and q.counts()["processing"] == 0


def test_the_old_run_of_a_job_due_again_is_dropped(q, wid):
    """A job taken from its worker (presumed lost) and due again: that worker's result for its
    old run changes nothing. (Its statement may take the job as its next one, as a run of its
    own: PostgreSQL's does, SQLite's leaves it to the next claim.)"""
    job = q.enqueue("x")
    old_run = q.claim(wid)
    q.models.Job.update(state="pending", worker=None, started_at=None).where(
        q.models.Job.id == job.id
    ).execute()  # what a rescue leaves (the attempt stays counted)
    stored, following = q.finish_and_claim(old_run, OK, wid)
    assert stored is None
    if following is None:
        following = q.claim(wid)
    assert (following.id, following.attempts) == (job.id, old_run.attempts + 1)
    again = q.get(job.id)
    assert (again.state, again.exit_code, again.worker) == ("processing", None, wid)


def test_a_job_cancelled_while_it_ran_ends_cancelled_and_the_next_is_claimed(q, wid):
    job, waiting = q.enqueue("x"), q.enqueue("y")
    running = q.claim(wid)
    q.cancel([job.id])
    stored, following = q.finish_and_claim(running, OK, wid)
    assert (stored.id, stored.state) == (job.id, "cancelled")
    assert following.id == waiting.id and q.get(job.id).state == "cancelled"


@pytest.mark.parametrize("how", ["complete and claim", "finish", "failure"])
def test_a_run_stored_late_keeps_the_time_it_ended(q, wid, clock, how):
    """A result stored after an outage: the job finished when its run ended, not when the
    database took it, so `show`, `history` and `stats` give the run's own time."""
    job = q.enqueue(JobSpec(command="x", max_retries=1))
    running = q.claim(wid)
    clock.advance(2.0)  # the run took 2 s
    ended = clock()
    clock.advance(30.0)  # then its result waited for the database
    if how == "complete and claim":
        stored, _ = q.finish_and_claim(running, OK, wid, ended_at=ended)
    elif how == "finish":
        stored = q.finish(running, OK, wid, ended_at=ended)
    else:
        stored = q.finish(running, RunResult(1, "exit code 1", ""), wid, ended_at=ended)
    assert stored.state == ("dead" if how == "failure" else "completed")
    again = q.get(job.id)
    assert again.finished_at == pytest.approx(ended)
    assert again.updated_at == pytest.approx(ended + 30.0)  # when it was stored
    assert q.stats(3600).queues["default"].run_max == pytest.approx(2.0)


@pytest.mark.parametrize("how", ["claim", "complete and claim"])
def test_a_claim_that_waited_for_the_write_lock_starts_when_it_got_it(db_path, how):
    """SQLite: a claim reads its time before it waits for the write lock. Another process
    held the lock for 8 s as a run ended: the next job's start was stamped before the wait,
    and that 1 s job read 8.7 s in `show`, `stats` and the histogram."""
    import sqlite3
    import threading

    from queuectl import Queue
    from support import WatchedClock, wait_until

    clock = WatchedClock()
    q = Queue(db_path, clock=clock)
    try:
        first, second = q.enqueue_many([JobSpec(command="a"), JobSpec(command="b")])
        wid = q.register_worker(1)
        running = q.claim(wid) if how == "complete and claim" else None
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        claimed: list = []

        def claim() -> None:
            if running is None:
                claimed.append(q.claim(wid))
            else:
                claimed.append(q.finish_and_claim(running, OK, wid)[1])

        claiming = threading.Thread(target=claim, name="claiming")
        claiming.start()
        # The claim has read its time; its statement waits for the lock.
        wait_until(lambda: "claiming" in clock.readers, 30, "the claim to read the time")
        clock.advance(8.0)  # the lock is held this long
        holder.execute("ROLLBACK")
        holder.close()
        claiming.join(30)
        job = claimed[0]
        assert job.id == (second.id if running else first.id)
        assert job.started_at == clock() == q.get(job.id).started_at
    finally:
        q.close()
