"""`queuectl metrics`: the queue in Prometheus' text format, made with the official client library
(``prometheus_client``, imported only by this module, which only the metrics command imports).

A custom collector reads the database at each scrape:

- ``queuectl_jobs{queue,state}`` (gauge): jobs by queue and state;
- ``queuectl_worker_threads`` (gauge): worker threads of the live worker processes, every host;
- ``queuectl_oldest_waiting_age_seconds{queue}`` (gauge): how long the job due the longest has
  waited for a worker;
- ``queuectl_runs_total{queue,outcome}`` (counter): runs finished, by what they led to
  (completed, failed: a retry was scheduled, dead, cancelled);
- ``queuectl_run_duration_seconds{queue}`` (histogram): those runs' durations.

The counter and the histogram come from the ``run_total`` table, bumped by the trigger that
records each run's end (schema 8): they never go down, whatever is purged, and survive restarts.
Labels are queue names and states only, never job ids or commands.

``--serve``: the library's threaded WSGI server (a thread per connection: a slow or stalled
client holds only its own thread, and its socket times out after :data:`CLIENT_TIMEOUT_S`);
garbage requests get the standard library's 400 answer.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from .history import OUTCOMES
from .models import RUN_BUCKETS, STATES

if TYPE_CHECKING:
    from .queue import Queue

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S = 10.0


class QueueCollector(Collector):
    """The queue's metrics, read from the database at each scrape. Each scrape may come on a
    thread of its own: the connection it opened is closed at its end."""

    def __init__(self, queue: Queue, strict: bool = False) -> None:
        self.queue = queue
        self.strict = strict  # the database's error is raised, not shown as database_up 0

    def describe(self) -> Iterator[object]:
        """The metrics' names, without reading the database: the registry maps them to this
        collector, so that a scrape asking for some (``/metrics?name[]=queuectl_jobs``) gets
        them (without it, QA: such a scrape got nothing at all)."""
        return iter(_families())

    def collect(self) -> Iterator[object]:
        queue = self.queue
        up, jobs, workers, waiting, runs, durations = _families()
        try:
            counts = queue.counts_by_queue()
            totals = queue.run_totals()
            threads = queue.live_threads()
            oldest = queue.oldest_waiting()
            now = queue.clock()
        except Exception as exc:  # peewee's, or the driver's: one log line, no traceback
            if self.strict:
                raise
            from .reconnect import first_line  # (psycopg's text goes on over lines)

            log.warning("metrics: the database did not answer: %s", first_line(exc)[:200])
            up.add_metric([], 0)
            yield up
            return
        finally:
            queue.close()
        up.add_metric([], 1)
        yield up
        # The queues with jobs, or runs counted: not one whose jobs were all purged before any
        # ran (its counters' rows stay, at zero), as `queue list` leaves it out (QA).
        names = sorted({name for (name, _), count in counts.items() if count}
                       | {name for name, _ in totals.runs})  # fmt: skip
        for name in names:
            for state in STATES:
                jobs.add_metric([name, str(state)], counts.get((name, str(state)), 0))
        yield jobs
        workers.add_metric([], threads)
        yield workers
        for name in names:
            due = oldest.get(name)
            waiting.add_metric([name], 0.0 if due is None else max(now - due, 0.0))
        yield waiting
        for name in names:
            for outcome in OUTCOMES:
                runs.add_metric([name, str(outcome)], totals.runs.get((name, str(outcome)), 0))
        yield runs
        for name in names:
            counts_by_bucket = totals.buckets.get(name, [0] * (len(RUN_BUCKETS) + 1))
            cumulative, buckets = 0, []
            for bound, count in zip([*map(_bound, RUN_BUCKETS), "+Inf"], counts_by_bucket):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([name], buckets, sum_value=totals.seconds.get(name, 0.0))
        yield durations


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                         GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily]:
    """The metrics, with no samples yet, in the order a scrape gives them."""
    return (
        GaugeMetricFamily("queuectl_database_up", "Whether the queue's database answered"),
        GaugeMetricFamily("queuectl_jobs", "Jobs by queue and state", labels=["queue", "state"]),
        GaugeMetricFamily("queuectl_worker_threads",
                          "Worker threads of the live worker processes"),
        GaugeMetricFamily("queuectl_oldest_waiting_age_seconds",
                          "Seconds the job due the longest has waited for a worker",
                          labels=["queue"]),
        CounterMetricFamily(
            "queuectl_runs",
            "Runs finished, by queue and what they led to (failed: a retry was scheduled)",
            labels=["queue", "outcome"],
        ),
        HistogramMetricFamily("queuectl_run_duration_seconds", "Run time of finished runs",
                              labels=["queue"]),
    )  # fmt: skip


def _bound(value: float) -> str:
    return repr(float(value))


def registry_for(queue: Queue, strict: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue, strict))
    return registry


def exposition(queue: Queue) -> str:
    """The metrics once, in the text format. A database that does not answer is the command's
    error (exit 1), as for every other command: only a scrape of ``--serve``, which must answer,
    says so in ``queuectl_database_up``."""
    return generate_latest(registry_for(queue, strict=True)).decode()


class _Handler(WSGIRequestHandler):
    """No log line per request; a client that stalls is dropped after CLIENT_TIMEOUT_S."""

    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: object) -> None:
        pass


def _at_metrics_only(app: Any) -> Any:
    """``app`` at /metrics; 404 elsewhere (QA: the library's app answered every path). A HEAD
    is answered as a GET without its body: the library's app answers GET and OPTIONS only (405
    to a HEAD, with a body, which wsgiref sends on), and uptime checks ask with HEAD (QA)."""

    def routed(environ: dict[str, Any], start_response: Any) -> Any:
        head = environ.get("REQUEST_METHOD") == "HEAD"
        answer: list[Any] = []  # the status and headers, held for a HEAD

        def respond(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if head:  # sent once the body is known: with the GET's length (wsgiref said 0)
                answer[:] = [status, headers]
                return lambda data: None
            return start_response(status, headers, *rest)

        if environ.get("PATH_INFO") == "/metrics":
            body = app({**environ, "REQUEST_METHOD": "GET"} if head else environ, respond)
        else:
            respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            body = [b"Not found: the metrics are at /metrics\n"]
        if not head:
            return body
        status, headers = answer
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers = [*headers, ("Content-Length", str(sum(len(part) for part in body)))]
        start_response(status, headers)
        return []

    return routed


def serve(queue: Queue, host: str, port: int) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Serve the metrics over HTTP on a thread of its own (the library's threaded server);
    OSError (socket.gaierror for a host that does not resolve) if it cannot listen."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]

    class Server(ThreadingWSGIServer):
        address_family = family
        # socketserver's default backlog is 5: a burst of connections (scrapers, idle clients)
        # overflowed it and the kernel dropped SYNs, each costing its client a 1 s retry.
        request_queue_size = 128

    server = make_server(
        address[0], port, _at_metrics_only(make_wsgi_app(registry_for(queue))), Server,
        handler_class=_Handler,
    )
    thread = threading.Thread(target=server.serve_forever, name="queuectl-metrics", daemon=True)
    thread.start()
    return server, thread
