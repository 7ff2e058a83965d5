"""Jobs: ``enqueue``, ``list``, ``show`` and ``status``."""

from __future__ import annotations

import codecs
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from ..errors import InvalidInput, QueueError
from ..spec import JobOptions, JobSpec, parse_int, parse_job, parse_seconds, parse_time
from ..spec import validate_id
from ..states import ACTIVE, CLAIMABLE, STATES

DEFAULT_QUEUE = "default"  # models.DEFAULT_QUEUE, without importing the engine
from .common import (
    TABLE_PAGE,
    Settings,
    WholeNumber,
    clean,
    echo,
    queue_name_option,
    engine_value,
    json_option,
    pass_settings,
    print_json,
    print_json_array,
    print_table,
)

if TYPE_CHECKING:
    from ..models import Job

_NONE_HELD: Mapping[str, str] = MappingProxyType({})  # no queue paused or limited to 0

# -- enqueue ---------------------------------------------------------------------------------


def _whole(key: str, minimum: int | None = None):
    return engine_value(lambda text: parse_int(key, text, minimum))


def _seconds(key: str, *, positive: bool):
    return engine_value(lambda text: parse_seconds(key, text, positive=positive))


def complete_ids(state: str | None = None):
    """Shell completion of job ids (of ``state``), newest first (quietly nothing when the queue
    can't open)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from ..queue import Queue
        from ..target import resolve_target

        root = ctx.find_root()
        try:
            target = resolve_target(root.params.get("db"))
            if target.kind == "sqlite" and not os.path.exists(target.location):
                return []  # (a tab after a mistyped --db made that file, and its folders: QA)
            queue = Queue(target.location)
            try:
                return queue.ids_starting(incomplete, state)
            finally:
                queue.close()
        except Exception:
            return []

    return complete


@click.command()
@click.argument("arg", nargs=-1, metavar="[ARG]")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.File("rb"),
    metavar="PATH",
    help="Enqueue one job per line of this file ('-': stdin), all or none.",
)
@click.option("--max-retries", callback=_whole("max_retries", 0), metavar="N",
              help="Runs before the job goes to the DLQ (default: config max-retries).")
@click.option("--priority", callback=_whole("priority"), metavar="N",
              help="Higher runs first (default 0).")
@click.option("--timeout", callback=_seconds("timeout", positive=True), metavar="SECONDS",
              help="Kill the job after this long (default: config job-timeout).")
@click.option("--delay", callback=_seconds("delay", positive=False), metavar="SECONDS",
              help="Run no sooner than this many seconds from now.")
@click.option("--run-at", callback=engine_value(lambda v: parse_time("run_at", v)),
              metavar="TIME", help="Run no sooner than this ISO 8601 time (naive = UTC).")
@click.option("--id", "job_id", callback=engine_value(validate_id), metavar="ID",
              help="Give the job this id instead of a generated one.")
@queue_name_option("Put the job in this named queue (default: 'default').")
@click.option("--after", "after", multiple=True, metavar="ID",
              help="Run only once this job has completed (repeatable; an id or unique prefix).")
@json_option
@pass_settings
def enqueue(
    settings: Settings,
    arg: tuple[str, ...],
    file: BinaryIO | None,
    max_retries: int | None,
    priority: int | None,
    timeout: float | None,
    delay: float | None,
    run_at: float | None,
    job_id: str | None,
    queue: str | None,
    after: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a job: ARG is a JSON object or else a plain shell command.

    JSON keys: command (required), id, max_retries, priority, timeout, delay (seconds) or
    run_at (ISO 8601), cwd, queue, after (a list of ids). The options fill in what the JSON
    leaves out. Prints the new job's id (--json: the job object). In a --file, a line's
    "after" may name the ids of earlier lines.

    \b
    Examples:
      queuectl enqueue 'sleep 5 && echo done'
      queuectl enqueue --priority 10 --max-retries 5 './deploy.sh'
      queuectl enqueue '{"id": "backup", "command": "./backup.sh", "delay": 60}'
      queuectl enqueue --file jobs.txt      # one job per line, all in one transaction
      queuectl enqueue --after build --queue deploy './deploy.sh'
    """
    if len(arg) > 1:
        raise click.UsageError(
            f"got {len(arg)} arguments: quote the command as one, e.g. "
            f"queuectl enqueue '{' '.join(arg)}'"
        )
    if arg and file is not None:
        raise click.UsageError("give ARG or --file, not both")
    if not arg and file is None:
        raise click.UsageError("give a command, a JSON object, or --file PATH")
    if delay is not None and run_at is not None:
        raise click.UsageError("give --delay or --run-at, not both")
    if job_id is not None and file is not None:
        raise click.UsageError("--id names one job: it cannot be used with --file")
    options = JobOptions(
        id=job_id,
        max_retries=max_retries,
        priority=priority,
        timeout=timeout,
        delay=delay,
        run_at=run_at,
        queue=queue,
        after=_after_option(after),
    )
    if file is None:
        spec = parse_job(arg[0]).with_defaults(options)
        job = settings.workflows.enqueue(spec)
        if as_json:
            print_json(job.to_dict())
        else:
            click.echo(job.id)
        return
    specs, lines = _read_file(file, options)
    if not specs:
        click.echo(f"no jobs in {file.name}", err=True)
    workflows = settings.workflows
    try:
        if as_json:
            print_json([job.to_dict() for job in workflows.enqueue_many(specs)] if specs else [])
            return
        ids = workflows.enqueue_ids(specs) if specs else []
    except InvalidInput as exc:
        raise _name_line(settings, exc, specs, lines) from None
    for job_id in ids:
        click.echo(job_id)


