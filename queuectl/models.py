"""The queue's data: job states and the peewee models.

The models here are templates, bound to no database. Each :class:`~queuectl.queue.Queue` makes
its own subclasses bound to its own database (:func:`bind`, as Huey's SQL storage builds its
models per storage), so two Queues in one process (two files, or one file twice) never share a
connection, and nothing depends on which Queue was opened last.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

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

    # Not stored: config `job-timeout` as read by the claim that started this run (the run's
    # timeout unless the job has its own), None for a job that was not claimed.
    configured_timeout: int | float | None = None
    # Not stored here: the ids of the jobs it runs after, when a read filled them in (SPEC 7).
    after_ids: tuple[str, ...] = ()
    # Not stored: those of them not completed yet, and those dead (the job is blocked until
    # they are retried).
    waiting_for: tuple[str, ...] = ()
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
        data["after"] = list(self.after_ids)
        data["schedule"] = data.pop("schedule")  # SPEC 3's order: ..., queue, after, schedule
        return data


def iso(timestamp: float | None) -> str | None:
    """UTC epoch seconds as ISO 8601 (``2026-11-28T21:05:03.123456+00:00``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


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
# When the next ready job falls due (an idle worker sleeps until then).
Job.add_index(Job.index(Job.run_at, name="job_due").where(peewee.SQL(READY)))
# Schema 10: the due time of each named queue's oldest ready job (`stats`, the metrics), one probe
# of this index per queue (History.oldest_waiting), however many jobs wait.
READY_QUEUE_INDEX = "job_ready_queue"
Job.add_index(Job.index(Job.queue, Job.run_at, name=READY_QUEUE_INDEX).where(peewee.SQL(READY)))
# The jobs waiting for a dependency, in claim order (the TUI's waiting pane, after the ready ones).
Job.add_index(
    Job.index(Job.priority.desc(), Job.run_at, Job.seq, name="job_blocked_order").where(
        peewee.SQL(WAITING_ON_DEPENDENCY)
    )
)
# Per-state counts and `list --state` (newest first) are served by (state, seq).
Job.add_index(Job.index(Job.state, Job.seq, name="job_state_seq"))
# Completed and dead panes show the most recently finished first.
Job.add_index(Job.index(Job.state, Job.finished_at, name="job_state_finished"))


class Config(BaseModel):
    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "config"


class WorkerProcess(BaseModel):
    """One row per live worker process (a `worker start` or a TUI), heartbeating."""

    id = peewee.CharField(max_length=255, primary_key=True)
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    threads = peewee.IntegerField(default=0)
    started_at = peewee.DoubleField()
    heartbeat_at = peewee.DoubleField()
    stop_requested = peewee.BooleanField(default=False)

    class Meta:
        table_name = "worker"


class SchemaInfo(BaseModel):
    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "queuectl_schema"


class Event(BaseModel):
    """One change to a job (SPEC 8's history), written in the transaction that made it."""

    id = peewee.BigAutoField()
    job_seq = peewee.BigIntegerField()
    job_id = peewee.CharField(max_length=64)
    queue = peewee.CharField(max_length=64)
    at = peewee.DoubleField()
    event = peewee.CharField(max_length=16)  # see EVENTS
    attempt = peewee.IntegerField(null=True)
    worker = peewee.CharField(max_length=255, null=True)
    exit_code = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    # Schema 8: a finished run's seconds (a run's end event), and a start's seconds from due.
    duration = peewee.DoubleField(null=True)
    waited = peewee.DoubleField(null=True)
    # Schema 9: a run is one row, written as it ends, carrying when it started (its `started`
    # event is read back from it, see History.history) and its wait from due to start.
    started_at = peewee.DoubleField(null=True)

    class Meta:
        table_name = "job_event"

    EVENTS = (
        "enqueued", "started", "completed", "failed", "dead", "cancelled", "retried", "rescued",
        "released", "edited", "blocked", "unblocked",
    )  # fmt: skip


# A job's history, oldest first.
Event.add_index(Event.index(Event.job_seq, Event.id, name="job_event_job"))
# Stats (schema 9): the events of a window with all that stats reads of them, so one pass
# through this index answers it (no table lookups). Enqueues, most of the rows, are left out.
STATS_EVENTS = "\"event\" <> 'enqueued'"
Event.add_index(
    Event.index(
        Event.at, Event.queue, Event.event, Event.duration, Event.waited, name="job_event_window"
    ).where(peewee.SQL(STATS_EVENTS))
)


class JobDep(BaseModel):
    """One dependency (SPEC 7, `after`): job ``job_seq`` runs once job ``dep_seq`` completed.
    The dependency existed before the job did, so the edges never make a cycle."""

    job_seq = peewee.BigIntegerField()
    dep_seq = peewee.BigIntegerField(index=True)  # a job's dependents, as it completes

    class Meta:
        table_name = "job_dep"
        primary_key = peewee.CompositeKey("job_seq", "dep_seq")


class QueueSetting(BaseModel):
    """A named queue's settings (SPEC 7); a queue without a row has no limit and runs."""

    name = peewee.CharField(max_length=64, primary_key=True)
    max_running = peewee.IntegerField(null=True)  # None: no limit
    paused = peewee.BooleanField(default=False)

    class Meta:
        table_name = "queue_setting"


class Schedule(BaseModel):
    """A recurring job (SPEC 7): ``job`` is the JSON of the job it enqueues (cwd included)."""

    name = peewee.CharField(max_length=64, primary_key=True)
    cron = peewee.CharField(max_length=255)
    zone = peewee.CharField(max_length=64, default="UTC")
    job = peewee.TextField()
    no_overlap = peewee.BooleanField(default=False)
    paused = peewee.BooleanField(default=False)
    next_due = peewee.DoubleField()  # UTC epoch seconds; moved on by a compare-and-swap
    last_job_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DoubleField()

    class Meta:
        table_name = "schedule"


# The run-time histogram's upper bounds in seconds (shell jobs run from milliseconds to hours).
RUN_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200,
)  # fmt: skip


