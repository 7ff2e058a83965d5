"""What every command family shares: the settings in ``ctx.obj`` (with the queue, opened lazily),
reusable options, JSON output, and human output that is safe to print to a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..env import DB_ENV_VAR
from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..core import QueueCore
    from ..queue import Queue
    from ..workflows import Workflows

F = TypeVar("F", bound=Callable[..., Any])


# A process that ends at once after its command (see queuectl.cli.exit_now) leaves a SQLite
# queue's WAL file in place, up to this size, instead of closing the database: the last close
# copies the WAL into the file and deletes it (two fsyncs), and the next write makes a new one
# (two more: its header and the folder). Its commits are made durable on their own instead
# (synchronous=FULL: one fsync of the WAL at each commit). The next process to open the file
# reads the WAL back (~1.5 ms a MB), so a larger one is closed as usual, which empties it when
# no other process has the file open.
KEPT_WAL_BYTES = 256 * 1024
# The parts left open, referenced until the process ends: collected, they would close.
_LEFT_OPEN: list["QueueCore"] = []


class Settings:
    """Carried in ``ctx.obj``: the database target, and the queue once a command asks for it.

    A one-shot command opens the part of the Queue it calls: :attr:`core` (the database, its
    schema and the settings) or :attr:`workflows` (also jobs: enqueue with their dependencies and
    named queues), which import less of the engine than the whole :attr:`queue` (control,
    schedules, history, hooks, the worker registry). Each part checks the schema as the Queue
    does. A part already open is used again, as is the Queue for a smaller part.

    ``ends_process``: the process ends as soon as the command returns (the console script, see
    :func:`queuectl.cli.exit_now`). A SQLite queue opened only through those one-shot parts
    then commits durably and is left open at :meth:`close` (see KEPT_WAL_BYTES)."""

    def __init__(self, target: str | None, *, ends_process: bool = False) -> None:
        self.target = target
        self.ends_process = ends_process
        self._opened: list[QueueCore] = []
        self._one_shot: list[QueueCore] = []  # opened as core or workflows, committing durably

    @property
    def queue(self) -> "Queue":
        return self._open("queuectl.queue", "Queue")  # type: ignore[return-value]

    @property
    def workflows(self) -> "Workflows":
        workflows = self._open("queuectl.workflows", "Workflows", one_shot=True)
        return workflows  # type: ignore[return-value]

    @property
    def core(self) -> "QueueCore":
        return self._open("queuectl.core", "QueueCore", one_shot=True)

    @contextlib.contextmanager
    def engine(self) -> Iterator[None]:
        """Around an import of the engine's modules (peewee's) before the queue is opened: on
        a SQLite file they load without the server drivers, as :meth:`_open` loads them (see
        target.engine_for). QA: `metrics` imported its module first and loaded psycopg for a
        SQLite file (+200 ms), as did `worker start` and `schedule add`."""
        from ..target import engine_for, resolve_target

        with engine_for(resolve_target(self.target)):
            yield

    def _open(self, module: str, name: str, one_shot: bool = False) -> "QueueCore":
        import importlib

        with self.engine():
            part = getattr(importlib.import_module(module), name)
        for opened in self._opened:
            if isinstance(opened, part):
                return opened
        opened = part(self.target)
        self._opened.append(opened)
        if opened.upgraded_under:
            _say_upgraded_under(opened)
        if one_shot and self.ends_process and opened.is_sqlite:
            # Durable at commit (the WAL synced), not only at the last close's checkpoint.
            opened.db.execute_sql("PRAGMA synchronous = FULL")
            self._one_shot.append(opened)
        return opened

    def close(self) -> None:
        leave_open = (
            self.ends_process
            and bool(self._opened)
            and all(part in self._one_shot for part in self._opened)
            and all(_wal_size(part) <= KEPT_WAL_BYTES for part in self._opened)
        )
        while self._opened:
            part = self._opened.pop()
            if leave_open:
                _LEFT_OPEN.append(part)
            else:
                part.close()


def _say_upgraded_under(part: "QueueCore") -> None:
    """One line on stderr: this command upgraded the database while worker processes of an
    older queuectl ran on it (they go on with the schema they know, and may fail where it
    changed: their own log says only that the database failed)."""
    from ..schema import SCHEMA_VERSION

    running = part.upgraded_under
    shown = ", ".join(f"pid {pid} on {host}" for host, pid in running[:3])
    more = f" and {len(running) - 3} more" if len(running) > 3 else ""
    click.echo(
        f"Warning: upgraded the database (schema {part.upgraded_from} to "
        f"{SCHEMA_VERSION}) while {len(running)} worker process(es) of an older queuectl "
        f"ran on it ({shown}{more}): restart them with this one (`queuectl worker stop`, "
        "then `worker start`)",
        err=True,
    )


def _wal_size(part: "QueueCore") -> int:
    try:
        return os.path.getsize(part.target.location + "-wal")
    except OSError:
        return 0


pass_settings = click.make_pass_decorator(Settings)


def json_option(function: F) -> F:
    """``--json``: machine-readable output on stdout (the SPEC's job objects, intact)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a human-readable report."
    )(function)