def _after_option(after: tuple[str, ...]) -> tuple[str, ...] | None:
    if not after:
        return None
    from ..spec import validate_after

    try:
        return validate_after(list(after))
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="'--after'") from None


MAX_LINE = 64 * 2**20  # bytes of one line of `enqueue --file`, its newline included


def _read_file(file: BinaryIO, options: JobOptions) -> tuple[list[JobSpec], list[int]]:
    """The file's jobs, and the line number of each; InvalidInput naming the first bad line."""
    specs: list[JobSpec] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(iter(lambda: file.readline(MAX_LINE + 1), b""), start=1):
        if len(raw) > MAX_LINE:  # (`--file /dev/zero`: no end)
            raise InvalidInput(f"line {number}: longer than {MAX_LINE:,} bytes")
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]  # a mark some editors put first, not text
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise InvalidInput(f"line {number}: not valid UTF-8") from None
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            spec = parse_job(text).with_defaults(options)
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc}") from None
        if spec.id is not None:
            if spec.id in first_line:
                raise InvalidInput(
                    f"line {number}: duplicate id {spec.id!r} (also on line {first_line[spec.id]})"
                )
            first_line[spec.id] = number
        specs.append(spec)
        lines.append(number)
    return specs, lines


def _name_line(
    settings: Settings, exc: InvalidInput, specs: list[JobSpec], lines: list[int]
) -> InvalidInput:
    """The engine refused the batch: say which line's id was taken, or which line named an
    unknown dependency, when we can tell."""
    index = getattr(exc, "index", None)
    if isinstance(index, int) and 0 <= index < len(lines):
        return InvalidInput(f"line {lines[index]}: {exc}")
    for spec, number in zip(specs, lines):
        if spec.id is None:
            continue
        try:
            taken = settings.workflows.get(spec.id).id == spec.id
        except QueueError:
            taken = False
        if taken:
            return InvalidInput(f"line {number}: duplicate id {spec.id!r}: a job with it exists")
    return exc


# -- list, show, status ----------------------------------------------------------------------


