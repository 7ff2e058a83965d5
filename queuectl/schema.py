"""The schema's version, creation and migrations (playhouse.migrate), never dropping data."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import peewee
from playhouse import migrate

from .errors import QueueError
from .models import ALL_MODELS, SchemaInfo

SCHEMA_VERSION = 1

# MIGRATIONS[n] lists the operations that take a version n-1 database to version n. Each entry
# is a function of a playhouse SchemaMigrator, e.g.
#     2: lambda m: [m.add_column("job", "tags", peewee.TextField(null=True))],
MIGRATIONS: dict[int, Callable[[migrate.SchemaMigrator], list[object]]] = {}

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
            _set_version(SCHEMA_VERSION)
            return
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"{db.database} was written by a newer queuectl (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): upgrade queuectl"
            )
        migrator = migrate.SchemaMigrator.from_database(db)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            migrate.migrate(*MIGRATIONS[step](migrator))
        _set_version(SCHEMA_VERSION)


def _our_tables() -> set[str]:
    return {model._meta.table_name for model in ALL_MODELS}


def _set_version(version: int) -> None:
    SchemaInfo.insert(key="version", value=str(version)).on_conflict(
        conflict_target=[SchemaInfo.key], update={SchemaInfo.value: str(version)}
    ).execute()
