"""The schema's version, creation and migrations (playhouse.migrate), never dropping data."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from typing import TYPE_CHECKING

import peewee

from .errors import QueueError
from .models import CLAIMABLE, RUN_BUCKETS, STATES, Models, State, sql_in

if TYPE_CHECKING:  # playhouse.migrate is imported only to migrate (every CLI start pays imports)
    from playhouse.migrate import SchemaMigrator

SCHEMA_VERSION = 20

# Per-state job counts, kept by triggers: `status` and every TUI refresh read a few rows instead
# of counting a million (75 ms on SQLite, 165 ms on PostgreSQL at 1M jobs). The triggers run
# inside the statement that changes a job, so the counts are exact at every commit, whoever
# changes the job (claim, finish, rescue, retry, delete). Schema 2 added them on SQLite, 3 on
# PostgreSQL. Schema 4 counts SQLite's inserts in Queue.enqueue_many instead (the only code that
# inserts jobs, in the same transaction): SQLite has only per-row triggers, and one firing per
# inserted row cost 10 us, a quarter of a 10,000-line `enqueue --file`.
STATE_COUNTER_TABLE = "job_count"  # schemas 2 to 17: per state
# Schema 16 (PostgreSQL): the rarer changes of state (a cancel, a retry, a release: anything but a
# claim and a run's end) each add rows here, -1 for the old state and +1 for the new, in place of
# the upsert of their connection's counter row. A row updated again and again in one transaction
# leaves a version behind each time, and each upsert walked past all of them: one statement that
# cancelled 10,000 jobs (those after a cancelled job) took 2 s, 50,000 took 47 s. Counts read
# these rows with the counters' (Reading.counts), and fold them into shard 0 with the shards of
# connections that are gone.
COUNTER_CHANGES = "job_count_change"
# Schema 18: the counters are kept per queue and state (a state's count is the sum over queues):
# `queue list`, the TUI's queues screen, `status --queue` and every Prometheus scrape counted every
# job of the queue instead (1.5 s at a million jobs, 15 s at ten million: past a scrape's timeout).
# A claim and a run's end move the same two counter rows as before, keyed by the job's queue too.
# The table has a name of its own, and the per-state one is dropped: a process of an older
# queuectl still running as the file is upgraded fails where it would write the per-state counts
# (it counted its inserts into every queue's pending count, for good: QA), instead of doing so.
COUNTER_TABLE = "job_count_by_queue"


class RunSql:
    """A migration step made of plain SQL statements (what playhouse.migrate has no operation
    for); like playhouse's operations it is run by ``migrate.migrate``."""

    def __init__(self, db: peewee.Database, statements: list[str]) -> None:
        self.db = db
        self.statements = statements

    def run(self) -> None:
        for statement in self.statements:
            self.db.execute_sql(statement)


class CreateTables:
    """A migration step that creates new tables (with their indexes) of ``models``."""

    def __init__(self, db: peewee.Database, models: list[type[peewee.Model]]) -> None:
        self.db = db
        self.models = models

    def run(self) -> None:
        from .models import bind

        bound = bind(self.db)
        self.db.create_tables([getattr(bound, model.__name__) for model in self.models], safe=True)


def counted_by_queue(db: peewee.Database) -> bool:
    """Whether the counters' table is schema 18's, keyed by queue and state (the statements
    that write it are made for the table the database has: a migration from an older schema
    runs the steps before 18 against the table as they left it). Asked of the list of tables:
    asking for its columns (as this did) made a new PostgreSQL schema take 146 ms, not 134."""
    return db.table_exists(COUNTER_TABLE)


def _sqlite_counted(by_queue: bool) -> tuple[str, str]:
    """SQLite: the statements of a row trigger that count its NEW row in and its OLD row out.
    The row counted in is made if it is not there (a job's first in its queue and state)."""
    if not by_queue:
        return (
            f'INSERT INTO "{STATE_COUNTER_TABLE}" ("state", "n") VALUES (NEW."state", 1) '
            'ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1;',
            f'UPDATE "{STATE_COUNTER_TABLE}" SET "n" = "n" - 1 WHERE "state" = OLD."state";',
        )
    return (
        f'INSERT INTO "{COUNTER_TABLE}" ("queue", "state", "n") '
        'VALUES (NEW."queue", NEW."state", 1) ON CONFLICT ("queue", "state") '
        'DO UPDATE SET "n" = "n" + 1;',
        f'UPDATE "{COUNTER_TABLE}" SET "n" = "n" - 1 WHERE "queue" = OLD."queue" '
        'AND "state" = OLD."state";',
    )


def sqlite_inserts_counted(db: peewee.Database) -> list[RunSql]:
    """Schema 4: SQLite's inserts are counted by Queue.enqueue_many, not by a trigger."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    return [RunSql(db, ['DROP TRIGGER IF EXISTS "job_count_insert"'])]


def postgres_job_counters(db: peewee.Database) -> list[RunSql]:
    """On PostgreSQL one counter row per state would be a hot row that serialises every claim
    and finish of every worker, so each connection counts in rows of its own (``shard`` = its
    backend pid, which runs one transaction at a time: no lock waits, no deadlocks). A count is
    the sum over shards; Queue.counts folds the shards of connections that are gone into
    shard 0. Inserts and deletes are counted per statement (a 10,000-job enqueue is one
    upsert), state changes per row."""
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [
        RunSql(
            db,
            [
                f'CREATE TABLE "{STATE_COUNTER_TABLE}" ("state" VARCHAR(16) NOT NULL, '
                '"shard" INTEGER NOT NULL, "n" BIGINT NOT NULL, PRIMARY KEY ("state", "shard"))',
                # No job may change between the initial count and the triggers.
                'LOCK TABLE "job" IN SHARE ROW EXCLUSIVE MODE',
                f'INSERT INTO "{STATE_COUNTER_TABLE}" ("state", "shard", "n") '
                'SELECT "state", 0, COUNT(*) FROM "job" GROUP BY "state"',
                *_pg_counter_functions(by_queue=False),
                'CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" REFERENCING NEW TABLE '
                'AS "new_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_count_inserted"()',
                'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" REFERENCING OLD TABLE '
                'AS "old_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_count_deleted"()',
                'CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
                'WHEN (OLD."state" IS DISTINCT FROM NEW."state") '
                'EXECUTE FUNCTION "job_count_row"()',
            ],
        )
    ]


_PG_FUNCTION = (
    'CREATE OR REPLACE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql '
    "SET search_path FROM CURRENT AS $$ BEGIN {body} RETURN NULL; END $$"
)


def _pg_counter_functions(by_queue: bool) -> list[str]:
    """PostgreSQL: the functions of the statement triggers that count inserted and deleted jobs
    (and schema 3's row trigger's, unused since schema 10), keyed by queue too from schema 18."""
    key = '"queue", "state"' if by_queue else '"state"'
    table = COUNTER_TABLE if by_queue else STATE_COUNTER_TABLE
    upsert = (
        f'INSERT INTO "{table}" AS c ({key}, "shard", "n") {{rows}} '
        f'ON CONFLICT ({key}, "shard") DO UPDATE SET "n" = c."n" + EXCLUDED."n";'
    )
    inserted = upsert.format(
        rows=f'SELECT {key}, pg_backend_pid(), COUNT(*) FROM "new_rows" GROUP BY {key}'
    )
    deleted = upsert.format(
        rows=f'SELECT {key}, pg_backend_pid(), -COUNT(*) FROM "old_rows" GROUP BY {key}'
    )
    old, new = ('OLD."queue", OLD."state"', 'NEW."queue", NEW."state"') if by_queue else (
        'OLD."state"', 'NEW."state"')  # fmt: skip
    by_row = upsert.format(
        rows=f"VALUES ({old}, pg_backend_pid(), -1), ({new}, pg_backend_pid(), 1)"
    )
    return [
        _PG_FUNCTION.format(name="job_count_inserted", body=inserted),
        _PG_FUNCTION.format(name="job_count_deleted", body=deleted),
        _PG_FUNCTION.format(name="job_count_row", body=by_row),
    ]


def sqlite_job_counters(db: peewee.Database) -> list[RunSql]:
    """SQLite (schema 2): the counters per state and their triggers. Run by schema 2's step and
    a new file's set-up, before schema 18 makes the table per queue; later schemas build their
    triggers on its update trigger, made for the table the database has."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    states = ", ".join(f"('{state.value}', 0)" for state in STATES)
    bump, drop = _sqlite_counted(counted_by_queue(db))
    return [
        RunSql(
            db,
            [
                f'CREATE TABLE "{STATE_COUNTER_TABLE}" '
                '("state" VARCHAR(16) NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL)',
                f'INSERT INTO "{STATE_COUNTER_TABLE}" ("state", "n") '
                'SELECT "state", COUNT(*) FROM "job" GROUP BY "state"',
                f'INSERT OR IGNORE INTO "{STATE_COUNTER_TABLE}" ("state", "n") VALUES {states}',
                f'CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN {bump} END',
                f'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN {drop} END',
                'CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" '
                f'WHEN OLD."state" IS NOT NEW."state" BEGIN {drop} {bump} END',
            ],
        )
    ]


def job_columns_5(migrator: SchemaMigrator) -> list[object]:
    """Schema 5: the job's queue, schedule, dependencies still open, cancel request and the
    bytes its run printed (SPEC 6 and 7); the events table of its history (SPEC 8). Columns
    that are there already are left as they are."""
    from .models import DEFAULT_QUEUE, Event, Job

    have = {column.name for column in migrator.database.get_columns("job")}
    columns = {
        "queue": peewee.CharField(max_length=64, default=DEFAULT_QUEUE),
        "schedule": Job.schedule,
        "waiting_on": peewee.IntegerField(default=0),
        "cancel_requested_at": Job.cancel_requested_at,
        "output_bytes": Job.output_bytes,
        # Schema 15's, here too: the triggers of schemas 7 to 14, made again as an older file
        # is brought up through them, already write it.
        "ready_at": Job.ready_at,
    }
    return [
        CreateTables(migrator.database, [Event]),
        *(migrator.add_column("job", name, field)
          for name, field in columns.items() if name not in have),
    ]  # fmt: skip


