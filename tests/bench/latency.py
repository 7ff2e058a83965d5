"""Issue #5 target 4: pickup latency and idle CPU.

"Started" is the job's ``started_at``: the worker writes it in the very statement that claims the
job, with the same clock (this machine's) that timed the enqueue's return. It is the moment the
queue hands the job over; what follows (fork and exec of /bin/sh, ~1 ms) costs any queue the
same and is already in the throughput figures. A command that writes a timestamp would add that
fork/exec plus a `date` process of its own to every sample.

- another process: an idle `queuectl worker start`; the benchmark process enqueues (Queue.enqueue)
  after a random gap (seeded), then reads ``started_at`` back.
- the TUI's case: Queue.enqueue and a WorkerPool in one process.
- idle CPU: the idle `worker start`'s user+system time over a few seconds.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time

from ..support import wait_until
from .harness import (
    Children,
    Figure,
    Report,
    Settings,
    Target,
    child_env,
    cpu_seconds,
    fresh_sqlite,
    pg_schema,
    queuectl_command,
)

SAMPLES = 20


def _started_at(queue, job_id: str) -> float | None:  # type: ignore[no-untyped-def]
    row = queue.db.execute_sql(
        'SELECT "started_at" FROM "job" WHERE "id" = ' + queue.db.param, (job_id,)
    ).fetchone()
    return row[0] if row else None


def _latencies(queue, samples: int, seed: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Enqueue ``samples`` jobs one at a time after random gaps; ms from the enqueue's call to
    the job's start. (Not from its return: on PostgreSQL a worker woken at the commit may start
    the job before the enqueue has returned, QA saw -0.07 ms.)"""
    gaps = random.Random(seed)
    latencies = []
    for _ in range(samples):
        time.sleep(gaps.uniform(0.05, 0.4))
        asked = time.time()
        job = queue.enqueue("true")
        started = wait_until(
            lambda: _started_at(queue, job.id), 10, "the job to start", interval=0.001
        )
        latencies.append((started - asked) * 1000)  # type: ignore[operator]
    return latencies


def cross_process(target: str, samples: int, idle_s: float) -> tuple[list[float], float]:
    """Latencies (ms) with an idle `worker start`, and its idle CPU (% of one core)."""
    from queuectl import Queue

    queue = Queue(target)
    try:
        with Children() as children:
            worker = children.start([*queuectl_command(), "--db", target, "worker", "start"])
            children.wait_until(lambda: queue.live_workers(), 60, "the worker to register")
            time.sleep(1.0)  # past start-up
            cpu, wall = cpu_seconds(worker.pid), time.monotonic()
            time.sleep(idle_s)
            idle = (cpu_seconds(worker.pid) - cpu) / (time.monotonic() - wall) * 100
            return _latencies(queue, samples, seed=5), idle
    finally:
        queue.close()


def pg_idle(url: str, idle_s: float) -> tuple[float, float]:
    """An idle `worker start --count 2` (the CLI, counting the statements it sends: see
    tests.bench.counted): its statements a second and its CPU (% of one core), over
    ``idle_s`` seconds."""
    from queuectl import Queue

    folder = tempfile.mkdtemp(prefix="statements-")
    counted = os.path.join(folder, "count")

    def statements() -> int:
        with open(counted) as file:
            return int(file.read())

    try:
        with pg_schema(url) as target, Children() as children:
            queue = Queue(target)
            repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env = child_env({"BENCH_STATEMENTS_FILE": counted,
                             "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")})
            worker = children.start([sys.executable, "-m", "tests.bench.counted", "--db", target,
                                     "worker", "start", "--count", "2"], env=env)  # fmt: skip
            children.wait_until(lambda: queue.live_workers() and os.path.exists(counted), 60,
                                "the worker to register")  # fmt: skip
            queue.close()
            time.sleep(2.5)  # past start-up
            before, cpu, wall = statements(), cpu_seconds(worker.pid), time.monotonic()
            time.sleep(idle_s)
            cpu = cpu_seconds(worker.pid) - cpu
            elapsed = time.monotonic() - wall
            time.sleep(1.1)  # its last count written
            return (statements() - before) / elapsed, cpu / elapsed * 100
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_process(target: str, samples: int) -> list[float]:
    """The TUI's case: the enqueue and the worker threads share one Queue."""
    from queuectl import Queue, WorkerPool

    queue = Queue(target)
    pool = WorkerPool(queue, 2).start()
    try:
        time.sleep(0.5)
        return _latencies(queue, samples, seed=6)
    finally:
        pool.stop()
        pool.join(30)
        queue.close()


def run_pg_idle(settings: Settings, report: Report) -> None:
    """Issue #17: an idle `worker start --count 2` on PostgreSQL, its statements a second and
    its CPU."""
    if settings.pg_url is None:
        report.note("PostgreSQL unreachable: its idle figures are skipped")
        return
    rate, cpu = pg_idle(settings.pg_url, 10.0 if settings.quick else 20.0)
    report.add(Figure("#17 idle worker start --count 2 on postgresql: statements/s", "/s",
                      [rate], targets=[Target("<= 2 /s", at_most=2, ratio=False)]))
    report.add(Figure("#17 idle worker start --count 2 on postgresql: CPU", "%", [cpu],
                      targets=[Target("< 1 % of a core", at_most=1.0, ratio=False)]))


def run(settings: Settings, report: Report) -> None:
    samples = 10 if settings.quick else SAMPLES
    idle_s = 2.0 if settings.quick else 5.0
    latencies, idle = cross_process(fresh_sqlite(settings, "latency"), samples, idle_s)
    report.add(Figure("4. pickup: idle worker start, enqueue from another process", "ms",
                      latencies, targets=[Target("<= 15 ms", at_most=15, ratio=False)]))  # fmt: skip
    report.add(Figure("4. idle worker start: CPU", "%", [idle],
                      targets=[Target("< 1 % of a core", at_most=1.0, ratio=False)]))  # fmt: skip
    tui = in_process(fresh_sqlite(settings, "latency-tui"), samples)
    report.add(Figure("4. pickup in one process (TUI: Queue.enqueue + WorkerPool)", "ms", tui,
                      targets=[Target("<= 5 ms", at_most=5, ratio=False)]))  # fmt: skip
    if settings.pg_url is not None:
        with pg_schema(settings.pg_url) as target:
            pg, pg_cpu = cross_process(target, samples, idle_s)
        report.add(Figure("   pickup on postgresql (LISTEN/NOTIFY)", "ms", pg,
                          targets=[Target("<= 5 ms", at_most=5, ratio=False)]))  # fmt: skip
        report.add(Figure("   idle worker start on postgresql: CPU", "%", [pg_cpu]))
    run_pg_idle(settings, report)
