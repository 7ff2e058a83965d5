"""Schema 2: per-state job counters kept by triggers (SQLite). A version-1 file upgrades without
losing a job, its counters start from the rows already there, and they stay exact through every
way a job changes state, also with several writers at once."""

from __future__ import annotations

import sqlite3
import threading

import peewee
import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.models import ALL_MODELS, STATES, SchemaInfo, database

OK = RunResult(0, None, "ok\n")
FAILED = RunResult(1, "exit code 1", "")


def counted(path: str) -> dict[str, int]:
    """The truth: counted row by row, outside queuectl."""
    totals = dict.fromkeys(STATES, 0)
    connection = sqlite3.connect(path)
    try:
        for state, n in connection.execute("SELECT state, COUNT(*) FROM job GROUP BY state"):
            totals[state] = n
    finally:
        connection.close()
    return totals


def make_version_1(path: str) -> None:
    """A file exactly as schema version 1 left it: the tables, no counters, jobs in every state."""
    db = peewee.SqliteDatabase(path, pragmas=[("journal_mode", "wal")])
    database.initialize(db)
    try:
        db.create_tables(ALL_MODELS)
        SchemaInfo.create(key="version", value="1")
        rows = []
        for n in range(300):
            state = STATES[n % len(STATES)]
            rows.append(
                (f"old-{n:03d}", f"echo {n}", state, 1 if state != "pending" else 0, 0.0 + n,
                 0.0 + n, 0.0 + n, "/tmp", "gone:1:0" if state == "processing" else None)
            )  # fmt: skip
        db.execute_sql("BEGIN")
        db.cursor().executemany(
            "INSERT INTO job (id, command, state, attempts, run_at, created_at, updated_at, cwd,"
            " worker, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            rows,
        )
        db.execute_sql("COMMIT")
    finally:
        db.close()


def test_a_version_1_file_upgrades_keeping_every_job(db_path):
    make_version_1(db_path)
    before = counted(db_path)
    assert sum(before.values()) == 300

    queue = Queue(db_path)
    try:
        assert schema.read_version(queue.db) == schema.SCHEMA_VERSION == 2
        assert queue.counts() == before == {state: 60 for state in STATES}
        assert {job.id for job in queue.list_jobs()} == {f"old-{n:03d}" for n in range(300)}
        assert queue.get("old-007").command == "echo 7"
        # The triggers work from the first change on.
        queue.enqueue_many([JobSpec(command="true")] * 5)
        assert queue.counts() == counted(db_path)
    finally:
        queue.close()
    again = Queue(db_path)  # opening it again does not migrate again
    try:
        assert again.counts() == counted(db_path)
    finally:
        again.close()


def test_a_new_file_counts_from_zero(db_path):
    queue = Queue(db_path)
    try:
        assert queue.counts() == dict.fromkeys(STATES, 0)
    finally:
        queue.close()


def test_counts_stay_exact_through_every_transition(db_path, clock):
    queue = Queue(db_path, clock=clock)
    try:
        queue.config_set("max-retries", 2)
        queue.enqueue_many([JobSpec(command=f"job {n}") for n in range(8)])
        assert queue.counts() == counted(db_path)
        worker = queue.register_worker(1)
        claimed = [queue.claim(worker) for _ in range(8)]
        assert queue.counts() == counted(db_path)
        for job in claimed[:3]:
            queue.finish(job, OK, worker)  # processing -> completed
        for job in claimed[3:6]:
            queue.finish(job, FAILED, worker)  # processing -> failed (retry later)
        queue.release(claimed[6], worker)  # processing -> pending
        assert queue.counts() == counted(db_path)
        clock.advance(10)
        for _ in range(4):  # the released job fails once; the retries: failed -> ... -> dead
            queue.finish(queue.claim(worker), FAILED, worker)
        assert queue.counts() == counted(db_path)
        assert queue.counts()["dead"] == 3
        queue.unregister_worker(worker)
        assert queue.rescue_lost()  # claimed[7] was still processing: a lost worker's job
        assert queue.counts() == counted(db_path)
        queue.retry_dead([job.id for job in queue.list_jobs("dead")][:1])  # dead -> pending
        assert queue.counts() == counted(db_path)
        queue.retry_all_dead()
        assert queue.counts() == counted(db_path)
        queue.db.execute_sql("DELETE FROM job WHERE state = 'completed'")
        assert queue.counts() == counted(db_path)
        assert queue.counts()["completed"] == 0
    finally:
        queue.close()


def test_counts_stay_exact_with_concurrent_writers(db_path):
    """Threads (each its own connection) enqueue, claim and finish at once; the counters agree
    with the rows at the end. (Processes share SQLite's one write lock the same way.)"""
    Queue(db_path).close()
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        queue = Queue(db_path)
        try:
            worker = queue.register_worker(1)
            for round_ in range(15):
                queue.enqueue_many([JobSpec(command=f"t{n}-{round_}-{k}") for k in range(4)])
                for _ in range(3):
                    job = queue.claim(worker)
                    if job is not None:
                        queue.finish(job, OK if round_ % 3 else FAILED, worker)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            queue.close()

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    queue = Queue(db_path)
    try:
        assert queue.counts() == counted(db_path)
        assert sum(queue.counts().values()) == 4 * 15 * 4
    finally:
        queue.close()


@pytest.mark.postgres
def test_postgresql_counts_match_the_rows(pg_target):
    queue = Queue(pg_target)
    try:
        queue.enqueue_many([JobSpec(command="true")] * 7)
        worker = queue.register_worker(1)
        queue.finish(queue.claim(worker), OK, worker)
        assert queue.counts() == {**dict.fromkeys(STATES, 0), "pending": 6, "completed": 1}
    finally:
        queue.close()