def workflows_7(migrator: SchemaMigrator) -> list[object]:
    """Schema 7 (SPEC 7): the dependency edges, the queues' settings and the schedules; the
    claim's partial indexes leave out jobs waiting for a dependency; the triggers that keep
    ``waiting_on`` and write the `blocked` / `unblocked` history. What is there already stays."""
    from .models import JobDep, QueueSetting, Schedule

    db = migrator.database
    return [
        CreateTables(db, [JobDep, QueueSetting, Schedule]),
        RunSql(db, ready_indexes(db)),
        *workflow_triggers(db),
    ]


def ready_indexes(db: peewee.Database) -> list[str]:
    """The claim's partial indexes over ready jobs (models.READY), in place of schema 1's over
    every claimable job; left alone where they are already so."""
    from .models import READY, WAITING_ON_DEPENDENCY

    order = '("priority" DESC, "run_at", "seq")'
    wanted = {
        "job_claim_order": f'CREATE INDEX "job_claim_order" ON "job" {order} WHERE ({READY})',
        "job_due": f'CREATE INDEX "job_due" ON "job" ("run_at") WHERE ({READY})',
        "job_blocked_order": (
            f'CREATE INDEX "job_blocked_order" ON "job" {order} WHERE ({WAITING_ON_DEPENDENCY})'
        ),
    }
    if isinstance(db, peewee.SqliteDatabase):
        rows = db.execute_sql(
            "SELECT \"name\", \"sql\" FROM sqlite_master WHERE \"type\" = 'index'"
        ).fetchall()
    else:
        rows = db.execute_sql(
            'SELECT "indexname", "indexdef" FROM pg_indexes WHERE "tablename" = \'job\' '
            'AND "schemaname" = current_schema()'
        ).fetchall()
    have = {name: definition or "" for name, definition in rows}
    statements = []
    for name, create in wanted.items():
        if name in have and "waiting_on" in have[name]:
            continue
        statements += [f'DROP INDEX IF EXISTS "{name}"', create]
    return statements


# Schema 15: a dependency that completes counts its dependents down and makes them due from its
# own store (its updated_at), where that is later than what they had: a dependent's wait, in
# history, stats and the oldest-waiting age, counts from its last dependency's end, not from its
# enqueue. Only those readers look at it (run_at, and so the claim order, is left as it was).
COUNT_DOWN = (
    '"waiting_on" = "waiting_on" - 1, "ready_at" = CASE WHEN "ready_at" >= NEW."updated_at" '
    'THEN "ready_at" ELSE NEW."updated_at" END'
)


def due_sql(row: str = "") -> str:
    """SQL: the time a job (``row``: ``OLD.`` in a trigger) is due from: its run_at, or its
    ready_at (schema 15: its last dependency's end, or its release) where that is later."""
    run_at, ready_at = f'{row}"run_at"', f'{row}"ready_at"'
    return f"CASE WHEN {ready_at} > {run_at} THEN {ready_at} ELSE {run_at} END"


# The time the run that ended (OLD) was due from (a claim leaves run_at as it was).
_OLD_DUE = due_sql("OLD.")


def _dependency_sql() -> tuple[str, str, str, str]:
    """The statements of a dependency's change of state (see :func:`workflow_triggers`), over a
    row trigger's NEW: count its dependents down, count them up, record `blocked`, `unblocked`."""
    dead = State.DEAD.value
    waiting = sql_in(CLAIMABLE).replace('"state"', 'j."state"')

    def count(assignments: str) -> str:
        return (
            f'UPDATE "job" SET {assignments} WHERE "seq" IN '
            '(SELECT "job_seq" FROM "job_dep" WHERE "dep_seq" = NEW."seq");'
        )

    def history(event: str, error: str) -> str:
        # Only where no other dependency of the job is dead: blocked once, unblocked once.
        return (
            'INSERT INTO "job_event" ("job_seq", "job_id", "queue", "at", "event", "attempt", '
            '"worker", "exit_code", "error") '
            f'SELECT j."seq", j."id", j."queue", NEW."updated_at", \'{event}\', j."attempts", '
            f'NULL, NULL, {error} FROM "job_dep" d JOIN "job" j ON j."seq" = d."job_seq" '
            f'WHERE d."dep_seq" = NEW."seq" AND {waiting} AND NOT EXISTS (SELECT 1 FROM '
            '"job_dep" o JOIN "job" q ON q."seq" = o."dep_seq" WHERE o."job_seq" = j."seq" '
            f'AND q."seq" <> NEW."seq" AND q."state" = \'{dead}\');'
        )

    return (
        count(COUNT_DOWN),
        count('"waiting_on" = "waiting_on" + 1'),
        history("blocked", "'dependency ' || NEW.\"id\" || ' is dead'"),
        history("unblocked", "NULL"),
    )


def _pg_dependency_body() -> str:
    """PL/pgSQL: what a change of a job's state does to the jobs that run after it."""
    completed, dead = State.COMPLETED.value, State.DEAD.value
    count_down, count_up, blocked, unblocked = _dependency_sql()
    return (
        f"IF NEW.\"state\" = '{completed}' THEN {count_down} "
        f"ELSIF OLD.\"state\" = '{completed}' THEN {count_up} END IF; "
        f"IF NEW.\"state\" = '{dead}' THEN {blocked} "
        f"ELSIF OLD.\"state\" = '{dead}' THEN {unblocked} END IF;"
    )


def workflow_triggers(db: peewee.Database) -> list[RunSql]:
    """A job that completes counts down its dependents' ``waiting_on`` in the statement that
    completes it (the SQLite worker's complete-and-claim is one statement: only a trigger is
    there); one that leaves `completed` (retried) counts them up again. A dependency that goes
    `dead` records `blocked` for its waiting dependents, and `unblocked` when it leaves `dead`.
    A deleted job's own edges go with it."""
    completed, dead = State.COMPLETED.value, State.DEAD.value
    count_down, count_up, blocked, unblocked = _dependency_sql()
    if isinstance(db, peewee.SqliteDatabase):
        def trigger(name: str, when: str, body: str) -> str:
            return (
                f'CREATE TRIGGER IF NOT EXISTS "{name}" AFTER UPDATE OF "state" ON "job" '
                f"WHEN {when} BEGIN {body} END"
            )

        return [
            RunSql(
                db,
                [
                    trigger("job_dep_completed", f"NEW.\"state\" = '{completed}' AND "
                            f"OLD.\"state\" IS NOT '{completed}'", count_down),
                    trigger("job_dep_uncompleted", f"OLD.\"state\" = '{completed}' AND "
                            f"NEW.\"state\" IS NOT '{completed}'", count_up),
                    trigger("job_dep_dead", f"NEW.\"state\" = '{dead}' AND "
                            f"OLD.\"state\" IS NOT '{dead}'", blocked),
                    trigger("job_dep_revived", f"OLD.\"state\" = '{dead}' AND "
                            f"NEW.\"state\" IS NOT '{dead}'", unblocked),
                    'CREATE TRIGGER IF NOT EXISTS "job_dep_deleted" AFTER DELETE ON "job" '
                    'BEGIN DELETE FROM "job_dep" WHERE "job_seq" = OLD."seq"; END',
                ],
            )
        ]  # fmt: skip
    function = _PG_FUNCTION
    changed = _pg_dependency_body()
    deleted = 'DELETE FROM "job_dep" WHERE "job_seq" IN (SELECT "seq" FROM "old_rows");'
    watched = f"('{completed}', '{dead}')"
    return [
        RunSql(
            db,
            [
                function.format(name="job_dep_changed", body=changed),
                function.format(name="job_dep_deleted", body=deleted),
                'DROP TRIGGER IF EXISTS "job_dep_changed" ON "job"',
                'CREATE TRIGGER "job_dep_changed" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
                'WHEN (OLD."state" IS DISTINCT FROM NEW."state" AND '
                f'(OLD."state" IN {watched} OR NEW."state" IN {watched})) '
                'EXECUTE FUNCTION "job_dep_changed"()',
                'DROP TRIGGER IF EXISTS "job_dep_deleted" ON "job"',
                'CREATE TRIGGER "job_dep_deleted" AFTER DELETE ON "job" REFERENCING OLD TABLE '
                'AS "old_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_dep_deleted"()',
            ],
        )
    ]


# -- schema 8: history, run totals and hook deliveries (SPEC 8) --------------------------------
#
# Every change of a job's state is recorded by triggers on "job", in the statement that makes it,
# whoever makes it (a worker's finish, a rescue, the CLI, the TUI, another host): one job_event
# row, one bump of run_total when a run ended, and one hook_delivery row when config on-<state>
# names a hook. The event is derived from the old and new state (see _history_sql). Schema 9: a
# claim writes no row (its statement stores started_at and worker on the job); the row of the
# run's end carries them (started_at, worker) and its wait from due, and History.history reads
# the `started` event back from it (or from the job while it runs). A rescue
# is `rescued` when the retry rules give the job another run, and `dead` (error "worker lost",
# the lost worker named) when they do not: a run ends with one event, whatever it led to.
# An event's time is the job's new updated_at: the clock of the code that changed it (a test's
# fake clock too). Every change of state sets it; SQL that changes a state must too.
# Enqueues: PostgreSQL records them with a statement-level trigger; SQLite in
# Queue.enqueue_many with one INSERT ... SELECT (the only code that inserts jobs, as for the
# counters of schema 4: a trigger per inserted row cost a large `enqueue --file` 25 %).
HISTORY_TRIGGERS = (  # job_history_start: schema 8's (a row per claim), dropped by schema 9
    "job_history_insert", "job_history_update", "job_history_start", "job_history_end", "job_hook",
    # SQLite, schema 10 (see sqlite_triggers_of_10): the history is in these (the first one also
    # keeps the counters of the rarer changes)
    "job_state_changed", "job_run_completed",
    # SQLite, schema 11 (see sqlite_triggers): the rarer changes' statements (on the view
    # job_change), a completed run's hook
    "job_change_recorded", "job_run_hooked",
)  # fmt: skip
SQLITE_ENQUEUED = (  # the jobs after seq ?, just inserted by Queue.enqueue_many
    'INSERT INTO "job_event" ("job_seq", "job_id", "queue", "at", "event", "attempt") '
    'SELECT "seq", "id", "queue", "created_at", \'enqueued\', "attempts" FROM "job" '
    'WHERE "seq" > ? ORDER BY "seq"'
)
_RUN_ENDS = (State.COMPLETED, State.FAILED, State.DEAD, State.CANCELLED)
HOOK_STATES = _RUN_ENDS  # config on-<state>
EVENT_COLUMNS = (
    "job_seq", "job_id", "queue", "at", "event", "attempt", "worker", "exit_code", "error",
    "duration", "waited", "started_at",
)  # fmt: skip
HOOK_COLUMNS = (
    "job_seq", "job_id", "state", "queue", "command", "attempts", "exit_code", "error", "hook",
    "at",
)  # fmt: skip


