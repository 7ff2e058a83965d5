"""Issue #5 targets 2 and 3: whole processes, as a shell script runs them.

2. `queuectl enqueue true` beside a bare `python -c "import click, peewee, sqlite3"`.
3. `queuectl enqueue --file` of 10,000 lines (an absolute limit, and beside Huey enqueueing 10,000
   tasks in a loop, also as a whole process).
Each database exists (created empty) before the timed run: creating the schema happens once in a
queue's life, not on every enqueue. Measured and baseline runs alternate.
"""

from __future__ import annotations

import os
import sys

from .harness import Figure, Report, Settings, Target, fresh_sqlite, queuectl_command, run_timed
from .throughput import huey_app, huey_available

# As where no PostgreSQL driver is installed (a plain `pip install .`): peewee probes for psycopg
# when imported, and where the postgres extra is installed that padded both sides by ~90 ms.
BARE_IMPORT = [
    sys.executable, "-c",
    "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None; "
    "import click, peewee, sqlite3",
]  # fmt: skip
HUEY_LOOP = (
    "import benchhuey\n"
    "for _ in range({n}):\n"
    "    benchhuey.run('true')\n"
)


def empty_queue(settings: Settings, name: str) -> str:
    from queuectl import Queue

    path = fresh_sqlite(settings, name)
    Queue(path).close()
    return path


def run_enqueue_one(settings: Settings, report: Report) -> None:
    reps = settings.reps(15, 5)
    target = empty_queue(settings, "one")
    command = [*queuectl_command(), "--db", target, "enqueue", "true"]
    run_timed(command)  # warm the page cache and .pyc files for both sides
    run_timed(BARE_IMPORT)
    ours, bare = [], []
    for _ in range(reps):
        bare.append(run_timed(BARE_IMPORT))
        ours.append(run_timed(command))
    report.add(Figure("bare python -c 'import click, peewee, sqlite3' (no psycopg)", "s", bare))
    report.add(Figure("2. queuectl enqueue true (whole process)", "s", ours,
                      "bare import", bare, [Target("<= 1.15x", at_most=1.15)]))  # fmt: skip


def run_bulk(settings: Settings, report: Report) -> None:
    n = 10_000
    reps = settings.reps(5, 2)
    lines = os.path.join(settings.workdir, "jobs-10k.txt")
    with open(lines, "w") as out:
        out.writelines("true\n" for _ in range(n))
    ours, huey = [], []
    for _ in range(reps):
        target = empty_queue(settings, "bulk")
        ours.append(run_timed([*queuectl_command(), "--db", target, "enqueue", "--file", lines]))
        if huey_available():
            folder, env = huey_app(settings.workdir)
            huey.append(run_timed([sys.executable, "-c", HUEY_LOOP.format(n=n)], env=env,
                                  cwd=folder, timeout=600))  # fmt: skip
    if huey:
        report.add(Figure("huey: 10,000 tasks enqueued in a loop (whole process)", "s", huey))
    else:
        report.note("Huey not installed: the bulk comparison is skipped")
    name = "3. queuectl enqueue --file, 10,000 lines (whole process)"
    report.add(Figure(name, "s", ours, targets=[Target("<= 0.5 s", at_most=0.5, ratio=False)]))
    if huey:
        # "5x faster" is a time ratio: ours / huey <= 0.2.
        report.add(Figure("3. enqueue --file vs Huey's loop (time ratio)", "s", ours, "huey",
                          huey, [Target("<= 0.2x (5x faster)", at_most=0.2)]))  # fmt: skip
