"""A job pane: one DataTable per state, keyed by job id and diff-updated on every refresh.

A refresh removes the rows whose job left the pane, ``update_cell``s the cells that changed and
adds the new rows; a cursor on the first row stays there (the pane follows new jobs), one further
down stays on the job it was on. The table is never cleared on a tick,
only when a resize changes which columns fit.
"""

from __future__ import annotations

import math

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from queuectl.config import KEYS
from queuectl.models import DEFAULT_QUEUE, State
from queuectl.text import ago, countdown, duration, tries

from ..data import MAX_ROWS
from ..messages import JobRow
from ..text import literal

DEFAULT_MAX_RETRIES = KEYS["max-retries"].default  # a queue whose config was never set



class IdText(Text):
    """The id cell, which also remembers the job it belongs to (used to order the rows)."""

    def __init__(self, job_id: str, style: str = "") -> None:
        super().__init__(end="", style=style, no_wrap=True, overflow="ellipsis")
        self.append(literal(job_id))
        self.job_id = job_id


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None  # None: shares the width left over (``flex`` parts)
    flex: int = 1
    hide_below: int = 0  # shown only when the pane's content is at least this wide
    justify: str = "left"


Cells = dict[str, Text]
Colors = dict[str, str]  # the theme's variables (theme.py): a colour per state, "muted", ...
Formatter = Callable[[JobRow, float, dict, Colors], Cells]


PRIORITY_WIDTH = 4
TRIES_WIDTH = 6  # "16/10k": at 5, 10000 max retries read "16/1…"

PADDING = 1  # DataTable's cell padding, each side
# Loads in a row that may come without the rows the cursor needs (a move past the rows loaded
# waits for them, a load whose rows end before the cursor is set aside): at most this many.
LOADS_WAITED = 3
LOOKAHEAD = 10  # rows loaded beyond the cursor, so scrolling down never waits
MIN_FLEX = 9  # (at 110 columns the Pending pane has 51: id, "blocked: 3f9k2a… is dead", 9)


def _short(number: int, width: int, rounding: Callable[[float], float] = round) -> str:
    """``number`` in at most ``width`` cells: as it is, else in thousands, millions or billions
    (2.5k, 12k, 3M), rounded by ``rounding`` (math.floor: never more than it is), else cut with
    an ellipsis. A table cuts a cell too wide silently: priority 2500 read 250, and 10000 max
    retries 0/100."""
    text = str(number)
    if len(text) <= width:
        return text
    sign = "-" if number < 0 else ""
    for size, unit in ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "G")):
        scaled = abs(number) / size
        if scaled < (1 if rounding is math.ceil else 0.5):  # 100000 rounded up read "1M"
            break
        tenths = rounding(scaled * 10) / 10
        for shown in (f"{tenths:.1f}".rstrip("0").rstrip("."), f"{rounding(scaled):.0f}"):
            if shown != "0" and len(sign + shown + unit) <= width:
                return sign + shown + unit
    return text[: width - 1] + "…"


def _tries_text(runs: int, most: int) -> str:
    """``runs/most`` in TRIES_WIDTH cells. Shortened, the runs are rounded down and the limit
    up, so that a job never looks as if its retries were spent when they are not (1500 of
    2000 read "2k/2k"); a limit with no room left is an ellipsis, not a cut number ("10/10…"
    read as 10 of 10)."""
    text = f"{runs}/{most}"
    if len(text) <= TRIES_WIDTH:
        return text
    for room in range(TRIES_WIDTH - 2, 0, -1):  # the runs given the most room first
        shown = _short(runs, room, math.floor)
        limit = _short(most, TRIES_WIDTH - 1 - len(shown), math.ceil)
        if "…" not in shown + limit:
            return f"{shown}/{limit}"
    return f"{_short(runs, TRIES_WIDTH - 2, math.floor)}/…"


def _tries(row: JobRow, config: dict, colors: Colors) -> Text:
    limit = row.max_retries
    if limit is None:
        limit = config.get("max-retries", DEFAULT_MAX_RETRIES)
    runs, most = (int(part) for part in tries(row.attempts, limit).split("/"))
    text = _tries_text(runs, most)
    return Text(text, style=colors["muted"] if row.attempts == 0 else "", end="")