def _quote(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _history_sql(is_sqlite: bool) -> dict[str, str]:
    """The expressions of one state change's record, over a row trigger's OLD and NEW."""
    processing, pending = f"'{State.PROCESSING.value}'", f"'{State.PENDING.value}'"
    greatest = "MAX" if is_sqlite else "GREATEST"
    final = _quote(tuple(state.value for state in (State.COMPLETED, State.DEAD, State.CANCELLED)))
    ends = _quote(tuple(state.value for state in _RUN_ENDS))
    duration = (
        f'CASE WHEN OLD."state" = {processing} AND NEW."state" IN ({ends}) '
        'THEN COALESCE(NEW."finished_at", NEW."updated_at") - OLD."started_at" END'
    )
    bucket = (
        "CASE "
        + " ".join(f"WHEN {{d}} <= {bound!r} THEN {i}" for i, bound in enumerate(RUN_BUCKETS))
        + f" ELSE {len(RUN_BUCKETS)} END"
    )
    return {
        "at": 'NEW."updated_at"',
        "event": (
            f'CASE WHEN NEW."state" = {processing} THEN NULL '
            f"WHEN NEW.\"state\" = '{State.FAILED.value}' AND OLD.\"state\" = {processing} "
            f"AND NEW.\"error\" = '{_worker_lost()}' THEN 'rescued' "
            f'WHEN NEW."state" IN ({ends}) THEN NEW."state" '
            f'WHEN NEW."state" = {pending} AND OLD."state" = {processing} THEN \'released\' '
            f'WHEN NEW."state" = {pending} AND OLD."state" IN ({final}) THEN \'retried\' END'
        ),
        "attempt": f'CASE WHEN NEW."state" = {pending} AND OLD."state" = {processing} '
        'THEN OLD."attempts" ELSE NEW."attempts" END',
        "worker": f'CASE WHEN OLD."state" = {processing} THEN OLD."worker" END',
        "exit_code": f'CASE WHEN OLD."state" = {processing} THEN NEW."exit_code" END',
        "error": f'CASE WHEN NEW."state" IN ({ends}) THEN NEW."error" END',
        "duration": duration,
        # Schema 9: a run's row (written as it ends) says when it started and how long it had
        # waited from due (a claim leaves run_at as it was: OLD's is the due time of this run).
        "waited": f'CASE WHEN OLD."state" = {processing} AND OLD."started_at" IS NOT NULL '
        f'THEN {greatest}(OLD."started_at" - {_OLD_DUE}, 0) END',
        "started_at": f'CASE WHEN OLD."state" = {processing} THEN OLD."started_at" END',
        "bucket": bucket,
        "ends": ends,
    }


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def history_triggers(db: peewee.Database) -> list[RunSql]:
    """The triggers of schema 8 (replaced if there: running this again is harmless)."""
    if isinstance(db, peewee.SqliteDatabase):
        return _sqlite_history(db)
    return _postgres_history(db)


def _sqlite_history(db: peewee.Database) -> list[RunSql]:
    """A trigger per kind of change, each with a WHEN: SQLite runs a trigger's statements only
    when its WHEN holds. A claim records nothing (schema 9: the claim's own statement stores
    started_at and worker on the job); a finished run writes its one row, bumps its total and,
    when config on-<state> is set, records its hook delivery, all in one trigger (each trigger
    fired costs a few microseconds of its own). The general CASE is left to the rarer changes;
    a change to a final state that ends no run (a waiting job cancelled) records its hook in a
    trigger of its own."""
    x = _history_sql(is_sqlite=True)
    processing = f"'{State.PROCESSING.value}'"
    changed = 'OLD."state" IS NOT NEW."state"'
    run_ended = f'OLD."state" = {processing} AND NEW."state" IN ({x["ends"]})'
    insert = (
        f'INSERT INTO "job_event" ({_columns(EVENT_COLUMNS)}) '
        f'VALUES (NEW."seq", NEW."id", NEW."queue", {x["at"]}, '
    )
    duration = 'COALESCE(NEW."finished_at", NEW."updated_at") - OLD."started_at"'
    hook = (
        f'INSERT INTO "hook_delivery" ({_columns(HOOK_COLUMNS)}) '
        'SELECT NEW."seq", NEW."id", NEW."state", NEW."queue", NEW."command", NEW."attempts", '
        f'NEW."exit_code", NEW."error", "value", {x["at"]} FROM "config" '
        "WHERE \"key\" = 'on-' || NEW.\"state\" AND TRIM(\"value\") <> '';"
    )
    end = (
        f"{insert}CASE WHEN NEW.\"state\" = '{State.FAILED.value}' "
        f"AND NEW.\"error\" = '{_worker_lost()}' THEN 'rescued' ELSE NEW.\"state\" END, "
        f'NEW."attempts", OLD."worker", NEW."exit_code", NEW."error", {duration}, '
        f'MAX(OLD."started_at" - {_OLD_DUE}, 0), OLD."started_at"); '
        'INSERT INTO "run_total" ("queue", "outcome", "bucket", "shard", "n", "seconds") '
        f'VALUES (NEW."queue", NEW."state", {x["bucket"].format(d=duration)}, 0, 1, {duration}) '
        'ON CONFLICT ("queue", "outcome", "bucket", "shard") '
        'DO UPDATE SET "n" = "n" + 1, "seconds" = "seconds" + excluded."seconds";'
    )
    other = (
        f'{insert}{x["event"]}, {x["attempt"]}, {x["worker"]}, {x["exit_code"]}, {x["error"]}, '
        f'NULL, {x["waited"]}, {x["started_at"]});'
    )
    end += f" {hook}"
    hook_when = f'{changed} AND NEW."state" IN ({x["ends"]}) AND OLD."state" IS NOT {processing}'
    create = 'CREATE TRIGGER "{name}" AFTER UPDATE OF "state" ON "job" WHEN {when} BEGIN {body} END'
    return [
        RunSql(
            db,
            [
                *(f'DROP TRIGGER IF EXISTS "{name}"' for name in HISTORY_TRIGGERS),
                create.format(name="job_history_end", when=run_ended, body=end),
                create.format(
                    name="job_history_update",
                    when=f'{changed} AND NEW."state" <> {processing} AND NOT ({run_ended}) '
                    f'AND {x["event"]} IS NOT NULL',
                    body=other,
                ),
                create.format(name="job_hook", when=hook_when, body=hook),
            ],
        )
    ]


def _worker_lost() -> str:
    from .registry import WORKER_LOST  # here: the registry imports the engine that imports us

    return WORKER_LOST


def _pg_history_body(looked_up: bool = False) -> str:
    """PL/pgSQL (its variables declared by :data:`_PG_HISTORY_VARIABLES`): one change of state
    but a claim recorded, over a row trigger's OLD and NEW (see _history_sql). ``looked_up``:
    the hook's INSERT runs only once config is known to name a hook (an INSERT's set-up, run
    for nothing on every run's end, costs more than the look)."""
    x = _history_sql(is_sqlite=False)
    hook = "'on-' || NEW.\"state\" AND btrim(\"value\") <> ''"
    ends = f'NEW."state" IN ({x["ends"]})'
    if looked_up:
        ends += f' AND EXISTS (SELECT 1 FROM "config" WHERE "key" = {hook})'
    return (
        f't := {x["at"]}; e := {x["event"]}; d := {x["duration"]}; '
        f'IF e IS NOT NULL THEN INSERT INTO "job_event" ({_columns(EVENT_COLUMNS)}) VALUES '
        f'(NEW."seq", NEW."id", NEW."queue", t, e, {x["attempt"]}, {x["worker"]}, '
        f'{x["exit_code"]}, {x["error"]}, d, {x["waited"]}, {x["started_at"]}); END IF; '
        'IF d IS NOT NULL THEN INSERT INTO "run_total" AS r '
        '("queue", "outcome", "bucket", "shard", "n", "seconds") '
        f'VALUES (NEW."queue", NEW."state", {x["bucket"].format(d="d")}, pg_backend_pid(), 1, d) '
        'ON CONFLICT ("queue", "outcome", "bucket", "shard") '
        'DO UPDATE SET "n" = r."n" + 1, "seconds" = r."seconds" + EXCLUDED."seconds"; END IF; '
        f'IF {ends} THEN INSERT INTO "hook_delivery" '
        f'({_columns(HOOK_COLUMNS)}) SELECT NEW."seq", NEW."id", NEW."state", NEW."queue", '
        'NEW."command", NEW."attempts", NEW."exit_code", NEW."error", "value", t FROM "config" '
        f'WHERE "key" = {hook}; END IF;'
    )


_PG_HISTORY_VARIABLES = "e text; d float8; t float8;"


def _postgres_history(db: peewee.Database) -> list[RunSql]:
    """Enqueues recorded by a statement trigger; every other change of state but a claim by
    the one row trigger of schema 10 (:func:`postgres_state_triggers`), which does what schema
    9's `job_history_update` did (a claim records nothing, and calls no history)."""
    inserted = (
        f'BEGIN INSERT INTO "job_event" ({_columns(EVENT_COLUMNS[:6])}) '
        'SELECT "seq", "id", "queue", "created_at", \'enqueued\', "attempts" FROM "new_rows" '
        'ORDER BY "seq"; RETURN NULL; END'
    )
    function = (
        'CREATE OR REPLACE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql '
        "SET search_path FROM CURRENT AS $$ {body} $$"
    )
    return [
        RunSql(
            db,
            [
                function.format(name="job_history_inserted", body=inserted),
                *(f'DROP TRIGGER IF EXISTS "{name}" ON "job"' for name in HISTORY_TRIGGERS),
                'CREATE TRIGGER "job_history_insert" AFTER INSERT ON "job" REFERENCING NEW TABLE '
                'AS "new_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_history_inserted"()',
            ],
        ),
        *postgres_state_triggers(db),
    ]


# -- schema 10: one row trigger per change of state (PostgreSQL, issue #17) ---------------------
#
# Schemas 3, 7 and 8 each added a row trigger on a job's change of state: the counters, the
# dependencies, the history. Each trigger fired is a PL/pgSQL call of its own (its frame, its
# OLD and NEW rows built, its WHEN evaluated), three per finished run. Schema 10 runs the same
# statements, in the same order (the order PostgreSQL fired the three in: by name), from one
# function and one trigger. The trigger keeps the counters' name: the old functions stay, unused.
PG_STATE_TRIGGER = "job_count_update"
_PG_SEPARATE_TRIGGERS = ("job_count_update", "job_dep_changed", "job_history_update")


def postgres_state_triggers(db: peewee.Database, history: bool = True) -> list[RunSql]:
    """PostgreSQL: the one row trigger of a job's change of state (replacing the three separate
    ones, or itself: running this again is harmless). ``history=False``: without the history's
    part (the benchmark's "without history" side: dropping HISTORY_TRIGGERS leaves it there).
    Its function is schema 11's (:func:`_pg_state_function`)."""
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [
        RunSql(
            db,
            [
                _pg_state_function(db, history),
                *(f'DROP TRIGGER IF EXISTS "{name}" ON "job"' for name in _PG_SEPARATE_TRIGGERS),
                f'CREATE TRIGGER "{PG_STATE_TRIGGER}" AFTER UPDATE OF "state" ON "job" FOR EACH ROW '
                'WHEN (OLD."state" IS DISTINCT FROM NEW."state") '
                'EXECUTE FUNCTION "job_state_changed"()',
            ],
        )
    ]


# -- schema 11: the row trigger's function, cheaper for a claim and a run's end (issue #17) --------
#
# Schema 10's function ran, for every change of state, the counters' upsert, then an IF whose
# EXISTS made it a query (an executor started and ended) even for a claim, then the history's
# statements one by one; and it was declared `SET search_path FROM CURRENT`, so every call set the
# search path and set it back (a GUC nest level, the path parsed, every cached plan's path looked
# at again). Schema 11's does the same writes (a run's end does the dependencies' first: the
# writes do not depend on one another), by three paths:
# - a claim (-> processing): the counters' upsert only (a claim records no history, schema 9);
# - a run's end (processing -> completed, failed, dead, cancelled), one for every job that ran:
#   the dependencies' statements (a look at "job_dep" first, only for completed or dead), then
#   the counters, the run's event, its run total and its hook delivery in one statement (four
#   statements' executor set-ups become one);
# - any other change (retry, release, cancel of a waiting job, ...): schema 10's statements.
# It also sends the wake-ups of idle workers in every process (NOTIFY, sent at commit) that schema
# 10's complete-and-claim sent from its own statement: when a job with dependents completes (its
# dependents were counted down), and when a run ends in a queue with a limit (a place was freed).
# Sent from here, every way a run ends sends them, not only the complete-and-claim's, and the
# complete-and-claim (one a job) no longer looks for dependents and limits itself. Its tables are
# named with their schema (the one the function is made in), in place of the search path it set.
_PG_TABLES = (
    "job", "job_dep", "job_event", COUNTER_TABLE, STATE_COUNTER_TABLE, COUNTER_CHANGES,
    "run_total", "config",
    "hook_delivery", "queue_setting",
)  # fmt: skip


def _notify_channel(db: peewee.Database) -> str:
    from .watch import notify_channel  # PostgreSQL only (the watch module imports inotify)

    return notify_channel(db)


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_qualified(sql: str, schema: str) -> str:
    """``sql`` with each of _PG_TABLES that it names after FROM, JOIN, INTO or UPDATE named in
    ``schema``."""
    import re

    quoted = '"' + schema.replace('"', '""') + '"'
    tables = "|".join(re.escape(name) for name in _PG_TABLES)
    return re.sub(rf'\b(FROM|JOIN|INTO|UPDATE) "({tables})"', rf'\1 {quoted}."\2"', sql)


def _pg_state_function(db: peewee.Database, history: bool = True) -> str:
    """CREATE OR REPLACE of schema 11's "job_state_changed" (see above) in ``db``'s schema."""
    x = _history_sql(is_sqlite=False)
    processing = f"'{State.PROCESSING.value}'"
    watched = f"('{State.COMPLETED.value}', '{State.DEAD.value}')"
    by_queue = counted_by_queue(db)
    key, old, new = ('"queue", "state"', 'OLD."queue", OLD."state"', 'NEW."queue", NEW."state"') \
        if by_queue else ('"state"', 'OLD."state"', 'NEW."state"')  # fmt: skip
    count = (
        f'INSERT INTO "{COUNTER_TABLE if by_queue else STATE_COUNTER_TABLE}" AS c '
        f'({key}, "shard", "n") '
        f"VALUES ({old}, pg_backend_pid(), -1), ({new}, pg_backend_pid(), 1) "
        f'ON CONFLICT ({key}, "shard") DO UPDATE SET "n" = c."n" + EXCLUDED."n"'
    )
    # The dependencies' statements only for a job that has dependents (they select none
    # otherwise): the look is an index probe, an UPDATE's set-up opens every index of "job".
    # The states are tested first, on their own: a plain expression, no query.
    channel = _pg_literal(_notify_channel(db))
    woken = f"PERFORM pg_notify({channel}, '');"
    dependents = (
        f'IF OLD."state" IN {watched} OR NEW."state" IN {watched} THEN IF EXISTS '
        f'(SELECT 1 FROM "job_dep" WHERE "dep_seq" = NEW."seq") THEN {_pg_dependency_body()} '
        # Its dependents were counted down: the idle workers of every process look again.
        f"IF NEW.\"state\" = '{State.COMPLETED.value}' THEN {woken} END IF; END IF; END IF;"
    )
    # A run's end, as _history_sql records it with OLD in processing and NEW in a final state.
    event = (
        f"CASE WHEN NEW.\"state\" = '{State.FAILED.value}' AND NEW.\"error\" = '{_worker_lost()}' "
        "THEN 'rescued' ELSE NEW.\"state\" END"
    )
    recorded = (
        f', "recorded" AS (INSERT INTO "job_event" ({_columns(EVENT_COLUMNS)}) VALUES '
        f'(NEW."seq", NEW."id", NEW."queue", {x["at"]}, {event}, NEW."attempts", OLD."worker", '
        'NEW."exit_code", NEW."error", d, CASE WHEN OLD."started_at" IS NOT NULL '
        f'THEN GREATEST(OLD."started_at" - {_OLD_DUE}, 0) END, OLD."started_at")), '
        '"totalled" AS (INSERT INTO "run_total" AS r '
        '("queue", "outcome", "bucket", "shard", "n", "seconds") '
        f'SELECT NEW."queue", NEW."state", {x["bucket"].format(d="d")}, pg_backend_pid(), 1, d '
        'WHERE d IS NOT NULL ON CONFLICT ("queue", "outcome", "bucket", "shard") '
        'DO UPDATE SET "n" = r."n" + 1, "seconds" = r."seconds" + EXCLUDED."seconds"), '
        f'"hooked" AS (INSERT INTO "hook_delivery" ({_columns(HOOK_COLUMNS)}) SELECT NEW."seq", '
        'NEW."id", NEW."state", NEW."queue", NEW."command", NEW."attempts", NEW."exit_code", '
        f"NEW.\"error\", \"value\", {x['at']} FROM \"config\" "
        "WHERE \"key\" = 'on-' || NEW.\"state\" AND btrim(\"value\") <> '')"
    )
    # A run that ends in a queue with a limit frees a place there: the idle workers of every
    # process look again (the statement's SELECT; its WITH's writes run whatever it selects).
    run_end = (
        'd := COALESCE(NEW."finished_at", NEW."updated_at") - OLD."started_at"; '
        f'{dependents} WITH "counted" AS ({count}){recorded if history else ""} '
        f"SELECT COUNT(pg_notify({channel}, '')) INTO n FROM \"queue_setting\" "
        'WHERE "name" = NEW."queue" AND "max_running" IS NOT NULL;'
    )
    changed = f'INSERT INTO "{COUNTER_CHANGES}" ({key}, "n") VALUES ({old}, -1), ({new}, 1)'
    other = f"{changed}; {dependents} " + (
        f"IF NEW.\"state\" <> {processing} THEN {_pg_history_body(True)} END IF;" if history else ""
    )
    body = (
        f"DECLARE {_PG_HISTORY_VARIABLES} n bigint; BEGIN "
        f'IF OLD."state" = {processing} AND NEW."state" IN ({x["ends"]}) THEN {run_end} '
        f'ELSIF NEW."state" = {processing} THEN {count}; '
        f"ELSE {other} END IF; RETURN NULL; END"
    )
    schema = db.execute_sql("SELECT current_schema()").fetchone()[0] or "public"
    return (
        'CREATE OR REPLACE FUNCTION "job_state_changed"() RETURNS trigger LANGUAGE plpgsql '
        f"AS $$ {_pg_qualified(body, schema)} $$"
    )


def postgres_triggers_10(migrator: SchemaMigrator) -> list[object]:
    """Schema 10 (issue #17): PostgreSQL's row triggers on a job's change of state as one."""
    return list(postgres_state_triggers(migrator.database))


def postgres_hot_11(migrator: SchemaMigrator) -> list[object]:
    """Schema 11 (issue #17, PostgreSQL; nothing on SQLite): the state trigger's function made
    again (see _pg_state_function); the trigger itself is unchanged."""
    db = migrator.database
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [RunSql(db, [_pg_state_function(db)])]


def history_8(migrator: SchemaMigrator) -> list[object]:
    """Schema 8: a run's duration and a start's wait on its events, the run totals and the hook
    deliveries (new tables), and the triggers that write all three. Only what is missing is
    added; the triggers are replaced."""
    from .models import Event, HookDelivery, RunTotal

    db = migrator.database
    have = {column.name for column in db.get_columns("job_event")}
    # The events table of schema 5 is there: created again here, its model's indexes (schema
    # 9's among them) would name columns it does not have yet.
    tables = [RunTotal, HookDelivery] if have else [Event, RunTotal, HookDelivery]
    return [
        CreateTables(db, tables),
        *(migrator.add_column("job_event", name, getattr(Event, name))
          for name in ("duration", "waited") if name not in have),
        *history_triggers(db),
    ]  # fmt: skip


def history_9(migrator: SchemaMigrator) -> list[object]:
    """Schema 9 (issue #16): a run is one row, written as it ends, with ``started_at`` (and its
    ``waited``); nothing is written at a claim. The stats' covering index replaces the index on
    ``at`` alone. Rows already there are kept as they are (History.history reads both forms);
    what is there already is left, the triggers are replaced."""
    from .models import STATS_EVENTS, Event

    db = migrator.database
    have = {column.name for column in db.get_columns("job_event")}
    window = (
        'CREATE INDEX IF NOT EXISTS "job_event_window" ON "job_event" '
        f'("at", "queue", "event", "duration", "waited") WHERE ({STATS_EVENTS})'
    )
    return [
        *(migrator.add_column("job_event", name, getattr(Event, name))
          for name in ("started_at",) if name not in have),
        RunSql(db, ['DROP INDEX IF EXISTS "job_event_at"', window]),
        *history_triggers(db),
    ]  # fmt: skip


# -- schema 10: SQLite's triggers on a change of state, three in place of eight ------------------
#
# A worker's complete-and-claim changes two rows: the job that ran, processing -> completed, and
# the next one, pending or failed -> processing. Each trigger on "job" costs every statement that
# changes a state (SQLite sets up each trigger's program once a statement, runs it once a row,
# and only then tests its WHEN), and so does every temporary table a trigger's statement builds
# (an IN list, an IN subquery: a b-tree made and dropped). Schema 10 keeps what the triggers above
# write, exactly, in three triggers: the counters of a claim and of a run that completed, the rest
# of a run that completed (dependents, history row, run totals, hook: the states known, no CASE
# over them, no temporary table unless the job has dependents), and one for every other change,
# whose body is the eight triggers' statements, each under its trigger's WHEN, in the order the
# eight fired (the last created first).
SQLITE_STATE_TRIGGERS = (  # SQLite's triggers on a change of "state": schema 9's, schema 10's
    "job_count_update", "job_dep_completed", "job_dep_uncompleted", "job_dep_dead",
    "job_dep_revived", "job_history_end", "job_history_update", "job_hook",
    "job_state_changed", "job_counted", "job_run_completed",
)  # fmt: skip


def _trigger_parts(create: str) -> tuple[str, list[str]]:
    """The WHEN and the statements of a ``CREATE TRIGGER ... ON "job" WHEN ... BEGIN ... END``."""
    head, rest = create.split(' ON "job" WHEN ', 1)
    assert 'AFTER UPDATE OF "state"' in head, create
    when, body = rest.split(" BEGIN ", 1)
    assert body.endswith(" END"), create
    # No literal of these bodies holds a ';'.
    return when, [part.strip() for part in body[: -len(" END")].split(";") if part.strip()]


def _closing(text: str, start: int) -> int:
    """The index of the ')' closing the '(' at ``start`` (no literal here holds a parenthesis)."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(text)


def _guarded(statement: str, when: str) -> str:
    """``statement`` (an UPDATE ... WHERE, an INSERT ... VALUES, an INSERT ... SELECT ... WHERE)
    doing nothing unless ``when`` holds: a condition on OLD and NEW only, which SQLite tests
    once, before the statement reads any table."""
    if statement.startswith("INSERT") and " VALUES (" in statement:
        head, values = statement.split(" VALUES (", 1)
        end = _closing("(" + values, 0) - 1
        return f"{head} SELECT {values[:end]} WHERE ({when}){values[end + 1:]}"
    # Its last WHERE is the statement's own, and ends it; no OR binds looser than the AND added.
    assert " WHERE " in statement and " OR " not in statement, statement
    return f"{statement} AND ({when})"


def sqlite_triggers_of_10(db: peewee.Database, history: bool = True) -> list[RunSql]:
    """Schema 10 (SQLite): the triggers on a change of a job's state made again as three (see
    above); what they write is unchanged. Schema 11 (:func:`sqlite_triggers`) is made from them.
    ``history=False``: the same without the history's part."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    processing, completed = f"'{State.PROCESSING.value}'", f"'{State.COMPLETED.value}'"
    claimable = _quote(tuple(state.value for state in CLAIMABLE))
    claim = f'NEW."state" = {processing} AND OLD."state" IN ({claimable})'
    run_completed = f'OLD."state" = {processing} AND NEW."state" = {completed}'
    # Schema 9's triggers in the order they were created, so SQLite fired them last first.
    schema_9 = [
        *(sql for op in sqlite_job_counters(db) for sql in op.statements
          if sql.startswith('CREATE TRIGGER "job_count_update"')),
        *(sql for op in workflow_triggers(db) for sql in op.statements
          if 'AFTER UPDATE OF "state"' in sql),
        *(sql for op in _sqlite_history(db) for sql in op.statements
          if history and sql.startswith("CREATE")),
    ]  # fmt: skip
    assert len(schema_9) == (8 if history else 5), schema_9
    other = []
    for create in reversed(schema_9):
        when, statements = _trigger_parts(create)
        other += [_guarded(statement, when) + ";" for statement in statements]
    x = _history_sql(is_sqlite=True)
    duration = 'COALESCE(NEW."finished_at", NEW."updated_at") - OLD."started_at"'

    by_queue = counted_by_queue(db)

    def count(row: str, step: str) -> str:
        if by_queue:  # a job is counted out of its row, and into a row made if need be
            bump, drop = _sqlite_counted(by_queue)
            return drop if row == "OLD" else bump
        # every state has its row (made below)
        return (f'UPDATE "{STATE_COUNTER_TABLE}" SET "n" = "n" {step} '
                f'WHERE "state" = {row}."state";')  # fmt: skip

    dependents = 'SELECT "job_seq" FROM "job_dep" WHERE "dep_seq" = NEW."seq"'
    completed_history = (
        # job_history_end's, with the states known
        f'INSERT INTO "job_event" ({_columns(EVENT_COLUMNS)}) '
        f'VALUES (NEW."seq", NEW."id", NEW."queue", {x["at"]}, {completed}, NEW."attempts", '
        f'OLD."worker", NEW."exit_code", NEW."error", {duration}, '
        f'MAX(OLD."started_at" - {_OLD_DUE}, 0), OLD."started_at"); '
        'INSERT INTO "run_total" ("queue", "outcome", "bucket", "shard", "n", "seconds") '
        f'VALUES (NEW."queue", {completed}, {x["bucket"].format(d=duration)}, 0, 1, {duration}) '
        'ON CONFLICT ("queue", "outcome", "bucket", "shard") '
        'DO UPDATE SET "n" = "n" + 1, "seconds" = "seconds" + excluded."seconds"; '
        + _sqlite_completed_hook()
        + " "
    )
    completed_body = (completed_history if history else "") + (
        # job_dep_completed's: its IN builds a temporary table, only for a job with dependents
        f'UPDATE "job" SET {COUNT_DOWN} WHERE EXISTS ({dependents}) '
        f'AND "seq" IN ({dependents});'
    )
    states = ", ".join(f"('{state.value}', 0)" for state in STATES)
    create = 'CREATE TRIGGER "{name}" AFTER UPDATE OF "state" ON "job" WHEN {when} BEGIN {body} END'
    return [
        RunSql(
            db,
            [
                *(f'DROP TRIGGER IF EXISTS "{name}"' for name in SQLITE_STATE_TRIGGERS),
                *([] if by_queue else
                  [f'INSERT OR IGNORE INTO "{STATE_COUNTER_TABLE}" ("state", "n") '
                   f"VALUES {states}"]),
                create.format(name="job_state_changed", body=" ".join(other),
                              when=f'OLD."state" IS NOT NEW."state" AND NOT ({claim}) '
                              f"AND NOT ({run_completed})"),
                create.format(name="job_counted", when=f"({claim}) OR ({run_completed})",
                              body=count("OLD", "- 1") + " " + count("NEW", "+ 1")),
                create.format(name="job_run_completed", when=run_completed, body=completed_body),
            ],
        )
    ]  # fmt: skip


