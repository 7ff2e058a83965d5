"""What `history` and `stats` print, in a module that imports no peewee: the CLI takes these
before or after opening the queue, in either order (on a SQLite file the queue is opened without
loading psycopg, see cli.common.Settings; a module that imported peewee first would load it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .states import State

if TYPE_CHECKING:
    from .models import Event

# What a run led to, as `stats` counts runs (SPEC 8): failed = a retry was scheduled.
OUTCOMES: tuple[State, ...] = (State.COMPLETED, State.FAILED, State.DEAD, State.CANCELLED)
# The events a run's end is recorded as, as stats reads them (a rescued run counts as failed),
# and those of them that finish the job.
RUN_ENDS: tuple[str, ...] = (*(state.value for state in OUTCOMES), "rescued")
FINAL_ENDS: tuple[str, ...] = tuple(s.value for s in (State.COMPLETED, State.DEAD, State.CANCELLED))


def event_dict(event: Event) -> dict[str, Any]:
    """One history record as `history --json` prints it (SPEC 8)."""
    from .models import iso  # loaded already: the event came from the queue

    return {
        "at": iso(event.at),
        "event": event.event,
        "attempt": event.attempt,
        "worker": event.worker,
        "exit_code": event.exit_code,
        "error": event.error,
    }
