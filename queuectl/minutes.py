"""Stats over a window without reading each of its runs again (SQLite, schema 14; issue #17).

`stats` gives exact percentiles (SPEC 8), so it needs every run time and wait of its window: an
hour of a busy queue is 100,000 runs, ~80 ms to fetch into Python one row at a time, the same
on a file of that hour alone as on one of 10 million jobs. A minute that is over does not
change, so its events are read once and kept as a summary per queue (``stats_minute``): what
its runs led to, and their run times and waits themselves, sorted, packed as 8-byte floats. A
later `stats` reads the summaries of the whole minutes in its window and the rows of the rest
(the part of a minute it starts in, and the last GRACE_S seconds and more), and merges them:
the same figures, to the bit, as reading every row.

Which minutes the summaries hold is one row (``stats_cover``): every event of the minutes in
[first, until) whose id is at most ``upto`` (the largest id when they were made). An event
written since (a larger id) into a minute already summarised, e.g. by a writer whose clock
was read before it waited for the lock, is found by its id the next time, and its minute made
again. A purge (the only statement that deletes events) moves ``first`` past the minutes it
deleted from and bumps ``generation``, in its own transaction (:func:`forget`); a `stats` that
read the summaries before it stores nothing.

The summaries are written by whoever reads stats (`queuectl stats`, the TUI's top bar), in
a short transaction of its own after its reading; where it cannot write (a read-only file, a
lock held too long), the figures are still exact, from the rows. PostgreSQL computes its
percentiles in the server (percentile_cont) and keeps no summaries.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from array import array
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import peewee

from .db import SQLITE_BUSY_STEP_MS
from .models import STATS_EVENTS
from .outcomes import FINAL_ENDS, RUN_ENDS

log = logging.getLogger(__name__)

SUMMARY_TABLE = "stats_minute"
COVER_TABLE = "stats_cover"
TABLES = (SUMMARY_TABLE, COVER_TABLE)
MINUTE_S = 60
# A minute is summarised once it ended this long ago: its events are all written by then, but
# for a writer that read its clock and then waited (found by id, see above).
GRACE_S = 15.0
# A window with fewer whole minutes than this is read row by row (and stores nothing).
MIN_MINUTES = 5
STORE_WAIT_MS = 100  # how long the summaries' transaction waits for another's write lock
_OTHER = len(RUN_ENDS)  # the code of an event that ends no run (released, started, ...)
_FINAL_CODES = frozenset(RUN_ENDS.index(name) for name in FINAL_ENDS)
_CODED = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(RUN_ENDS))
_WITHOUT_RUN = "finished without a run"


def create_sql() -> list[str]:
    """The two tables, empty (SQLite)."""
    return [
        f'CREATE TABLE IF NOT EXISTS "{SUMMARY_TABLE}" ("minute" INTEGER NOT NULL, '
        '"queue" VARCHAR(64) NOT NULL, "counts" TEXT NOT NULL, "run_times" BLOB NOT NULL, '
        '"waits" BLOB NOT NULL, PRIMARY KEY ("minute", "queue")) WITHOUT ROWID',
        f'CREATE TABLE IF NOT EXISTS "{COVER_TABLE}" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"first" INTEGER NOT NULL, "until" INTEGER NOT NULL, "upto" INTEGER NOT NULL, '
        '"generation" INTEGER NOT NULL)',
        f'INSERT OR IGNORE INTO "{COVER_TABLE}" VALUES (1, 0, 0, 0, 0)',
    ]


class Runs:
    """One queue's runs over some time, as stats counts them: ``ends[i]`` runs that ended with
    RUN_ENDS[i], jobs that reached a final state without a run, run times, waits. A minute's,
    as summarised and stored, or a window's, put together from minutes and rows."""

    __slots__ = ("ends", "without_run", "run_times", "waits")

    def __init__(self) -> None:
        self.ends = [0] * (_OTHER + 1)
        self.without_run = 0
        self.run_times: list[float] = []
        self.waits: list[float] = []

    def add(self, other: Runs) -> None:
        for code, n in enumerate(other.ends):
            self.ends[code] += n
        self.without_run += other.without_run
        self.run_times += other.run_times
        self.waits += other.waits

    def add_row(self, counts: str, run_times: bytes, waits: bytes) -> None:
        """A stored summary's (see :meth:`row`)."""
        for name, n in json.loads(counts).items():
            if name == _WITHOUT_RUN:
                self.without_run += n
            else:
                self.ends[RUN_ENDS.index(name)] += n
        self.run_times += _unpack(run_times)
        self.waits += _unpack(waits)

    def row(self) -> tuple[str, bytes, bytes]:
        """As stored: counts (JSON), sorted run times and waits (little-endian doubles)."""
        counts = {name: n for name, n in zip(RUN_ENDS, self.ends) if n}
        if self.without_run:
            counts[_WITHOUT_RUN] = self.without_run
        return json.dumps(counts), _pack(self.run_times), _pack(self.waits)

    def result(self) -> tuple[dict[str, int], int, float | None, list[float], list[float]]:
        """Runs by end event, jobs finished, the longest run, run times and waits sorted."""
        runs = {name: self.ends[i] for i, name in enumerate(RUN_ENDS) if self.ends[i]}
        finished = sum(self.ends[i] for i in _FINAL_CODES) + self.without_run
        run_times = sorted(self.run_times)  # timsort merges the summaries' sorted runs
        return runs, finished, run_times[-1] if run_times else None, run_times, sorted(self.waits)