def sqlite_triggers_10(migrator: SchemaMigrator) -> list[object]:
    """Schema 10 (SQLite; nothing on PostgreSQL): see :func:`sqlite_triggers_of_10`."""
    return [*sqlite_triggers_of_10(migrator.database)]


def ready_queue_index_10(migrator: SchemaMigrator) -> list[object]:
    """Schema 10 (issue #17): the index on (queue, run_at) over ready jobs that finds each
    queue's oldest waiting job in one probe (models.READY_QUEUE_INDEX); a new file gets it from
    the model. Left alone where it is there."""
    from .models import READY, READY_QUEUE_INDEX

    db = migrator.database
    return [
        RunSql(db, [f'CREATE INDEX IF NOT EXISTS "{READY_QUEUE_INDEX}" ON "job" '
                    f'("queue", "run_at") WHERE ({READY})'])
    ]  # fmt: skip


def queue_claim_index_20(migrator: SchemaMigrator) -> list[object]:
    """Schema 20: each queue's ready jobs in claim order (models.QUEUE_CLAIM_INDEX), so that a
    held queue's backlog no longer slows every other queue's claims (statements.unheld_queue);
    a new database gets it from the model."""
    from .models import QUEUE_CLAIM_INDEX, READY

    db = migrator.database
    return [
        RunSql(db, [f'CREATE INDEX IF NOT EXISTS "{QUEUE_CLAIM_INDEX}" ON "job" '
                    f'("queue", "priority" DESC, "run_at", "seq") WHERE ({READY})'])
    ]  # fmt: skip


