"""What happened, read back (SPEC 8): a job's history, statistics over a recent window, and the
totals the metrics export. Nothing here writes a job: the records are written by the triggers
of schema 8 and 9 (see :mod:`queuectl.schema`), in the statement that changes the job.

Stats come from the events in the window, read through the ``job_event_window`` index, which
holds every column they need: every run is one row written as it ends, carrying its
``duration`` and its ``waited`` (from the job falling due to its start; a schema 8 database's
`started` rows carry the waits of its older runs). A run is counted by what it led to:
``completed``, ``failed`` (a retry was scheduled; a rescued run that will be retried too),
``dead``, ``cancelled``. On SQLite, the whole minutes of a window that are over are read from
their summaries, kept by the first stats that read them (see :mod:`queuectl.minutes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .models import (
    READY, READY_QUEUE_INDEX, RUN_BUCKETS, STATS_EVENTS, Event, Job, State, iso, ready_queues,
)
from .outcomes import FINAL_ENDS, OUTCOMES, RUN_ENDS, event_dict  # noqa: F401 (as before)
from .reading import Reading
from .schema import due_sql

# The events that end a run: each run's row (schema 9) is one of them, with its started_at.
RUN_END_EVENTS = frozenset((*RUN_ENDS, "released"))
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
            waited = max(job.started_at - max(job.run_at, job.ready_at or 0.0), 0.0)
            result.append(_started(Event, job, job.started_at, waited))
        return result

    # -- statistics -------------------------------------------------------------------------

    def stats(self, since: float = DEFAULT_WINDOW_S, queue: str | None = None) -> Stats:
        """Per queue, over the last ``since`` seconds (see the module's docstring); ``queue``:
        that one only (listed even when nothing happened in it)."""
        now = self.clock()
        result: dict[str, QueueStats] = {}

        def of(name: str) -> QueueStats:
            if name not in result:
                result[name] = QueueStats(name)
            return result[name]

        if queue is not None:
            of(queue)
        if self.is_sqlite:
            window = self._window_sqlite(now - since, now, queue)
        else:
            window = self._window_postgres(now - since, queue)
        for name, (runs, finished, longest, run_times, waits) in window.items():
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

    def _window_sqlite(self, start: float, now: float, queue: str | None) -> dict[str, _Window]:
        """SQLite has no percentile: every run time and wait of the window is read, from the
        summaries of its whole minutes that are over and the rows of the rest (see
        :mod:`queuectl.minutes`), and ranked here."""
        from .minutes import Minutes  # (not on the path of every command that loads History)

        figures = Minutes(self.db, self._write).window(start, now, queue)
        result = {}
        for name, one in figures.items():
            runs, finished, longest, run_times, waits = one.result()
            result[name] = (runs, finished, longest, _percentiles(run_times), _percentiles(waits))
        return result

    def _window_postgres(self, start: float, queue: str | None) -> dict[str, _Window]:
        """One query: counts, the longest run and percentile_cont's percentiles per queue."""
        where, params = f'"at" >= %s AND {STATS_EVENTS}', [start]
        if queue is not None:
            where += ' AND "queue" = %s'
            params.append(queue)
        ends = ", ".join(f"'{name}'" for name in RUN_ENDS)
        final = ", ".join(f"'{name}'" for name in FINAL_ENDS)
        wanted = "ARRAY[" + ", ".join(str(p) for p in PERCENTILES) + "]"
        run = f'"event" IN ({ends}) AND "duration" IS NOT NULL'
        counts = ", ".join(
            f"COUNT(*) FILTER (WHERE \"event\" = '{name}' AND \"duration\" IS NOT NULL)"
            for name in RUN_ENDS
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
            counted = figures[: len(RUN_ENDS)]
            finished, longest, run_times, waits = figures[len(RUN_ENDS) :]
            runs = {event: int(n) for event, n in zip(RUN_ENDS, counted) if n}
            result[name] = (
                runs, int(finished), None if longest is None else float(longest),
                _pair(run_times), _pair(waits),
            )  # fmt: skip
        return result

    def oldest_waiting(self, queue: str | None = None) -> dict[str, float]:
        """Per queue, the due time of the job that has waited longest for a worker: due,
        waiting (pending, or failed and due to retry), and no dependency open. A job is due
        from its run_at, or from its last dependency's end where that is later (schema 15's
        ready_at). Read from the index on (queue, run_at) over ready jobs
        (models.READY_QUEUE_INDEX), the queues found by skipping from one to the next (a loose
        index scan): each queue's first entry, and where a dependency released that job after
        its run_at, the entries up to the time it was due from (one of them may have been due
        earlier). So a probe per queue, and a range only behind a dependency's release, not a
        pass over every ready job."""
        index = f'"job" INDEXED BY "{READY_QUEUE_INDEX}"' if self.is_sqlite else '"job"'
        due = due_sql()

        def earliest(name: str) -> str:
            # The first entry from queue ``name`` on, in the index's order. A range, not "queue"
            # = name: PostgreSQL would drop a constant from the order and walk job_due instead,
            # past every other queue's ready jobs. (Where ``name`` has no ready job, that entry
            # is another queue's, and the range below is empty.)
            first = (
                f'SELECT {due} FROM {index} WHERE {READY} AND "queue" >= {name} '
                'ORDER BY "queue", "run_at" LIMIT 1'
            )
            return (
                f'SELECT MIN({due}) FROM {index} WHERE {READY} AND "queue" = {name} '
                f'AND "run_at" <= ({first})'
            )

        if queue is not None:
            sql = f"SELECT ({earliest(self.db.param)})"
            rows = [(queue, self.db.execute_sql(sql, [queue, queue]).fetchone()[0])]
        else:
            first = earliest('"q"."name"')  # "name" is a queue of the index
            rows = self.db.execute_sql(
                f'{ready_queues(index)} SELECT "name", ({first}) FROM "q" WHERE "name" IS NOT NULL'
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
    if not ordered:
        return None, None
    last = len(ordered) - 1
    figures = []
    for p in PERCENTILES:
        position = p * last
        low = math.floor(position)
        below = ordered[low]
        above = ordered[low + 1] if low < last else below
        figures.append(float(below + (above - below) * (position - low)))
    return figures[0], figures[1]


def _pair(values: list[float] | None) -> tuple[float | None, float | None]:
    if values is None:
        return None, None
    return float(values[0]), float(values[1])
