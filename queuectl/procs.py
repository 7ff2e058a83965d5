"""Finding and signalling processes: whether a pid is alive, which processes are left in a job's
process group, and killing the jobs a dead worker left running.

The answers come from signal 0 and, on Linux, from /proc; where /proc is missing they are the
cautious ones (see each function). Scripted commands import this module, so it imports nothing
but the standard library's basics (no peewee, no ctypes).
"""

from __future__ import annotations

import os
import time

# Set in every job's environment to the id of the worker that runs it, so that the job's processes
# can be found (and killed) after that worker died without taking them down (kill_leftovers).
WORKER_ENV = "QUEUECTL_WORKER"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts; one we may not signal too)."""
    if pid <= 0:  # kill() would address a group, or every process, instead
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_process_space: str | None = None


def process_space() -> str:
    """What tells this host's process ids from those of another host of the same name: the
    kernel's boot id and the PID namespace this process is in. Containers given the host's name
    (`--network host`, Kubernetes' hostNetwork) and machines left with a default one
    (`raspberrypi`) share a name, not their process ids: a worker that took another's pid for
    one of its own host's found it dead and rescued its jobs while it ran them (QA). Empty
    where /proc cannot tell (the host's name alone, as before)."""
    global _process_space
    if _process_space is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as boot:
                boot_id = boot.read().strip().replace("-", "")[:12]
            _process_space = f"{boot_id}.{os.stat('/proc/self/ns/pid').st_ino:x}"
        except OSError:
            _process_space = ""
    return _process_space


def process_started_at() -> float | None:
    """When this process began (its fork), in ``time.time()``'s terms: never before it, at most
    a clock tick (10 ms) after. None where /proc cannot tell.

    Not the time the program first read the clock: that came after Python started and imported
    it, and on a busy machine a `worker stop` run just after `worker start &` asked for its
    stop before then, so the worker, still starting, took the stop for an older one and ran on
    (a full run of the suite, once; 4 runs of its test in 24 under load). The kernel counts the
    start in ticks since boot, the tick it fell in; its end is taken, so that a worker started
    once a stop has ended (`worker stop; worker start`) never takes that stop for its own."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks, per_second = int(fields[19]), os.sysconf("SC_CLK_TCK")  # (stat's 22nd field)
        since_boot, now = time.clock_gettime(time.CLOCK_BOOTTIME), time.time()
    except (OSError, IndexError, ValueError, AttributeError):  # (no CLOCK_BOOTTIME: not Linux)
        return None
    return now - (since_boot - (ticks + 1) / per_second)


def pid_running(pid: int) -> bool:
    """:func:`pid_alive`, but a zombie (it exited, its parent has not reaped it yet: a slow
    supervisor's worker killed with -9) is not running. Where /proc cannot tell, as pid_alive."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``; a group that is gone (or not ours) is let be."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True  # no way to look past zombies: assume the worst
    # Zombies still count for killpg, and init may reap them late: look past them.
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, read from /proc (Linux)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # The command name may hold spaces and parentheses: the fields follow its last ")".
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry.name))
    return members


def kill_leftovers(worker_id: str) -> int:
    """SIGKILL the process groups of jobs that ``worker_id`` started and that outlived it (a
    worker killed by SIGKILL can't take them down): found by :data:`WORKER_ENV` in their
    environment, on Linux (/proc); elsewhere none are found. Returns how many groups."""
    import signal  # here: importing it costs a scripted command's start-up ~1 ms

    mark = f"{WORKER_ENV}={worker_id}".encode()
    groups = set()
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if mark not in environ.read().split(b"\0"):
                    continue
            groups.add(os.getpgid(int(entry.name)))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    groups.discard(os.getpgrp())  # never this process's own group
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
    return len(groups)
