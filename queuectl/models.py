"""The queue's data: job states and the peewee models.

The models here are templates, bound to no database. Each :class:`~queuectl.queue.Queue` makes
its own subclasses bound to its own database (:func:`bind`, as Huey's SQL storage builds its
models per storage), so two Queues in one process (two files, or one file twice) never share a
connection, and nothing depends on which Queue was opened last.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import peewee

# The states live in a module without imports, so the CLI reads them without peewee; the engine
# imports them from here.
from .states import ACTIVE, CLAIMABLE, FINAL, STATES, UNFINISHED, State, sql_in  # noqa: F401


DEFAULT_QUEUE = "default"


class BaseModel(peewee.Model):
    class Meta:
        legacy_table_names = False


class Job(BaseModel):
    # An integer key gives a cheap, total enqueue order; users see and type the short string `id`.
    seq = peewee.BigAutoField()
    id = peewee.CharField(max_length=64, unique=True)
    command = peewee.TextField()
    state = peewee.CharField(max_length=16, default=State.PENDING.value)
    attempts = peewee.IntegerField(default=0)
    max_retries = peewee.IntegerField(null=True)
    priority = peewee.IntegerField(default=0)
    timeout = peewee.FloatField(null=True)
    # Times are UTC epoch seconds: exact, cheap to compare, the same on SQLite and PostgreSQL.
    run_at = peewee.DoubleField()
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    exit_code = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    output = peewee.TextField(null=True)
    worker = peewee.CharField(max_length=255, null=True)
    cwd = peewee.TextField()
    # Schema 5 (SPEC 6-8). The named queue the job belongs to (SPEC 7).
    queue = peewee.CharField(
        max_length=64, default=DEFAULT_QUEUE, constraints=[peewee.SQL(f"DEFAULT '{DEFAULT_QUEUE}'")]
    )
    # The schedule that enqueued it, if one did (SPEC 7).
    schedule = peewee.CharField(max_length=64, null=True)
    # How many of the jobs it runs after (SPEC 7: `after`) have not completed: claimable at 0.
    waiting_on = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    # When a user asked to cancel it while it ran (SPEC 6); its worker stops it.
    cancel_requested_at = peewee.DoubleField(null=True)
    # Bytes the current or last run printed in all (the stored output is their capped tail).
    output_bytes = peewee.BigIntegerField(null=True)
    # Schema 15: when it last became ready to run, where that is later than run_at: its last
    # dependency's end (that dependency's updated_at, for a job enqueued with `after`), or its
    # release by a hard stop. Read only for the time it waited (history, stats, the
    # oldest-waiting age): claims keep ordering by run_at, so a released job keeps its place.
    ready_at = peewee.DoubleField(null=True)

    # Not stored: config `job-timeout` as read by the claim that started this run (the run's
    # timeout unless the job has its own), None for a job that was not claimed.
    configured_timeout: int | float | None = None
    # Not stored here: the ids of the jobs it runs after, when a read filled them in (SPEC 7).
    after_ids: tuple[str, ...] = ()
    # Not stored: those of them not completed yet, and those dead (the job is blocked until
    # they are retried).
    waiting_for: tuple[str, ...] = ()
    # Not stored: those of them purged since (named still, by the edge's schema 17 id).
    purged_deps: tuple[str, ...] = ()
    # Not stored (PostgreSQL): whether the job had dependents when its run was claimed; None
    # where the claim did not say.
    has_dependents: bool | None = None
    blocked_by: tuple[str, ...] = ()

    class Meta:
        table_name = "job"

    TIME_FIELDS = ("run_at", "created_at", "updated_at", "started_at", "finished_at")
    PUBLIC_FIELDS = (
        "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
        "created_at", "updated_at", "started_at", "finished_at", "exit_code", "error", "output",
        "worker", "cwd", "queue", "schedule",
    )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The job as SPEC 3 gives it to scripts: every public field, times in ISO 8601 UTC."""
        data = {name: self.__data__.get(name) for name in self.PUBLIC_FIELDS}
        for name in self.TIME_FIELDS:
            data[name] = iso(data[name])
        data["timeout"] = json_seconds(data["timeout"])
        data["after"] = list(self.after_ids)
        data["schedule"] = data.pop("schedule")  # SPEC 3's order: ..., queue, after, schedule
        return data


