"""Shared fixtures: a queue on a fresh SQLite file, and a clock tests can move by hand."""

from __future__ import annotations

import pytest

from queuectl import Queue


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
