"""Issue #17 item 5: a busy TUI stays quick. The real `queuectl tui` in tmux (120x40) over a copy
of the 1M-job database (tests/bench/scale.py), watching only, then with its own pool at 4 threads
running short jobs (`true`) at full speed:

- a key's effect on screen: `a` sent with `tmux send-keys`, then `tmux capture-pane` polled until
  the enqueue form is on screen (then `escape`, and the form gone again); 12 tries each way;
- one refresh, in-process: the loader's read (``tui.data.load_snapshot``: counts, config, live
  workers, the throughput chart and the four panes) without, then with, the top bar's last-hour
  health (read every few seconds), measured while the busy TUI runs;
- the UI thread's share of a core: the TUI's main thread's CPU time (its schedstat, else
  utime + stime) over 5 s of watching without keys, and over the tries; the whole process's;
- a key as the app opens: in a new app each try (a queue of 500 jobs, no pool), `a` sent as
  soon as the panes are on screen, against `a` in the same app a second later: a user who
  opens the app and types at once waits for what its start still has to do.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time

from .harness import (
    Figure,
    Report,
    Settings,
    Target,
    cpu_seconds,
    fresh_sqlite,
    queuectl_command,
)
from .scale import cached_big_db  # the scale benchmark's 1M-job database

WIDTH, HEIGHT = 120, 40
FORM_TEXT = "Enqueue a job"  # the enqueue form's title
READY_TEXT = "Completed"  # a pane's title: the app is drawn
TRUE_JOBS = 150_000  # the busy pool's `true` jobs (priority 1: before the database's own)
TRIES = 12
OPENED_JOBS = 500  # the queue the app opens on, for a key as it opens
KEY_TIMEOUT_S = 5.0


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_for(session: str, present: str, absent: str | None = None,
              timeout: float = KEY_TIMEOUT_S) -> float:  # fmt: skip
    """Poll the pane until ``present`` is on it (and ``absent`` is not); when, by perf_counter."""
    deadline = time.perf_counter() + timeout
    while True:
        text = _screen(session)
        now = time.perf_counter()
        if present in text and (absent is None or absent not in text):
            return now
        if now > deadline:
            raise RuntimeError(f"{present!r} not on screen after {timeout:.0f} s:\n{text}")
        time.sleep(0.002)


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU time of one thread: its schedstat (ns) where the kernel has it, else utime+stime."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/schedstat") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"{base}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12)) / os.sysconf("SC_CLK_TCK")


class Tui:
    """`queuectl tui` in a detached tmux session of its own."""

    def __init__(self, db: str, workers: int, name: str) -> None:
        self.session = f"queuectl-bench-{name}-{os.getpid()}"
        command = " ".join([*queuectl_command(), "--db", db, "tui", "--workers", str(workers)])
        for attempt in range(3):
            try:
                _tmux("new-session", "-d", "-s", self.session, "-x", str(WIDTH), "-y",
                      str(HEIGHT), f"exec {command}")  # fmt: skip
                break
            except RuntimeError as exc:  # the server of the last session was still exiting
                if "server exited unexpectedly" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.5)
        self.pid = int(_tmux("display-message", "-p", "-t", self.session, "#{pane_pid}"))
        _wait_for(self.session, READY_TEXT, timeout=60)

    def key_ms(self) -> float:
        """`a` sent to the form on screen (ms); the form closed again afterwards."""
        start = time.perf_counter()
        _tmux("send-keys", "-t", self.session, "a")
        shown = _wait_for(self.session, FORM_TEXT)
        _tmux("send-keys", "-t", self.session, "Escape")
        _wait_for(self.session, READY_TEXT, absent=FORM_TEXT)
        return (shown - start) * 1000

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def tries(tui: Tui, count: int) -> tuple[list[float], float, float, float]:
    """``count`` key presses, 0.3 to 0.6 s apart; their times (ms), the seconds they took, and
    the CPU seconds of the TUI's main (UI) thread and of the whole process meanwhile."""
    ui_before, all_before = thread_cpu_seconds(tui.pid, tui.pid), cpu_seconds(tui.pid)
    start = time.perf_counter()
    times = []
    for index in range(count):
        time.sleep(0.3 + 0.3 * ((index * 7) % 10) / 10)
        times.append(tui.key_ms())
    elapsed = time.perf_counter() - start
    ui = thread_cpu_seconds(tui.pid, tui.pid) - ui_before
    return times, elapsed, ui, cpu_seconds(tui.pid) - all_before


def as_opened(db: str, count: int) -> tuple[list[float], list[float]]:
    """``count`` new apps on ``db``: `a` sent in each as its panes show (ms), and again a
    second later (ms)."""
    opened, settled = [], []
    for index in range(count):
        tui = Tui(db, 0, f"opened{index}")
        try:
            opened.append(tui.key_ms())
            time.sleep(1.0)
            settled.append(tui.key_ms())
        finally:
            tui.close()
    return opened, settled


