"""The queues screen (`Q`): every named queue with its jobs per state, limit and pause (SPEC 7);
`p` pauses or resumes the selected queue, `l` sets or removes its limit.

``Queue.queues()`` reads the counters kept per queue and state (schema 18), a few rows however
many jobs there are; the screen's reads still keep to a share of a core
(``ListingScreen.READ_SHARE``) should a read be slow (a busy server), besides the read after each
change made here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from queuectl.errors import InvalidInput
from queuectl.models import STATES, State
from queuectl.queue import Queue
from queuectl.spec import validate_int
from queuectl.workflows import QueueInfo

from ..text import literal
from ..widgets.listing import KeyText
from .form import Field, FormScreen
from .listing import ListingScreen

COUNT_LABELS = {  # the stats bar's words
    State.PENDING: "Pending",
    State.FAILED: "Retrying",
    State.PROCESSING: "Running",
    State.COMPLETED: "Done",
    State.DEAD: "Dead",
}


class QueuesScreen(ListingScreen):
    TITLE = "Queues"
    EMPTY = "No queue has jobs or settings yet."
    COLUMNS = [
        ("name", "Queue", None),
        *((str(state), COUNT_LABELS.get(state, str(state).capitalize()), 9) for state in STATES),
        ("limit", "Limit", 7),
        ("paused", "State", 9),
    ]
    # Where room is short (80 columns), counts give way: `p` and `l` act on the limit and state.
    GIVE_WAY = ("cancelled", "completed", "failed", "dead")
    # Where even then they do not fit (~40 columns), the running and waiting counts too (QA: the
    # table scrolled sideways, and the limit and state were off its edge).
    LAST_RESORT = ("processing", "pending")
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause / resume the selected queue"),
        Binding("l", "limit", "Limit", tooltip="Set or remove the selected queue's limit"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, queue: Queue) -> None:
        super().__init__(queue)
        # The rows last made, by queue: the queue as read, paused as shown, its cells; and the
        # theme they were made in.
        self._made: dict[str, tuple[QueueInfo, bool, list[Text]]] = {}
        self._made_for = ""

    def items(self) -> list[QueueInfo]:
        return self.queue.queues()

    def rows(self, items: list[QueueInfo], now: float) -> dict[str, list[Text]]:
        """Each queue's row; one whose queue is as it was (counts, limit, state) is the same
        row as before, made once: with 1,000 queues, making every row again took ~25 ms of the
        UI thread a second, and comparing them with the rows shown ~13 ms more (the table
        passes over a row that is the one it shows: Listing.show)."""
        made = {}
        before = self._made if self._made_for == self.app.theme else {}
        for info in items:
            paused = self.is_paused(info)
            row = before.get(info.name)
            if row is None or row[0] != info or row[1] != paused:
                row = (info, paused, self._row(info, paused))
            made[info.name] = row
        self._made, self._made_for = made, self.app.theme
        return {name: cells for name, (_, _, cells) in made.items()}

    def _row(self, info: QueueInfo, paused: bool) -> list[Text]:
        colors = self.app.theme_variables
        muted = colors["muted"]
        cells: list[Text] = [KeyText(literal(info.name, "bold"), info.name)]
        for state in STATES:
            count = info.counts.get(str(state), 0)
            style = colors.get(str(state), "") if count else muted
            cells.append(Text(f"{count:,}", style=style, justify="right"))
        if info.limit is None:
            cells.append(Text("—", style=muted, justify="right"))
        else:
            cells.append(Text(f"{info.limit:,}", style="bold", justify="right"))
        if paused:
            cells.append(Text("⏸ paused", style=f"bold {colors[State.FAILED]}"))
        else:
            cells.append(Text("▶ running", style=colors[State.COMPLETED]))
        return cells

    def action_toggle_pause(self) -> None:
        self.toggle_pause(
            lambda name: f"Paused queue {self.queue.pause_queue(name).name}",
            lambda name: f"Resumed queue {self.queue.resume_queue(name).name}",
        )

    def action_limit(self) -> None:
        info = self.selected_item()
        if info is None:
            return
        name = info.name

        def chosen(choice: LimitChoice | None) -> None:
            if choice is None:
                return
            limit = choice.limit

            def change() -> str:
                changed = self.queue.set_queue_limit(name, limit)
                if changed.limit is None:
                    return f"Queue {changed.name}: no limit"
                return f"Queue {changed.name}: at most {changed.limit} running at once"

            self.act(change)

        self.app.push_screen(LimitScreen(name, info.limit), chosen)


@dataclass(frozen=True)
class LimitChoice:
    limit: int | None  # None: no limit


def parse_limit(text: str) -> int | None:
    """A queue's limit as typed: a whole number >= 0, or blank / ``none`` for no limit."""
    text = text.strip()
    if not text or text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"'limit' must be a whole number >= 0 or 'none', got {text!r}") from None
    return validate_int("limit", value, minimum=0)


class LimitScreen(FormScreen[LimitChoice]):
    """The limit of one queue: returns a LimitChoice, or None when cancelled."""

    TITLE = "Queue limit"
    SUBTITLE = "jobs of the queue processing at once, on every host"

    def __init__(self, name: str, current: int | None) -> None:
        super().__init__()
        self.queue_name, self.current = name, current

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(".dialog").border_title = Text("Limit of queue ") + literal(self.queue_name)

    def fields(self) -> ComposeResult:
        yield Field(
            "limit",
            "Limit",
            value="" if self.current is None else str(self.current),
            placeholder="none",
            hint="a whole number (0 holds every job); blank: no limit",
        )

    def collect(self) -> LimitChoice | None:
        values = self.checked({"limit": parse_limit})
        return None if values is None else LimitChoice(values["limit"])  # type: ignore[arg-type]
