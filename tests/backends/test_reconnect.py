"""Workers that outlive their database going away (issue: after a PostgreSQL restart a worker
never recovered). Each test puts a proxy between its workers and the server (see outage.py),
takes it down and brings it back, so only that test's connections are cut."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .outage import Outage
from engine.helpers import WorkerProc
from queuectl import JobSpec, Queue
from queuectl.procs import pid_alive
from queuectl.worker import fence_after
from support import quitting_said, stop_process, wait_until

pytestmark = pytest.mark.postgres

UNREACHABLE = "database unreachable"
BACK = "database reachable again"
STARTED = " thread(s) "  # "worker ID running 2 thread(s) on ...", once connected


class Worker:
    """A real `queuectl worker start` process; its log in a file."""

    def __init__(self, url: str, folder: Path, name: str, *args: str) -> None:
        self.log_path = folder / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "queuectl", "--db", url, "worker", "start", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def logged(self, text: str) -> int:
        return self.log().count(text)

    def stop(self) -> None:
        stop_process(self.process, timeout=20)


@pytest.fixture
def outage(pg_target):
    proxy = Outage(pg_target)
    yield proxy
    proxy.close()


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def ledger_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_workers_come_back_after_an_outage_and_run_every_job_exactly_once(
    pg_target, outage, workers, tmp_path
):
    ledger = tmp_path / "ledger"
    # The enqueuer reaches the server directly: it goes on enqueuing while the workers can't.
    queue = Queue(pg_target)

    def job(n: int) -> JobSpec:
        return JobSpec(command=f"sleep 0.05; echo {n} >> {ledger}", max_retries=1)

    queue.enqueue_many([job(n) for n in range(30)])
    for name in ("a", "b"):
        workers.append(Worker(outage.url, tmp_path, name, "--count", "2"))
    wait_until(lambda: len(ledger_lines(ledger)) >= 4, 30, "the workers to get going")
    # Both connected before the server goes: a worker that cannot connect at its start exits
    # (the four lines above may all be the other worker's on a busy machine).
    wait_until(lambda: all(w.logged(STARTED) for w in workers), 30,
               lambda: "both workers to start: " + " | ".join(w.log() for w in workers))

    outage.down()
    enqueuer = threading.Thread(target=lambda: queue.enqueue_many([job(n) for n in range(30, 40)]))
    enqueuer.start()
    wait_until(lambda: all(w.logged(UNREACHABLE) for w in workers), 30,
               lambda: "both workers to notice the outage: " + " | ".join(w.log() for w in workers))
    enqueuer.join(30)
    outage.up()

    wait_until(lambda: len(ledger_lines(ledger)) >= 40, 60,
               lambda: f"every job to run: {len(ledger_lines(ledger))} of 40, {queue.counts()}, "
               + " | ".join(w.log() for w in workers))
    wait_until(lambda: queue.counts()["completed"] == 40, 30, "every result to be stored")
    assert sorted(map(int, ledger_lines(ledger))) == list(range(40)), "a job ran twice or never"
    counts = queue.counts()
    assert (counts["processing"], counts["pending"], counts["dead"]) == (0, 0, 0)
    for worker in workers:
        assert worker.process.poll() is None, worker.log()
        wait_until(lambda: worker.logged(BACK), 30, "the worker to say the database is back")
        # One line when it is lost and one when it is back, not one a second.
        assert (worker.logged(UNREACHABLE), worker.logged(BACK)) == (1, 1), worker.log()
        assert "Traceback" not in worker.log()
    # Pickup works again at once (LISTEN was renewed): a new job starts within a second.
    fresh = queue.enqueue(JobSpec(command="true"))
    wait_until(lambda: queue.get(fresh.id).state == "completed", 30, "a job enqueued afterwards")
    stored = queue.get(fresh.id)
    assert stored.started_at - stored.created_at < 1.0


def test_a_job_that_ends_during_the_outage_is_stored_once_it_is_back(
    pg_target, outage, workers, tmp_path
):
    queue = Queue(pg_target)
    began, ended = tmp_path / "began", tmp_path / "ended"
    job = queue.enqueue(JobSpec(command=f"touch {began}; sleep 1; echo done; touch {ended}"))
    workers.append(Worker(outage.url, tmp_path, "w"))
    wait_until(began.exists, 30, "the job to start")
    outage.down()
    wait_until(ended.exists, 30, "the job to end while the database is away")
    wait_until(lambda: workers[0].logged(UNREACHABLE), 30, "the worker to notice")
    outage.up()
    wait_until(lambda: queue.get(job.id).state == "completed", 30, "the result to be stored")
    stored = queue.get(job.id)
    assert (stored.attempts, stored.exit_code, stored.output) == (1, 0, "done\n")


def test_a_job_that_ends_after_a_short_outage_is_stored_without_a_second_outage_said(
    pg_target, outage, workers, tmp_path
):
    """QA: after the database came back, a job that ended seconds later found its thread's
    connection broken by the outage, and the log said a second outage ("database unreachable
    (…)", then "reachable again after 0.1s") though the database had answered all along. A
    connection found broken once the outage is over is replaced at once, unsaid."""
    queue = Queue(pg_target)
    began, gate = tmp_path / "began", tmp_path / "gate"
    job = queue.enqueue(JobSpec(
        command=f"touch {began}; while [ ! -e {gate} ]; do sleep 0.05; done; echo done"
    ))  # fmt: skip
    workers.append(Worker(outage.url, tmp_path, "w"))
    wait_until(began.exists, 30, "the job to start")
    outage.down()
    wait_until(lambda: workers[0].logged(UNREACHABLE), 30, "the worker to notice")
    outage.up()
    wait_until(lambda: workers[0].logged("reachable again"), 30, "the worker to see it back")
    time.sleep(2.5)  # past the outage's settling time (2 s): a failure now would be a new one
    gate.touch()
    wait_until(lambda: queue.get(job.id).state == "completed", 30, "the result to be stored")
    assert queue.get(job.id).output == "done\n"
    assert workers[0].logged(UNREACHABLE) == 1, workers[0].log()


def test_a_worker_started_as_the_database_comes_back_leaves_the_others_their_jobs(
    pg_target, outage, tmp_path
):
    """An outage longer than the lease; a worker started the moment the database is back (by
    hand, by a supervisor) took the job that the first worker had run through the outage for
    lost: the job went to the DLQ as "worker lost", though it had exited 0, and the first
    worker's result was refused. A new worker gives the silent ones a lease to beat first."""
    queue = Queue(pg_target)
    lease = 3.0
    began, ended = tmp_path / "began", tmp_path / "ended"
    job = queue.enqueue(JobSpec(command=f"touch {began}; sleep 0.5; touch {ended}",
                                max_retries=0))  # fmt: skip
    first = WorkerProc(outage.url, 1, tmp_path, "first", False, "--lease", str(lease))
    second = None
    try:
        first.wait_ready()
        wait_until(began.exists, 30, "the job to start")
        outage.down()
        wait_until(ended.exists, 30, "the job to end while the database is away")
        Worker = queue.models.WorkerProcess
        wait_until(lambda: Worker.get(Worker.id == first.worker_id).heartbeat_at
                   < queue.clock() - lease - 0.5, 30, "the first worker's lease to run out")  # fmt: skip
        outage.up()
        second = WorkerProc(pg_target, 1, tmp_path, "second", False, "--lease", str(lease))
        second.wait_ready()
        wait_until(lambda: queue.get(job.id).state != "processing", 30, "the result")
        stored = queue.get(job.id)
        assert (stored.state, stored.exit_code, stored.error) == ("completed", 0, None)
        assert second.events("rescued") == []
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_job_rescued_during_the_outage_is_not_overwritten_by_its_lost_worker(
    pg_target, outage, workers, tmp_path
):
    queue = Queue(pg_target)
    began, ended = tmp_path / "began", tmp_path / "ended"
    job = queue.enqueue(
        JobSpec(command=f"touch {began}; sleep 1; touch {ended}", max_retries=1)
    )
    workers.append(Worker(outage.url, tmp_path, "w"))
    wait_until(began.exists, 30, "the job to start")
    outage.down()
    # Another host, with a lease of 0.5 s, finds the silent worker gone and rescues its job.
    elsewhere = Queue(pg_target, host="elsewhere", lease=0.5)
    wait_until(lambda: elsewhere.rescue_lost(), 30, "the rescue")
    assert queue.get(job.id).state == "dead"
    wait_until(ended.exists, 30, "the job to end")
    outage.up()
    wait_until(lambda: workers[0].logged("its result is not stored"), 30,
               lambda: f"the worker to say it lost the job: {workers[0].log()}")
    stored = queue.get(job.id)
    assert (stored.state, stored.error) == ("dead", "worker lost")
    assert workers[0].process.poll() is None


def _running_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), 30, "the job to start"))


