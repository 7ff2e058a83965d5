"""Worker processes living through the database going away, under the features of SPEC 6 and 7
(issue #18): a cancel asked for while a worker cannot reach the server, a schedule's due times
passing while no worker can fire them, a queue limit across the outage and the rescues that
follow it, three outages in a row, and a run rescued while its worker was cut off.

The database goes away as the workers see it. PostgreSQL: each worker reaches the server through
a proxy of its own (tests/backends/outage.py), and every proxy goes down at once (connections
cut, new ones refused); the test itself, and the CLI, reach the server directly. The server is
never touched. SQLite: another connection holds an exclusive lock on the file, so every write
waits (the workers' busy timeout) until it is released; reads go on.

The jobs write a ledger (``S n time`` as they start, ``E n time`` as they end, one short append
each): what ran, how often and when is read from it, not from what the workers say.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.outage import Outage
from queuectl import JobSpec, Queue
from support import alive, stop_process, wait_until

SCRIPT = Path(__file__).with_name("outage_worker.py")
UNREACHABLE = "database unreachable"
BACK = "database reachable again"
HOUR = 3600.0


class Worker:
    """A real worker process (outage_worker.py); its stdout and its log in files."""

    def __init__(self, target: str, folder: Path, name: str, threads: int, *options: str) -> None:
        self.name = name
        self.out_path, self.log_path = folder / f"{name}.out", folder / f"{name}.log"
        with open(self.out_path, "w") as out, open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), target, str(threads), *options],
                stdin=subprocess.DEVNULL, stdout=out, stderr=log, cwd=folder,
            )  # fmt: skip
        self.id = ""

    def ready(self) -> str:
        line = wait_until(
            lambda: next((x for x in self.out_path.read_text().splitlines()
                          if x.startswith("ready ")), None),  # fmt: skip
            30, lambda: f"{self.name} to start: {self.log()}",
        )
        self.id = line.split()[1]
        return self.id

    def log(self) -> str:
        return self.log_path.read_text()

    def logged(self, text: str) -> int:
        return self.log().count(text)


class Away:
    """Takes the database away from the workers. PostgreSQL: :meth:`link` gives each worker a
    proxy of its own, and :meth:`down` takes them all down. SQLite: :meth:`down` takes an
    exclusive lock on the file from another connection."""

    def __init__(self, target: str, folder: Path) -> None:
        self.target = target
        self.folder = folder
        self.postgres = target.startswith("postgresql")
        self.proxies: list[Outage] = []
        self.lock: sqlite3.Connection | None = None
        self.workers: list[Worker] = []

    def link(self) -> str:
        if not self.postgres:
            return self.target
        proxy = Outage(self.target)
        self.proxies.append(proxy)
        return proxy.url

    def worker(self, name: str, threads: int = 1, *options: str) -> Worker:
        worker = Worker(self.link(), self.folder, name, threads, *options)
        self.workers.append(worker)
        return worker

    def down(self) -> None:
        for proxy in self.proxies:
            proxy.down()
        if not self.postgres:
            self.lock = sqlite3.connect(self.target, timeout=30, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")

    def up(self) -> None:
        for proxy in self.proxies:
            proxy.up()
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None

    def noticed(self, count: int = 1) -> None:
        """Wait until every worker has logged the outage ``count`` times (PostgreSQL; on SQLite
        a worker only waits for the lock, and says nothing)."""
        if self.postgres:
            wait_until(lambda: all(w.logged(UNREACHABLE) >= count for w in self.workers), 30,
                       lambda: "the workers to notice: " + self.logs())  # fmt: skip

    def logs(self) -> str:
        return " | ".join(f"{w.name}: {w.log()}" for w in self.workers)

    def close(self) -> None:
        self.up()
        for worker in self.workers:
            stop_process(worker.process, timeout=20)
        for proxy in self.proxies:
            proxy.close()


@pytest.fixture
def away(target, tmp_path):
    taker = Away(target, tmp_path)
    Queue(target).close()  # the schema, before the workers race to create it
    yield taker
    taker.close()


@pytest.fixture
def pg_away(pg_target, tmp_path):
    taker = Away(pg_target, tmp_path)
    Queue(pg_target).close()
    yield taker
    taker.close()


# -- the ledger ---------------------------------------------------------------------------------


def ledger_job(ledger: Path, n: int, nap: float, **spec) -> JobSpec:
    command = (f'echo "S {n} $(date +%s.%N)" >> {ledger}; sleep {nap}; '
               f'echo "E {n} $(date +%s.%N)" >> {ledger}')  # fmt: skip
    return JobSpec(command=command, **spec)


def ledger_lines(ledger: Path, kind: str) -> list[tuple[int, float]]:
    if not ledger.exists():
        return []
    lines = [line.split() for line in ledger.read_text().splitlines()]
    return [(int(n), float(at)) for k, n, at in lines if k == kind]


def runs(ledger: Path) -> list[tuple[float, float]]:
    """Each run's (start, end), in the order they started; a run of a job that ran more than
    once is paired with the nearest end after its start."""
    starts = sorted(ledger_lines(ledger, "S"), key=lambda x: x[1])
    ends = ledger_lines(ledger, "E")
    pairs = []
    for n, start in starts:
        after = [at for m, at in ends if m == n and at >= start]
        pairs.append((start, min(after) if after else math.inf))
    return pairs


# -- the tests ----------------------------------------------------------------------------------


def test_the_same_worker_survives_three_outages_and_runs_every_job_once(away, tmp_path):
    ledger = tmp_path / "ledger"
    queue = Queue(away.target)
    total = 30
    queue.enqueue_many([ledger_job(ledger, n, 0.2, max_retries=2) for n in range(total)])
    worker = away.worker("w", 2)
    worker.ready()
    for round_ in range(1, 4):
        wait_until(lambda: len(ledger_lines(ledger, "E")) >= round_ * 8, 30,
                   lambda: f"progress before outage {round_}: {queue.counts()} {worker.log()}")
        away.down()
        # The runs under way end while the database is away: their results wait for the return.
        under_way = {n for n, _ in ledger_lines(ledger, "S")} - {
            n for n, _ in ledger_lines(ledger, "E")
        }
        wait_until(lambda: under_way <= {n for n, _ in ledger_lines(ledger, "E")}, 30,
                   "the runs under way to end meanwhile")
        away.noticed(round_)
        away.up()
        if away.postgres:
            wait_until(lambda: worker.logged(BACK) >= round_, 30,
                       lambda: f"the worker to say it is back: {worker.log()}")
    wait_until(lambda: queue.counts()["completed"] == total, 60,
               lambda: f"every job: {queue.counts()} {worker.log()}")
    started = sorted(n for n, _ in ledger_lines(ledger, "S"))
    assert started == list(range(total)), "a job ran twice or never"
    assert [job.attempts for job in queue.list_jobs(limit=total)] == [1] * total
    assert worker.process.poll() is None, worker.log()
    assert "Traceback" not in worker.log()
    if away.postgres:
        assert (worker.logged(UNREACHABLE), worker.logged(BACK)) == (3, 3), worker.log()
    # Its stop after the outages: its main thread's connection, unused since it started, was
    # cut in the first one; unregistering on it failed, and the worker read as live for a lease.
    worker.process.terminate()
    assert worker.process.wait(30) == 0, worker.log()
    assert "unregistering failed" not in worker.log(), worker.log()
    assert queue.live_workers() == [], "the worker is still registered"


def test_a_limit_of_one_holds_across_an_outage_and_the_rescues_after_it(away, tmp_path):
    """Two workers of two threads each, with a lease of 2 s, and an outage longer than that:
    once back, each finds the other silent past its lease. The jobs of queue `one` (limit 1)
    never run two at once, by the ledger, and none runs twice: a worker back from an outage
    gives the others a lease to beat again before it takes their jobs for lost (it rescued the
    job the other still ran, and claimed the next one beside it)."""
    ledger = tmp_path / "ledger"
    queue = Queue(away.target)
    queue.set_queue_limit("one", 1)
    total = 8
    queue.enqueue_many(
        [ledger_job(ledger, n, 0.4, queue="one", max_retries=5) for n in range(total)]
    )
    workers = [away.worker(name, 2, "--lease", "2") for name in ("a", "b")]
    for worker in workers:
        worker.ready()
    wait_until(lambda: len(ledger_lines(ledger, "E")) >= 2, 30, "the first runs")
    away.down()
    away.noticed()
    # Past the lease: the database, read directly, finds both workers silent too long.
    watcher = Queue(away.target, lease=2)
    rows = watcher.models.WorkerProcess
    wait_until(lambda: all(watcher.is_gone(w) for w in rows.select()), 30,
               "both workers silent past their lease")
    away.up()
    wait_until(lambda: queue.counts()["completed"] == total, 60,
               lambda: f"every job: {queue.counts()} {away.logs()}")
    wait_until(lambda: len(ledger_lines(ledger, "E")) >= len(ledger_lines(ledger, "S")), 30,
               "every run to end")
    spans = runs(ledger)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    assert not overlaps, f"queue `one` ran two jobs at once: {overlaps}\n{away.logs()}"
    # Each worker came back within a lease of the other: neither took the other's job for lost.
    started = sorted(n for n, _ in ledger_lines(ledger, "S"))
    assert started == list(range(total)), f"a job ran twice: {started}\n{away.logs()}"
    for worker in workers:
        assert worker.process.poll() is None and "Traceback" not in worker.log(), worker.log()


def test_a_due_time_passed_in_an_outage_fires_once_after_it(away, tmp_path):
    """Two workers on a clock the test moves (real time plus an offset). A schedule due every
    hour; while the database is away two due times pass. Once back, exactly one catch-up job
    (SPEC 7), whichever worker fires it; one more at the next due time; none twice."""
    offset_file = tmp_path / "offset"

    def set_clock(now: float) -> None:  # the workers' time becomes `now` (and goes on)
        staged = tmp_path / "offset.new"
        staged.write_text(repr(now - time.time()))
        os.replace(staged, offset_file)

    start = (math.floor(time.time() / HOUR) + 10) * HOUR + 10  # just after a whole hour
    set_clock(start)

    def clock() -> float:
        return time.time() + float(offset_file.read_text())

    queue = Queue(away.target, clock=clock)
    queue.add_schedule("hourly", "0 * * * *", JobSpec(command="true"))
    assert queue.get_schedule("hourly").next_due == start - 10 + HOUR
    workers = [away.worker(name, 1, "--clock", str(offset_file), "--lease", "1e6")
               for name in ("a", "b")]  # fmt: skip
    for worker in workers:
        worker.ready()
    Job = queue.models.Job
    WorkerRow = queue.models.WorkerProcess

    def fired() -> list[float]:
        return [j.created_at for j in Job.select().where(Job.schedule == "hourly")]

    def beaten_since(at: float) -> bool:
        """Every worker has heartbeated twice since ``at`` (its service thread went round)."""
        beats = [w.heartbeat_at for w in WorkerRow.select()]
        return len(beats) == 2 and all(beat >= at + 2 for beat in beats)

    now = clock()
    wait_until(lambda: beaten_since(now), 30, "the workers to go round")
    assert fired() == []
    away.down()
    away.noticed()
    set_clock(start + 2.5 * HOUR)  # the due times start + 1 h and + 2 h pass, unseen
    passed = clock()
    away.up()
    wait_until(lambda: fired(), 30, lambda: f"the catch-up job: {away.logs()}")
    now = clock()
    wait_until(lambda: beaten_since(now), 30, "the workers to go round again")
    assert len(fired()) == 1, f"one job for the times missed, not {len(fired())}"
    assert passed <= fired()[0]
    info = queue.get_schedule("hourly")
    assert info.next_due == start - 10 + 3 * HOUR
    set_clock(start + 3 * HOUR)  # the next due time: one more
    wait_until(lambda: len(fired()) == 2, 30, "the job of the next due time")
    now = clock()
    wait_until(lambda: beaten_since(now), 30, "the workers to go round again")
    assert len(fired()) == 2
    wait_until(lambda: queue.counts()["completed"] == 2, 30, "both jobs to run")
    for worker in workers:
        assert worker.process.poll() is None and "Traceback" not in worker.log(), worker.log()


@pytest.mark.postgres
def test_a_cancel_asked_for_while_its_worker_is_cut_off_takes_effect_once_it_is_back(
    pg_away, tmp_path
):
    """`queuectl cancel`, connected directly, records the request while the worker cannot read
    it; once the worker's link is back it stops the run: the job ends cancelled, once, and the
    CLI, which waited for that, prints its id."""
    began = tmp_path / "began"
    queue = Queue(pg_away.target)
    job = queue.enqueue(JobSpec(command=f"echo $$ > {began}.new; mv {began}.new {began}; "
                                        "exec sleep 60", max_retries=3))  # fmt: skip
    worker = pg_away.worker("w", 1)
    worker.ready()
    wait_until(began.exists, 30, "the job to start")
    pid = int(began.read_text())
    pg_away.down()
    pg_away.noticed()
    cancel = subprocess.Popen(
        [sys.executable, "-m", "queuectl", "--db", pg_away.target, "cancel", job.id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: queue.get(job.id).cancel_requested_at is not None, 30,
                   "the request to be recorded")
        assert queue.get(job.id).state == "processing"  # nobody could stop it yet
        pg_away.up()
        out, err = cancel.communicate(timeout=30)
    finally:
        stop_process(cancel)
    assert (cancel.returncode, out.strip(), err) == (0, job.id, "")
    assert not alive(pid), "the job's process outlived its cancel"
    stored = queue.get(job.id)
    assert (stored.state, stored.attempts) == ("cancelled", 1)
    events = [e.event for e in queue.history(job.id)]
    assert events.count("cancelled") == 1 and events.count("started") == 1, events
    wait_until(lambda: "Traceback" not in worker.log() and worker.logged(BACK), 30,
               lambda: worker.log())
    assert worker.process.poll() is None, worker.log()


@pytest.mark.postgres
def test_a_run_rescued_while_its_worker_was_cut_off_is_stopped_once_it_is_back(pg_away, tmp_path):
    """One worker's link is down past the lease: another process takes its job for lost, and a
    user cancels it meanwhile (so it ends `cancelled`, SPEC 6). Once the link is back the worker
    stops that run at once: left to run on, it ran after its cancel (or beside the job's next
    run, for a job retried), its result refused at the end anyway."""
    began = tmp_path / "began"
    queue = Queue(pg_away.target)
    job = queue.enqueue(JobSpec(command=f"echo $$ > {began}.new; mv {began}.new {began}; "
                                        "exec sleep 60", max_retries=3))  # fmt: skip
    worker = pg_away.worker("w", 1)
    worker.ready()
    wait_until(began.exists, 30, "the job to start")
    pid = int(began.read_text())
    pg_away.down()
    pg_away.noticed()
    queue.cancel([job.id])
    rescuer = Queue(pg_away.target, lease=1, host="another-host")  # silent past its lease there
    wait_until(lambda: rescuer.rescue_lost(), 30, "the rescue")
    stored = queue.get(job.id)
    assert (stored.state, stored.error) == ("cancelled", "worker lost")
    assert alive(pid)
    pg_away.up()
    wait_until(lambda: not alive(pid), 30, lambda: f"the run to be stopped: {worker.log()}")
    wait_until(lambda: worker.logged("its result is not stored"), 30, worker.log)
    assert queue.get(job.id).__data__ == stored.__data__, "the lost run's result was stored"
    assert worker.process.poll() is None and "Traceback" not in worker.log(), worker.log()


def test_a_stopping_worker_rides_out_an_outage_to_deliver_its_hooks_once(pg_away, tmp_path):
    """The database went away while a stopping worker waited for its last hook: its look for
    the hooks still due failed, so it killed the hook running, left its delivery to be run
    again by the next worker (the hook ran twice), and exited without unregistering. It now
    waits for the database (up to the stop timeout), as a result waiting to be stored does."""
    away, hooks = pg_away, tmp_path / "hooks"
    queue = Queue(away.target)
    queue.config_set("on-completed", f'echo "start $QUEUECTL_JOB_ID" >> {hooks}; sleep 1.5; '
                                     f'echo "end $QUEUECTL_JOB_ID" >> {hooks}')  # fmt: skip
    job = queue.enqueue("true")
    worker = away.worker("w")
    worker.ready()
    wait_until(lambda: hooks.exists() and "start" in hooks.read_text(), 30, "the hook to run")
    worker.process.terminate()  # a graceful stop: the hook is waited for
    away.down()
    wait_until(lambda: "end" in hooks.read_text(), 30, "the hook to end meanwhile")
    away.up()
    assert worker.process.wait(30) == 0, worker.log()
    assert hooks.read_text().split() == ["start", job.id, "end", job.id], "run once, whole"
    assert queue.deliveries() == [], "its delivery is left to run again"
    assert queue.live_workers() == [], worker.log()
    for failure in ("delivering hooks failed", "unregistering failed", "stopped with the worker"):
        assert failure not in worker.log(), worker.log()


def test_a_worker_stopped_while_the_database_is_away_unregisters_once_it_is_back(pg_away):
    """Stopped during an outage, an idle worker gave up unregistering at its first try and
    exited: other hosts' workers read it as live for a lease. It now waits for the database
    up to the stop timeout, as its results and hooks do."""
    queue = Queue(pg_away.target)
    worker = pg_away.worker("w")
    worker.ready()
    pg_away.down()
    worker.process.terminate()
    pg_away.noticed()  # its try to unregister found the database away
    assert worker.process.poll() is None, "it gave up at once: " + worker.log()
    pg_away.up()
    assert worker.process.wait(30) == 0, worker.log()
    assert queue.live_workers() == [] and "unregistering failed" not in worker.log()
