"""The worker pool in this process, on a real SQLite file and the real clock: stop and kill,
wake-ups, growing and shrinking, pause, burst. Conditions are awaited with deadlines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import peewee
import pytest

from queuectl import JobSpec, Queue, WorkerPool
from queuectl import worker as worker_module
from support import group_members, kill_group, wait_until


@pytest.fixture
def gate(tmp_path):
    """``gate(name)`` is a shell snippet that waits until ``open_gate(name)``."""

    class Gate:
        def command(self, name: str, then: str = "") -> str:
            path = tmp_path / f"gate-{name}"
            return f"while [ ! -e {path} ]; do sleep 0.02; done; {then}"

        def open(self, name: str) -> None:
            (tmp_path / f"gate-{name}").touch()

    return Gate()


def state(queue: Queue, job_id: str) -> str:
    return queue.get(job_id).state


def processing(queue: Queue) -> int:
    return queue.counts()["processing"]


def worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("worker-") and t.is_alive())


def test_graceful_stop_lets_the_running_job_finish(queue, pools, gate):
    pool = pools(queue, threads=1)
    job = queue.enqueue(gate.command("a", "echo done"))
    queued = queue.enqueue("echo never")
    # Running, not only claimed: a stop between the claim and the start gives the job back.
    wait_until(lambda: pool.busy == 1, 30)
    pool.stop()
    assert pool.join(0.3) is False, "stop must wait for the running job"
    gate.open("a")
    assert pool.join(30)
    stored = queue.get(job.id)
    assert (stored.state, stored.output, stored.attempts) == ("completed", "done\n", 1)
    assert state(queue, queued.id) == "pending", "nothing is claimed after stop()"
    assert queue.live_workers() == [], "a stopped pool unregisters"


def test_hard_stop_gives_the_job_back_uncounted(queue, pools, tmp_path):
    events = []
    pool = pools(queue, threads=1, on_event=events.append)
    pgid_file = tmp_path / "pgid"
    job = queue.enqueue(f"echo $$ > {pgid_file}; sleep 100")
    wait_until(lambda: pgid_file.exists() and pgid_file.read_text().strip(), 30)
    pgid = int(pgid_file.read_text())
    try:
        started = time.monotonic()
        pool.kill()
        assert pool.join(30)
        assert time.monotonic() - started < 20  # not the job's 100 s
        stored = queue.get(job.id)
        assert (stored.state, stored.attempts, stored.worker, stored.error) == (
            "pending", 0, None, None,
        )
        wait_until(lambda: not group_members(pgid), 30, message="the job's group to die")
        # Said as a stop's (the worker's log line "killed by stop"), not as an outage's.
        assert [(e.kind, e.reason) for e in events][-1] == ("released", "stop")
    finally:
        kill_group(pgid)


def test_results_and_events(queue, pools, tmp_path):
    queue.config_set("backoff-base", 1)
    events = []
    pool = pools(queue, threads=2, on_event=lambda e: events.append((e.kind, e.job.id)))
    ok = queue.enqueue("echo fine")
    bad = queue.enqueue(JobSpec(command="echo bad; exit 3", max_retries=2))
    slow = queue.enqueue(JobSpec(command="sleep 30", timeout=0.3, max_retries=1))
    wait_until(lambda: {state(queue, j.id) for j in (ok, bad, slow)} <= {"completed", "dead"}, 30)
    assert queue.get(ok.id).output == "fine\n"
    bad_job = queue.get(bad.id)
    assert (bad_job.state, bad_job.attempts, bad_job.exit_code, bad_job.error) == (
        "dead", 2, 3, "exit code 3",
    )
    slow_job = queue.get(slow.id)
    assert slow_job.state == "dead" and "timed out" in slow_job.error
    finals = {("completed", ok.id), ("dead", bad.id), ("dead", slow.id)}
    wait_until(lambda: finals <= set(events), 30, message="the final events")  # after the writes
    assert ("completed", ok.id) in events
    assert [kind for kind, job_id in events if job_id == bad.id] == [
        "started", "failed", "started", "dead",
    ]
    pool.stop()
    assert pool.join(30)


def test_a_jobs_events_name_the_worker_thread_that_ran_it(queue, pools):
    events = []
    pool = pools(queue, threads=2, on_event=events.append)
    jobs = queue.enqueue_many([JobSpec(command="true") for _ in range(6)])
    wait_until(lambda: sum(event.kind == "completed" for event in events) == 6, 30)
    for job in jobs:
        mine = [event for event in events if event.job.id == job.id]
        assert [event.kind for event in mine] == ["started", "completed"]
        assert mine[0].thread == mine[1].thread and mine[0].thread in ("worker-1", "worker-2")
        kind, event_job, thread = mine[1]  # (kind, job, thread), by name or in order
        assert (kind, event_job.id, event_job.state) == ("completed", job.id, "completed")
    pool.stop()
    assert pool.join(30)


@pytest.fixture
def slow_polling(monkeypatch):
    """Idle threads re-check only every 10 s: a quick start then proves a wake-up."""
    monkeypatch.setattr(worker_module, "IDLE_WAIT_S", 10.0)


def wait_idle(queue: Queue, pool: WorkerPool) -> None:
    """Run one job through the pool, so that its threads are idle (waiting) afterwards."""
    job = queue.enqueue("true")
    wait_until(lambda: state(queue, job.id) == "completed", 30)
    wait_until(lambda: pool.busy == 0, 30)
    time.sleep(0.05)  # let the threads settle into their wait: the wake-up must still come


def test_idle_pool_starts_a_job_enqueued_in_this_process_at_once(queue, pools, slow_polling):
    pool = pools(queue, threads=2)
    wait_idle(queue, pool)
    job = queue.enqueue("true")
    stored = wait_until(
        lambda: (j := queue.get(job.id)).started_at is not None and j, 30, message="a start"
    )
    assert stored.started_at - stored.created_at < 5.0  # a wake-up: polling would take 10 s


def test_idle_pool_starts_a_job_enqueued_by_another_process_quickly(
    queue, pools, slow_polling, db_path
):
    pool = pools(queue, threads=1)
    wait_idle(queue, pool)
    subprocess.run(
        [sys.executable, "-c",
         "import sys; from queuectl import Queue, JobSpec; "
         "Queue(sys.argv[1]).enqueue(JobSpec(command='true', id='from-outside'))", db_path],
        check=True, timeout=60,
    )
    stored = wait_until(
        lambda: (j := queue.get("from-outside")).started_at is not None and j, 30,
        message="a start",
    )
    assert stored.started_at - stored.created_at < 5.0  # a wake-up: polling would take 10 s


def test_an_idle_pool_starts_a_retry_when_it_falls_due(queue, pools, slow_polling, tmp_path):
    queue.config_set("backoff-base", 1)
    marker = tmp_path / "ran-once"
    pools(queue, threads=1)
    job = queue.enqueue(f"if [ -e {marker} ]; then echo second; else touch {marker}; exit 1; fi")
    done = wait_until(lambda: (j := queue.get(job.id)).state == "completed" and j, 30)
    assert done.output == "second\n" and done.attempts == 2
    # When the first run failed, from its history: polling for the `failed` state could miss
    # its one second on a loaded machine. The retry fell due a second (backoff 1 ** 1) later.
    events = queue.history(job.id)
    assert [e.event for e in events] == ["enqueued", "started", "failed", "started", "completed"]
    due = events[2].at + 1.0
    assert due - 0.05 <= done.started_at < due + 3.0


def test_set_threads_grows_and_shrinks(queue, pools, gate):
    pool = pools(queue, threads=1)
    jobs = [queue.enqueue(gate.command(f"g{n}")) for n in range(3)]
    wait_until(lambda: processing(queue) == 1, 30)
    assert worker_threads() == 1
    pool.set_threads(3)
    assert pool.threads == 3
    wait_until(lambda: processing(queue) == 3, 30, message="three jobs running")
    assert worker_threads() == 3

    pool.set_threads(1)
    assert worker_threads() == 3, "shrinking lets running jobs finish"
    for n in range(3):
        gate.open(f"g{n}")
    wait_until(lambda: all(state(queue, j.id) == "completed" for j in jobs), 30)
    wait_until(lambda: worker_threads() == 1, 30, message="two threads to retire")

    more = [queue.enqueue(gate.command(f"h{n}")) for n in range(3)]
    wait_until(lambda: pool.busy == 1, 30)  # running: set_threads(0) before the start gives back
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # and it stays at one
        assert processing(queue) <= 1
        time.sleep(0.02)
    pool.set_threads(0)
    for n in range(3):
        gate.open(f"h{n}")
    wait_until(lambda: worker_threads() == 0, 30)
    assert queue.counts()["completed"] == 4 and queue.counts()["pending"] == 2
    pool.set_threads(2)
    wait_until(lambda: all(state(queue, j.id) == "completed" for j in more), 30)


def test_shrink_and_grow_quickly_never_loses_threads(queue, pools, gate):
    pool = pools(queue, threads=2)
    for _ in range(200):
        pool.set_threads(0)
        pool.set_threads(2)
    wait_until(lambda: worker_threads() == 2, 30, message="two threads")
    # Gated, not timed: both jobs run until the gate opens, however late the second one starts.
    jobs = queue.enqueue_many([JobSpec(command=gate.command(f"s{n}")) for n in range(2)])
    wait_until(lambda: processing(queue) == 2, 30, message="both threads working")
    for n in range(2):
        gate.open(f"s{n}")
    wait_until(lambda: all(state(queue, j.id) == "completed" for j in jobs), 30)


def test_pause_and_resume(queue, pools, gate):
    pool = pools(queue, threads=1)
    running = queue.enqueue(gate.command("r", "echo finished"))
    # Running, not only claimed: a pause between the claim and the start gives the job back
    # (its state "processing" came first: 1 run in 40 timed out here, the job pending).
    wait_until(lambda: pool.busy == 1, 30)
    pool.pause()
    assert pool.paused
    waiting = queue.enqueue("echo later")
    gate.open("r")
    wait_until(lambda: state(queue, running.id) == "completed", 30,
               message="a running job finishes while paused")
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        assert state(queue, waiting.id) == "pending", "a paused pool claims nothing"
        time.sleep(0.02)
    pool.resume()
    assert not pool.paused
    wait_until(lambda: state(queue, waiting.id) == "completed", 30)


def test_a_claim_that_crosses_a_pause_gives_its_job_back_uncounted(queue, pools, monkeypatch):
    """A thread checks "paused?" and then claims, outside the lock: a pause landing in between
    must not start the job. The claim below pauses the pool once it has taken a job."""
    events = []
    pool = pools(queue, threads=1, on_event=lambda event: events.append(event.kind))
    claim = Queue.claim
    claimed = []

    def claim_across_a_pause(self, worker_id, *queues, **kwargs):
        job = claim(self, worker_id, *queues, **kwargs)
        if job is not None:
            pool.pause()
            claimed.append(job)
        return job

    monkeypatch.setattr(Queue, "claim", claim_across_a_pause)
    job = queue.enqueue("echo ran")  # wakes the idle thread, which claims it
    wait_until(lambda: claimed, 30, message="the claim")
    given_back = wait_until(lambda: (j := queue.get(job.id)).state == "pending" and j, 30)
    assert (given_back.attempts, given_back.worker, given_back.started_at) == (0, None, None)
    monkeypatch.setattr(Queue, "claim", claim)
    pool.resume()
    done = wait_until(lambda: (j := queue.get(job.id)).state == "completed" and j, 30)
    assert (done.attempts, done.output) == (1, "ran\n")
    # The event follows the stored result: the state may be read before it is emitted.
    wait_until(lambda: len(events) >= 2, 30, message="the completed event")
    assert events == ["started", "completed"]


def test_a_stop_while_a_claim_waits_for_another_process_s_lock_claims_nothing(
        queue, pools, db_path, tmp_path, monkeypatch):  # fmt: skip
    """QA, SQLite: another process held the write lock while a thread's result, stored with
    its next job's claim, waited for it; a stop came meanwhile.
    Once the lock went, the next job was claimed and given back at once ("started",
    "released" in its history). The claim is given up as the stop comes; the result is
    stored alone."""
    import sqlite3

    from queuectl.db import SqliteQueueDatabase

    asked: list[float] = []  # when a worker thread's statement, waiting for the lock, asked
    maybe_abandon = SqliteQueueDatabase._maybe_abandon

    def noting(self):
        if threading.current_thread().name.startswith("worker-"):  # (not the heartbeat's)
            asked.append(time.time())
        maybe_abandon(self)

    monkeypatch.setattr(SqliteQueueDatabase, "_maybe_abandon", noting)
    gate, ended = tmp_path / "gate", tmp_path / "ended"
    first = queue.enqueue(f"while [ ! -e {gate} ]; do sleep 0.02; done; touch {ended}")
    pool = pools(queue, threads=1)
    wait_until(lambda: pool.busy == 1, 30, message="the first job to run")
    nxt = queue.enqueue("echo next")
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process's write lock
        gate.touch()
        wait_until(lambda: asked, 30, message="the result and its claim waiting")
        pool.stop()
        stopped = time.time()
        # The lock is let go only once the wait went on after the stop, as one held for long.
        wait_until(lambda: asked[-1] > stopped, 30, message="the wait to go on after it")
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert pool.join(30)
    assert queue.get(first.id).state == "completed"
    assert [event.event for event in queue.history(nxt.id)] == ["enqueued"]
    assert queue.get(nxt.id).state == "pending"


def test_a_stop_while_a_claim_waits_for_this_process_s_writers_turn_claims_nothing(
        db_path, pools, tmp_path):  # fmt: skip
    """QA, SQLite, the same through `worker start`: the heartbeat waited for another
    process's lock while holding this process's writers' turn, and the result with its
    claim waited for the turn, not in SQLite; once the lock went, the claim came, after the
    stop. A statement given up (abandoning) is given up before it starts, too."""
    from queuectl import Queue

    class Turn:
        """This process's writers' turn, saying when a worker thread waits for it."""

        def __init__(self) -> None:
            self.lock, self.worker_waits = threading.RLock(), threading.Event()

        def __enter__(self) -> None:
            if threading.current_thread().name.startswith("worker-"):
                self.worker_waits.set()
            self.lock.acquire()

        def __exit__(self, *exc) -> None:
            self.lock.release()

    queue = Queue(db_path)
    turn = queue._writers = Turn()
    gate = tmp_path / "gate"
    first = queue.enqueue(f"while [ ! -e {gate} ]; do sleep 0.02; done")
    pool = pools(queue, threads=1)
    wait_until(lambda: pool.busy == 1, 30, message="the first job to run")
    nxt = queue.enqueue("echo next")
    turn.worker_waits.clear()
    turn.lock.acquire()  # held, as the heartbeat held it
    try:
        gate.touch()
        wait_until(turn.worker_waits.is_set, 30, message="the result waiting for the turn")
        pool.stop()
    finally:
        turn.lock.release()
    assert pool.join(30)
    assert queue.get(first.id).state == "completed"
    assert [event.event for event in queue.history(nxt.id)] == ["enqueued"]
    queue.close()


@pytest.mark.parametrize("how", ["pause", "stop"])
def test_a_next_job_claimed_with_a_result_across_a_pause_or_stop_goes_back_uncounted(
    queue, pools, monkeypatch, how
):
    """A result is stored in the same transaction that claims the thread's next job, outside
    the lock: a pause or stop landing in between must not start that job."""
    events = []
    first, second = queue.enqueue_many([JobSpec(command="echo one"), JobSpec(command="echo two")])
    finish_and_claim = Queue.finish_and_claim
    pool = None
    crossed = []

    def across(self, *args, **kwargs):
        stored, following = finish_and_claim(self, *args, **kwargs)
        if following is not None:
            wait_until(lambda: pool is not None, 30)
            pool.pause() if how == "pause" else pool.stop()
            crossed.append(following)
        return stored, following

    monkeypatch.setattr(Queue, "finish_and_claim", across)
    pool = pools(queue, threads=1, on_event=lambda event: events.append(event.kind))
    wait_until(lambda: crossed, 30, message="the first result stored, the next job claimed")
    assert queue.get(first.id).state == "completed"
    given_back = wait_until(
        lambda: (j := queue.get(second.id)).state == "pending" and j.worker is None and j, 30,
        message="the next job given back",
    )
    assert (given_back.attempts, given_back.started_at) == (0, None)
    assert events == ["started", "completed"]
    monkeypatch.setattr(Queue, "finish_and_claim", finish_and_claim)
    if how == "pause":
        pool.resume()
        done = wait_until(lambda: (j := queue.get(second.id)).state == "completed" and j, 30)
        assert (done.attempts, done.output) == (1, "two\n")
        # The event follows the stored result: the state may be read before it is emitted.
        wait_until(lambda: len(events) >= 4, 30, message="the completed event")
        assert events == ["started", "completed", "started", "completed"]
    else:
        assert pool.join(30)
        assert queue.get(second.id).state == "pending"


def test_burst_drains_retries_and_delays_then_stops(queue, pools, tmp_path):
    queue.config_set("backoff-base", 1)
    queue.config_set("max-retries", 2)
    marker = tmp_path / "flaky"
    jobs = {
        "ok": queue.enqueue("echo ok"),
        "flaky": queue.enqueue(f"if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi"),
        "bad": queue.enqueue("exit 1"),
        "delayed": queue.enqueue(JobSpec(command="echo late", delay=0.5)),
    }
    pool = pools(queue, threads=2, burst=True)  # after the enqueues: on an empty queue it ends
    started = time.monotonic()
    done = threading.Thread(target=pool.run_until_stopped, daemon=True)
    done.start()
    done.join(60)
    assert not done.is_alive(), "burst did not stop"
    assert time.monotonic() - started >= 1.0, "it waited for the retries"
    states = {name: queue.get(job.id).state for name, job in jobs.items()}
    assert states == {"ok": "completed", "flaky": "completed", "bad": "dead", "delayed": "completed"}
    assert queue.get(jobs["bad"].id).attempts == 2
    assert queue.live_workers() == []


def test_a_stop_request_through_the_queue_stops_the_pool(queue, pools):
    pool = pools(queue, threads=1)
    wait_until(lambda: len(queue.live_workers()) == 1, 30)
    assert queue.request_stop() == 1
    wait_until(lambda: pool.stopping, 30, message="the heartbeat to see the request")
    assert pool.join(30)
    assert queue.live_workers() == []


def test_an_idle_pool_uses_no_cpu_to_speak_of(queue, pools):
    pools(queue, threads=4)
    wait_until(lambda: worker_threads() == 4, 30)
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(1.0)  # the measurement window: nothing to wait for
    used = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert used < 0.15, f"idle pool used {used:.0%} of a core"


def test_a_job_whose_cwd_is_gone_fails_by_the_retry_rules(queue, pools, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    job = queue.enqueue(JobSpec(command="pwd", cwd=str(gone), max_retries=1))
    gone.rmdir()
    pools(queue, threads=1)
    dead = wait_until(lambda: (j := queue.get(job.id)).state == "dead" and j, 30)
    assert dead.error.startswith("cannot start") and dead.exit_code is None


def test_starting_and_stopping_pools_leaks_no_threads_or_descriptors(queue):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = WorkerPool(queue, threads=2).start()  # first use opens what stays open
    warm.stop()
    assert warm.join(30)
    fds, threads = open_fds(), threading.active_count()
    for n in range(20):
        pool = WorkerPool(queue, threads=2).start()
        queue.enqueue("true")
        pool.kill() if n % 2 else pool.stop()
        assert pool.join(30)
    wait_until(lambda: threading.active_count() <= threads, 30, message="threads to end")
    # SQLite may keep one closed connection's descriptor while another holds a lock on the file
    # (POSIX locks are per process): a little slack, but no growth with the number of pools.
    assert open_fds() <= fds + 2


def test_a_job_runs_where_it_was_enqueued(queue, pools, tmp_path, monkeypatch):
    here = tmp_path / "enqueued from here"
    here.mkdir()
    monkeypatch.chdir(here)
    job = queue.enqueue("pwd")
    elsewhere = queue.enqueue(JobSpec(command="pwd", cwd=str(tmp_path)))
    monkeypatch.chdir("/")
    pools(queue, threads=2)
    wait_until(lambda: {state(queue, j.id) for j in (job, elsewhere)} == {"completed"}, 30)
    assert queue.get(job.id).output == f"{here}\n"
    assert queue.get(elsewhere.id).output == f"{tmp_path}\n"


def test_a_pool_just_started_lets_silent_workers_beat_first_and_rescues_the_dead_at_once(
    tmp_path,
):
    """A worker started just as the database came back (by hand, by a supervisor) took the
    jobs that the others had run through the outage for lost: their heartbeats were older
    than the lease, and the results they then stored were thrown away. A pool's first lease
    gives silent workers time to beat again. A worker whose process is dead on this host has
    nothing to report: its job is rescued at once."""
    from queuectl.executor import RunResult

    path = str(tmp_path / "queue.db")
    queue, other = Queue(path, lease=2), Queue(path, lease=2)
    WorkerProcess = other.models.WorkerProcess
    silent, dead = other.register_worker(1), other.register_worker(1)
    kept, lost = other.enqueue("sleep 100"), other.enqueue("sleep 100")
    assert other.claim(silent).id == kept.id and other.claim(dead).id == lost.id
    ended = subprocess.Popen(["true"])
    ended.wait()
    WorkerProcess.update(pid=ended.pid).where(WorkerProcess.id == dead).execute()
    WorkerProcess.update(heartbeat_at=time.time() - 3).execute()  # both silent past the lease
    pool = WorkerPool(queue, 1)
    pool.worker_id = queue.register_worker(1)
    try:
        pool._beat()  # its first heartbeat
        assert state(queue, lost.id) == "failed"
        assert state(queue, kept.id) == "processing"
        other.heartbeat(silent, 1)  # back from the outage
        other.finish(other.get(kept.id), RunResult(0, None, ""), silent)
        assert state(queue, kept.id) == "completed"
    finally:
        queue.close()
        other.close()


def test_a_pool_just_started_rescues_a_worker_long_gone_within_a_few_heartbeats(queue, pools):
    """The grace a new pool gives silent workers was a whole lease (15 s): pools that live
    less (a `--burst` run from cron, a restart loop) never rescued a job whose worker had gone
    on another host, and it stayed processing. It is STARTUP_GRACE_S now."""
    elsewhere = Queue(queue.db.database, host="elsewhere")
    gone = elsewhere.register_worker(1)
    job = elsewhere.enqueue(JobSpec(command="true", max_retries=1))
    assert elsewhere.claim(gone).id == job.id
    WorkerProcess = queue.models.WorkerProcess
    WorkerProcess.update(heartbeat_at=time.time() - 60).where(WorkerProcess.id == gone).execute()
    started = time.monotonic()
    try:
        pools(queue, threads=1)
        wait_until(lambda: state(queue, job.id) == "dead", 10, "the rescue")
        took = time.monotonic() - started
        assert worker_module.STARTUP_GRACE_S <= took < queue.lease
    finally:
        elsewhere.close()


@pytest.mark.parametrize("silent_for, rescues", [(1.0, True), (1.9, False)])
def test_a_pool_back_from_a_silence_near_its_lease_lets_the_others_beat_first(
    tmp_path, silent_for, rescues
):
    """A lease of two heartbeats (2 s). Another worker's heartbeat is older than the lease.
    A pool that beat a second ago (its usual interval) takes that worker for gone and rescues
    its job; a pool whose own last heartbeat is 1.9 s old was most likely cut off as the other
    was (the same outage, the same lock), and gives it a lease to beat again first. The
    silence is measured from the end of the pool's last heartbeat, a little after the time
    the others read for it: just short of the lease can be the lease, as they see it."""
    path = str(tmp_path / "queue.db")
    queue, other = Queue(path, lease=2), Queue(path, lease=2)
    lost = other.register_worker(1)
    job = other.enqueue("sleep 100")
    other.claim(lost)
    WorkerProcess = other.models.WorkerProcess
    WorkerProcess.update(heartbeat_at=time.time() - 3).where(WorkerProcess.id == lost).execute()
    pool = WorkerPool(queue, 1)
    pool.worker_id = queue.register_worker(1)
    pool._last_beat = time.monotonic() - silent_for
    try:
        pool._beat()
        assert state(queue, job.id) == ("failed" if rescues else "processing")
    finally:
        queue.close()
        other.close()


def test_a_surprise_in_the_service_round_is_said_once_and_the_pool_goes_on(
    queue, monkeypatch, caplog
):
    """The service thread heartbeats, sees stop requests and cancels, and fires schedules: an
    exception it did not expect ended it, and the pool ran on unseen ("workers": 0, `worker
    stop` found none) while its jobs were rescued from it as lost."""
    from queuectl.schedules import ScheduleTimer

    rounds: list[float] = []

    def surprise(self, queue):  # noqa: ANN001, ANN202
        rounds.append(time.monotonic())
        raise RuntimeError("a surprise")

    monkeypatch.setattr(ScheduleTimer, "tick", surprise)
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        pool = WorkerPool(queue, 1).start()
        try:
            wait_until(lambda: len(rounds) >= 3, 15, "three service rounds")
            (me,) = queue.live_workers()
            wait_until(lambda: queue.live_workers()[0].heartbeat_at > me.heartbeat_at, 15,
                       "a heartbeat after the surprises")  # fmt: skip
            job = queue.enqueue("true")
            wait_until(lambda: queue.get(job.id).state == "completed", 15, "a job to run")
        finally:
            pool.stop()
            assert pool.join(30)
    said = [r.getMessage() for r in caplog.records if "service round failed" in r.getMessage()]
    assert said == ["the worker's service round failed (RuntimeError: a surprise); it goes on"]


def _stores_fail(monkeypatch, message: str, error=peewee.OperationalError) -> list[float]:
    """Every store of a result fails with ``message`` (the claims and heartbeats go through);
    the times of the tries."""
    tries: list[float] = []

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        tries.append(time.monotonic())
        raise error(message)

    monkeypatch.setattr(Queue, "finish", fail)
    monkeypatch.setattr(Queue, "finish_and_claim", fail)
    return tries


@pytest.mark.parametrize("damage", [
    "database disk image is malformed",
    'malformed database schema (job_change_recorded) - near "INS": syntax error',
])  # fmt: skip
def test_a_damaged_database_file_stops_the_pool_with_one_line(queue, pools, monkeypatch,
                                                              caplog, damage):  # fmt: skip
    """QA: on a damaged SQLite file a worker took "database disk image is malformed" for an
    outage, retried the result's store for ever while its heartbeats went through (its job
    `processing` the while, never rescued), and a SIGTERM did not stop it."""
    tries = _stores_fail(monkeypatch, damage, peewee.DatabaseError)
    job = queue.enqueue("echo ran")
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        pool = pools(queue, threads=1, stop_timeout=300)
        wait_until(lambda: pool.problem is not None, 30, "the pool to say the file is damaged")
        assert pool.join(10), "it stops by itself, not at the stop timeout"
    assert len(tries) == 1
    assert f"is damaged ({damage}); the workers stop" in pool.problem
    assert pool.unstored == [job.id]
    assert queue.get(job.id).state == "processing"  # rescued as "worker lost" once mended
    said = [r.getMessage() for r in caplog.records]
    assert not any("unreachable" in line for line in said), said
    assert sum(pool.problem in line for line in said) == 1, said


def test_a_pool_whose_database_a_newer_queuectl_upgraded_stops_saying_so(target, pools,
                                                                        caplog):  # fmt: skip
    """QA: a worker of an older queuectl on a file upgraded under it said "database unreachable
    (no such table: job_count)", then "reachable again", and never fired a schedule again,
    while `status` counted it live. A pool whose statements fail as the schema a newer
    queuectl made has changed under it (here: its registry's table renamed, as a later schema
    might) stops, saying so once: start it with the newer queuectl."""
    from queuectl.schema import SCHEMA_VERSION

    queue = Queue(target)
    try:
        with caplog.at_level(logging.WARNING, logger="queuectl"):
            pool = pools(queue, threads=1, stop_timeout=5)
            other = Queue(target)
            with other.db.atomic():
                other.db.execute_sql("UPDATE queuectl_schema SET value = %s WHERE key = 'version'"
                                     .replace("%s", str(SCHEMA_VERSION + 1)))  # fmt: skip
                other.db.execute_sql('ALTER TABLE "worker" RENAME TO "worker_process"')
            other.close()
            wait_until(lambda: pool.problem is not None, 30, "the pool to see the new schema")
            assert pool.join(10), "it stops by itself"
        assert pool.problem.startswith(
            f"the database was upgraded by a newer queuectl (schema {SCHEMA_VERSION + 1}, this "
            f"one knows {SCHEMA_VERSION}): "
        ) and pool.problem.endswith("; the workers stop. Start them with the newer queuectl")
        said = [r.getMessage() for r in caplog.records]
        assert sum(pool.problem in line for line in said) == 1, said
    finally:
        queue.close()


def test_a_stop_gives_up_a_store_that_fails_while_the_database_answers(queue, pools,
                                                                       monkeypatch):  # fmt: skip
    """The outage a failed store reports ends at each heartbeat that goes through, and began
    anew at the store's next try: the stop's wait for it, counted from the outage's start,
    never ended (QA: a worker deaf to SIGTERM)."""
    tries = _stores_fail(monkeypatch, "disk I/O error")
    queue.enqueue("true")
    pool = pools(queue, threads=1, stop_timeout=2.5)
    wait_until(lambda: len(tries) >= 2, 30, "the store to fail twice")
    first_try = tries[0]
    pool.stop()
    assert pool.join(30)
    # Given up at the stop timeout counted from the first failed try, or from the stop.
    assert tries[-1] - first_try < 2.5 + 2 * worker_module.MAX_RETRY_S + 1.0


def test_a_stop_that_meets_a_damaged_file_ends_at_once_saying_so(queue, pools, monkeypatch,
                                                                 caplog):  # fmt: skip
    """QA: met on the way out (unregistering, the last hook deliveries), the damage was taken
    for an outage: "database unreachable", a wait of the whole stop timeout, and exit 0."""
    pool = pools(queue, threads=1, stop_timeout=300)
    wait_until(lambda: queue.live_workers(), 30, "the pool to start")

    def damaged(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise peewee.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(Queue, "unregister_worker", damaged)
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        pool.stop()
        assert pool.join(10), "it ends at once, not at the stop timeout"
    assert pool.problem is not None and "is damaged" in pool.problem
    said = [r.getMessage() for r in caplog.records]
    assert not any("unreachable" in line for line in said), said


def test_a_job_that_ends_long_after_the_stop_in_a_full_disk_gets_the_stop_timeout(
    queue, pools, monkeypatch, gate
):
    """README: "A job that ends long after the stop, in an outage, gets the whole
    --stop-timeout too." QA: in a full disk that began before the stop it got 0.5 s: the wait
    counted from the outage's start, long over by the time the job ended."""
    pool = pools(queue, threads=1, stop_timeout=2.0)
    job = queue.enqueue(gate.command("a", "echo done"))
    wait_until(lambda: queue.get(job.id).state == "processing", 30, "the job to start")
    stores: list[float] = []

    def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise peewee.OperationalError("database or disk is full")

    def store_refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        stores.append(time.monotonic())
        refused()

    originals = {name: getattr(Queue, name) for name in ("finish", "finish_and_claim", "heartbeat")}
    monkeypatch.setattr(Queue, "heartbeat", refused)
    monkeypatch.setattr(Queue, "finish", store_refused)
    monkeypatch.setattr(Queue, "finish_and_claim", store_refused)
    wait_until(lambda: pool.outage.down, 30, "the disk to be seen full")
    pool.stop()
    # The stop timeout, counted from the stop, runs out while the job still runs.
    wait_until(lambda: time.monotonic() > pool._stop_deadline + 0.2, 30, "the stop timeout")
    gate.open("a")
    wait_until(lambda: len(stores) >= 3, 30, "the store to be tried three times")
    assert stores[-1] - stores[0] < 2.0  # (within the 2 s it has from its first try)
    for name, original in originals.items():  # room again
        monkeypatch.setattr(Queue, name, original)
    assert pool.join(30)
    assert pool.unstored == []
    assert queue.get(job.id).state == "completed"


