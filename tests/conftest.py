"""Shared fixtures: a queue on a fresh SQLite file, and a clock tests can move by hand."""

from __future__ import annotations

import compileall
import importlib.util
import signal
import subprocess

import pytest

from queuectl import Queue
from support import FakeClock, pg_schema, pg_server


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once a run: not again in each test process
        _compile_for_the_processes_started()
    _default_signals()


def _compile_for_the_processes_started() -> None:
    """Bytecode for the `queuectl` processes the tests start, as `pip install .` writes it for a
    user. Where PYTHONDONTWRITEBYTECODE is set (as on this project's machines), nothing else
    writes it for a checkout, and each of the ~2,000 processes a run starts compiled the modules
    it imports again. Up to date, this only compares the files' times; where the package cannot
    be written to, it writes nothing."""
    for package in ("queuectl", "queuectl.tui"):  # (two folders in a checkout)
        spec = importlib.util.find_spec(package)  # found, not imported (the TUI's is heavy)
        for folder in spec.submodule_search_locations if spec else ():
            compileall.compile_dir(folder, quiet=2)


def _default_signals() -> None:
    """The tests run with the signals Python itself sets up, whatever started them.

    Some CI runners start their commands with signals blocked, `nohup` ignores SIGHUP, and a shell
    without job control starts `cmd &` with SIGINT and SIGQUIT ignored. Every process the tests
    start would inherit that: helper workers that SIGTERM cannot stop, jobs that report ignored
    signals. The tests that check what queuectl does with such signals set them up themselves."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
                   signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        if signal.getsignal(signum) == signal.SIG_IGN:
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, default)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    """The path of a queue database that does not exist yet."""
    return str(tmp_path / "queue.db")


@pytest.fixture
def queue(db_path):
    q = Queue(db_path)
    yield q
    q.close()


@pytest.fixture
def clocked_queue(db_path, clock):
    """A queue whose time is the fake ``clock``."""
    q = Queue(db_path, clock=clock)
    yield q
    q.close()


# -- PostgreSQL ------------------------------------------------------------------------------
# Each test gets its own schema (a search_path in the URL), dropped afterwards. The server is
# support.pg_server's: with none reachable the PostgreSQL tests skip with the reason, except
# where $QUEUECTL_TEST_REQUIRE_PG is set (CI), where they fail.


@pytest.fixture
def pg_target():
    """The URL of an empty queue on PostgreSQL."""
    with pg_schema(pg_server()) as target:
        yield target


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """An empty queue's target on each backend: the tests that take it run on both."""
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    return request.getfixturevalue("pg_target")


@pytest.fixture
def any_queue(target, clock):
    """A queue on the fake ``clock``, once on each backend (SQLite, PostgreSQL)."""
    q = Queue(target, clock=clock)
    yield q
    q.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs of our own (needs root with CAP_SYS_ADMIN; skipped otherwise)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True, text=True, timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)
