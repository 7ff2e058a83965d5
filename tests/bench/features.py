"""Issue #17 item 6: how soon the newer features act, with an idle `queuectl worker start --count 2`
in another process, on SQLite and on PostgreSQL. Every time is read from the database (the
worker's clock is this machine's) or stamped by this process as it sees a line.

- dependency: a dependent's ``started_at`` minus its dependency's ``finished_at``: in the same
  worker process (2 threads), and with the dependent in a queue only another, idle, worker
  process serves (woken by the statement that completes the dependency).
- schedule: a `* * * * * *` schedule (due on every whole second); a job's ``created_at`` minus
  the second it was due.
- `logs -f`: a job prints its clock (`date +%s.%N`) every 0.7 s; the time `queuectl logs -f`
  printed the line, as this process read it, minus the time in it.
- cancel: `Queue.cancel` of a running `sleep 30`; its ``finished_at`` minus the cancel's return.
- cascade: `Queue.cancel` of a job 10,000 waiting jobs run after, just enqueued (PostgreSQL has no
  statistics on them yet), per job cancelled: the walk down the dependencies and the changes of
  state (on PostgreSQL 2 s, and 47 s for 50,000, when each counted in the same counter row).
"""

from __future__ import annotations

import math
import subprocess
import threading
import time

from ..support import wait_until
from .harness import (
    Children,
    Figure,
    Report,
    Settings,
    Target,
    child_env,
    fresh_sqlite,
    pg_schema,
    queuectl_command,
)

LOG_LINES = 5


def _job(queue, job_id: str):  # type: ignore[no-untyped-def]
    return queue.get(job_id)


def dependency_gaps(queue, samples: int, first: str = "default",  # type: ignore[no-untyped-def]
                    then: str = "default") -> list[float]:  # fmt: skip
    """Dependency in queue ``first``, dependent in queue ``then``."""
    from queuectl import JobSpec

    gaps = []
    for _ in range(samples):
        time.sleep(0.1)
        dependency = queue.enqueue(JobSpec(command="sleep 0.1", queue=first))
        dependent = queue.enqueue(JobSpec(command="true", after=(dependency.id,), queue=then))
        wait_until(lambda: _job(queue, dependent.id).started_at is not None, 20,
                   "the dependent to start", interval=0.01)  # fmt: skip
        gaps.append(_job(queue, dependent.id).started_at - _job(queue, dependency.id).finished_at)
    return gaps


