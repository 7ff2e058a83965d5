"""Several real worker processes on one SQLite file (SPEC 2-3): every job runs exactly once,
nobody sees "database is locked", a killed worker's job is rescued and retried, a live
worker's job is never taken. Every process started here is stopped in a fixture."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from queuectl import JobSpec, Queue
from support import kill_group, process_state, stop_process, wait_until

from .helpers import WorkerProc

LOCKED = "database is locked"


@pytest.fixture
def workers(db_path, tmp_path):
    """``workers(threads, n=1, burst=False)`` starts worker processes on ``db_path`` and waits
    until they run; all are stopped afterwards, and none may have met a locked database."""
    started: list[WorkerProc] = []

    def start(threads: int, n: int = 1, burst: bool = False, *extra: str) -> list[WorkerProc]:
        procs = [
            WorkerProc(db_path, threads, tmp_path, f"worker-{len(started) + i}", burst, *extra)
            for i in range(n)
        ]
        started.extend(procs)
        for proc in procs:
            proc.wait_ready()
        return procs

    yield start
    for proc in started:
        if proc.process.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # in case a test froze it
        proc.stop()
    for proc in started:
        assert LOCKED not in proc.stderr(), f"{proc.name}: {proc.stderr()}"


def test_three_processes_run_300_jobs_exactly_once(db_path, tmp_path, workers):
    queue = Queue(db_path)
    log = tmp_path / "ran.log"
    procs = workers(threads=2, n=3)
    ids = [f"job-{n:03d}" for n in range(300)]
    for batch in range(0, 300, 50):  # enqueued while the workers claim: writers compete
        queue.enqueue_many(
            [JobSpec(command=f"echo {job_id} >> {log}", id=job_id) for job_id in ids[batch : batch + 50]]
        )
    wait_until(lambda: queue.counts()["completed"] == 300, 60,
               message=f"300 completed (have {queue.counts()})")
    lines = log.read_text().split()
    assert sorted(lines) == ids, "every job ran exactly once"
    jobs = queue.list_jobs()
    assert {job.attempts for job in jobs} == {1}
    assert {job.state for job in jobs} == {"completed"}
    ran_by = {job.worker for job in jobs}
    assert ran_by <= {proc.worker_id for proc in procs}
    # Each process reports its own jobs: together, each job exactly once
    wait_until(lambda: len([j for p in procs for _, j in p.events("completed")]) == 300, 30)
    completed = [job_id for proc in procs for _, job_id in proc.events("completed")]
    assert sorted(completed) == ids

    assert queue.request_stop() == 3
    for proc in procs:
        assert proc.process.wait(30) == 0
    assert queue.live_workers() == []
    for proc in procs:
        assert LOCKED not in proc.stderr()


def test_processes_creating_new_files_at_once(tmp_path):
    """Six processes, released together, each open the same ten new files (in new folders):
    nobody fails, on the folders, on switching the file to WAL or on creating the schema."""
    go = tmp_path / "go"
    paths = [str(tmp_path / f"round-{n}" / "sub" / "queue.db") for n in range(10)]
    script = (
        "import os, sys, time\n"
        "from queuectl import Queue, JobSpec\n"
        "open(sys.argv[2] + '.ready', 'w').close()\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
        "for path in sys.argv[3:]:\n"
        "    Queue(path).enqueue(JobSpec(command='true', id=os.path.basename(sys.argv[2])))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), str(tmp_path / f"job-{n}"), *paths],
            stderr=subprocess.PIPE, text=True,
        )
        for n in range(6)
    ]
    try:
        wait_until(lambda: all((tmp_path / f"job-{n}.ready").exists() for n in range(6)), 60,
                   message="every process to be ready")
        go.touch()
        errors = [proc.communicate(timeout=60)[1] for proc in procs]
    finally:
        for proc in procs:
            stop_process(proc)
    assert [proc.returncode for proc in procs] == [0] * 6, errors
    for path in paths:
        queue = Queue(path)
        assert sorted(job.id for job in queue.list_jobs()) == [f"job-{n}" for n in range(6)]
        queue.close()


def test_a_killed_worker_is_rescued_and_its_job_retried_never_duplicated(
    db_path, tmp_path, workers
):
    queue = Queue(db_path)
    queue.config_set("backoff-base", 1)
    runs = tmp_path / "runs"  # one line (the job's process group) per run
    marker = tmp_path / "first-run-happened"
    first, second = workers(threads=1, n=2)
    job = queue.enqueue(
        f"echo $$ >> {runs}; "
        f"if [ -e {marker} ]; then echo second run; else touch {marker}; sleep 30; fi"
    )
    try:
        holder_id = wait_until(
            lambda: (j := queue.get(job.id)).state == "processing" and marker.exists() and j.worker,
            30, message="the job to start",
        )
        holder, other = (first, second) if holder_id == first.worker_id else (second, first)
        assert holder.worker_id == holder_id

        # A second live worker never takes a running job: watch it over a few heartbeats.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            stored = queue.get(job.id)
            assert (stored.state, stored.worker, stored.attempts) == ("processing", holder_id, 1)
            time.sleep(0.05)
        assert len(runs.read_text().split()) == 1

        os.kill(holder.pid, signal.SIGKILL)
        holder.process.wait(30)
        lost = wait_until(
            lambda: (j := queue.get(job.id)).state != "processing" and j, 30,
            message="the job to be rescued",
        )
        if lost.state == "failed":
            assert (lost.error, lost.attempts) == ("worker lost", 1)
        done = wait_until(lambda: (j := queue.get(job.id)).state == "completed" and j, 30,
                          message="the retry to complete")
        assert (done.attempts, done.output, done.worker) == (2, "second run\n", other.worker_id)
        wait_until(lambda: ("rescued", job.id) in other.events(), 30,
                   message="the other worker to report the rescue")
        assert len(runs.read_text().split()) == 2
        assert [w.id for w in queue.live_workers()] == [other.worker_id]
    finally:
        if runs.exists():
            for pgid in runs.read_text().split():
                kill_group(int(pgid))


def test_rescue_after_a_kill_goes_dead_when_attempts_are_used_up(db_path, tmp_path, workers):
    queue = Queue(db_path)
    pgid_file = tmp_path / "pgid"
    job = queue.enqueue(JobSpec(command=f"echo $$ > {pgid_file}; sleep 30", max_retries=1))
    [doomed] = workers(threads=1)
    try:
        wait_until(lambda: pgid_file.exists() and pgid_file.read_text().strip(), 30)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.process.wait(30)
        [rescuer] = workers(threads=1)
        dead = wait_until(lambda: (j := queue.get(job.id)).state == "dead" and j, 30)
        assert (dead.error, dead.attempts, dead.exit_code) == ("worker lost", 1, None)
        wait_until(lambda: ("rescued", job.id) in rescuer.events(), 30,
                   message="the rescuer to report it")
    finally:
        if pgid_file.exists() and pgid_file.read_text().strip():
            kill_group(int(pgid_file.read_text()))


def test_burst_processes_drain_the_queue_and_exit(db_path, tmp_path, workers):
    queue = Queue(db_path)
    queue.config_set("backoff-base", 1)
    queue.config_set("max-retries", 2)
    queue.enqueue_many([JobSpec(command="true") for _ in range(20)])
    queue.enqueue(JobSpec(command="exit 1", id="always-fails"))
    queue.enqueue(JobSpec(command="true", id="later", delay=0.5))
    procs = workers(threads=2, n=2, burst=True)
    for proc in procs:
        assert proc.process.wait(30) == 0
    counts = queue.counts()
    assert counts == {"pending": 0, "processing": 0, "completed": 21, "failed": 0, "dead": 1, "cancelled": 0}
    assert queue.get("always-fails").attempts == 2


def test_enqueuers_and_workers_in_many_processes_never_see_a_locked_database(
    db_path, tmp_path, workers
):
    queue = Queue(db_path)
    procs = workers(threads=2, n=2)
    script = (
        "import sys; from queuectl import Queue; q = Queue(sys.argv[1])\n"
        "for n in range(100):\n"
        "    q.enqueue('true'); q.counts(); q.config()\n"
    )
    enqueuers = [
        subprocess.Popen([sys.executable, "-c", script, db_path], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        errors = [proc.communicate(timeout=60)[1] for proc in enqueuers]
    finally:
        for proc in enqueuers:
            stop_process(proc)
    assert [proc.returncode for proc in enqueuers] == [0, 0, 0], errors
    wait_until(lambda: queue.counts()["completed"] == 300, 60,
               message=f"300 completed (have {queue.counts()})")
    for proc in procs:
        assert LOCKED not in proc.stderr()


def freeze(pid: int, db_path: str) -> None:
    """SIGSTOP ``pid``, at a moment it holds no write lock on the database (a heartbeat, say):
    else every other writer would wait for it until thawed."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: process_state(pid) == "T",
                   30, message="the worker to stop")
        probe = sqlite3.connect(db_path, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped while writing: let it finish, try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    raise AssertionError("the worker held the write lock every time it was stopped")


def test_a_frozen_worker_loses_its_job_at_the_end_of_its_lease(db_path, tmp_path, workers):
    """SIGSTOP: the pid lives but the heartbeat stops. Past the lease another worker rescues
    the job; the frozen one, thawed, finds it gone and stores nothing."""
    queue = Queue(db_path)
    queue.config_set("backoff-base", 1)
    marker = tmp_path / "first-run-happened"
    [frozen] = workers(1, 1, False, "--lease", "2")
    job = queue.enqueue(
        f"if [ -e {marker} ]; then echo second run; else touch {marker}; sleep 5; echo first; fi"
    )
    wait_until(lambda: marker.exists(), 30, message="the first run to start")
    assert queue.get(job.id).worker == frozen.worker_id
    freeze(frozen.pid, db_path)  # before the first run ends (5 s): its result is not stored yet
    try:
        [rescuer] = workers(1, 1, False, "--lease", "2")
        lost = wait_until(lambda: (j := queue.get(job.id)).state != "processing" and j, 30,
                          message="the rescue")
        if lost.state == "failed":
            assert (lost.error, lost.attempts) == ("worker lost", 1)
        done = wait_until(lambda: (j := queue.get(job.id)).state == "completed" and j, 30)
        assert (done.worker, done.output, done.attempts) == (rescuer.worker_id, "second run\n", 2)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    # Thawed, it heartbeats again and its first run ends: its result must not be stored.
    wait_until(lambda: frozen.worker_id in {w.id for w in queue.live_workers()}, 30,
               message="the thawed worker to heartbeat again")
    frozen.process.send_signal(signal.SIGTERM)  # graceful: it exits once its run is over
    assert frozen.wait_exit(30) == 0
    assert queue.get(job.id).__data__ == done.__data__
    assert ("completed", job.id) not in frozen.events()


def test_a_frozen_workers_run_is_stopped_when_its_job_is_rescued_here(db_path, tmp_path, workers):
    """A worker suspended (Ctrl-Z, SIGSTOP) past its lease loses its job to a rescue, but its
    run, in a session of its own, went on: the job ran twice at once until the worker was
    thawed. On the same host the rescuer now ends that run, as it does a dead worker's."""
    from queuectl.procs import group_alive

    queue = Queue(db_path)
    queue.config_set("backoff-base", 1)
    marker, first_pid = tmp_path / "first-run-happened", tmp_path / "first.pid"
    [frozen] = workers(1, 1, False, "--lease", "2")
    job = queue.enqueue(
        f"if [ -e {marker} ]; then echo second run; "
        f"else echo $$ > {first_pid}.new; mv {first_pid}.new {first_pid}; touch {marker}; sleep 60; fi"
    )
    wait_until(lambda: marker.exists(), 30, message="the first run to start")
    first = int(first_pid.read_text())
    freeze(frozen.pid, db_path)
    try:
        [rescuer] = workers(1, 1, False, "--lease", "2")
        done = wait_until(lambda: (j := queue.get(job.id)).state == "completed" and j, 30,
                          message="the rescued job to run again")
        assert (done.worker, done.output) == (rescuer.worker_id, "second run\n")
        assert not group_alive(first), "the frozen worker's run went on beside its job's next"
    finally:
        kill_group(first)
        os.kill(frozen.pid, signal.SIGCONT)