def test_a_worker_cut_off_past_its_lease_kills_its_job_before_others_may_rescue_it(
    pg_target, outage, tmp_path
):
    """QA: a worker cut off from the database ran its job on after its lease ran out, while a
    worker of another host, rescuing it, ran it again: two runs at once, past the queue's limit
    of 1. The cut-off worker now kills its run before the lease runs out; the rescue stands."""
    queue = Queue(pg_target)
    lease = 3.0
    pid_file = tmp_path / "pid"
    queue.set_queue_limit("narrow", 1)
    job = queue.enqueue(JobSpec(command=f"echo $$ > {pid_file}; exec sleep 60", queue="narrow",
                                max_retries=1))  # fmt: skip
    cut_off = WorkerProc(outage.url, 1, tmp_path, "cut-off", False, "--lease", str(lease))
    try:
        worker_id = cut_off.wait_ready()
        pid = _running_pid(pid_file)
        outage.down()
        wait_until(lambda: not pid_alive(pid), 10, "the cut-off worker to kill its run")
        killed_at = queue.clock()
        Worker = queue.models.WorkerProcess
        beat = Worker.get(Worker.id == worker_id).heartbeat_at
        assert killed_at < beat + lease  # before another host could take the job for lost
        elsewhere = Queue(pg_target, host="elsewhere", lease=lease)
        rescued = wait_until(lambda: elsewhere.rescue_lost(), 30, "the rescue")
        assert [j.id for j in rescued] == [job.id]
        outage.up()
        wait_until(lambda: "not given back" in cut_off.stderr(), 30,
                   lambda: f"the worker to say the job is not its own: {cut_off.stderr()}")  # fmt: skip
        stored = queue.get(job.id)
        assert (stored.attempts, stored.error) == (1, "worker lost")
        assert cut_off.events("released") == []
    finally:
        cut_off.stop()


