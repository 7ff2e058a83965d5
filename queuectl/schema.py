"""The schema's version, creation and migrations (playhouse.migrate), never dropping data."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from typing import TYPE_CHECKING

import peewee

from .errors import QueueError
from .models import ALL_MODELS, STATES, SchemaInfo

if TYPE_CHECKING:  # playhouse.migrate is imported only to migrate (every CLI start pays imports)
    from playhouse.migrate import SchemaMigrator

SCHEMA_VERSION = 2

# Per-state job counts, kept by triggers on SQLite: `status` and every TUI refresh read five rows
# instead of counting a million (75 ms at 1M jobs). The triggers run inside the statement that
# changes a job, so the counts are exact at every commit, whoever changes the job (claim, finish,
# rescue, retry, delete). PostgreSQL counts with GROUP BY (see Queue.counts).
COUNTER_TABLE = "job_count"


class RunSql:
    """A migration step made of plain SQL statements (what playhouse.migrate has no operation
    for); like playhouse's operations it is run by ``migrate.migrate``."""

    def __init__(self, db: peewee.Database, statements: list[str]) -> None:
        self.db = db
        self.statements = statements

    def run(self) -> None:
        for statement in self.statements:
            self.db.execute_sql(statement)


def job_counters(db: peewee.Database) -> list[RunSql]:
    """The counter table, filled from the jobs already there, and its triggers (SQLite only)."""
    if not isinstance(db, peewee.SqliteDatabase):
        return []
    states = ", ".join(f"('{state}', 0)" for state in STATES)
    bump = (
        f'INSERT INTO "{COUNTER_TABLE}" ("state", "n") VALUES (NEW."state", 1) '
        'ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1;'
    )
    drop = f'UPDATE "{COUNTER_TABLE}" SET "n" = "n" - 1 WHERE "state" = OLD."state";'
    return [
        RunSql(
            db,
            [
                f'CREATE TABLE "{COUNTER_TABLE}" '
                '("state" VARCHAR(16) NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL)',
                f'INSERT INTO "{COUNTER_TABLE}" ("state", "n") '
                'SELECT "state", COUNT(*) FROM "job" GROUP BY "state"',
                f'INSERT OR IGNORE INTO "{COUNTER_TABLE}" ("state", "n") VALUES {states}',
                f'CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN {bump} END',
                f'CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN {drop} END',
                'CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" '
                f'WHEN OLD."state" IS NOT NEW."state" BEGIN {drop} {bump} END',
            ],
        )
    ]


# MIGRATIONS[n] lists the operations that take a version n-1 database to version n. Each entry
# is a function of a playhouse SchemaMigrator, e.g.
#     3: lambda m: [m.add_column("job", "tags", peewee.TextField(null=True))],
MIGRATIONS: dict[int, Callable[[SchemaMigrator], list[object]]] = {
    2: lambda m: job_counters(m.database),
}

_PG_LOCK_KEY = 0x71756575  # "queu": serialises schema set-up across PostgreSQL clients


def read_version(db: peewee.Database) -> int | None:
    try:
        value = SchemaInfo.select(SchemaInfo.value).where(SchemaInfo.key == "version").scalar()
    except (peewee.OperationalError, peewee.ProgrammingError):
        if not isinstance(db, peewee.SqliteDatabase):
            db.rollback()
        return None
    return int(value) if value is not None else None


def ensure(db: peewee.Database, write: Callable[[], AbstractContextManager[object]]) -> None:
    """Create the schema in an empty database, migrate an older one, refuse a newer one."""
    if read_version(db) == SCHEMA_VERSION:
        return
    with write():
        if not isinstance(db, peewee.SqliteDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        version = read_version(db)
        if version is None:
            foreign = [t for t in db.get_tables() if t not in _our_tables()]
            if foreign:
                raise QueueError(
                    f"{db.database} is not a queuectl database (it has tables: "
                    f"{', '.join(sorted(foreign)[:3])})"
                )
            db.create_tables(ALL_MODELS, safe=True)
            for operation in job_counters(db):
                operation.run()
            _set_version(SCHEMA_VERSION)
            return
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"{db.database} was written by a newer queuectl (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): upgrade queuectl"
            )
        from playhouse import migrate

        migrator = migrate.SchemaMigrator.from_database(db)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            migrate.migrate(*MIGRATIONS[step](migrator))
        _set_version(SCHEMA_VERSION)


def _our_tables() -> set[str]:
    return {model._meta.table_name for model in ALL_MODELS} | {COUNTER_TABLE}


def _set_version(version: int) -> None:
    SchemaInfo.insert(key="version", value=str(version)).on_conflict(
        conflict_target=[SchemaInfo.key], update={SchemaInfo.value: str(version)}
    ).execute()
