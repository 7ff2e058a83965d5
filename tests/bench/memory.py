"""Issue #5 target 5: a worker's peak RSS while one job prints 1 GB, against its idle RSS.

The worker is a real `queuectl worker start --count 1`. Once it idles, its RSS is read and its
peak (VmHWM) is reset through /proc/PID/clear_refs, so start-up's own peak does not count; then
one job prints 1 GB of text lines. The peak is the larger of VmHWM after the job and VmRSS sampled
every 5 ms while it ran.
"""

from __future__ import annotations

import contextlib
import time

from ..support import wait_until
from .harness import (
    Children,
    Figure,
    Report,
    Settings,
    Target,
    fresh_sqlite,
    queuectl_command,
    rss_kib,
)

ONE_GB = 1_000_000_000
JOB = f"yes 'queuectl: one line of a very chatty job' | head -c {ONE_GB}"


def measure(target: str) -> tuple[float, float]:
    """(idle RSS, peak RSS) in MiB."""
    from queuectl import Queue

    queue = Queue(target)
    try:
        with Children() as children:
            worker = children.start(
                [*queuectl_command(), "--db", target, "worker", "start", "--count", "1"]
            )
            children.wait_until(lambda: queue.live_workers(), 60, "the worker to register")
            # Warm-up: one small job, so that lazily imported code is already loaded.
            warm = queue.enqueue("echo warm")
            wait_until(lambda: queue.get(warm.id).state == "completed", 30, "the warm-up job")
            time.sleep(1.0)
            idle = rss_kib(worker.pid)
            with contextlib.suppress(OSError):
                with open(f"/proc/{worker.pid}/clear_refs", "w") as refs:
                    refs.write("5")  # reset VmHWM to the current RSS
            job = queue.enqueue(JOB)
            peak = idle
            deadline = time.monotonic() + 300
            while queue.get(job.id).state != "completed":
                if time.monotonic() > deadline:
                    raise TimeoutError("the 1 GB job did not finish in 300 s")
                peak = max(peak, rss_kib(worker.pid))
                time.sleep(0.005)
            peak = max(peak, rss_kib(worker.pid, "VmHWM"))
            output = queue.get(job.id).output or ""
            if "output truncated" not in output:
                raise RuntimeError("the 1 GB job's output was not truncated")
            return idle / 1024, peak / 1024
    finally:
        queue.close()


def run(settings: Settings, report: Report) -> None:
    reps = settings.reps(2)
    growth, idles = [], []
    for _ in range(reps):
        idle, peak = measure(fresh_sqlite(settings, "memory"))
        idles.append(idle)
        growth.append(peak - idle)
    report.add(Figure("   worker start --count 1: idle RSS", "MiB", idles))
    report.add(Figure("5. worker peak RSS growth while a job prints 1 GB", "MiB", growth,
                      targets=[Target("<= 10 MiB", at_most=10, ratio=False)]))  # fmt: skip