def _pack(values: list[float]) -> bytes:
    packed = array("d", sorted(values))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack(blob: bytes) -> array[float]:
    values = array("d")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def minute_of(at: float) -> int:
    """The minute ``at`` is in, as the range tests on "at" (``at >= m * 60``) place it."""
    minute = int(at // MINUTE_S)
    if at < minute * MINUTE_S:
        minute -= 1
    elif at >= (minute + 1) * MINUTE_S:
        minute += 1
    return minute


class Minutes:
    """The window stats reads, on one SQLite connection: ``write`` is its write transaction."""

    def __init__(self, db: peewee.Database, write: Callable[[], AbstractContextManager[object]]):
        self.db = db
        self._write = write

    def window(self, start: float, now: float, queue: str | None) -> dict[str, Runs]:
        """Per queue, the events from ``start`` on (``queue``: that one only)."""
        first_whole = math.ceil(start / MINUTE_S)
        closed = minute_of(now - GRACE_S)  # the minutes before it are over
        if closed - first_whole < MIN_MINUTES:
            figures: dict[str, Runs] = {}
            self._rows(start, None, queue, figures)
            return figures
        return self._summarised(start, first_whole, closed, queue)

    def _summarised(
        self, start: float, first_whole: int, closed: int, queue: str | None
    ) -> dict[str, Runs]:
        figures: dict[str, Runs] = {}
        made: dict[int, dict[str, Runs]] = {}  # the minutes summarised now, every queue's
        built: list[tuple[int, int]] = []  # and their ranges
        with self.db.atomic():  # one snapshot: the cover, the summaries and the rows agree
            first, until, upto, generation = self._cover_row()
            (newest,) = self.db.execute_sql(
                'SELECT COALESCE(MAX("id"), 0) FROM "job_event"'
            ).fetchone()
            late = self._late(first, until, upto) if until > first else set()
            # The window's whole minutes the summaries hold (but the late ones), and the rest
            # of them, summarised now.
            low, high = max(first, first_whole), min(until, closed)
            if low >= high:
                low = high = first_whole
            self._spans(first_whole, low, made, built)
            self._spans(high, closed, made, built)
            for minute in sorted(late):
                if low <= minute < high:
                    self._spans(minute, minute + 1, made, built)
            self._stored(low, high, queue, late, figures)
            # The rest of the window: the part of the minute it starts in, and from `closed` on.
            self._rows(start, first_whole * MINUTE_S, queue, figures)
            self._rows(closed * MINUTE_S, None, queue, figures)
        for spans in made.values():
            for name, span in spans.items():
                if queue is None or name == queue:
                    _of(figures, name).add(span)
        cover = _cover(first, until, first_whole, closed, late)
        self._store((first, until, upto, generation), cover, newest, made, built)
        return figures

    def _cover_row(self) -> tuple[int, int, int, int]:
        """(first, until, upto, generation); nothing covered where the row is missing."""
        row = self.db.execute_sql(
            f'SELECT "first", "until", "upto", "generation" FROM "{COVER_TABLE}"'
        ).fetchone()
        return (0, 0, 0, 0) if row is None else tuple(row)  # type: ignore[return-value]

    def _late(self, first: int, until: int, upto: int) -> set[int]:
        """The covered minutes that events written after the summaries (ids above ``upto``)
        fall in: a rowid range, the events since the last look."""
        rows = self.db.execute_sql(
            # NOT INDEXED: by rowid (the ids since), never by "at" (every event of the cover).
            'SELECT DISTINCT "at" FROM "job_event" NOT INDEXED WHERE "id" > ? AND "at" < ? '
            f'AND "at" >= ? AND {STATS_EVENTS}',
            (upto, until * MINUTE_S, first * MINUTE_S),
        )
        return {minute_of(at) for (at,) in rows}

    def _events(self, low: float, high: float | None, queue: str | None) -> Any:
        where, params = ['"at" >= ?'], [low]
        if high is not None:
            where.append('"at" < ?')
            params.append(high)
        if queue is not None:
            where.append('"queue" = ?')
            params.append(queue)
        return self.db.execute_sql(
            f'SELECT "queue", CASE "event" {_CODED} ELSE {_OTHER} END, "duration", "waited", "at" '
            f'FROM "job_event" INDEXED BY "job_event_window" WHERE {" AND ".join(where)} '
            f'AND {STATS_EVENTS} ORDER BY "at"',
            params,
        )

    def _rows(self, low: float, high: float | None, queue: str | None,
              figures: dict[str, Runs]) -> None:  # fmt: skip
        """The events from ``low`` to ``high`` (None: on), added to ``figures`` row by row."""
        if high is None or high > low:
            _add_rows(self._events(low, high, queue), {0: figures}, None)

    def _spans(self, low: int, high: int, made: dict[int, dict[str, Runs]],
               built: list[tuple[int, int]]) -> None:  # fmt: skip
        """The events of the minutes from ``low`` to ``high`` (every queue's), Runs per queue
        and minute, into ``made``; the range into ``built`` (a minute without events has no
        entry in ``made``, and none in the table)."""
        if high <= low:
            return
        built.append((low, high))
        _add_rows(self._events(low * MINUTE_S, high * MINUTE_S, None), made, low)

    def _stored(self, low: int, high: int, queue: str | None, late: set[int],
                figures: dict[str, Runs]) -> None:  # fmt: skip
        if high <= low:
            return
        where, params = '"minute" >= ? AND "minute" < ?', [low, high]
        if queue is not None:
            where += ' AND "queue" = ?'
            params.append(queue)
        rows = self.db.execute_sql(
            f'SELECT "minute", "queue", "counts", "run_times", "waits" FROM "{SUMMARY_TABLE}" '
            f"WHERE {where}",
            params,
        )
        for minute, name, counts, run_times, waits in rows:
            if minute not in late:
                _of(figures, name).add_row(counts, run_times, waits)

    def _store(
        self,
        was: tuple[int, int, int, int],
        cover: tuple[int, int],
        newest: int,
        made: dict[int, dict[str, Runs]],
        built: list[tuple[int, int]],
    ) -> None:
        """The summaries made (of the minutes in ``built``) and the new cover (``newest``: the
        largest event id they saw), in a transaction of their own; nothing if another reader or
        a purge changed the cover since it was read, or if nothing is new."""
        first, until = cover
        if (first, until) == was[:2] and not built:  # (``upto`` moves with the next minute)
            return
        connection = self.db.connection()
        # A reader does not queue behind a long write for a cache: SQLite's own wait, bounded
        # (the database layer does not try again a connection with a bound of its own).
        connection.execute(f"PRAGMA busy_timeout = {STORE_WAIT_MS}")
        try:
            with self._write():
                if self._cover_row() != was:
                    return
                self.db.execute_sql(
                    f'DELETE FROM "{SUMMARY_TABLE}" WHERE "minute" < ? OR "minute" >= ?',
                    (first, until),
                )
                for low, high in built:  # (a late minute's summaries are made again)
                    self.db.execute_sql(
                        f'DELETE FROM "{SUMMARY_TABLE}" WHERE "minute" >= ? AND "minute" < ?',
                        (low, high),
                    )
                rows = [
                    (minute, name, *span.row())
                    for minute, spans in made.items()
                    if first <= minute < until
                    for name, span in spans.items()
                ]
                connection.executemany(
                    f'INSERT INTO "{SUMMARY_TABLE}" VALUES (?, ?, ?, ?, ?)', rows
                )
                self.db.execute_sql(
                    f'INSERT OR REPLACE INTO "{COVER_TABLE}" VALUES (1, ?, ?, ?, ?)',
                    (first, until, newest, was[3]),
                )
        except peewee.DatabaseError as exc:  # read-only, locked: the figures are right anyway
            log.debug("stats summaries not stored: %s", exc)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_STEP_MS}")


