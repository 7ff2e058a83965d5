"""Shared fixtures: a queue on a fresh SQLite file, and a clock tests can move by hand."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from queuectl import Queue


def pytest_configure(config: pytest.Config) -> None:
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


class FakeClock:
    """UTC epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
# $QUEUECTL_TEST_PG_URL, else the one .ci/run sets up; with no server reachable the PostgreSQL
# tests skip with the reason, except where $QUEUECTL_TEST_REQUIRE_PG is set (CI), where they fail.

DEFAULT_PG_URL = "postgresql://queuectl:queuectl@127.0.0.1:5432/queuectl_test"


def _pg_server() -> str:
    url = os.environ.get("QUEUECTL_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # any reason the server cannot be used
        reason = f"no PostgreSQL server at {url}: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("QUEUECTL_TEST_REQUIRE_PG"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def pg_target():
    """The URL of an empty queue on PostgreSQL."""
    import psycopg

    url = _pg_server()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
