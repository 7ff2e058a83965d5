"""An idle SQLite worker's service thread is woken by the kernel when the database's files are
written (queuectl.watch.SqliteFileEvents): by other processes' commits, not by its own (its
heartbeat, every second), which it says it made (``wrote``)."""

from __future__ import annotations

import time

import pytest

from queuectl import Queue
from queuectl.watch import SqliteFileEvents


@pytest.fixture
def watched(db_path):
    mine, other = Queue(db_path), Queue(db_path)
    changes = mine.change_detector()
    if not isinstance(changes, SqliteFileEvents):
        mine.close()
        other.close()
        pytest.skip("no inotify here")
    changes.wait(0)  # the first look only learns where data_version is
    yield mine, other, changes
    changes.close()
    mine.close()
    other.close()


def test_its_own_commit_is_no_change_and_costs_no_polls(watched, monkeypatch):
    mine, _, changes = watched
    worker = mine.register_worker(1)
    mine.heartbeat(worker, 1)  # writes the -wal file: an event for the watch
    changes.wrote()
    polls = []
    asked = changes.changed
    monkeypatch.setattr(changes, "changed", lambda: polls.append(1) or asked())
    assert not changes.wait(0.05)
    assert len(polls) <= 2  # not settle_polls of them


def test_another_process_commit_still_wakes_at_once(watched):
    mine, other, changes = watched
    mine.heartbeat(mine.register_worker(1), 1)
    changes.wrote()
    other.enqueue("true")
    started = time.monotonic()
    assert changes.wait(5.0)
    assert time.monotonic() - started < 2.0  # the event, not a poll at the end of the wait


def test_a_commit_seen_as_it_says_it_wrote_is_reported_next(watched):
    mine, other, changes = watched
    other.enqueue("true")  # committed before our own write: its event is read by wrote()
    mine.heartbeat(mine.register_worker(1), 1)
    changes.wrote()
    assert changes.wait(0)  # reported, though its event was dropped
    assert not changes.wait(0.05)
