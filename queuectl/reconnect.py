"""Living through the database going away: how long to wait between tries, and telling the
operator once that it is gone and once that it is back, not on every failed try.

Every long-lived user of the database (a pool's worker threads and service thread, the TUI's
loader, ``logs -f``) catches the database's errors, calls :meth:`Queue.recover` so that a
broken connection is replaced on the next try, reports to an :class:`Outage`, and waits a
:class:`Backoff` step. The waits are short and capped, so a worker is working again within
about a second of the server's return, without a busy loop while it is gone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

FIRST_RETRY_S = 0.1
MAX_RETRY_S = 1.0
# PostgreSQL: a read unanswered this long is said (`logs -f`, the TUI's panes and its `l`): a
# server that does not answer, or a network that drops packets, holds a read until its
# connection gives up (15 s and more), and what was read before was shown as if live.
NO_ANSWER_SAID_S = 5.0
NO_ANSWER = "no answer for"  # the words that say it, with the seconds (see no_answer)
DISK_FULL = "disk is full"  # SQLite's "database or disk is full"
LOCKED = "database is locked"  # SQLite's, once a write waited out its busy timeout (60 s)
HELD = "another process holds the database's write lock"  # LOCKED, as users are told it
# SQLite's SQLITE_CORRUPT and SQLITE_NOTADB: the file itself is damaged, not away. Waiting does
# not mend it (QA: a worker retried a result's store on it for ever, deaf to SIGTERM).
DAMAGED = (
    "database disk image is malformed", "malformed database schema", "file is not a database",
)  # fmt: skip


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` says that an SQLite database file is damaged."""
    return any(words in str(exc) for words in DAMAGED)


def no_answer(seconds: float) -> str:
    """How a wait for an answer is said, everywhere: "no answer for 12s"."""
    return f"{NO_ANSWER} {seconds:.0f}s"


class ReadUnderWay:
    """The read one thread has under way, for another thread to tell how long it has waited
    for an answer (`logs -f`, the TUI's `l`: see NO_ANSWER_SAID_S)."""

    def __init__(self) -> None:
        self.since: float | None = None  # (monotonic) when it began; None between reads

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        self.since = time.monotonic()
        try:
            yield
        finally:
            self.since = None

    def unanswered_for(self) -> float | None:
        """Seconds the read under way has waited, once that is NO_ANSWER_SAID_S or more;
        else None (no read, or a quick one so far)."""
        since = self.since
        if since is None:
            return None
        waited = time.monotonic() - since
        return waited if waited >= NO_ANSWER_SAID_S else None


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


def start_waits(exc: BaseException) -> str | None:
    """Why a start (`worker start`, the TUI's pool) that failed with ``exc`` is to be tried
    again, in words; None where waiting does not help. A full disk and another process's write
    lock are waited out, as a running worker waits them out (QA: `worker start` exited 1 on
    either, and the TUI's pool never started)."""
    text = str(exc)
    if DISK_FULL in text:
        return first_line(exc)
    if LOCKED in text:
        return HELD
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def in_words(exc: BaseException) -> str:
    """:func:`first_line`, as users are told it: never SQLite's "database is locked" (SPEC 2)."""
    said = first_line(exc)
    return HELD if said == LOCKED else said


class Outage:
    """Whether the database is reachable, as seen by one process's threads. Logs one line when
    it is lost and one when it is back; ``since`` is when it was lost (None while it is up).

    Each thread's connection learns of a restart only when it is next used, so right after the
    database is back another thread can still fail once on its old connection. A failure within
    ``settle`` seconds of the return is taken as that: it is logged only if the database is
    still unreachable ``settle`` seconds later (a real second outage).

    A full disk is over once a write goes through and no thread still waits on one it
    refused: a small write (a heartbeat) may find room where a job's result does not (QA:
    "writable again" while a result waited 11 s more, unsaid), and a read proves nothing (QA:
    a stopping worker's first read, as its refused threads ended). A thread that succeeds, or
    ends, waits no longer."""

    def __init__(self, log: logging.Logger, clock=time.monotonic, settle: float = 2.0) -> None:  # noqa: ANN001
        self.log = log
        self.clock = clock
        self.settle = settle
        self.since: float | None = None
        self.reason = ""
        self._back_at = float("-inf")
        self._logged = False
        self._refused: set[int] = set()  # disk full: the threads whose writes it refused
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.since is not None

    @property
    def back_at(self) -> float:
        """When the database was last seen back (the clock's time; -inf if never lost)."""
        return self._back_at

    @property
    def said(self) -> str:
        """Why the database is lost, once that was logged ("" while up or not yet said)."""
        with self._lock:
            return self.reason if self.since is not None and self._logged else ""

    def failed(self, exc: BaseException, since: float | None = None, waits: bool = True) -> bool:
        """Report a failed use of the database; True if it logged that the database is lost.
        ``since``: when it was lost, where the caller knows better than now (the clock's time:
        a statement that had no answer since then). ``waits`` False: the calling thread does
        not try its write again until it goes through (a running job's output so far, skipped
        while the database is lost): a full disk is not held open for it (QA: a TUI said "disk
        full" for good after its job's output was refused once, and `worker start` said
        "writable again" only as it stopped)."""
        # (QA: "database unreachable (database is locked)")
        now, reason = self.clock(), in_words(exc)
        if reason == HELD:  # SQLite's "locked", once the statement waited out its busy timeout
            from .db import SQLITE_BUSY_TIMEOUT_S

            since = now - SQLITE_BUSY_TIMEOUT_S if since is None else since  # held since then
        with self._lock:
            if self.since is None:
                self.since = now if since is None else min(since, now)
                self.reason = reason
                self._logged = False
            if DISK_FULL in reason and waits:
                self._refused.add(threading.get_ident())
            if self._logged or (self.since < self._back_at + self.settle
                                and now < self.since + self.settle):
                return False
            self._logged = True
        if self.full:  # it answers, it cannot write: not "unreachable" (QA)
            self.log.warning("database cannot be written (%s); retrying until there is room",
                             self.reason)  # fmt: skip
        elif self.reason == HELD:
            self.log.warning("database cannot be written (%s); retrying until it lets go",
                             self.reason)  # fmt: skip
        else:
            self.log.warning("database unreachable (%s); retrying until it is back", self.reason)
        return True

    @property
    def full(self) -> bool:
        """Whether the database answers but cannot be written (a full disk)."""
        return DISK_FULL in self.reason

    @property
    def unwritable(self) -> bool:
        """Whether the database answers but cannot be written: a full disk, or another
        process's write lock held past the busy timeout."""
        return self.full or self.reason == HELD

    def ok(self, wrote: bool = True) -> bool:
        """Report a successful use (``wrote``: one that wrote); True if it logged that the
        database is back. Cheap when up."""
        if self.since is None:
            return False
        with self._lock:
            if self.since is None:
                return False
            if self.full:
                self._refused.discard(threading.get_ident())
                self._refused.intersection_update(t.ident for t in threading.enumerate())
                if self._refused or not wrote:
                    return False
            lost_for = self.clock() - self.since
            logged, self.since = self._logged, None
            self._back_at = self.clock()
        if logged:
            self.log.warning("database %s again after %.1fs",
                             "writable" if self.unwritable else "reachable", lost_for)  # fmt: skip
        return logged
