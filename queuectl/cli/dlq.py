"""The Dead Letter Queue: ``dlq list`` and ``dlq retry``."""

from __future__ import annotations

import click

from ..states import State
from .common import TABLE_PAGE, Settings, WholeNumber, json_option, pass_settings, print_json
from .common import print_json_array
from .jobs import complete_ids, print_jobs, widths_beyond


@click.group(no_args_is_help=False)  # no command: "Error: Missing command." (SPEC 4)
def dlq() -> None:
    """The Dead Letter Queue: jobs whose retries are used up."""


@dlq.command("list")
@click.option("--limit", "-n", type=WholeNumber(min=0), help="Show at most N jobs.")
@json_option
@pass_settings
def list_dead(settings: Settings, limit: int | None, as_json: bool) -> None:
    """List the dead jobs, newest first."""
    workflows = settings.workflows
    if as_json:  # (read a page at a time, each page as it is printed, as `list --json`)
        print_json_array(job.to_dict() for job in workflows.each_job(State.DEAD, limit))
        return
    printed = print_jobs(
        workflows.each_job(State.DEAD, limit, with_output=False, page=TABLE_PAGE),
        with_state=False, with_error=True,
        beyond=lambda: widths_beyond(settings, (State.DEAD,), None),
    )  # fmt: skip
    if not printed and limit != 0:  # `--limit 0` asked for none: not a claim that there are none
        click.echo("the DLQ is empty", err=True)


@dlq.command()
@click.argument("ids", nargs=-1, metavar="ID...", shell_complete=complete_ids(State.DEAD))
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job.")
@json_option
@pass_settings
def retry(settings: Settings, ids: tuple[str, ...], retry_all: bool, as_json: bool) -> None:
    """Put dead jobs back to pending: attempts 0, error cleared, due now.

    IDs may be unique prefixes. All or nothing: if one is unknown, ambiguous or not dead,
    nothing changes (exit 1). Prints the retried ids (--json: the job objects).

    \b
    Examples:
      queuectl dlq retry 3k9x
      queuectl dlq retry --all
    """
    if retry_all and ids:
        raise click.UsageError("give IDs or --all, not both")
    if not retry_all and not ids:
        raise click.UsageError("give the IDs of dead jobs, or --all")
    queue = settings.queue
    if retry_all:
        if as_json:
            jobs = queue.retry_all_dead_jobs()
            if not jobs:
                click.echo("the DLQ is empty", err=True)
            print_json([job.to_dict() for job in jobs])
            return
        retried = queue.retry_all_dead()
        if not retried:
            click.echo("the DLQ is empty", err=True)
    else:
        jobs = queue.retry_dead(ids)
        if as_json:
            print_json([job.to_dict() for job in jobs])
            return
        retried = [job.id for job in jobs]
    for job_id in retried:
        click.echo(job_id)
