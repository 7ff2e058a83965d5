"""`worker start` turns SQLite's memory statistics off before it opens the database (a global
mutex taken at every allocation, ~4 % of a job's statement; see
db.sqlite_without_memory_statistics).
It must never do so once the process has a connection (SQLite must be shut down for it), and a
worker whose SQLite was restarted so runs jobs as any other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from queuectl import Queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

# sqlite3_status64(SQLITE_STATUS_MEMORY_USED): the bytes SQLite has allocated, as it counts them
# (0 while the statistics are off).
_PROBE = """
import ctypes, sys, _sqlite3
from queuectl.db import sqlite_without_memory_statistics
from queuectl import Queue
first = {before}
library = ctypes.CDLL(_sqlite3.__file__)
def used():
    current, high = ctypes.c_int64(), ctypes.c_int64()
    assert library.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(high), 0) == 0
    return current.value
if first:
    Queue(sys.argv[1]).close()
took = sqlite_without_memory_statistics()
queue = Queue(sys.argv[1])
queue.enqueue("true")
print(took, used() > 0, queue.counts()["pending"])
queue.close()
"""


@pytest.mark.parametrize("before", [False, True], ids=["fresh process", "a database opened"])
def test_statistics_go_off_only_in_a_process_that_never_opened_a_database(db_path, before):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(before=before), db_path],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    if before:
        assert out == ["False", "True", "1"]  # left as it was: on, and counting
    else:
        assert out == ["True", "False", "1"]  # off, and the queue works as ever


def test_a_worker_started_so_runs_jobs_and_stores_their_results(db_path, tmp_path):
    q = Queue(db_path)
    try:
        for i in range(30):
            q.enqueue(f"echo {i} > {tmp_path}/out{i}")
        q.enqueue("exit 3")
    finally:
        q.close()
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", "--db", db_path, "config", "set", "max-retries", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ran = subprocess.run(
        [sys.executable, "-m", "queuectl", "--db", db_path, "worker", "start", "--count", "2",
         "--burst"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    q = Queue(db_path)
    try:
        counts = q.counts()
        assert counts["completed"] == 30 and counts["dead"] == 1
        assert sorted(p.read_text() for p in tmp_path.glob("out*")) == sorted(
            f"{i}\n" for i in range(30)
        )
    finally:
        q.close()