@pytest.mark.postgres
def test_a_pool_folds_the_counters_rows_nobody_else_reads(pg_target, pools):
    """Schema 16: each rarer change of state (cancel, retry, release) adds counter rows on
    PostgreSQL, folded by a count. A queue whose only readers are its workers kept them all:
    its workers count too, as they apply the retention (once a minute)."""
    queue = Queue(pg_target)
    try:
        jobs = queue.enqueue_many([JobSpec(command="true", delay=3600)] * 80)
        queue.cancel([job.id for job in jobs])  # 160 rows: -1 pending, +1 cancelled each
        rows = 'SELECT COUNT(*) FROM "job_count_change"'
        assert queue.db.execute_sql(rows).fetchone()[0] == 160
        pools(Queue(pg_target), threads=1)
        wait_until(lambda: queue.db.execute_sql(rows).fetchone()[0] == 0, 30, "the fold")
        assert queue.counts()["cancelled"] == 80 and queue.counts()["pending"] == 0
    finally:
        queue.close()


def test_a_job_that_prints_goes_on_while_the_database_is_write_locked(db_path, queue, pools):
    """QA: the thread that reads a job's pipe stored its output itself, and waited for another
    process's write lock: the pipe filled, the job stood still, and it was killed as "timed out
    after 8s in 17s" though it had 5 s of work. Its output is stored on a thread of its own now:
    the job goes on, ends in its own time, and its result is stored once the lock is gone."""
    import sqlite3

    printing = ("for i in $(seq 1 15); do head -c 20000 /dev/zero | tr '\\0' x; echo; "
                "sleep 0.1; done; echo end")  # fmt: skip
    job = queue.enqueue(JobSpec(command=printing, timeout=6))
    pool = pools(queue, threads=1)
    wait_until(lambda: pool.busy == 1, 30)
    wait_until(lambda: (queue.get(job.id).output_bytes or 0) > 0, 30, "its first output stored")
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process's write lock, held for 9 s
        began = time.monotonic()
        wait_until(lambda: pool.busy == 0, 30, "the job to end")  # in its own time
        assert time.monotonic() - began < 6, "it stood still behind the lock"
        while time.monotonic() - began < 9:
            time.sleep(0.05)
    finally:
        locker.execute("COMMIT")
        locker.close()
    wait_until(lambda: state(queue, job.id) == "completed", 60)
    stored = queue.get(job.id)
    assert stored.output.endswith("end\n") and stored.attempts == 1
    assert stored.finished_at - stored.started_at < 6, "its end recorded as it was"