def iso(timestamp: float | None) -> str | None:
    """UTC epoch seconds as ISO 8601 (``2026-11-28T21:05:03.123456+00:00``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def json_seconds(value: float | None) -> int | float | None:
    """A number of seconds (stored as a float) for JSON: ``5`` for 5.0, ``2.5`` as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Claimable and waiting for no dependency (schema 7): the claim's and the partial indexes' WHERE.
READY = f'{sql_in(CLAIMABLE)} AND "waiting_on" = 0'
# Claimable but waiting for a dependency (SPEC 7): not in the claim's index.
WAITING_ON_DEPENDENCY = f'{sql_in(CLAIMABLE)} AND "waiting_on" > 0'

# The claim order, over ready jobs only (a partial index: completed jobs, and jobs waiting for a
# dependency, cost it nothing).
Job.add_index(
    Job.index(Job.priority.desc(), Job.run_at, Job.seq, name="job_claim_order").where(
        peewee.SQL(READY)
    )
)
# When the next ready job falls due (an idle worker sleeps until then). SQLite only: PostgreSQL
# drops it (schema 13) and reads "job_ready_queue" instead (lifecycle._next_due_by_queue).
Job.add_index(Job.index(Job.run_at, name="job_due").where(peewee.SQL(READY)))
# Schema 10: the due time of each named queue's oldest ready job (`stats`, the metrics), one probe
# of this index per queue (History.oldest_waiting), however many jobs wait.
READY_QUEUE_INDEX = "job_ready_queue"
Job.add_index(Job.index(Job.queue, Job.run_at, name=READY_QUEUE_INDEX).where(peewee.SQL(READY)))
# Schema 20: each queue's ready jobs in claim order, so that a claim finds the first job of the
# queues not held (paused, or at their limit) by a probe per queue, not by a pass over the held
# queues' backlog in "job_claim_order" (see statements.unheld_queue).
QUEUE_CLAIM_INDEX = "job_queue_claim_order"
Job.add_index(
    Job.index(Job.queue, Job.priority.desc(), Job.run_at, Job.seq, name=QUEUE_CLAIM_INDEX).where(
        peewee.SQL(READY)
    )
)


def ready_queues(table: str = '"job"', only: str = "") -> str:
    """``WITH RECURSIVE "q" ("name")``: every queue with ready jobs (and a last NULL), found by
    skipping from one to the next in READY_QUEUE_INDEX (a loose index scan): a probe per queue,
    not a pass over the ready jobs. ``table``: "job", with SQLite's INDEXED BY where wanted;
    ``only``: a condition on "queue" to add (`` AND "queue" IN (...)``). Each step is the first
    entry in an index's order (not MIN): PostgreSQL, its statistics taken while few jobs were
    ready, read MIN("queue") from every entry of the index (QA: 20,000 jobs, 17 ms a step)."""
    ready = f"FROM {table} WHERE {READY}{only}"
    return (
        f'WITH RECURSIVE "q" ("name") AS (SELECT (SELECT "queue" {ready} '
        'ORDER BY "queue" LIMIT 1) UNION ALL '
        f'SELECT (SELECT "queue" {ready} AND "queue" > "q"."name" ORDER BY "queue" LIMIT 1) '
        'FROM "q" WHERE "q"."name" IS NOT NULL)'
    )
# The jobs waiting for a dependency, in claim order (the TUI's waiting pane, after the ready ones).
Job.add_index(
    Job.index(Job.priority.desc(), Job.run_at, Job.seq, name="job_blocked_order").where(
        peewee.SQL(WAITING_ON_DEPENDENCY)
    )
)
# Per-state counts and `list --state` (newest first) are served by (state, seq).
Job.add_index(Job.index(Job.state, Job.seq, name="job_state_seq"))
# Completed and dead panes show the most recently finished first.
# SQLite (schema 12): only finished jobs' rows (schema.sqlite_finished_index).
Job.add_index(Job.index(Job.state, Job.finished_at, name="job_state_finished"))


