"""Fixtures for the TUI tests: seeded queues on a fixed clock (see scenes.py)."""

from __future__ import annotations

import pytest

from queuectl import Queue
from scenes import FixedClock, seed, seed_markup


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def seeded(db_path, fixed_clock):
    """A queue with jobs in every pane, on the fixed clock."""
    queue = Queue(db_path, clock=fixed_clock)
    seed(queue, fixed_clock)
    yield queue
    queue.close()


@pytest.fixture
def markup_queue(db_path, fixed_clock):
    queue = Queue(db_path, clock=fixed_clock)
    seed_markup(queue, fixed_clock)
    yield queue
    queue.close()


@pytest.fixture
def live_queue(db_path):
    """A queue on the real clock, for apps whose workers run jobs."""
    queue = Queue(db_path)
    yield queue
    queue.close()


@pytest.fixture
def workflows_queue(db_path, fixed_clock):
    """The seeded queue plus named queues, dependencies and schedules (scenes.seed_workflows)."""
    from scenes import seed_workflows

    queue = Queue(db_path, clock=fixed_clock)
    seed(queue, fixed_clock)
    seed_workflows(queue, fixed_clock)
    yield queue
    queue.close()


@pytest.fixture
def output_queue(db_path, fixed_clock):
    """The seeded queue, its running ``train-model`` having printed (scenes.seed_output)."""
    from scenes import seed_output

    queue = Queue(db_path, clock=fixed_clock)
    seed(queue, fixed_clock)
    seed_output(queue, fixed_clock)
    yield queue
    queue.close()
