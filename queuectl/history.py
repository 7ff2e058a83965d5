"""What happened, read back (SPEC 8): a job's history, statistics over a recent window, and the
totals the metrics export. Nothing here writes a job: the records are written by the triggers
of schema 8 and 9 (see :mod:`queuectl.schema`), in the statement that changes the job.

Stats come from the events in the window, read through the ``job_event_window`` index, which
holds every column they need: every run is one row written as it ends, carrying its
``duration`` and its ``waited`` (from the job falling due to its start; a schema 8 database's
`started` rows carry the waits of its older runs). A run is counted by what it led to:
``completed``, ``failed`` (a retry was scheduled; a rescued run that will be retried too),
``dead``, ``cancelled``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import peewee

from .models import (
    READY, READY_QUEUE_INDEX, RUN_BUCKETS, STATS_EVENTS, Event, Job, State, iso,
)
from .outcomes import OUTCOMES, event_dict  # noqa: F401 (here too, as before)
from .reading import Reading

_RUN_END_EVENTS = (*(state.value for state in OUTCOMES), "rescued")
# The events that end a run: each run's row (schema 9) is one of them, with its started_at.
RUN_END_EVENTS = frozenset((*_RUN_END_EVENTS, "released"))
_FINAL_EVENTS = tuple(state.value for state in (State.COMPLETED, State.DEAD, State.CANCELLED))
DEFAULT_WINDOW_S = 3600.0
PERCENTILES = (0.5, 0.95)
# PostgreSQL bumps run totals per connection (schema.history_triggers); past this many rows,
# the rows of connections that are gone are folded into shard 0, keeping the sums.
_MAX_TOTAL_ROWS = 2000
_FOLD_TOTALS = (
    'WITH "gone" AS (DELETE FROM "run_total" WHERE "shard" <> 0 AND "shard" NOT IN '
    '(SELECT "pid" FROM pg_stat_activity WHERE "pid" IS NOT NULL) '
    'RETURNING "queue", "outcome", "bucket", "n", "seconds") '
    'INSERT INTO "run_total" AS r ("queue", "outcome", "bucket", "shard", "n", "seconds") '
    'SELECT "queue", "outcome", "bucket", 0, SUM("n"), SUM("seconds") FROM "gone" '
    'GROUP BY "queue", "outcome", "bucket" ON CONFLICT ("queue", "outcome", "bucket", "shard") '
    'DO UPDATE SET "n" = r."n" + EXCLUDED."n", "seconds" = r."seconds" + EXCLUDED."seconds"'
)


@dataclass
class QueueStats:
    """One queue's figures over the window (seconds; None where nothing was measured)."""

    queue: str
    runs: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in OUTCOMES})
    finished: int = 0  # jobs that reached completed, dead or cancelled
    finished_per_minute: float = 0.0
    run_p50: float | None = None
    run_p95: float | None = None
    run_max: float | None = None
    wait_p50: float | None = None
    wait_p95: float | None = None
    oldest_waiting: float | None = None  # age of the job due the longest and still waiting

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": dict(self.runs),
            "finished": self.finished,
            "finished_per_minute": self.finished_per_minute,
            "run_time": {"p50": self.run_p50, "p95": self.run_p95, "max": self.run_max},
            "wait": {"p50": self.wait_p50, "p95": self.wait_p95},
            "oldest_waiting_age": self.oldest_waiting,
        }


@dataclass
class Stats:
    """`queuectl stats`: per queue, over ``window`` seconds up to ``at``."""

    at: float
    window: float
    queues: dict[str, QueueStats]

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": iso(self.at - self.window),
            "to": iso(self.at),
            "seconds": self.window,
            "queues": {name: stats.to_dict() for name, stats in self.queues.items()},
        }


@dataclass(frozen=True)
class RunTotals:
    """Runs ever finished (the metrics' counters and histogram): ``runs[(queue, outcome)]``,
    ``buckets[queue][i]`` runs of at most RUN_BUCKETS[i] seconds (not cumulative; the last
    is +Inf), ``seconds[queue]`` their total run time."""

    runs: dict[tuple[str, str], int]
    buckets: dict[str, list[int]]
    seconds: dict[str, float]