SHORT_ID = 6  # characters of a dependency's id shown in a pane ("after 3f9k2a…")


def short_id(job_id: str) -> Text:
    """A job's id cut to ``SHORT_ID`` characters and an ellipsis, shown literally."""
    cut = job_id if len(job_id) <= SHORT_ID + 1 else job_id[:SHORT_ID] + "…"
    return literal(cut)


def dependency_state(row: JobRow, colors: Colors) -> Text | None:
    """What a waiting job waits for (SPEC 7): "after 3f9k2a…" or "blocked: 3f9k2a… is dead";
    None for a job that waits for no other job."""
    if row.blocked_by:
        text = Text("blocked: ", style=colors[State.DEAD], end="", no_wrap=True, overflow="ellipsis")
        text.append(short_id(row.blocked_by[0]))
        text.append(" is dead")
        if len(row.blocked_by) > 1:
            text.append(f" +{len(row.blocked_by) - 1}")
        return text
    if row.waiting_for:
        text = Text("after ", style=colors["muted"], end="", no_wrap=True, overflow="ellipsis")
        text.append(short_id(row.waiting_for[0]))
        if len(row.waiting_for) > 1:
            text.append(f" +{len(row.waiting_for) - 1}")
        return text
    return None


def _waiting(row: JobRow, now: float, config: dict, colors: Colors) -> Cells:
    wait = row.run_at - now
    dependency = dependency_state(row, colors)
    if dependency is not None:
        when = dependency
    elif row.held:  # due or not, no worker claims it: it read "ready"
        when = Text(f"⏸ {row.held}", style=colors[State.FAILED], end="")
    elif row.state == State.FAILED:
        when = Text(
            f"retry in {countdown(wait)}" if wait >= 1 else "retrying",
            style=colors[State.FAILED],
            end="",
        )
    elif wait >= 1:
        when = Text(f"in {countdown(wait)}", style=colors[State.PENDING], end="")
    else:
        when = Text("ready", style=colors["muted"], end="")
    return {
        "priority": Text(_short(row.priority, PRIORITY_WIDTH),
                         style=colors["muted"] if row.priority == 0 else "bold", end=""),  # fmt: skip
        "command": literal(row.command),
        "tries": _tries(row, config, colors),
        "when": when,
        "error": literal(row.error, colors[State.FAILED]),
    }


def _processing(row: JobRow, now: float, config: dict, colors: Colors) -> Cells:
    worker = (row.worker or "").rsplit(":", 1)[0]
    return {
        "command": literal(row.command),
        "tries": _tries(row, config, colors),
        "elapsed": Text(duration(now - (row.started_at or now)), style=colors[State.PROCESSING]),
        "worker": literal(worker, colors["muted"]),
    }


def _completed(row: JobRow, now: float, config: dict, colors: Colors) -> Cells:
    took = None
    if row.started_at is not None and row.finished_at is not None:
        took = row.finished_at - row.started_at
    return {
        "command": literal(row.command),
        "took": Text(duration(took), end=""),
        "finished": Text(ago(row.finished_at, now), style=colors["muted"], end=""),
    }


def _dead(row: JobRow, now: float, config: dict, colors: Colors) -> Cells:
    if row.state == State.CANCELLED:  # listed with the dead (SPEC 5), marked in its own colour
        error = Text("⊘ ", style=colors[State.CANCELLED], end="", no_wrap=True,
                     overflow="ellipsis")  # fmt: skip
        said = row.error or ""
        error.append(literal(said if said.startswith("cancelled") else f"cancelled {said}".strip()))
    else:
        error = literal(row.error, colors[State.DEAD])
    return {
        "command": literal(row.command),
        "tries": _tries(row, config, colors),
        "error": error,
        "finished": Text(ago(row.finished_at, now), style=colors["muted"], end=""),
    }


@dataclass(frozen=True)
class PaneKind:
    name: str  # the Queue.pane() name
    title: str
    state: State  # the colour
    columns: tuple[Column, ...]
    cells: Formatter
    empty: str
    # The text of its cells that changes with the time alone ("in 4m", "12s", "3m ago"): a
    # row whose job and clock text are unchanged keeps its cells (see JobPane._cells).
    clock: Callable[[JobRow, float], str]