class RunTotal(BaseModel):
    """Runs finished, per queue, outcome (the state the run led to) and run-time bucket: the
    metrics' counters and histogram (SPEC 8). Bumped by the same trigger that records the run's
    end, never lowered (a purge leaves them). On PostgreSQL each connection bumps rows of its
    own (``shard`` = its backend pid, as the job counters do); SQLite's shard is 0."""

    queue = peewee.CharField(max_length=64)
    outcome = peewee.CharField(max_length=16)
    bucket = peewee.IntegerField()  # index into RUN_BUCKETS; len(RUN_BUCKETS) = +Inf
    shard = peewee.IntegerField(default=0)
    n = peewee.BigIntegerField(default=0)
    seconds = peewee.DoubleField(default=0)

    class Meta:
        table_name = "run_total"
        primary_key = peewee.CompositeKey("queue", "outcome", "bucket", "shard")


class HookDelivery(BaseModel):
    """A notification hook still to run (SPEC 8): written by the trigger that changed the job's
    state, taken by one live worker process, deleted once run."""

    id = peewee.BigAutoField()
    job_seq = peewee.BigIntegerField()
    job_id = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=16)
    queue = peewee.CharField(max_length=64)
    command = peewee.TextField()  # the job's
    attempts = peewee.IntegerField()
    exit_code = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    hook = peewee.TextField()  # config on-<state> at the change
    at = peewee.DoubleField()
    taken_by = peewee.CharField(max_length=255, null=True)  # the worker process running it

    class Meta:
        table_name = "hook_delivery"


ALL_MODELS = (
    Job, Config, WorkerProcess, SchemaInfo, Event, JobDep, QueueSetting, Schedule, RunTotal,
    HookDelivery,
)  # fmt: skip


class Models:
    """The models bound to one database: what a Queue's queries use (``queue.models.Job``).

    Each is bound on first use: binding copies every field of the model, and a command that
    touches two tables (``enqueue``) need not pay for all of them. A new model goes in
    ALL_MODELS and gets its line below."""

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
        template = next((model for model in ALL_MODELS if model.__name__ == name), None)
        if template is None:
            raise AttributeError(f"no model {name!r}")
        with self._lock:  # two threads asking at once get one class
            if name not in self.__dict__:
                self.__dict__[name] = _bound(template, self._database)
            return self.__dict__[name]

    @property
    def all(self) -> tuple[type[peewee.Model], ...]:
        return tuple(getattr(self, model.__name__) for model in ALL_MODELS)


def _bound(model: type[peewee.Model], database: peewee.Database) -> type[peewee.Model]:
    meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
    return type(model.__name__, (model,), {"Meta": meta, "__module__": model.__module__})


def bind(database: peewee.Database) -> Models:
    """The models bound to ``database``: subclasses of every model (made on first use). Each
    keeps its template's fields, indexes and table, and its instances are instances of the
    template (a ``Job`` is a ``Job`` whichever database it came from)."""
    return Models(database)
