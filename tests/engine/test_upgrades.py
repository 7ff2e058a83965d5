"""Upgrades (issue #18): a database round one's queuectl wrote (schema 1, and schema 4 as round
one's final code left SQLite files) opens with every job intact and gets what SPEC 6-8 need, on
SQLite and PostgreSQL; a database newer than the code is refused with one line, exit 1."""

from __future__ import annotations

import re
import sqlite3

import peewee
import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue, schema
from queuectl.cli import cli
from queuectl.executor import RunResult
from queuectl.models import STATES

from .test_schema_migration import VERSION_1

NEW_TABLES = {"job_event", "job_dep", "queue_setting", "schedule", "run_total", "hook_delivery"}
COLUMNS = ("id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
           "created_at", "updated_at", "started_at", "finished_at", "exit_code", "error",
           "output", "worker", "cwd")  # fmt: skip
KEPT = ("id", "command", "state", "attempts", "max_retries", "priority", "timeout", "exit_code",
        "error", "output", "worker", "cwd")  # fmt: skip


def round_one_jobs() -> list[tuple]:
    """Jobs in each state round one had, with every field it stored set somewhere."""
    rows = []
    for n in range(40):
        state = ("pending", "processing", "completed", "failed", "dead")[n % 5]
        finished = state in ("completed", "dead")
        rows.append((
            f"r1-{n:02d}", f"echo 'job {n}' \"$HOME\" \u00e9", state,
            0 if state == "pending" else 1 + n % 3, None if n % 2 else n % 4, n % 7 - 3,
            None if n % 3 else 12.5, 1_700_000_000.0 + n, 1_700_000_000.0 + n,
            1_700_000_100.0 + n, None if state == "pending" else 1_700_000_050.0 + n,
            1_700_000_090.0 + n if finished else None,
            {"completed": 0, "dead": 2, "failed": 1}.get(state),
            "exit code 2" if state in ("dead", "failed") else None,
            f"line 1\nline {n} \u2603\n" if state != "pending" else None,
            "gone-host:1:0" if state == "processing" else None, "/tmp",
        ))  # fmt: skip
    return rows


def postgres_version_1() -> list[str]:
    """VERSION_1 as round one's peewee models made it on PostgreSQL."""
    statements = []
    for statement in VERSION_1:
        statement = statement.replace('"seq" INTEGER NOT NULL PRIMARY KEY',
                                      '"seq" BIGSERIAL NOT NULL PRIMARY KEY')
        for column in ("run_at", "created_at", "updated_at", "started_at", "finished_at",
                       "heartbeat_at"):  # fmt: skip
            statement = statement.replace(f'"{column}" REAL', f'"{column}" DOUBLE PRECISION')
        statement = statement.replace('"stop_requested" INTEGER', '"stop_requested" BOOLEAN')
        statements.append(statement)
    return statements


def write_round_one(target: str, version: int) -> None:
    rows = round_one_jobs()
    insert = f"INSERT INTO job ({', '.join(COLUMNS)}) VALUES ({', '.join(['{p}'] * len(COLUMNS))})"
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as connection:
            for statement in postgres_version_1():
                connection.execute(statement)
            connection.execute("INSERT INTO queuectl_schema VALUES ('version', '1')")
            connection.execute("INSERT INTO config VALUES ('max-retries', '5')")
            with connection.cursor() as cursor:
                cursor.executemany(insert.replace("{p}", "%s"), rows)
        assert version == 1
        return
    connection = sqlite3.connect(target)
    try:
        for statement in VERSION_1:
            connection.execute(statement)
        connection.execute("INSERT INTO queuectl_schema VALUES ('version', '1')")
        connection.execute("INSERT INTO config VALUES ('max-retries', '5')")
        connection.executemany(insert.replace("{p}", "?"), rows)
        connection.commit()
    finally:
        connection.close()
    if version > 1:  # round one's own migrations, as its final code ran them (schema 2 to 4)
        from playhouse import migrate

        db = peewee.SqliteDatabase(target)
        try:
            migrator = migrate.SchemaMigrator.from_database(db)
            with db.atomic():
                for step in range(2, version + 1):
                    migrate.migrate(*schema.MIGRATIONS[step](migrator))
                db.execute_sql(f"UPDATE queuectl_schema SET value = '{version}'")
        finally:
            db.close()


