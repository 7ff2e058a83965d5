"""Schedules (SPEC 7): ``schedule add``, ``list``, ``remove``, ``pause``, ``resume``, ``run``."""

from __future__ import annotations

import time

from typing import TYPE_CHECKING

import click

from ..errors import InvalidInput
from ..spec import JobOptions, parse_job, validate_name
from ..text import relative_time, utc_time
from .common import (
    Settings,
    clean,
    json_option,
    pass_settings,
    print_json,
    print_table,
    queue_name_option,
)
from .jobs import _seconds, _whole

if TYPE_CHECKING:
    from ..schedules import ScheduleInfo


@click.group("schedule", no_args_is_help=False)  # no command: "Error: Missing command."
def schedule_group() -> None:
    """Recurring jobs from cron expressions, enqueued by the running workers.

    CRON is 5 fields (minute hour day month weekday), 6 with the seconds first
    ('*/10 * * * * *'), or @hourly, @daily, @weekly, @monthly; in UTC unless --tz names an
    IANA zone. At each due time one job is enqueued, by whichever worker process (or TUI)
    gets there first; after a time with no worker running, one job makes up for all the
    times missed.
    """


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return validate_name("name", value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@schedule_group.command("add")
@click.argument("name", callback=_name)
@click.argument("cron")
@click.argument("arg")
@click.option("--tz", "zone", metavar="ZONE", help="An IANA time zone, e.g. Europe/Paris "
              "(default: UTC).")  # fmt: skip
@click.option("--no-overlap", is_flag=True,
              help="Skip a time while the previous job of this schedule still waits or runs.")
@click.option("--max-retries", callback=_whole("max_retries", 0), metavar="N",
              help="Runs before a job goes to the DLQ (default: config max-retries).")
@click.option("--priority", callback=_whole("priority"), metavar="N",
              help="Higher runs first (default 0).")
@click.option("--timeout", callback=_seconds("timeout", positive=True), metavar="SECONDS",
              help="Kill a job after this long (default: config job-timeout).")
@queue_name_option("Put the jobs in this named queue (default: 'default').")
@json_option
@pass_settings
def add(
    settings: Settings,
    name: str,
    cron: str,
    arg: str,
    zone: str | None,
    no_overlap: bool,
    max_retries: int | None,
    priority: int | None,
    timeout: float | None,
    queue: str | None,
    as_json: bool,
) -> None:
    """Add schedule NAME: enqueue ARG at each time CRON names.

    ARG is a plain command or a JSON job without id, delay, run_at and after. The jobs run in
    the directory this command ran in (the JSON key cwd overrides).

    \b
    Examples:
      queuectl schedule add nightly '0 3 * * *' './backup.sh' --tz Europe/Paris
      queuectl schedule add ping '*/10 * * * * *' 'curl -fsS https://example.com' --no-overlap
      queuectl schedule add report @daily '{"command": "./report.sh", "max_retries": 5}'
    """
    with settings.engine():
        from ..schedules import JOB_KEYS

    spec = parse_job(arg, valid=JOB_KEYS).with_defaults(
        JobOptions(max_retries=max_retries, priority=priority, timeout=timeout, queue=queue)
    )
    info = settings.queue.add_schedule(name, cron, spec, zone=zone, no_overlap=no_overlap)
    if as_json:
        print_json(info.to_dict())
    else:
        click.echo(f"schedule {info.name}: next due {utc_time(info.next_due)}")


def _rows(schedules: list[ScheduleInfo]):
    for info in schedules:
        due = "paused" if info.paused else f"{utc_time(info.next_due)} ({relative_time(info.next_due, time.time())})"
        yield [
            info.name, info.cron, info.zone, due, info.last_job_id or "-",
            "yes" if info.no_overlap else "no", clean(info.job.get("command"), one_line=True),
        ]  # fmt: skip


@schedule_group.command("list")
@json_option
@pass_settings
def list_schedules(settings: Settings, as_json: bool) -> None:
    """Every schedule: name, cron, zone, next due time, last job id, paused."""
    schedules = settings.queue.schedules()
    if as_json:
        print_json([info.to_dict() for info in schedules])
    elif schedules:
        print_table(["NAME", "CRON", "ZONE", "NEXT DUE", "LAST JOB", "NO OVERLAP", "COMMAND"],
                    _rows(schedules))  # fmt: skip
    else:
        click.echo("no schedules", err=True)


@schedule_group.command("remove")
@click.argument("name")
@pass_settings
def remove(settings: Settings, name: str) -> None:
    """Remove schedule NAME (the jobs it enqueued stay)."""
    settings.queue.remove_schedule(name)
    click.echo(f"removed schedule {clean(name, one_line=True)}")


@schedule_group.command("pause")
@click.argument("name")
@json_option
@pass_settings
def pause(settings: Settings, name: str, as_json: bool) -> None:
    """Enqueue nothing for schedule NAME until it is resumed."""
    info = settings.queue.pause_schedule(name)
    print_json(info.to_dict()) if as_json else click.echo(f"paused schedule {info.name}")


@schedule_group.command("resume")
@click.argument("name")
@json_option
@pass_settings
def resume(settings: Settings, name: str, as_json: bool) -> None:
    """Resume schedule NAME: due again from now on (paused times are not made up for)."""
    info = settings.queue.resume_schedule(name)
    if as_json:
        print_json(info.to_dict())
    else:
        click.echo(f"resumed schedule {info.name}: next due {utc_time(info.next_due)}")


@schedule_group.command("run")
@click.argument("name")
@json_option
@pass_settings
def run(settings: Settings, name: str, as_json: bool) -> None:
    """Enqueue schedule NAME's job now, outside its timetable; prints the job's id."""
    job = settings.queue.run_schedule(name)
    print_json(job.to_dict()) if as_json else click.echo(job.id)
