"""PostgreSQL: an idle pool waits on LISTEN/NOTIFY and its own timers instead of polling (its
threads look on their own only every ANNOUNCED_IDLE_WAIT_S). Whatever makes a job claimable still
reaches it at once, from this process or another, and lost workers are still rescued.

Every deadline here is well under ANNOUNCED_IDLE_WAIT_S: a job that ran only because of that
safety net's look would fail the test."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, WorkerPool
from queuectl.registry import WORKER_LOST
from queuectl.worker import ANNOUNCED_IDLE_WAIT_S
from support import wait_until

from .helpers import WorkerProc

DEADLINE = 10.0
assert DEADLINE < ANNOUNCED_IDLE_WAIT_S


def state(queue: Queue, job_id: str) -> str:
    return queue.get(job_id).state


@pytest.fixture
def queue(pg_target):
    q = Queue(pg_target)
    yield q
    q.close()


@pytest.fixture
def idle_worker(pg_target, tmp_path):
    """A worker process (2 threads) that has run one job and gone idle."""
    worker = WorkerProc(pg_target, 2, tmp_path, "idle")
    try:
        worker.wait_ready()
        q = Queue(pg_target)
        first = q.enqueue("true")
        wait_until(lambda: state(q, first.id) == "completed", DEADLINE, "a first job to run")
        q.close()
        yield worker
    finally:
        worker.stop()


def test_an_idle_worker_runs_a_job_another_process_enqueues(queue, idle_worker):
    job = queue.enqueue("true")
    wait_until(lambda: state(queue, job.id) == "completed", DEADLINE, "the job to run")


def test_an_idle_worker_runs_a_delayed_job_when_it_is_due(queue, idle_worker):
    job = queue.enqueue(JobSpec(command="true", delay=1.5))
    wait_until(lambda: state(queue, job.id) == "completed", DEADLINE, "the delayed job to run")
    assert queue.get(job.id).started_at >= job.run_at


@pytest.mark.parametrize("ends", ["completed", "failed"])
def test_a_place_freed_in_a_limited_queue_elsewhere_reaches_an_idle_worker(pg_target, ends):
    """A queue with a limit of 1, its place taken by another connection's run: the pool finds
    nothing it may claim, and waits. That run's end (a success, or a failure that retries)
    frees the place, and the state trigger's notification wakes the pool: it no longer looks
    four times a second while some queue has a limit (QA: ~10 transactions a second an idle
    thread), and its own look comes only after ANNOUNCED_IDLE_WAIT_S."""
    from queuectl.executor import RunResult

    runs, queue = Queue(pg_target), Queue(pg_target)
    queue.set_queue_limit("lq", 1)
    elsewhere = queue.register_worker(1)
    first = queue.enqueue(JobSpec(command="true", queue="lq", max_retries=3))
    claimed = queue.claim(elsewhere)
    assert claimed is not None and claimed.id == first.id
    second = queue.enqueue(JobSpec(command="true", queue="lq"))
    pool = WorkerPool(runs, 1).start()
    try:
        wait_until(lambda: pool.waiting == 1, DEADLINE, "the pool to wait")
        assert state(queue, second.id) == "pending", "the limit holds"
        result = RunResult(0, None, "") if ends == "completed" else RunResult(3, "exit code 3", "")
        queue.finish(claimed, result, elsewhere)
        wait_until(lambda: state(queue, second.id) == "completed", DEADLINE,
                   "the freed place to be used")  # fmt: skip
    finally:
        pool.stop()
        pool.join(30)
        for q in (runs, queue):
            q.close()


def test_a_dependent_starts_when_its_dependency_completes_on_another_connection(pg_target):
    """The dependency runs in one pool (queue "first"), the dependent can only run in another
    (queue "then"), idle: the statement that completes the dependency wakes it."""
    runs, waits, queue = Queue(pg_target), Queue(pg_target), Queue(pg_target)
    first = WorkerPool(runs, 1, queues=["first"]).start()
    then = WorkerPool(waits, 1, queues=["then"]).start()
    try:
        wait_until(lambda: then.waiting == 1, DEADLINE, "the second pool to wait")
        dependency = queue.enqueue(JobSpec(command="sleep 0.3", queue="first"))
        dependent = queue.enqueue(JobSpec(command="true", queue="then", after=[dependency.id]))
        wait_until(lambda: state(queue, dependent.id) == "completed", DEADLINE,
                   "the dependent to run")  # fmt: skip
        assert queue.get(dependent.id).started_at >= queue.get(dependency.id).finished_at
    finally:
        for pool in (first, then):
            pool.stop()
            pool.join(30)
        for q in (runs, waits, queue):
            q.close()


def test_an_idle_worker_rescues_the_jobs_of_a_silent_worker_and_of_none(queue, pg_target,
                                                                        tmp_path):  # fmt: skip
    elsewhere = Queue(pg_target, host="elsewhere")
    worker = None
    try:
        silent = elsewhere.register_worker(1)
        jobs = [queue.enqueue(JobSpec(command="true", max_retries=0)) for _ in range(2)]
        assert {elsewhere.claim(silent).id for _ in jobs} == {job.id for job in jobs}
        # A lease of 3 s: a pool takes silent workers for gone only once it has beaten for a
        # lease itself (they may be back from the outage it started after).
        worker = WorkerProc(pg_target, 2, tmp_path, "idle", False, "--lease", "3")
        worker.wait_ready()
        first = queue.enqueue("true")
        wait_until(lambda: state(queue, first.id) == "completed", DEADLINE, "a first job to run")
        elsewhere.heartbeat(silent, 1)  # still there
        assert [state(queue, job.id) for job in jobs] == ["processing"] * 2
        # While it is idle: one worker falls silent past the lease; one job's worker is gone.
        Worker, Job = queue.models.WorkerProcess, queue.models.Job
        Worker.update(heartbeat_at=queue.clock() - queue.lease - 5).where(
            Worker.id == silent).execute()  # fmt: skip
        Job.update(worker="gone:1:beef").where(Job.id == jobs[1].id).execute()
        for job in jobs:
            wait_until(lambda: state(queue, job.id) == "dead", DEADLINE, "the job to be rescued")
            assert queue.get(job.id).error == WORKER_LOST
        assert silent not in {w.id for w in queue.live_workers()}
    finally:
        if worker is not None:
            worker.stop()
        elsewhere.close()


def test_the_statement_that_completes_a_job_claims_its_dependent_and_counts_it_once(queue):
    """A chain does not wait for another claim between its links; the dependent is claimed in
    claim order (here before a later independent job), and every count stays right."""
    from queuectl.executor import RunResult

    first = queue.enqueue("first")
    dependent = queue.enqueue(JobSpec(command="then", after=(first.id,)))
    later = queue.enqueue("later")
    claimed = queue.claim("w")
    stored, following = queue.finish_and_claim(claimed, RunResult(0, None, ""), "w")
    assert (stored.id, stored.state) == (first.id, "completed")
    assert (following.id, following.state) == (dependent.id, "processing")
    assert following.started_at == stored.finished_at
    assert queue.get(dependent.id).waiting_on == 0
    assert state(queue, later.id) == "pending"
    counts = queue.counts()
    assert (counts["completed"], counts["processing"], counts["pending"]) == (1, 1, 1)
    stored, following = queue.finish_and_claim(following, RunResult(0, None, ""), "w")
    assert (stored.state, following.id) == ("completed", later.id)


def test_a_wait_with_no_time_left_still_reads_what_was_announced(queue, pg_target):
    """QA: a round with no time to wait (a schedule due at once, every round) read no
    announcement at all, and the pool's idle threads waited for their safety net's look: a job
    enqueued elsewhere started after 30 s, not within half a second."""
    changes = queue.change_detector()
    other = Queue(pg_target)
    try:
        other.enqueue("true")  # announced
        wait_until(lambda: changes.wait(0), 10, "the announcement, read with no time to wait")
    finally:
        changes.close()
        other.close()
