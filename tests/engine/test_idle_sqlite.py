"""SQLite: an idle pool waits on the service thread's watch (the kernel's file events, and
data_version) and its own timers instead of polling: its threads look on their own only every
ANNOUNCED_IDLE_WAIT_S, a still pool's service thread looks for hook deliveries only every
QUIET_HOOKS_S and reads the schedules' due time only every QUIET_SCHEDULES_S. Whatever makes a
job claimable, a hook due or a schedule nearer, from another connection or another process,
still reaches it at once.

Every deadline here is well under those intervals (set longer still where a test could be
slow): a job that ran, or a hook that was delivered, only because of a safety net's look would
fail the test."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from queuectl import JobSpec, Queue, WorkerPool
from queuectl import hooks as hooks_module
from queuectl import schedules as schedules_module
from queuectl import worker as worker_module
from queuectl.executor import RunResult
from queuectl.worker import ANNOUNCED_IDLE_WAIT_S
from support import wait_until

DEADLINE = 10.0
assert DEADLINE < ANNOUNCED_IDLE_WAIT_S
SERVED = ["default", "later", "one"]  # the pool's queues (not "elsewhere")


def state(queue: Queue, job_id: str) -> str:
    return queue.get(job_id).state


@pytest.fixture
def nets(monkeypatch):
    """The safety nets made longer than any deadline here; and a pool still sooner (its wait for
    that is no test's subject)."""
    monkeypatch.setattr(worker_module, "QUIET_HOOKS_S", 120.0)
    monkeypatch.setattr(worker_module, "QUIET_AFTER_S", 0.3)
    monkeypatch.setattr(schedules_module, "QUIET_SCHEDULES_S", 120.0)


class OffsetClock:
    """The wall clock moved by ``offset`` seconds: a whole minute (cron's step) comes soon."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock():
    return OffsetClock()


@pytest.fixture
def idle_pool(db_path, nets, clock):
    """A pool (2 threads, queues SERVED) on its own Queue that has run one job, and is still
    and idle; and another connection to the same file."""
    mine = Queue(db_path, clock=clock)
    pool = WorkerPool(mine, 2, queues=SERVED).start()
    other = Queue(db_path, clock=clock)
    try:
        first = other.enqueue("true")
        wait_until(lambda: state(other, first.id) == "completed", DEADLINE, "a first job")
        wait_until(lambda: pool.waiting == 2, DEADLINE, "both threads to wait")
        wait_until(pool._still, DEADLINE, "the pool to go still")
        # and its service thread into its quiet rounds: a round away (not observable)
        time.sleep(worker_module.SERVICE_TICK_S * 3)
        yield pool, other
    finally:
        pool.stop()
        pool.join(30)
        other.close()
        mine.close()


def test_an_idle_pool_runs_a_job_another_process_enqueues(db_path, idle_pool):
    _, other = idle_pool
    out = subprocess.run(
        [sys.executable, "-m", "queuectl", "--db", db_path, "enqueue", "--json", "true"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    job_id = json.loads(out)["id"]
    wait_until(lambda: state(other, job_id) == "completed", DEADLINE, "the job to run")


def test_an_idle_pool_runs_a_delayed_job_when_it_is_due(idle_pool):
    _, other = idle_pool
    job = other.enqueue(JobSpec(command="true", delay=1.5))
    wait_until(lambda: state(other, job.id) == "completed", DEADLINE, "the delayed job to run")
    assert other.get(job.id).started_at >= job.run_at


def test_an_idle_pool_runs_a_job_retried_from_the_dlq_or_a_queue_resumed(idle_pool):
    _, other = idle_pool
    other.pause_queue("later")
    waiting = other.enqueue(JobSpec(command="true", queue="later"))
    dead = other.enqueue(JobSpec(command="exit 1", max_retries=0))
    wait_until(lambda: state(other, dead.id) == "dead", DEADLINE, "the job to die")
    other.config_set("max-retries", "0")
    other.db.execute_sql("UPDATE job SET command = 'true' WHERE id = ?", (dead.id,))
    other.retry_dead([dead.id])
    wait_until(lambda: state(other, dead.id) == "completed", DEADLINE, "the retried job to run")
    assert state(other, waiting.id) == "pending"
    other.resume_queue("later")
    wait_until(lambda: state(other, waiting.id) == "completed", DEADLINE, "the resumed job")


def test_a_place_freed_in_a_limited_queue_by_another_worker_wakes_the_pool(idle_pool):
    pool, other = idle_pool
    # The job is to run elsewhere, not here: paused, with both threads waiting, before any
    # write (a thread that a write woke before the pause went on to claim the job, once in CI).
    pool.pause()
    wait_until(lambda: pool.waiting == 2, DEADLINE, "both threads to wait, paused")
    other.set_queue_limit("one", 1)
    elsewhere = other.register_worker(1)
    running = other.enqueue(JobSpec(command="true", queue="one"))
    claimed = other.claim(elsewhere)
    assert claimed.id == running.id
    waiting = other.enqueue(JobSpec(command="true", queue="one"))
    pool.resume()
    wait_until(lambda: pool.waiting == 2, DEADLINE, "both threads to wait")
    assert state(other, waiting.id) == "pending"  # the limit holds it
    other.finish(claimed, RunResult(1, "exit 1", ""), elsewhere)
    wait_until(lambda: state(other, waiting.id) == "completed", DEADLINE, "the freed place")


def test_a_still_pool_delivers_a_hook_of_a_job_finished_elsewhere(idle_pool, tmp_path):
    _, other = idle_pool
    out = tmp_path / "hook.out"
    other.config_set("on-completed", f'echo "$QUEUECTL_JOB_ID" >> {out}')
    elsewhere = other.register_worker(1)
    job = other.enqueue(JobSpec(command="true", queue="elsewhere"))
    claimed = other.claim(elsewhere, ("elsewhere",))
    assert claimed.id == job.id
    other.finish(claimed, RunResult(0, None, ""), elsewhere)
    wait_until(lambda: out.exists() and out.read_text().split() == [job.id], DEADLINE,
               "the hook to run")  # fmt: skip


def test_a_hook_due_as_the_pool_goes_still_is_not_left_to_the_quiet_round(idle_pool, tmp_path,
                                                                         monkeypatch):
    """Looks for hook deliveries come at most every HOOK_POLL_S. A delivery made while the
    pool still ran (it looks each round) but sooner than that after its last look was left,
    once the pool went still, to the quiet round: `cancel` just as a worker's last job had
    ended ran the `on-cancelled` hook 5 s late."""
    pool, other = idle_pool
    monkeypatch.setattr(hooks_module, "HOOK_POLL_S", 3.0)
    monkeypatch.setattr(worker_module, "QUIET_AFTER_S", 0.5)
    out = tmp_path / "hook.out"
    other.config_set("on-cancelled", f'echo "$QUEUECTL_JOB_ID" >> {out}')  # a look, for nothing
    ran = other.enqueue("true")  # the pool runs: not still, and the next look 3 s away
    wait_until(lambda: state(other, ran.id) == "completed", DEADLINE, "the pool's job")
    job = other.enqueue(JobSpec(command="true", queue="elsewhere"))
    other.cancel([job.id])  # a delivery, just before the pool goes still
    wait_until(lambda: out.exists() and out.read_text().split() == [job.id], DEADLINE,
               "the hook to run")  # fmt: skip


def test_a_still_pool_fires_a_schedule_added_on_another_connection(idle_pool, clock):
    _, other = idle_pool
    now = clock()
    clock.offset += (int(now // 60) + 1) * 60 - 4.0 - now  # 4 s before a whole minute
    due = (int(clock() // 60) + 1) * 60
    other.add_schedule("minutely", "* * * * *", JobSpec(command="true"))
    wait_until(lambda: any(job.schedule == "minutely" for job in other.list_jobs()), DEADLINE,
               "the schedule's job")  # fmt: skip
    fired = [job for job in other.list_jobs() if job.schedule == "minutely"]
    assert len(fired) == 1 and due <= fired[0].created_at < due + 2
