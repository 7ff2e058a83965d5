"""Schedules (SPEC 7): recurring jobs from cron expressions, enqueued by the workers.

A schedule is a row of ``schedule``: its cron expression and zone, the job it enqueues (as
JSON, with the directory `schedule add` ran in), and ``next_due``, the next time it is due.
Every worker pool's service thread looks (cheaply, see :class:`ScheduleTimer`) for schedules
that are due, and moves each one's ``next_due`` on by a compare-and-swap: only the pool whose
UPDATE changed the row enqueues, in the same transaction. However many pools run on however
many hosts, each due time gives one job. The following due time is computed from *now*, so
after a time with no worker running one job stands for all the times missed.

Cron expressions are computed by croniter: 5 fields, or 6 with the seconds first (SPEC 7's form;
croniter's own puts them last, ``second_at_beginning`` says which), and ``@hourly``,
``@daily``, ``@weekly``, ``@monthly``; in UTC or an IANA zone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import peewee

from .errors import InvalidInput, QueueError
from .lifecycle import Lifecycle
from .models import DEFAULT_QUEUE, UNFINISHED, Job, Schedule, iso, json_seconds
from .reconnect import first_line
from .spec import QUEUE_NAME, JobSpec, current_directory, spec_from_mapping, validate_name
from .text import as_typed

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # zoneinfo only where a schedule is read or fired
    from zoneinfo import ZoneInfo

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly")
# Each field's name and how many values it has, seconds first (5 fields: the last five).
FIELDS = (("seconds", 60), ("minute", 60), ("hour", 24), ("day", 31), ("month", 12),
          ("weekday", 7))  # fmt: skip
MAX_CRON = 255  # characters of an expression, its fields one space apart
# How soon after a change a pool reads the earliest due time again (to see schedules added
# elsewhere), and how soon after a while of changes unwatched (a busy pool's).
RECHECK_S = 0.05
UNWATCHED_RECHECK_S = 1.0
QUIET_SCHEDULES_S = 60.0  # and read again this often with no change seen
FIRED_TOGETHER = 100  # schedules due at once fired in one transaction (see _fire_together)
# The keys of a schedule's job (a JSON job without id, delay, run_at and after: SPEC 7).
JOB_KEYS = ("command", "max_retries", "priority", "timeout", "queue", "cwd")


HOST_ZONES = ("localtime", "posixrules")  # files of the zone database that name no zone


def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (None: UTC); InvalidInput if there is none such."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name is None:
        name = "UTC"
    try:
        if not name or "\x00" in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"unknown time zone {name!r} (give an IANA name, e.g. Europe/Paris)") from None


def check_cron(cron: str) -> str:
    """``cron`` with its fields separated by single spaces; InvalidInput if croniter refuses it
    or it has neither 5 nor 6 fields (nor is one of ALIASES)."""
    from croniter import croniter

    fields = cron.split()
    text = " ".join(fields)
    if len(fields) == 1 and text.lower() in ALIASES:
        return text.lower()
    if len(fields) not in (5, 6):
        raise InvalidInput(
            f"bad cron expression {cron!r}: give 5 fields (minute hour day month weekday), "
            f"6 with the seconds first, or one of {', '.join(ALIASES)}"
        )
    # croniter's R (a random value, drawn afresh at every next time: "R R * * *" fired 1-5
    # times a day, QA) is not cron's; its H is refused by is_valid, having no hash key.
    random = any(part.upper().startswith("R") for field in fields for part in field.split(","))
    if random or not croniter.is_valid(text, second_at_beginning=len(fields) == 6):
        raise InvalidInput(f"bad cron expression {cron!r}")
    # A step longer than the field's cycle names its first value alone: croniter reads
    # `*/61 * * * * *` ("every 61 seconds"?) as second 0 of every minute (QA). Refused, as it
    # cannot mean what it says; `*/60` minutes (hourly) can.
    for (what, values), field in zip(FIELDS[-len(fields):], fields):
        for part in field.split(","):
            _, slash, step = part.partition("/")
            if slash and step.isdigit() and int(step) > values:
                raise InvalidInput(
                    f"bad cron expression {cron!r}: a step of {step} in the {what} field, "
                    f"which has {values} values"
                )
    if len(text) > MAX_CRON:  # (the column's width, on PostgreSQL)
        raise InvalidInput(f"bad cron expression: {len(text)} characters, at most {MAX_CRON}")
    return text


def next_time(cron: str, zone: str, after: float) -> float:
    """The first time (UTC epoch seconds) after ``after`` that ``cron`` names in ``zone``
    (once, where clocks set back repeat it: see below)."""
    from croniter import croniter

    tz = zone_of(zone)
    six = len(cron.split()) == 6
    times = croniter(cron, datetime.fromtimestamp(after, tz), second_at_beginning=six)
    every_hour = times.expanded[1] == ["*"]  # croniter writes 0-23 and */1 so too
    while True:
        due = float(times.get_next(float))
        # Clocks set back live an hour twice. A job due at a time of day in it (`30 2 * * *`)
        # runs at its first pass only, as cron runs it: once that day, not twice. A job due
        # every hour (`*/15 * * * *`) runs in both, as it would in any other hour.
        if every_hour or datetime.fromtimestamp(due, tz).fold == 0:
            return due


@dataclass
class ScheduleInfo:
    """One schedule as `schedule list` shows it."""

    name: str
    cron: str
    zone: str
    job: dict[str, Any]
    no_overlap: bool
    paused: bool
    next_due: float
    last_job_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "zone": self.zone,
            "next_due": iso(self.next_due),
            "last_job_id": self.last_job_id,
            "paused": self.paused,
            "no_overlap": self.no_overlap,
            **{key: self.job.get(key) for key in JOB_KEYS},
            # What its jobs get: priority 0 when none was given, a timeout of whole seconds as
            # a whole number (stored as a float: 5.0), and the default queue (SPEC 7).
            "priority": self.job.get("priority") or 0,
            "timeout": json_seconds(self.job.get("timeout")),
            "queue": self.job.get("queue") or DEFAULT_QUEUE,
        }


class Schedules(Lifecycle):
    def add_schedule(
        self,
        name: str,
        cron: str,
        spec: JobSpec,
        *,
        zone: str | None = None,
        no_overlap: bool = False,
    ) -> ScheduleInfo:
        """A new schedule: ``spec`` (no id, delay, run_at or after) enqueued at each time
        ``cron`` names in ``zone`` (an IANA name; UTC if None). Its jobs run in ``spec.cwd``,
        else in the current directory. A bad name, expression or zone, or a name that exists:
        InvalidInput."""
        name = validate_name("name", name)
        cron = check_cron(cron)
        zone = "UTC" if zone is None else zone
        if zone in HOST_ZONES:  # a file, not a zone (localtime: this host's, whichever it is)
            raise InvalidInput(f"{zone!r} is a file of the zone database, not an IANA zone: give "
                               "a zone's name (timedatectl shows this host's), e.g. Europe/Paris")  # fmt: skip
        zone_of(zone)  # an empty one too is refused
        for key in ("id", "delay", "run_at", "after"):
            if getattr(spec, key) is not None:
                raise InvalidInput(f"a schedule's job cannot have {key!r}")
        cwd = spec.cwd or current_directory()
        job = {key: getattr(spec, key) for key in JOB_KEYS if getattr(spec, key) is not None}
        job["cwd"] = cwd
        now = self.clock()
        from croniter import CroniterBadDateError

        try:
            next_due = next_time(cron, zone, now)
        except CroniterBadDateError:  # valid fields, but no such date: `0 0 30 2 *`
            raise InvalidInput(f"bad cron expression {cron!r}: it is never due") from None
        Schedule = self.models.Schedule
        row = dict(name=name, cron=cron, zone=zone, job=json.dumps(job), no_overlap=no_overlap,
                   paused=False, next_due=next_due, last_job_id=None,
                   created_at=now)  # fmt: skip
        try:
            with self._write():
                if Schedule.get_or_none(Schedule.name == name) is not None:
                    raise InvalidInput(f"a schedule named {name!r} exists")
                Schedule.insert(**row).execute()
                self._announce()
        except peewee.IntegrityError:
            raise InvalidInput(f"a schedule named {name!r} exists") from None
        return _info(Schedule(**row))

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by name."""
        Schedule = self.models.Schedule
        return [_info(row) for row in Schedule.select().order_by(Schedule.name)]

    def get_schedule(self, name: str) -> ScheduleInfo:
        return _info(self._schedule(name))

    def remove_schedule(self, name: str) -> None:
        Schedule = self.models.Schedule
        with self._write():
            self._schedule(name)
            Schedule.delete().where(Schedule.name == name).execute()

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """No job is enqueued by it until it is resumed."""
        return self._change_schedule(name, paused=True)

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Due again from now on: the times it was paused for are not made up for."""
        return self._change_schedule(name, paused=False)

    def _change_schedule(self, name: str, paused: bool) -> ScheduleInfo:
        Schedule = self.models.Schedule
        with self._write():
            row = self._schedule(name)
            changes: dict[str, Any] = {"paused": paused}
            if row.paused and not paused:
                try:
                    changes["next_due"] = next_time(row.cron, row.zone, self.clock())
                except Exception as exc:  # paused for it (see _passed_over): stays so
                    raise QueueError(
                        f"schedule {name}: its next time cannot be told ({first_line(exc)}): "
                        "remove it and add it again"
                    ) from None
            Schedule.update(**changes).where(Schedule.name == name).execute()
            self._announce()
            for key, value in changes.items():
                setattr(row, key, value)
        return _info(row)

    def run_schedule(self, name: str) -> Job:
        """Enqueue the schedule's job now, outside its timetable."""
        with self._write():
            row = self._schedule(name)
            try:
                job = self._fire(row)
            except (peewee.OperationalError, peewee.InterfaceError):
                raise
            except Exception as exc:  # its stored job refused (see _passed_over): one line
                said = f"schedule {name}: its job cannot be enqueued ({first_line(exc)})"
                raise QueueError(said) from None
            self._announce()
        self._notify()
        return job

    def _schedule(self, name: str) -> Schedule:
        Schedule = self.models.Schedule
        # A name no schedule can have (not a string, or one with text the database cannot
        # even store) is simply not there.
        valid = isinstance(name, str) and QUEUE_NAME.fullmatch(name) is not None
        row = Schedule.get_or_none(Schedule.name == name) if valid else None
        if row is None:
            shown = as_typed(name) if isinstance(name, str) else repr(name)
            raise QueueError(f"no schedule {shown}")
        return row

    # -- firing (the worker pools' service threads) -----------------------------------------

    def next_schedule_due(self) -> float | None:
        """When the earliest schedule that is not paused is due (UTC epoch seconds), or None."""
        Schedule = self.models.Schedule
        return (
            Schedule.select(peewee.fn.MIN(Schedule.next_due))
            .where(Schedule.paused == False)  # noqa: E712 (SQL, not Python)
            .scalar()
        )

    def fire_due_schedules(self) -> list[Job]:
        """Enqueue one job for each schedule that is due (SPEC 7): the caller whose
        compare-and-swap on ``next_due`` wins enqueues it, in the same transaction; the others
        leave it. With ``no_overlap``, a time at which the schedule's previous job is still
        waiting or running passes without a job. Returns the jobs enqueued here."""
        now = self.clock()
        Schedule = self.models.Schedule
        due = list(
            Schedule.select().where(Schedule.paused == False, Schedule.next_due <= now)  # noqa: E712
            .order_by(Schedule.next_due, Schedule.name)
        )
        fired: list[Job] = []
        for start in range(0, len(due), FIRED_TOGETHER):
            fired += self._fire_together(due[start:start + FIRED_TOGETHER])
        if fired:
            self._notify()
        return fired

    def _fire_together(self, due: list[Schedule]) -> list[Job]:
        """Fire the schedules ``due`` in one transaction, each in a savepoint of its own: one
        whose job cannot be enqueued passes (:meth:`_passed_over`, after) and the others fire.
        A transaction each made the last of 400 schedules due at one time wait 0.8 s on
        PostgreSQL (a commit each, and pools racing for each one)."""
        fired, failed = [], []
        with self._write():
            for row in due:
                try:
                    with self.db.atomic():
                        # From the time the write lock came, not the look's: it may have waited
                        # (SQLite: another process held it). Moved on from the look's time, to a
                        # due time already past once it came, the schedule was due again at
                        # once, and another pool fired the same missed time a second time.
                        if not self._advance(row, next_time(row.cron, row.zone, self.clock())):
                            continue
                        if row.no_overlap and self._still_going(row.last_job_id):
                            continue
                        fired.append(self._fire(row))
                except (peewee.OperationalError, peewee.InterfaceError):
                    raise  # the database away: the caller's outage, tried again after it
                except Exception as exc:
                    failed.append((row, exc))
            if fired:
                self._announce()
        for row, exc in failed:
            self._passed_over(row, exc)
        return fired

    def _passed_over(self, row: Schedule, exc: Exception) -> None:
        """``row``'s job cannot be enqueued (a schedule stored by an older queuectl, a path not
        UTF-8, a timeout PostgreSQL could not hold; or by hand): this time passes without it, and
        the other schedules still fire. Retried, it failed every round and kept the schedules
        after it from firing. Said once a schedule and reason. A schedule whose next time
        cannot be told either (its zone gone from the zone database) is paused, and says so."""
        reason = first_line(exc)
        try:
            following = next_time(row.cron, row.zone, self.clock())
        except Exception as unknown:
            with self._write():
                Schedule = self.models.Schedule
                Schedule.update(paused=True).where(Schedule.name == row.name).execute()
                self._announce()
            log.warning("schedule %s is paused: its next time cannot be told (%s)",
                        row.name, first_line(unknown))  # fmt: skip
            return
        with self._write():
            passed = self._advance(row, following)
        said = self.__dict__.setdefault("_schedules_said", {})
        if passed and said.get(row.name) != reason:
            said[row.name] = reason
            log.warning("schedule %s: its job cannot be enqueued (%s); its times pass without "
                        "it, the next %s", row.name, reason, iso(following))  # fmt: skip

    def _advance(self, row: Schedule, following: float) -> bool:
        """Move ``row``'s due time on to ``following``, if no one else has (compare-and-swap)."""
        Schedule = self.models.Schedule
        return bool(
            Schedule.update(next_due=following)
            .where(Schedule.name == row.name, Schedule.next_due == row.next_due,
                   Schedule.paused == False)  # noqa: E712  # fmt: skip
            .execute()
        )

    def _still_going(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        Job = self.models.Job
        return Job.select().where(Job.id == job_id, Job.state.in_(UNFINISHED)).exists()

    def _fire(self, row: Schedule) -> Job:
        """Enqueue ``row``'s job (in the caller's transaction), checked as `enqueue` checks a
        job: a stored one changed by hand (or by an older queuectl) is refused, InvalidInput,
        not enqueued as it is (a max_retries of 1e400 stored as inf made every listing fail)."""
        data = json.loads(row.job)
        if not isinstance(data, dict):
            raise InvalidInput(f"its stored job is not a JSON object: {row.job[:40]!r}")
        given = {key: value for key, value in data.items() if value is not None}
        spec = spec_from_mapping(given, JOB_KEYS)
        rows = self._new_rows([spec], schedule=row.name)
        self._insert([spec], rows)
        Schedule = self.models.Schedule
        Schedule.update(last_job_id=rows[0]["id"]).where(Schedule.name == row.name).execute()
        return self._enqueued(rows, None)[0]


class ScheduleTimer:
    """A pool's service thread asks this on every round whether a schedule is due. It costs a
    comparison of times, and the firing itself when one is due. Every write that brings a
    schedule's due time nearer is a change the service thread sees (PostgreSQL: announced;
    SQLite: a commit of another connection) and reports (:meth:`changed`): the earliest due
    time is read again after a change (at most every RECHECK_S), after a while unwatched
    (:meth:`unwatched`, at most every UNWATCHED_RECHECK_S), and otherwise every
    QUIET_SCHEDULES_S."""

    def __init__(self) -> None:
        self._earliest: float | None = None
        self._read_at = float("-inf")
        self._recheck = 0.0  # read again this long after the last read (see _stale_at)

    def changed(self) -> None:
        """A change was seen: it may have brought a due time nearer."""
        self._recheck = min(self._recheck, RECHECK_S)

    def unwatched(self) -> None:
        """A while went by with changes not watched (a busy pool's)."""
        self._recheck = min(self._recheck, UNWATCHED_RECHECK_S)

    def due_in(self, now: float) -> float:
        """Seconds until the earliest schedule is due, as last read (inf if none), or until it
        is to be read again after a change, if that is sooner: a schedule added 0.3 s before
        its first time was read a round late, up to 0.8 s after that time (QA)."""
        due = float("inf") if self._earliest is None else self._earliest - now
        return max(min(due, self._read_at + self._recheck - now), 0.0)

    def tick(self, queue: Schedules) -> list[Job]:
        now = queue.clock()
        if self._stale_at(now):
            self._earliest, self._read_at = queue.next_schedule_due(), now
        if self._earliest is None or now < self._earliest:
            return []
        fired = queue.fire_due_schedules()
        self._earliest, self._read_at = queue.next_schedule_due(), now
        return fired

    def _stale_at(self, now: float) -> bool:
        """Whether the earliest due time, as last read, is to be read again at ``now``."""
        since = now - self._read_at + 1e-3  # (a round that ends on time is not a hair early)
        if since < 0 or since >= min(self._recheck, QUIET_SCHEDULES_S):
            self._recheck = float("inf")
            return True
        return False


def _stored_job(text: str) -> dict[str, Any]:
    """A schedule's stored job, as far as it can be read: one changed by hand into something
    else (`[]`, text that is not JSON) made every schedule unlisted, `schedule list` a
    traceback; it lists with what it holds (nothing), and fails as it fires (see _fire)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _info(row: Schedule) -> ScheduleInfo:
    return ScheduleInfo(
        name=row.name,
        cron=row.cron,
        zone=row.zone,
        job=_stored_job(row.job),
        no_overlap=bool(row.no_overlap),
        paused=bool(row.paused),
        next_due=row.next_due,
        last_job_id=row.last_job_id,
    )


__all__ = ["ScheduleInfo", "ScheduleTimer", "Schedules", "check_cron", "next_time", "zone_of"]