def test_a_job_killed_for_an_outage_goes_back_uncounted_when_the_database_returns(
    pg_target, outage, tmp_path
):
    """The outage outlasts the point where the worker kills its run, but not the lease: nobody
    rescued the job, so the worker gives it back, its attempt not counted, and runs it again."""
    queue = Queue(pg_target)
    lease = 3.0
    pid_file = tmp_path / "pid"
    job = queue.enqueue(JobSpec(command=f"echo $$ >> {pid_file}; exec sleep 60", max_retries=0))
    cut_off = WorkerProc(outage.url, 1, tmp_path, "cut-off", False, "--lease", str(lease))
    try:
        cut_off.wait_ready()
        pid = _running_pid(pid_file)
        outage.down()
        wait_until(lambda: not pid_alive(pid), 10, "the cut-off worker to kill its run")
        outage.up()
        wait_until(lambda: ("released", job.id) in cut_off.events(), 30, "the job to go back")
        wait_until(lambda: len(pid_file.read_text().split()) == 2, 30, "its second run")
        stored = queue.get(job.id)
        assert (stored.state, stored.attempts) == ("processing", 1)  # the first not counted
        assert "killed 1 running job(s)" in cut_off.stderr()
        # QA: the fence took the heartbeat not yet in after the return for a new outage.
        wait_until(lambda: "reachable again" in cut_off.stderr(), 30, cut_off.stderr)
        assert cut_off.stderr().count("database unreachable") == 1, cut_off.stderr()
        assert f"EVENT released {job.id} outage" in cut_off.lines  # not "by stop" (QA)
        assert [e.event for e in queue.history(job.id)][-3:] == ["started", "released",
                                                                     "started"]  # fmt: skip
    finally:
        cut_off.stop()


def test_a_result_stored_as_the_database_returns_claims_nothing_before_the_heartbeat(
    pg_target, outage, tmp_path
):
    """QA: a run that ended early in an outage past the fence's point had its result stored,
    and the next job claimed with it, the moment the database answered, before the pool's
    heartbeat landed: the fence killed that job at once, and its command started twice. The
    next job is claimed once the heartbeat is in, and starts once."""
    queue = Queue(pg_target)
    lease = 3.0
    ledger = tmp_path / "ledger"
    gate = tmp_path / "gate"  # the first job ends in the outage (it ended before it, under load)
    queue.enqueue(JobSpec(command=f"echo first >> {ledger}; while [ ! -e {gate} ]; do sleep 0.02; done",
                          priority=1))  # fmt: skip
    second = queue.enqueue(JobSpec(command=f"echo second >> {ledger}; sleep 1"))
    cut_off = WorkerProc(outage.url, 1, tmp_path, "cut-off", False, "--lease", str(lease))
    try:
        worker_id = cut_off.wait_ready()
        wait_until(lambda: ledger_lines(ledger) == ["first"], 30, "the first job to start")
        outage.down()
        gate.touch()
        Worker = queue.models.WorkerProcess
        beat = Worker.get(Worker.id == worker_id).heartbeat_at
        wait_until(lambda: queue.clock() > beat + fence_after(lease) + 1, 30,
                   "the worker to be silent past the fence's point")  # fmt: skip
        outage.up()
        wait_until(lambda: queue.get(second.id).state == "completed", 30,
                   lambda: f"the second job to complete: {cut_off.stderr()}")  # fmt: skip
        assert ledger_lines(ledger) == ["first", "second"]
        assert [e.event for e in queue.history(second.id)] == ["enqueued", "started", "completed"]
        assert "killed" not in cut_off.stderr()
    finally:
        cut_off.stop()


def test_a_database_that_stops_answering_is_said_and_its_runs_stopped(pg_target, outage, tmp_path):
    """QA: packets dropped without a word (the connections stay open, nothing answers) were
    never noticed: no line, and the job ran on past the lease. The worker says so once it is
    past the point where it stops its runs, and again once answers come back."""
    queue = Queue(pg_target)
    pid_file = tmp_path / "pid"
    queue.enqueue(JobSpec(command=f"echo $$ >> {pid_file}; exec sleep 60"))
    held = WorkerProc(outage.url, 1, tmp_path, "held", False, "--lease", "3")
    try:
        held.wait_ready()
        pid = _running_pid(pid_file)
        outage.hold()
        wait_until(lambda: UNREACHABLE in held.stderr(), 15, "the worker to say it")
        assert "no answer for" in held.stderr()
        wait_until(lambda: not pid_alive(pid), 10, "its run to be stopped")
        outage.up()
        wait_until(lambda: BACK in held.stderr(), 30, lambda: f"it to say so: {held.stderr()}")
        said = held.stderr()
        # The outage is said before the kill it causes, and lasted from the last heartbeat.
        assert said.index(UNREACHABLE) < said.index("killed 1 running job"), said
        lasted = float(re.search(r"reachable again after ([0-9.]+)s", said).group(1))
        assert lasted >= 2.0, said
    finally:
        outage.up()
        held.stop()


