"""The edit form (`e`): a waiting job's command, max retries, priority, when and queue, filled in.

Only what the user changed is sent to ``Queue.edit`` (SPEC 6), validated as ``enqueue`` does. The
edit runs off the UI thread when the form is submitted; a job that started meanwhile is refused
by the engine, and the form closes with that refusal as a notice.
"""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.app import ComposeResult

from queuectl.config import KEYS
from queuectl.errors import InvalidInput, QueueError
from queuectl.queue import Queue, WholeId
from queuectl.spec import parse_time, validate_command, validate_int, validate_name
from queuectl.spec import validate_seconds
from queuectl.text import countdown, shown_number

from ..messages import JobRow, error_text
from ..text import literal
from .enqueue import _number
from .form import Field, FormScreen

# What the form returns: a notice's text and severity (None when cancelled).
Outcome = tuple[str, str]


def when_text(run_at: float, now: float) -> str:
    wait = run_at - now
    return f"due in {countdown(wait)}" if wait >= 1 else "due now"


class EditScreen(FormScreen[Outcome]):
    """Edits the waiting job ``row`` on submit; returns the notice to show, or None."""

    TITLE = "Edit job"
    SUBTITLE = "blank: unchanged · validated as `queuectl edit` does"
    SUBMIT = "Save"

    def __init__(
        self,
        queue: Queue,
        row: JobRow,
        now: float,
        default_max_retries: int | float = KEYS["max-retries"].default,
    ) -> None:
        super().__init__()
        self.queue, self.row, self.now = queue, row, now
        self.default_max_retries = default_max_retries

    def fields(self) -> ComposeResult:
        row = self.row
        yield Field("command", "Command", value=row.command, hint="run by /bin/sh -c")
        yield Field(
            "max_retries",
            "Max retries",
            value="" if row.max_retries is None else str(row.max_retries),
            placeholder=f"config ({shown_number(self.default_max_retries)})",
            hint="runs before the DLQ",
        )
        yield Field("priority", "Priority", value=str(row.priority), hint="higher runs first")
        yield Field(
            "delay",
            "Delay",
            placeholder=f"unchanged ({when_text(row.run_at, self.now)})",
            hint="seconds from now, or an ISO 8601 time",
        )
        yield Field("queue", "Queue", value=row.queue, hint="the queue it waits in")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(".dialog").border_title = Text("Edit job ") + literal(self.row.id)

    def collect(self) -> dict | None:  # type: ignore[override]
        """The changes: only the fields whose text differs from the job's."""
        row = self.row
        values = self.checked({
            "command": lambda text: validate_command(text),
            "max_retries": lambda text: _keep_if_blank(
                _number("max_retries", text, int), lambda v: validate_int("max_retries", v, 0)
            ),
            "priority": lambda text: _keep_if_blank(
                _number("priority", text, int), lambda v: validate_int("priority", v)
            ),
            "delay": _when,
            "queue": lambda text: validate_name("queue", text.strip()) if text.strip() else None,
        })
        if values is None:
            return None
        changes: dict[str, object] = {}
        if values["command"] != row.command:
            changes["command"] = values["command"]
        for key, before in (("max_retries", row.max_retries), ("priority", row.priority),
                            ("queue", row.queue)):  # fmt: skip
            if values[key] is not None and values[key] != before:
                changes[key] = values[key]
        if values["delay"] is not None:
            changes.update(values["delay"])  # type: ignore[arg-type]
        return changes

    async def commit(self, changes: dict) -> Outcome | None:  # type: ignore[override]
        if not changes:
            return ("Nothing changed", "information")
        worker = self.run_worker(partial(self._edit, changes), thread=True, exit_on_error=False)
        await worker.wait()
        outcome, field = worker.result
        if field == "":  # the database failed: the form stays, what was typed with it
            self.notify(outcome[0], severity="error", markup=False)
            return None
        if field is not None:  # invalid, said under the field it is about
            self.field(field).set_error(outcome[0])
            return None
        return outcome

    def _edit(self, changes: dict) -> tuple[Outcome, str | None]:
        """In a thread: edit the job; the notice and, if the engine found a value invalid, the
        field to show it under."""
        try:
            job = self.queue.edit(WholeId(self.row.id), changes)
        except InvalidInput as exc:
            text = str(exc)
            field = next((key for key in changes if repr(key) in text), "command")
            return (text, "error"), "delay" if field == "run_at" else field
        except QueueError as exc:  # started, finished or deleted meanwhile
            return (str(exc), "error"), None
        except Exception as exc:  # the database went away, or its disk is full (QA)
            return (f"Not edited: {error_text(exc)}; enter tries again, escape leaves it",
                    "error"), ""  # fmt: skip
        finally:
            self.queue.close()
        return (f"Edited {job.id}: {', '.join(key.replace('_', ' ') for key in changes)}",
                "information"), None  # fmt: skip


def _keep_if_blank(value, check):
    return None if value is None else check(value)


def _when(text: str) -> dict[str, float] | None:
    """The delay field: seconds from now (``delay``) or a time (``run_at``); blank: unchanged."""
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            return {"run_at": parse_time("delay", text)}
        except InvalidInput:
            raise InvalidInput(
                f"'delay' must be a number of seconds or an ISO 8601 time, got {text!r}"
            ) from None
    return {"delay": validate_seconds("delay", seconds, positive=False)}