def echo(text: str, nl: bool = True) -> None:
    """``click.echo(text, nl=nl)`` to standard output, every byte of it. A large write to a pipe
    its reader closed (`| head`) could write a part and return as if it were done (CPython's
    buffered writer: 65,536 bytes of 1 MiB, no error), and the command exit 0 with its output
    cut (QA: `logs`, `show --json`). The rest is written on, so the closed pipe is seen: exit 1,
    quietly, as README says."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # not a file's text stream: as click does it
        click.echo(text, nl=nl)
        return
    stream.flush()
    data = (text + "\n" if nl else text).encode(stream.encoding or "utf-8",
                                                 stream.errors or "strict")  # fmt: skip
    write_all(buffer, data)


def write_all(buffer: Any, data: bytes) -> None:
    """Write ``data`` to the binary stream ``buffer`` whole (see :func:`echo`), and flush it."""
    view = memoryview(data)
    while view:
        written = buffer.write(view)
        if not written:  # (a stream that would block: none of ours)
            break
        view = view[written:]
    buffer.flush()


def print_json(data: Any) -> None:
    import json

    # ASCII-only output: valid JSON whatever the terminal's encoding; text survives exactly.
    echo(json.dumps(data, separators=(",", ":")))


def print_json_array(items: Iterable[Any]) -> None:
    """``print_json(list(items))``, printed as the items come: a listing of any length is
    never whole in memory."""
    import json

    echo("[", nl=False)
    for n, item in enumerate(items):
        echo(("," if n else "") + json.dumps(item, separators=(",", ":")), nl=False)
    echo("]")


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


class _TypedNumber:
    """A click number type taking a number typed in ASCII digits only (``parse``): int() and
    float() alone took any Unicode digit ("٣" was 3) and underscores."""

    noun = "number"

    def parse(self, text: str) -> int | float:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = self.parse(value)
            except ValueError:
                fail = self.fail  # type: ignore[attr-defined]  (click.ParamType's)
                fail(f"{value!r:.40} is not a {self.noun}", param, ctx)
        return super().convert(value, param, ctx)  # type: ignore[misc]


class WholeNumber(_TypedNumber, click.IntRange):
    """click.IntRange, in ASCII digits."""

    noun = "whole number"

    def parse(self, text: str) -> int:
        from ..spec import whole_number

        return whole_number(text)


class FiniteNumber(_TypedNumber, click.FloatRange):
    """click.FloatRange, in ASCII digits, refusing NaN and infinity as every other number a
    user gives is refused (``--timeout nan`` was taken as no bound at all)."""

    def parse(self, text: str) -> float:
        import math

        from ..spec import number

        value = number(text)
        if not math.isfinite(value):
            raise click.BadParameter(f"must be a finite number, got {value}")
        return value


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
    from ..text import escaped_line, safe

    if text is None:
        return "-"
    return escaped_line(str(text)) if one_line else safe(str(text))


# -- tables ----------------------------------------------------------------------------------


TABLE_PAGE = 1000  # rows formatted and printed at a time by print_table


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[int] = ()
) -> int:
    """Left-aligned columns, in terminal cells (wide characters take two); the last one (free
    text) is cut to the terminal's width when stdout is a terminal, and left whole for
    pipes. Rows are taken and printed TABLE_PAGE at a time, each column as wide as its widest
    cell so far, and at least ``widths`` (what the caller knows of later pages): a listing of
    any length in bounded memory, its first lines at once (QA: `list` of a million jobs held
    2.4 GB, and `list | head -2` waited 69 s). A listing of one page is aligned as a whole; in
    a longer one a later, wider cell widens its column from its page on. Returns the rows
    printed."""
    import itertools
    import shutil

    from ..text import cells, fit

    widths = [max(len(h), given) for h, given in itertools.zip_longest(headers, widths,
                                                                       fillvalue=0)]
    pending, printed = iter(rows), 0
    page: list[list[str]] = [list(headers)]
    while True:
        taken = [list(row) for row in itertools.islice(pending, TABLE_PAGE)]
        page += taken
        for row in taken:
            for i, cell in enumerate(row[:-1]):
                widths[i] = max(widths[i], cells(cell))
        room = 0
        if sys.stdout.isatty():
            used = sum(widths[:-1]) + 2 * (len(headers) - 1)
            room = max(shutil.get_terminal_size().columns - used, 20)
        for row in page:
            line = [cell + " " * (widths[i] - cells(cell)) for i, cell in enumerate(row[:-1])]
            line.append(fit(row[-1], room))
            echo("  ".join(line).rstrip())  # (to a pipe a row is whole: a command can be long)
        printed += len(taken)
        if len(taken) < TABLE_PAGE:
            return printed
        page = []


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
    "FiniteNumber",
    "Settings",
    "WholeNumber",
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