def test_a_stop_while_the_database_does_not_answer_ends_within_the_stop_timeout(
    pg_target, outage, workers, tmp_path
):
    """QA: SIGTERM while the network dropped packets without a word: the worker waited for the
    answer to its heartbeat, past --stop-timeout, until the network came back (65 s). CI: the
    silence began as the worker's watch sent its LISTEN, and the worker, waiting for that to
    start its threads, acted on the SIGTERM only 3 s later (7.1 s in all, over 8 on a busy
    machine); 4.1 s now."""
    queue = Queue(pg_target)
    worker = Worker(outage.url, tmp_path, "w", "--stop-timeout", "2")
    workers.append(worker)
    wait_until(lambda: worker.logged(STARTED), 30, "the worker to start")
    Registered = queue.models.WorkerProcess
    outage.hold()
    wait_until(lambda: queue.clock() - max(w.heartbeat_at for w in Registered.select()) > 2,
               30, "its heartbeat to stop landing")  # fmt: skip
    worker.process.send_signal(signal.SIGTERM)
    try:
        # --stop-timeout 2 and the grace (worker.UNANSWERED_GRACE_S, 2 s): it took 9-12 s
        # while the stop waited for the outage to be said (a connect's timeout) to count.
        try:
            code = worker.process.wait(8)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 8 s after SIGTERM:\n{worker.log()}")
        assert code == 1, worker.log()
    finally:
        outage.up()
    assert "has not answered within the stop timeout" in worker.log()


def test_a_short_outage_while_a_stop_waits_for_a_job_leaves_it_running(
    pg_target, outage, workers, tmp_path
):
    """QA: a stop draining a long job exited the moment an outage began once --stop-timeout
    had passed since the stop; its job ran on, orphaned, and ran again on another host."""
    queue = Queue(pg_target)
    began = tmp_path / "began"
    job = queue.enqueue(JobSpec(command=f"touch {began}; sleep 7; echo done", max_retries=0))
    worker = Worker(outage.url, tmp_path, "w", "--stop-timeout", "1")
    workers.append(worker)
    wait_until(began.exists, 30, "the job to start")
    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: worker.logged("SIGTERM: stopping"), 10, "the stop")
    outage.down()
    wait_until(lambda: worker.logged(UNREACHABLE), 30, "the worker to notice")
    with pytest.raises(subprocess.TimeoutExpired):  # past --stop-timeout and its grace: it stays
        worker.process.wait(3)
    outage.up()
    assert worker.process.wait(30) == 0, worker.log()
    stored = queue.get(job.id)
    assert (stored.state, stored.attempts, stored.output) == ("completed", 1, "done\n")


def test_a_stop_while_a_result_waits_for_the_database_claims_nothing_more(
    pg_target, outage, workers, tmp_path
):
    """QA: a run ended in an outage, then SIGTERM ("stopping after 0 running job(s) finish,
    and 1 result(s) are stored"): as the database came back, the result was stored and the
    next job claimed with it, then given back (its history: started, released), by a worker
    told to stop claiming."""
    queue = Queue(pg_target)
    ended, go = tmp_path / "ended", tmp_path / "go"
    first = queue.enqueue(JobSpec(command=f"while [ ! -e {go} ]; do sleep 0.02; done; "
                                          f"touch {ended}"))  # fmt: skip
    worker = Worker(outage.url, tmp_path, "w", "--stop-timeout", "60")
    workers.append(worker)
    wait_until(lambda: queue.get(first.id).state == "processing", 30, "the job to start")
    second = queue.enqueue("true")  # (after the first's claim: this one waits)
    outage.down()
    go.touch()
    wait_until(ended.exists, 30, "the run to end")
    wait_until(lambda: worker.logged(UNREACHABLE), 30, "its result to wait for the database")
    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: worker.logged("SIGTERM: stopping"), 10, "the stop")
    outage.up()
    assert worker.process.wait(30) == 0, worker.log()
    assert queue.get(first.id).state == "completed"
    assert [event.event for event in queue.history(second.id)] == ["enqueued"]
    assert queue.get(second.id).state == "pending"


