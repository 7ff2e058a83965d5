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
                rows = cursor.execute(
                    statement, (row[0], worker, time.time(), 0, "", row[1], row[2], 0)
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
    report.note(f"statement: finish_and_claim CPU per job, median "
                f"{statistics.median(cpu['every trigger (as made)']):.0f} us with every trigger, "
                f"{bare:.0f} us with none; each trigger group alone adds (us): {parts}; "
                f"{rounds} interleaved rounds of {n} jobs, in-process")  # fmt: skip
