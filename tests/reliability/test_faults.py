"""Fault injection with real processes: SIGKILL mid-transaction and mid-finish, a foreign write
lock, a broken or read-only database, an unwritable data directory, jobs that leave daemons or
ignore SIGTERM, and a hundred worker threads at once. Every wait has a deadline; every process
a test starts is ended in a finally block or a fixture.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue, QueueError, WorkerPool
from queuectl.cli import cli
from queuectl.executor import Execution, RunResult
from support import alive, fill, wait_until, warden_of

CHILD = str(Path(__file__).with_name("child.py"))
ROOT = str(Path(__file__).resolve().parents[2])


class Child:
    """``child.py ACTION ARGS`` in its own process group; lines of its stdout read with a
    deadline."""

    def __init__(self, *args: str, prefix: list[str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [*(prefix or []), sys.executable, CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The first line starting with ``prefix``; fails at the deadline or if the child ends."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    stderr = self.process.stderr.read() if self.process.poll() is not None else ""
                    raise AssertionError(
                        f"no line {prefix!r} from child (got {self.lines}); "
                        f"stderr: {stderr[-2000:]}"
                    )
                self._new.wait(min(remaining, 0.5))

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)
        self._reader.join(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def children():
    """Start children with ``children(*args)``; all of them are killed at the end of the test."""
    started: list[Child] = []

    def start(*args: str, prefix: list[str] | None = None) -> Child:
        child = Child(*args, prefix=prefix)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def integrity_ok(path: str) -> bool:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        connection.close()


# -- SIGKILL in the middle of things ---------------------------------------------------------


def test_sigkill_during_a_10000_job_enqueue_is_all_or_nothing(tmp_path, children):
    """Killed at random moments of one enqueue_many of 10,000 jobs: every time, the queue holds
    0 or 10,000 of them, and the file is intact and usable."""
    rng = random.Random(20261128)
    # One full run first: how long the enqueue takes here, so the kills land inside it.
    path = str(tmp_path / "calibrate.db")
    child = children("enqueue_many", path, "10000")
    child.expect("ready")
    started = time.monotonic()
    child.expect("done", timeout=60)
    duration = time.monotonic() - started
    assert Queue(path).counts()["pending"] == 10_000
    outcomes = []
    for run in range(4):
        path = str(tmp_path / f"run{run}.db")
        child = children("enqueue_many", path, "10000")
        child.expect("ready")
        moment = rng.uniform(0, duration * 1.1)
        try:
            child.process.wait(moment)  # the child's own deadline: the kill comes at `moment`
        except subprocess.TimeoutExpired:
            pass
        child.kill()
        count = sum(Queue(path).counts().values())
        assert count in (0, 10_000), f"run {run}: killed at {moment:.3f}s, {count} jobs stored"
        assert integrity_ok(path)
        Queue(path).enqueue("true")  # still usable after the crash


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6, 0.95])
def test_sigkill_inside_the_enqueue_transaction_leaves_nothing(tmp_path, children, fraction):
    """The same, with the kill landing for sure inside the transaction: SQLite's progress
    handler kills the process when ``fraction`` of the call's work is done."""
    path = str(tmp_path / "queue.db")
    child = children("enqueue_many_killed_inside", path, "10000", str(fraction))
    assert child.wait(60) == -signal.SIGKILL
    assert "done" not in child.lines
    assert sum(Queue(path).counts().values()) == 0
    assert integrity_ok(path)
    assert Queue(path).enqueue("true").state == "pending"  # usable after the crash


