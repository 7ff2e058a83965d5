"""Stats' percentiles are exact (SPEC 8): on SQLite from every run's value of the window, sorted,
on PostgreSQL by percentile_cont; either way every figure equals the one computed here from
every run's sorted values, on random data with ties, several queues, and edge cases."""

from __future__ import annotations

import math
import random

import pytest

from queuectl import Queue

ENDS = ("completed", "failed", "dead", "cancelled", "rescued")
FINAL = ("completed", "dead", "cancelled")
WINDOW = 3600.0


def brute_force(rows: list[dict], start: float, queue: str | None = None) -> dict[str, tuple]:
    """Per queue: runs by outcome, finished, run p50/p95/max, wait p50/p95, from sorted lists
    (percentile_cont's rule: interpolated between the two nearest ranks)."""

    def cont(ordered: list[float], p: float) -> float | None:
        if not ordered:
            return None
        position = p * (len(ordered) - 1)
        low = math.floor(position)
        above = ordered[min(low + 1, len(ordered) - 1)]
        return float(ordered[low] + (above - ordered[low]) * (position - low))

    mine: dict[str, tuple[dict[str, int], list[int], list[float], list[float]]] = {}
    for row in rows:
        if row["at"] < start or row["event"] == "enqueued":
            continue
        if queue is not None and row["queue"] != queue:
            continue
        runs, finished, took, waited = mine.setdefault(
            row["queue"], ({"completed": 0, "failed": 0, "dead": 0, "cancelled": 0}, [0], [], [])
        )
        if row["duration"] is not None:
            took.append(row["duration"])
            if row["event"] in ENDS:
                runs["failed" if row["event"] == "rescued" else row["event"]] += 1
        if row["event"] in FINAL:
            finished[0] += 1
        if row["waited"] is not None:
            waited.append(row["waited"])
    result = {}
    for name, (runs, finished, took, waited) in mine.items():
        took.sort()
        waited.sort()
        result[name] = (
            runs, finished[0], cont(took, 0.5), cont(took, 0.95), took[-1] if took else None,
            cont(waited, 0.5), cont(waited, 0.95),
        )  # fmt: skip
    return result


def figures(q: Queue, queue: str | None = None) -> dict[str, tuple]:
    report = q.stats(since=WINDOW, queue=queue)
    return {
        name: (s.runs, s.finished, s.run_p50, s.run_p95, s.run_max, s.wait_p50, s.wait_p95)
        for name, s in report.queues.items()
        if s.finished or any(s.runs.values()) or s.wait_p50 is not None
    }


def values(rng: random.Random, kind: str, n: int) -> list[float]:
    if kind == "continuous":
        return [rng.uniform(0.001, 30.0) for _ in range(n)]
    if kind == "heavy tail":
        return [rng.expovariate(1.0) ** 3 for _ in range(n)]
    if kind == "ties":  # a few values, some far more common than others
        return [rng.choice((0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 2.25, 7.0)) for _ in range(n)]
    if kind == "equal":
        return [1.5] * n
    if kind == "mixed":  # continuous, with a big tie at zero (jobs started at once)
        return [0.0 if rng.random() < 0.6 else rng.uniform(0, 5) for _ in range(n)]
    raise AssertionError(kind)


def make_rows(rng: random.Random, now: float, sizes: dict[str, int], kind: str) -> list[dict]:
    rows = []
    for name, size in sizes.items():
        took = values(rng, kind, size)
        waited = values(rng, kind, size)
        for i in range(size):
            event = rng.choice(
                ENDS + ENDS + ("completed",) * 6 + ("released", "enqueued", "cancelled-waiting")
            )
            row = {"queue": name, "at": now - rng.uniform(0, WINDOW * 1.2), "event": event,
                   "duration": took[i], "waited": waited[i]}  # fmt: skip
            if event in ("released", "enqueued"):
                row["duration"] = None
                row["waited"] = None if event == "enqueued" else row["waited"]
            elif event == "cancelled-waiting":  # finished without a run
                row.update(event="cancelled", duration=None, waited=None)
            rows.append(row)
    return rows


def store(q: Queue, rows: list[dict]) -> None:
    Event = q.models.Event
    records = [
        {"job_seq": i + 1, "job_id": f"job{i}", "queue": row["queue"], "at": row["at"],
         "event": row["event"], "attempt": 1, "duration": row["duration"],
         "waited": row["waited"]}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    # The queue's own write transaction: on SQLite it takes the write lock at BEGIN, waiting
    # as long as the queue's writes wait. (A plain BEGIN took it at the first insert, where a
    # lock held by a reader storing its summaries failed it after SQLite's 25 ms step: seen
    # once in a full run on a loaded machine.)
    with q._write():
        for first in range(0, len(records), 500):
            Event.insert_many(records[first : first + 500]).execute()


def same(q: Queue, got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        if q.is_sqlite:
            assert got[name] == want[name], name  # identical, not close
        else:
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("kind", ["continuous", "heavy tail", "ties", "equal", "mixed"])
def test_percentiles_equal_sorting_every_value(target, clock, kind):
    rng = random.Random(kind)
    q = Queue(target, clock=clock)
    try:
        rows = make_rows(rng, clock(), {"busy": 2500, "second": 900, "rare": 7}, kind)
        store(q, rows)
        start = clock() - WINDOW
        same(q, figures(q), brute_force(rows, start))
        same(q, figures(q, "second"), brute_force(rows, start, "second"))
        same(q, figures(q, "rare"), brute_force(rows, start, "rare"))
    finally:
        q.close()


@pytest.mark.parametrize("kind", ["continuous", "ties", "mixed"])
def test_one_busy_queue_beside_quiet_ones(target, clock, kind):
    rng = random.Random(f"one {kind}")
    q = Queue(target, clock=clock)
    try:
        rows = make_rows(rng, clock(), {"busy": 2500, "few": 15, "some": 20, "one": 1}, kind)
        store(q, rows)
        same(q, figures(q), brute_force(rows, clock() - WINDOW))
    finally:
        q.close()


def test_empty_window_one_run_and_only_old_runs(target, clock):
    q = Queue(target, clock=clock)
    try:
        assert figures(q) == {}
        old = [{"queue": "default", "at": clock() - 2 * WINDOW, "event": "completed",
                "duration": 3.0, "waited": 1.0}] * 400  # fmt: skip
        store(q, old)
        assert figures(q) == {}
        one = [{"queue": "default", "at": clock() - 5, "event": "completed", "duration": 2.5,
                "waited": 0.25}]  # fmt: skip
        store(q, one)
        assert figures(q) == {
            "default": ({"completed": 1, "failed": 0, "dead": 0, "cancelled": 0}, 1,
                        2.5, 2.5, 2.5, 0.25, 0.25)
        }  # fmt: skip
    finally:
        q.close()