# -- schema 11: the complete-and-claim codes only the triggers it can fire (SQLite, issue #17) --
#
# SQLite codes into a statement every trigger whose UPDATE OF names a column the statement sets,
# and each row the statement changes enters each such trigger's program (a frame as large as the
# program: every register and cursor of its statements) before its WHEN is tested. The worker's
# complete-and-claim sets "state", so schema 10's `job_state_changed` (every rarer change: eight
# triggers' statements) cost it ~47,000 instructions a job, and fired never: its changes are a
# claim, a run that completed, and (rarely) a run that ended cancelled. Schema 11 keeps the
# trigger and its WHEN, with one statement for a body: it hands the change's OLD and NEW values
# (those the rarer changes read) to the view `job_change`, whose INSTEAD OF trigger runs the same
# statements, unchanged but for naming OLD."x" as NEW."old_x". Every write of "state", by any
# code (a user's SQL too), is recorded as before; nothing is stored in the view. And a run that
# completed counts its dependents down in a trigger of its own (`job_dep_completed`, as in schema
# 9), whose WHEN looks for one: an UPDATE whose WHERE has a subquery collects its rowids in a
# temporary b-tree (opened, a page zeroed, closed), which schema 10 did at every run's end, even
# with no dependent to count down. A completed run's hook (config on-completed) is recorded by a
# trigger of its own, there only while the key names a hook (`config set` makes or drops it, see
# :func:`sqlite_hook_trigger`): unset, a run's end no longer looks the key up and opens
# "hook_delivery" for nothing. (An INSERT ... SELECT into a view would not do: it fills a
# temporary b-tree with the rows it selects.)
SQLITE_CHANGE_VIEW = "job_change"
SQLITE_VIEW_TRIGGER = "job_change_recorded"  # INSTEAD OF INSERT ON "job_change"
SQLITE_HOOK_TRIGGER = "job_run_hooked"
HOOKED_KEY = f"on-{State.COMPLETED.value}"  # the hook SQLITE_HOOK_TRIGGER records


