"""What happened, read back (SPEC 8): a job's history, statistics over a recent window, and the
totals the metrics export. Nothing here writes a job: the records are written by the triggers
of schema 8 (see :mod:`queuectl.schema`), in the statement that changes the job.

Stats come from the events in the window (served by the ``job_event_at`` index): every run
ends with one event carrying its ``duration``, and every start carries its ``waited`` (from the
job falling due to its start). A run is counted by what it led to: ``completed``, ``failed`` (a
retry was scheduled; a rescued run that will be retried too), ``dead``, ``cancelled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .models import CLAIMABLE, RUN_BUCKETS, Event, Job, State, iso, sql_in
from .reading import Reading

OUTCOMES: tuple[State, ...] = (State.COMPLETED, State.FAILED, State.DEAD, State.CANCELLED)
_RUN_END_EVENTS = (*(state.value for state in OUTCOMES), "rescued")
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


def event_dict(event: Event) -> dict[str, Any]:
    """One history record as `history --json` prints it (SPEC 8)."""
    return {
        "at": iso(event.at),
        "event": event.event,
        "attempt": event.attempt,
        "worker": event.worker,
        "exit_code": event.exit_code,
        "error": event.error,
    }


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
        """Every recorded change of ``job`` (a Job, an id or a unique prefix), oldest first."""
        if not isinstance(job, Job):
            job = self.get(job)
        Event = self.models.Event
        # By seq (indexed) and id: SQLite may give a new job the seq of a deleted one.
        mine = (Event.job_seq == job.seq) & (Event.job_id == job.id)
        return list(Event.select().where(mine).order_by(Event.id))

    # -- statistics -------------------------------------------------------------------------

    def stats(self, since: float = DEFAULT_WINDOW_S, queue: str | None = None) -> Stats:
        """Per queue, over the last ``since`` seconds (see the module's docstring); ``queue``:
        that one only (listed even when nothing happened in it)."""
        now = self.clock()
        start = now - since
        where, params = '"at" >= %s' % self.db.param, [start]
        if queue is not None:
            where += ' AND "queue" = %s' % self.db.param
            params.append(queue)
        result: dict[str, QueueStats] = {}

        def of(name: str) -> QueueStats:
            if name not in result:
                result[name] = QueueStats(name)
            return result[name]

        if queue is not None:
            of(queue)
        ends = ", ".join(f"'{name}'" for name in _RUN_END_EVENTS)
        rows = self.db.execute_sql(
            f'SELECT "queue", "event", COUNT(*), COUNT("duration"), MAX("duration") '
            f'FROM "job_event" WHERE {where} AND "event" IN ({ends}) GROUP BY "queue", "event"',
            params,
        ).fetchall()
        for name, event, count, runs, longest in rows:
            stats = of(name)
            outcome = State.FAILED.value if event == "rescued" else event
            stats.runs[outcome] += runs
            if event in _FINAL_EVENTS:
                stats.finished += count
            if longest is not None and (stats.run_max is None or longest > stats.run_max):
                stats.run_max = float(longest)
        minutes = since / 60 if since > 0 else math.inf
        for stats in result.values():
            stats.finished_per_minute = stats.finished / minutes
        for name, (p50, p95) in self._percentiles("duration", where, params).items():
            of(name).run_p50, of(name).run_p95 = p50, p95
        for name, (p50, p95) in self._percentiles("waited", where, params).items():
            of(name).wait_p50, of(name).wait_p95 = p50, p95
        for name, oldest in self.oldest_waiting(queue).items():
            of(name).oldest_waiting = max(now - oldest, 0.0)
        return Stats(at=now, window=since, queues=dict(sorted(result.items())))

    def _percentiles(
        self, column: str, where: str, params: list[object]
    ) -> dict[str, tuple[float, float]]:
        """p50 and p95 of ``column`` per queue over the events ``where`` holds, interpolated
        between the two nearest values (PostgreSQL's percentile_cont)."""
        if not self.is_sqlite:
            rows = self.db.execute_sql(
                'SELECT "queue", '
                + ", ".join(
                    f'percentile_cont({p}) WITHIN GROUP (ORDER BY "{column}")' for p in PERCENTILES
                )
                + f' FROM "job_event" WHERE {where} AND "{column}" IS NOT NULL GROUP BY "queue"',
                params,
            ).fetchall()
            return {name: (float(p50), float(p95)) for name, p50, p95 in rows}
        # SQLite has no percentile: rank the values per queue and read the two around each.
        wanted = " OR ".join(
            f'"i" = CAST({p} * ("n" - 1) AS INTEGER) OR "i" = CAST({p} * ("n" - 1) AS INTEGER) + 1'
            for p in PERCENTILES
        )
        rows = self.db.execute_sql(
            'SELECT "queue", "i", "n", "v" FROM (SELECT "queue", "' + column + '" AS "v", '
            f'ROW_NUMBER() OVER (PARTITION BY "queue" ORDER BY "{column}") - 1 AS "i", '
            'COUNT(*) OVER (PARTITION BY "queue") AS "n" FROM "job_event" '
            f'WHERE {where} AND "{column}" IS NOT NULL) WHERE {wanted}',
            params,
        ).fetchall()
        ranked: dict[str, tuple[int, dict[int, float]]] = {}
        for name, index, count, value in rows:
            ranked.setdefault(name, (count, {}))[1][index] = value
        result = {}
        for name, (count, values) in ranked.items():
            result[name] = tuple(_interpolate(values, p * (count - 1)) for p in PERCENTILES)
        return result  # type: ignore[return-value]

    def oldest_waiting(self, queue: str | None = None) -> dict[str, float]:
        """Per queue, the due time of the job that has waited longest for a worker: due,
        waiting (pending, or failed and due to retry), and no dependency open."""
        sql = (
            f'SELECT "queue", MIN("run_at") FROM "job" WHERE {sql_in(CLAIMABLE)} '
            f'AND "run_at" <= {self.db.param} AND "waiting_on" = 0'
        )
        params: list[object] = [self.clock()]
        if queue is not None:
            sql += f' AND "queue" = {self.db.param}'
            params.append(queue)
        rows = self.db.execute_sql(sql + ' GROUP BY "queue"', params).fetchall()
        return {name: float(due) for name, due in rows if due is not None}

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


def _interpolate(values: dict[int, float], position: float) -> float:
    low = math.floor(position)
    below = values[low]
    above = values.get(low + 1, below)
    return float(below + (above - below) * (position - low))