def _cover(
    first: int, until: int, first_whole: int, closed: int, late: set[int]
) -> tuple[int, int]:
    """The minutes the summaries hold once this window's are stored: the window's whole
    minutes [first_whole, closed), joined to the ones held before [first, until) where the two
    meet, short of the late minutes outside the window (their summaries are stale)."""
    if until <= first or first_whole > until or closed < first:
        return first_whole, closed
    low, high = min(first, first_whole), max(until, closed)
    below = [minute for minute in late if minute < first_whole]
    above = [minute for minute in late if minute >= closed]
    return max([low, *(minute + 1 for minute in below)]), min([high, *above])


def _add_rows(rows: Any, made: dict[int, dict[str, Runs]], minute: int | None) -> None:
    """Each event of ``rows`` (ordered by "at") into the Runs of its queue and minute in
    ``made`` (``minute`` None: all into made[0], whatever their minute). Inlined, not a call
    a row: this runs once a row (100,000 an hour of a busy queue), and a call was a fifth of it."""
    final = _FINAL_CODES
    end = math.inf if minute is None else minute * MINUTE_S  # the first row starts a minute
    spans = made.setdefault(0, {}) if minute is None else {}
    # Per queue of the current minute: its Runs' counts, and its lists' append methods.
    parts: dict[str, tuple[list[int], Any, Any, Runs]] = {}
    for name, code, took, waited, at in rows:
        if at >= end:
            minute = minute_of(at)
            end = (minute + 1) * MINUTE_S
            spans = made.setdefault(minute, {})
            parts = {}
        part = parts.get(name)
        if part is None:
            span = spans.get(name)
            if span is None:
                span = spans[name] = Runs()
            part = parts[name] = (span.ends, span.run_times.append, span.waits.append, span)
        if took is not None:  # a run's end (a released run has none: it did not count)
            part[0][code] += 1
            part[1](took)
        elif code in final:
            part[3].without_run += 1
        if waited is not None:
            part[2](waited)