UPGRADE_CASES = [
    pytest.param(("sqlite", 1), id="sqlite-v1"),
    pytest.param(("sqlite", 4), id="sqlite-v4"),
    pytest.param(("postgresql", 1), id="postgresql-v1", marks=pytest.mark.postgres),
]


@pytest.fixture
def old_target(request, tmp_path):
    backend, version = request.param
    target = str(tmp_path / "old.db") if backend == "sqlite" else request.getfixturevalue(
        "pg_target"
    )
    write_round_one(target, version)
    return target


@pytest.mark.parametrize("old_target", UPGRADE_CASES, indirect=True)
def test_a_round_one_database_upgrades_keeping_every_job(old_target):
    expected = {row[0]: dict(zip(COLUMNS, row)) for row in round_one_jobs()}
    queue = Queue(old_target)
    try:
        assert schema.read_version(queue.db) == schema.SCHEMA_VERSION
        assert NEW_TABLES <= set(queue.db.get_tables())
        jobs = {job.id: job.to_dict() for job in queue.list_jobs(limit=1000)}
        assert set(jobs) == set(expected)
        for job_id, row in expected.items():
            job = jobs[job_id]
            assert {key: job[key] for key in KEPT} == {key: row[key] for key in KEPT}, job_id
            assert (job["queue"], job["after"], job["schedule"]) == ("default", [], None)
        counts = {state: sum(1 for r in expected.values() if r["state"] == state)
                  for state in STATES}  # fmt: skip
        assert queue.counts() == counts
        assert queue.config()["max-retries"] == 5
        assert [info.name for info in queue.queues()] == ["default"]
        assert queue.schedules() == []

        # What SPEC 6-8 added works on it from the first change on.
        queue.config_set("on-completed", "true")
        queue.set_queue_limit("other", 2)  # ("default" has 8 running)
        queue.add_schedule("nightly", "0 3 * * *", JobSpec(command="true"))
        after = queue.enqueue_many([JobSpec(command="true", after=("r1-02", "r1-00"))])[0]
        assert sorted(after.to_dict()["after"]) == ["r1-00", "r1-02"]
        worker = queue.register_worker(1)
        job = queue.claim(worker)
        assert job is not None and job.id.startswith("r1-")
        queue.finish(job, RunResult(0, None, "ok\n"), worker)
        assert [e.event for e in queue.history(job.id)][-2:] == ["started", "completed"]
        assert [d.job_id for d in queue.deliveries()] == [job.id]
        assert queue.run_totals().runs[("default", "completed")] == 1
        first = queue.enqueue(JobSpec(command="true", queue="fresh"))
        then = queue.enqueue(JobSpec(command="true", queue="fresh", after=(first.id,)))
        queue.finish(queue.claim(worker, queues=("fresh",)), RunResult(0, None, ""), worker)
        assert queue.get(then.id).ready_at == queue.get(first.id).updated_at, "due from its end"
        queue.edit("r1-05", {"priority": 9, "queue": "moved"})
        assert queue.get("r1-05").queue == "moved"
        assert [j.id for j in queue.cancel(["r1-10"])] == ["r1-10"]
    finally:
        queue.close()
    again = Queue(old_target)  # opening it again migrates nothing
    try:
        assert schema.read_version(again.db) == schema.SCHEMA_VERSION
        assert len(again.list_jobs(limit=1000)) == len(expected) + 3
    finally:
        again.close()


@pytest.mark.parametrize("old_target", UPGRADE_CASES, indirect=True)
def test_an_upgrade_under_running_workers_says_to_restart_them(old_target):
    """QA: `status` upgraded a SQLite file under a worker of an older queuectl, which went on
    claiming but never fired a schedule again (its service said "no such table: job_count",
    then nothing), while `status` counted it live. The command that upgrades says so, naming
    the processes that heartbeat; a gone one (no heartbeat for a lease) is not named."""
    import time

    now = time.time()
    rows = [("old-1", "vm", 4242, now - 5, now - 0.5), ("old-2", "hostB", 77, now - 4, now - 1),
            ("gone", "vm", 13, now - 900, now - 600)]  # fmt: skip
    insert = ('INSERT INTO "worker" ("id", "host", "pid", "threads", "started_at", '
              '"heartbeat_at", "stop_requested") VALUES ({p}, {p}, {p}, 2, {p}, {p}, {false})')
    if old_target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(old_target, autocommit=True) as connection:
            connection.cursor().executemany(insert.format(p="%s", false="false"), rows)
    else:
        with sqlite3.connect(old_target) as connection:
            connection.executemany(insert.format(p="?", false="0"), rows)
        connection.close()
    first = CliRunner().invoke(cli, ["--db", old_target, "status", "--json"])
    assert first.exit_code == 0, first.output
    assert re.fullmatch(
        rf"Warning: upgraded the database \(schema [14] to {schema.SCHEMA_VERSION}\) while 2 "
        r"worker process\(es\) of an older queuectl ran on it \(pid 4242 on vm, pid 77 on "
        r"hostB\): restart them with this one \(`queuectl worker stop`, then `worker start`\)\n",
        first.stderr,
    ), first.stderr
    again = CliRunner().invoke(cli, ["--db", old_target, "status"])
    assert again.exit_code == 0 and again.stderr == "", "said once: by the upgrade"