def test_a_stop_while_the_database_is_away_ends_with_a_clear_line(
    pg_target, outage, workers, tmp_path
):
    queue = Queue(pg_target)
    began, go, ended = tmp_path / "began", tmp_path / "go", tmp_path / "ended"
    # The job ends once told to, after the stop has begun: well within the stop's timeout, however
    # busy the machine (a job of `sleep 1` under a 1 s timeout was sometimes still running at it).
    job = queue.enqueue(JobSpec(
        command=f"touch {began}; while [ ! -e {go} ]; do sleep 0.02; done; touch {ended}"
    ))  # fmt: skip
    worker = Worker(outage.url, tmp_path, "w", "--stop-timeout", "5")
    workers.append(worker)
    wait_until(began.exists, 30, "the job to start")
    outage.down()
    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping after" in worker.log(), 30, "the stop to begin")
    go.touch()
    assert worker.process.wait(30) == 1, worker.log()
    assert ended.exists(), "the running job was let finish"
    said = worker.log()
    assert f"job {job.id}: result not stored: the database still is unreachable 5s" in said
    # The pool's last steps (its unregistering) do not wait out a second stop timeout: the
    # pool ends, or `worker start` leaves it at the stop timeout's end and its grace (one line,
    # in the same words), whichever comes first under the machine's load.
    last = said.rstrip().splitlines()[-1]
    assert "stopped with 1 result(s) not stored" in last, said
    assert last.endswith('their jobs are rescued as "worker lost"'), said
    assert "Traceback" not in said
    outage.up()
    # Nothing is lost: the job, left processing by a worker that is gone, is rescued and rerun.
    rescuer = Queue(pg_target)
    wait_until(lambda: rescuer.rescue_lost(), 30, "the rescue")
    assert queue.get(job.id).state == "failed"


def test_a_command_run_while_the_database_is_away_fails_with_one_error_line(outage, tmp_path):
    Queue(outage.url).close()  # the schema exists
    outage.down()
    for args in (["status"], ["enqueue", "true"], ["list"]):
        out = subprocess.run(
            [sys.executable, "-m", "queuectl", "--db", outage.url, *args],
            capture_output=True, text=True, timeout=60, env={**os.environ},
        )
        assert out.returncode == 1, out
        assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1, out.stderr