def _split_trigger(create: str) -> tuple[str, str, str]:
    """(``CREATE TRIGGER ... WHEN``, the WHEN, the statements) of a trigger made above."""
    head, rest = create.split(" WHEN ", 1)
    when, body = rest.split(" BEGIN ", 1)
    assert body.endswith(" END"), create
    return head, when, body[: -len(" END")]


def sqlite_triggers(db: peewee.Database, history: bool = True) -> list[RunSql]:
    """Schema 11 (SQLite): schema 10's triggers (:func:`sqlite_triggers_of_10`), the rarer
    changes' statements run from a view, the dependents' countdown under a WHEN of its own, a
    completed run's hook in a trigger there only while one is set (see above); what they write
    is unchanged. A new file gets them after the earlier schemas'. ``history=False``: the same
    without the history's part (the benchmark's A/B)."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    import re

    (made,) = sqlite_triggers_of_10(db, history)
    creates = {sql.split('"')[1]: sql for sql in made.statements if sql.startswith("CREATE")}
    rest = [sql for sql in made.statements if not sql.startswith("CREATE")]
    # The rarer changes: the view's columns are the job's values their statements read.
    head, when, body = _split_trigger(creates.pop("job_state_changed"))
    news = sorted(set(re.findall(r'NEW\."(\w+)"', when + body)))
    olds = sorted(set(re.findall(r'OLD\."(\w+)"', body)))
    columns = [f'"{name}"' for name in news] + [f'"old_{name}"' for name in olds]
    view = (
        f'CREATE VIEW "{SQLITE_CHANGE_VIEW}" AS SELECT '
        + ", ".join([f'"{name}"' for name in news] + [f'"{name}" AS "old_{name}"' for name in olds])
        + ' FROM "job" WHERE 0'  # the job's columns: NEW."x" compares as before (affinity)
    )
    values = [f'NEW."{name}"' for name in news] + [f'OLD."{name}"' for name in olds]
    handed = (
        f"{head} WHEN {when} BEGIN INSERT INTO \"{SQLITE_CHANGE_VIEW}\" ({', '.join(columns)}) "
        f"VALUES ({', '.join(values)}); END"
    )
    recorded = re.sub(r'OLD\."(\w+)"', r'NEW."old_\1"', body)
    assert "OLD." not in recorded, recorded
    # A run that completed counts its dependents down in a trigger of its own (see above).
    head, completed_when, completed_body = _split_trigger(creates.pop("job_run_completed"))
    dependents = 'SELECT "job_seq" FROM "job_dep" WHERE "dep_seq" = NEW."seq"'
    count_down = (
        f'UPDATE "job" SET {COUNT_DOWN} WHERE EXISTS ({dependents}) '
        f'AND "seq" IN ({dependents});'
    )
    assert completed_body.endswith(count_down), completed_body
    completed_body = completed_body[: -len(count_down)].strip()
    if history:  # the hook's INSERT, its trigger's body (see sqlite_hook_trigger)
        hook = _sqlite_completed_hook()
        assert hook in completed_body, completed_body
        completed_body = completed_body.replace(hook, "").strip()
    counted_down = (
        f'CREATE TRIGGER "job_dep_completed" AFTER UPDATE OF "state" ON "job" WHEN '
        f"{completed_when} AND EXISTS ({dependents}) BEGIN "
        f'UPDATE "job" SET {COUNT_DOWN} WHERE "seq" IN ({dependents}); END'
    )
    return [
        RunSql(
            db,
            [
                f'DROP TRIGGER IF EXISTS "{SQLITE_VIEW_TRIGGER}"',
                f'DROP TRIGGER IF EXISTS "{SQLITE_HOOK_TRIGGER}"',
                f'DROP VIEW IF EXISTS "{SQLITE_CHANGE_VIEW}"',
                *rest,  # schema 10's: its triggers dropped, every state's counter row there
                view,
                f'CREATE TRIGGER "{SQLITE_VIEW_TRIGGER}" INSTEAD OF INSERT ON '
                f'"{SQLITE_CHANGE_VIEW}" BEGIN {recorded} END',
                handed,
                *creates.values(),  # job_counted as it was
                counted_down,  # made before: fires after (as the statement it was did)
                *([f"{head} WHEN {completed_when} BEGIN {completed_body} END"]
                  if completed_body else []),
            ],
        ),
        *(sqlite_hook_trigger(db) if history else []),
    ]


def _sqlite_completed_hook() -> str:
    """SQLite: the statement that records a completed run's hook delivery (config on-completed
    read as the run ends; an empty hook records nothing): schema 10's, in job_run_completed, and
    schema 11's, in SQLITE_HOOK_TRIGGER."""
    completed = f"'{State.COMPLETED.value}'"
    return (
        f'INSERT INTO "hook_delivery" ({_columns(HOOK_COLUMNS)}) '
        f'SELECT NEW."seq", NEW."id", {completed}, NEW."queue", NEW."command", NEW."attempts", '
        f'NEW."exit_code", NEW."error", "value", {_history_sql(is_sqlite=True)["at"]} '
        f"FROM \"config\" WHERE \"key\" = '{HOOKED_KEY}' AND TRIM(\"value\") <> '';"
    )


