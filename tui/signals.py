"""SIGTERM and SIGHUP in the TUI: stop as `worker start` stops, never die with jobs running.

By default either signal killed the app at once: its running jobs went on as orphans (each is in
a session of its own), their rows stayed ``processing``, and once rescued as "worker lost" the
same commands ran a second time, beside the orphans when they were still running. Now:

- the first signal quits as `q` followed by "yes" does: no new job starts, running jobs finish,
  then the app exits (the stopping screen, where the terminal is still there, offers to kill);
- a second one kills the running jobs' process groups and puts the jobs back to ``pending``
  without counting the attempt (`worker start`'s second signal);
- SIGHUP means the terminal is gone (its window closed, tmux killed): the app lets go of it, so
  that drawing and reading cannot fail from then on, and the process ends once its jobs have
  ended and been stored, whatever the app's loop is doing by then. The terminal can be gone
  before the signal comes, and Textual's output thread dies on the first write that fails: its
  next frame would then wait forever, the app never exit, and the pool's stop never be seen.

The handlers are Python's (installed on the main thread, where the app's event loop runs) and
stay in place after the app's loop has ended, while :func:`run_app` waits for the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from contextvars import Context
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """``on_stop`` (called on the app's loop, if it runs) at the first signal, ``on_kill`` (from
    the handler) at the next ones, ``on_hangup`` (from the handler) at the first SIGHUP."""

    def __init__(self, loop: Callable[[], tuple[asyncio.AbstractEventLoop, Context] | None],
                 on_stop: Callable[[], None], on_kill: Callable[[], None],
                 on_hangup: Callable[[], None]) -> None:
        self._loop, self._on_stop, self._on_kill = loop, on_stop, on_kill
        self._on_hangup = on_hangup
        self._previous: dict[int, object] = {}
        self.received: list[int] = []
        self._keep: list[int] = []  # the write end of the pipe that stands in for the terminal

    def install(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started under nohup: the terminal's going is not a stop
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """The handlers as they were; and, the app done, the end of the pipe that stood in for
        the terminal: Textual's input thread may be blocked reading it, the signal's swap having
        come between its select and its read, and that thread kept the process from exiting
        (found left over by a test that closed its tmux: its TUI lived on, idle, for good)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        while self._keep:
            with contextlib.suppress(OSError):
                os.close(self._keep.pop())

    @property
    def hung_up(self) -> bool:
        return signal.SIGHUP in self.received

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and not self.hung_up:
            self._let_go_of_terminal()
            self._on_hangup()
        self.received.append(signum)
        if len(self.received) > 1:
            self._on_kill()
            return
        running = self._loop()
        if running is not None and not running[0].is_closed():
            loop, context = running  # the app's context: Textual finds the active app in it
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_stop, context=context)
                return
        # The app's loop has ended: run_app is already waiting for the jobs to finish.

    def _let_go_of_terminal(self) -> None:
        """Output to /dev/null, input from a pipe that never has data: a write to a terminal
        that is gone fails (Textual's writer thread would die and the app then hang on its next
        frame), and a read either fails (the app panics) or, from /dev/null, spins."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        read, write = os.pipe()
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
            with contextlib.suppress(OSError):
                os.dup2(read, 0)
        finally:
            os.close(devnull)
            os.close(read)
        self._keep.append(write)