def _waiting_clock(row: JobRow, now: float) -> str:
    wait = row.run_at - now
    return countdown(wait) if wait >= 1 else ""


def _processing_clock(row: JobRow, now: float) -> str:
    return duration(now - (row.started_at or now))


def _finished_clock(row: JobRow, now: float) -> str:
    return ago(row.finished_at, now)


ID = Column("id", "ID", 12)
# Shown when there are jobs of more than one queue (SPEC 7), after the id, in a wide pane; a
# narrower one shows the queue before the command instead.
QUEUE = Column("queue", "Queue", 10, hide_below=72)
# The waiting pane's "When", wide enough for "blocked: 3f9k2a… is dead" while a job shown waits
# for another; its priority and tries then show only in a wide pane.
WIDE_WHEN = Column("when", "When", 24)
GIVE_WAY = {"priority": 96, "tries": 90}  # hide_below, while the "When" is wide
# Narrower than the id, the wide "When" and the least command take (100 columns): "blocked: …
# is dead" ran past the pane's edge, cut with no ellipsis. There, "blocked: 3f9k2a…" (the word and
# the id, SPEC 7), its text's own ellipsis cutting the rest.
NARROW_WHEN = Column("when", "When", 16)
WIDE_WHEN_FROM = sum(c.width + 2 * PADDING for c in (ID, WIDE_WHEN)) + MIN_FLEX + 2 * PADDING
KINDS = {
    kind.name: kind
    for kind in (
        PaneKind(
            "waiting",
            "Pending",
            State.PENDING,
            (
                ID,
                Column("priority", "Pri", PRIORITY_WIDTH, hide_below=56, justify="right"),
                # Twice the last error's share: at 200 columns the two were as wide, the
                # command cut at 26 characters beside an empty error.
                Column("command", "Command", flex=2),
                Column("tries", "Tries", TRIES_WIDTH, hide_below=50, justify="right"),
                Column("when", "When", 12),
                Column("error", "Last error", None, flex=1, hide_below=90),
            ),
            _waiting,
            "nothing waiting",
            _waiting_clock,
        ),
        PaneKind(
            "processing",
            "Processing",
            State.PROCESSING,
            (
                ID,
                Column("command", "Command"),
                Column("tries", "Tries", TRIES_WIDTH, hide_below=50, justify="right"),
                Column("elapsed", "Elapsed", 7, justify="right"),
                Column("worker", "Worker", 18, hide_below=76),
            ),
            _processing,
            "no job running",
            _processing_clock,
        ),
        PaneKind(
            "completed",
            "Completed",
            State.COMPLETED,
            (
                ID,
                Column("command", "Command"),
                Column("took", "Took", 6, hide_below=44, justify="right"),
                Column("finished", "Finished", 8, justify="right"),
            ),
            _completed,
            "nothing completed yet",
            _finished_clock,
        ),
        PaneKind(
            "dead",
            "Dead",
            State.DEAD,
            (
                ID,
                Column("command", "Command", flex=2),
                Column("tries", "Tries", TRIES_WIDTH, hide_below=54, justify="right"),
                Column("error", "Last error", flex=3),
                Column("finished", "Died", 8, hide_below=64, justify="right"),
            ),
            _dead,
            "the DLQ is empty",
            _finished_clock,
        ),
    )
}



