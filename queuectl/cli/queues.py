"""Named queues (SPEC 7): ``queue list``, ``queue limit``, ``queue pause`` / ``resume``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import InvalidInput
from ..spec import validate_name
from ..states import STATES
from .common import Settings, engine_value, json_option, pass_settings, print_json, print_table

if TYPE_CHECKING:
    from ..workflows import QueueInfo


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return engine_value(lambda text: validate_name("queue", text))(ctx, param, value)


def _limit(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    from ..spec import whole_number

    try:
        value = whole_number(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a whole number >= 0 or 'none'") from None
    if value < 0 or value > 2**31 - 1:
        raise InvalidInput(f"the limit must be from 0 to {2**31 - 1}, got {text}")
    return value


@click.group("queue", no_args_is_help=False)  # no command: "Error: Missing command."
def queue_group() -> None:
    """Named queues: their jobs, limits and pauses.

    A job goes to a queue with `enqueue --queue NAME` (default: 'default'); `worker start
    --queue NAME` claims only that queue's jobs.
    """


def _show(info: QueueInfo) -> str:
    limit = "none" if info.limit is None else str(info.limit)
    return f"queue {info.name}: limit {limit}, {'paused' if info.paused else 'running'}"


@queue_group.command("list")
@json_option
@pass_settings
def list_queues(settings: Settings, as_json: bool) -> None:
    """Every queue that has jobs or settings: jobs per state, limit, paused."""
    queues = settings.queue.queues()
    if as_json:
        print_json([info.to_dict() for info in queues])
        return
    if not queues:
        click.echo("no queues", err=True)
        return
    headers = ["QUEUE", *(state.upper() for state in STATES), "LIMIT", "PAUSED"]
    print_table(headers, (
        [info.name, *(str(info.counts[state]) for state in STATES),
         "-" if info.limit is None else str(info.limit), "yes" if info.paused else "no"]
        for info in queues
    ))  # fmt: skip


# A negative N is a value out of range, not an option click does not know (`-1`).
@queue_group.command("limit", context_settings={"ignore_unknown_options": True})
@click.argument("name", callback=_name)
@click.argument("limit", metavar="N|none", callback=engine_value(_limit))
@json_option
@pass_settings
def limit(settings: Settings, name: str, limit: int | None, as_json: bool) -> None:
    """At most N jobs of queue NAME processing at once, across every worker process and host
    ('none': no limit). Jobs already running finish.

    \b
    Examples:
      queuectl queue limit deploy 1
      queuectl queue limit deploy none
    """
    info = settings.queue.set_queue_limit(name, limit)
    print_json(info.to_dict()) if as_json else click.echo(_show(info))


@queue_group.command("pause")
@click.argument("name", callback=_name)
@json_option
@pass_settings
def pause(settings: Settings, name: str, as_json: bool) -> None:
    """Claim no job of queue NAME until it is resumed (running jobs finish; its jobs can still
    be enqueued, edited and cancelled)."""
    info = settings.queue.pause_queue(name)
    print_json(info.to_dict()) if as_json else click.echo(_show(info))


@queue_group.command("resume")
@click.argument("name", callback=_name)
@json_option
@pass_settings
def resume(settings: Settings, name: str, as_json: bool) -> None:
    """Claim the jobs of queue NAME again."""
    info = settings.queue.resume_queue(name)
    print_json(info.to_dict()) if as_json else click.echo(_show(info))
