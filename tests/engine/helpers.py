"""Helpers for the engine tests: waiting on conditions with deadlines, never fixed sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, read from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry.name))
    return members


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """End a process this test started: SIGTERM, then SIGKILL; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class WorkerProc:
    """A worker process running ``worker_proc.py``; its stdout lines are collected as they come."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_proc.py")

    def __init__(
        self, db: str, threads: int, log_dir, name: str, burst: bool = False, *extra: str
    ) -> None:
        import sys
        import threading

        self.name = name
        self.stderr_path = os.path.join(str(log_dir), f"{name}.stderr")
        args = [sys.executable, self.SCRIPT, db, str(threads), *extra]
        args += ["--burst"] if burst else []
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=str(log_dir)
            )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.worker_id: str | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 20.0) -> str:
        line = wait_until(
            lambda: next((x for x in list(self.lines) if x.startswith("ready ")), None),
            timeout, message=f"{self.name} to be ready ({self.stderr()})",
        )
        self.worker_id = line.split(" ", 1)[1]
        return self.worker_id

    def events(self, kind: str | None = None) -> list[tuple[str, str]]:
        pairs = [tuple(x.split()[1:3]) for x in list(self.lines) if x.startswith("EVENT ")]
        return [p for p in pairs if kind is None or p[0] == kind]

    def stderr(self) -> str:
        with open(self.stderr_path) as f:
            return f.read()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_exit(self, timeout: float) -> int:
        """Its exit code, once it has exited and all its output has been read."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        stop_process(self.process)
        self._reader.join(5)
