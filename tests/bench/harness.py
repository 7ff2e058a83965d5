"""What every benchmark shares: figures and their targets, the table, child processes that are
always cleaned up, fresh databases, and the commands under test (run as whole processes).

Every target is checked against a figure measured *in the same run* (a baseline, interleaved
with the measured figure where that is cheap), so a busy machine slows both sides alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ..support import wait_until

DEFAULT_PG_URL = "postgresql://queuectl:queuectl@127.0.0.1:5432/queuectl_test"
CACHE_DIR = os.path.join(tempfile.gettempdir(), "queuectl-bench-cache")
T = TypeVar("T")


# -- figures and targets -----------------------------------------------------------------------


@dataclass
class Target:
    """``ratio`` compares the figure's median with its baseline's median (``at_least`` or
    ``at_most`` that many times it); without ``ratio`` the median itself is checked."""

    text: str
    at_least: float | None = None
    at_most: float | None = None
    ratio: bool = True

    def check(self, value: float, baseline: float | None) -> tuple[float | None, bool | None]:
        measured = value
        if self.ratio:
            if not baseline:
                return None, None
            measured = value / baseline
        ok = True
        if self.at_least is not None:
            ok = ok and measured >= self.at_least
        if self.at_most is not None:
            ok = ok and measured <= self.at_most
        return measured, ok


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float]
    baseline_name: str | None = None
    baseline: list[float] | None = None
    targets: list[Target] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  {figure.name}: {_fmt(figure.median, figure.unit)}", flush=True)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def rows(self) -> list[list[str]]:
        rows = []
        for fig in self.figures:
            base = fig.baseline_median
            baseline = "" if base is None else f"{_fmt(base, fig.unit)} ({fig.baseline_name})"
            cells = [
                fig.name,
                _fmt(fig.median, fig.unit),
                _fmt(min(fig.samples), fig.unit),
                _fmt(max(fig.samples), fig.unit),
                str(len(fig.samples)),
                baseline,
            ]
            if not fig.targets:
                rows.append([*cells, "-", "info"])
            for target in fig.targets:
                measured, ok = target.check(fig.median, base)
                if measured is None:
                    shown, verdict = f"{target.text}: no baseline", "SKIP"
                elif target.ratio:
                    shown, verdict = f"{measured:.2f}x (target {target.text})", _verdict(ok)
                else:
                    shown = f"{_fmt(measured, fig.unit)} (target {target.text})"
                    verdict = _verdict(ok)
                rows.append([*cells, shown, verdict])
                cells = [""] * len(cells)
        return rows

    def table(self) -> str:
        header = ["figure", "median", "min", "max", "n", "baseline (median)", "vs target", ""]
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        text = "\n".join(lines)
        if self.notes:
            text += "\n\n" + "\n".join(f"- {note}" for note in self.notes)
        return text

    @property
    def failed(self) -> list[str]:
        return [row[0] for row in self.rows() if row[-1] == "FAIL"]


def _verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "SKIP"}[ok]


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "jobs/s":
        return f"{value:,.0f} jobs/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:.3g} {unit}"


# -- settings for one run ------------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    workdir: str
    pg_url: str | None  # None: no PostgreSQL server reachable

    def reps(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full


# -- processes -----------------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured process. PYTHONDONTWRITEBYTECODE is dropped: an installed
    queuectl runs from cached bytecode (.pyc), and without it every start recompiles queuectl's
    own modules (~40 ms), which is not what a user's shell pays."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


def queuectl_command() -> list[str]:
    """The installed ``queuectl`` script itself (not a version manager's shim in front of it:
    pyenv's bash shim alone costs more than the start-up being measured)."""
    script = os.path.join(sysconfig.get_path("scripts"), "queuectl")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "queuectl"]


class Children:
    """Processes started for one benchmark, each in its own session; ``close`` (also on any
    error) stops them gracefully, then kills whatever of their process groups is left. Each
    child's stderr goes to a file of its own, so that :meth:`wait_until` can say at once why
    one exited (a worker that cannot start) instead of waiting out its deadline."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stderr: dict[int, tempfile._TemporaryFileWrapper[bytes]] = {}

    def start(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("env", child_env())
        errors = None
        if "stderr" not in kwargs:
            errors = tempfile.NamedTemporaryFile(prefix="bench-stderr-")
            kwargs["stderr"] = errors
        proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        if errors is not None:
            self.stderr[proc.pid] = errors
        return proc

    def check(self) -> None:
        """Raise, with the end of its stderr, if a child has exited."""
        for proc in self.procs:
            if proc.poll() is not None:
                errors = self.stderr.get(proc.pid)
                said = ""
                if errors is not None:
                    errors.seek(0)
                    said = errors.read().decode(errors="replace").strip()[-800:]
                raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}"
                                   + (f": {said}" if said else ""))

    def wait_until(self, predicate: Callable[[], T], timeout: float, message: str, *,
                   interval: float = 0.02) -> T:
        """:func:`tests.support.wait_until`, failing at once if a child exits meanwhile."""

        def ready() -> T:
            value = predicate()
            if not value:
                self.check()
            return value

        return wait_until(ready, timeout, message, interval=interval)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.procs.clear()
        for errors in self.stderr.values():
            errors.close()
        self.stderr.clear()

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_timed(argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None,
              cwd: str | None = None, timeout: float = 120) -> float:
    """Wall time of one whole process; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), input=stdin, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env or child_env(), cwd=cwd,
                          timeout=timeout)  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads: from each thread's schedstat (nanoseconds) where the
    kernel has it, else user + system time from /proc/PID/stat (10 ms ticks: too coarse to tell
    0.5 % from 1 % over a few seconds)."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                    total += int(schedstat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12)) / ticks  # utime, stime


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


# -- databases -----------------------------------------------------------------------------------


def fresh_sqlite(settings: Settings, name: str) -> str:
    """The path of a queue database that does not exist yet."""
    folder = tempfile.mkdtemp(prefix=f"{name}-", dir=settings.workdir)
    return os.path.join(folder, "queue.db")


def find_pg(url: str | None) -> tuple[str | None, str]:
    url = url or os.environ.get("QUEUECTL_BENCH_PG_URL") or DEFAULT_PG_URL
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # any reason the server cannot be used
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"no PostgreSQL at {url} ({first})"
    return url, ""


def pg_schema(url: str) -> contextlib.AbstractContextManager[str]:
    """A queue target in a new schema of the PostgreSQL database at ``url``, dropped afterwards."""
    from tests.support import pg_schema as new_schema

    return new_schema(url, prefix="bench")


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