def test_code_older_than_the_database_refuses_it_with_one_line(target):
    queue = Queue(target)
    queue.enqueue_many([JobSpec(command="true", id="keep-me")])
    newer = schema.SCHEMA_VERSION + 1
    queue.db.execute_sql(
        f"UPDATE queuectl_schema SET value = '{newer}' WHERE key = 'version'"
    )
    queue.close()
    for args in (["status"], ["enqueue", "true"], ["list", "--json"], ["worker", "start",
                                                                     "--burst"]):  # fmt: skip
        result = CliRunner().invoke(cli, ["--db", target, *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert result.exit_code == 1, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:"), lines
        assert "upgrade queuectl" in lines[0] and f"schema {newer}" in lines[0]
    # Nothing was changed: the version is still the newer one, the job still there.
    check = peewee.SqliteDatabase(target) if "://" not in target else None
    if check is not None:
        rows = check.execute_sql("SELECT value FROM queuectl_schema").fetchall()
        jobs = check.execute_sql("SELECT id FROM job").fetchall()
        check.close()
        assert rows == [(str(newer),)] and jobs == [("keep-me",)]


def test_schema_9_replaces_the_claim_record_and_the_window_index_keeping_rows(target):
    """Schema 9 (issue #16): started_at on the events, the stats' covering index in place of
    the one on "at" alone, no record written by a claim. Old rows stay; running the step again
    changes nothing."""
    queue = Queue(target)
    try:
        job = queue.enqueue("true")
        db = queue.db
        db.execute_sql('DROP INDEX "job_event_window"')
        db.execute_sql('CREATE INDEX "job_event_at" ON "job_event" ("at")')
        db.execute_sql('ALTER TABLE "job_event" DROP COLUMN "started_at"')
        db.execute_sql("UPDATE queuectl_schema SET value = '8' WHERE key = 'version'")
    finally:
        queue.close()
    upgraded = Queue(target)
    try:
        db = upgraded.db
        indexes = {index.name for index in db.get_indexes("job_event")}
        assert "job_event_window" in indexes and "job_event_at" not in indexes
        assert "started_at" in {column.name for column in db.get_columns("job_event")}
        from playhouse import migrate

        with upgraded._write():  # the step again: harmless
            migrate.migrate(*schema.MIGRATIONS[9](migrate.SchemaMigrator.from_database(db)))
        worker = upgraded.register_worker(1)
        claimed = upgraded.claim(worker)
        Event = upgraded.models.Event
        stored = Event.select().where(Event.job_id == job.id).order_by(Event.id)
        assert [e.event for e in stored] == ["enqueued"], "a claim writes no row"
        upgraded.finish(claimed, RunResult(0, None, ""), worker)
        ended = list(stored.clone())[-1]
        assert (ended.event, ended.started_at, ended.worker) == (
            "completed", claimed.started_at, worker,
        )  # fmt: skip
        assert [e.event for e in upgraded.history(job.id)] == ["enqueued", "started", "completed"]
    finally:
        upgraded.close()


# The trigger of the schema 15 that was taken back (024b735), as its step made it.
_WITHDRAWN_WHEN = 'NEW."waiting_on" = 0 AND OLD."waiting_on" > 0'
_WITHDRAWN_LAST = (
    'SELECT MAX(d."finished_at") FROM "job_dep" e JOIN "job" d ON d."seq" = e."dep_seq" '
    'WHERE e."job_seq" = NEW."seq"'
)
WITHDRAWN_15 = {
    "sqlite": [
        'CREATE TRIGGER "job_ready_at" AFTER UPDATE OF "waiting_on" ON "job" '
        f'WHEN {_WITHDRAWN_WHEN} BEGIN UPDATE "job" SET "run_at" = '
        f'MAX("run_at", COALESCE(({_WITHDRAWN_LAST}), "run_at")) WHERE "seq" = NEW."seq"; END',
    ],
    "postgresql": [
        'CREATE OR REPLACE FUNCTION "job_ready_at"() RETURNS trigger LANGUAGE plpgsql '
        'SET search_path FROM CURRENT AS $$ BEGIN NEW."run_at" := GREATEST(NEW."run_at", '
        f'({_WITHDRAWN_LAST})); RETURN NEW; END $$',
        'CREATE TRIGGER "job_ready_at" BEFORE UPDATE OF "waiting_on" ON "job" FOR EACH ROW '
        f'WHEN ({_WITHDRAWN_WHEN}) EXECUTE FUNCTION "job_ready_at"()',
        # the other one's change (4de0401 took it back): kept as it is by the upgrade
        'ALTER TABLE "job" ALTER COLUMN "timeout" TYPE double precision',
    ],
}


def _triggers(queue: Queue) -> set[str]:
    if queue.is_sqlite:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = "SELECT tgname FROM pg_trigger WHERE tgrelid = '\"job\"'::regclass"
    return {name for (name,) in queue.db.execute_sql(sql).fetchall()}


@pytest.mark.parametrize("stamped", [15, 17])
def test_a_database_of_a_withdrawn_schema_15_upgrades(target, tmp_path, stamped):
    """QA: two schema 15s were taken back (2026-12-05) before today's was made. A database one
    of them left says 15, or 17 once the last release ran its steps 16 and 17 over it, and had
    no `ready_at`: every listing failed, workers stalled. It is brought up from 14 instead."""
    from playhouse import migrate

    if target.startswith("postgresql://"):  # today's, made as that one was: no ready_at
        backend, made = "postgresql", Queue(target)
        db = made.db
        db.execute_sql('ALTER TABLE "job" DROP COLUMN "ready_at"')
    else:
        write_round_one(target, 14)  # round one's jobs, then the steps to 14 as they are
        backend, made, db = "sqlite", None, peewee.SqliteDatabase(target)
        # Those steps add today's `ready_at` (with schema 5's columns) and triggers that write
        # it: without them, as the code of the time left the file.
        for kind, name in db.execute_sql(
            "SELECT type, name FROM sqlite_master WHERE sql LIKE '%ready_at%' "
            "AND type IN ('trigger', 'view')"
        ).fetchall():
            db.execute_sql(f'DROP {kind.upper()} IF EXISTS "{name}"')  # (a view's go with it)
        db.execute_sql('ALTER TABLE "job" DROP COLUMN "ready_at"')
    try:
        with db.atomic():
            for statement in WITHDRAWN_15[backend]:
                db.execute_sql(statement)
            if stamped == 17:  # the last release's steps over it
                migrator = migrate.SchemaMigrator.from_database(db)
                for step in (16, 17):
                    migrate.migrate(*schema.MIGRATIONS[step](migrator))
            db.execute_sql(f"UPDATE queuectl_schema SET value = '{stamped}'")
    finally:
        (made or db).close()
    upgraded = Queue(target)
    try:
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert "ready_at" in {column.name for column in upgraded.db.get_columns("job")}
        assert "job_ready_at" not in _triggers(upgraded)
        before = len(upgraded.list_jobs(limit=1000))  # (listings failed: no such column)
        first = upgraded.enqueue(JobSpec(command="true", id="first", priority=100))
        then = upgraded.enqueue(JobSpec(command="true", id="then", priority=100,
                                        after=("first",)))  # fmt: skip
        worker = upgraded.register_worker(1)
        job = upgraded.claim(worker)
        assert job.id == "first"
        upgraded.finish(job, RunResult(0, None, ""), worker)
        assert upgraded.get(then.id).ready_at == upgraded.get(first.id).updated_at
        assert upgraded.get(then.id).run_at == then.run_at, "the withdrawn trigger is gone"
        assert upgraded.claim(worker).id == "then"
        assert len(upgraded.list_jobs(limit=1000)) == before + 2
        from .test_queue_counters import counted, exact

        assert counted(upgraded) == exact(upgraded)
    finally:
        upgraded.close()