async def _until(pilot, condition, what: str, timeout: float = 30.0) -> None:
    """In a TUI test: let the app run until ``condition()`` holds; fail after ``timeout`` s."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def test_the_tui_shows_the_outage_keeps_its_job_running_and_recovers(pg_target, outage, tmp_path):
    import asyncio

    from queuectl.tui.app import QueueApp

    queue = Queue(outage.url)
    began, ended = tmp_path / "began", tmp_path / "ended"
    job = queue.enqueue(JobSpec(command=f"touch {began}; sleep 1; touch {ended}"))
    direct = Queue(pg_target)
    app = QueueApp(queue, workers=1, refresh_interval=0.25)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, began.exists, "the app's own worker to start the job")
            outage.down()
            await _until(pilot, lambda: app.stats.error, "the top bar to show the outage")
            await _until(pilot, ended.exists, "the job to go on running")
            outage.up()
            await _until(pilot, lambda: not app.stats.error, "the app to recover by itself")
            await _until(pilot, lambda: direct.get(job.id).state == "completed", "its result")
            await _until(pilot, lambda: app.stats.counts.get("completed") == 1, "the new counts")
            app.pool.stop()
            app.pool.join()

    asyncio.run(scenario())


def test_the_tui_says_a_silent_database_as_its_workers_do_not_once_a_read_gives_up(
    pg_target, outage
):
    """A network that drops packets without a word holds the panes' reads until a connection
    gives up (15 s and more): the bar said "▶ running" for 30 s, though the workers had said
    "no answer for 12s" at their fence. The bar says it as the workers do (lease 3 s here:
    said at 2 s), and "▶ running" again once the database answers."""
    import asyncio

    from queuectl.tui.app import QueueApp

    queue = Queue(outage.url, lease=3)
    app = QueueApp(queue, workers=1, refresh_interval=0.25)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.pool.started, "the app's workers to start")
            outage.hold()
            await _until(pilot, lambda: "no answer for" in app.stats.outage,
                         "the top bar to say the database is lost", timeout=10)  # fmt: skip
            assert not app.stats.error, "said before any read of the panes gave up"
            outage.up()
            await _until(pilot, lambda: not app.stats.outage, "the bar to say it is back")
            app.pool.stop()
            app.pool.join()

    asyncio.run(scenario())


def test_a_watching_tui_says_a_read_the_server_does_not_answer(pg_target, outage):
    """`tui --workers 0` (no workers, so no fence to say an outage) while the server does not
    answer: the bar showed the counts of before as if live, for as long as that lasted. It
    says how long its read has waited, in place of the counts, and the counts once it is
    answered."""
    import asyncio

    from queuectl.tui.app import QueueApp

    queue = Queue(outage.url)
    queue.enqueue("true")
    app = QueueApp(queue, workers=0, refresh_interval=0.25)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.stats.counts.get("pending") == 1, "the counts")
            outage.hold()
            await _until(pilot, lambda: "no answer for" in app.stats.error,
                         "the bar to say the read waits", timeout=15)  # (said at 5 s)
            outage.up()
            await _until(pilot, lambda: not app.stats.error, "the counts again")
            assert app.stats.counts.get("pending") == 1

    asyncio.run(scenario())


def test_the_live_output_screen_says_a_read_the_server_does_not_answer(pg_target, outage):
    """`l` on a running job while the server stops answering: the output of before stayed on
    screen as if live. Its status line says how long the read has waited, and not once the
    server answers again."""
    import asyncio

    from queuectl.tui.app import QueueApp
    from queuectl.tui.screens.output import OutputScreen

    direct = Queue(pg_target)
    direct.enqueue("sleep 60")
    worker = direct.register_worker(1)
    job = direct.claim(worker)
    direct.store_output(job, worker, "line one\n", 9)
    app = QueueApp(Queue(outage.url), workers=0, refresh_interval=0.25)

    def status() -> str:
        return str(app.screen.query_one("#output-status").render())

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            screen = OutputScreen(app.queue, job.id)
            app.push_screen(screen)
            await _until(pilot, lambda: screen.reads and "processing" in status(), "the output")
            outage.hold()
            await _until(pilot, lambda: "no answer for" in status(), "the status to say it",
                         timeout=15)  # (said at 5 s)  # fmt: skip
            outage.up()
            await _until(pilot, lambda: "no answer" not in status(), "the status again")
            assert "9 bytes" in status()

    asyncio.run(scenario())
    direct.close()


def test_a_stop_that_gave_up_its_results_does_not_wait_out_a_second_timeout(
    pg_target, outage, tmp_path, monkeypatch
):
    """QA: a TUI's quit in an outage took twice the stop timeout (60 s): its threads gave up
    their results at the timeout's end, then the pool's last steps (its hooks' deliveries, its
    unregistering) waited for the database a whole timeout of their own. `worker start` left
    at the first, by its own main loop. The last steps now get no more time: tried once, the
    worker is left to its lease."""
    from queuectl import WorkerPool
    from queuectl.hooks import HookRunner

    queue = Queue(outage.url)
    began, gate = tmp_path / "began", tmp_path / "gate"  # (it ends in the outage)
    job = queue.enqueue(JobSpec(command=f"touch {began}; while [ ! -e {gate} ]; do sleep 0.02; done"))
    given: list[float] = []  # the time the hooks' last deliveries were given
    close = HookRunner.close

    def timed_close(self, timeout, *args, **kwargs):
        given.append(timeout)
        return close(self, timeout, *args, **kwargs)

    monkeypatch.setattr(HookRunner, "close", timed_close)
    pool = WorkerPool(queue, 1, stop_timeout=1.5).start()
    try:
        wait_until(began.exists, 30, "the job to start")
        outage.down()
        gate.touch()
        pool.stop()
        assert pool.join(60)
    finally:
        pool.kill()
        outage.up()
    assert pool.unstored == [job.id]
    assert given == [0] and pool.left_registered, given


def test_a_quit_in_an_outage_says_what_it_could_not_store_and_ends_with_1(
    pg_target, outage, tmp_path, monkeypatch
):
    """QA: `q`, `y`, `k` with the database away exited 0 and said nothing, under a dialog that
    promised the killed job's attempt "not counted": its release was never stored, and it came
    back as "worker lost", an attempt counted. The dialog says what waits for the database, and
    the app ends as `worker start` does: exit code 1, and the line saying how many results were
    not stored (the stop's wait for the database shortened to 1 s here)."""
    import asyncio
    from functools import partial

    from queuectl.tui import pool as tui_pool
    from queuectl.tui.app import QueueApp, _exit_code
    from queuectl.tui.screens.confirm import StoppingScreen
    from queuectl.worker import WorkerPool

    monkeypatch.setattr(tui_pool, "WorkerPool", partial(WorkerPool, stop_timeout=1))
    queue = Queue(outage.url)
    began = tmp_path / "began"
    job = queue.enqueue(JobSpec(command=f"touch {began}; sleep 60"))
    app = QueueApp(queue, workers=1, refresh_interval=0.25)

    def hint() -> str:
        screen = app.screen
        return str(screen.query_one("#quit-hint").render()) if isinstance(
            screen, StoppingScreen) else ""  # fmt: skip

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, began.exists, "the app's own worker to start the job")
            outage.down()
            await _until(pilot, lambda: app.pool.outage, "the workers to say the outage")
            await pilot.press("q", "y")
            await _until(pilot, lambda: "is not answering" in hint(), "the dialog to say so")
            assert "rescued by another worker" in hint() and "Press k" in hint()
            await pilot.press("k")
            assert "Press k" not in hint(), "offered once"
            await _until(pilot, lambda: app.pool.unstored_said(), "the stop to give up")

    asyncio.run(scenario())
    assert _exit_code(app) == 1
    assert app.pool.unstored_said() == (
        'stopped with 1 result(s) not stored (the database was unreachable); their jobs are '
        'rescued as "worker lost"'
    )
    outage.up()
    assert Queue(pg_target).get(job.id).state == "processing", "left to be rescued"


