"""The outage log: one line when the database is lost, one when it is back, and a stale
connection failing just after the return is not a new outage."""

from __future__ import annotations

import logging
import threading

from queuectl.reconnect import Backoff, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [record.getMessage().split(" (")[0].split(" after")[0] for record in caplog.records]


def test_one_line_each_way_however_many_failures(caplog):
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            outage.failed(OSError("server closed the connection"))
            clock.now += 0.1
        assert outage.down
        outage.ok()
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]
    assert not outage.down


def test_a_stale_connection_failing_right_after_the_return_is_not_logged(caplog):
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock, settle=2.0)
    with caplog.at_level(logging.WARNING):
        outage.failed(OSError("terminating connection"))
        outage.ok()
        clock.now += 0.5
        outage.failed(OSError("terminating connection"))  # another thread's old connection
        assert outage.down
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]


def test_a_second_outage_soon_after_is_logged_once_it_lasts(caplog):
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock, settle=2.0)
    with caplog.at_level(logging.WARNING):
        outage.failed(OSError("gone"))
        outage.ok()
        clock.now += 0.5
        outage.failed(OSError("gone again"))
        clock.now += 2.5
        outage.failed(OSError("gone again"))
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"] * 2


def test_an_outage_known_to_have_begun_earlier_counts_from_then(caplog):
    """The fence says a database that stopped answering is lost: since the last heartbeat."""
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock)
    with caplog.at_level(logging.WARNING):
        outage.failed(TimeoutError("no answer for 12s"), since=clock.now - 12)
        clock.now += 3
        outage.ok()
    assert [r.getMessage() for r in caplog.records][-1] == "database reachable again after 15.0s"


def test_backoff_doubles_to_its_cap_and_resets():
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1


def test_a_full_disk_is_said_as_one_not_as_an_unreachable_database(caplog):
    """QA: a worker on a full disk logged "database unreachable (database or disk is full)"."""
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock)
    with caplog.at_level(logging.WARNING):
        outage.failed(OSError("database or disk is full"))
        clock.now += 4
        outage.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "database cannot be written (database or disk is full); retrying until there is room",
        "database writable again after 4.0s",
    ]


def test_a_write_lock_held_past_the_busy_timeout_is_said_in_words_and_timed_from_its_start(
        caplog):  # fmt: skip
    """QA: a worker behind another process's write lock logged "database unreachable (database
    is locked)" once its statement had waited 60 s, then "reachable again after 9.0s" of a
    lock held for 70 s. Said in words, and counted from the statement's start."""
    import peewee

    from queuectl.db import SQLITE_BUSY_TIMEOUT_S

    clock = Clock()
    clock.now = 1000.0
    outage = Outage(logging.getLogger("t"), clock)
    with caplog.at_level(logging.WARNING):
        outage.failed(peewee.OperationalError("database is locked"))
        assert outage.since == 1000.0 - SQLITE_BUSY_TIMEOUT_S
        clock.now += 10
        outage.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "database cannot be written (another process holds the database's write lock); "
        "retrying until it lets go",
        f"database writable again after {SQLITE_BUSY_TIMEOUT_S + 10:.1f}s",
    ]


def _on_a_thread(call) -> None:
    thread = threading.Thread(target=call)
    thread.start()
    thread.join(10)


def test_a_full_disk_is_over_once_each_thread_it_refused_has_written(caplog):
    """QA: a heartbeat found room where a job's result did not: the log said "writable again"
    while the result waited 11 s more, and its later failures went unsaid."""
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock)
    full = OSError("database or disk is full")
    with caplog.at_level(logging.WARNING):
        outage.failed(full)  # this thread's result
        clock.now += 3
        heartbeat = threading.Event()

        def beats() -> None:
            outage.failed(full)  # refused too
            outage.ok()  # ... then finds room; the result still waits
            assert outage.down and outage.said == "database or disk is full"
            assert lines(caplog) == ["database cannot be written"]
            heartbeat.set()

        _on_a_thread(beats)
        assert heartbeat.is_set()
        clock.now += 1
        outage.ok()  # the result
    assert lines(caplog) == ["database cannot be written", "database writable again"]
    assert not outage.down and outage.said == ""


def test_a_thread_that_ends_in_a_full_disk_is_not_waited_for(caplog):
    clock = Clock()
    outage = Outage(logging.getLogger("t"), clock)
    with caplog.at_level(logging.WARNING):

        _on_a_thread(lambda: outage.failed(OSError("database or disk is full")))
        # QA: a stopping worker's first read, as its refused threads ended, was taken for
        # the end; only a write shows there is room.
        outage.ok(wrote=False)
        assert outage.down and lines(caplog) == ["database cannot be written"]
        outage.ok()
    assert lines(caplog) == ["database cannot be written", "database writable again"]
