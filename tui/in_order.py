"""Queue operations a user asked for, run off the UI thread one at a time, in the order asked.

Keys typed ahead (a paste, a fast typist) ask for several at once: each on a thread of its own,
they raced, and six jobs typed with `a … enter` were stored out of order. The thread is a plain
one, not a Textual worker, so that closing the screen that asked does not cancel what is left.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class InOrder:
    """``asked`` counts the operations added (by the one thread that adds them), ``done`` those
    carried out; ``after`` runs after each, once it is counted (a read made then sees it)."""

    def __init__(self, name: str, after: Callable[[], None] = lambda: None) -> None:
        self._name = name
        self._after = after
        self.asked = 0
        self.done = 0
        self._lock = threading.Lock()  # the deque, and whether a thread carries it out
        self._asked: deque[Callable[[], None]] = deque()
        self._carrier = False
        self._idle = threading.Event()
        self._idle.set()

    def add(self, do: Callable[[], None]) -> None:
        """Run ``do`` after every operation added before it (it reports its own outcome)."""
        self.asked += 1
        with self._lock:
            self._asked.append(do)
            self._idle.clear()
            if self._carrier:
                return
            self._carrier = True
        threading.Thread(target=self._carry_out, name=self._name, daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every operation added has run; whether they all had."""
        return self._idle.wait(timeout)

    def _carry_out(self) -> None:
        """The operations' thread, until none is left (the next :meth:`add` starts another)."""
        while True:
            with self._lock:
                if not self._asked:
                    self._carrier = False
                    self._idle.set()
                    return
                do = self._asked.popleft()
            try:
                do()
            except Exception:  # one failing operation must not drop those after it
                log.exception("a queue operation failed")
            self.done += 1  # (one thread at a time carries them out)
            try:
                self._after()
            except Exception:
                log.exception("after a queue operation")