class Config(BaseModel):
    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "config"


# The run-time histogram's upper bounds in seconds (shell jobs run from milliseconds to hours).
RUN_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200,
)  # fmt: skip


# The events stats reads (schema 9): the job_event_window index (in .tables) leaves enqueues out.
STATS_EVENTS = "\"event\" <> 'enqueued'"


# Every model, in the order their tables are created. Job and Config are defined above; the rest
# (the worker's, the history's, schedules', hooks') in :mod:`.tables`, imported on first use of
# one of them: a one-shot command (`enqueue`, `config get`) does not pay for defining them.
MODEL_NAMES = (
    "Job", "Config", "WorkerProcess", "SchemaInfo", "Event", "JobDep", "QueueSetting", "Schedule",
    "RunTotal", "HookDelivery",
)  # fmt: skip
_HERE = ("Job", "Config")

if TYPE_CHECKING:
    from .tables import (
        Event, HookDelivery, JobDep, QueueSetting, RunTotal, Schedule, SchemaInfo, WorkerProcess,
    )  # fmt: skip

    ALL_MODELS: tuple[type[BaseModel], ...]


def __getattr__(name: str) -> Any:
    """The models defined in :mod:`.tables`, and ``ALL_MODELS``, on first use (PEP 562)."""
    if name == "ALL_MODELS":
        value: Any = tuple(_model(each) for each in MODEL_NAMES)
    elif name in MODEL_NAMES:
        from . import tables

        value = getattr(tables, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _model(name: str) -> type[BaseModel]:
    return globals()[name] if name in _HERE else __getattr__(name)


class Models:
    """The models bound to one database: what a Queue's queries use (``queue.models.Job``).

    Each is bound on first use: binding copies every field of the model, and a command that
    touches two tables (``enqueue``) need not pay for all of them. A new model goes in
    MODEL_NAMES and gets its line below."""

    Job: type[Job]
    Config: type[Config]
    WorkerProcess: type[WorkerProcess]
    SchemaInfo: type[SchemaInfo]
    Event: type[Event]
    JobDep: type[JobDep]
    QueueSetting: type[QueueSetting]
    Schedule: type[Schedule]
    RunTotal: type[RunTotal]
    HookDelivery: type[HookDelivery]

    def __init__(self, database: peewee.Database) -> None:
        self._database = database
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> type[peewee.Model]:
        # Called only for a model not bound yet: a bound one is in the instance's __dict__.
        if name not in MODEL_NAMES:
            raise AttributeError(f"no model {name!r}")
        template = _model(name)
        with self._lock:  # two threads asking at once get one class
            if name not in self.__dict__:
                self.__dict__[name] = _bound(template, self._database)
            return self.__dict__[name]

    @property
    def all(self) -> tuple[type[peewee.Model], ...]:
        return tuple(getattr(self, name) for name in MODEL_NAMES)


def _bound(model: type[peewee.Model], database: peewee.Database) -> type[peewee.Model]:
    meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
    attrs: dict[str, Any] = {"Meta": meta, "__module__": model.__module__}
    # The template's fields, each copied shallowly: peewee deep-copies an inherited field (~20 us
    # each, half of binding Job), and binding gives the copy a model and names of its own; the
    # rest (its type, default, constraints) is the template's, which nothing changes.
    for name, field in model._meta.fields.items():
        if not field.primary_key:  # the key is peewee's to copy
            attrs[name] = copy.copy(field)
    return type(model.__name__, (model,), attrs)


def bind(database: peewee.Database) -> Models:
    """The models bound to ``database``: subclasses of every model (made on first use). Each
    keeps its template's fields, indexes and table, and its instances are instances of the
    template (a ``Job`` is a ``Job`` whichever database it came from)."""
    return Models(database)