class History(Reading):
    def history(self, job: Job | str) -> list[Event]:
        """Every recorded change of ``job`` (a Job, an id or a unique prefix), oldest first.

        A run is stored as one row, written as it ends, that says when it started (schema 9):
        its `started` event is made from it here (the run's attempt and worker, at its start),
        just before its end, and the run under way is read from the job itself. Rows of a
        schema 8 database (a `started` row of their own) are read as they are, never twice."""
        if not isinstance(job, Job):
            job = self.get(job)
        Event = self.models.Event
        # By seq (indexed) and id: SQLite may give a new job the seq of a deleted one.
        mine = (Event.job_seq == job.seq) & (Event.job_id == job.id)
        result: list[Event] = []
        recorded = False  # the run under way has a `started` row of its own (schema 8)
        for event in Event.select().where(mine).order_by(Event.id):
            if event.event == "started":
                recorded = True
            elif event.event in RUN_END_EVENTS:
                if event.started_at is not None and not recorded:
                    result.append(_started(Event, event, event.started_at, event.waited))
                recorded = False
            result.append(event)
        if job.state == State.PROCESSING and not recorded and job.started_at is not None:
            waited = max(job.started_at - job.run_at, 0.0)
            result.append(_started(Event, job, job.started_at, waited))
        return result

    # -- statistics -------------------------------------------------------------------------

    def stats(self, since: float = DEFAULT_WINDOW_S, queue: str | None = None) -> Stats:
        """Per queue, over the last ``since`` seconds (see the module's docstring); ``queue``:
        that one only (listed even when nothing happened in it)."""
        now = self.clock()
        where, params = f'"at" >= {self.db.param} AND {STATS_EVENTS}', [now - since]
        if queue is not None:
            where += f' AND "queue" = {self.db.param}'
            params.append(queue)
        result: dict[str, QueueStats] = {}

        def of(name: str) -> QueueStats:
            if name not in result:
                result[name] = QueueStats(name)
            return result[name]

        if queue is not None:
            of(queue)
        if self.is_sqlite:
            windows = self._window_sqlite(now - since, now, queue)
        else:
            windows = self._window_postgres(where, params)
        for name, (runs, finished, longest, run_times, waits) in windows.items():
            stats = of(name)
            for event, count in runs.items():
                stats.runs[State.FAILED.value if event == "rescued" else event] += count
            stats.finished = finished
            stats.run_max = longest
            stats.run_p50, stats.run_p95 = run_times
            stats.wait_p50, stats.wait_p95 = waits
        minutes = since / 60 if since > 0 else math.inf
        for stats in result.values():
            stats.finished_per_minute = stats.finished / minutes
        for name, oldest in self.oldest_waiting(queue).items():
            of(name).oldest_waiting = max(now - oldest, 0.0)
        return Stats(at=now, window=since, queues=dict(sorted(result.items())))

    def _window_sqlite(self, start: float, end: float, queue: str | None) -> dict[str, _Window]:
        """SQLite has no percentile. Reading every run of the window into Python costs ~1 us a
        run (an hour of a busy queue is 100,000), so the percentiles of a queue with many runs
        are found in SQLite, exactly, in three kinds of statement over the ``job_event_window``
        index (which holds every column read), in one read transaction:

        1. a sample: the first rows of each of 128 slices of the window (index seeks: ~4,000
           rows whatever the window holds), which gives each wanted rank of such a queue a
           bracket of values (lo, hi] it is very likely in (see _Brackets);
        2. one pass of counts per such queue: its rows by end event, and for each column the
           values up to each bracket's lo (below and up to it, for a lo the
           sample found tied): a few SUMs, three counts packed in each;
        3. one pass reading the rows of the other queues, and of these queues only the values
           inside a bracket, or as long as the sample's longest run (a few per cent of them),
           sorted here.

        The value of rank r is then the (r - values up to lo)-th value read (or lo itself, for a
        tie), exactly as in the sorted list; a rank outside its bracket (an unlucky sample, or a
        tie the sample did not show) reads that queue's rows as the other queues' are read.
        Figures are identical to sorting every value (tests/engine/test_stats_exact.py)."""
        with self.db.atomic():  # the three statements see one snapshot
            return self._window_sqlite_read(start, end, queue)

    def _window_sqlite_read(
        self, start: float, end: float, queue: str | None
    ) -> dict[str, _Window]:
        param = self.db.param
        window = (
            f'"job_event" INDEXED BY "job_event_window" WHERE "at" >= {param} AND {STATS_EVENTS}'
        )
        params: list[object] = [start]
        if queue is not None:
            window += f' AND "queue" = {param}'
            params.append(queue)
        ranked = self._window_sample(start, end, queue)
        where, args = window, list(params)
        if ranked:
            either: list[str] = []
            for brackets in ranked.values():
                inside, values = brackets.inside(param)
                if inside:
                    either.append(inside)
                    args += values
            either.append(f'"queue" NOT IN ({", ".join(param for _ in ranked)})')
            args += list(ranked)
            where += f" AND ({' OR '.join(either)})"
        rows = self.db.execute_sql(f"SELECT {_CODED_ROW} FROM {where}", args).fetchall()
        if ranked:
            theirs: dict[str, list[tuple[str, int, float | None, float | None]]] = {
                name: [] for name in ranked
            }  # fmt: skip
            rest: list[tuple[str, int, float | None, float | None]] = []
            for row in rows:
                theirs.get(row[0], rest).append(row)
            for name, brackets in ranked.items():
                brackets.take(theirs[name])
            rows = rest
        tallies = _tallies(rows)
        result = {name: _tallied(*tally) for name, tally in tallies.items()}
        for name, brackets in ranked.items():
            counts, values = brackets.counts(param)
            try:
                if len(ranked) == 1:
                    # Every row of the other queues was read above: their part of the counts
                    # is taken off here, sparing the pass a comparison of every row's queue.
                    found = self.db.execute_sql(
                        f"SELECT {counts} FROM {window}", [*values, *params]
                    ).fetchone()
                    figures = brackets.figures(found, others=rows)
                else:
                    figures = brackets.figures(self.db.execute_sql(
                        f'SELECT {counts} FROM {window} AND "queue" = {param}',
                        [*values, *params, name],
                    ).fetchone())  # fmt: skip
            except peewee.OperationalError as error:
                # A packed SUM past 63 bits (over _FIELD rows of one kind in the window):
                # SQLite raises rather than wraps. Counted the plain way below.
                if "integer overflow" not in str(error):
                    raise
                figures = None
            if figures is None:  # a rank outside its bracket: read this queue's rows
                rows = self.db.execute_sql(
                    f'SELECT {_CODED_ROW} FROM {window} AND "queue" = {param}', [*params, name]
                )
                figures = _tallied(*_tallies(rows).get(name, ([], [], [], [])))
            result[name] = figures
        return result

    def _window_sample(self, start: float, end: float, queue: str | None) -> dict[str, _Brackets]:
        """The queues with runs enough to be ranked in SQLite (at most _MAX_RANKED, the
        busiest), each with the brackets its sample gives."""
        width = (end - start) / _SLICES
        if not width > 0:
            return {}
        param = self.db.param
        mine = f' AND "queue" = {param}' if queue is not None else ""
        # Fewer rows in the window than a ranked queue's sample: nothing to rank (the sample's
        # statement of 128 parts costs more to prepare than this look costs to run).
        enough = self.db.execute_sql(
            f'SELECT 1 FROM "job_event" INDEXED BY "job_event_window" WHERE "at" >= {param} '
            f"AND {STATS_EVENTS}{mine} LIMIT 1 OFFSET {_RANKED_SAMPLE - 1}",
            [start] if queue is None else [start, queue],
        ).fetchone()
        if enough is None:
            return {}
        one = (
            'SELECT * FROM (SELECT "queue", "duration", "waited" FROM "job_event" INDEXED BY '
            f'"job_event_window" WHERE "at" >= {param} AND "at" < {param} AND {STATS_EVENTS}'
            f'{mine} ORDER BY "at" LIMIT {_SLICE_ROWS})'
        )
        params: list[object] = []
        for i in range(_SLICES):
            params += [start + i * width, start + (i + 1) * width]
            if queue is not None:
                params.append(queue)
        sampled: dict[str, tuple[list[float], list[float], list[int]]] = {}
        for name, took, waited in self.db.execute_sql(" UNION ALL ".join([one] * _SLICES), params):
            mine_ = sampled.get(name)
            if mine_ is None:
                mine_ = sampled[name] = ([], [], [0])
            mine_[2][0] += 1
            if took is not None:
                mine_[0].append(took)
            if waited is not None:
                mine_[1].append(waited)
        busiest = sorted(
            (name for name, (_, _, (rows,)) in sampled.items() if rows >= _RANKED_SAMPLE),
            key=lambda name: -sampled[name][2][0],
        )[:_MAX_RANKED]
        return {name: _Brackets(sampled[name][0], sampled[name][1]) for name in sorted(busiest)}

    def _window_postgres(self, where: str, params: list[object]) -> dict[str, _Window]:
        """One query: counts, the longest run and percentile_cont's percentiles per queue."""
        ends = ", ".join(f"'{name}'" for name in _RUN_END_EVENTS)
        final = ", ".join(f"'{name}'" for name in _FINAL_EVENTS)
        wanted = "ARRAY[" + ", ".join(str(p) for p in PERCENTILES) + "]"
        run = f'"event" IN ({ends}) AND "duration" IS NOT NULL'
        counts = ", ".join(
            f"COUNT(*) FILTER (WHERE \"event\" = '{name}' AND \"duration\" IS NOT NULL)"
            for name in _RUN_END_EVENTS
        )
        rows = self.db.execute_sql(
            f'SELECT "queue", {counts}, COUNT(*) FILTER (WHERE "event" IN ({final})), '
            f'MAX("duration") FILTER (WHERE {run}), '
            f'percentile_cont({wanted}) WITHIN GROUP (ORDER BY "duration") FILTER (WHERE {run}), '
            f'percentile_cont({wanted}) WITHIN GROUP (ORDER BY "waited") '
            f'FROM "job_event" WHERE {where} GROUP BY "queue"',
            params,
        ).fetchall()
        result = {}
        for name, *figures in rows:
            counted = figures[: len(_RUN_END_EVENTS)]
            finished, longest, run_times, waits = figures[len(_RUN_END_EVENTS) :]
            runs = {event: int(n) for event, n in zip(_RUN_END_EVENTS, counted) if n}
            result[name] = (
                runs, int(finished), None if longest is None else float(longest),
                _pair(run_times), _pair(waits),
            )  # fmt: skip
        return result

    def oldest_waiting(self, queue: str | None = None) -> dict[str, float]:
        """Per queue, the due time of the job that has waited longest for a worker: due,
        waiting (pending, or failed and due to retry), and no dependency open. Read from the
        index on (queue, run_at) over ready jobs (models.READY_QUEUE_INDEX): its first entry
        for each queue, the queues found by skipping from one to the next (a loose index scan),
        so a probe per queue, not a pass over every ready job."""
        index = f'"job" INDEXED BY "{READY_QUEUE_INDEX}"' if self.is_sqlite else '"job"'

        def first(columns: str, name: str) -> str:
            # The first entry from queue ``name`` on, in the index's order. A range, not "queue"
            # = name: PostgreSQL would drop a constant from the order and walk job_due instead,
            # past every other queue's ready jobs.
            return (
                f'SELECT {columns} FROM {index} WHERE {READY} AND "queue" >= {name} '
                'ORDER BY "queue", "run_at" LIMIT 1'
            )

        if queue is not None:
            sql = first('"queue", "run_at"', self.db.param)
            row = self.db.execute_sql(sql, [queue]).fetchone()
            rows = [row] if row is not None and row[0] == queue else []
        else:
            due = first('"run_at"', '"q"."name"')  # "name" is a queue of the index: its first
            rows = self.db.execute_sql(
                'WITH RECURSIVE "q" ("name") AS ('
                f'SELECT MIN("queue") FROM {index} WHERE {READY} UNION ALL '
                f'SELECT (SELECT MIN("queue") FROM {index} WHERE {READY} AND "queue" > "q"."name") '
                f'FROM "q" WHERE "q"."name" IS NOT NULL) SELECT "name", ({due}) FROM "q" '
                'WHERE "name" IS NOT NULL'
            ).fetchall()
        now = self.clock()
        return {name: float(due) for name, due in rows if due is not None and due <= now}

    # -- totals (the metrics) ---------------------------------------------------------------

    def run_totals(self) -> RunTotals:
        """Runs ever finished, from the totals the triggers keep (never lowered by a purge)."""
        if not self.is_sqlite:
            shards = self.db.execute_sql('SELECT COUNT(*) FROM "run_total"').fetchone()[0]
            if shards > _MAX_TOTAL_ROWS:
                with self._write():
                    self.db.execute_sql(_FOLD_TOTALS)
        rows = self.db.execute_sql(
            'SELECT "queue", "outcome", "bucket", SUM("n"), SUM("seconds") FROM "run_total" '
            'GROUP BY "queue", "outcome", "bucket"'
        ).fetchall()
        runs: dict[tuple[str, str], int] = {}
        buckets: dict[str, list[int]] = {}
        seconds: dict[str, float] = {}
        for name, outcome, bucket, count, total in rows:
            runs[(name, outcome)] = runs.get((name, outcome), 0) + int(count)
            counts = buckets.setdefault(name, [0] * (len(RUN_BUCKETS) + 1))
            counts[min(int(bucket), len(RUN_BUCKETS))] += int(count)
            seconds[name] = seconds.get(name, 0.0) + float(total)
        return RunTotals(runs, buckets, seconds)

    def counts_by_queue(self) -> dict[tuple[str, str], int]:
        """Jobs per (queue, state)."""
        rows = self.db.execute_sql(
            'SELECT "queue", "state", COUNT(*) FROM "job" GROUP BY "queue", "state"'
        ).fetchall()
        return {(name, state): int(count) for name, state, count in rows}

    def live_threads(self) -> int:
        """Worker threads of the live worker processes, on every host."""
        return sum(worker.threads for worker in self.live_workers())  # type: ignore[attr-defined]