def sqlite_hook_trigger(db: peewee.Database) -> list[RunSql]:
    """SQLite (schema 11): the trigger that records a completed run's hook delivery, made when
    config on-completed names a hook, dropped when it names none (see above). What it records
    is schema 10's: config is read as the run ends, an empty hook records nothing. Run in the
    transaction that sets the key (QueueCore.config_set), and by every set-up of the triggers."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    hooked = db.execute_sql(
        'SELECT 1 FROM "config" WHERE "key" = ? AND TRIM("value") <> \'\'', (HOOKED_KEY,)
    ).fetchone()
    create = (
        f'CREATE TRIGGER "{SQLITE_HOOK_TRIGGER}" AFTER UPDATE OF "state" ON "job" WHEN '
        f"OLD.\"state\" = '{State.PROCESSING.value}' AND NEW.\"state\" = "
        f"'{State.COMPLETED.value}' BEGIN {_sqlite_completed_hook()} END"
    )
    drop = f'DROP TRIGGER IF EXISTS "{SQLITE_HOOK_TRIGGER}"'
    return [RunSql(db, [drop, *([create] if hooked else [])])]


def sqlite_hot_11(migrator: SchemaMigrator) -> list[object]:
    """Schema 11 (SQLite; nothing on PostgreSQL): see :func:`sqlite_triggers`. Running it again
    is harmless (the triggers and views are made again)."""
    return [*sqlite_triggers(migrator.database)]


# -- schema 12: the finished jobs' index leaves unfinished jobs out (SQLite, issue #17) ----------
#
# "job_state_finished" (state, finished_at) held every job, so every change of state moved the
# job's entry: a claim (pending -> processing) took one out and put one in, a run's end took the
# processing entry out. The readers of that index only look for finished jobs: the completed,
# dead and cancelled panes (`"state" = ?`, ordered by finished_at), the throughput chart and
# the purge (`"finished_at" >= ?` or `< ?`). Schema 12 keeps in it only the jobs one of them
# can find, by a WHERE each of their own WHEREs implies (SQLite's planner proves a partial
# index usable by such a match, a bound state compared as its value): a claim no longer
# touches it, and a run's end puts one entry in. PostgreSQL keeps the index as it was.
SQLITE_FINISHED_INDEX = "job_state_finished"
SQLITE_FINISHED_WHERE = '"finished_at" IS NOT NULL OR ' + " OR ".join(
    f"\"state\" = '{state.value}'" for state in (State.COMPLETED, State.DEAD, State.CANCELLED)
)


def _sqlite_definition(db: peewee.Database, kind: str, name: str) -> str | None:
    """The CREATE statement SQLite keeps for the ``kind`` ("table", "index") named ``name``."""
    row = db.execute_sql(
        "SELECT \"sql\" FROM sqlite_master WHERE \"type\" = ? AND \"name\" = ?", (kind, name)
    ).fetchone()
    return None if row is None else row[0]


def sqlite_finished_index(db: peewee.Database) -> list[RunSql]:
    """SQLite (schema 12): "job_state_finished" made again as a partial index (see above), once:
    an index already partial is left alone (a new file's is made by create_tables, whole)."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    made = _sqlite_definition(db, "index", SQLITE_FINISHED_INDEX)
    if made is not None and " WHERE " in made:
        return []
    return [
        RunSql(
            db,
            [
                f'DROP INDEX IF EXISTS "{SQLITE_FINISHED_INDEX}"',
                f'CREATE INDEX "{SQLITE_FINISHED_INDEX}" ON "job" ("state", "finished_at") '
                f"WHERE {SQLITE_FINISHED_WHERE}",
            ],
        )
    ]


def sqlite_counters_without_rowid(db: peewee.Database) -> list[RunSql]:
    """SQLite (schema 12): the per-state counters' table made again WITHOUT ROWID, its rows kept.
    A claim and a run's end each move two counters (trigger job_counted): in a rowid table each
    UPDATE found the state in its primary key's index, then the row by its rowid; now the key
    is the row's place, one look-up. The table is made new and renamed to the old one's name
    (the triggers that write it name it: legacy_alter_table leaves them as they are, and they
    name the new table once it has that name). Done once: a table without rowid is left alone."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    made = _sqlite_definition(db, "table", STATE_COUNTER_TABLE)
    if made is None or "WITHOUT ROWID" in made.upper():
        return []
    made = f"{STATE_COUNTER_TABLE}_12"
    return [
        RunSql(
            db,
            [
                f'DROP TABLE IF EXISTS "{made}"',
                f'CREATE TABLE "{made}" ("state" VARCHAR(16) NOT NULL PRIMARY KEY, '
                '"n" INTEGER NOT NULL) WITHOUT ROWID',
                f'INSERT INTO "{made}" ("state", "n") '
                f'SELECT "state", "n" FROM "{STATE_COUNTER_TABLE}"',
                "PRAGMA legacy_alter_table = ON",
                f'DROP TABLE "{STATE_COUNTER_TABLE}"',
                f'ALTER TABLE "{made}" RENAME TO "{STATE_COUNTER_TABLE}"',
                "PRAGMA legacy_alter_table = OFF",
            ],
        )
    ]


def sqlite_hot_12(migrator: SchemaMigrator) -> list[object]:
    """Schema 12 (SQLite; nothing on PostgreSQL): see :func:`sqlite_finished_index` and
    :func:`sqlite_counters_without_rowid`."""
    return [*sqlite_finished_index(migrator.database),
            *sqlite_counters_without_rowid(migrator.database)]  # fmt: skip


# -- schema 13: no "job_due" on PostgreSQL (issue #17) -------------------------------------------
#
# Every UPDATE of a job row on PostgreSQL makes a new row version (the state is indexed: never
# HOT), and every such statement opens every index of "job", builds its description and, for a
# partial one, prepares its WHERE to test the new version against it, whether or not the version
# goes in: a claim and a run's end pay that for each index (~25k server instructions a job for
# "job_due", which a claim's or a run's end's version never enters). "job_due" (run_at, over
# ready jobs) served one read, an idle worker's next due time (Lifecycle.next_due_in): on
# PostgreSQL that read takes "job_ready_queue" (queue, run_at, over the same jobs) instead, one
# probe per queue with ready jobs (a loose index scan, as History.oldest_waiting). SQLite keeps
# "job_due" (its statements do not pay per index so).
PG_DROPPED_INDEX = "job_due"


def postgres_due_index(db: peewee.Database) -> list[RunSql]:
    """PostgreSQL (schema 13): "job_due" dropped (see above); a new database's too (create_tables
    makes it from the model, which SQLite keeps)."""
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [RunSql(db, [f'DROP INDEX IF EXISTS "{PG_DROPPED_INDEX}"'])]


def postgres_hot_13(migrator: SchemaMigrator) -> list[object]:
    """Schema 13 (PostgreSQL; nothing on SQLite): see :func:`postgres_due_index`."""
    return [*postgres_due_index(migrator.database)]


# -- schema 14: per-minute summaries for stats (SQLite; issue #17) -------------------------------


def sqlite_stats_minutes(db: peewee.Database) -> list[RunSql]:
    """SQLite (schema 14): the tables of :mod:`queuectl.minutes`, empty (the first `stats` of a
    long enough window fills them). Nothing on PostgreSQL, whose server ranks the runs."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    from .minutes import create_sql

    return [RunSql(db, create_sql())]


# -- schema 15: a dependent is due from its last dependency's end (SPEC 7 and 8) -----------------


def ready_at_15(migrator: SchemaMigrator) -> list[object]:
    """Schema 15: the job's ``ready_at`` (see COUNT_DOWN) and the triggers that write and read
    it, made again. A column that is there already (added by schema 5's step) is left. A job
    already released by its dependencies, still waiting for a worker, is given the last end
    among them (QA: one released before the upgrade counted its wait from its enqueue)."""
    from .models import Job

    db = migrator.database
    have = {column.name for column in db.get_columns("job")}
    if isinstance(db, peewee.SqliteDatabase):
        triggers = [*sqlite_triggers(db)]
    else:
        triggers = [RunSql(db, [_pg_state_function(db)])]
    released = (
        'UPDATE "job" SET "ready_at" = (SELECT MAX(p."updated_at") FROM "job_dep" d JOIN "job" p '
        'ON p."seq" = d."dep_seq" WHERE d."job_seq" = "job"."seq") '
        f'WHERE {sql_in(CLAIMABLE)} AND "waiting_on" = 0 AND "ready_at" IS NULL '
        'AND EXISTS (SELECT 1 FROM "job_dep" d WHERE d."job_seq" = "job"."seq")'
    )
    return [
        *(migrator.add_column("job", name, Job.ready_at)
          for name in ("ready_at",) if name not in have),
        RunSql(db, [released]),
        *triggers,
    ]  # fmt: skip


# -- schema 16: the rarer changes of state counted in rows of their own (PostgreSQL) ------------


def postgres_count_changes(db: peewee.Database) -> list[RunSql]:
    """PostgreSQL: the table of :data:`COUNTER_CHANGES` (see there); nothing on SQLite, whose
    counter rows are changed in place."""
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [
        RunSql(
            db,
            [
                f'CREATE TABLE IF NOT EXISTS "{COUNTER_CHANGES}" '
                '("state" VARCHAR(16) NOT NULL, "n" INTEGER NOT NULL)'
            ],
        )
    ]


def postgres_count_changes_16(migrator: SchemaMigrator) -> list[object]:
    """Schema 16 (PostgreSQL; nothing on SQLite): the table, then the state trigger's function
    that writes it."""
    db = migrator.database
    if isinstance(db, peewee.SqliteDatabase):
        return []
    return [*postgres_count_changes(db), RunSql(db, [_pg_state_function(db)])]


# -- schema 17: a dependency's id kept on its edge (SPEC 7 `after`) ----------------------------


def dependency_ids_17(migrator: SchemaMigrator) -> list[object]:
    """Schema 17: ``job_dep.dep_id``, so a job's `after` still names a dependency once it is
    purged (QA: it became ``[]``), filled in for every edge whose dependency is still there. A
    column that is there already (made by schema 7's step from today's model) is left."""
    from .tables import JobDep

    db = migrator.database
    have = {column.name for column in db.get_columns("job_dep")}
    filled = (
        'UPDATE "job_dep" SET "dep_id" = (SELECT "id" FROM "job" WHERE "job"."seq" = '
        '"job_dep"."dep_seq") WHERE "dep_id" IS NULL'
    )
    return [
        *(migrator.add_column("job_dep", name, JobDep.dep_id)
          for name in ("dep_id",) if name not in have),
        RunSql(db, [filled]),
    ]  # fmt: skip


# -- schema 18: the counters kept per queue and state (SPEC 7, 8; issue #17) ---------------------


class Then:
    """A migration step made when it runs, after the steps before it: the statements that write
    the counters are made for the table the database has (:func:`counted_by_queue`), which
    the steps before it made."""

    def __init__(self, make: Callable[[], list[RunSql]]) -> None:
        self.make = make

    def run(self) -> None:
        for operation in self.make():
            operation.run()


REQUEUE_TRIGGER = "job_count_requeue"  # a job moved to another queue (`edit --queue`)


