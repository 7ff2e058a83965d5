"""What happened and how it goes (SPEC 8): ``history``, ``stats`` and ``metrics``."""

from __future__ import annotations

import signal
import threading

import click

from ..errors import InvalidInput
from ..text import duration, exact_duration, utc_time
from .common import (
    Settings,
    clean,
    echo,
    engine_value,
    json_option,
    pass_settings,
    print_json,
    print_table,
)


@click.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_settings
def history(settings: Settings, job_id: str, as_json: bool) -> None:
    """Every change of job ID, oldest first: when, what, which attempt, which worker, the
    exit code and the error.

    \b
    Examples:
      queuectl history 3f9k
      queuectl history 3f9k --json | jq -r '.[].event'
    """
    from ..outcomes import event_dict  # no peewee: before or after opening the queue

    events = settings.queue.history(job_id)

    if as_json:
        print_json([event_dict(event) for event in events])
        return
    rows = [
        [
            utc_time(event.at),
            event.event,
            "-" if event.attempt is None else str(event.attempt),
            clean(event.worker, one_line=True),
            "-" if event.exit_code is None else str(event.exit_code),
            clean(event.error, one_line=True),
        ]
        for event in events
    ]
    print_table(["AT", "EVENT", "ATTEMPT", "WORKER", "EXIT", "ERROR"], rows)


def _duration(text: str) -> float:
    from ..spec import parse_duration

    return parse_duration(text, "since")


def _queue_name(text: str) -> str:
    from ..spec import validate_name

    return validate_name("queue", text)


def _seconds(value: float | None) -> str:
    return "-" if value is None else duration(value)


def _per_minute(rate: float) -> str:
    """A rate as a plain decimal: ``.3g`` wrote 1.39e-05 for a job in a long window, and
    1.23e+03 for a busy queue."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.2f}"


@click.command()
@click.option(
    "--since", "since", metavar="D", default="1h", show_default=True,
    callback=engine_value(_duration), help="The window: 90 (seconds), 90s, 15m, 2h, 7d.",
)  # fmt: skip
@click.option("--queue", "-q", "queue_name", metavar="Q", help="Only this queue.",
              callback=engine_value(lambda value: _queue_name(value)))
@json_option
@pass_settings
def stats(settings: Settings, since: float, queue_name: str | None, as_json: bool) -> None:
    """Per queue, over the last D: runs finished by what they led to (completed; failed: a
    retry was scheduled; dead; cancelled), jobs finished per minute, run time p50/p95/max,
    wait from due to start p50/p95, and how long the oldest waiting job has waited.

    \b
    Examples:
      queuectl stats
      queuectl stats --since 24h --queue emails --json
    """
    from ..outcomes import OUTCOMES  # no peewee: before or after opening the queue

    report = settings.queue.stats(since, queue_name)

    if as_json:
        print_json(report.to_dict())
        return
    start, end = utc_time(report.at - since), utc_time(report.at)
    click.echo(f"last {exact_duration(since)}, {start} to {end}")
    rows = [
        [
            clean(name, one_line=True),
            *(str(figures.runs[outcome]) for outcome in OUTCOMES),
            _per_minute(figures.finished_per_minute),
            _seconds(figures.run_p50),
            _seconds(figures.run_p95),
            _seconds(figures.run_max),
            _seconds(figures.wait_p50),
            _seconds(figures.wait_p95),
            _seconds(figures.oldest_waiting),
        ]
        for name, figures in report.queues.items()
    ]
    print_table(
        ["QUEUE", "COMPLETED", "FAILED", "DEAD", "CANCELLED", "DONE/MIN", "RUN P50", "RUN P95",
         "RUN MAX", "WAIT P50", "WAIT P95", "OLDEST WAITING"],
        rows,
    )  # fmt: skip
    if not rows:
        click.echo("(nothing ran, and nothing waits)")


def parse_listen(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:9464`` for an IPv6 address); HOST defaults to 127.0.0.1."""
    host, _, port = text.strip().rpartition(":")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        # `fe80::1` read as the host `fe80:` and the port 1 (QA)
        raise InvalidInput(f"expected [HOST:]PORT, got {text!r:.60} (an IPv6 address goes in "
                           "brackets: [::1]:9464)")  # fmt: skip
    host = host.strip("[]") or "127.0.0.1"
    from ..spec import whole_number

    try:
        number = whole_number(port)
    except ValueError:
        raise InvalidInput(f"expected [HOST:]PORT, got {text!r:.60}") from None
    if not 1 <= number <= 65535:
        raise InvalidInput(f"port must be 1 to 65535, got {number}")
    return host, number


@click.command()
@click.option(
    "--serve", "listen", metavar="[HOST:]PORT", callback=engine_value(parse_listen),
    help="Serve /metrics over HTTP until stopped (HOST defaults to 127.0.0.1).",
)  # fmt: skip
@pass_settings
def metrics(settings: Settings, listen: tuple[str, int] | None) -> None:
    """The queue's metrics in the Prometheus text format: jobs by queue and state, live
    worker threads, the oldest waiting job's age (gauges); runs by queue and outcome
    (counters that never go down); run time (a histogram).

    \b
    Examples:
      queuectl metrics
      queuectl metrics --serve 9464
      queuectl metrics --serve 0.0.0.0:9464
    """
    import socket

    from ..errors import QueueError

    with settings.engine():
        from .. import metrics as exporter

    queue = settings.queue
    if listen is None:
        echo(exporter.exposition(queue), nl=False)  # (a cut file must not read as whole)
        return
    host, port = listen
    shown = f"[{host}]" if ":" in host else host  # (IPv6: "fe80::1:9464" read ill, QA)
    try:
        server, thread = exporter.serve(queue, host, port)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
    except UnicodeError:  # a host name the resolver cannot even encode (IDNA)
        raise InvalidInput(f"cannot listen on {host!r:.80}: not a host name") from None
    except OSError as exc:
        raise QueueError(f"cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"serving http://{shown}:{server.server_port}/metrics (Ctrl-C stops)", err=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    thread.join(5)
