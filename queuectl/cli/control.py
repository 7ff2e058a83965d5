"""Controlling jobs: ``cancel``, ``retry``, ``edit`` and ``purge`` (SPEC 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import QueueError
from ..spec import parse_duration, parse_time, validate_command
from ..states import ACTIVE, FINAL, STATES, State
from .common import Settings, engine_value, json_option, pass_settings, print_json
from .common import queue_name_option
from .jobs import _seconds, _whole, complete_ids

if TYPE_CHECKING:
    from ..models import Job

# How long `cancel` waits for a running job's worker to stop it: a live worker does so within
# about 2 s; a lost one's jobs are rescued (as cancelled) once its heartbeat is past the lease.
CANCEL_WAIT_S = 30.0


def _print_ids(jobs: list[Job], as_json: bool) -> None:
    if as_json:
        print_json([job.to_dict() for job in jobs])
    else:
        for job in jobs:
            click.echo(job.id)


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=complete_ids())
@json_option
@pass_settings
def cancel(settings: Settings, ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel jobs: a waiting job at once; a running one is stopped by its worker.

    A running job's process group gets SIGTERM (then SIGKILL after a grace) from the worker
    running it, on any machine; cancel returns once the job is cancelled, its exit code and
    output kept. IDs may be unique prefixes. All or nothing: if one is unknown, ambiguous or
    already finished, nothing changes (exit 1). Prints the cancelled ids (--json: the jobs).

    \b
    Examples:
      queuectl cancel 3k9x
      queuectl cancel 3k9x 7ghq --json
    """
    queue = settings.queue
    jobs = queue.cancel(ids)
    running = [job for job in jobs if job.state in ACTIVE]
    if running and not queue.wait_stopped([job.seq for job in running], CANCEL_WAIT_S):
        still = [job.id for job in queue.reread(running) if job.state in ACTIVE]
        raise QueueError(
            f"job {', '.join(still)} is still running: its worker has not stopped it within "
            f"{CANCEL_WAIT_S:g}s (it will be cancelled when its run ends)"
        )
    if as_json:
        # Read again for what the stops left (exit codes, output). One purged since is printed
        # as the cancel left it (QA: "no job X", exit 1, for a cancel that was done); a run its
        # worker stopped ended cancelled, as every run asked to stop does.
        for job in running:
            job.state = State.CANCELLED.value
        jobs = queue.reread(jobs)
    _print_ids(jobs, as_json)


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=complete_ids())
@json_option
@pass_settings
def retry(settings: Settings, ids: tuple[str, ...], as_json: bool) -> None:
    """Run finished jobs again: dead, cancelled or completed jobs back to pending.

    Attempts start over at 0, the error is cleared, and the job is due now; its history keeps
    the earlier runs. IDs may be unique prefixes. All or nothing: if one is unknown, ambiguous
    or not finished, nothing changes (exit 1). Prints the retried ids (--json: the jobs).

    \b
    Examples:
      queuectl retry 3k9x
    """
    _print_ids(settings.queue.retry(ids), as_json)


@click.command()
@click.argument("job_id", metavar="ID", shell_complete=complete_ids())
@click.option("--command", callback=engine_value(validate_command), metavar="C",
              help="The shell command to run.")
@click.option("--priority", callback=_whole("priority"), metavar="N", help="Higher runs first.")
@click.option("--max-retries", callback=_whole("max_retries", 0), metavar="N",
              help="Runs before the job goes to the DLQ.")
@click.option("--timeout", callback=_seconds("timeout", positive=True), metavar="SECONDS",
              help="Kill the job after this long.")
@click.option("--delay", callback=_seconds("delay", positive=False), metavar="SECONDS",
              help="Run no sooner than this many seconds from now.")
@click.option("--run-at", callback=engine_value(lambda v: parse_time("run_at", v)),
              metavar="TIME", help="Run no sooner than this ISO 8601 time (naive = UTC).")
@queue_name_option("Move the job to this queue.")
@json_option
@pass_settings
def edit(
    settings: Settings,
    job_id: str,
    command: str | None,
    priority: int | None,
    max_retries: int | None,
    timeout: float | None,
    delay: float | None,
    run_at: float | None,
    queue: str | None,
    as_json: bool,
) -> None:
    """Change a waiting (pending or failed) job, validated as enqueue does.

    A job that is running or finished cannot be edited (exit 1); a job starting at the same
    moment is either changed before it starts or refused. Prints the job's id (--json: the
    job).

    \b
    Examples:
      queuectl edit 3k9x --priority 10
      queuectl edit 3k9x --command './backup.sh --full' --delay 60
    """
    if delay is not None and run_at is not None:
        raise click.UsageError("give --delay or --run-at, not both")
    given = {
        "command": command, "priority": priority, "max_retries": max_retries,
        "timeout": timeout, "delay": delay, "run_at": run_at, "queue": queue,
    }  # fmt: skip
    changes = {key: value for key, value in given.items() if value is not None}
    if not changes:
        raise click.UsageError(
            "nothing to change: give --command, --priority, --max-retries, --timeout, --delay, "
            "--run-at or --queue"
        )
    job = settings.queue.edit(job_id, changes)
    if as_json:
        print_json(job.to_dict())
    else:
        click.echo(job.id)


def _finished_state(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    chosen = []
    for value in values:
        state = value.strip().lower()
        if state not in STATES or State(state) not in FINAL:
            raise click.BadParameter(
                f"{value!r} is not a finished state (valid: {', '.join(FINAL)})", ctx, param
            )
        chosen.append(State(state))
    return tuple(chosen)


@click.command()
@click.option("--state", "-s", "states", multiple=True, callback=_finished_state, metavar="S",
              help=f"Delete jobs in this state ({', '.join(FINAL)}; repeatable). "
              "Default: completed and cancelled.")
@click.option("--older-than", callback=engine_value(lambda v: parse_duration(v, "older-than")),
              metavar="D", help="Only jobs that finished more than D ago (90, 90s, 15m, 2h, 7d).")
@queue_name_option("Only jobs of this queue.")
@json_option
@pass_settings
def purge(
    settings: Settings,
    states: tuple[State, ...],
    older_than: float | None,
    queue: str | None,
    as_json: bool,
) -> None:
    """Delete finished jobs and their history; print how many.

    Never deletes a waiting or running job. Config `retention` does the same for completed
    and cancelled jobs by itself (see `config`).

    \b
    Examples:
      queuectl purge                          # every completed and cancelled job
      queuectl purge --state dead --older-than 7d
    """
    deleted = settings.queue.purge(states, older_than, queue)
    if as_json:
        print_json({"deleted": deleted})
    else:
        click.echo(f"purged {deleted} job{'' if deleted == 1 else 's'}")

