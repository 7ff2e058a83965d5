"""The outage log: one line when the database is lost, one when it is back, and a stale
connection failing just after the return is not a new outage."""

from __future__ import annotations

import logging

from queuectl.reconnect import Backoff, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.calls: list[tuple[float, object]] = []  # (when, what) an Outage asked for later

    def __call__(self) -> float:
        return self.now

    def later(self, delay: float, call) -> None:
        self.calls.append((self.now + delay, call))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [call for when, call in self.calls if when <= self.now]
        self.calls = [(when, call) for when, call in self.calls if when > self.now]
        for call in due:
            call()


def outage_of(clock: Clock) -> Outage:
    return Outage(logging.getLogger("t"), clock, settle=2.0, later=clock.later)


def lines(caplog) -> list[str]:
    return [record.getMessage().split(" (")[0].split(" after")[0] for record in caplog.records]


def test_one_line_each_way_however_many_failures(caplog):
    clock = Clock()
    outage = outage_of(clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            outage.failed(OSError("server closed the connection"))
            clock.advance(0.1)
        assert outage.down
        outage.ok()
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]
    assert not outage.down


def lasting(outage: Outage, clock: Clock, seconds: float, why: str = "gone") -> None:
    """Failures every 0.1 s for ``seconds``."""
    end = clock.now + seconds
    while clock.now < end:
        outage.failed(OSError(why))
        clock.advance(0.1)


def test_a_stale_connection_failing_right_after_the_return_is_not_logged(caplog):
    clock = Clock()
    outage = outage_of(clock)
    with caplog.at_level(logging.WARNING):
        lasting(outage, clock, 1.0, "terminating connection")
        outage.ok()
        clock.advance(0.5)
        outage.failed(OSError("terminating connection"))  # another thread's old connection
        assert outage.down
        clock.advance(1.0)
        outage.failed(OSError("terminating connection"))  # a third's, a second later
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]


def test_an_idle_thread_s_stale_connection_long_after_the_return_is_not_an_outage(caplog):
    """QA: each idle thread found its connection broken seconds after an outage had ended, and
    logged "unreachable", then "reachable again after 0.1s": its next try got through."""
    clock = Clock()
    outage = outage_of(clock)
    with caplog.at_level(logging.WARNING):
        lasting(outage, clock, 3.0)
        outage.ok()
        for _ in range(4):  # the idle threads, one by one
            clock.advance(3.0)
            outage.failed(OSError("server closed the connection unexpectedly"))
            clock.advance(0.1)
            outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]


def test_a_second_outage_soon_after_is_logged_once_it_lasts(caplog):
    clock = Clock()
    outage = outage_of(clock)
    with caplog.at_level(logging.WARNING):
        lasting(outage, clock, 1.0)
        outage.ok()
        clock.advance(0.5)
        outage.failed(OSError("gone again"))
        clock.advance(2.5)
        outage.failed(OSError("gone again"))
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"] * 2


def test_one_failure_is_said_once_it_lasts_though_nothing_fails_again(caplog):
    """A stop during an outage tried the database once, then waited on its hooks: its one
    failure must still be said, once the confirming wait has passed."""
    clock = Clock()
    outage = outage_of(clock)
    with caplog.at_level(logging.WARNING):
        outage.failed(OSError("gone"))
        clock.advance(0.4)
        assert lines(caplog) == []
        clock.advance(0.2)
        assert lines(caplog) == ["database unreachable"]
        outage.ok()
    assert lines(caplog) == ["database unreachable", "database reachable again"]


def test_backoff_doubles_to_its_cap_and_resets():
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1
