"""Job states and their groups, in a module that imports nothing of the engine: the CLI lists
and checks states (``list --state``, ``status``) without loading peewee. The engine imports them
from :mod:`queuectl.models`, which re-exports them."""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidInput


class State(StrEnum):
    """A job's state (SPEC 3). The groups below are the only other place states are listed."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


STATES: tuple[State, ...] = tuple(State)
# Waiting for a worker: a claim takes these (a failed job once its retry is due).
CLAIMABLE: tuple[State, ...] = (State.PENDING, State.FAILED)
# A worker runs it.
ACTIVE: tuple[State, ...] = (State.PROCESSING,)
# Done: nothing changes them but a user (retry, purge).
FINAL: tuple[State, ...] = (State.COMPLETED, State.DEAD, State.CANCELLED)
# Not yet done: `--burst` waits for these.
UNFINISHED: tuple[State, ...] = (*CLAIMABLE, *ACTIVE)


def sql_in(states: tuple[State, ...]) -> str:
    """``"state" IN ('pending', 'failed')`` as literal SQL text: SQLite matches a partial index
    only against the same literal expression, never against bound parameters."""
    return '"state" IN (' + ", ".join(f"'{state.value}'" for state in states) + ")"


def check_state(state: str) -> State:
    """A state name (any case), or InvalidInput listing the valid ones."""
    normal = state.strip().lower()
    if normal not in STATES:
        raise InvalidInput(f"unknown state {state!r} (valid: {', '.join(STATES)})")
    return State(normal)