def test_output_handed_over_while_a_store_waits_is_stored_once_and_latest_first():
    """While a store waits for the database, a job's output handed over again replaces what
    of it waits (each is the whole tail so far): one store, the latest; a run that ended is
    forgotten. (queuectl.outputs: a job's pipe is never held up by a store.)"""
    from types import SimpleNamespace

    from queuectl.outputs import OutputWriter

    stored, gate, closed = [], threading.Event(), threading.Event()

    def store(job, output, printed):
        gate.wait(30)
        stored.append((job.id, output, printed))

    writer = OutputWriter(store, closed.set)
    a, b, c = (SimpleNamespace(seq=n, id=name) for n, name in enumerate("abc"))
    writer.hand_over(a, "a1", 2)  # taken at once: its store waits at the gate
    wait_until(lambda: writer.waiting == 0, 10)
    writer.hand_over(b, "b1", 2)
    writer.hand_over(c, "c1", 2)
    writer.hand_over(b, "b1b2", 4)  # replaces b1
    writer.forget(c.seq)  # c's run ended
    gate.set()
    wait_until(lambda: len(stored) == 2, 10)
    assert stored == [("a", "a1", 2), ("b", "b1b2", 4)]
    writer.stop()
    writer.join(10)
    assert closed.is_set(), "the thread's connection is closed as it ends"


