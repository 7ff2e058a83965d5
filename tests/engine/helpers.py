"""Helpers for the engine tests: worker processes on the engine API (see worker_proc.py)."""

from __future__ import annotations

import os
import subprocess

from support import group_members, kill_group, stop_process, wait_until

__all__ = ["WorkerProc", "group_members", "kill_group", "stop_process", "wait_until"]


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

    def wait_ready(self, timeout: float = 30.0) -> str:
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

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (a graceful stop), SIGKILL after ``timeout``; its output read to the end."""
        stop_process(self.process, timeout)
        self._reader.join(15)