def schedule_lateness(queue, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    from queuectl import JobSpec

    queue.add_schedule("every-second", "* * * * * *", JobSpec(command="true"))
    time.sleep(seconds)
    queue.remove_schedule("every-second")
    Job = queue.models.Job
    created = [job.created_at for job in Job.select().where(Job.schedule == "every-second")]
    return [at - math.floor(at) for at in created]


def logs_follow_delays(queue, target: str) -> list[float]:  # type: ignore[no-untyped-def]
    command = f"for i in $(seq {LOG_LINES}); do date +%s.%N; sleep 0.7; done"
    job = queue.enqueue(command)
    seen: list[tuple[float, str]] = []
    with Children() as children:
        follow = children.start([*queuectl_command(), "--db", target, "logs", "-f", job.id],
                                stdout=subprocess.PIPE)  # fmt: skip

        def read() -> None:
            for line in follow.stdout:  # type: ignore[union-attr]
                seen.append((time.time(), line.decode().strip()))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_until(lambda: len(seen) >= LOG_LINES, 30, "`logs -f` to show every line")
        follow.wait(10)
        reader.join(5)
    return [shown - float(text) for shown, text in seen if text]


def cancel_delays(queue, samples: int) -> list[float]:  # type: ignore[no-untyped-def]
    delays = []
    for _ in range(samples):
        job = queue.enqueue("sleep 30")
        wait_until(lambda: _job(queue, job.id).state == "processing", 20, "the job to start",
                   interval=0.01)  # fmt: skip
        time.sleep(0.3)
        queue.cancel([job.id])
        returned = time.time()
        wait_until(lambda: _job(queue, job.id).state == "cancelled", 20, "the job to stop",
                   interval=0.01)  # fmt: skip
        delays.append(_job(queue, job.id).finished_at - returned)
    return delays


def measure(target: str, quick: bool) -> dict[str, list[float]]:
    from queuectl import Queue

    queue = Queue(target)
    try:
        with Children() as children:
            worker = [*queuectl_command(), "--db", target, "worker", "start"]
            children.start([*worker, "--count", "2", "--queue", "default"], env=child_env())
            # The dependency runs in one process, its dependent can only run in another.
            for name in ("first", "then"):
                children.start([*worker, "--queue", name], env=child_env())
            children.wait_until(lambda: len(queue.live_workers()) == 3, 60,
                                "the workers to register")
            time.sleep(1.0)
            return {
                "dependency": dependency_gaps(queue, 5 if quick else 15),
                "dependency-elsewhere": dependency_gaps(queue, 5 if quick else 15, "first", "then"),
                "schedule": schedule_lateness(queue, 3.5 if quick else 8.5),
                "logs": logs_follow_delays(queue, target),
                "cancel": cancel_delays(queue, 3 if quick else 6),
            }
    finally:
        queue.close()


ROWS = (
    ("dependency", "dependency completed -> dependent started", "s",
     Target("<= 15 ms", at_most=0.015, ratio=False)),
    ("dependency-elsewhere", "same, the dependent in another (idle) worker process", "s",
     Target("<= 15 ms", at_most=0.015, ratio=False)),
    ("schedule", "schedule due -> job enqueued", "s", Target("<= 100 ms", at_most=0.1, ratio=False)),
    ("logs", "line printed -> shown by `logs -f`", "s", Target("<= 1 s", at_most=1.0, ratio=False)),
    ("cancel", "cancel of a running job -> job stopped", "s",
     Target("<= 2 s", at_most=2.0, ratio=False)),
)  # fmt: skip


def run(settings: Settings, report: Report) -> None:
    backends = [("sqlite", None)]
    if settings.pg_url is not None:
        backends.append(("postgresql", settings.pg_url))
    else:
        report.note("PostgreSQL unreachable: its feature latencies are skipped")
    for name, url in backends:
        if url is None:
            figures = measure(fresh_sqlite(settings, "features"), settings.quick)
        else:
            with pg_schema(url) as target:
                figures = measure(target, settings.quick)
        for key, text, unit, target_ in ROWS:
            report.add(Figure(f"#17 {name}: {text}", unit, figures[key], targets=[target_]))
        for shape, text in ((cascade, "cancel cascading to 10,000 waiting jobs, a job"),
                            (cascade_layers, "cancel cascading through 3 layers of 100, each job "
                                             "after all 100 before it, a job")):  # fmt: skip
            samples = []
            for _ in range(1 if settings.quick else 3):
                if url is None:
                    samples.append(shape(fresh_sqlite(settings, shape.__name__)))
                else:
                    with pg_schema(url) as target:
                        samples.append(shape(target))
            report.add(Figure(f"#17 {name}: {text}", "us", samples))


def cascade_layers(target: str, width: int = 100) -> float:
    """Microseconds a job of ``Queue.cancel`` of a job that 3 layers of ``width`` jobs run after,
    each job after every job of the layer before (a map, then reduces): 20,000 edges."""
    from queuectl import JobSpec, Queue

    queue = Queue(target)
    try:
        root = queue.enqueue(JobSpec(command="true")).id
        layer: tuple[str, ...] = (root,)
        for _ in range(3):
            jobs = queue.enqueue_many([JobSpec(command="true", after=layer)] * width)
            layer = tuple(job.id for job in jobs)
        start = time.perf_counter()
        queue.cancel([root])
        took = time.perf_counter() - start
        assert queue.counts()["cancelled"] == 3 * width + 1
        return took / (3 * width) * 1e6
    finally:
        queue.close()


def cascade(target: str, n: int = 10_000) -> float:
    """Microseconds a job of ``Queue.cancel`` of one job that ``n`` waiting jobs run after."""
    from queuectl import JobSpec, Queue

    queue = Queue(target)
    try:
        root = queue.enqueue(JobSpec(command="true"))
        queue.enqueue_many([JobSpec(command="true", after=(root.id,))] * n)
        start = time.perf_counter()
        queue.cancel([root.id])
        took = time.perf_counter() - start
        assert queue.counts()["cancelled"] == n + 1
        return took / n * 1e6
    finally:
        queue.close()