def test_worker_killed_between_job_end_and_result_is_rescued(tmp_path, children):
    """A worker process dies (SIGKILL) after its job ran and before the result is stored: the job
    is not lost; another process's rescue_lost treats it as a failed run ("worker lost"), and
    it then runs to completion."""
    path = str(tmp_path / "queue.db")
    queue = Queue(path)
    job = queue.enqueue("echo ran-once")
    child = children("die_in_finish", path)
    assert child.expect("ran ") == f"ran {job.id} ran-once"
    assert child.wait(30) == -signal.SIGKILL
    stuck = queue.get(job.id)
    assert (stuck.state, stuck.attempts) == ("processing", 1)
    rescued = queue.rescue_lost()  # same host, its pid is gone: no need to wait for the lease
    assert [r.id for r in rescued] == [job.id]
    failed = queue.get(job.id)
    assert (failed.state, failed.error, failed.attempts) == ("failed", "worker lost", 1)
    later = Queue(path, clock=lambda: failed.run_at + 1)
    worker = later.register_worker(1)
    claimed = later.claim(worker)
    assert claimed.id == job.id
    later.finish(claimed, Execution(claimed.command, timeout=10).run(), worker)
    done = queue.get(job.id)
    assert (done.state, done.attempts, done.output) == ("completed", 2, "ran-once\n")


def test_a_killed_workers_running_job_is_stopped_before_it_runs_again(tmp_path, children):
    """SIGKILL of a worker process can't take its job's process group (its own session) down
    with it. When the job is rescued, what is left of that run is killed: otherwise the retry
    would run while the first run goes on — the same job twice at once."""
    path = str(tmp_path / "queue.db")
    pidfile = tmp_path / "pids"
    queue = Queue(path)
    job = queue.enqueue(f"sleep 60 & echo $! >> {pidfile}; echo $$ >> {pidfile}; wait")
    worker = children("run_worker", path)
    worker.expect("worker ")
    wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 30,
               "the job started")
    pids = [int(p) for p in pidfile.read_text().split()]
    try:
        # Its warden would kill them at once (see the CLI's test of it): here it is gone first,
        # as where /proc cannot tell, so that the rescuer's own kill is what is tested.
        os.kill(warden_of(worker.process.pid), signal.SIGKILL)
        worker.kill()  # the worker process only: the job is in a session of its own
        assert all(alive(pid) for pid in pids), "the job should outlive its worker"
        assert [r.id for r in queue.rescue_lost()] == [job.id]
        wait_until(lambda: not any(alive(pid) for pid in pids), 30,
                   "the lost run's processes were killed")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- another process holds the write lock ---------------------------------------------------


