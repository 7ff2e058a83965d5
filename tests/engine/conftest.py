"""Fixtures the engine tests share."""

from __future__ import annotations

import pytest

from queuectl import Queue, WorkerPool


@pytest.fixture
def pools():
    """Start pools with ``pools(queue, **kwargs)``; every one is killed and joined afterwards."""
    started: list[WorkerPool] = []

    def start(queue: Queue, **kwargs) -> WorkerPool:
        pool = WorkerPool(queue, **kwargs)
        started.append(pool)
        return pool.start()

    yield start
    for pool in started:
        pool.kill()
    for pool in started:
        assert pool.join(30), "a pool did not stop"
