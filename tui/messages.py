"""What travels between the loader thread, the worker pool and the UI: plain data only."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

from queuectl.errors import QueueError
from queuectl.reconnect import first_line

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from .widgets.output_area import Prepared

PANES = ("waiting", "processing", "completed", "dead")


@dataclass(frozen=True)
class JobRow:
    """The columns a pane shows of one job (never its output)."""

    id: str
    command: str
    state: str
    attempts: int
    max_retries: int | None
    priority: int
    run_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None
    worker: str | None
    queue: str = "default"
    # SPEC 7, the waiting pane's rows only: the jobs it runs after that have not completed, and
    # those of them that are dead (it is blocked until they are retried).
    waiting_for: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    held: str = ""  # its queue is "paused" or has "limit 0": no worker claims it until a user acts


@dataclass(frozen=True)
class Health:
    """The last hour's runs (SPEC 8's stats, every queue): how many ended, how many of those
    failed (a retry scheduled, or dead), and the run time's p95 (the slowest queue's)."""

    runs: int = 0
    failures: int = 0
    run_p95: float | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.runs if self.runs else None


@dataclass
class QueueSnapshot(Message):
    """Everything the main screen shows, read at ``now`` by the loader thread."""

    now: float
    counts: dict[str, int]
    panes: dict[str, list[JobRow]]
    config: dict[str, int | float]
    live_workers: int = 0  # the worker threads of the live worker processes (as `status`)
    finished: list[int] = field(default_factory=list)  # jobs finished a second, last minute
    filter: str = ""  # the panes hold only the jobs whose id, command or queue contains this
    limits: dict[str, int] = field(default_factory=dict)  # the rows asked for, per pane
    ends: frozenset[str] = frozenset()  # the panes whose last rows these are (`G`), not first
    health: Health | None = None  # read at most every Loader.HEALTH_EVERY_S; None: not this time
    actions: int = 0  # how many of the app's actions had been carried out when it was read

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueSnapshot)  # only the newest one matters


@dataclass
class LoadFailed(Message):
    """The loader could not read the queue (the database went away, ...)."""

    error: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadFailed)


@dataclass
class PoolEvent(Message):
    """A job started or finished in this app's worker pool (sent from a worker thread)."""

    kind: str
    job_id: str


@dataclass
class JobLoaded(Message):
    """A job with every field and its output, for the details screen."""

    job: dict[str, object] | None  # Job.to_dict(): every field, times in ISO 8601
    error: str | None = None
    times: dict[str, float | None] = field(default_factory=dict)  # the same times, as epochs
    # SPEC 7: the jobs it runs after, and those that run after it, as (id, state), the first
    # DEPENDENCIES_SHOWN of each; and how many there are in all.
    after: list[tuple[str, str]] = field(default_factory=list)
    needed_by: list[tuple[str, str]] = field(default_factory=list)
    after_total: int = 0
    needed_by_total: int = 0
    # SPEC 8: its history, oldest first: at (epoch), event, attempt, worker, exit_code, error,
    # duration (a run's end: its seconds); the last HISTORY_SHOWN records, and how many in all.
    history: list[dict[str, object]] = field(default_factory=list)
    history_total: int = 0
    # Its output made ready to show (OutputArea), or None: unchanged since the last load.
    output: Prepared | None = None
    # Its stored tail moved on past the cap while the reader is elsewhere in the output: what
    # is shown is kept (output None), and the area says so.
    output_held: bool = False


@dataclass
class Done(Message):
    """An action run off the UI thread finished; ``severity`` as for ``App.notify``."""

    text: str
    severity: str = "information"

    @classmethod
    def report(cls, do: Callable[[], str | None], to: MessagePump) -> None:
        """Run ``do`` (a queue operation, off the UI thread) and post to ``to`` what it says,
        or why it failed (nothing where it says so itself)."""
        try:
            said = do()
        except Exception as exc:
            to.post_message(cls(error_text(exc), "error"))
            return
        if said is not None:
            to.post_message(cls(said))


def error_text(exc: Exception) -> str:
    """Why a queue operation failed, in the CLI's words (a full disk read "OperationalError:
    database or disk is full")."""
    if isinstance(exc, QueueError):
        return str(exc)
    peewee = sys.modules.get("peewee")
    if peewee is not None and isinstance(exc, peewee.PeeweeException):
        return f"database error: {_cause(first_line(exc))}"
    return f"{type(exc).__name__}: {exc}"


def _cause(text: str) -> str:
    """A driver's message without what comes before its cause: psycopg's "connection failed:
    connection to server at "HOST", port N failed: FATAL:  database "x" does not exist" filled
    the TUI's top bar, which cut it before the cause (QA)."""
    lead = "connection failed: "
    if text.startswith(lead) and "failed: " in text[len(lead) :]:
        text = text.rsplit("failed: ", 1)[1]
        if text.startswith("FATAL:"):
            text = text[6:]
    return text.strip() or "connection failed"


@dataclass
class Listed(Message):
    """The rows of the queues (`Q`) or schedules (`S`) screen, read at ``now``: the engine's
    ``QueueInfo`` / ``ScheduleInfo`` dataclasses (plain data), or why they could not be read."""

    items: list
    now: float = 0.0
    error: str | None = None
    actions: int = 0  # how many of the screen's actions had been carried out when it was read

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Listed)


@dataclass
class Changed(Message):
    """An action of a screen changed what it shows: read it again."""


@dataclass
class Carried(Message):
    """One of the app's actions was carried out: the panes are read again to show it."""


@dataclass
class OutputRead(Message):
    """What the live output screen (`l`) read of its job: its state, and the output that is
    new since the last read (``reset``: of a new run, replacing what is shown)."""

    state: str | None  # None: the job is gone
    text: str = ""
    reset: bool = False
    skipped: int = 0  # bytes of output dropped from storage before they were shown
    total: int = 0  # bytes the run has printed
    error: str | None = None