def fit_columns(columns: tuple[Column, ...], width: int) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` cells, with their widths; flex columns share the rest."""
    shown = [c for c in columns if width >= c.hide_below]
    fixed = sum(c.width + 2 * PADDING for c in shown if c.width is not None)
    flexible = [c for c in shown if c.width is None]
    spare = max(width - fixed - 2 * PADDING * len(flexible), MIN_FLEX * len(flexible))
    parts = sum(c.flex for c in flexible) or 1
    shares = [spare * c.flex // parts for c in flexible]
    if shares:
        shares[-1] = spare - sum(shares[:-1])
    # Each at least MIN_FLEX, taken from the widest: raised on its own, a share made the table
    # a cell wider than the pane (the command's 2 parts left the last error under 10).
    for i, share in enumerate(shares):
        if share < MIN_FLEX:
            widest = max(range(len(shares)), key=shares.__getitem__)
            given = min(MIN_FLEX - share, max(shares[widest] - MIN_FLEX, 0))
            shares[widest] -= given
            shares[i] += given
    widths = dict(zip((c.key for c in flexible), shares))
    return [(c, c.width if c.width is not None else max(widths[c.key], MIN_FLEX)) for c in shown]


class JobPane(DataTable):
    """The jobs of one pane, most relevant first, with a count in its border title."""

    BINDINGS = [
        # Not in the footer (full at 120 columns; enter opens a row anywhere): in the palette.
        Binding("enter", "app.details", "Details", show=False, tooltip="Job details"),
        Binding("tab", "app.next_pane", "Next pane", show=False, tooltip="Next pane"),
        Binding("shift+tab", "app.previous_pane", "Previous pane", show=False,
                tooltip="Previous pane"),  # fmt: skip
        Binding("home,g", "scroll_top", "First job", show=False),
        Binding("end,G", "scroll_bottom", "Last job", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, kind: str, *, id: str | None = None) -> None:
        super().__init__(id=id or f"pane-{kind}", cursor_type="row", zebra_stripes=False)
        self.kind = KINDS[kind]
        self.add_class(f"-{self.kind.state}")
        self.border_title = self.kind.title
        self._titles_set: tuple[str | Text, str] | None = None  # as last set (_set_titles)
        self._jobs: list[JobRow] = []
        self._shown: dict[str, Cells] = {}
        # Per job id: the row, its clock text and the cells made of them (see _cells); and what
        # else the cells were made with (config, columns, queue column, theme).
        self._made: dict[str, tuple[JobRow, str, Cells]] = {}
        self._made_with: tuple = ()
        self._columns: list[tuple[Column, int]] = []
        self._now = 0.0
        self._config: dict = {}
        self._note = ""
        self.total = 0
        self.show_queue = False  # the queue column (more than one queue in the database)
        self.filter = ""  # the rows shown are those matching this (the app's `/`)
        self.more = False  # filtered: there may be more matches than the rows loaded
        # Rows the cursor still goes down (up, if negative): moves typed past the rows loaded,
        # made once the load that brings more is shown (see _past_the_rows_loaded); and a jump
        # to the first or last job (g, G) waiting for its rows. ``caught_up``: none is owed.
        self._owed = 0
        self._owed_loads = 0  # loads shown since a move past the rows loaded (see _apply)
        self._stale_loads = 0  # loads in a row not shown: their rows end before the cursor
        self._jump: str | None = None  # "first" or "last"
        # Rows to load at least, since moves went past those loaded: twice as many each time
        # (150 pgdn typed in one go loaded a screenful more at a time, each load at least
        # Loader.MIN_GAP_S after the last: 24 s; now a few loads). Reset by g and G.
        self._reach = 0
        self.caught_up = asyncio.Event()
        self.caught_up.set()
        # The user went to the end (`G`) of more jobs than a pane loads: its last rows are
        # loaded instead of its first (and ``rows_at_end`` once they are shown).
        self.at_end = False
        self.rows_at_end = False
        self._shown_at_end = False  # the rows the table shows are the pane's last
        # Whether the view follows the cursor (see selection_coming_in_sight): it left the
        # cursor's row behind only if it moved without the cursor (the mouse wheel, the bar).
        self._view_follows = True
        self.watch(self, "cursor_coordinate", self._cursor_moved, init=False)
        self.watch(self, "scroll_y", self._view_moved, init=False)

    # -- what the app calls ----------------------------------------------------------------

    @property
    def selected_id(self) -> str | None:
        """The id of the job under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    @property
    def kept_selection(self) -> str | None:
        """The selected job, if the pane's next rows are to reach it wherever it went: the
        cursor was moved there (not left on the first row), and no `g` or `G` moves it on."""
        if self.cursor_row == 0 or self._jump is not None:
            return None
        return self.selected_id

    @property
    def rows_in_sight(self) -> int:
        """How many rows of jobs the pane shows (a terminal a few lines tall leaves none)."""
        return self.scrollable_content_region.height - self.header_height

    @property
    def shows_rows(self) -> bool:
        return self.rows_in_sight >= 1

    @property
    def selection_in_sight(self) -> bool:
        """Whether the row under the cursor is in sight (with no row, whether one would be)."""
        shown = self.rows_in_sight
        if shown < 1 or not self.row_count:
            return shown >= 1
        top = round(self.scroll_y)  # (every row is one line)
        return top <= self.cursor_row < top + shown

    @property
    def selection_coming_in_sight(self) -> bool:
        """Whether the row under the cursor is in sight, or will be at the next refresh: the
        cursor moved since the view last left it. Textual's table scrolls to its cursor only
        after its next refresh once its rows changed, and a frame comes late on a busy machine:
        enter typed as rows landed above the selected job (new jobs of a higher priority, the
        rows above a `G`) found it out of sight and opened nothing, where the next frame
        showed it. A view the user scrolled away from the cursor is not coming back."""
        return self.shows_rows and (self._view_follows or self.selection_in_sight)

    def _cursor_moved(self) -> None:
        self._view_follows = True  # (the table scrolls to it, now or after its next refresh)

    def _view_moved(self) -> None:
        if not self.selection_in_sight:
            self._view_follows = False

    @property
    def selected_row(self) -> JobRow | None:
        """The job under the cursor, as last loaded, if any."""
        job_id = self.selected_id
        return next((job for job in self._jobs if job.id == job_id), None)

    @property
    def rows_wanted(self) -> int:
        """How many rows to load: two screenfuls, or past the cursor if it went further."""
        visible = max(self.size.height - 3, 4)  # less the border and the header
        cursor = self.cursor_row + self._owed  # from the first row loaded, or from the last:
        if self.rows_at_end:
            cursor = self.row_count - 1 - cursor
        wanted = max(2 * visible, cursor + visible + LOOKAHEAD, self._reach)
        return min(wanted, MAX_ROWS)

    @property
    def near_the_end(self) -> bool:
        """The cursor is close to the last loaded row (the first, if they are the pane's last
        rows), and there are more to load."""
        if self.rows_at_end:
            return self._more_rows() and self.cursor_row < LOOKAHEAD
        return self._more_rows() and self.cursor_row >= self.row_count - LOOKAHEAD

    def _more_rows(self) -> bool:
        """The pane holds more jobs than the rows loaded, and may load them."""
        return self._beyond() and self.row_count < MAX_ROWS

    def _beyond(self) -> bool:
        """The pane holds more jobs than the rows loaded."""
        return self.more if self.filter else self.total > self.row_count

    def action_cursor_down(self) -> None:
        if not self._past_the_rows_loaded(1):
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if not self._past_the_rows_loaded(self._page()):
            super().action_page_down()

    def action_cursor_up(self) -> None:
        if not self._past_the_rows_loaded(-1):
            super().action_cursor_up()

    def action_page_up(self) -> None:
        if not self._past_the_rows_loaded(-self._page()):
            super().action_page_up()

    def _page(self) -> int:
        return max(self.rows_in_sight, 1)

    def action_scroll_bottom(self) -> None:
        """`G`: the last job, of however many: with more than the rows loaded, the pane loads
        its last rows (it went to the last row loaded, the 200th of 200,000)."""
        if self.rows_at_end or not self._beyond():
            super().action_scroll_bottom()
        else:
            self._jump_to("last")

    def action_scroll_top(self) -> None:
        """`g`: the first job; back to the pane's first rows after `G`."""
        if self.at_end or self.rows_at_end:
            self._jump_to("first")
        else:
            super().action_scroll_top()

    def _jump_to(self, end: str) -> None:
        self.at_end, self._jump, self._owed, self._reach = end == "last", end, 0, 0
        self.caught_up.clear()  # the keys typed after it wait for its rows
        self.app.request_load()  # type: ignore[attr-defined]

    def _past_the_rows_loaded(self, rows: int) -> bool:
        """Whether going down ``rows`` (up, if negative) goes past the rows loaded while the
        pane holds more there. Then the cursor goes to the last row loaded (the first), and the
        rest of the move once the rows it asks for are loaded (the keys typed after it wait for
        that: ``QueueApp.keys_may_go_on``): `j` typed ahead (key repeat, a paste) past them was
        lost, and so were the keys that came before the load that brought more rows."""
        if self._jump is not None or self._owed:
            # The rows of g or G, or of a move before this one, are on their way: the move is
            # made on them. Made on the rows shown, it was undone as they landed (a load slower
            # than the keys' wait: `G` then 40 `k`, of which those read before `G`'s rows were
            # lost).
            self._owed += rows  # (the keys after it wait for the load asked for already)
            return True
        edge = 0 if rows < 0 else self.row_count - 1
        if not self._more_towards(rows):
            return False
        if 0 <= self.cursor_row + rows <= self.row_count - 1:
            return False  # within the rows loaded
        self._owed += self.cursor_row + rows - edge
        self._owed_loads = 0
        self._reach = max(self._reach, 2 * self.row_count)
        if self.cursor_row != edge:
            self.move_cursor(row=edge)
        self.caught_up.clear()
        self.app.request_load()  # type: ignore[attr-defined]
        return True

    def rows_not_coming(self) -> None:
        """A load failed: the moves owed are made as far as the rows shown go, and the keys
        typed after them go on (they waited 5 s each while the database was away, and moves
        made meanwhile were owed, the cursor still). A `g` or `G` waits for its rows."""
        if self._owed and self._jump is None:
            self.move_cursor(row=self._within_rows(self.cursor_row + self._owed))
            self._owed = 0
        self.caught_up.set()

    def _within_rows(self, row: int) -> int:
        """``row``, or the nearest row loaded."""
        return min(max(row, 0), self.row_count - 1)

    def _more_towards(self, rows: int) -> bool:
        """Whether the pane holds jobs past the rows loaded, going down ``rows`` (up, if
        negative): its first rows end only downwards, its last rows (`G`) upwards."""
        return (rows < 0) == self.rows_at_end and self._more_rows()

    def show(
        self,
        jobs: list[JobRow],
        total: int,
        now: float,
        config: dict,
        note: str = "",
        *,
        show_queue: bool | None = None,
        filter: str = "",
        more: bool = False,
        at_end: bool = False,
    ) -> None:
        """Make the table show ``jobs`` (in order): a keyed diff against what it shows.
        ``filter``: ``jobs`` are the first matches of that text (``more``: there may be others),
        of ``total`` jobs in the pane. ``at_end``: ``jobs`` are the pane's last rows (`G`)."""
        if self._ends_before_the_cursor(jobs, total, filter, more, at_end):
            # A load asked for before the cursor went this far (a refresh, with the rows near
            # the cursor of then) brings rows that end before the job it is on. Shown, it put
            # the cursor on the nearest row it brought, rows away from the moves typed (CI, in
            # tmux: `G` then 40 `k` opened a job 8 to 11 rows short). The next load reaches it.
            self._stale_loads += 1
            self.app.request_load()  # type: ignore[attr-defined]
            return
        self._stale_loads = 0
        self._jobs, self._now, self._config, self.total = jobs, now, config, total
        self._note = note
        self.filter, self.more, self.rows_at_end = filter, more, at_end
        if show_queue is not None:
            self.show_queue = show_queue
        self._set_titles(len(jobs), total, note)
        if not self._columns or self._refit():
            return  # not sized yet (the first resize builds the table), or just rebuilt
        self._apply()

    def _ends_before_the_cursor(
        self, jobs: list[JobRow], total: int, filter: str, more: bool, at_end: bool
    ) -> bool:
        """Whether ``jobs`` end before the job under the cursor while the pane holds more: the
        rows of a load asked for before the cursor went there (not a job that left the pane)."""
        if self._jump is not None or at_end != self._shown_at_end or filter != self.filter:
            return False  # rows of another kind than those shown: g, G, or a filter
        if not self.row_count or self._stale_loads >= LOADS_WAITED:
            return False  # (a few in a row at most: they cannot be asked for forever)
        if not (more if filter else total > len(jobs)):
            return False  # it brought the whole pane
        from_the_edge = self.row_count - 1 - self.cursor_row if at_end else self.cursor_row
        selected = self.selected_id
        return from_the_edge >= len(jobs) and all(job.id != selected for job in jobs)

    def _apply(self) -> None:
        jobs = self._jobs
        # A cursor the user moved down stays on its job; one on the first row stays on the first
        # row, so that a pane nobody touched keeps showing the newest jobs as they arrive. Among
        # a pane's last rows (`G`), the rows loaded above it move it down: it stays on its job.
        keep = self.cursor_row > 0 or self._shown_at_end
        selected = self.selected_id if keep else None
        # Where a job that leaves the pane (cancelled, retried) takes the cursor: to the job
        # that came after it, else the nearest before it. Its row's index was kept, and among a
        # pane's last rows the row loaded above in its place moved every row down: `G x x`
        # cancelled the last job, then the one two above it (QA).
        shown = [row.key.value for row in self.ordered_rows] if selected is not None else []
        at = self.cursor_row
        instead = shown[at + 1 :] + shown[:at][::-1]
        made_with = (self._config, self._columns, self.show_queue, self.app.theme)
        if made_with != self._made_with:
            self._made.clear()
            self._made_with = made_with
        wanted = {job.id: self._cells(job) for job in jobs}
        with self.app.batch_update():
            for key in [key for key in self._shown if key not in wanted]:
                self.remove_row(key)
                del self._shown[key]
                self._made.pop(key, None)
            for key, cells in wanted.items():
                before = self._shown.get(key)
                if before is cells:
                    continue  # the same row at the same clock text: the same cells
                if before is None:
                    self.add_row(*cells.values(), key=key)
                else:
                    for column, cell in cells.items():
                        if before[column] != cell:
                            self.update_cell(key, column, cell)
                self._shown[key] = cells
            order = [job.id for job in jobs]
            if [row.key.value for row in self.ordered_rows] != order:
                rank = {job_id: index for index, job_id in enumerate(order)}
                self.sort(key=lambda cells: rank[cells[0].job_id])
            self._restore_cursor(selected, instead)
            if self._jump is not None and (self._jump == "last") == self.rows_at_end:
                self.move_cursor(row=0 if self._jump == "first" else self.row_count - 1)
                self._jump, self._owed_loads = None, 0  # (then the moves typed after it)
            if self._owed and self._jump is None:
                goal = self.cursor_row + self._owed
                row = self._within_rows(goal)
                # A load asked for before the move (the refresh's) brings no rows past the ones
                # loaded: the rest of the move waits for the next load, which brings them. It
                # was dropped, the cursor left at the edge.
                # (At most a few loads: one that brings no more rows cannot ask again forever.)
                self._owed_loads += 1
                kept = self._more_towards(goal - row) and self._owed_loads <= LOADS_WAITED
                self._owed = goal - row if kept else 0
                self.move_cursor(row=row)
                if self._owed:
                    self.app.request_load()  # type: ignore[attr-defined]
        self._shown_at_end = self.rows_at_end
        if self._jump is None and not self._owed:
            self._catch_up()

    def _catch_up(self, refreshes: int = 3) -> None:
        """The keys typed after a load may go on (``caught_up``), once the cursor row is in
        sight: where the load added rows, the table scrolls to the cursor only after a
        refresh or two, and `enter` typed after `g` found the first job out of sight ("move
        to it first": the suite once, in tmux). At most ``refreshes`` later (the user may
        have scrolled away, or the terminal may be too short to show a row)."""
        if self._jump is not None or self._owed:
            return  # another g or G, or a move past the rows loaded: its load sets it
        if self.selection_in_sight or refreshes <= 0:
            self.caught_up.set()
        else:
            self.call_after_refresh(self._catch_up, refreshes - 1)

    # -- internals --------------------------------------------------------------------------

    def _set_titles(self, shown: int, total: int, note: str) -> None:
        title, subtitle = self._titles(shown, total, note)
        # Set only when they change: Textual repaints the whole pane on every set, equal or not
        # (an idle app with a few hundred jobs shown took ~10 % of a core, QA).
        if (title, subtitle) != self._titles_set:
            self._titles_set = (title, subtitle)
            self.border_title, self.border_subtitle = title, subtitle

    def _titles(self, shown: int, total: int, note: str) -> tuple[str | Text, str]:
        if self.filter:  # the matches, then of how many (the filter itself is user text)
            matches = f"{shown:,}+" if self.more else f"{shown:,}"
            # (The space inside the bold part: Textual drops one that follows a style's end.)
            title = Text.assemble(f"{self.kind.title} ", (f"{matches} ", "bold"), f"of {total:,}")
            which = "last" if self.rows_at_end else "first"
            return title, "no match" if not shown else (f"{which} matches" if self.more else "")
        parts = [note] if note else []
        if total > shown:
            parts.append(f"{'last' if self.rows_at_end else 'first'} {shown:,}")
        if not total:
            parts.append(self.kind.empty)
        return f"{self.kind.title} [b]{total:,}[/b]", " · ".join(parts)

    def _cells(self, job: JobRow) -> Cells:
        """The cells of ``job``'s row: those made at the last load if the job and the text that
        changes with the time alone are the same (with 2,000 rows loaded, making every cell
        again at each load cost ~90 ms of the UI thread a second)."""
        clock = self.kind.clock(job, self._now)
        made = self._made.get(job.id)
        if made is not None and made[0] == job and made[1] == clock:
            return made[2]
        cells = self._make_cells(job)
        self._made[job.id] = (job, clock, cells)
        return cells

    def _make_cells(self, job: JobRow) -> Cells:
        values = self.kind.cells(job, self._now, self._config, self.app.theme_variables)
        values["id"] = IdText(job.id, style="bold")
        muted = self.app.theme_variables["muted"]
        values["queue"] = literal(job.queue, muted)
        narrow = not any(column.key == "queue" for column, _ in self._columns)
        if self.show_queue and narrow and job.queue != DEFAULT_QUEUE:
            values["command"] = literal(job.queue, muted) + Text(" ▸ ", style=muted) + values["command"]
        cells = {}
        for column, _ in self._columns:
            cell = values[column.key]
            cell.justify = column.justify  # type: ignore[assignment]
            cells[column.key] = cell
        return cells

    def _restore_cursor(self, selected: str | None, instead: list[str] | None = None) -> None:
        """The cursor back on ``selected``; where it has gone, on the first of ``instead``
        still shown."""
        if selected is None:
            return
        if selected not in self._shown:
            selected = next((key for key in instead or () if key in self._shown), None)
            if selected is None:
                return
        index = self.get_row_index(selected)
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def _wanted_columns(self, width: int) -> tuple[Column, ...]:
        """The kind's columns, with the queue's while there are several queues, and a wide
        "When" while a job shown waits for another (as wide as the pane's ``width`` allows)."""
        columns = list(self.kind.columns)
        if self.show_queue:
            columns.insert(1, QUEUE)
        if any(job.waiting_for for job in self._jobs) and "when" in {c.key for c in columns}:
            when = WIDE_WHEN if width >= WIDE_WHEN_FROM else NARROW_WHEN
            columns = [
                when if column.key == "when"
                else replace(column, hide_below=GIVE_WAY[column.key]) if column.key in GIVE_WAY
                else column
                for column in columns
            ]  # fmt: skip
        return tuple(columns)

    def on_resize(self) -> None:
        self._refit()
        # Made shorter, the pane kept its scroll, and the row under the cursor could be below
        # what it shows (QA: `x` then cancelled a job out of sight): scrolled back into sight.
        self._scroll_cursor_into_view()

    def _refit(self) -> bool:
        """Rebuild the table if the columns that fit have changed; True if it did."""
        # The content width less the scrollbar gutter (kept stable in app.tcss).
        width = self.scrollable_content_region.width
        columns = fit_columns(self._wanted_columns(width), max(width, 0))
        if columns == self._columns:
            return False
        selected = self.selected_id
        self._columns = columns
        self.clear(columns=True)
        self._shown.clear()
        for column, width in columns:
            label = Text(column.label, justify=column.justify)  # type: ignore[arg-type]
            self.add_column(label, width=width, key=column.key)
        self._apply()
        self._restore_cursor(selected)
        return True
