"""Process utilities shared by the queue, the executor and the CLI."""

from __future__ import annotations

import os

from .executor import kill_leftovers

__all__ = ["kill_leftovers", "pid_alive"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
