"""The schedules screen (`S`): every schedule (SPEC 7) with its next due time and last job;
`a` adds one (a validated form), `p` pauses or resumes, `r` runs one now, `d` removes one
(after asking)."""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, DataTable, Static

from queuectl.config import shown
from queuectl.errors import InvalidInput
from queuectl.models import DEFAULT_QUEUE, State
from queuectl.queue import Queue
from queuectl.schedules import JOB_KEYS, ScheduleInfo, check_cron, zone_of
from queuectl.spec import parse_job, validate_name
from queuectl.text import coarse_relative_time, utc_time

from ..text import literal
from ..widgets.listing import KeyText
from .confirm import ConfirmScreen
from .form import Field, FormScreen
from .listing import ListingScreen

DUE_WIDTH = 29  # "2027-01-15 09:00:00  in 58m"
SOON_WIDTH = 9  # "⏸ paused", "in 58m", "59s ago"


class SchedulesScreen(ListingScreen):
    TITLE = "Schedules"
    EMPTY = "No schedule yet: press a to add one."
    COLUMNS = [
        ("name", "Name", 16),
        ("cron", "Cron", 14),
        ("zone", "Zone", 13),
        ("due", "Next due (UTC)", DUE_WIDTH),
        ("soon", "Next due", SOON_WIDTH),  # (the due time in a narrow table: see NARROW)
        ("last", "Last job", 12),
        ("overlap", "Overlap", 7),
        ("command", "Command", None),
    ]
    # The zone stays longer than the last job: the due times are in UTC whatever the zone, and
    # without it `0 3 * * *` due at 02:00 had nothing to say why.
    # Last, the command (`show` and the CLI have it): at 80 columns it was 4 cells wide, and
    # the table scrolled sideways, the names out of sight.
    GIVE_WAY = ("overlap", "last", "zone", "command")
    # Where even then they do not fit (QA: at 40 columns "Nex…", "*/1…", "202…"), the due time
    # says only how soon, and then the cron gives way too (`enter` shows it): each schedule's
    # name and when it is next due, whole.
    LAST_RESORT = ("due", "cron")
    NARROW = {"due": "soon"}
    BINDINGS = [
        Binding("a", "add", "Add", tooltip="Add a schedule"),
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause / resume the selected schedule"),
        Binding("r", "run", "Run now", tooltip="Run the selected schedule now"),
        Binding("d,delete", "remove", "Remove", tooltip="Remove the selected schedule"),
        Binding("enter", "details", "Details", tooltip="Every field of the selected schedule"),
        Binding("escape,q", "close", "Close"),
    ]

    def items(self) -> list[ScheduleInfo]:
        return self.queue.schedules()

    def rows(self, items: list[ScheduleInfo], now: float) -> dict[str, list[Text]]:
        colors = self.app.theme_variables
        muted = colors["muted"]
        rows = {}
        for info in items:
            if self.is_paused(info):
                due = Text("⏸ paused", style=f"bold {colors[State.FAILED]}")
                soon = due
            else:
                soon = Text(coarse_relative_time(info.next_due, now))
                due = Text(utc_time(info.next_due, zone="").replace("T", " "))
                due.append(f"  {soon.plain}", style=muted)
            command = literal(str(info.job.get("command", "")))
            # --no-overlap: a time is skipped while the last job still waits or runs
            overlap = Text("skip", style="bold") if info.no_overlap else Text("allow", style=muted)
            rows[info.name] = [
                KeyText(literal(info.name, "bold"), info.name),
                literal(info.cron),
                literal(info.zone, muted if info.zone == "UTC" else ""),
                due,
                soon.copy(),
                literal(info.last_job_id or "—", "" if info.last_job_id else muted),
                overlap,
                command,
            ]
        return rows

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:  # `enter`
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        """Every field, the command whole: the table's column shows its first ~17 characters
        even at 160 columns, and nothing else in the app showed the rest (QA)."""
        info = self.selected_item()
        if info is not None:
            self.app.push_screen(ScheduleDetails(info, self.is_paused(info), self.app.clock()))

    def action_add(self) -> None:
        def added(name: str | None) -> None:
            if name is not None:  # added by the form; said in turn, and the table read again
                self.select_when_shown = name
                self.act(lambda: f"Added schedule {name}")

        self.app.push_screen(ScheduleForm(self.queue), added)

    def action_toggle_pause(self) -> None:
        self.toggle_pause(
            lambda name: f"Paused schedule {self.queue.pause_schedule(name).name}",
            lambda name: f"Resumed schedule {self.queue.resume_schedule(name).name}",
        )

    def action_run(self) -> None:
        name = self.selected()
        if name is not None:
            self.act(lambda: f"Enqueued {self.queue.run_schedule(name).id} from schedule {name}")

    def action_remove(self) -> None:
        name = self.selected()
        if name is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.act(lambda: (self.queue.remove_schedule(name), f"Removed schedule {name}")[1])
                # Gone from the table at once: a key typed next acts on the row after it.
                self.items_shown = [item for item in self.items_shown if item.name != name]
                self.show_rows()

        question = f"Remove schedule {name}? The jobs it enqueued stay."
        self.app.push_screen(ConfirmScreen("Remove schedule", question, "Remove"), answer)


