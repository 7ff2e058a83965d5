"""Issue #5 target 6: a database of 1,000,000 jobs in mixed states, beside a near-empty one.

The big database is built once with one bulk INSERT transaction into a schema that Queue created
(so indexes, and any trigger the schema has, are maintained as in real use) and cached under
/tmp, keyed by the schema version and this file's layout version; each run works on a copy.

- claim throughput: Queue.claim in a loop, in-process (claims only, no job runs); afterwards the
  claimed jobs are put back, so every repetition sees the same database.
- `queuectl status` and `queuectl list --state pending --limit 50`: whole processes.
- one TUI refresh: Queue.counts() + Queue.pane(...) for each of the four panes (40 rows each).
The near-empty database holds only the pending jobs the claims need (5,000).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time

from .harness import (
    CACHE_DIR,
    Figure,
    Report,
    Settings,
    Target,
    queuectl_command,
    run_timed,
)

LAYOUT_VERSION = 2  # bump when the generated rows change
TOTAL = 1_000_000
MIX = {"completed": 940_000, "dead": 30_000, "failed": 10_000, "pending": 19_000,
       "processing": 1_000}  # fmt: skip
NEAR_EMPTY_PENDING = 5_000
PANE_ROWS = 40
COLUMNS = ("id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
           "created_at", "updated_at", "started_at", "finished_at", "exit_code", "error",
           "output", "worker", "cwd")  # fmt: skip


def _states(mix: dict[str, int]) -> list[str]:
    """States in enqueue order, as a long-lived FIFO queue has them: finished jobs (completed,
    dead) through its history, then the retrying and running ones, and the newest waiting."""
    rng = random.Random(1)
    order: list[str] = []
    for group in (("completed", "dead"), ("failed", "processing"), ("pending",)):
        part = [state for state in group for _ in range(mix.get(state, 0))]
        rng.shuffle(part)
        order += part
    return order


def _rows(mix: dict[str, int], now: float):  # type: ignore[no-untyped-def]
    from queuectl.queue import new_ids

    states = _states(mix)
    ids = new_ids(len(states))
    start = now - 30 * 86400
    step = (now - 3600 - start) / max(len(states), 1)
    for index, (job_id, state) in enumerate(zip(ids, states)):
        created = start + index * step
        started = finished = exit_code = error = output = worker = None
        attempts, run_at = 0, created
        if state in ("completed", "dead", "failed", "processing"):
            attempts, started = 1, created + 1
        if state == "completed":
            finished, exit_code, output = created + 2, 0, "ok\n"
        elif state == "dead":
            attempts, finished, exit_code, error = 3, created + 2, 1, "exit code 1"
        elif state == "failed":
            finished, exit_code, error = created + 2, 1, "exit code 1"
            run_at = now + 86400  # retries not yet due
        elif state == "processing":
            worker = "gone-host:1:0000"
        yield (job_id, f"echo job {index}", state, attempts, None, 0, None, run_at, created,
               finished or started or created, started, finished, exit_code, error, output,
               worker, "/tmp")  # fmt: skip


def build(path: str, mix: dict[str, int]) -> None:
    """A queue at ``path`` holding ``mix`` jobs, inserted in one transaction."""
    from queuectl import Queue

    Queue(path).close()  # the schema, exactly as queuectl creates it
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        placeholders = ", ".join("?" * len(COLUMNS))
        names = ", ".join(f'"{name}"' for name in COLUMNS)
        connection.executemany(
            f'INSERT INTO "job" ({names}) VALUES ({placeholders})', _rows(mix, time.time())
        )
        # Queue.enqueue_many counts what it inserts (schema 4); rows inserted by hand are
        # counted here, once.
        connection.execute(
            'UPDATE "job_count" SET "n" = (SELECT COUNT(*) FROM "job" '
            'WHERE "job"."state" = "job_count"."state")'
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("ANALYZE")
    finally:
        connection.close()


def cached_big_db(settings: Settings, report: Report) -> str:
    from queuectl.db import PAGE_SIZE
    from queuectl.schema import SCHEMA_VERSION

    os.makedirs(CACHE_DIR, exist_ok=True)
    # Named by what it was built with: a file made with other pages would be compared unfairly
    # with a near-empty one made now.
    name = f"jobs-1m-schema{SCHEMA_VERSION}-layout{LAYOUT_VERSION}-page{PAGE_SIZE}.db"
    cache = os.path.join(CACHE_DIR, name)
    if not os.path.exists(cache):
        print(f"  building {cache} (once) ...", flush=True)
        started = time.perf_counter()
        partial = f"{cache}.{os.getpid()}.partial"
        try:
            build(partial, MIX)
            os.replace(partial, cache)
        finally:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(partial + suffix):
                    os.remove(partial + suffix)
        report.note(f"built the 1M-job database in {time.perf_counter() - started:.1f} s")
    copy = os.path.join(settings.workdir, "jobs-1m.db")
    shutil.copyfile(cache, copy)
    return copy


def claims_per_second(target: str, count: int) -> float:
    from queuectl import Queue

    queue = Queue(target)
    try:
        worker = "bench-claimer"
        start = time.perf_counter()
        for _ in range(count):
            if queue.claim(worker) is None:
                raise RuntimeError("ran out of claimable jobs")
        elapsed = time.perf_counter() - start
        queue.db.execute_sql(  # put them back: one statement, atomic on its own
            'UPDATE "job" SET "state" = \'pending\', "attempts" = "attempts" - 1, '
            '"worker" = NULL, "started_at" = NULL WHERE "worker" = ?',
            (worker,),
        )
        return count / elapsed
    finally:
        queue.close()


def tui_refresh_ms(target: str, count: int) -> list[float]:
    from queuectl import Queue

    queue = Queue(target)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            queue.counts()
            for pane in ("waiting", "processing", "completed", "dead"):
                queue.pane(pane, PANE_ROWS)
            times.append((time.perf_counter() - start) * 1000)
        return times
    finally:
        queue.close()


def run(settings: Settings, report: Report) -> None:
    reps = settings.reps(5, 2)
    claims = 500 if settings.quick else 2000
    big = cached_big_db(settings, report)
    small = os.path.join(settings.workdir, "near-empty.db")
    build(small, {"pending": NEAR_EMPTY_PENDING})

    big_claims, small_claims = [], []
    claims_per_second(small, claims)  # warm-up, not counted: the OS caches both files' pages
    claims_per_second(big, claims)
    for _ in range(reps):
        small_claims.append(claims_per_second(small, claims))
        big_claims.append(claims_per_second(big, claims))
    report.add(Figure("6. claims/s, 1M-job database (in-process)", "jobs/s", big_claims,
                      "near-empty", small_claims, [Target(">= 0.90x", at_least=0.9)]))  # fmt: skip

    qctl = queuectl_command()
    commands = {
        "status": ["status"],
        "list --state pending --limit 50": ["list", "--state", "pending", "--limit", "50"],
    }
    for name, args in commands.items():
        run_timed([*qctl, "--db", big, *args])  # warm the page cache
        big_times, small_times = [], []
        for _ in range(settings.reps(7, 3)):
            small_times.append(run_timed([*qctl, "--db", small, *args]))
            big_times.append(run_timed([*qctl, "--db", big, *args]))
        report.add(Figure(f"6. queuectl {name}, 1M jobs (whole process)", "s", big_times,
                          "near-empty", small_times, [Target("<= 1.5x", at_most=1.5)]))  # fmt: skip

    refresh = settings.reps(20, 5)
    small_refresh = tui_refresh_ms(small, refresh)
    big_refresh = tui_refresh_ms(big, refresh)
    report.add(Figure("6. TUI refresh (counts + 4 panes), 1M jobs", "ms", big_refresh,
                      "near-empty", small_refresh,
                      [Target("< 50 ms", at_most=50, ratio=False)]))  # fmt: skip
    report.note(
        f"scale: 1M = {', '.join(f'{k} {v:,}' for k, v in MIX.items())}; near-empty = "
        f"{NEAR_EMPTY_PENDING:,} pending; claims/s median of {reps} x {claims} claims"
    )
