"""PostgreSQL schema 10: the counters', dependencies' and history's row triggers on a job's
change of state are one trigger (one PL/pgSQL call a change, not three). What they record must
not change: the same workflow is run on schema 9's three triggers and on schema 10's one, and
every record (jobs, counts, history, run totals, hook deliveries) must come out the same."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from support import assert_a_job_runs_and_is_recorded, FakeClock, pg_schema, pg_server

pytestmark = pytest.mark.postgres

OK = RunResult(0, None, "done")
FAIL = RunResult(3, "exit code 3", "")

# Schema 9's three row triggers, as its migrations made them (the functions of the counters and
# the dependencies are still made by schemas 3 and 7; the history's is made here).
SCHEMA_9_TRIGGERS = [
    'CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
    'WHEN (OLD."state" IS DISTINCT FROM NEW."state") EXECUTE FUNCTION "job_count_row"()',
    'CREATE TRIGGER "job_dep_changed" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
    "WHEN (OLD.\"state\" IS DISTINCT FROM NEW.\"state\" AND (OLD.\"state\" IN ('completed', "
    "'dead') OR NEW.\"state\" IN ('completed', 'dead'))) EXECUTE FUNCTION \"job_dep_changed\"()",
    'CREATE TRIGGER "job_history_update" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
    "WHEN (OLD.\"state\" IS DISTINCT FROM NEW.\"state\" AND NEW.\"state\" <> 'processing') "
    'EXECUTE FUNCTION "job_history_changed"()',
]


def row_triggers(q: Queue) -> dict[str, str]:
    """The row triggers on "job" (name -> function), but schema 18's on a change of queue
    (`edit --queue`), which a change of state does not fire."""
    rows = q.db.execute_sql(
        "SELECT t.tgname, p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = '\"job\"'::regclass AND NOT t.tgisinternal "
        "AND (t.tgtype & 1) = 1"  # TRIGGER_TYPE_ROW
    ).fetchall()
    return {name: function for name, function in rows if name != schema.REQUEUE_TRIGGER}


def back_to_schema_9_triggers(q: Queue) -> None:
    """Schema 9's three row triggers in place of schema 10's one."""
    function = (
        'CREATE OR REPLACE FUNCTION "job_history_changed"() RETURNS trigger LANGUAGE plpgsql '
        f"SET search_path FROM CURRENT AS $$ DECLARE {schema._PG_HISTORY_VARIABLES} BEGIN "
        f"{schema._pg_history_body()} RETURN NULL; END $$"
    )
    with q._write():
        q.db.execute_sql(f'DROP TRIGGER "{schema.PG_STATE_TRIGGER}" ON "job"')
        q.db.execute_sql(function)
        for statement in SCHEMA_9_TRIGGERS:
            q.db.execute_sql(statement)
    assert row_triggers(q) == {
        "job_count_update": "job_count_row",
        "job_dep_changed": "job_dep_changed",
        "job_history_update": "job_history_changed",
    }


def workflow(q: Queue, clock: FakeClock) -> dict[str, object]:
    """Every kind of change of state, then every record of it (worker ids as "W")."""
    q.config_set("on-completed", "echo done")
    q.config_set("on-dead", "echo dead")
    q.config_set("on-cancelled", "echo cancelled")
    q.enqueue_many([
        JobSpec(command="a", id="a"),
        JobSpec(command="b", id="b", after=["a"]),  # claimed as a completes
        JobSpec(command="c", id="c", max_retries=0),  # dies: d is blocked
        JobSpec(command="d", id="d", after=["c"]),
        JobSpec(command="e", id="e", after=["a", "c"]),
        JobSpec(command="f", id="f", max_retries=2),  # fails, is retried, dies
        JobSpec(command="g", id="g"),  # cancelled while it waits
        JobSpec(command="h", id="h"),  # cancelled while it runs
    ])  # fmt: skip
    worker = q.register_worker(1)
    q.cancel(["g"])
    failing = {"c", "f"}

    def drain() -> None:
        job = q.claim(worker)
        while job is not None:
            clock.advance(1)
            if job.id == "h":
                q.cancel(["h"])  # asked while it runs: its end is `cancelled`
            result = FAIL if job.id in failing else OK
            _, job = q.finish_and_claim(job, result, worker)
            if job is None:
                clock.advance(10)  # past f's backoff
                job = q.claim(worker)

    drain()
    q.retry_dead(["f"])  # d and e stay blocked: c is still dead
    drain()
    q.retry_dead(["c"])  # d and e unblocked; this time c completes, and so do they
    failing.clear()
    drain()
    q.retry(["a"])  # a completed job run again: its dependents are counted up, then down
    drain()
    q.rescue_lost()
    select = {
        "jobs": 'SELECT "id", "state", "attempts", "waiting_on", "error", "exit_code", "run_at", '
        '"started_at", "finished_at", "updated_at" FROM "job" ORDER BY "id"',
        "events": 'SELECT "job_id", "event", "attempt", "worker", "exit_code", "error", "at", '
        '"duration", "waited", "started_at" FROM "job_event" ORDER BY "id"',
        "totals": 'SELECT "queue", "outcome", "bucket", SUM("n"), SUM("seconds") FROM "run_total" '
        'GROUP BY 1, 2, 3 ORDER BY 1, 2, 3',
        "deliveries": 'SELECT "job_id", "state", "queue", "command", "attempts", "exit_code", '
        '"error", "hook", "at" FROM "hook_delivery" ORDER BY "id"',
    }
    records: dict[str, object] = {
        name: [tuple("W" if value == worker else value for value in row)
               for row in q.db.execute_sql(sql).fetchall()]
        for name, sql in select.items()
    }  # fmt: skip
    records["counts"] = q.counts()
    return records


def test_schema_10_records_what_schema_9s_three_triggers_recorded():
    with pg_schema(pg_server()) as old, pg_schema(pg_server()) as new:
        q9 = Queue(old, clock=FakeClock())
        try:
            back_to_schema_9_triggers(q9)
            expected = workflow(q9, q9.clock)  # type: ignore[arg-type]
        finally:
            q9.close()
        # A schema 9 database, upgraded.
        q = Queue(new, clock=FakeClock())
        back_to_schema_9_triggers(q)
        q.db.execute_sql("UPDATE \"queuectl_schema\" SET \"value\" = '9' WHERE \"key\" = 'version'")
        q.close()
        upgraded = Queue(new, clock=FakeClock())
        try:
            assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
            assert row_triggers(upgraded) == {"job_count_update": "job_state_changed"}
            got = workflow(upgraded, upgraded.clock)  # type: ignore[arg-type]
        finally:
            upgraded.close()
    assert got["events"] == expected["events"]
    assert got == expected
    # The workflow did what it is for: every kind of record is there.
    kinds = {event[1] for event in got["events"]}  # type: ignore[union-attr]
    assert {"enqueued", "completed", "failed", "dead", "cancelled", "blocked", "unblocked",
            "retried"} <= kinds  # fmt: skip
    assert {row[1] for row in got["deliveries"]} == {"completed", "dead", "cancelled"}  # type: ignore[union-attr]
    counted = {state: n for state, n in got["counts"].items() if n}  # type: ignore[union-attr]
    assert sum(counted.values()) == 8


def test_a_new_database_has_one_row_trigger_and_steps_again_are_harmless(pg_target):
    q = Queue(pg_target)
    try:
        assert row_triggers(q) == {"job_count_update": "job_state_changed"}
        from playhouse import migrate

        with q._write():  # schema 9's and 10's steps again: still one trigger
            migrator = migrate.SchemaMigrator.from_database(q.db)
            migrate.migrate(*schema.MIGRATIONS[9](migrator))
            migrate.migrate(*schema.MIGRATIONS[10](migrator))
        assert row_triggers(q) == {"job_count_update": "job_state_changed"}
        assert_a_job_runs_and_is_recorded(q)
    finally:
        q.close()