def ui_share(tui: Tui, seconds: float) -> float:
    """The UI thread's share of a core (%) over ``seconds`` of only watching (no keys)."""
    before, start = thread_cpu_seconds(tui.pid, tui.pid), time.perf_counter()
    time.sleep(seconds)
    return 100 * (thread_cpu_seconds(tui.pid, tui.pid) - before) / (time.perf_counter() - start)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def completed(db: str) -> int:
    import sqlite3

    connection = sqlite3.connect(db)
    try:
        return int(connection.execute(
            "SELECT SUM(\"n\") FROM \"job_count_by_queue\" WHERE \"state\" = 'completed'"
        ).fetchone()[0])  # fmt: skip
    finally:
        connection.close()


def run(settings: Settings, report: Report) -> None:
    from queuectl import Queue
    from queuectl.spec import JobSpec

    from .scale import tui_health_ms, tui_refresh_ms

    if shutil.which("tmux") is None:
        report.note("tui: skipped (no tmux)")
        return
    small = fresh_sqlite(settings, "opened")
    queue = Queue(small)
    try:
        queue.enqueue_many([JobSpec(command=f"echo {n}") for n in range(OPENED_JOBS)])
    finally:
        queue.close()
    opened, settled = as_opened(small, settings.reps(TRIES, 5))
    report.add(Figure(f"17.5 TUI as it opens: `a` sent as the panes show -> enqueue form on "
                      f"screen (tmux, {OPENED_JOBS} jobs)", "ms", opened,
                      "the same app a second later", settled,
                      note=f"max {max(opened):.0f} ms"))  # fmt: skip

    db = cached_big_db(settings, report)
    queue = Queue(db)
    try:
        queue.enqueue_many([JobSpec(command="true", priority=1)] * TRUE_JOBS)
    finally:
        queue.close()
    count = settings.reps(TRIES, 5)

    watching = Tui(db, 0, "watch")
    try:
        time.sleep(2.0)  # its first loads
        idle_share = ui_share(watching, 5.0)
        idle_keys, idle_s, idle_ui, _ = tries(watching, count)
    finally:
        watching.close()

    busy = Tui(db, 4, "busy")
    try:
        time.sleep(3.0)  # the pool started, at full speed
        busy_share = ui_share(busy, 5.0)
        done_before, at = completed(db), time.perf_counter()
        busy_keys, busy_s, busy_ui, busy_all = tries(busy, count)
        rate = (completed(db) - done_before) / (time.perf_counter() - at)
        refresh = tui_refresh_ms(db, settings.reps(20, 5))
        with_health = tui_health_ms(db, settings.reps(5, 2))
        still = completed(db) - done_before
    finally:
        busy.close()

    report.add(Figure("17.5 busy TUI: key `a` -> enqueue form on screen, p95 (tmux, 1M jobs, "
                      "pool 4 threads on `true`)", "ms", [p95(busy_keys)], "watching only",
                      [p95(idle_keys)], [Target("<= 100 ms", at_most=100, ratio=False)],
                      note=f"p50 {statistics.median(busy_keys):.0f} ms"))  # fmt: skip
    report.add(Figure("17.5 busy TUI: key -> form, each try", "ms", busy_keys, "watching only",
                      idle_keys))  # fmt: skip
    report.add(Figure("17.5 busy TUI: one refresh (the loader's read), 1M jobs, pool busy", "ms",
                      refresh, targets=[Target("<= 50 ms", at_most=50, ratio=False)]))  # fmt: skip
    report.add(Figure("17.5 busy TUI: the top bar's last-hour health (every 5 s), pool busy",
                      "ms", with_health))  # fmt: skip
    report.add(Figure("17.5 busy TUI: UI thread's share of a core, no keys (5 s)", "%",
                      [busy_share], "watching only", [idle_share]))  # fmt: skip
    report.add(Figure("17.5 busy TUI: UI thread's share of a core during the key tries", "%",
                      [100 * busy_ui / busy_s], "watching only",
                      [100 * idle_ui / idle_s]))  # fmt: skip
    report.note(
        f"busy TUI: key p50 {statistics.median(busy_keys):.0f} ms, p95 {p95(busy_keys):.0f} ms "
        f"(watching only: p50 {statistics.median(idle_keys):.0f}, p95 {p95(idle_keys):.0f}); "
        f"its pool finished {rate:,.0f} jobs/s during the tries ({still:,} in all); the whole "
        f"process used {100 * busy_all / busy_s:.0f} % of a core, its UI thread "
        f"{100 * busy_ui / busy_s:.0f} %"
    )
