"""The warden of a worker process's jobs: a small process of its own that, once the worker is gone
without standing it down (SIGKILL, the OOM killer, a crash), kills the jobs the worker left
running, at once.

A job runs in a session of its own, so the worker's death does not end it. The worker that
rescues its jobs kills what they left running if it is on the same host (see Registry), but where
there is none, another host's worker rescued the job after the lease and ran it again while the
first run went on (QA: a job's two runs at once, one on each host). The warden closes that gap.

It waits on a pipe whose writing end only the worker holds (the descriptor is not inherited:
jobs and hooks never hold it). A worker that ends as it should writes a byte first: the warden
exits and leaves be what the jobs left on purpose (a daemon a job started). Otherwise it reads
the end of the pipe and SIGKILLs the process groups marked with the worker's id
(:func:`queuectl.procs.kill_leftovers`). It has a session of its own too, so the signals sent to
the worker's terminal or process group do not end it first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

STAND_DOWN = b"."
# This queuectl, wherever it is installed, whatever the worker's directory and environment hold.
_PACKAGES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUN = "import sys; sys.path.insert(0, sys.argv[1]); from queuectl.warden import main; main(sys.argv[2])"


class Warden:
    """Started by a worker process once it is registered as ``worker_id``."""

    def __init__(self, worker_id: str) -> None:
        read_end, self._write_end = os.pipe()  # (neither inheritable: PEP 446)
        self._lock = threading.Lock()
        try:
            self._process: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-I", "-c", _RUN, _PACKAGES, worker_id],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        except OSError:  # no process to spare: the rescuer's kill on this host is left
            self._process = None
        finally:
            os.close(read_end)

    def stand_down(self) -> None:
        """The worker ends as it should: the warden exits, killing nothing. Once, whichever
        thread asks first (a TUI's pool is joined by its main thread and, after SIGHUP, by
        another: both wrote, then closed the descriptor twice, and the second close raised)."""
        with self._lock:
            write_end, self._write_end = self._write_end, -1
        if write_end < 0:
            return
        try:
            os.write(write_end, STAND_DOWN)
        except OSError:  # it is gone already
            pass
        finally:
            os.close(write_end)
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:  # (a machine too busy to run it: left to exit)
                pass


def main(worker_id: str) -> None:
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):  # (the worker's terminal's: not for it)
        signal.signal(signum, signal.SIG_IGN)
    if os.read(0, 1) != STAND_DOWN:  # (b"": the worker is gone)
        from .procs import kill_leftovers

        kill_leftovers(worker_id)
