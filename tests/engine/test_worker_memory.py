"""A worker gives back what a chatty job's output held once it is stored (queuectl.heap, and
WorkerPool's LARGE_OUTPUT): the pages SQLite cached for it, and the heap they were carved from.

Each check runs in a process of its own: SQLite's memory count is the process's, and so is its
heap (glibc's arenas)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the probes import tests.support

# SQLite's count of the bytes it holds (sqlite3_status64(SQLITE_STATUS_MEMORY_USED), on in a
# fresh process) in a pool's process, after a job printed 3 MB over about 2 s: its 1 MiB tail
# stored as it ran, then as its result, each an overflow chain of 1 KiB pages.
_POOL_PROBE = """
import ctypes, sys, time, _sqlite3
from queuectl import Queue
from queuectl.worker import WorkerPool
from tests.support import wait_until
library = ctypes.CDLL(_sqlite3.__file__)
def used():
    current, high = ctypes.c_int64(), ctypes.c_int64()
    assert library.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(high), 0) == 0
    return current.value
queue = Queue(sys.argv[1])
pool = WorkerPool(queue, 1)
pool.start()
try:
    queue.enqueue("echo warm")
    wait_until(lambda: queue.counts()["completed"] == 1, 30, "the warm-up job")
    before = used()
    assert before > 0, "SQLite's memory statistics are on"
    queue.enqueue("for i in 1 2 3; do yes a chatty job | head -c 1000000; sleep 0.6; done")
    wait_until(lambda: queue.counts()["completed"] == 2, 30, "the chatty job")
    try:  # the pages are dropped just after the result's commit: a moment later
        wait_until(lambda: used() - before < 3 * 2**20, 5, "the pages to be dropped")
    finally:
        print((used() - before) / 2**20)
finally:
    pool.stop()
    queue.close()
"""


def test_a_worker_keeps_no_cached_pages_of_a_chatty_jobs_output(db_path):
    """The pages stayed cached (the connection may keep 16 MB) though a worker never reads an
    output back: 4.6 MiB more of SQLite's memory after the job, where 2.1 MiB stays now (the
    last bound values of the output's two statements, which Python's sqlite3 keeps)."""
    ran = subprocess.run(
        [sys.executable, "-c", _POOL_PROBE, db_path],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert float(ran.stdout) < 3


# RSS freed back (KiB) by heap.give_back_freed(), after 4 MB of 1 KB blocks were freed in the
# middle of the heap (glibc keeps such memory in its arena).
_HEAP_PROBE = """
import sys
from queuectl.heap import give_back_freed, large_buffers_given_back
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
took = sys.argv[1] == "worker" and large_buffers_given_back()
blocks = [bytes(1000) for _ in range(4000)]
fence = [bytes(1000) for _ in range(10)]  # past them: they are not the heap's top
del blocks
freed = rss()
give_back_freed()
print(took, freed - rss())
"""


@pytest.mark.parametrize("process", ["worker", "script"])
def test_freed_memory_is_given_back_only_in_a_process_that_runs_jobs(process):
    """A worker (`worker start`, the TUI) gives back what it freed; a script that uses the
    engine keeps its heap as it is: giving back is the process's choice, not the engine's."""
    ran = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, process],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    took, given_back = ran.stdout.split()
    if process == "script":
        assert given_back == "0"
    elif took == "True":
        assert int(given_back) > 3000  # KiB: most of the 4 MB
    else:  # pragma: no cover (a C library without mallopt: musl)
        pytest.skip("this C library is not glibc")
