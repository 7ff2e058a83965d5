"""The click CLI: the root group, its lazily loaded subcommands and the error boundary.

Each command family lives in its own module (``jobs``, ``worker``, ``dlq``, ``config``, ``tui``)
and is imported only when it is run or listed, so a scripted command pays for nothing else. No
module of this package imports Textual at import time: only the ``tui`` command's body does.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib
import os
import sys
import time
from typing import Any

import click

from .. import __version__
from ..errors import QueueError
from .common import DB_ENV_VAR, Settings

# As the process began, near enough where /proc cannot say (procs.process_started_at): a `worker
# stop` on this host since then stops a `worker start` still starting, as it registers (see
# Registry.register_worker).
STARTED_AT = time.time()

# name -> "module:object", in the order `--help` lists them.
SUBCOMMANDS = {
    "enqueue": "queuectl.cli.jobs:enqueue",
    "list": "queuectl.cli.jobs:list_jobs",
    "show": "queuectl.cli.jobs:show",
    "status": "queuectl.cli.jobs:status",
    "logs": "queuectl.cli.logs:logs",
    "cancel": "queuectl.cli.control:cancel",
    "retry": "queuectl.cli.control:retry",
    "edit": "queuectl.cli.control:edit",
    "purge": "queuectl.cli.control:purge",
    "worker": "queuectl.cli.worker:worker",
    "dlq": "queuectl.cli.dlq:dlq",
    "config": "queuectl.cli.config:config",
    "tui": "queuectl.cli.tui:tui",
    "queue": "queuectl.cli.queues:queue_group",
    "schedule": "queuectl.cli.schedules:schedule_group",
    "history": "queuectl.cli.observe:history",
    "stats": "queuectl.cli.observe:stats",
    "metrics": "queuectl.cli.observe:metrics",
}
# name -> the first sentence of its help, which the root `--help` lists: it lists every command
# without importing their modules (a test checks that each is the command's own). A command
# without one here is imported to list it.
SUMMARIES = {
    "enqueue": "Add a job: ARG is a JSON object or else a plain shell command.",
    "list": "List jobs, newest first.",
    "show": "Show every field of one job, output included.",
    "status": "Count jobs per state, and the active workers.",
    "logs": "Print a job's output so far; with --follow, also what it prints next.",
    "cancel": "Cancel jobs: a waiting job at once; a running one is stopped by its worker.",
    "retry": "Run finished jobs again: dead, cancelled or completed jobs back to pending.",
    "edit": "Change a waiting (pending or failed) job, validated as enqueue does.",
    "purge": "Delete finished jobs and their history; print how many.",
    "worker": "Run workers in the foreground, or stop running ones.",
    "dlq": "The Dead Letter Queue: jobs whose retries are used up.",
    "config": "Read and change settings.",
    "tui": "Open the terminal UI.",
    "queue": "Named queues: their jobs, limits and pauses.",
    "schedule": "Recurring jobs from cron expressions, enqueued by the running workers.",
    "history": "Every change of job ID, oldest first: when, what, which attempt, which worker, "
    "the exit code and the error.",
    "stats": "Per queue, over the last D: runs finished by what they led to (completed; failed: a "
    "retry was scheduled; dead; cancelled), jobs finished per minute, run time p50/p95/max, wait "
    "from due to start p50/p95, and how long the oldest waiting job has waited.",
    "metrics": "The queue's metrics in the Prometheus text format: jobs by queue and state, live "
    "worker threads, the oldest waiting job's age (gauges); runs by queue and outcome (counters "
    "that never go down); run time (a histogram).",
}


class HelpContext(click.Context):
    """A context whose help formatter measures the terminal as click does, without importing
    shutil for it (with the compression modules it loads: ~2.5 ms of every `--help`)."""

    def make_formatter(self) -> click.HelpFormatter:
        width = self.terminal_width
        if width is None and click.formatting.FORCED_WIDTH is None:
            width = max(min(_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size().columns`` gives it: $COLUMNS, else
    standard output's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            stdout = sys.__stdout__
            columns = os.get_terminal_size(stdout.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (the click docs' LazyGroup)."""

    def __init__(
        self,
        *args: Any,
        lazy_subcommands: dict[str, str] | None = None,
        summaries: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})
        self.summaries = dict(summaries or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_subcommands) + super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click's "Did you mean" looks among the commands a group holds, and a lazy group
            # holds none until one is used (QA: `queuectl stauts` had no hint, `dlq lst` had).
            no_such = getattr(click.exceptions, "NoSuchCommand", None)  # (click >= 8.2)
            if no_such is None or not isinstance(exc, no_such) or exc.possibilities:
                raise
            raise no_such(exc.command_name, possibilities=self.list_commands(ctx),
                          ctx=ctx) from None  # fmt: skip

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them, but a lazy command with a summary is listed without importing
        its module: a stand-in carries the summary, shortened to the width as click does."""
        commands = []
        for name in self.list_commands(ctx):
            if name in self.lazy_subcommands and name in self.summaries:
                commands.append((name, click.Command(name, help=self.summaries[name])))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in commands])

    def _load(self, cmd_name: str) -> click.Command:
        module_name, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attribute} is not a click command")
        if command.context_class is click.Context:  # its --help, too, measures without shutil
            command.context_class = HelpContext
        return command


class EngineError(click.ClickException):
    """An engine failure shown as one ``Error:`` line, with the engine's exit code (1 or 2)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class QueuectlGroup(LazyGroup):
    """The root group: also the one place where engine exceptions become CLI errors."""

    context_class = HelpContext

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ctrl-C (`logs -f`, `worker stop`'s wait): a quiet exit, 130 as a shell reports a
            # program SIGINT ended (click's own: "Aborted!", exit 1, read as a failure).
            sys.exit(130)
        except QueueError as exc:
            raise EngineError(str(exc), exc.exit_code) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click's: a reader that closed the pipe (`| head`) ends the command
            raise EngineError(_os_error_text(exc), 1) from None
        except Exception as exc:
            # A database error can only come from a command that loaded the engine (and so
            # peewee): importing peewee here would make `--help` and `config get` pay for it.
            peewee = sys.modules.get("peewee")
            if peewee is None or not isinstance(exc, peewee.PeeweeException):
                raise
            # The database failed under us (disk full, file replaced, server gone, ...).
            from ..reconnect import HELD, LOCKED, first_line

            first = first_line(exc)
            if first == LOCKED:  # SQLite, after its busy timeout (SPEC 2: never said so, QA)
                raise EngineError(f"{HELD} (for over a minute): try again once it lets go",
                                  1) from None  # fmt: skip
            raise EngineError(f"database error: {first}", 1) from None


@click.group(
    cls=QueuectlGroup,
    lazy_subcommands=SUBCOMMANDS,
    summaries=SUMMARIES,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--db",
    "db",
    metavar="TARGET",
    envvar=DB_ENV_VAR,
    show_envvar=True,
    help="Queue database: a file path, sqlite:///path or postgresql://user@host:port/dbname. "
    "Default: queuectl.db in your user data directory.",
)
# The version as the package states it: asking importlib.metadata costs `--version` ~15 ms.
@click.version_option(version=__version__, prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A durable job queue for shell commands.

    Without a command, opens the terminal UI (or, when not run from a terminal, prints this
    help). Scripts use the commands below; every listing takes --json.

    \b
    Examples:
      queuectl enqueue 'make test'
      queuectl enqueue '{"command": "./backup.sh", "max_retries": 5}'
      queuectl worker start --count 2
      queuectl status
    """
    if ctx.get_parameter_source("db") is click.core.ParameterSource.ENVIRONMENT:
        db = None  # read by resolve_target, which names the variable in its errors
    ctx.obj = Settings(target=db, ends_process=ctx.obj is ENDS_PROCESS)
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand is None:
        if _interactive():
            from .tui import open_tui

            open_tui(ctx.obj, workers=2, checked=True)
        else:
            click.echo(ctx.get_help())


def _interactive() -> bool:
    """Both ends are a terminal: a person at a keyboard, not a script or a pipe."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def main() -> None:
    """The ``queuectl`` console script (and ``python -m queuectl``)."""
    _fill_closed_streams()
    _escape_what_output_cannot_encode()
    if _starts_a_worker(sys.argv[1:]):
        _stop_at_once_until_running()
    try:
        try:
            cli.main(prog_name="queuectl", obj=ENDS_PROCESS)
        except OSError as exc:  # `--help` or `--version`, written as the options are read
            if exc.errno == errno.EPIPE:
                raise
            with contextlib.suppress(OSError):
                print(f"Error: {_os_error_text(exc)}", file=sys.stderr)
            sys.exit(1)
    except SystemExit as exc:
        exit_now(exc.code)
        raise


def _starts_a_worker(args: list[str]) -> bool:
    """Whether the command line is ``[--db TARGET] worker start ...``."""
    words = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--db":
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
            if len(words) == 2:
                break
    return words == ["worker", "start"]


def _stop_at_once_until_running() -> None:
    """`worker start`: a stop signal that comes before its own handlers are in place (while it
    imports, opens the database, migrates it) exits 0 at once, as a stop with no job running
    does; the default ended it with 143, "stopped hard", and a SIGINT with a traceback (QA: a
    SIGTERM 0.1-0.6 s after the start). Nothing is claimed yet; a migration under way is rolled
    back. A SIGHUP that is ignored (`nohup`) stays ignored."""
    import signal

    def stop(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            name = signal.Signals(signum).name
            os.write(2, f"queuectl: {name} before the worker started: exiting\n".encode())
        os._exit(0)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, stop)  # (as the worker's own: see cli.worker.Stopper)


# Given by main() as the root context's object: the process ends when the command does.
ENDS_PROCESS = "ends the process"


def exit_now(code: object) -> None:
    """End the process with ``code`` (a SystemExit's) at once, without the interpreter's
    teardown, when that teardown has nothing left to do but free memory: freeing every module
    and object of click, peewee and the engine costs a short command ~15 ms of CPU, a sixth of
    an `enqueue`. The command has finished (its database closed, or left open with its commits
    already durable: see Settings.close); here the output is flushed and the atexit handlers
    run, as at any exit. Returns, for an exit as usual, when another thread still runs (the
    teardown would wait for it), when a profiler or a tracer watches (it writes its results
    after the program), or when flushing fails (a closed pipe: Python reports it as it always
    does)."""
    if code is None:
        code = 0
    if not isinstance(code, int) or sys.getprofile() is not None or sys.gettrace() is not None:
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() != 1:
        return
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is None:
        return
    if not _flushed():
        return
    run_exitfuncs()
    if _flushed():  # what an atexit handler printed
        os._exit(code)


def _fill_closed_streams() -> None:
    """A standard stream its caller closed (`queuectl list >&-`, `enqueue --file - <&-`) is
    Python's None, and click failed on it with a traceback (QA): it is /dev/null instead, as if
    redirected there (opened on the lowest free descriptor: the one closed)."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115 (open until the exit)


def _escape_what_output_cannot_encode() -> None:
    """Standard output in an encoding that cannot hold every character (PYTHONIOENCODING=latin-1,
    a cp1252 console, an ASCII locale with PYTHONUTF8=0) writes those it cannot as escapes
    (``\\u65e5``), as standard error does: a job's command in Japanese was a traceback, after
    `enqueue` had enqueued it (QA). Bytes the locale could not decode (argv's, as surrogates)
    are written back as they came, as Python's own "surrogateescape" does."""
    stream = sys.stdout
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
    if encoding not in ("utf-8", "utf8") and getattr(stream, "errors", None) in (
        "strict", "surrogateescape"
    ):
        import codecs

        codecs.register_error(_AS_CAME_OR_ESCAPED, _as_came_or_escaped)
        with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper
            stream.reconfigure(errors=_AS_CAME_OR_ESCAPED)


_AS_CAME_OR_ESCAPED = "queuectl.as-came-or-escaped"


def _as_came_or_escaped(exc: UnicodeError) -> tuple[bytes, int]:
    """The encoding error handler of :func:`_escape_what_output_cannot_encode`."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    written = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that did not decode
            written.append(code - 0xDC00)
        else:
            written += char.encode("ascii", "backslashreplace")
    return bytes(written), exc.end


def _os_error_text(exc: OSError) -> str:
    """An OSError a command let out, as its one error line."""
    if exc.filename is not None:
        return str(exc)
    # No file named: a write to the output failed (the commands write no file but it). A full
    # disk under `enqueue --file F > ids.txt`: the jobs are enqueued; a traceback, read as a
    # failure, had the script enqueue them all again (QA).
    _let_output_go()
    return (f"cannot write to standard output ({exc.strerror or exc}); what the command "
            "changed in the queue, if anything, is done")


def _let_output_go() -> None:
    """What standard output still holds is let go (fd 1 then points at /dev/null), so that the
    exit does not report the same failure again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no usable stdout: nothing to let go
        pass


def _flushed() -> bool:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:  # e.g. BrokenPipeError: left to the usual exit, which reports it
        return False
    return True


__all__ = ["cli", "main", "LazyGroup", "SUBCOMMANDS", "SUMMARIES"]