class ScheduleDetails(ModalScreen[None]):
    """One schedule's every field, its job's whole command among them; `escape` closes."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, info: ScheduleInfo, paused: bool, now: float) -> None:
        super().__init__()
        self.info, self.paused, self.now = info, paused, now

    def compose(self) -> ComposeResult:
        info, muted = self.info, self.app.theme_variables["muted"]
        due = "paused" if self.paused else (
            f"{utc_time(info.next_due)} ({coarse_relative_time(info.next_due, self.now)})"
        )
        job = info.job
        fields: list[tuple[str, Text]] = [
            # Whole, as the title may be cut (QA: a 64-character name was shown whole only in
            # the removal's question).
            ("name", literal(info.name)),
            ("cron", literal(info.cron)),
            ("zone", literal(info.zone)),
            ("next due", literal(due)),
            ("overlap", literal("a time is skipped while the last job waits or runs"
                                if info.no_overlap else "allowed")),  # fmt: skip
            ("last job", literal(info.last_job_id or "none yet")),
            ("command", literal(str(job.get("command", "")), single_line=False)),
            ("queue", literal(str(job.get("queue") or DEFAULT_QUEUE))),
            ("priority", literal(str(job.get("priority") or 0))),
            ("max retries", literal(_or_config(job.get("max_retries"), "max-retries"))),
            ("timeout", literal(_or_config(job.get("timeout"), "job-timeout", "s"))),
            ("cwd", literal(str(job.get("cwd", "")), single_line=False)),
        ]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style=f"bold {muted}", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in fields:
            grid.add_row(name, value)
        with Vertical(classes="dialog schedule-details") as dialog:
            dialog.border_title = Text("Schedule ") + literal(info.name)
            dialog.border_subtitle = "esc close · ↑↓ pgup pgdn scroll"
            with VerticalScroll():
                yield Static(grid)

    def on_mount(self) -> None:
        self.set_focus(self.query_one(VerticalScroll))  # the keys scroll it (QA: cut at 80x24)


def _or_config(value: Any, key: str, unit: str = "") -> str:
    return f"config {key}" if value is None else f"{shown(value)}{unit}"


class NoOverlap(Checkbox, inherit_bindings=False):
    """The form's one switch: space toggles it, enter submits the form (not a toggle)."""

    BINDINGS = [Binding("space", "toggle_button", "Toggle", show=False)]


def check_job(text: str):
    """The job as `schedule add` takes it: a plain command, or a JSON job without id, delay,
    run_at and after (refused by name, as a key a schedule does not take)."""
    return parse_job(text, valid=JOB_KEYS)


def check_zone(text: str) -> str:
    zone = text.strip() or "UTC"
    zone_of(zone)
    return zone


class ScheduleForm(FormScreen[str]):
    """Adds a schedule: every field checked by the engine's own validators, then added off the
    UI thread; an error the database finds (a name that exists) is shown in the form too.
    Returns the new schedule's name, or None when cancelled."""

    TITLE = "Add a schedule"
    SUBTITLE = "as `queuectl schedule add` does"
    SUBMIT = "Add"
    BINDINGS = [Binding("enter", "submit", "Add", show=False)]  # on the switch

    def __init__(self, queue: Queue) -> None:
        super().__init__()
        self.queue = queue

    def fields(self) -> ComposeResult:
        yield Field("name", "Name", placeholder="e.g. nightly-backup", hint="ASCII letters, digits, . _ -")
        yield Field("cron", "Cron", placeholder="e.g. 0 3 * * *",
                    hint="5 fields, 6 with seconds first, @hourly, @daily…")  # fmt: skip
        yield Field("command", "Command", placeholder="e.g. ./backup.sh",
                    hint='or a JSON job: {"command": …, "queue": …}')  # fmt: skip
        yield Field("zone", "Time zone", placeholder="UTC", hint="an IANA name, e.g. Europe/Paris")
        yield NoOverlap(
            "No overlap: skip a time while the last job still waits or runs",
            id="no_overlap", compact=True,
        )  # fmt: skip

    def collect(self) -> dict | None:  # type: ignore[override]
        values = self.checked({
            "name": lambda text: validate_name("name", text.strip()),
            "cron": check_cron,
            "command": check_job,
            "zone": check_zone,
        })
        if values is not None:
            values["no_overlap"] = self.query_one(NoOverlap).value
        return values

    async def commit(self, values: dict) -> str | None:  # type: ignore[override]
        worker = self.run_worker(partial(self._add, values), thread=True, exit_on_error=False)
        await worker.wait()
        error = worker.result
        if error is None:
            return values["name"]
        key = "command"
        if "exists" in error or "'name'" in error:
            key = "name"
        elif "cron" in error:
            key = "cron"
        elif "zone" in error:
            key = "zone"
        self.field(key).set_error(error)
        return None

    def _add(self, values: dict) -> str | None:
        """In a thread: add the schedule; the error to show, or None."""
        try:
            self.queue.add_schedule(
                values["name"], values["cron"], values["command"], zone=values["zone"],
                no_overlap=values["no_overlap"],
            )  # fmt: skip
        except InvalidInput as exc:
            return str(exc)
        except Exception as exc:  # the database went away: say so in the form
            return f"could not add the schedule: {exc}"
        finally:
            self.queue.close()
        return None
