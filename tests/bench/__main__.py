"""Run the benchmarks and print the table: `python -m tests.bench [--quick] [--only NAME ...]`.

Exit status: 0 when every target passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable

from . import (features, held, history, latency, memory, pipeline, scale, startup, statement,
               throughput, tui)  # fmt: skip
from .harness import Report, Settings, find_pg, remove_tree

BENCHMARKS: dict[str, tuple[str, Callable[[Settings, Report], None]]] = {
    "throughput": ("1. jobs/s vs Python's ceiling, Huey, task-spooler", throughput.run),
    "enqueue": ("2. start-up: enqueue, --help, config get, in real installs", startup.run_start_up),
    "bulk": ("3. `enqueue --file` of 10,000 lines vs Huey", startup.run_bulk),
    "latency": ("4. pickup latency and idle CPU", latency.run),
    "memory": ("5. worker RSS while a job prints 1 GB", memory.run),
    "scale": ("6. 1M jobs: claims, status, list, TUI refresh", scale.run),
    "backends": ("issue #6: worker processes on SQLite and PostgreSQL", throughput.run_backends),
    "pipeline": ("issue #15: chains of dependent jobs vs independent jobs", pipeline.run),
    "direct": ("issue #17: simple commands without the shell", throughput.run_direct),
    "procrastinate": ("issue #17: PostgreSQL vs procrastinate", throughput.run_procrastinate),
    "features": ("issue #17: dependencies, schedules, logs -f, cancel: how soon", features.run),
    "held": ("issue #17: claims past a paused or full queue's backlog", held.run),
    "history": ("issue #16: what writing the history costs a worker", history.run_history),
    "stats": ("issue #16: stats over an hour of 100k runs, 1M jobs", history.run_stats),
    "tui": ("issue #17: a busy TUI: a key's effect, a refresh, the UI thread's CPU", tui.run),
    "statement": ("issue #17: SQLite's complete-and-claim's CPU, trigger by trigger",
                  statement.run),
    "scale10m": ("issue #17: 10M jobs: claims, status, list, stats, TUI, purge", scale.run_10m),
}
# Run only when named with --only: minutes long.
OPT_IN = {"scale10m"}


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller N")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these (repeatable): {', '.join(BENCHMARKS)}")  # fmt: skip
    parser.add_argument("--pg-url", help="PostgreSQL server for the PostgreSQL figures "
                        "(default: $QUEUECTL_BENCH_PG_URL, else the test suite's)")  # fmt: skip
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="queuectl-bench-")
    pg_url, why = find_pg(args.pg_url)
    settings = Settings(quick=args.quick, workdir=workdir, pg_url=pg_url)
    report = Report()
    if pg_url is None:
        report.note(why)
    started = time.perf_counter()
    try:
        for name in args.only or [name for name in BENCHMARKS if name not in OPT_IN]:
            title, bench = BENCHMARKS[name]
            print(f"[{name}] {title}", flush=True)
            try:
                bench(settings, report)
            except Exception as exc:  # one broken benchmark must not hide the others
                report.note(f"{name} failed to run: {type(exc).__name__}: {exc}")
    finally:
        remove_tree(workdir)
    print()
    print(f"Machine: {machine()}")
    print(f"Mode: {'quick' if args.quick else 'full'}; {time.perf_counter() - started:.0f} s")
    print()
    print(report.table())
    failed = report.failed
    if failed:
        print(f"\n{len(failed)} target(s) failed.")
    return 1 if failed or any("failed to run" in n for n in report.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
