"""The process utilities (queuectl.procs): pids, process groups, a dead worker's leftover jobs."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time

import pytest

from queuectl import procs


from .helpers import kill_group, stop_process, wait_until

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


def test_imports_nothing_heavy():
    """Scripted commands import it: the standard library's basics only, no peewee or ctypes."""
    tree = ast.parse(open(procs.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "os", "signal", "time"}


@linux_only
def test_a_process_start_is_its_fork_not_when_it_asked():
    """What `worker start` takes as its start (a `worker stop` since then stops it as it
    registers): never before the process began, at most a clock tick after, however long
    Python took to get there (here 0.5 s)."""
    asked = ("import time; time.sleep(0.5); from queuectl import procs; "
             "print(repr(procs.process_started_at()))")
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", asked], stdout=subprocess.PIPE, text=True)
    after = time.time()
    started = float(child.communicate(timeout=30)[0])
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert before <= started <= after + tick + 0.005, (started - before, after - before)


def test_pid_alive():
    assert procs.pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()
    assert not procs.pid_alive(child.pid)  # reaped: gone (pids are not reused this fast)
    assert procs.pid_alive(1)  # init: alive, though not ours to signal where we are not root


@pytest.mark.parametrize("pid", [0, -1])
def test_pid_alive_never_addresses_a_group(pid):
    """kill(0, 0) and kill(-1, 0) succeed whenever *some* process can be signalled."""
    assert not procs.pid_alive(pid)


def start_group(command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True, env=env)


@linux_only
def test_group_members_and_group_alive():
    leader = start_group("sleep 100 & sleep 100")
    try:
        wait_until(lambda: len(procs.group_members(leader.pid)) == 3, 30, message="3 processes")
        assert leader.pid in procs.group_members(leader.pid)
        assert procs.group_alive(leader.pid)
        procs.signal_group(leader.pid, signal.SIGKILL)
        leader.wait(30)
        wait_until(lambda: not procs.group_alive(leader.pid), 30, message="the group to be gone")
        assert procs.group_members(leader.pid) == []
    finally:
        kill_group(leader.pid)
        stop_process(leader)


def test_signal_group_lets_a_gone_group_be():
    child = subprocess.Popen(["true"], start_new_session=True)
    child.wait()
    procs.signal_group(child.pid, signal.SIGKILL)  # no error
    assert not procs.group_alive(child.pid)


@linux_only
def test_kill_leftovers_kills_only_the_marked_groups():
    mine = {**os.environ, procs.WORKER_ENV: "w-dead"}
    other = {**os.environ, procs.WORKER_ENV: "w-dead-too"}  # a prefix is no match
    leftover = start_group("sleep 100 & sleep 100", mine)
    unrelated = start_group("sleep 100", other)
    try:
        wait_until(lambda: len(procs.group_members(leftover.pid)) == 3, 30, message="it to start")
        assert procs.kill_leftovers("w-dead") == 1
        leftover.wait(30)
        wait_until(lambda: not procs.group_alive(leftover.pid), 30, message="the leftovers gone")
        assert unrelated.poll() is None
        assert procs.kill_leftovers("w-nobody") == 0
    finally:
        for process in (leftover, unrelated):
            kill_group(process.pid)
            stop_process(process)


@linux_only
def test_kill_leftovers_spares_its_own_group():
    """A process that carries the mark itself (started by that worker) never kills its group
    (its own session here, so that a failure could not take the test run with it)."""
    code = (
        "import sys; from queuectl import procs; "
        "print(procs.kill_leftovers(sys.argv[1]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, "w-self"],
        env={**os.environ, procs.WORKER_ENV: "w-self"}, capture_output=True, text=True, timeout=60,
        start_new_session=True,
    )
    assert (run.returncode, run.stdout) == (0, "0\n"), run.stderr


def test_a_warden_stood_down_by_two_threads_at_once_is_stood_down_once(monkeypatch):
    """A TUI's pool is joined by its main thread and, after SIGHUP, by another: both wrote to the
    warden, then both closed its descriptor, and the second close raised (EBADF) out of the
    join, and the app never exited (a test's TUI, its terminal closed, lived on)."""
    import threading

    from queuectl.warden import Warden

    warden = Warden("no-such-worker")
    fd = warden._write_end
    both = threading.Barrier(2, timeout=1.0)
    write = os.write

    def write_together(to: int, data: bytes) -> int:
        if to == fd:  # (where both threads got to the write: here they meet)
            try:
                both.wait()
            except threading.BrokenBarrierError:
                pass
        return write(to, data)

    monkeypatch.setattr(os, "write", write_together)
    failures: list[BaseException] = []

    def stand_down() -> None:
        try:
            warden.stand_down()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=stand_down) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert warden._process.wait(10) == 0  # it read the stand-down, and killed nothing
