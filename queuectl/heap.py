"""A long-running process's large buffers given back to the system once freed (glibc).

A running job's output is its capped tail (1 MiB), and each store of it copies that tail a few
times over (the bytes, their text, SQLite's bound value and record), on two threads (the job's,
and the output writer's: see queuectl.outputs). glibc hands out a buffer that large by its own
``mmap`` and unmaps it when freed, but only until the first such buffer is freed: then it raises
that threshold past the buffer's size (its "dynamic mmap threshold"), and the next ones are carved
from the thread's arena, which keeps them once freed. Each thread keeps its own: a worker that had
run two jobs printing 1 GB each at once stayed 20-25 MiB above its idle RSS (peak 25 MiB); with
the threshold set, 12-13 MiB (peak 17.6 MiB), and issue #5's worker under one such job grew
14.2 MiB at its peak, 11.4 with it (`python -m tests.bench --only memory`).

Setting the threshold (to glibc's own starting value) keeps it where it is. A buffer of 128 KiB
or more then costs a map and an unmap: a job's result, and a running job's output a second.

Small blocks stay in the arenas once freed: a large output's SQLite pages, a 1 KiB block each
(see queuectl.db.PAGE_SIZE), are dropped from the connection's cache once stored (see
queuectl.worker), and :func:`give_back_freed` then returns the memory they held.
"""

from __future__ import annotations

import sys

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's default, made fixed

_libc = None  # set once this process asked for its buffers to be given back


def large_buffers_given_back() -> bool:
    """For a process that runs jobs (``worker start``, the TUI): buffers of MMAP_THRESHOLD bytes
    or more are mapped on their own and given back as they are freed, on every thread, from now
    on. glibc (Linux) only; whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)  # the C library this process already runs on
        if not libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
            return False
        global _libc
        _libc = libc
        return True
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): left as it is
        return False


def give_back_freed() -> None:
    """In a process that called :func:`large_buffers_given_back`: the free memory of every
    arena given back to the system (glibc's ``malloc_trim``, ~0.2 ms in a 70 MiB process).
    Elsewhere (a script, a test, another C library) nothing: this process's heap is its own."""
    if _libc is not None:
        _libc.malloc_trim(0)
