"""The models a one-shot command does not touch: the worker registry, the history, dependencies,
named queues' settings, schedules, the run totals and hook deliveries. :mod:`queuectl.models`
hands them out (``from .models import Event`` works as before) and imports this module on first
use of one of them, so that `enqueue` and `config get` do not pay for defining them.
"""

from __future__ import annotations

import peewee

from .models import STATS_EVENTS, BaseModel


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
Event.add_index(
    Event.index(
        Event.at, Event.queue, Event.event, Event.duration, Event.waited, name="job_event_window"
    ).where(peewee.SQL(STATS_EVENTS))
)


class JobDep(BaseModel):
    """One dependency (SPEC 7, `after`): job ``job_seq`` runs once job ``dep_seq`` completed.
    The dependency existed before the job did, so the edges never make a cycle."""

    job_seq = peewee.BigIntegerField()
    # A job's dependents, as it completes, by this index. Negated once the dependency is
    # purged without having completed: the job can never run after it (a retry is refused).
    dep_seq = peewee.BigIntegerField(index=True)
    # Schema 17: the dependency's id, so the job's `after` still names it once it is purged
    # (its row is gone, the edge stays). NULL only on an edge older than schema 17 whose
    # dependency was purged before the upgrade.
    dep_id = peewee.CharField(max_length=64, null=True)

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