def test_operations_wait_for_a_foreign_write_lock_and_succeed(tmp_path, children):
    """Another process holds SQLite's write lock (BEGIN IMMEDIATE) for seconds: enqueue, claim,
    finish, rescue, config and opening a new Queue all wait for it and then succeed; nobody
    sees "database is locked"."""
    path = str(tmp_path / "queue.db")
    queue = Queue(path)
    worker = queue.register_worker(4)
    queue.enqueue_many([JobSpec(command="a", id="a"), JobSpec(command="b", id="b")])
    held = queue.claim(worker)
    locker = children("hold_write_lock", path)
    locker.expect("locked")
    results: dict[str, object] = {}

    def attempt(name, call):
        try:
            results[name] = ("ok", call())
        except Exception as exc:  # reported below
            results[name] = ("error", f"{type(exc).__name__}: {exc}")

    calls = {
        "enqueue": lambda: queue.enqueue(JobSpec(command="c", id="c")).id,
        "claim": lambda: queue.claim(worker).id,
        "finish": lambda: queue.finish(held, RunResult(0, None, "ok"), worker).state,
        "config_set": lambda: queue.config_set("max-retries", 5),
        "rescue_lost": lambda: queue.rescue_lost(),
        "new queue": lambda: Queue(path).counts()["pending"] >= 0,
    }
    threads = [threading.Thread(target=attempt, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    threads[0].join(2.0)  # a deadline, not a sleep: they must all still be waiting
    assert all(thread.is_alive() for thread in threads[:4]), f"did not wait: {results}"
    locker.send("go")
    locker.expect("released")
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {
        "enqueue": ("ok", "c"),
        "claim": ("ok", "b"),
        "finish": ("ok", "completed"),
        "config_set": ("ok", 5),
        "rescue_lost": ("ok", []),
        "new queue": ("ok", True),
    }


# -- a broken, read-only or unreachable database ---------------------------------------------


def test_garbage_database_file_is_a_clear_queue_error(tmp_path):
    good = str(tmp_path / "good.db")
    queue = Queue(good)
    queue.enqueue_many([JobSpec(command="x" * 200) for _ in range(200)])
    queue.close()
    data = Path(good).read_bytes()
    rng = random.Random(7)
    cases = {
        "random bytes": rng.randbytes(10_000),
        "text": b"hello, I am not a database\n" * 100,
        "truncated": data[:5000],
        "pages scrambled": data[:4096] + rng.randbytes(len(data) - 4096),
        "empty header": b"SQLite format 3\x00" + bytes(200),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.db"
        path.write_bytes(content)
        before = path.read_bytes()
        with pytest.raises(QueueError) as caught:
            queue = Queue(str(path))
            queue.counts()
            queue.enqueue("true")
        message = str(caught.value)
        assert "\n" not in message and str(path) in message, (name, message)
        assert path.read_bytes() == before, f"{name}: the file was changed"


def test_a_schema_of_bytes_that_are_not_utf8_is_a_clear_queue_error(tmp_path):
    """QA: SQLite's message about such damage quotes the bytes, and Python could not decode it:
    every command printed a UnicodeDecodeError's traceback."""
    path = str(tmp_path / "damaged.db")
    Queue(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute(
        "UPDATE sqlite_master SET sql = 'CREATE TRIGGER \"job_count_delete\" AFTER DELETE ON "
        "\"job\" BEGIN ' || CAST(x'edaaed' AS TEXT) || ' END' WHERE name = 'job_count_delete'"
    )
    raw.commit()
    raw.close()
    with pytest.raises(QueueError, match="malformed database schema .it is not valid UTF-8"):
        Queue(path)
    result = CliRunner().invoke(cli, ["--db", path, "status"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output


@pytest.fixture
def unprivileged():
    """A command prefix that runs a child as root *without* the capabilities that let root
    ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER), so that a
    read-only file or folder is read-only to it. Not root at all: no prefix is needed."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv(1) is missing: permissions can't be tested")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder, "probe")
        probe.write_text("x")
        probe.chmod(0o400)
        done = subprocess.run(
            [*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'a')"],
            capture_output=True,
            timeout=30,
        )
    if done.returncode == 0:
        pytest.skip("root's capabilities can't be dropped here (setpriv had no effect)")
    return prefix


def open_as(prefix, children, path: str, action: str) -> str:
    child = children("open_queue", path, action, prefix=prefix)
    assert child.wait(60) == 0
    return child.expect("")


@pytest.mark.parametrize("folder_writable", [True, False])
def test_read_only_database_is_a_clear_queue_error(tmp_path, children, unprivileged,
                                                   folder_writable):
    """chmod 0400 (with its folder writable or not): opening works or fails cleanly, writing
    fails with one QueueError line; unreadable (0000): QueueError; the data is untouched."""
    path = tmp_path / "queue.db"
    queue = Queue(str(path))
    queue.enqueue("true")
    queue.close()
    if not folder_writable:
        tmp_path.chmod(0o500)  # no -wal/-shm can be created next to it either
    path.chmod(0o400)
    try:
        line = open_as(unprivileged, children, str(path), "open")
        assert line == "ok" or line.startswith("QueueError: "), line
        line = open_as(unprivileged, children, str(path), "write")
        assert line.startswith("QueueError: ") and str(path) in line, line
        path.chmod(0o000)
        line = open_as(unprivileged, children, str(path), "open")
        assert line.startswith("QueueError: ") and "permission denied" in line.lower(), line
    finally:
        tmp_path.chmod(0o700)
        path.chmod(0o600)
    assert sum(Queue(str(path)).counts().values()) == 1


def test_a_writable_database_in_a_read_only_folder_says_the_folder(tmp_path, children,
                                                                    unprivileged):
    """QA: the file writable, its folder not, no -wal/-shm beside it yet: "… is not a usable
    SQLite database (attempt to write a readonly database)". The file is fine: say the folder."""
    path = tmp_path / "queue.db"
    queue = Queue(str(path))
    queue.enqueue("true")
    queue.close()  # (the last connection's close removes the -wal and -shm files)
    assert not (tmp_path / "queue.db-wal").exists()
    tmp_path.chmod(0o500)
    try:
        line = open_as(unprivileged, children, str(path), "open")
        assert line == (f"QueueError: cannot write in {tmp_path} (SQLite keeps its -wal and -shm "
                        "files beside the database): permission denied"), line
    finally:
        tmp_path.chmod(0o700)
    assert sum(Queue(str(path)).counts().values()) == 1


@pytest.mark.parametrize("end", ["-wal", "-shm"])
def test_a_wal_or_shm_file_of_another_user_is_named_not_the_database(tmp_path, children,
                                                                     unprivileged, end):
    """QA: "… is not a usable SQLite database (unable to open database file)", which invites
    deleting a file that is fine: name the file that cannot be written."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user takes root")
    path = tmp_path / "queue.db"
    queue = Queue(str(path))
    queue.enqueue("true")
    queue.close()
    for other in ("-wal", "-shm"):
        Path(f"{path}{other}").touch(0o600)
    os.chown(f"{path}{end}", 54321, 54321)
    line = open_as(unprivileged, children, str(path), "open")
    assert line == f"QueueError: cannot write {path}{end} (SQLite's {end[1:]} file of the " \
                   "database): permission denied", line  # fmt: skip
    os.chown(f"{path}{end}", os.getuid(), os.getgid())
    assert sum(Queue(str(path)).counts().values()) == 1


def test_a_file_of_a_file_system_without_blocks_is_not_called_a_full_disk():
    """QA: `--db /proc/version` said "the disk is full": /proc has no blocks to be full of."""
    with pytest.raises(QueueError) as caught:
        Queue("/proc/version")
    assert "full" not in str(caught.value) and "/proc/version" in str(caught.value)


def test_database_errors_never_escape_as_raw_driver_errors(tmp_path):
    """Whatever the database refuses (here: a connection that may not write), the engine raises
    QueueError or a peewee error — what the CLI turns into one "Error:" line — never the
    driver's own sqlite3 exception, which would reach the user as a traceback. (Disk full,
    a read-only file, an I/O error: here, an authorizer that denies every write.)"""
    import peewee

    queue = Queue(str(tmp_path / "queue.db"))
    worker = queue.register_worker(1)
    queue.enqueue(JobSpec(command="true", id="held"))
    held = queue.claim(worker)
    writes = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}

    def refuse_writes(action, *args):
        return sqlite3.SQLITE_DENY if action in writes else sqlite3.SQLITE_OK

    queue.db.connection().set_authorizer(refuse_writes)
    operations = {
        "enqueue": lambda: queue.enqueue("true"),
        "enqueue_many": lambda: queue.enqueue_many([JobSpec(command="a"), JobSpec(command="b")]),
        "finish": lambda: queue.finish(held, RunResult(0, None, ""), worker),
        "release": lambda: queue.release(held, worker),
        "config_set": lambda: queue.config_set("max-retries", 1),
        "register_worker": lambda: queue.register_worker(1),
    }
    for name, operation in operations.items():
        with pytest.raises((QueueError, peewee.PeeweeException)) as caught:
            operation()
        assert not isinstance(caught.value, sqlite3.Error), name


def test_unwritable_data_directory_is_a_clear_queue_error(tmp_path, children, unprivileged):
    """The folder of a new queue can't be written (or created): one QueueError line."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        for path in (locked / "queue.db", locked / "sub" / "queue.db"):
            line = open_as(unprivileged, children, str(path), "write")
            assert line.startswith("QueueError: ") and str(path.parent) in line, line
            assert not path.exists()
    finally:
        locked.chmod(0o700)


def test_a_full_disk_is_a_clear_error_and_nothing_half_written(tiny_disk):
    """With the disk full, a write fails with the real reason ("database or disk is full") as a
    QueueError or peewee error (one CLI line), nothing of the batch is stored, reading still
    works, and once there is room again the queue carries on."""
    import peewee

    path = str(tiny_disk / "queue.db")
    queue = Queue(path)
    queue.enqueue(JobSpec(command="true", id="before"))
    filler = fill(tiny_disk)
    for _ in range(3):
        with pytest.raises((QueueError, peewee.PeeweeException)) as caught:
            queue.enqueue_many([JobSpec(command="x" * 2000) for _ in range(50)])
        assert "full" in str(caught.value), f"the reason is lost: {caught.value!r}"
    assert queue.counts()["pending"] == 1 and queue.get("before").state == "pending"
    result = CliRunner().invoke(cli, ["--db", path, "enqueue", "x" * 100_000])
    assert result.exit_code == 1 and result.stderr.startswith("Error:"), result.output
    assert "full" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    filler.unlink()
    queue.enqueue_many([JobSpec(command="x" * 2000) for _ in range(50)])
    assert queue.counts()["pending"] == 51
    assert integrity_ok(path)


def test_opening_a_queue_on_a_full_disk_says_the_disk_is_full(tiny_disk):
    """Opening the file needs room for its WAL index: on a full disk SQLite says "disk I/O
    error", and every command called the queue "not a usable SQLite database". The file is fine
    (a user could have deleted it for that): say what is wrong, and carry on once there is room."""
    path = str(tiny_disk / "queue.db")
    queue = Queue(path)
    queue.enqueue(JobSpec(command="true", id="kept"))
    queue.close()
    link = tiny_disk / "link.db"
    link.symlink_to(tiny_disk / "target.db")
    filler = fill(tiny_disk)
    result = CliRunner().invoke(cli, ["--db", path, "list"])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "disk is full" in result.stderr and "not a usable" not in result.stderr, result.stderr
    new = str(tiny_disk / "new.db")  # a new queue: not even its schema fits
    result = CliRunner().invoke(cli, ["--db", new, "enqueue", "true"])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "disk is full" in result.stderr and "not a usable" not in result.stderr, result.stderr
    assert not os.path.exists(new), "an empty file left behind"
    result = CliRunner().invoke(cli, ["--db", str(link), "enqueue", "true"])  # made where it points
    assert result.exit_code == 1 and "disk is full" in result.stderr, result.stderr
    assert link.is_symlink() and not (tiny_disk / "target.db").exists(), "the link, not the file"
    assert not list(tiny_disk.glob("*.new"))
    filler.unlink()
    result = CliRunner().invoke(cli, ["--db", path, "list"])
    assert result.exit_code == 0 and "kept" in result.stdout, result.output


def _failures_seen(pool: WorkerPool) -> list[BaseException]:
    """The database failures ``pool`` takes for an outage (and retries through), as they come."""
    seen: list[BaseException] = []
    failed = pool.outage.failed

    def spy(exc: BaseException, *args: object, **kwargs: object) -> bool:
        seen.append(exc)
        return failed(exc, *args, **kwargs)  # type: ignore[arg-type]

    pool.outage.failed = spy  # type: ignore[method-assign]
    return seen


def _in(function: str, exc: BaseException) -> bool:
    import traceback

    return any(frame.name == function for frame in traceback.extract_tb(exc.__traceback__))


def _result_refused(queue: Queue, job, gate: Path, disk: Path, seen: list) -> Path:
    """Once ``job`` (which waits for ``gate``) runs: ``disk`` filled, the job let end, and its
    result's store refused (``seen``: see _failures_seen). Returns the file that fills it."""
    wait_until(lambda: queue.get(job.id).state == "processing", 30, "the job to start")
    # The WAL emptied first: a write refused for a full disk has the WAL copied into the file
    # and written again from its start (SqliteQueueDatabase.make_room), where a long WAL has
    # room for the result without a byte more of disk.
    queue.db.execute_sql("PRAGMA main.wal_checkpoint(TRUNCATE)")
    filler = fill(disk)
    gate.touch()
    wait_until(lambda: any(_in("_store", exc) for exc in seen), 30, "its result to fail")
    return filler


def test_a_worker_claims_through_a_full_disk_and_goes_on_once_there_is_room(tiny_disk):
    """A claim's commit failed as its row was fetched, with a bare sqlite3 error: the worker's
    threads died of it (`worker start` then exited 0) and the job waited for good. Now it is an
    outage: retried, logged once, and the job runs once there is room again."""
    queue = Queue(str(tiny_disk / "queue.db"))
    job = queue.enqueue(JobSpec(command="true", delay=1.5))
    pool = WorkerPool(queue, 1)
    seen = _failures_seen(pool)
    pool.start()
    try:
        # The WAL emptied first, as in _result_refused: a refusal cuts it back to nothing,
        # and the room it gave made the claim go through (1 in 5 runs).
        queue.db.execute_sql("PRAGMA main.wal_checkpoint(TRUNCATE)")
        filler = fill(tiny_disk)
        wait_until(lambda: any(_in("_next_job", exc) for exc in seen), 30, "a claim to fail")
        assert "full" in str(seen[0]), seen[0]
        filler.unlink()
        wait_until(lambda: queue.get(job.id).state == "completed", 30, "the job to run")
        assert queue.get(job.id).attempts == 1
    finally:
        pool.stop()
        pool.join(60)  # its threads gone: left running, they wrote in the next test's log


def test_a_result_stored_through_a_full_disk_is_the_runs_own(tiny_disk, tmp_path):
    """The commit of a finished run's result failed with a bare sqlite3 error: the worker took
    it for a failure of the job itself, stored that ("worker error: OperationalError"), and ran
    the job again. Now the result waits for room, and the job ran once, completed. Its run time
    is the run's own: its finished_at was the time the result was stored (a 2 s job read 21 s
    in `show` and `stats` after an outage), and is now when it ended."""
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    queue = Queue(str(tiny_disk / "queue.db"))
    job = queue.enqueue(JobSpec(
        command=f"while [ ! -e {gate} ]; do sleep 0.02; done; echo ran >> {ledger}; echo done",
        max_retries=3,
    ))  # fmt: skip
    pool = WorkerPool(queue, 1)
    seen = _failures_seen(pool)
    pool.start()
    try:
        filler = _result_refused(queue, job, gate, tiny_disk, seen)
        ended_by = time.time()  # the run had ended: its result was being stored
        # Three failed tries: the store waited 0.1 + 0.2 s of backoff at least.
        wait_until(lambda: sum(_in("_store", exc) for exc in seen) >= 3, 30, "three tries")
        filler.unlink()
        wait_until(lambda: queue.get(job.id).state == "completed", 30, "its result stored")
        done = queue.get(job.id)
        assert (done.attempts, done.exit_code, done.output) == (1, 0, "done\n")
        assert ledger.read_text() == "ran\n"
        assert done.started_at <= done.finished_at <= ended_by, "finished when it was stored"
        assert done.updated_at >= done.finished_at + 0.3, "stored when it ended: no outage?"
        runs = queue.stats(3600).queues["default"]
        assert runs.run_max <= ended_by - done.started_at, "stats took the outage for run time"
    finally:
        pool.stop()
        pool.join(60)  # its threads gone: left running, they wrote in the next test's log


def test_a_full_disk_is_not_said_writable_again_while_a_result_waits(tiny_disk, tmp_path, caplog):
    """QA: with room for a heartbeat but not for a job's result, the heartbeat's success was
    logged "database writable again" while the result waited on, its failures unsaid."""
    caplog.set_level(logging.WARNING, logger="queuectl")
    gate = tmp_path / "gate"
    queue = Queue(str(tiny_disk / "queue.db"))
    job = queue.enqueue(f"while [ ! -e {gate} ]; do sleep 0.02; done; "
                        "head -c 300000 /dev/zero | tr '\\0' x")  # fmt: skip
    pool = WorkerPool(queue, 1)
    seen = _failures_seen(pool)
    writes: list[str] = []  # the threads whose use of the database went through, in order
    ok = pool.outage.ok
    pool.outage.ok = lambda wrote=True: (  # type: ignore[method-assign]
        writes.append(threading.current_thread().name) or ok(wrote))
    pool.start()
    try:
        wait_until(lambda: queue.get(job.id).state == "processing", 30, "the job to start")
        filler = fill(tiny_disk)
        os.truncate(filler, filler.stat().st_size - 96 * 1024)  # room for a heartbeat only
        gate.touch()
        wait_until(lambda: any(_in("_store", exc) for exc in seen), 30, "its result to fail")
        count = len(writes)
        wait_until(lambda: "queuectl-service" in writes[count:], 30, "a heartbeat to land")
        said = [r.getMessage() for r in caplog.records]
        assert not any("writable again" in line for line in said), said
        assert pool.outage.said == "database or disk is full"
        filler.unlink()
        wait_until(lambda: queue.get(job.id).state == "completed", 30, "its result stored")
        wait_until(lambda: any("writable again" in r.getMessage() for r in caplog.records), 30)
    finally:
        pool.stop()


def test_a_stop_that_gives_up_on_a_full_disk_says_it_cannot_write(tiny_disk, tmp_path, caplog):
    """QA: "result not stored: the database is still unreachable 4s after the stop", of a
    database that answered all along and had no room."""
    caplog.set_level(logging.WARNING, logger="queuectl")
    gate = tmp_path / "gate"
    queue = Queue(str(tiny_disk / "queue.db"))
    job = queue.enqueue(f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done")
    pool = WorkerPool(queue, 1, stop_timeout=0.5)
    seen = _failures_seen(pool)
    pool.start()
    try:
        filler = _result_refused(queue, job, gate, tiny_disk, seen)
        pool.stop()
        assert pool.join(30)
        said = [r.getMessage() for r in caplog.records]
        assert any(f"job {job.id}: result not stored: the database still cannot be written"
                   in line for line in said), said  # fmt: skip
        filler.unlink()
    finally:
        pool.stop()
        pool.join(60)  # its threads gone: left running, they wrote in the next test's log


# -- jobs that misbehave ---------------------------------------------------------------------


def test_a_job_that_leaves_a_daemon_holding_stdout_returns_promptly(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    command = f"sleep 60 & echo $! > {pidfile}; echo started"
    started = time.monotonic()
    result = Execution(command, timeout=120).run()
    elapsed = time.monotonic() - started
    try:
        assert result.ok and result.output == "started\n"
        assert elapsed < 20, f"the run waited {elapsed:.1f}s for the daemon"  # not its 60 s
    finally:
        daemon = int(pidfile.read_text())
        try:
            os.kill(daemon, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_job_ignoring_sigterm_past_its_timeout_is_killed(tmp_path):
    """The job and a child of it both ignore SIGTERM; at the timeout the whole group gets
    SIGTERM, then SIGKILL after the grace: the run ends, nothing of it survives."""
    pidfile = tmp_path / "pids"
    command = (
        f"trap '' TERM; echo $$ >> {pidfile}; "
        f"sh -c \"trap '' TERM; echo \\$\\$ >> {pidfile}; sleep 60\" & wait; sleep 60"
    )
    started = time.monotonic()
    result = Execution(command, timeout=1.5).run()  # time for both shells to write their pid
    elapsed = time.monotonic() - started
    pids = [int(p) for p in pidfile.read_text().split()]
    try:
        assert not result.ok and "timed out" in result.error
        assert elapsed < 20, f"took {elapsed:.1f}s"  # not the 60 s it sleeps
        wait_until(lambda: not any(alive(pid) for pid in pids), 30, "the job's processes died")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- surprises inside a worker ----------------------------------------------------------------


def test_a_bad_stored_config_value_does_not_stop_the_queue(tmp_path):
    """A config value that is no longer valid (written by hand, or by a version with other
    bounds) must not break every job run: the default is used instead."""
    path = str(tmp_path / "queue.db")
    queue = Queue(path)
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            'INSERT INTO "config" ("key", "value") VALUES (?, ?)',
            [("job-timeout", "1" + "0" * 400), ("max-retries", "lots"), ("backoff-base", "nan")],
        )
    connection.close()
    assert queue.config().items() >= {"max-retries": 3, "backoff-base": 2, "job-timeout": 300}.items()
    queue.enqueue(JobSpec(command="true", id="ok"))
    queue.enqueue(JobSpec(command="false", id="fails"))
    pool = WorkerPool(queue, 1).start()
    try:
        wait_until(lambda: queue.get("ok").state == "completed", 30, "the good job completed")
        wait_until(lambda: queue.get("fails").state == "failed", 30, "the bad job failed")
    finally:
        pool.stop()
        assert pool.join(30)


def test_an_unexpected_error_running_a_job_fails_it_and_the_thread_goes_on(tmp_path,
                                                                           monkeypatch):
    """Anything a worker thread did not expect while running a job (here: timeout_for raising)
    fails that job with the error, instead of killing the thread and leaving the job
    'processing' under a live worker forever (never rescued)."""
    path = str(tmp_path / "queue.db")
    queue = Queue(path)
    queue.config_set("max-retries", 0)
    original = Queue.timeout_for

    def timeout_for(self, job):
        if job.id == "unlucky":
            raise RuntimeError("surprise")
        return original(self, job)

    monkeypatch.setattr(Queue, "timeout_for", timeout_for)
    queue.enqueue(JobSpec(command="true", id="unlucky", priority=1))
    queue.enqueue(JobSpec(command="true", id="next"))
    pool = WorkerPool(queue, 1).start()
    try:
        wait_until(lambda: queue.get("next").state == "completed", 30, "the next job ran")
        unlucky = queue.get("unlucky")
        assert unlucky.state == "dead" and "surprise" in unlucky.error, unlucky.to_dict()
    finally:
        pool.stop()
        assert pool.join(30)


# -- many threads at once ------------------------------------------------------------------


def test_100_worker_threads_on_one_sqlite_file_run_500_jobs_once_each(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="queuectl")
    path = str(tmp_path / "queue.db")
    log = tmp_path / "ran.log"
    queue = Queue(path)
    ids = [f"job{n:03d}" for n in range(500)]
    queue.enqueue_many([JobSpec(command=f"echo {i} >> {log}", id=i) for i in ids])
    pool = WorkerPool(queue, 100).start()
    try:
        wait_until(queue.drained, 120, "500 jobs done by 100 threads")
    finally:
        pool.stop()
        assert pool.join(60), "worker threads did not stop"
    jobs = {job.id: job for job in Queue(path).list_jobs()}
    assert {job.state for job in jobs.values()} == {"completed"}
    assert {job.attempts for job in jobs.values()} == {1}
    assert sorted(log.read_text().split()) == ids, "a job ran twice, or not at all"
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], problems


def test_a_queue_on_a_read_only_file_system_says_so(tiny_disk):
    """QA: a queue on a file system mounted read-only was "cannot write …: permission denied"."""
    path = str(tiny_disk / "queue.db")
    queue = Queue(path)
    queue.enqueue("true")
    queue.close()
    done = subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot remount it read-only: {done.stderr.strip()}")
    result = CliRunner().invoke(cli, ["--db", path, "status"])
    assert result.stderr == f"Error: cannot write {path}: read-only file system\n"
    assert result.exit_code == 1
