"""Job details (`enter`): every field and the whole stored output, scrollable."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from queuectl.errors import QueueError
from queuectl.models import Job
from queuectl.queue import Queue

from ..messages import JobLoaded
from ..text import clean, literal
from ..widgets.pane import COLORS, MUTED

FIELDS = [name for name in Job.PUBLIC_FIELDS if name != "output"]


class DetailsScreen(ModalScreen[None]):
    """Loads one job off the UI thread, then shows it."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("o", "focus_output", "Output"),
    ]

    def __init__(self, queue: Queue, job_id: str) -> None:
        super().__init__()
        self.queue, self.job_id = queue, job_id
        self.fields_table: Table | None = None  # what is shown, once loaded

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog details") as dialog:
            dialog.border_title = Text("Job ") + literal(self.job_id)
            dialog.border_subtitle = "esc close · o output"
            with VerticalScroll(id="fields"):
                yield Static(Text("loading…", style=MUTED), id="fields-table")
            output = TextArea("", read_only=True, id="output", soft_wrap=True)
            output.cursor_blink = False
            output.border_title = "Output"
            yield output

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            job = self.queue.get(self.job_id).to_dict()
        except QueueError as exc:
            self.post_message(JobLoaded(None, str(exc)))
        except Exception as exc:  # the database went away: say so, don't crash
            self.post_message(JobLoaded(None, f"could not read the job: {exc}"))
        else:
            self.post_message(JobLoaded(job))
        finally:
            self.queue.close()

    def on_job_loaded(self, message: JobLoaded) -> None:
        table = self.query_one("#fields-table", Static)
        if message.job is None:
            table.update(literal(message.error, COLORS["dead"], single_line=False))
            return
        job = message.job
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style=MUTED, no_wrap=True)
        grid.add_column(overflow="fold")
        for name in FIELDS:
            value = job.get(name)
            if value is None:
                cell = Text("—", style=MUTED)
            elif name == "state":
                cell = Text(str(value), style=f"bold {COLORS.get(str(value), '')}")
            else:
                cell = literal(str(value), single_line=False)
            grid.add_row(name, cell)
        self.fields_table = grid
        table.update(grid)
        dialog = self.query_one(".dialog")
        dialog.border_title = Text("Job ") + literal(str(job["id"]))
        output = self.query_one("#output", TextArea)
        text = clean(str(job.get("output") or ""))
        output.load_text(text)
        size = len((job.get("output") or "").encode())
        output.border_subtitle = f"{size:,} bytes" if text else "no output"

    def action_focus_output(self) -> None:
        self.query_one("#output", TextArea).focus()

    def action_close(self) -> None:
        self.dismiss(None)
