"""The enqueue form (`a`): command, max retries, priority, delay and queue — validated as the CLI
does."""

from __future__ import annotations

from textual.app import ComposeResult

from queuectl.config import KEYS
from queuectl.errors import InvalidInput
from queuectl.models import DEFAULT_QUEUE
from queuectl.spec import JobOptions, JobSpec, number, parse_job, validate_int, validate_name
from queuectl.spec import validate_seconds, whole_number
from queuectl.text import shown_number

from .form import Field, FormScreen


def _number(key: str, text: str, kind: type) -> int | float | None:
    """The form's text as the number the CLI's option would get (ASCII digits, as there: int()
    alone took "٣" as 3); blank means not given."""
    text = text.strip()
    if not text:
        return None
    try:
        return whole_number(text) if kind is int else number(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number of seconds"
        raise InvalidInput(f"{key!r} must be {noun}, got {text!r}") from None


class EnqueueScreen(FormScreen[JobSpec]):
    """Returns the JobSpec to enqueue, or None when cancelled. A blank queue is ``queue``: the
    app's own when it runs the jobs of some queues only (`tui --queue`), else the default."""

    TITLE = "Enqueue a job"
    SUBTITLE = "validated as `queuectl enqueue` does"
    SUBMIT = "Enqueue"

    def __init__(
        self,
        default_max_retries: int | float = KEYS["max-retries"].default,
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        super().__init__()
        self.default_max_retries = default_max_retries
        self.queue = queue

    def fields(self) -> ComposeResult:
        yield Field("command", "Command", placeholder="e.g. make test",
                    hint='or a JSON job: {"command": …, "after": […]}')  # fmt: skip
        yield Field(
            "max_retries",
            "Max retries",
            placeholder=f"config ({shown_number(self.default_max_retries)})",
            hint="runs before the DLQ",
        )
        yield Field("priority", "Priority", placeholder="0", hint="higher runs first")
        yield Field("delay", "Delay", placeholder="0", hint="seconds before it may run")
        yield Field("queue", "Queue", placeholder=self.queue, hint="the queue it waits in")

    def collect(self) -> JobSpec | None:
        """The command field as `queuectl enqueue ARG` reads ARG: a JSON job or else a shell
        command (QA: JSON typed here was run by the shell, and failed to the DLQ); the other
        fields fill in what the JSON leaves out, as the CLI's options do."""
        values = self.checked({
            "command": parse_job,
            "max_retries": lambda text: _optional(
                _number("max_retries", text, int), lambda v: validate_int("max_retries", v, 0)
            ),
            "priority": lambda text: _optional(
                _number("priority", text, int), lambda v: validate_int("priority", v)
            ),
            "delay": lambda text: _optional(
                _number("delay", text, float),
                lambda v: validate_seconds("delay", v, positive=False),
            ),
            "queue": lambda text: validate_name("queue", text.strip()) if text.strip() else None,
        })
        if values is None:
            return None
        job: JobSpec = values.pop("command")  # type: ignore[assignment]
        job = job.with_defaults(JobOptions(**values))  # type: ignore[arg-type]
        return job if job.queue is not None else job.replace(queue=self.queue)


def _optional(value, check):
    return None if value is None else check(value)
