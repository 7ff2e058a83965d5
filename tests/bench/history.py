"""Issue #16's cost targets for the history (SPEC 8).

history: what writing the history costs a worker. Interleaved A/B rounds of an idle
`queuectl worker start --count 2` running N jobs of `true` (as the throughput benchmark does),
on a fresh database each time: with the history triggers as the schema makes them, and with
them dropped (the job counters and everything else kept). Reported: each round's ratio of
jobs/s (with / without; its median against the target, at most 5 % cost), and the worker
process's own CPU per job both ways (its jobs' CPU not counted). On a busy shared machine the
ratio of two identical rounds already ranges from 0.7 to 1.05, so the CPU of the statement the
history is written in is measured too, on its own: one thread storing a success and claiming
the next job in a loop, in-process, with and without the triggers (interleaved).

stats: `queuectl stats --since 1h` over an hour holding 100,000 runs, on 1M jobs. The database
is built once (jobs and their history inserted in one transaction into a schema that Queue
created, so every index is maintained as in real use) and cached under CACHE_DIR, keyed by the
schema version and this file's layout version; each run works on a copy. Its times are fixed
around BASE (the last run ended just before it): the in-process figure calls Queue.stats(3600)
with the clock at BASE; the whole-process one runs `queuectl stats --since S` with S reaching
back to an hour before BASE (the same rows: nothing happened after BASE). Baseline: the same on
a near-empty database.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
import random
import shutil
import sqlite3
import statistics
import time

from .harness import (
    CACHE_DIR,
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
    run_timed,
)
from .throughput import _cpu_with_children

THREADS = 2
NewTarget = Callable[[], AbstractContextManager[str]]  # a fresh, empty target each time

# -- history: worker throughput with and without it ---------------------------------------------


def _drop_history(target: str) -> None:
    """The schema as Queue makes it, without the history triggers."""
    from queuectl import Queue, schema

    queue = Queue(target)
    try:
        suffix = "" if queue.is_sqlite else ' ON "job"'
        for name in schema.HISTORY_TRIGGERS:
            queue.db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"{suffix}')
        # PostgreSQL (schema 10): the history is a part of the one row trigger of a change of
        # state, which also keeps the counters and the dependencies: that trigger without it.
        # SQLite (schema 10): the same for its triggers of a change of state.
        for operation in schema.postgres_state_triggers(queue.db, history=False):
            operation.run()
        for operation in schema.sqlite_triggers(queue.db, history=False):
            operation.run()
    finally:
        queue.close()


def worker_round(target: str, n: int) -> tuple[float, float, float]:
    """One idle `worker start --count 2`, then ``n`` jobs of `true` at once: jobs/s (from the
    enqueue's return to the last ``finished_at``), and the CPU seconds per job of the worker
    process alone and with its jobs."""
    from queuectl import JobSpec, Queue

    queue = Queue(target)
    try:
        with Children() as children:
            argv = [*queuectl_command(), "--db", target, "worker", "start", "--count", str(THREADS)]
            pid = children.start(argv, env=child_env()).pid
            children.wait_until(lambda: len(queue.live_workers()) >= 1, 60,
                                "the worker to register")
            time.sleep(0.3)  # let it settle into its idle wait
            own, whole = cpu_seconds(pid), _cpu_with_children(pid)
            queue.enqueue_many([JobSpec(command="true")] * n)
            enqueued = time.time()
            children.wait_until(lambda: queue.counts()["completed"] >= n, max(60, n / 50),
                                f"{n} jobs to complete", interval=0.05)  # fmt: skip
            own, whole = cpu_seconds(pid) - own, _cpu_with_children(pid) - whole
            last = queue.db.execute_sql('SELECT MAX("finished_at") FROM "job"').fetchone()[0]
            return n / (last - enqueued), own / n, whole / n
    finally:
        queue.close()


def statement_cpu(target: str, n: int) -> float:
    """CPU seconds per job of one thread storing each success and claiming the next job (the
    SQLite worker's one statement, Queue.finish_and_claim) in a loop, in-process, no job run:
    what the triggers add to that statement, without the noise of running jobs."""
    from queuectl import JobSpec, Queue
    from queuectl.executor import RunResult

    queue = Queue(target).for_worker_threads()
    try:
        queue.enqueue_many([JobSpec(command="true")] * n)
        worker = queue.register_worker(1)
        done = RunResult(0, None, "")
        job = queue.claim(worker)
        start = time.thread_time()
        while job is not None:
            _, job = queue.finish_and_claim(job, done, worker)
        return (time.thread_time() - start) / n
    finally:
        queue.close()


def ab_statement(
    settings: Settings, report: Report, new_target: NewTarget, n: int, rounds: int
) -> None:
    from queuectl import Queue

    cpu: dict[bool, list[float]] = {True: [], False: []}
    for index in range(rounds):
        for with_history in (True, False) if index % 2 == 0 else (False, True):
            with new_target() as target:
                Queue(target).close()
                if not with_history:
                    _drop_history(target)
                cpu[with_history].append(statement_cpu(target, n) * 1e6)
    report.add(Figure("#16 finish-and-claim CPU per job with history (SQLite, one thread)", "us",
                      cpu[True], "without history", cpu[False]))  # fmt: skip
    report.note(f"history: the finish-and-claim statement's CPU, median "
                f"{statistics.median(cpu[True]):.0f} us with history vs "
                f"{statistics.median(cpu[False]):.0f} us without "
                f"({statistics.median(cpu[True]) - statistics.median(cpu[False]):+.0f} us); "
                f"{rounds} interleaved rounds of {n} jobs, in-process")  # fmt: skip


def ab_rounds(
    settings: Settings, report: Report, label: str, new_target: NewTarget, n: int, rounds: int
) -> None:
    """``rounds`` interleaved pairs (the order alternates); ``new_target()`` gives a context
    manager yielding a fresh, empty target."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    own: dict[bool, list[float]] = {True: [], False: []}
    whole: dict[bool, list[float]] = {True: [], False: []}
    ratios = []
    for index in range(rounds):
        measured = {}
        for with_history in (True, False) if index % 2 == 0 else (False, True):
            with new_target() as target:
                from queuectl import Queue

                Queue(target).close()  # the schema
                if not with_history:
                    _drop_history(target)
                rate, cpu, cpu_all = worker_round(target, n)
            rates[with_history].append(rate)
            own[with_history].append(cpu * 1e6)
            whole[with_history].append(cpu_all * 1e6)
            measured[with_history] = rate
        ratios.append(measured[True] / measured[False])
        print(f"    round {index + 1}: {measured[True]:.0f} vs {measured[False]:.0f} jobs/s, "
              f"ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    report.add(Figure(f"#16 worker jobs/s with history ({label}, {n} x true)", "jobs/s",
                      rates[True], "without history", rates[False]))  # fmt: skip
    report.add(Figure(f"#16 history cost: jobs/s ratio per round ({label})", "x", ratios,
                      targets=[Target(">= 0.95 (<= 5 % cost)", at_least=0.95, ratio=False)]))  # fmt: skip
    report.add(Figure(f"#16 worker process CPU per job with history ({label})", "us",
                      own[True], "without history", own[False]))  # fmt: skip
    report.add(Figure(f"#16 worker + jobs CPU per job with history ({label})", "us",
                      whole[True], "without history", whole[False]))  # fmt: skip
    cost = statistics.median(own[True]) - statistics.median(own[False])
    report.note(f"history ({label}): the worker process's own CPU per job, median "
                f"{statistics.median(own[True]):.0f} us with history vs "
                f"{statistics.median(own[False]):.0f} us without ({cost:+.0f} us); "
                f"{rounds} interleaved rounds of {n} jobs")  # fmt: skip


def run_history(settings: Settings, report: Report) -> None:
    import contextlib

    n = 400 if settings.quick else 1000
    rounds = settings.reps(9, 2)

    @contextlib.contextmanager
    def sqlite_target():  # type: ignore[no-untyped-def]
        path = fresh_sqlite(settings, "history")
        try:
            yield path
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    ab_statement(settings, report, sqlite_target, 2000, settings.reps(11, 3))
    ab_rounds(settings, report, "SQLite", sqlite_target, n, rounds)
    if settings.pg_url is not None:
        url = settings.pg_url
        ab_rounds(settings, report, "PostgreSQL", lambda: pg_schema(url), n, rounds)


# -- stats over 1M jobs ---------------------------------------------------------------------------

LAYOUT_VERSION = 2  # bump when the generated rows change
TOTAL = 1_000_000
RECENT_RUNS = 100_000  # runs that ended in the hour before BASE, one job each
QUEUES = ("default", "default", "default", "mail", "reports")
OLD_MIX = {"completed": 840_000, "dead": 20_000, "failed": 10_000, "pending": 29_000,
           "processing": 1_000}  # fmt: skip
RECENT_MIX = {"completed": 95_000, "failed": 4_000, "dead": 1_000}
NEAR_EMPTY = 1_000
JOB_COLUMNS = ("id", "command", "state", "attempts", "max_retries", "priority", "timeout",
               "run_at", "created_at", "updated_at", "started_at", "finished_at", "exit_code",
               "error", "output", "worker", "cwd", "queue")  # fmt: skip
END_COLUMNS = ("job_seq", "job_id", "queue", "at", "event", "attempt", "worker", "exit_code",
               "error", "duration", "waited")  # fmt: skip


def _jobs(  # type: ignore[no-untyped-def]
    now: float, old: dict[str, int], recent: dict[str, int], seed: int = 1
):
    """(job row, its runs) in enqueue order, as a long-lived FIFO queue has them: ``old``
    finished jobs (completed, dead) over 30 days up to hours before ``now``, then the old
    retrying and running ones, then ``recent`` ones, each with one run that ended in the last
    hour, and the newest: those still waiting (pending). A run is (start, end, waited,
    attempt, outcome, exit code, error, worker)."""
    from queuectl.queue import new_ids

    rng = random.Random(seed)

    def shuffled(mix: dict[str, int], states: tuple[str, ...]) -> list[str]:
        part = [state for state in states for _ in range(mix.get(state, 0))]
        rng.shuffle(part)
        return part

    finished = shuffled(old, ("completed", "dead"))
    unfinished = shuffled(old, ("failed", "processing"))
    fresh = shuffled(recent, ("completed", "failed", "dead"))
    waiting = shuffled(old, ("pending",))
    order = finished + unfinished
    ids = iter(new_ids(len(order) + len(fresh) + len(waiting)))
    worker = "bench-host:4242:{:04x}"
    start_at, old_end = now - 30 * 86400, now - 3 * 3600  # old runs end hours before now
    step = (old_end - start_at) / max(len(order), 1)
    recent_step = 3598 / max(len(fresh), 1)
    for index, state in enumerate(order + fresh + waiting):
        is_recent = len(order) <= index < len(order) + len(fresh)
        waited = rng.expovariate(1 / 0.5)
        took = min(rng.lognormvariate(-1.5, 1.5), 600.0)
        if is_recent:  # its one run ends in the hour before now, in enqueue order
            ended = now - 3599 + (index - len(order)) * recent_step
            created = ended - took - waited
        elif index >= len(order):  # waiting: enqueued in the last minute
            created = now - 60 + (index - len(order) - len(fresh)) * 59 / max(len(waiting), 1)
        else:
            created = start_at + index * step
        queue = QUEUES[index % len(QUEUES)]
        runs = []
        due = created
        count = 0 if state == "pending" else 1 if is_recent or state != "dead" else 3
        for attempt in range(1, count + 1):
            if attempt > 1:
                waited = rng.expovariate(1 / 0.5)
                took = min(rng.lognormvariate(-1.5, 1.5), 600.0)
            began = due + waited
            ended = began + took
            last = attempt == count
            if state == "completed" and last:
                outcome, code, error = "completed", 0, None
            elif state == "processing" and last:
                outcome, code, error = None, None, None
            else:
                outcome = "dead" if state == "dead" and last else "failed"
                code, error = 1, "exit code 1"
            runs.append((began, ended, waited, attempt, outcome, code, error,
                         worker.format(index % 8)))  # fmt: skip
            due = ended + 2.0**attempt
        ended_job = state in ("completed", "dead")
        last_run = runs[-1] if runs else None
        run_at = now + 86400 if state == "failed" else created  # a retry not due yet
        job = (
            next(ids), f"echo job {index}", state, len(runs), None, 0, None, run_at, created,
            last_run[1] if last_run else created, last_run[0] if last_run else None,
            last_run[1] if ended_job else None, last_run[5] if last_run else None,
            last_run[6] if last_run else None, "ok\n" if state == "completed" else None,
            last_run[7] if state == "processing" else None, "/tmp", queue,
        )  # fmt: skip
        yield job, runs


def build(path: str, now: float, old: dict[str, int], recent: dict[str, int]) -> None:
    """A queue at ``path``: the jobs and their history, inserted in one transaction into the
    schema Queue made. Schema 9's layout (a run's row carries its started_at) where the events
    have that column, else schema 8's (a `started` row, then the end's)."""
    from queuectl import Queue

    Queue(path).close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        columns = {row[1] for row in connection.execute('PRAGMA table_info("job_event")')}
        one_row = "started_at" in columns
        connection.execute("BEGIN IMMEDIATE")
        insert_job = (f'INSERT INTO "job" ({", ".join(JOB_COLUMNS)}) '
                      f'VALUES ({", ".join("?" * len(JOB_COLUMNS))})')  # fmt: skip
        ends = (*END_COLUMNS, "started_at") if one_row else END_COLUMNS
        insert_event = (f'INSERT INTO "job_event" ({", ".join(ends)}) '
                        f'VALUES ({", ".join("?" * len(ends))})')  # fmt: skip
        jobs, events = [], []
        seq = 0

        def flush() -> None:
            connection.executemany(insert_job, jobs)
            connection.executemany(insert_event, events)
            jobs.clear()
            events.clear()

        for job, runs in _jobs(now, old, recent):
            seq += 1
            jobs.append(job)
            job_id, queue = job[0], job[-1]
            events.append((seq, job_id, queue, job[8], "enqueued", 0, None, None, None, None,
                           None, *((None,) if one_row else ())))  # fmt: skip
            for began, ended, waited, attempt, outcome, code, error, worker in runs:
                if not one_row:
                    events.append((seq, job_id, queue, began, "started", attempt, worker, None,
                                   None, None, waited))  # fmt: skip
                if outcome is None:
                    continue  # running now
                row = (seq, job_id, queue, ended, outcome, attempt, worker, code, error,
                       ended - began, waited if one_row else None)  # fmt: skip
                events.append((*row, began) if one_row else row)
            if len(jobs) >= 20_000:
                flush()
        flush()
        connection.execute(  # per queue and state (schema 18)
            'INSERT INTO "job_count_by_queue" ("queue", "state", "n") SELECT "queue", "state", COUNT(*) '
            'FROM "job" WHERE true GROUP BY "queue", "state" '
            'ON CONFLICT ("queue", "state") DO UPDATE SET "n" = excluded."n"'
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("ANALYZE")
    finally:
        connection.close()


def cached_stats_db(settings: Settings, report: Report) -> tuple[str, float]:
    """A copy of the cached 1M-job database, and its BASE time."""
    from queuectl.db import PAGE_SIZE
    from queuectl.schema import SCHEMA_VERSION

    os.makedirs(CACHE_DIR, exist_ok=True)
    name = f"stats-1m-schema{SCHEMA_VERSION}-layout{LAYOUT_VERSION}-page{PAGE_SIZE}.db"
    cache = os.path.join(CACHE_DIR, name)
    if not os.path.exists(cache):
        print(f"  building {cache} (once) ...", flush=True)
        started = time.perf_counter()
        partial = f"{cache}.{os.getpid()}.partial"
        base = math.floor(time.time())
        try:
            build(partial, base, OLD_MIX, RECENT_MIX)
            os.replace(partial, cache)
        finally:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(partial + suffix):
                    os.remove(partial + suffix)
        report.note(f"built the stats database in {time.perf_counter() - started:.1f} s")
    connection = sqlite3.connect(cache)
    try:  # BASE: just after the last run's end
        base = math.ceil(connection.execute('SELECT MAX("at") FROM "job_event"').fetchone()[0])
    finally:
        connection.close()
    copy = os.path.join(settings.workdir, "stats-1m.db")
    shutil.copyfile(cache, copy)
    return copy, base


def stats_in_process(path: str, base: float, count: int) -> tuple[list[float], dict]:
    """Seconds per Queue.stats(3600) with the clock at ``base`` (after one untimed call)."""
    from queuectl import Queue

    queue = Queue(path, clock=lambda: base)
    try:
        figures = queue.stats(3600).to_dict()
        times = []
        for _ in range(count):
            start = time.perf_counter()
            queue.stats(3600)
            times.append(time.perf_counter() - start)
        return times, figures
    finally:
        queue.close()


def run_stats(settings: Settings, report: Report) -> None:
    big, base = cached_stats_db(settings, report)
    small = os.path.join(settings.workdir, "stats-near-empty.db")
    small_base = math.floor(time.time())
    build(small, small_base, {"completed": NEAR_EMPTY // 2},
          {"completed": NEAR_EMPTY // 2})  # fmt: skip

    qctl = queuectl_command()

    def since(at: float) -> str:  # back to an hour before ``at``
        return f"{math.ceil(time.time() - at + 3600)}s"

    # The first stats on the fresh copy: it reads every run of the hour and stores the
    # summaries of its minutes (queuectl.minutes), which every call after it reads.
    first = run_timed([*qctl, "--db", big, "stats", "--since", since(base)])
    report.add(Figure("#16 the first queuectl stats on that file (summarises the hour)", "s",
                      [first]))  # fmt: skip
    reps = settings.reps(9, 3)
    big_times, small_times = [], []
    for _ in range(reps):
        small_times += stats_in_process(small, small_base, 1)[0]
        times, figures = stats_in_process(big, base, 1)
        big_times += times
    runs = sum(sum(q["runs"].values()) for q in figures["queues"].values())
    if runs != RECENT_RUNS:
        report.note(f"stats: expected {RECENT_RUNS:,} runs in the window, counted {runs:,}")
    report.add(Figure("#16 Queue.stats(1h), 100k runs in the hour, 1M jobs (in-process)", "s",
                      big_times, "near-empty", small_times,
                      [Target("<= 200 ms", at_most=0.2, ratio=False)]))  # fmt: skip

    run_timed([*qctl, "--db", big, "stats", "--since", since(base)])  # warm the page cache
    big_times, small_times = [], []
    for _ in range(settings.reps(7, 3)):
        small_times.append(run_timed([*qctl, "--db", small, "stats", "--since", since(small_base)]))
        big_times.append(run_timed([*qctl, "--db", big, "stats", "--since", since(base)]))
    report.add(Figure("#16 queuectl stats --since 1h, 100k runs in the hour, 1M jobs (process)",
                      "s", big_times, "near-empty", small_times,
                      [Target("<= 200 ms", at_most=0.2, ratio=False)]))  # fmt: skip
    report.note(
        f"stats: 1M = {TOTAL - RECENT_RUNS:,} jobs over 30 days "
        f"({', '.join(f'{k} {v:,}' for k, v in OLD_MIX.items())}) and {RECENT_RUNS:,} runs in "
        f"the last hour ({', '.join(f'{k} {v:,}' for k, v in RECENT_MIX.items())}), in 3 queues "
        f"(3:1:1); near-empty = {NEAR_EMPTY:,} jobs"
    )