def test_the_output_writer_lets_go_of_an_output_once_it_is_stored():
    """A running job's output is its capped tail (up to 1 MiB): the writer's thread held the
    last one it stored while it waited for the next, a copy kept for as long as the worker
    then idled, and at the job's end beside the result's copies (the memory benchmark's peak:
    11.8 MiB before, 10.5 after)."""
    from types import SimpleNamespace

    from queuectl.outputs import OutputWriter

    stored, closed = [], threading.Event()
    writer = OutputWriter(lambda job, output, printed: stored.append(printed), closed.set)
    output = "".join(["one line of a chatty job\n"] * 1000)  # one object, counted below
    alone = sys.getrefcount(output)
    writer.hand_over(SimpleNamespace(seq=1, id="a"), output, len(output))
    wait_until(lambda: stored, 10, "the output to be stored")
    wait_until(lambda: sys.getrefcount(output) == alone, 10, "the writer to let go of it")
    writer.stop()
    writer.join(10)


def test_a_full_disk_is_over_once_writes_go_through_though_a_jobs_output_was_refused(
    queue, pools, monkeypatch, tmp_path
):
    """QA: a running job's output so far, refused by a full disk, is not tried again (skipped
    while the disk is full: the result carries it), so its writer never said it could write
    again: the TUI's bar said "disk full" for good once there was room, and `worker start`
    said "writable again" only as it stopped, with the whole run for the outage's length."""
    go = tmp_path / "go"
    job = queue.enqueue(f"while [ ! -e {go} ]; do echo line; sleep 0.05; done")
    pool = pools(queue, threads=1)
    wait_until(lambda: queue.get(job.id).output, 30, "the job's output to be stored")
    refusals: list[float] = []

    def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        refusals.append(time.monotonic())
        raise peewee.OperationalError("database or disk is full")

    # The output's write is refused (the largest of the worker's writes: where a heartbeat
    # still finds room, it may not), then there is room again.
    monkeypatch.setattr(Queue, "store_output", refused)
    wait_until(lambda: pool.outage.down and pool.outage.full, 30, "the disk to be seen full")
    monkeypatch.undo()
    wait_until(lambda: not pool.outage.down, 30, "the full disk to be over, the job running")
    assert queue.get(job.id).state == "processing"
    go.touch()
    wait_until(lambda: queue.get(job.id).state == "completed", 30, "the job to complete")
