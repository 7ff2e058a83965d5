"""Living through the database going away: how long to wait between tries, and telling the
operator once that it is gone and once that it is back, not on every failed try.

Every long-lived user of the database (a pool's worker threads and service thread, the TUI's
loader, ``logs -f``) catches the database's errors, calls :meth:`Queue.recover` so that a
broken connection is replaced on the next try, reports to an :class:`Outage`, and waits a
:class:`Backoff` step. The waits are short and capped, so a worker is working again within
about a second of the server's return, without a busy loop while it is gone.
"""

from __future__ import annotations

import logging
import threading
import time

FIRST_RETRY_S = 0.1
MAX_RETRY_S = 1.0


class Backoff:
    """Waits that double from ``first`` up to ``cap`` seconds; :meth:`reset` after a success."""

    def __init__(self, first: float = FIRST_RETRY_S, cap: float = MAX_RETRY_S) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


def _timer(delay: float, call) -> None:  # noqa: ANN001
    timer = threading.Timer(max(delay, 0.0), call)
    timer.daemon = True
    timer.start()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Outage:
    """Whether the database is reachable, as seen by one process's threads. Logs one line when
    it is lost and one when it is back; ``since`` is when it was lost (None while it is up).

    Each thread's connection learns of a restart only when it is next used: an idle thread
    fails once on its old connection, seconds after the database is back, and its next try,
    on a new one, gets through. So a failure is an outage once failures have gone on for
    ``confirm`` seconds (the next tries' backoff is shorter); one within ``settle`` seconds of
    the last return, only if the database is still unreachable ``settle`` seconds later. The
    line comes then even if nothing fails again meanwhile (``later`` calls back: a timer)."""

    def __init__(self, log: logging.Logger, clock=time.monotonic, settle: float = 2.0,  # noqa: ANN001
                 confirm: float = 0.5, later=None) -> None:  # noqa: ANN001  # fmt: skip
        self.log = log
        self.clock = clock
        self.settle = settle
        self.confirm = confirm
        self.later = later or _timer
        self.since: float | None = None
        self.reason = ""
        self._back_at = float("-inf")
        self._logged = False
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, since: float | None = None) -> bool:
        """Report a failed use of the database; True if it logged that the database is lost.
        ``since``: when it was lost, where the caller knows better than now (the clock's time:
        a statement that had no answer since then)."""
        now = self.clock()
        with self._lock:
            if self.since is None:
                self.since = now if since is None else min(since, now)
                self.reason = first_line(exc)
                self._logged = False
                since = self.since
                self.later(self._lost_at(since) - now, lambda: self._confirm(since))
            if self._logged or now < self._lost_at(self.since):
                return False
            self._logged = True
        self._say_lost()
        return True

    def _lost_at(self, since: float) -> float:
        """When failures from ``since`` on make an outage."""
        if since < self._back_at + self.settle:
            return since + max(self.confirm, self.settle)
        return since + self.confirm

    def _confirm(self, since: float) -> None:
        """``later``: the outage that began at ``since``, if it still goes on, is said now."""
        with self._lock:
            if self.since != since or self._logged:
                return
            self._logged = True
        self._say_lost()

    def _say_lost(self) -> None:
        self.log.warning("database unreachable (%s); retrying until it is back", self.reason)

    def ok(self) -> bool:
        """Report a successful use; True if it logged that the database is back. Cheap when up."""
        if self.since is None:
            return False
        with self._lock:
            if self.since is None:
                return False
            lost_for = self.clock() - self.since
            logged, self.since = self._logged, None
            self._back_at = self.clock()
        if logged:
            self.log.warning("database reachable again after %.1fs", lost_for)
        return logged
