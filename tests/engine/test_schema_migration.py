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
from queuectl.models import STATES

# The states a version-1 file can hold (`cancelled` came later).
ROUND_ONE_STATES = ("pending", "processing", "completed", "failed", "dead")
# The tables as schema version 1 made them (queuectl's first release), word for word.
VERSION_1 = [
    'CREATE TABLE "config" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)',
    'CREATE TABLE "job" ("seq" INTEGER NOT NULL PRIMARY KEY, "id" VARCHAR(64) NOT NULL, '
    '"command" TEXT NOT NULL, "state" VARCHAR(16) NOT NULL, "attempts" INTEGER NOT NULL, '
    '"max_retries" INTEGER, "priority" INTEGER NOT NULL, "timeout" REAL, "run_at" REAL NOT NULL, '
    '"created_at" REAL NOT NULL, "updated_at" REAL NOT NULL, "started_at" REAL, '
    '"finished_at" REAL, "exit_code" INTEGER, "error" TEXT, "output" TEXT, '
    '"worker" VARCHAR(255), "cwd" TEXT NOT NULL)',
    'CREATE UNIQUE INDEX "job_id" ON "job" ("id")',
    'CREATE INDEX "job_claim_order" ON "job" ("priority" DESC, "run_at", "seq") '
    "WHERE (\"state\" IN ('pending', 'failed'))",
    'CREATE INDEX "job_due" ON "job" ("run_at") WHERE ("state" IN (\'pending\', \'failed\'))',
    'CREATE INDEX "job_state_seq" ON "job" ("state", "seq")',
    'CREATE INDEX "job_state_finished" ON "job" ("state", "finished_at")',
    'CREATE TABLE "queuectl_schema" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, '
    '"value" TEXT NOT NULL)',
    'CREATE TABLE "worker" ("id" VARCHAR(255) NOT NULL PRIMARY KEY, "host" VARCHAR(255) NOT '
    'NULL, "pid" INTEGER NOT NULL, "threads" INTEGER NOT NULL, "started_at" REAL NOT NULL, '
    '"heartbeat_at" REAL NOT NULL, "stop_requested" INTEGER NOT NULL)',
]

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
    try:
        for statement in VERSION_1:
            db.execute_sql(statement)
        db.execute_sql("INSERT INTO queuectl_schema (key, value) VALUES ('version', '1')")
        rows = []
        for n in range(300):
            state = ROUND_ONE_STATES[n % len(ROUND_ONE_STATES)]
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
        assert schema.read_version(queue.db) == schema.SCHEMA_VERSION >= 2
        assert queue.counts() == before == {
            **dict.fromkeys(STATES, 0), **{state: 60 for state in ROUND_ONE_STATES}
        }
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


def test_a_schema_3_file_stops_counting_inserts_twice(db_path):
    """Schema 3 counted inserts by a trigger, schema 4 in enqueue_many: never both."""
    queue = Queue(db_path)
    queue.enqueue_many([JobSpec(command="true")] * 3)
    queue.db.execute_sql(
        'CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "job_count" '
        '("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1;'
        " END"
    )
    queue.db.execute_sql("UPDATE queuectl_schema SET value = '3' WHERE key = 'version'")
    queue.close()
    upgraded = Queue(db_path)
    try:
        upgraded.enqueue_many([JobSpec(command="true")] * 4)
        assert upgraded.counts() == counted(db_path) == {**dict.fromkeys(STATES, 0), "pending": 7}
    finally:
        upgraded.close()


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


def pg_counted(queue: Queue) -> dict[str, int]:
    totals = dict.fromkeys(STATES, 0)
    for state, n in queue.db.execute_sql("SELECT state, COUNT(*) FROM job GROUP BY state"):
        totals[state] = n
    return totals


@pytest.mark.postgres
def test_a_postgresql_version_2_schema_upgrades_keeping_every_job(pg_target):
    queue = Queue(pg_target)
    queue.enqueue_many([JobSpec(command=f"echo {n}", id=f"pg-{n}") for n in range(30)])
    worker = queue.register_worker(1)
    for _ in range(10):
        queue.finish(queue.claim(worker), OK, worker)
    # Back to what schema 2 left on PostgreSQL: no counters.
    for statement in (
        "DROP TRIGGER job_count_insert ON job",
        "DROP TRIGGER job_count_delete ON job",
        "DROP TRIGGER job_count_update ON job",
        "DROP TABLE job_count_by_queue",  # (schema 18's, in place of schema 3's job_count)
        "DROP FUNCTION job_count_inserted, job_count_deleted, job_count_row",
        "UPDATE queuectl_schema SET value = '2' WHERE key = 'version'",
    ):
        queue.db.execute_sql(statement)
    queue.close()

    upgraded = Queue(pg_target)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert upgraded.counts() == pg_counted(upgraded)
        assert upgraded.counts()["completed"] == 10 and upgraded.counts()["pending"] == 20
        assert len(upgraded.list_jobs()) == 30
        worker = upgraded.register_worker(1)
        upgraded.finish(upgraded.claim(worker), FAILED, worker)
        upgraded.db.execute_sql("DELETE FROM job WHERE state = 'completed'")
        assert upgraded.counts() == pg_counted(upgraded)
    finally:
        upgraded.close()