# One queue's window: runs by end event, jobs finished, longest run, run time and wait p50/p95.
_Window = tuple[dict[str, int], int, "float | None", tuple["float | None", "float | None"],
                tuple["float | None", "float | None"]]  # fmt: skip


def _started(Event: type[Event], run: Event | Job, at: float, waited: float | None) -> Event:
    """The `started` event (not a stored row) of a run: of its end's row, or of the job while
    it runs; its attempt and worker, at ``at``."""
    if isinstance(run, Job):
        seq, job_id, attempt = run.seq, run.id, run.attempts
    else:
        seq, job_id, attempt = run.job_seq, run.job_id, run.attempt
    return Event(
        job_seq=seq, job_id=job_id, queue=run.queue, at=at, event="started", attempt=attempt,
        worker=run.worker, waited=waited,
    )


def _percentiles(ordered: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95 of ``ordered`` (ascending), interpolated between the two nearest values as
    PostgreSQL's percentile_cont does; None for none."""
    return _interpolated(len(ordered), lambda _, rank: ordered[rank])


def _interpolated(
    count: int, at: Callable[[int, int], float]
) -> tuple[float | None, float | None]:
    """p50 and p95 of ``count`` values, ``at(i, rank)`` the value of that rank (from 0, in
    ascending order) for PERCENTILES[i]: interpolated between the two nearest values as
    PostgreSQL's percentile_cont does; None for none."""
    if not count:
        return None, None
    last = count - 1
    figures = []
    for i, p in enumerate(PERCENTILES):
        position = p * last
        low = math.floor(position)
        below = at(i, low)
        above = at(i, low + 1) if low < last else below
        figures.append(float(below + (above - below) * (position - low)))
    return figures[0], figures[1]


# -- SQLite's window (History._window_sqlite) ----------------------------------------------

_SLICES, _SLICE_ROWS = 128, 32  # the sample: the first rows of each of 128 slices of the window
_RANKED_SAMPLE = 256  # sampled rows that make a queue ranked in SQLite
_MAX_RANKED = 3  # queues ranked so (a pass of counts each); the others' rows are sorted here
# A bracket spans the sample's wanted rank -+ this many standard errors, plus _SLACK of it: a
# wanted rank falls outside it about once in 80 (then that queue's rows are read and sorted).
_SPREAD, _SLACK = 2.5, 0.003
_FIELD = 1 << 21  # counts packed three to a SUM (its 63 bits): below this many rows
# Each row of the window as the tallies read it: the event as its index in _RUN_END_EVENTS (a
# small int, not a string made for each row), any other event as len(_RUN_END_EVENTS).
_CODED_ROW = (
    '"queue", CASE "event" '
    + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(_RUN_END_EVENTS))
    + f' ELSE {len(_RUN_END_EVENTS)} END, "duration", "waited"'
)
_FINAL_CODES = frozenset(_RUN_END_EVENTS.index(name) for name in _FINAL_EVENTS)
# One queue's rows as read: end event codes and run times of its runs, its waits, and the
# final events of jobs finished without a run (cancelled while they waited, say).
_Tally = tuple[list[int], list[float], list[float], list[int]]


