"""Helpers every test folder shares: waiting on a condition with a deadline (never a fixed
sleep), finding or ending the processes a test started, a clock tests move by hand, and the
PostgreSQL server. Importable as ``support`` (pytest puts this folder on sys.path for its
conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from queuectl.procs import group_members  # noqa: F401  (the tests find a job's processes so)

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0,
               message: str | Callable[[], str] = "", *, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail at the deadline.
    ``message`` says what was awaited; a callable one is asked at the deadline (to show state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def process_state(pid: int) -> str | None:
    """The state letter /proc gives ``pid`` ("R", "S", "T", "Z"...), or None once it is gone.
    A process can vanish between opening its stat file and reading it (ESRCH): that is gone too."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    return process_state(pid) not in (None, "Z")


def warden_of(pid: int, timeout: float = 30.0) -> int:
    """The pid of the warden (queuectl.warden) that worker process ``pid`` started."""
    found: list[int] = []

    def look() -> bool:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    command = cmdline.read()
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and b"queuectl.warden" in command:
                found.append(int(entry.name))
                return True
        return False

    wait_until(look, timeout, f"the warden of worker process {pid}")
    return found[0]


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """End a process this test started: SIGTERM, then SIGKILL; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class FakeClock:
    """UTC epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WatchedClock(FakeClock):
    """A FakeClock that says which threads read it: a test moves the time on once a thread has
    read it (and, say, then waits for a lock)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        super().__init__(start)
        self.readers: list[str] = []

    def __call__(self) -> float:
        self.readers.append(threading.current_thread().name)
        return self.now


DEFAULT_PG_URL = "postgresql://queuectl:queuectl@127.0.0.1:5432/queuectl_test"
PG_PATIENCE_S = 30.0  # how long a server once reached may be slow or full before a test fails
_pg_reached: set[str] = set()  # the servers reached in this run


def _pg_connect(url: str, patient: bool, **options):
    """A psycopg connection to ``url``. ``patient``: a connection refused or timed out is tried
    again until PG_PATIENCE_S (a loaded machine, all connection slots taken for a moment by the
    processes of the test before), not taken for a missing server."""
    import psycopg

    deadline = time.monotonic() + PG_PATIENCE_S
    while True:
        try:
            return psycopg.connect(url, connect_timeout=10 if patient else 3, **options)
        except psycopg.OperationalError:
            if not patient or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def pg_server() -> str:
    """The PostgreSQL server for the tests: $QUEUECTL_TEST_PG_URL, else the one .ci/run sets up.
    Skips the test when none is reachable, except where $QUEUECTL_TEST_REQUIRE_PG is set (CI).
    Where a server is required or was reached before in this run, a failed connection is tried
    again for a while before it counts."""
    import pytest

    url = os.environ.get("QUEUECTL_TEST_PG_URL", DEFAULT_PG_URL)
    patient = bool(os.environ.get("QUEUECTL_TEST_REQUIRE_PG")) or url in _pg_reached
    try:
        _pg_connect(url, patient).close()
    except Exception as exc:  # any reason the server cannot be used
        reason = f"no PostgreSQL server at {url}: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("QUEUECTL_TEST_REQUIRE_PG"):
            pytest.fail(reason)
        pytest.skip(reason)
    _pg_reached.add(url)
    return url


@contextmanager
def pg_schema(url: str, prefix: str = "test") -> Iterator[str]:
    """A queue target in a new schema of the PostgreSQL database at ``url`` (a search_path in
    the URL), dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _pg_connect(url, True, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with _pg_connect(url, True, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def assert_a_job_runs_and_is_recorded(q) -> None:
    """On ``q`` (a fresh queue): a job enqueued, claimed and finished is recorded (enqueued,
    started, completed) and counted, as the schema's triggers do it."""
    from queuectl.executor import RunResult

    job = q.enqueue("true")
    worker = q.register_worker(1)
    q.finish(q.claim(worker), RunResult(0, None, "done"), worker)
    assert [e.event for e in q.history(job.id)] == ["enqueued", "started", "completed"]
    assert q.counts()["completed"] == 1 and q.counts()["processing"] == 0


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` (see the ``tiny_disk`` fixture); the file that did."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def quitting_said(app) -> str:
    """What the TUI's quitting dialog says (what it waits for, and its hint); "" where it is
    not shown."""
    from queuectl.tui.screens.confirm import StoppingScreen

    from textual.css.query import NoMatches

    screen = app.screen
    if not isinstance(screen, StoppingScreen):
        return ""
    try:
        return " ".join(str(screen.query_one(f"#{name}").render())
                        for name in ("waiting", "quit-hint"))  # fmt: skip
    except NoMatches:  # pushed, not yet composed
        return ""