@pytest.mark.postgres
def test_the_tuis_read_only_snapshot_leaves_the_folding_until_after_it(pg_target):
    """QA: once connections that were gone had left more than 100 count rows, the TUI's read
    (a read-only snapshot) tried to fold them, and failed every second, "cannot execute
    INSERT in a read-only transaction": its panes froze until another process counted."""
    from queuectl.tui.data import load_snapshot

    queue = Queue(pg_target)
    try:
        queue.enqueue("true")
        queue.db.execute_sql(
            "INSERT INTO job_count_by_queue (queue, state, shard, n) SELECT 'default', 'pending', -g, 0 "
            "FROM generate_series(1, 150) AS g"
        )
        snapshot = load_snapshot(queue)
        assert snapshot.counts["pending"] == 1 and snapshot.panes["waiting"]
        assert queue.db.execute_sql("SELECT COUNT(*) FROM job_count_by_queue").fetchone()[0] < 20
        assert queue.counts() == pg_counted(queue)
    finally:
        queue.close()


@pytest.mark.postgres
def test_postgresql_counts_survive_many_connections_and_folding(pg_target):
    queues = [Queue(pg_target) for _ in range(3)]
    try:
        for n, queue in enumerate(queues):  # each connection counts in a shard of its own
            queue.enqueue_many([JobSpec(command="true")] * (n + 1))
        first = queues[0]
        worker = first.register_worker(1)
        first.finish(first.claim(worker), OK, worker)
        assert first.counts() == pg_counted(first) == {
            **dict.fromkeys(STATES, 0), "pending": 5, "completed": 1,
        }  # fmt: skip
        # Shards of connections long gone (pids no backend has) are folded into shard 0.
        first.db.execute_sql(
            "INSERT INTO job_count_by_queue (queue, state, shard, n) SELECT 'default', 'pending', -g, 0 "
            "FROM generate_series(1, 150) AS g"
        )
        assert first.counts() == pg_counted(first)
        left = first.db.execute_sql("SELECT COUNT(*) FROM job_count_by_queue").fetchone()[0]
        assert left < 20
        assert first.counts() == pg_counted(first)
    finally:
        for queue in queues:
            queue.close()


@pytest.mark.postgres
def test_postgresql_counts_stay_exact_through_bulk_changes_and_their_fold(pg_target):
    """Schema 16: a cancel, a retry, a release count in rows of their own (one upsert of the
    same counter row per job cancelled was quadratic: 50,000 jobs after a cancelled one, 47 s).
    The counts add them in, and fold them once they are many, from any connection."""
    queue, other = Queue(pg_target), Queue(pg_target)
    try:
        root = queue.enqueue(JobSpec(command="true", id="root"))
        after = queue.enqueue_many([JobSpec(command="true", after=("root",))] * 300)
        queue.enqueue_many([JobSpec(command="true")] * 5)
        queue.cancel([root.id])  # and the 300 after it, in one statement
        assert queue.counts() == pg_counted(queue) == {
            **dict.fromkeys(STATES, 0), "pending": 5, "cancelled": 301,
        }  # fmt: skip
        changes = "SELECT COUNT(*) FROM job_count_change"
        assert queue.db.execute_sql(changes).fetchone()[0] == 0, "folded by that count"
        worker = other.register_worker(1)
        for _ in range(2):  # a claim and a run's end count in the connection's own rows
            other.finish(other.claim(worker), FAILED, worker)
        other.retry([root.id, *(job.id for job in after)])  # from another connection
        assert other.counts() == pg_counted(other)
        assert queue.counts() == pg_counted(queue)
        assert queue.counts()["pending"] == 5 - 2 + 301
    finally:
        queue.close()
        other.close()


@pytest.mark.postgres
def test_a_postgresql_schema_15_database_counts_changes_in_rows_of_their_own(pg_target):
    queue = Queue(pg_target)
    queue.enqueue_many([JobSpec(command="true", id=f"j{n}") for n in range(4)])
    queue.cancel(["j0"])
    before = queue.counts()
    # As schema 15 left it: its rows in the counters', no table of changes (its function
    # upserted the connection's row: made again by the step).
    from queuectl.reading import _FOLD_COUNTER_SHARDS

    queue.db.execute_sql(_FOLD_COUNTER_SHARDS)
    queue.db.execute_sql("DROP TABLE job_count_change")
    queue.db.execute_sql("UPDATE queuectl_schema SET value = '15' WHERE key = 'version'")
    queue.close()
    upgraded = Queue(pg_target)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert upgraded.counts() == before == pg_counted(upgraded)
        upgraded.cancel(["j1", "j2"])
        rows = upgraded.db.execute_sql("SELECT COUNT(*) FROM job_count_change").fetchone()[0]
        assert rows == 4, "-1 and +1 for each of the two"
        assert upgraded.counts() == pg_counted(upgraded)
        assert upgraded.counts()["cancelled"] == 3
    finally:
        upgraded.close()