def _of(figures: dict[str, Runs], name: str) -> Runs:
    found = figures.get(name)
    if found is None:
        found = figures[name] = Runs()
    return found


def forget(db: peewee.Database, seqs: list[int], delete: Callable[[], object]) -> None:
    """SQLite, in a purge's transaction: ``delete()`` deletes the events of the jobs ``seqs``.
    The summaries then start after the last minute those events were in, a `stats` that read
    them before stores nothing (the generation), and ``upto`` is no larger than the largest id
    left (SQLite gives the next event the largest id + 1: a deleted one's again)."""
    (last,) = db.execute_sql(
        f'SELECT MAX("at") FROM "job_event" WHERE "job_seq" IN ({", ".join("?" * len(seqs))}) '
        f"AND {STATS_EVENTS}",
        seqs,
    ).fetchone()
    delete()
    after = -1 if last is None else minute_of(last) + 1
    db.execute_sql(
        f'UPDATE "{COVER_TABLE}" SET "generation" = "generation" + 1, '
        '"first" = CASE WHEN "until" > "first" AND ? > "first" THEN MIN(?, "until") '
        'ELSE "first" END, '
        '"upto" = MIN("upto", (SELECT COALESCE(MAX("id"), 0) FROM "job_event"))',
        (after, after),
    )
    db.execute_sql(
        f'DELETE FROM "{SUMMARY_TABLE}" WHERE "minute" < (SELECT "first" FROM "{COVER_TABLE}") '
        f'OR "minute" >= (SELECT "until" FROM "{COVER_TABLE}")'
    )