def test_a_quit_with_a_result_waiting_for_the_database_says_so(pg_target, outage, tmp_path,
                                                                monkeypatch):  # fmt: skip
    """QA: `q` with no job running but a result waiting for the database asked nothing and
    showed nothing, for a minute ("stopping" in the bar): the quitting dialog says what it
    waits for, and why."""
    import asyncio
    from functools import partial

    from queuectl.tui import pool as tui_pool
    from queuectl.tui.app import QueueApp
    from queuectl.worker import WorkerPool

    monkeypatch.setattr(tui_pool, "WorkerPool", partial(WorkerPool, stop_timeout=2))
    queue = Queue(outage.url)
    began, gate = tmp_path / "began", tmp_path / "gate"
    queue.enqueue(JobSpec(command=f"touch {began}; while [ ! -e {gate} ]; do sleep 0.02; done"))
    app = QueueApp(queue, workers=1, refresh_interval=0.25)

    def said() -> str:
        return quitting_said(app)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, began.exists, "the app's own worker to start the job")
            outage.down()
            gate.touch()  # the job ends once the database is away (it ended first, under load)
            await _until(pilot, lambda: app.pool.results_waiting, "its result to wait")
            await pilot.press("q")
            await _until(pilot, lambda: "Waiting for 1 result to be stored" in said(),
                         "the dialog to say what the quit waits for")  # fmt: skip
            assert "is not answering" in said()
            assert "Press k" not in said(), "no job runs: nothing to kill (QA)"
            await _until(pilot, lambda: app.pool.unstored_said(), "the stop to give up")

    asyncio.run(scenario())


def test_a_quit_with_nothing_running_ends_the_stop_timeout_after_the_database_went_silent(
    pg_target, outage, monkeypatch
):
    """A network that drops packets without a word: the quit's last writes (unregistering)
    waited for connections to give up, 40 s with the stop's 30, saying only "stopping". It
    ends as `worker start` does: the stop's timeout (1 s here) and 2 s after the quit began,
    the dialog having said why meanwhile; exit code 1 and the line saying what was left."""
    import asyncio
    from functools import partial

    from queuectl.tui import pool as tui_pool
    from queuectl.tui.app import QueueApp, _exit_code
    from queuectl.worker import WorkerPool

    monkeypatch.setattr(tui_pool, "WorkerPool", partial(WorkerPool, stop_timeout=1))
    queue = Queue(outage.url)
    app = QueueApp(queue, workers=1, refresh_interval=0.25)
    seen: list[str] = []

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.pool.started, "the app's workers to start")
            outage.hold()
            await pilot.press("q")
            # ("no answer for 1 s", or a connection's own error once one gives up)
            await _until(pilot, lambda: "The database is not answering (" in quitting_said(app),
                         "the dialog to say why", timeout=10)  # fmt: skip
            seen.append(quitting_said(app))
            await _until(pilot, lambda: app._exit, "the quit to end by itself", timeout=10)

    asyncio.run(scenario())
    # What it waits for, without a rescue of results there are none of (QA: it said "Waiting
    # for the workers to finish" and "worker lost" twice, with no job run).
    assert seen[0].startswith("Waiting for the workers to stop… The database is not answering (")
    assert "the workers wait for it for up to 30 s to unregister" in seen[0], seen[0]
    assert "Press ctrl+c to quit now" in seen[0] and "worker lost" not in seen[0], seen[0]
    assert _exit_code(app) == 1
    assert app.pool.unstored_said() == (
        "stopped without unregistering this app's workers (the database has not answered): "
        "they read as live until their lease runs out"
    )


def test_a_quit_while_the_workers_start_into_a_silent_network_says_so_and_ctrl_c_quits(
    pg_target, outage
):
    """The network goes silent as the app starts its workers (their registration waits for an
    answer): `q` waited for the start's statements to give up, saying nothing. The dialog says
    the database has not answered, and ctrl+c quits at once."""
    import asyncio

    from queuectl.tui.app import QueueApp, _exit_code

    queue = Queue(outage.url)
    queue.counts()  # (its connection made: the app's panes load, its workers' start waits)
    outage.hold()
    app = QueueApp(queue, workers=1, refresh_interval=0.25)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("q")
            await _until(pilot, lambda: "Press ctrl+c to quit now" in quitting_said(app),
                         "the dialog to say why, and the way out", timeout=10)  # fmt: skip
            assert "(no answer for" in quitting_said(app)
            await pilot.press("ctrl+c")
            await _until(pilot, lambda: app._exit, "the app to quit", timeout=5)

    asyncio.run(scenario())
    assert not app.pool.started and _exit_code(app) == 1
    assert app.pool.unstored_said().startswith("stopped while this app's workers were starting")


