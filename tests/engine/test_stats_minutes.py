"""SQLite keeps a summary of each minute of history that is over (queuectl.minutes), so `stats`
need not read every run of a long window again. Whatever the summaries hold, every figure stats
gives is the one computed from every event row the file holds at that moment: as time moves on,
as events come in late (a writer that read its clock, then waited for the lock) into minutes
already summarised, as a purge deletes events, with other processes reading and writing at once,
for every window and queue asked for. A file that cannot be written still gets exact stats, and a
schema 13 file gets the tables on upgrade."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
import random
import sqlite3
import subprocess
import sys
import threading

import peewee
import pytest

from queuectl import Queue, schema
from queuectl.executor import RunResult
from queuectl.spec import JobSpec
from queuectl.minutes import COVER_TABLE, GRACE_S, SUMMARY_TABLE

from support import wait_until

from .test_stats_exact import brute_force, make_rows, store

WINDOWS = (3600.0, 2 * 3600.0, 600.0, 240.0, 3 * 86400.0)


@contextmanager
def seeded(db_path: str, clock, seed: int, sizes: dict[str, int], kind: str):
    """A queue on ``clock`` holding make_rows' events (``seed``), and the generator used."""
    rng = random.Random(seed)
    q = Queue(db_path, clock=clock)
    try:
        store(q, make_rows(rng, clock(), sizes, kind))
        yield q, rng
    finally:
        q.close()


def events_in(q: Queue) -> list[dict]:
    """Every event row of the file, as brute_force takes them (the oracle ignores summaries)."""
    rows = q.db.execute_sql(
        'SELECT "queue", "at", "event", "duration", "waited" FROM "job_event"'
    ).fetchall()
    return [dict(zip(("queue", "at", "event", "duration", "waited"), row)) for row in rows]


def figures(q: Queue, since: float, queue: str | None = None) -> dict[str, tuple]:
    report = q.stats(since=since, queue=queue)
    return {
        name: (s.runs, s.finished, s.run_p50, s.run_p95, s.run_max, s.wait_p50, s.wait_p95)
        for name, s in report.queues.items()
        if s.finished or any(s.runs.values()) or s.wait_p50 is not None
    }


def exact(q: Queue, since: float, queue: str | None = None) -> None:
    """Stats of the last ``since`` (of ``queue``) equal the oracle's over the file's rows."""
    want = brute_force(events_in(q), q.clock() - since, queue)
    assert figures(q, since, queue) == want, (since, queue)


def cover(q: Queue) -> tuple[int, int, int, int]:
    return q.db.execute_sql(
        f'SELECT "first", "until", "upto", "generation" FROM "{COVER_TABLE}"'
    ).fetchone()


def summaries(q: Queue) -> int:
    return q.db.execute_sql(f'SELECT COUNT(*) FROM "{SUMMARY_TABLE}"').fetchone()[0]


