"""Schema 12 (SQLite): "job_state_finished" holds finished jobs only, so a claim does not touch it.
Its readers (the completed, dead and cancelled panes, the throughput chart, the purge by age)
still find it, and return what they did, on a new file and on one upgraded from schema 11;
PostgreSQL keeps the index whole. And the per-state counters' table is WITHOUT ROWID, its counts
kept through the upgrade and exact after it."""

from __future__ import annotations

import sqlite3

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.states import State

OK = RunResult(0, None, "ok\n")
FAILED = RunResult(1, "exit code 1", "")
WHOLE = 'CREATE INDEX "job_state_finished" ON "job" ("state", "finished_at")'


# The counters' table (schema 18's, per queue: made WITHOUT ROWID too), and schema 12's.
COUNTER_SQL = ("SELECT sql FROM sqlite_master WHERE type = 'table' "
               f"AND name = '{schema.COUNTER_TABLE}'")  # fmt: skip
STATE_COUNTER_SQL = COUNTER_SQL.replace(schema.COUNTER_TABLE, schema.STATE_COUNTER_TABLE)


def counter_sql(connection: sqlite3.Connection) -> str:
    return connection.execute(STATE_COUNTER_SQL).fetchone()[0]


def rows_counted(queue: Queue) -> dict[str, int]:
    totals = dict.fromkeys(queue.counts(), 0)
    for state, n in queue.db.execute_sql("SELECT state, COUNT(*) FROM job GROUP BY state"):
        totals[state] = n
    return totals


def index_sql(queue: Queue) -> str:
    if queue.is_sqlite:
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?"
    else:
        query = ("SELECT indexdef FROM pg_indexes WHERE indexname = %s "
                 "AND schemaname = current_schema()")
    (row,) = queue.db.execute_sql(query, ("job_state_finished",)).fetchall()
    return row[0]


def fill(queue: Queue) -> dict[str, list[str]]:
    """Jobs in every state a pane shows, finished in a known order; the ids of each pane."""
    queue.enqueue_many([JobSpec(command="true", id=f"job-{n}", max_retries=0) for n in range(8)])
    worker = queue.register_worker(1)
    ended: dict[str, list[str]] = {"completed": [], "dead": []}
    for n in range(5):
        job = queue.claim(worker)
        queue.finish(job, OK if n % 2 == 0 else FAILED, worker)
        ended["completed" if n % 2 == 0 else "dead"].insert(0, job.id)
    queue.claim(worker)  # one left processing, two pending
    queue.cancel(["job-7"])
    ended["cancelled"] = ["job-7"]
    return ended


def plans(queue: Queue, read) -> list[str]:
    """The query plans of every statement ``read(queue)`` runs (with its own parameters)."""
    seen: list[tuple[str, tuple]] = []
    execute = queue.db.execute_sql

    def recording(sql, params=None, *args, **kwargs):
        seen.append((sql, tuple(params or ())))
        return execute(sql, params, *args, **kwargs)

    queue.db.execute_sql = recording
    try:
        read(queue)
    finally:
        del queue.db.execute_sql
    found = []
    for sql, params in seen:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            found.append(" / ".join(row[3] for row in rows))
    return found


READERS = {
    "completed pane": lambda q: q.pane(State.COMPLETED, 50),
    "dead pane": lambda q: q.pane(State.DEAD, 50),
    "cancelled pane": lambda q: q.pane(State.CANCELLED, 50),
    "throughput chart": lambda q: q.finished_per_second(60),
}


def check_readers(queue: Queue, ended: dict[str, list[str]]) -> None:
    for pane, ids in ended.items():
        assert [job.id for job in queue.pane(pane, 50)] == ids
    assert sum(queue.finished_per_second(60)) == len(ended["completed"]) + len(ended["dead"])
    if queue.is_sqlite:
        for name, read in READERS.items():
            (plan,) = plans(queue, read)
            assert "INDEX job_state_finished" in plan and "TEMP B-TREE FOR ORDER BY" not in plan, (
                name, plan)  # fmt: skip


def test_a_new_file_indexes_finished_jobs_only(target):
    queue = Queue(target)
    try:
        if queue.is_sqlite:
            assert " WHERE " in index_sql(queue)
            assert "WITHOUT ROWID" in queue.db.execute_sql(COUNTER_SQL).fetchone()[0]
        else:
            assert " WHERE " not in index_sql(queue)
        ended = fill(queue)
        check_readers(queue, ended)
        if queue.is_sqlite:  # the unfinished jobs are not in it
            (n,) = queue.db.execute_sql(
                'SELECT COUNT(*) FROM "job" INDEXED BY "job_state_finished" WHERE '
                + schema.SQLITE_FINISHED_WHERE
            ).fetchone()
            assert n == sum(len(ids) for ids in ended.values())
        assert queue.purge(states=("completed", "dead", "cancelled"), older_than=0) == 6
        assert queue.purge(states=("completed",), older_than=0) == 0
        assert sorted(job.state for job in queue.list_jobs()) == ["pending", "processing"]
        assert queue.counts() == rows_counted(queue)
    finally:
        queue.close()


def test_a_schema_11_file_upgrades_to_the_partial_index(tmp_path):
    path = str(tmp_path / "old.db")
    queue = Queue(path)
    ended = fill(queue)
    queue.close()
    old = sqlite3.connect(path)  # the index and version as schema 11 left them
    old.executescript(
        f'DROP INDEX "job_state_finished"; {WHOLE}; '
        # the counters' table as schema 11 had it: per state, a rowid table
        'CREATE TABLE "job_count" ("state" VARCHAR(16) NOT NULL PRIMARY KEY, '
        '"n" INTEGER NOT NULL); '
        'INSERT INTO "job_count" SELECT "state", COUNT(*) FROM "job" GROUP BY "state"; '
        f'DROP TABLE "{schema.COUNTER_TABLE}"; '
        "UPDATE queuectl_schema SET value = '11' WHERE key = 'version';"
    )
    assert "WITHOUT ROWID" not in counter_sql(old := sqlite3.connect(path))
    old.close()

    upgraded = Queue(path)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION >= 12
        assert " WHERE " in index_sql(upgraded)
        check_readers(upgraded, ended)
        assert "WITHOUT ROWID" in upgraded.db.execute_sql(COUNTER_SQL).fetchone()[0]
        assert upgraded.counts() == rows_counted(upgraded)
        assert upgraded.counts()["completed"] == 3 and upgraded.counts()["pending"] == 1
        upgraded.enqueue_many([JobSpec(command="true")])
        worker = upgraded.register_worker(1)
        job = upgraded.claim(worker)
        _, following = upgraded.finish_and_claim(job, OK, worker)
        assert following is not None
        assert upgraded.pane(State.COMPLETED, 1)[0].id == job.id
        assert upgraded.counts() == rows_counted(upgraded)
        upgraded.db.execute_sql("DELETE FROM job WHERE state = 'dead'")
        assert upgraded.counts() == rows_counted(upgraded)
    finally:
        upgraded.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
