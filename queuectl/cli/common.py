"""What every command family shares: the settings in ``ctx.obj`` (with the queue, opened lazily),
reusable options, JSON output, and human output that is safe to print to a terminal."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..env import DB_ENV_VAR
from ..errors import InvalidInput
from ..text import escaped_line, safe, shorten

if TYPE_CHECKING:
    from ..queue import Queue

F = TypeVar("F", bound=Callable[..., Any])


class Settings:
    """Carried in ``ctx.obj``: the database target, and the queue once a command asks for it."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self._queue: Queue | None = None

    @property
    def queue(self) -> "Queue":
        if self._queue is None:
            from ..target import engine_for, resolve_target

            with engine_for(resolve_target(self.target)):
                from ..queue import Queue

            self._queue = Queue(self.target)
        return self._queue

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None


pass_settings = click.make_pass_decorator(Settings)


def json_option(function: F) -> F:
    """``--json``: machine-readable output on stdout (the SPEC's job objects, intact)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a human-readable report."
    )(function)


def print_json(data: Any) -> None:
    # ASCII-only output: valid JSON whatever the terminal's encoding; text survives exactly.
    click.echo(json.dumps(data, separators=(",", ":")))


Callback = Callable[[click.Context, click.Parameter, Any], Any]


def engine_value(convert: Callable[[Any], Any]) -> Callback:
    """A click callback that validates with the engine's rules and reports a bad value the
    click way (exit 2, naming the option)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except InvalidInput as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


def queue_name_option(help: str, *names: str) -> Callable[[F], F]:
    """``--queue NAME``: one named queue (SPEC 7), its name validated (exit 2)."""
    from ..spec import validate_name

    return click.option(
        *(names or ("--queue", "-q")), "queue", metavar="NAME",
        callback=engine_value(lambda value: validate_name("queue", value)), help=help,
    )  # fmt: skip


def queues_option(help: str) -> Callable[[F], F]:
    """``--queue NAME``, repeatable: claim only jobs of these queues (SPEC 7)."""
    from ..spec import validate_name

    def convert(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_name("queue", value) for value in values)

    return click.option(
        "--queue", "-q", "queues", metavar="NAME", multiple=True,
        callback=engine_value(convert), help=help,
    )  # fmt: skip


# -- terminal-safe text ----------------------------------------------------------------------


def clean(text: object, *, one_line: bool = False) -> str:
    """Job text made safe to print (see :mod:`queuectl.text`); ``None`` is ``-``. ``one_line``
    also shows newlines and tabs as escapes."""
    if text is None:
        return "-"
    return escaped_line(str(text)) if one_line else safe(str(text))


# -- tables ----------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Left-aligned columns; the last one (free text) is cut to the terminal's width when
    stdout is a terminal, and left whole for pipes."""
    rows = [list(row) for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    room = 0
    if sys.stdout.isatty():
        used = sum(widths[:-1]) + 2 * (len(headers) - 1)
        room = max(shutil.get_terminal_size().columns - used, 20)
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        cells.append(shorten(row[-1], room))
        click.echo("  ".join(cells).rstrip())


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))


__all__ = [
    "DB_ENV_VAR",
    "Settings",
    "clean",
    "engine_value",
    "json_option",
    "pass_settings",
    "print_json",
    "print_table",
    "queue_name_option",
    "queues_option",
    "wait_until",
]