def late_rows(rng: random.Random, now: float, n: int) -> list[dict]:
    """Runs recorded now with times minutes in the past (summarised already)."""
    rows = make_rows(rng, now, {"busy": n, "second": n // 3}, "mixed")
    for row in rows:
        row["at"] = now - rng.uniform(GRACE_S + 60, 3000)
    return rows


def test_the_summaries_are_used_and_stats_stay_exact_as_time_moves_on(db_path, clock):
    sizes = {"busy": 3000, "second": 800, "rare": 5}
    with seeded(db_path, clock, 7, sizes, "continuous") as (q, rng):
        exact(q, 3600)
        first, until, _, _ = cover(q)
        assert until - first >= 55 and summaries(q) > 100  # the hour's whole minutes are kept
        for step in range(12):
            clock.advance(rng.choice((7.0, 31.0, 59.5, 60.0, 127.0, 600.0)))
            store(q, make_rows(rng, clock(), {"busy": 150, "second": 40}, "ties"))
            for row in rng.sample(events_in(q), 3):  # and rows whose times are all here already
                store(q, [dict(row, at=row["at"] + rng.choice((0.0, 1e-9, -1e-9)))])
            for since in WINDOWS:
                exact(q, since)
            exact(q, 3600, "second")
            exact(q, 3600, "rare")
            exact(q, 3600, "nowhere")


def test_runs_recorded_late_into_summarised_minutes_are_counted(db_path, clock):
    with seeded(db_path, clock, 11, {"busy": 2000, "second": 500}, "continuous") as (q, rng):
        exact(q, 3600)
        summarised = cover(q)
        for _ in range(5):
            store(q, late_rows(rng, clock(), 30))
            exact(q, 3600)  # the late minutes are made again
            exact(q, 2 * 3600, "busy")
            clock.advance(20)
        first, until, upto, _ = cover(q)
        assert upto > summarised[2] and until - first >= 55
        # A minute at the edge: a run recorded late exactly at a minute's start and just before.
        edge = (int(clock() // 60) - 30) * 60.0
        store(q, [{"queue": "busy", "at": edge, "event": "completed", "duration": 1e6,
                   "waited": 1e6},
                  {"queue": "busy", "at": edge - 1e-6, "event": "dead", "duration": 2e6,
                   "waited": 2e6}])  # fmt: skip
        exact(q, 3600)
        assert figures(q, 3600)["busy"][4] == 2e6


def test_a_purge_leaves_stats_exact_and_the_summaries_stop_short_of_what_it_deleted(db_path, clock):
    q = Queue(db_path, clock=clock)
    try:
        worker = q.register_worker(1)
        for i in range(480):  # real jobs over four hours, run by the engine's own calls
            q.enqueue(JobSpec(f"echo {i}", queue="busy" if i % 3 else "other"))
            claimed = q.claim(worker)
            clock.advance(25 + i % 7)
            failed = i % 5 == 0
            q.finish(claimed, RunResult(1 if failed else 0, "exit 1" if failed else None, ""),
                     worker)  # fmt: skip
        for since in WINDOWS:
            exact(q, since)
        generation = cover(q)[3]
        purged = q.purge(states=("completed",), older_than=2 * 3600)
        assert purged
        assert cover(q)[3] > generation
        for since in WINDOWS:
            exact(q, since)
        q.purge(states=("completed",))  # the last hour's too: the whole cover goes
        for since in WINDOWS:
            exact(q, since)
            exact(q, since, "other")
    finally:
        q.close()


def test_stats_stay_exact_while_other_threads_write_read_and_purge(db_path, clock):
    """Readers storing summaries and a writer adding runs (some late) at once; then every
    figure equals the oracle's, and again after time moves on."""
    rng = random.Random(3)
    setup = Queue(db_path, clock=clock)
    store(setup, make_rows(rng, clock(), {"busy": 3000, "second": 600}, "mixed"))
    setup.close()
    errors: list[BaseException] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        q = Queue(db_path, clock=clock)
        try:
            while not done.is_set():
                q.stats(since=random.Random(seed).choice(WINDOWS))
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)
        finally:
            q.close()

    def writer() -> None:
        q = Queue(db_path, clock=clock)
        local = random.Random(5)
        try:
            for _ in range(40):
                store(q, late_rows(local, clock(), 6) + make_rows(local, clock(), {"busy": 5},
                                                                  "ties"))  # fmt: skip
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            q.close()
            done.set()

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    q = Queue(db_path, clock=clock)
    try:
        for _ in range(3):
            for since in WINDOWS:
                exact(q, since)
            clock.advance(45)
    finally:
        q.close()


def test_stats_from_another_process_agree_and_fill_the_summaries(db_path, clock):
    with seeded(db_path, clock, 9, {"busy": 1500, "second": 300}, "heavy tail") as (q, rng):
        assert summaries(q) == 0
        env = {**os.environ, "QUEUECTL_TEST_NOW": repr(clock())}
        script = (
            "import json, os, sys; from queuectl import Queue;"
            "q = Queue(sys.argv[1], clock=lambda: float(os.environ['QUEUECTL_TEST_NOW']));"
            "print(json.dumps(q.stats(3600).to_dict()))"
        )
        out = subprocess.run([sys.executable, "-c", script, db_path], env=env, check=True,
                             capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        assert summaries(q) > 50
        assert out.strip() and q.stats(3600).to_dict() == json.loads(out)
        exact(q, 3600)


def test_a_file_that_cannot_be_written_still_gets_exact_stats(db_path, clock, monkeypatch):
    with seeded(db_path, clock, 13, {"busy": 1200}, "continuous") as (q, rng):
        want = brute_force(events_in(q), clock() - 3600)

        def refused():  # the write transaction, as on a read-only file or a lock held too long
            raise peewee.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(q, "_write", refused)
        assert figures(q, 3600) == want
        assert figures(q, 3600, "busy") == want
        monkeypatch.undo()
        assert summaries(q) == 0 and cover(q) == (0, 0, 0, 0)
        exact(q, 3600)
        assert summaries(q) > 0


def test_stats_do_not_wait_for_another_process_holding_the_write_lock(db_path, clock):
    """A reader stores its summaries only if the write lock comes soon: behind a long write it
    gives its exact figures at once (not after the 60 s a writer would wait), storing nothing."""
    rng = random.Random(23)
    q = Queue(db_path, clock=clock)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        store(q, make_rows(rng, clock(), {"busy": 800}, "ties"))
        want = brute_force(events_in(q), clock() - 3600)
        holder.execute("BEGIN IMMEDIATE")
        got: list[dict] = []
        reader = threading.Thread(target=lambda: got.append(figures(q, 3600)))
        reader.start()
        wait_until(lambda: not reader.is_alive(), 10.0, "stats behind the write lock")
        assert got == [want] and summaries(q) == 0
        holder.execute("ROLLBACK")
        exact(q, 3600)
        assert summaries(q) > 0
    finally:
        holder.close()
        q.close()


def test_a_schema_13_file_gets_the_summaries_on_upgrade(db_path, clock):
    rng = random.Random(17)
    q = Queue(db_path, clock=clock)
    rows = make_rows(rng, clock(), {"busy": 900}, "ties")
    store(q, rows)
    for table in (SUMMARY_TABLE, COVER_TABLE):
        q.db.execute_sql(f'DROP TABLE "{table}"')
    q.db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '13' WHERE \"key\" = 'version'")
    q.close()
    upgraded = Queue(db_path, clock=clock)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 14
        assert cover(upgraded) == (0, 0, 0, 0)
        exact(upgraded, 3600)
        assert summaries(upgraded) > 0
        assert len(events_in(upgraded)) == len(rows)
    finally:
        upgraded.close()


def test_a_file_whose_cover_row_was_deleted_gets_exact_stats_and_it_back(db_path, clock):
    with seeded(db_path, clock, 29, {"busy": 700, "second": 90}, "mixed") as (q, _):
        exact(q, 3600)
        q.db.execute_sql(f'DELETE FROM "{COVER_TABLE}"')
        q.db.execute_sql(f'DELETE FROM "{SUMMARY_TABLE}" WHERE "minute" % 2 = 0')
        exact(q, 3600)
        assert cover(q)[1] > cover(q)[0] and summaries(q) > 0
        exact(q, 2 * 3600, "second")


@pytest.mark.parametrize("since", [0.0, 30.0, 299.0])
def test_a_short_window_reads_its_rows_and_stores_nothing(db_path, clock, since):
    with seeded(db_path, clock, 19, {"busy": 500}, "mixed") as (q, rng):
        exact(q, since)
        assert summaries(q) == 0 and cover(q)[:2] == (0, 0)
