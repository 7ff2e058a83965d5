"""Issue #17: the CPU of SQLite's complete-and-claim, the one statement a busy worker runs a job.

One thread, in-process, no job run: N jobs of `true` enqueued into a new database file, one
claimed, then Queue.finish_and_claim with a successful RunResult in a loop until none is left
(time.thread_time around the loop, divided by N). Measured on the schema as Queue makes it and,
as a profile of where that CPU goes, on copies of it: with every trigger on "job" that fires on
a change of state dropped, and with each group of those triggers alone (grouped by their name:
job_count_* the counters, job_dep_* the dependencies, job_history_* and job_hook the history, run
totals and hooks; a trigger of one state transition is a group of its own). Also: the statement
alone (the same loop calling sqlite3 directly, no Job built), and the schema as made with a
queue limit set on another queue and a hook configured (what the features cost once used). The
variants run interleaved, round by round, each on a fresh file. To compare two installs, run it
with each one's interpreter from a folder whose `tests` is this one (so that `queuectl` is the
install's, not the checkout's).

Then what batching results would save (see run_batching): the raw statement with 1, 2, 4 and 8
statements to a transaction, and with a job's start (or a 0.5 ms sleep) between statements, as
in a worker, where the CPU caches are cold for the statement after each wait.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable

from .harness import Figure, Report, Settings, fresh_sqlite

Setup = Callable[[object], None]  # changes a Queue's database before the loop


def _triggers(queue: object) -> dict[str, str]:
    rows = queue.db.execute_sql(  # type: ignore[attr-defined]
        "SELECT \"name\", \"sql\" FROM sqlite_master WHERE \"type\" = 'trigger' "
        "AND \"tbl_name\" = 'job'"
    ).fetchall()
    return {name: sql for name, sql in rows if "UPDATE" in sql.split(" ON ", 1)[0].upper()}


def group_of(name: str) -> str:
    for prefix, group in (("job_count", "counters"), ("job_dep", "dependencies"),
                          ("job_history", "history"), ("job_hook", "history")):  # fmt: skip
        if name.startswith(prefix):
            return group
    return name


def trigger_groups(target: str) -> list[str]:
    from queuectl import Queue

    queue = Queue(target)
    try:
        return sorted({group_of(name) for name in _triggers(queue)})
    finally:
        queue.close()


def keep_only(groups: set[str]) -> Setup:
    """Drop the state-change triggers on "job" but those of ``groups``."""

    def setup(queue: object) -> None:
        for name in _triggers(queue):
            if group_of(name) not in groups:
                queue.db.execute_sql(f'DROP TRIGGER "{name}"')  # type: ignore[attr-defined]

    return setup


def features_used(queue: object) -> None:
    """A limit on a queue the jobs are not in, a hook for completed runs."""
    queue.set_queue_limit("elsewhere", 4)  # type: ignore[attr-defined]
    queue.config_set("on-completed", "true")  # type: ignore[attr-defined]


def statement_cpu(target: str, n: int, setup: Setup | None, raw: bool = False) -> float:
    """CPU seconds per job of the loop (see the module's docstring)."""
    from queuectl import JobSpec, Queue
    from queuectl.executor import RunResult

    queue = Queue(target).for_worker_threads()
    try:
        if setup is not None:
            setup(queue)
        queue.enqueue_many([JobSpec(command="true")] * n)
        worker = queue.register_worker(1)
        done = RunResult(0, None, "")
        job = queue.claim(worker)
        assert job is not None
        if raw:
            statement = queue._sql.claims(None)[1]
            cursor = queue.db.connection().cursor()
            row = (job.seq, job.attempts, job.started_at)
            start = time.thread_time()
            while row is not None:
                now = time.time()  # (its time, and the run's end)
                rows = cursor.execute(
                    statement, (row[0], worker, now, 0, "", row[1], row[2], 0, now)
                ).fetchall()
                row = next(((r[0], r[4], r[11]) for r in rows if r[0] != row[0]), None)
            spent = time.thread_time() - start
        else:
            start = time.thread_time()
            while job is not None:
                _, job = queue.finish_and_claim(job, done, worker)
            spent = time.thread_time() - start
        states = queue.db.execute_sql('SELECT "state", COUNT(*) FROM "job" GROUP BY 1').fetchall()
        assert dict(states) == {"completed": n}, states
        return spent / n
    finally:
        queue.close()


def batched_cpu(target: str, n: int, per_commit: int, between: str | None) -> float:
    """CPU seconds per job of the raw statement loop (see statement_cpu) with ``per_commit``
    statements to a transaction (1: each its own, as a worker runs them), and ``between``
    each: None (a tight loop), "spawn" (queuectl's Execution of `true`, as a worker starts a
    job) or "sleep" (0.5 ms asleep). Only the statements are timed."""
    from queuectl import JobSpec, Queue
    from queuectl.executor import Execution
    from queuectl.spawn import Environment

    env, cwd = Environment(dict(os.environ)), os.getcwd()
    queue = Queue(target).for_worker_threads()
    try:
        queue.enqueue_many([JobSpec(command="true")] * n)
        worker = queue.register_worker(1)
        job = queue.claim(worker)
        assert job is not None
        statement = queue._sql.claims(None)[1]
        cursor = queue.db.connection().cursor()
        row: tuple | None = (job.seq, job.attempts, job.started_at)
        spent, done = 0.0, 0
        while row is not None:
            if between == "spawn":
                Execution("true", cwd=cwd, env=env, timeout=60).run()
            elif between == "sleep":
                time.sleep(0.0005)
            start = time.thread_time()
            if per_commit > 1 and done % per_commit == 0:
                cursor.execute("BEGIN IMMEDIATE")
            now = time.time()
            rows = cursor.execute(
                statement, (row[0], worker, now, 0, "", row[1], row[2], 0, now)
            ).fetchall()
            row = next(((r[0], r[4], r[11]) for r in rows if r[0] != row[0]), None)
            done += 1
            if per_commit > 1 and (done % per_commit == 0 or row is None):
                cursor.execute("COMMIT")
            spent += time.thread_time() - start
        return spent / n
    finally:
        queue.close()


def run_batching(settings: Settings, report: Report, n: int, rounds: int) -> None:
    """What storing results in batches could save a worker, and what a job's start costs the
    statement after it (its caches cold): the raw statement's CPU, interleaved variants."""
    from queuectl import Queue

    variants = {
        "each its own transaction, a tight loop": (1, None),
        "2 to a transaction": (2, None),
        "4 to a transaction": (4, None),
        "8 to a transaction": (8, None),
        "each its own, a job (`true`) started between": (1, "spawn"),
        "each its own, 0.5 ms asleep between": (1, "sleep"),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        for name in variants if index % 2 == 0 else reversed(list(variants)):
            path = fresh_sqlite(settings, "batching")
            try:
                Queue(path).close()
                cpu[name].append(batched_cpu(path, n, *variants[name]) * 1e6)
            finally:
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    for name in variants:
        report.add(Figure(f"#17 the raw complete-and-claim's CPU per job: {name} (SQLite)", "us",
                          cpu[name]))  # fmt: skip


def run(settings: Settings, report: Report) -> None:
    from queuectl import Queue
    from queuectl.statements import COLUMN_NAMES

    # The raw loop reads seq, attempts and started_at from the returned row by position.
    assert (COLUMN_NAMES.index("attempts"), COLUMN_NAMES.index("started_at")) == (4, 11), \
        COLUMN_NAMES
    n = 500 if settings.quick else 2000
    rounds = settings.reps(7, 2)
    probe = fresh_sqlite(settings, "statement")
    Queue(probe).close()
    groups = trigger_groups(probe)
    shutil.rmtree(os.path.dirname(probe), ignore_errors=True)
    variants: dict[str, tuple[Setup | None, bool]] = {
        "every trigger (as made)": (None, False),
        "statement alone, sqlite3 (every trigger)": (None, True),
        "no state-change trigger": (keep_only(set()), False),
        **{f"only {group}": (keep_only({group}), False) for group in groups},
        "every trigger, a queue limit and a hook set": (features_used, False),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            path = fresh_sqlite(settings, "statement")
            try:
                Queue(path).close()
                setup, raw = variants[name]
                cpu[name].append(statement_cpu(path, n, setup, raw) * 1e6)
            finally:
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    bare = statistics.median(cpu["no state-change trigger"])
    for name in names:
        report.add(Figure(f"#17 complete-and-claim CPU per job: {name} (SQLite, one thread)",
                          "us", cpu[name]))  # fmt: skip
    parts = ", ".join(
        f"{name[5:]} {statistics.median(cpu[name]) - bare:+.0f}"
        for name in names if name.startswith("only ")
    )
    run_batching(settings, report, n, rounds)
    report.note(f"statement: finish_and_claim CPU per job, median "
                f"{statistics.median(cpu['every trigger (as made)']):.0f} us with every trigger, "
                f"{bare:.0f} us with none; each trigger group alone adds (us): {parts}; "
                f"{rounds} interleaved rounds of {n} jobs, in-process")  # fmt: skip