@pytest.mark.skipif(
    not os.environ.get("QUEUECTL_TEST_PG_RESTART"),
    reason="restarts the PostgreSQL cluster itself: opt in with QUEUECTL_TEST_PG_RESTART=1",
)
def test_a_real_server_restart_under_two_worker_processes(pg_target, workers, tmp_path):
    """The issue's own reproduction: 2 worker processes, a concurrent enqueuer, and
    `pg_ctlcluster 15 main restart`. Every job completes exactly once and no worker exits."""
    ledger = tmp_path / "ledger"
    queue = Queue(pg_target)
    queue.enqueue_many([JobSpec(command=f"sleep 0.2; echo {n} >> {ledger}") for n in range(20)])
    for name in ("a", "b"):
        workers.append(Worker(pg_target, tmp_path, name, "--count", "2"))
    wait_until(lambda: len(ledger_lines(ledger)) >= 4, 30, "the workers to get going")
    # Both connected before the server goes: a worker that cannot connect at its start exits
    # (the four lines above may all be the other worker's on a busy machine).
    wait_until(lambda: all(w.logged(STARTED) for w in workers), 30,
               lambda: "both workers to start: " + " | ".join(w.log() for w in workers))
    enqueued = []

    def enqueue_through_it() -> None:
        for n in range(20, 30):
            while True:
                try:
                    Queue(pg_target).enqueue(JobSpec(command=f"echo {n} >> {ledger}"))
                    enqueued.append(n)
                    break
                except Exception:  # the server is restarting: try again
                    threading.Event().wait(0.2)

    enqueuer = threading.Thread(target=enqueue_through_it)
    enqueuer.start()
    try:
        subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120)
    finally:
        enqueuer.join(120)
    queue = Queue(pg_target)
    wait_until(lambda: len(ledger_lines(ledger)) >= 30, 60,
               lambda: f"every job: {len(ledger_lines(ledger))} of 30, {queue.counts()}")
    assert sorted(map(int, ledger_lines(ledger))) == list(range(30))
    for worker in workers:
        assert worker.process.poll() is None, worker.log()
        assert worker.logged(UNREACHABLE) == 1 and worker.logged(BACK) == 1, worker.log()


def test_a_connection_cut_as_a_command_opens_the_queue_is_a_database_error(pg_target,
                                                                          monkeypatch):
    """QA: a server restart as `enqueue` opened the queue read "postgresql://… is not a usable
    database (the connection is closed)", the words for a wrong target."""
    import peewee

    from queuectl import QueueError, schema

    def cut(*args, **kwargs):
        raise peewee.OperationalError("the connection is closed")

    monkeypatch.setattr(schema, "ensure", cut)
    with pytest.raises(QueueError) as raised:
        Queue(pg_target)
    assert str(raised.value) == "database error: the connection is closed"


def test_psycopg_s_own_warnings_do_not_reach_a_command_s_stderr(pg_target):
    """QA: a connection cut mid-pipeline printed psycopg's "error ignored terminating
    <psycopg.Pipeline [BAD]>: …" (four lines) before the command's one `Error:` line."""
    done = subprocess.run(
        [sys.executable, "-c", "import logging, sys; from queuectl import Queue; "
         "Queue(sys.argv[1]).counts(); "
         "logging.getLogger('psycopg').warning('error ignored terminating <psycopg.Pipeline>')",
         pg_target], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")


def test_a_worker_suspended_past_the_fence_says_so_not_that_the_database_went_away(pg_target,
                                                                                   tmp_path):
    """QA: a worker stopped (SIGSTOP) past the fence's point logged "database unreachable (no
    answer for 18s)", then "reachable again", of a database that answered all along: an
    operator went looking at PostgreSQL. It says the process did not run; the runs it had are
    stopped all the same (other hosts may have taken them for lost meanwhile)."""
    import time

    queue = Queue(pg_target)
    pid_file = tmp_path / "pid"
    job = queue.enqueue(JobSpec(command=f"echo $$ >> {pid_file}; exec sleep 60"))
    # A lease of 8 s: the fence's point is 5 s of silence. With 3 s (2 s of silence), a
    # heartbeat late under load before the SIGSTOP (the suite beside a benchmark) fenced the
    # run first, rightly said an outage: "released ... outage", the test's flake.
    lease = 8.0
    frozen = WorkerProc(pg_target, 1, tmp_path, "frozen", False, "--lease", str(lease))
    try:
        worker_id = frozen.wait_ready()
        pid = _running_pid(pid_file)
        Worker = queue.models.WorkerProcess
        since = queue.clock()  # stopped just after a heartbeat landed: the silence is the stop's
        wait_until(lambda: Worker.get(Worker.id == worker_id).heartbeat_at > since, 30,
                   "a heartbeat")  # fmt: skip
        frozen.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_until(lambda: time.monotonic() > stopped + fence_after(lease) + 1, 30,
                       "the worker to stand still past the fence's point")  # fmt: skip
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        thawed = queue.clock()
        wait_until(lambda: "did not run for" in frozen.stderr(), 30, frozen.stderr)
        wait_until(lambda: not pid_alive(pid), 10, "its run to be stopped")
        wait_until(lambda: Worker.get(Worker.id == worker_id).heartbeat_at > thawed, 30,
                   "a heartbeat since")  # fmt: skip
        released = f"EVENT released {job.id} suspended"  # (not "outage": QA's second look)
        wait_until(lambda: released in frozen.lines, 30, lambda: f"{frozen.lines}")
        said = frozen.stderr()
        assert "killed 1 running job" in said, said
        assert UNREACHABLE not in said and BACK not in said, said
        assert "database is back" not in said, said
    finally:
        frozen.stop()
        queue.close()
