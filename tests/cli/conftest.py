"""CLI fixtures: an in-process runner (CliRunner) and the real `queuectl` executable."""

from __future__ import annotations

import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from queuectl import Queue
from queuectl.cli import cli


def _executable() -> list[str]:
    script = Path(sys.executable).with_name("queuectl")
    if script.exists():
        return [str(script)]
    found = shutil.which("queuectl")
    return [found] if found else [sys.executable, "-m", "queuectl"]


QUEUECTL = _executable()


class Cli:
    """``cli("list", "--json")`` runs in-process on this test's database."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        return self.runner.invoke(
            cli, ["--db", self.db, *args], input=input, prog_name="queuectl", catch_exceptions=False
        )

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def run(target) -> Cli:
    """The CLI in-process, once on each backend (SQLite, PostgreSQL)."""
    return Cli(target)


@pytest.fixture
def env(target, tmp_path) -> dict[str, str]:
    """The environment of spawned processes: this test's database, unbuffered output."""
    return {
        **os.environ,
        "QUEUECTL_DB": target,
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp_path),
    }


@pytest.fixture
def qc(env, tmp_path):
    """Run the real executable to completion: ``qc("status", "--json")``."""

    def run(*args: str, input: str | None = None, timeout: float = 60):
        return subprocess.run(
            [*QUEUECTL, *args],
            env=env,
            cwd=tmp_path,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


class Spawned:
    """A background `queuectl` process; its stdout and stderr go to a file the test can read
    (``terminal``: through a terminal of its own, made by script(1); its line ends read as
    newlines)."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, log: Path, terminal: bool = False
    ) -> None:
        self.log_path = log
        self.terminal = terminal
        self._log = open(log, "w")
        argv = [*QUEUECTL, *args]
        if terminal:
            argv = ["script", "--quiet", "--flush", "--return", "--command", shlex.join(argv),
                    "/dev/null"]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )

    def log(self) -> str:
        text = self.log_path.read_text()
        return text.replace("\r\n", "\n") if self.terminal else text

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """Its exit status; a process still running after ``timeout`` fails the test with
        what it logged (a bare TimeoutExpired said nothing of why, CI)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{shlex.join(self.proc.args)} still running after {timeout:g}s; "
                f"it logged:\n{self.log()}"
            ) from None

    def cleanup(self) -> None:
        try:
            if self.proc.poll() is None:
                # Twice: the second kills the jobs' process groups, so no `sleep` outlives us.
                # The second only once the first was taken (a worker says so): two signals that
                # arrive before Python runs its handler are handled once, a graceful stop that
                # waits for the jobs.
                self.proc.send_signal(signal.SIGINT)
                deadline = time.monotonic() + 5
                while (self.proc.poll() is None and "SIGINT: stopping" not in self.log()
                       and time.monotonic() < deadline):
                    time.sleep(0.02)
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            self._log.close()


@pytest.fixture
def spawn(env, tmp_path):
    """Start `queuectl ...` in the background; always stopped at the test's end."""
    started: list[Spawned] = []

    def start(*args: str, terminal: bool = False) -> Spawned:
        proc = Spawned(list(args), env, tmp_path, tmp_path / f"spawned-{len(started)}.log",
                       terminal)  # fmt: skip
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.cleanup()


class FreshQueue:
    """The engine's view of the test's database, for checking what commands did: each call
    opens a fresh ``Queue``, as another process would, so nothing is cached across commands."""

    def __init__(self, target: str) -> None:
        self.target = target

    def open(self) -> Queue:
        return Queue(self.target)

    def __getattr__(self, name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            queue = self.open()
            try:
                return getattr(queue, name)(*args, **kwargs)
            finally:
                queue.close()

        return call


@pytest.fixture
def queue(target) -> FreshQueue:
    """The queue the CLI under test uses (``run``, ``qc``, ``spawn``): on each backend."""
    return FreshQueue(target)