def _states(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from ..states import check_state

    try:
        return tuple(dict.fromkeys(check_state(state) for state in value))
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _attempts(job: Job) -> str:
    if job.max_retries is None:
        return str(job.attempts)
    from ..text import tries  # (listing only, as _when's)

    return tries(job.attempts, job.max_retries)


def _when(job: Job, now: float, held: Mapping[str, str] = _NONE_HELD) -> str:
    """The one time that matters for the job's state (for a waiting job: what it waits for;
    ``held``: the queues paused or limited to 0, whose jobs wait for a user however due, and
    why)."""
    from ..text import relative_time  # (listing only: `enqueue` need not load it)

    if job.state in CLAIMABLE and job.blocked_by:
        return f"blocked: {_ids(job.blocked_by)} dead"
    if job.state in CLAIMABLE and job.waiting_for:
        return f"after {_ids(job.waiting_for)}"
    if job.state in CLAIMABLE and job.queue in held:
        return f"queue {held[job.queue]}"
    if job.state in CLAIMABLE:
        return "due now" if job.run_at <= now else f"due {relative_time(job.run_at, now)}"
    if job.state in ACTIVE:
        return f"started {relative_time(job.started_at, now)}"
    return f"ended {relative_time(job.finished_at, now)}"


def _ids(ids: tuple[str, ...]) -> str:
    shown = ", ".join(clean(job_id, one_line=True) for job_id in ids[:3])
    return shown + (f" (+{len(ids) - 3})" if len(ids) > 3 else "")


def _named_queues(jobs: list[Job]) -> bool:
    return any(job.queue not in (None, DEFAULT_QUEUE) for job in jobs)


def job_rows(
    jobs: Iterable[Job],
    *,
    with_state: bool = True,
    with_queue: bool = False,
    with_error: bool = False,
    held: Mapping[str, str] = _NONE_HELD,
):
    now = time.time()
    for job in jobs:
        row = [clean(job.id, one_line=True)]
        if with_state:
            row.append(job.state)
        if with_queue:
            row.append(clean(job.queue, one_line=True))
        row += [_attempts(job), str(job.priority), _when(job, now, held)]
        if with_error:
            row.append(clean(job.error, one_line=True))
        row.append(clean(job.command, one_line=True))
        yield row


def print_jobs(
    jobs: Iterable[Job],
    *,
    with_state: bool = True,
    with_error: bool = False,
    held: Mapping[str, str] = _NONE_HELD,
    beyond: Callable[[], Mapping[str, int]] | None = None,
) -> int:
    """The jobs as a table, read as they are printed (see print_table); how many. Nothing for
    none. Where they fill more than a page, ``beyond`` says the widths that columns (STATE,
    QUEUE) will need in the pages to come, so they are aligned from the first line; QUEUE
    (0: none) is there if any job listed has a named queue."""
    pending = iter(jobs)
    first = list(itertools.islice(pending, TABLE_PAGE))
    if not first:
        return 0
    known = dict(beyond()) if beyond is not None and len(first) == TABLE_PAGE else {}
    with_queue = _named_queues(first) or known.get("QUEUE", 0) > 0
    headers = ["ID"] + (["STATE"] if with_state else []) + (["QUEUE"] if with_queue else [])
    headers += ["ATTEMPTS", "PRI", "WHEN"]
    headers += (["ERROR"] if with_error else []) + ["COMMAND"]
    rows = job_rows(itertools.chain(first, pending), with_state=with_state,
                    with_queue=with_queue, with_error=with_error, held=held)  # fmt: skip
    return print_table(headers, rows, [known.get(header, 0) for header in headers])


def widths_beyond(settings: Settings, states: Iterable[str], queue: str | None) -> dict[str, int]:
    """The widths a listing of ``states`` (none: every state) of ``queue`` needs past its first
    page, as the counters say (a read of a few rows): STATE, the longest of those states; QUEUE,
    the longest named queue with such jobs (0: none); WHEN, the longest of its times
    (`started 119s ago`: what waits for other jobs may be longer)."""
    wanted = set(states) or set(STATES)
    named = [name for (name, state), count in settings.workflows.counts_by_queue().items()
             if state in wanted and count > 0 and name != DEFAULT_QUEUE
             and (queue is None or name == queue)]  # fmt: skip
    widest = max(map(len, named), default=0)
    return {"STATE": max(map(len, wanted)), "WHEN": len("started 119s ago"),
            "QUEUE": max(widest, len(DEFAULT_QUEUE)) if named else 0}


@click.command("list")
@click.option(
    "--state",
    "-s",
    multiple=True,
    callback=_states,
    metavar="STATE",
    help=f"Only jobs in this state: {', '.join(STATES)} (any case; repeatable).",
)
@queue_name_option("Only jobs of this queue.")
@click.option("--limit", "-n", type=WholeNumber(min=0), help="Show at most N jobs.")
@json_option
@pass_settings
def list_jobs(
    settings: Settings, state: tuple[str, ...], queue: str | None, limit: int | None,
    as_json: bool,
) -> None:
    """List jobs, newest first. A job waiting for others shows them ("after ID"), or
    "blocked" and the ids of those that are dead.

    \b
    Examples:
      queuectl list --state pending
      queuectl list -s dead -s cancelled
      queuectl list --queue deploy
      queuectl list --limit 5 --json
    """
    workflows = settings.workflows
    if as_json:  # (read a page at a time, each page as it is printed)
        print_json_array(job.to_dict() for job in workflows.each_job(state, limit, queue=queue))
        return
    waiting = not state or any(name in CLAIMABLE for name in state)
    printed = print_jobs(
        workflows.each_job(state, limit, with_output=False, queue=queue, page=TABLE_PAGE),
        held=workflows.held_queues() if waiting else _NONE_HELD,
        beyond=lambda: widths_beyond(settings, state, queue),
    )
    if not printed and limit != 0:  # `--limit 0` asked for none: not a claim that there are none
        what = " ".join(word for word in (" or ".join(state), "jobs") if word)
        click.echo(f"no {what}" + (f" in queue {queue}" if queue else ""), err=True)


@click.command()
@click.argument("job_id", metavar="ID", shell_complete=complete_ids())
@json_option
@pass_settings
def show(settings: Settings, job_id: str, as_json: bool) -> None:
    """Show every field of one job, output included. ID may be any unique prefix."""
    job = settings.workflows.get(job_id)
    if as_json:
        print_json(job.to_dict())
        return
    for name, value in _fields(settings, job):
        click.echo(f"{name + ':':<13}{value}")
    click.echo("output:")
    if job.output:
        output = clean(job.output)
        echo(output if output.endswith("\n") else output + "\n", nl=False)
    else:
        click.echo("  (none)")


def _fields(settings: Settings, job: Job) -> list[tuple[str, str]]:
    from ..config import shown
    from ..text import relative_time, rounded_duration, utc_time

    now = time.time()
    config = settings.workflows.config()

    def with_default(value: Any, key: str, unit: str = "") -> str:
        # Numbers as `config` shows them: 1234567, not %g's 1.23457e+06.
        if value is None:
            return f"{shown(config[key])}{unit} (config {key})"
        return f"{shown(value)}{unit}"

    def stamp(timestamp: float | None) -> str:
        if timestamp is None:
            return "-"
        return f"{utc_time(timestamp)} ({relative_time(timestamp, now)})"

    ran = "-"
    if job.started_at is not None and job.finished_at is not None:
        ran = rounded_duration(job.finished_at - job.started_at)
    return [
        ("id", clean(job.id, one_line=True)),
        ("command", clean(job.command).replace("\n", "\n" + " " * 13)),
        ("state", job.state),
        ("attempts", str(job.attempts)),
        ("max_retries", with_default(job.max_retries, "max-retries")),
        ("priority", str(job.priority)),
        ("timeout", with_default(job.timeout, "job-timeout", "s")),
        ("run_at", stamp(job.run_at)),
        ("created_at", stamp(job.created_at)),
        ("updated_at", stamp(job.updated_at)),
        ("started_at", stamp(job.started_at)),
        ("finished_at", stamp(job.finished_at)),
        ("ran for", ran),
        ("exit_code", "-" if job.exit_code is None else str(job.exit_code)),
        ("error", clean(job.error, one_line=True)),
        ("worker", clean(job.worker, one_line=True)),
        ("cwd", clean(job.cwd, one_line=True)),
        ("queue", clean(job.queue, one_line=True)),
        ("after", _after(job, _states_of(settings, job.waiting_for))),
        ("schedule", clean(job.schedule, one_line=True)),
    ]


def _after(job: Job, states: dict[str, str]) -> str:
    """The jobs it runs after, each with its state (``states`` of those not completed), a dead
    one saying that it blocks this job: ``a1 (completed), b2 (dead: this job is blocked until it
    is retried)``."""
    if not job.after_ids:
        return "-"
    blocked = job.state in CLAIMABLE
    parts = []
    for job_id in job.after_ids:
        shown = clean(job_id, one_line=True)
        if job_id in job.blocked_by:
            why = "dead: this job is blocked until it is retried" if blocked else "dead"
            parts.append(f"{shown} ({why})")
        elif job_id in job.purged_deps:  # (completed, or the job was cancelled for it)
            parts.append(f"{shown} (purged)")
        elif job_id in job.waiting_for:
            parts.append(f"{shown} ({states.get(job_id, 'waiting')})")
        else:
            parts.append(f"{shown} (completed)")
    return ", ".join(parts)


def _states_of(settings: Settings, ids: tuple[str, ...]) -> dict[str, str]:
    """The states of the jobs ``ids`` (a job's dependencies that are not completed: pending,
    running, failed, dead or cancelled, which the job's read does not say)."""
    if not ids:
        return {}
    Job = settings.workflows.models.Job
    return dict(Job.select(Job.id, Job.state).where(Job.id.in_(list(ids))).tuples())


@click.command()
@queue_name_option("Count only the jobs of this queue.")
@json_option
@pass_settings
def status(settings: Settings, queue: str | None, as_json: bool) -> None:
    """Count jobs per state, and the active workers.

    Workers are the worker threads of every live worker process on this queue (any
    `queuectl worker start` or TUI, on any machine, with a fresh heartbeat).
    """
    name, queue = queue, settings.queue
    counts = queue.counts() if name is None else queue.queue_counts(name)
    processes = queue.live_workers()
    threads = sum(worker.threads for worker in processes)
    if as_json:
        print_json({**{state: counts[state] for state in STATES}, "workers": threads})
        return
    width = max(len(str(n)) for n in [*counts.values(), threads])
    for state in STATES:
        click.echo(f"{state:<12}{counts[state]:>{width}}")
    plural = "es" if len(processes) != 1 else ""
    click.echo(f"{'workers':<12}{threads:>{width}}  ({len(processes)} worker process{plural})")