def _requeue_trigger(db: peewee.Database) -> list[str]:
    """The trigger that moves a job's count to its new queue when `edit` moves it (its state
    unchanged: a change of state counts both in the state's triggers)."""
    if isinstance(db, peewee.SqliteDatabase):
        bump, drop = _sqlite_counted(by_queue=True)
        return [
            f'DROP TRIGGER IF EXISTS "{REQUEUE_TRIGGER}"',
            f'CREATE TRIGGER "{REQUEUE_TRIGGER}" AFTER UPDATE OF "queue" ON "job" '
            'WHEN OLD."queue" IS NOT NEW."queue" AND OLD."state" IS NEW."state" '
            f"BEGIN {drop} {bump} END",
        ]
    moved = (
        f'INSERT INTO "{COUNTER_CHANGES}" ("queue", "state", "n") '
        'VALUES (OLD."queue", OLD."state", -1), (NEW."queue", NEW."state", 1);'
    )
    return [
        _PG_FUNCTION.format(name="job_count_requeued", body=moved),
        f'DROP TRIGGER IF EXISTS "{REQUEUE_TRIGGER}" ON "job"',
        f'CREATE TRIGGER "{REQUEUE_TRIGGER}" AFTER UPDATE OF "queue" ON "job" FOR EACH ROW '
        'WHEN (OLD."queue" IS DISTINCT FROM NEW."queue" AND '
        'OLD."state" IS NOT DISTINCT FROM NEW."state") EXECUTE FUNCTION "job_count_requeued"()',
    ]


def counters_by_queue(db: peewee.Database, fill: bool = True) -> list[object]:
    """Schema 18: the counters' table made again, keyed by queue and state, filled by counting
    the jobs (one pass; whatever the older table held, the rows are the truth), and every
    statement that writes it made again for it. Running it again is harmless. ``fill`` False:
    a new database's (no job to count, no older table or trigger to replace)."""
    counted = 'SELECT "queue", "state", {shard}COUNT(*) FROM "job" GROUP BY "queue", "state"'
    if isinstance(db, peewee.SqliteDatabase):
        _, drop = _sqlite_counted(by_queue=True)
        table = [
            f'DROP TABLE IF EXISTS "{COUNTER_TABLE}"',
            f'CREATE TABLE "{COUNTER_TABLE}" ("queue" VARCHAR(64) NOT NULL, '
            '"state" VARCHAR(16) NOT NULL, "n" INTEGER NOT NULL, PRIMARY KEY ("queue", "state")) '
            "WITHOUT ROWID",
            *([f'INSERT INTO "{COUNTER_TABLE}" ("queue", "state", "n") '
               f'{counted.format(shard="")}'] if fill else []),
            # (the triggers that wrote it are made again below, for the new one)
            f'DROP TABLE IF EXISTS "{STATE_COUNTER_TABLE}"',
            'DROP TRIGGER IF EXISTS "job_count_delete"',
            f'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN {drop} END',
            *_requeue_trigger(db),
        ]
        return [RunSql(db, table), *([Then(lambda: sqlite_triggers(db))] if fill else [])]
    table = [
        # No job may change between the count and the triggers.
        'LOCK TABLE "job" IN SHARE ROW EXCLUSIVE MODE',
        f'DROP TABLE IF EXISTS "{COUNTER_CHANGES}"',
        f'DROP TABLE IF EXISTS "{STATE_COUNTER_TABLE}"',
        f'DROP TABLE IF EXISTS "{COUNTER_TABLE}"',
        f'CREATE TABLE "{COUNTER_TABLE}" ("queue" VARCHAR(64) NOT NULL, '
        '"state" VARCHAR(16) NOT NULL, "shard" INTEGER NOT NULL, "n" BIGINT NOT NULL, '
        'PRIMARY KEY ("queue", "state", "shard"))',
        *([f'INSERT INTO "{COUNTER_TABLE}" ("queue", "state", "shard", "n") '
           f'{counted.format(shard="0, ")}'] if fill else []),
        f'CREATE TABLE "{COUNTER_CHANGES}" ("queue" VARCHAR(64) NOT NULL, '
        '"state" VARCHAR(16) NOT NULL, "n" INTEGER NOT NULL)',
        *_pg_counter_functions(by_queue=True),
        *([] if fill else [  # (an older database has them: schema 3's, their functions replaced)
            'CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" REFERENCING NEW TABLE '
            'AS "new_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_count_inserted"()',
            'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" REFERENCING OLD TABLE '
            'AS "old_rows" FOR EACH STATEMENT EXECUTE FUNCTION "job_count_deleted"()',
        ]),
        *_requeue_trigger(db),
    ]
    return [RunSql(db, table),
            *([Then(lambda: [RunSql(db, [_pg_state_function(db)])])] if fill else [])]  # fmt: skip


# MIGRATIONS[n] lists the operations that take a version n-1 database to version n. Each entry
# is a function of a playhouse SchemaMigrator, e.g.
#     3: lambda m: [m.add_column("job", "tags", peewee.TextField(null=True))],
MIGRATIONS: dict[int, Callable[[SchemaMigrator], list[object]]] = {
    2: lambda m: sqlite_job_counters(m.database),
    3: lambda m: postgres_job_counters(m.database),
    4: lambda m: sqlite_inserts_counted(m.database),
    5: lambda m: job_columns_5(m),
    6: lambda m: [],  # another branch's slot: renumbered at merge
    7: lambda m: workflows_7(m),
    8: lambda m: history_8(m),
    9: lambda m: history_9(m),
    10: lambda m: [*postgres_triggers_10(m), *sqlite_triggers_10(m), *ready_queue_index_10(m)],
    11: lambda m: [*postgres_hot_11(m), *sqlite_hot_11(m)],
    12: lambda m: sqlite_hot_12(m),
    13: lambda m: postgres_hot_13(m),
    14: lambda m: sqlite_stats_minutes(m.database),
    15: lambda m: ready_at_15(m),
    16: lambda m: postgres_count_changes_16(m),
    17: lambda m: dependency_ids_17(m),
    18: lambda m: counters_by_queue(m.database),
    # The table of schema 18 as its first commits named it (job_count, per queue): made again
    # under its own name where a database of theirs says 18 (nothing to do after today's 18).
    19: lambda m: [] if counted_by_queue(m.database) else counters_by_queue(m.database),
    20: lambda m: queue_claim_index_20(m),
}

_PG_LOCK_KEY = 0x71756575  # "queu": serialises schema set-up across PostgreSQL clients


def read_version(db: peewee.Database) -> int | None:
    try:
        # A savepoint inside ensure()'s transaction: on PostgreSQL a failed statement aborts
        # the transaction, and rolling all of it back (as this did) also dropped the advisory
        # lock, so the tables were then created outside any transaction.
        with db.atomic():
            row = db.execute_sql(
                'SELECT "value" FROM "queuectl_schema" WHERE "key" = \'version\''
            ).fetchone()
    except (peewee.OperationalError, peewee.ProgrammingError):
        return None
    return int(row[0]) if row is not None else None


def ensure(
    db: peewee.Database, models: Models, write: Callable[[], AbstractContextManager[object]]
) -> int | None:
    """Create the schema in an empty database, migrate an older one, refuse a newer one.
    Returns the version an older one had (None: nothing was migrated)."""
    if read_version(db) == SCHEMA_VERSION:
        return None
    with write():
        if not isinstance(db, peewee.SqliteDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        version = read_version(db)
        if version is None:
            # No version: not a queuectl database unless it is empty (the schema and its version
            # are written in one transaction). A table named as one of ours is someone else's
            # too: `config` or `job` of another program's, kept and built around, was changed.
            foreign = [t for t in db.get_tables() if not t.startswith("sqlite_")]
            foreign += [view.name for view in db.get_views()]  # (another program's too)
            if foreign:
                raise QueueError(
                    f"{db.database} is not a queuectl database (it has tables: "
                    f"{', '.join(sorted(foreign)[:3])})"
                )
            db.create_tables(models.all, safe=True)
            # The counters first, as schema 18 makes them: the triggers are made for them.
            for operation in counters_by_queue(db, fill=False):
                operation.run()  # type: ignore[attr-defined]
            for operation in (
                workflow_triggers(db) + history_triggers(db)
                + sqlite_triggers(db) + sqlite_finished_index(db) + postgres_due_index(db)
                + sqlite_stats_minutes(db)
            ):
                operation.run()
            _set_version(models, SCHEMA_VERSION)
            return None
        if version == SCHEMA_VERSION:  # (another process migrated it meanwhile)
            return None
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"{db.database} was written by a newer queuectl (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): upgrade queuectl"
            )
        stored = version
        version = _withdrawn_15(db, version)
        from playhouse import migrate

        migrator = migrate.SchemaMigrator.from_database(db)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            migrate.migrate(*MIGRATIONS[step](migrator))
        _set_version(models, SCHEMA_VERSION)
        return stored


# Two schema 15s were taken back before today's was made (commits of 2026-12-05 on main): one
# changed PostgreSQL's `job.timeout` to double precision, one added the trigger `job_ready_at`.
# A database either left says 15, or 17 once a later queuectl ran 16 and 17 over it, and has no
# `job.ready_at` (QA: every listing failed, "no such column: ready_at", and workers stalled).
WITHDRAWN_TRIGGER = "job_ready_at"


def _withdrawn_15(db: peewee.Database, version: int) -> int:
    """The version to migrate from: 14 for a database of a withdrawn schema 15 (see above), its
    trigger dropped (the column's type is kept: it holds what today's reads); ``version``
    otherwise. Steps 16 on are harmless where they ran already."""
    if version < 15 or any(c.name == "ready_at" for c in db.get_columns("job")):
        return version
    if isinstance(db, peewee.SqliteDatabase):
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{WITHDRAWN_TRIGGER}"')
    else:
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{WITHDRAWN_TRIGGER}" ON "job"')
        db.execute_sql(f'DROP FUNCTION IF EXISTS "{WITHDRAWN_TRIGGER}"()')
    return 14


def _set_version(models: Models, version: int) -> None:
    SchemaInfo = models.SchemaInfo
    SchemaInfo.insert(key="version", value=str(version)).on_conflict(
        conflict_target=[SchemaInfo.key], update={SchemaInfo.value: str(version)}
    ).execute()