class _Miss(Exception):
    """A wanted rank is outside its bracket."""


def _tallies(rows: Iterable[tuple[str, int, float | None, float | None]]) -> dict[str, _Tally]:
    """Per queue, its rows as read (see _Tally)."""
    tallies: dict[str, _Tally] = {}
    for name, event, took, waited in rows:
        mine = tallies.get(name)
        if mine is None:
            mine = tallies[name] = ([], [], [], [])
        if took is not None:  # a run's end (a released run has none: it did not count)
            mine[0].append(event)
            mine[1].append(took)
        elif event in _FINAL_CODES:
            mine[3].append(event)
        if waited is not None:
            mine[2].append(waited)
    return tallies


def _tallied(ends: list[int], run_times: list[float], waits: list[float],
             without_run: list[int]) -> _Window:  # fmt: skip
    counted = Counter(ends)
    runs = {event: counted[i] for i, event in enumerate(_RUN_END_EVENTS) if counted[i]}
    finished = sum(counted[i] for i in _FINAL_CODES) + len(without_run)
    run_times.sort()
    waits.sort()
    return (
        runs, finished, run_times[-1] if run_times else None,
        _percentiles(run_times), _percentiles(waits),
    )  # fmt: skip


class _Brackets:
    """One queue's brackets, from its sample: per column (run time, wait) and percentile, the
    values its wanted ranks are looked for in, and from a pass of counts, its figures.

    A bracket (lo, hi]: the values above lo, up to hi, are read and sorted here, and the pass
    counts the values up to lo (lo None: from the lowest; hi None: to the highest). Where the
    sample has a single value in the bracket (ties: lo == hi), nothing is read: the pass counts
    the values below lo and up to it, and the ranks between are lo. The longest run is the
    longest of those read from the sample's longest on (``top``; every one without a sample):
    a few rows, where MAX() in the pass cost as much as a count."""

    COLUMNS = ('"duration"', '"waited"')

    def __init__(self, run_times: list[float], waits: list[float]) -> None:
        self.bounds: list[tuple[float | None, float | None]] = []  # per column, per percentile
        # Per column: the thresholds the pass counts up to, in order: (value, up to and with it)
        self.thresholds: list[list[tuple[float, bool]]] = []
        for sample in (run_times, waits):
            sample.sort()
            n = len(sample)
            wanted: set[tuple[float, bool]] = set()
            for p in PERCENTILES:
                spread = _SPREAD * math.sqrt(p * (1 - p) / n) + _SLACK if n else 1.0
                low = math.floor((p - spread) * (n - 1))
                high = math.ceil((p + spread) * (n - 1)) + 1
                lo = sample[low] if 0 < low < n else None
                hi = sample[high] if 0 <= high < n - 1 else None
                self.bounds.append((lo, hi))
                if lo is not None:
                    wanted.add((lo, True))
                    if lo == hi:
                        wanted.add((lo, False))
            self.thresholds.append(sorted(wanted))
        self.top = run_times[-1] if run_times else None  # a run this long or longer is read
        self.read: list[list[float]] = [[] for _ in self.bounds]
        self.longest: float | None = None

    def inside(self, param: str) -> tuple[str, list[float]]:
        """The condition of a row with a value to read in a bracket, and its parameters."""
        either, values = [], []
        for index, (lo, hi) in enumerate(self.bounds):
            column = self.COLUMNS[index // len(PERCENTILES)]
            if lo is not None and lo == hi:
                continue
            parts = [f"{column} IS NOT NULL"] if lo is None and hi is None else []
            if lo is not None:
                parts.append(f"{column} > {param}")
                values.append(lo)
            if hi is not None:
                parts.append(f"{column} <= {param}")
                values.append(hi)
            either.append(" AND ".join(parts))
        if self.top is None:
            either.append(f"{self.COLUMNS[0]} IS NOT NULL")
        else:
            either.append(f"{self.COLUMNS[0]} >= {param}")
            values.append(self.top)
        return " OR ".join(f"({part})" for part in either), values

    def take(self, rows: list[tuple[str, int, float | None, float | None]]) -> None:
        """Keeps, of this queue's rows read, the values inside each bracket, and the longest."""
        per = len(PERCENTILES)
        top = -math.inf if self.top is None else self.top
        self.longest = max((row[2] for row in rows if row[2] is not None and row[2] >= top),
                           default=None)  # fmt: skip
        for index, (lo, hi) in enumerate(self.bounds):
            if lo is not None and lo == hi:
                continue
            values = [row[2 + index // per] for row in rows]
            low = -math.inf if lo is None else lo
            high = math.inf if hi is None else hi
            self.read[index] = [v for v in values if v is not None and low < v <= high]

    def counts(self, param: str) -> tuple[str, list[float]]:
        """The pass of counts, and its parameters: rows, runs by end event and jobs finished
        without a run; per column, the values between consecutive thresholds
        (each value is counted once, in its interval: the last is above every threshold).
        Counts are packed three to a SUM, _FIELD apart (each row adds to one of the three)."""
        fields = (1, _FIELD, _FIELD * _FIELD)
        ends = [f"'{name}'" for name in _RUN_END_EVENTS]
        final = ", ".join(f"'{name}'" for name in _FINAL_EVENTS)
        columns = [
            "COUNT(*)",
            f'SUM(CASE WHEN "duration" IS NULL THEN CASE WHEN "event" IN ({final}) THEN 1 END '
            f'ELSE CASE "event" WHEN {ends[0]} THEN {fields[1]} WHEN {ends[1]} THEN {fields[2]} '
            "END END)",
            f'SUM(CASE WHEN "duration" IS NOT NULL THEN CASE "event" WHEN {ends[2]} THEN 1 '
            f"WHEN {ends[3]} THEN {fields[1]} WHEN {ends[4]} THEN {fields[2]} END END)",
        ]  # fmt: skip
        values: list[float] = []
        for column, thresholds in zip(self.COLUMNS, self.thresholds):
            # Interval i: below threshold i and not below any before it; the last: the rest.
            tests = [f"{column} {'<=' if upto else '<'} {param}" for _, upto in thresholds]
            tests.append(f"{column} IS NOT NULL")
            for first in range(0, len(tests), 3):
                # The intervals before this SUM's three are its NULL (counted by another SUM).
                whens = [
                    f"WHEN {test} THEN {fields[i - first] if first <= i else 'NULL'}"
                    for i, test in enumerate(tests[: first + 3])
                ]
                columns.append(f"SUM(CASE {' '.join(whens)} END)")
                values += [value for value, _ in thresholds[: first + 3]]
        return ", ".join(columns), values

    def _counted(self, rows: list[tuple[str, int, float | None, float | None]]) -> list[int]:
        """What ``rows`` (as _CODED_ROW reads them) add to each column of the pass of counts,
        as SQLite adds it (see counts)."""
        field = (1, _FIELD, _FIELD * _FIELD)
        ladders = [
            [(value, upto) for value, upto in thresholds] for thresholds in self.thresholds
        ]  # fmt: skip
        sums = [0] * (3 + sum((len(ladder) + 1 + 2) // 3 for ladder in ladders))
        for _, event, took, waited in rows:
            sums[0] += 1
            if took is None:
                sums[1] += event in _FINAL_CODES
            elif event in (0, 1):  # completed, failed
                sums[1] += field[event + 1]
            elif event in (2, 3, 4):  # dead, cancelled, rescued
                sums[2] += field[event - 2]
            at = 3
            for value, ladder in zip((took, waited), ladders):
                if value is not None:
                    interval = len(ladder)  # above every threshold
                    for i, (threshold, upto) in enumerate(ladder):
                        if value < threshold or (upto and value == threshold):
                            interval = i
                            break
                    sums[at + interval // 3] += field[interval % 3]
                at += (len(ladder) + 1 + 2) // 3
        return sums

    def figures(
        self, counts: tuple[Any, ...], others: list[tuple[str, int, float | None, float | None]]
        | None = None,
    ) -> _Window | None:
        """The queue's figures from its pass of counts (of the rows of every queue, ``others``
        being every row of the others), None where a rank was outside its bracket or there
        were too many rows to pack."""
        if counts[0] >= _FIELD:
            return None  # too many to pack
        if others:
            taken = self._counted(others)
            counts = tuple((total or 0) - part for total, part in zip(counts, taken))
        rows, first, second, *packed = counts

        def unpacked(total: int | None) -> list[int]:
            total = total or 0
            return [total & (_FIELD - 1), total >> 21 & (_FIELD - 1), total >> 42]

        without_run, *counted = unpacked(first) + unpacked(second)
        runs = {event: n for event, n in zip(_RUN_END_EVENTS, counted) if n}
        finished = sum(counted[i] for i in _FINAL_CODES) + without_run
        sums = iter(packed)
        found = []  # per column: its count, and its values up to each threshold
        for thresholds in self.thresholds:
            intervals: list[int] = []
            while len(intervals) < len(thresholds) + 1:
                intervals += unpacked(next(sums))
            upto, total = {}, 0
            for threshold, interval in zip(thresholds, intervals):
                total += interval
                upto[threshold] = total
            found.append((total + intervals[len(thresholds)], upto))
        for values in self.read:
            values.sort()

        def at(column: int) -> Callable[[int, int], float]:
            upto = found[column][1]

            def value(i: int, rank: int) -> float:
                index = column * len(PERCENTILES) + i
                lo, hi = self.bounds[index]
                if lo is not None and lo == hi:
                    if upto[(lo, False)] <= rank < upto[(lo, True)]:
                        return lo
                    raise _Miss
                skipped = 0 if lo is None else upto[(lo, True)]
                read = self.read[index]
                if not 0 <= rank - skipped < len(read):
                    raise _Miss
                return read[rank - skipped]

            return value

        try:
            return (
                runs, finished, None if self.longest is None else float(self.longest),
                _interpolated(found[0][0], at(0)), _interpolated(found[1][0], at(1)),
            )  # fmt: skip
        except _Miss:
            return None


def _pair(values: list[float] | None) -> tuple[float | None, float | None]:
    if values is None:
        return None, None
    return float(values[0]), float(values[1])
