"""What the queues (`Q`) and schedules (`S`) screens share: a live table read off the UI thread,
and actions on its selected row run off the UI thread too.

The first read is awaited in ``on_mount``, in a thread: keys typed right after `Q` or `S`
(``keys.py`` hands a key on once the screen a key opened has settled) find the rows there.
Later reads come every ``REFRESH_S`` and after each action, on one thread of the screen's
that keeps its connection until the screen closes.

Actions run one at a time, in the order their keys came, on a thread that outlives the screen; `p`
toggles the pause the user last saw or asked for (``p p`` typed ahead pauses, then resumes),
until a read made after the screen's last action shows what is stored. The keys typed after an
action wait for that read (``caught_up``, see ``QueueApp.keys_may_go_on``): `j` typed after a
schedule was added found the table without it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from queuectl.queue import Queue

from ..data import Reader
from ..in_order import InOrder
from ..keys import QUIT_ON_CTRL_C
from ..messages import Changed, Done, Listed, error_text
from ..text import literal
from ..widgets.listing import Listing


MAX_TABLE_ROWS = 24  # the table's height where there is room, header and all
MIN_TABLE_ROWS = 2  # the header and a row, however short the terminal (QA: two overflowed at 7 lines)


class ListingScreen(ModalScreen[None]):
    """A dialog with a :class:`Listing`; subclasses give the columns, :meth:`items` (run in a
    thread) and :meth:`rows` (the table's rows for them, keyed)."""

    TITLE = ""
    REFRESH_S = 1.0  # SPEC 5: at least every second (QA: 2 s, a pause seen up to 1.6 s late)
    # ... where a read is quick. A slow one (the queues' counts group a million jobs: ~1 s) is
    # followed by a wait of this many times its length before the next timed one: the screen
    # reads with at most 1/READ_SHARE of a core (QA: 60-87 % of one while `Q` was open). The
    # reads after an action are not held back.
    READ_SHARE = 4
    COLUMNS: list[tuple[str, str, int | None]] = []
    GIVE_WAY: tuple[str, ...] = ()  # columns left out, in this order, where room is short
    LAST_RESORT: tuple[str, ...] = ()  # then these, where the rest would not fit at all
    NARROW: dict[str, str] = {}  # a column's narrower form, shown once the column gives way
    EMPTY = ""
    BINDINGS = [Binding("escape", "close", "Close"), QUIT_ON_CTRL_C]

    def __init__(self, queue: Queue) -> None:
        super().__init__()
        self.queue = queue
        self.loaded = False
        self.items_shown: list = []
        self.shown_at = 0.0  # when they were read
        self.paused_asked: dict[str, bool] = {}  # name: paused, as `p` last asked (not yet read)
        # Each action carried out, the table is read again (nothing, once the screen is closed).
        self._actions = InOrder("queuectl-listing", after=lambda: self.post_message(Changed()))
        self.caught_up = asyncio.Event()  # the table shows what every action asked for did
        # A row this screen added (`a`): selected as soon as the table shows it, so that the
        # keys typed next act on it (QA: `p` after an add paused the first row's schedule).
        self.select_when_shown: str | None = None
        # Later reads, on one thread and connection while the screen is open (a thread a read
        # was a new PostgreSQL connection each time); one at a time, one more if asked meanwhile.
        self._reader = Reader("queuectl-listing", queue)
        self._loading = self._again = False
        self._read_took = 0.0  # seconds, the last read
        self._next_timed = 0.0  # time.monotonic() before which no timed read starts
        # Made here, not in compose: the screen's table is there as soon as the screen is (a
        # test that waited for it once looked between the screen's push and its compose).
        self.table = Listing(self.COLUMNS, give_way=self.GIVE_WAY, last_resort=self.LAST_RESORT,
                             narrow=self.NARROW, id="listing")  # fmt: skip

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog listing") as dialog:
            dialog.border_title = self.TITLE
            yield self.table
            yield Static(self.EMPTY, id="listing-note", classes="hint", markup=False)

    async def on_mount(self) -> None:
        worker = self.run_worker(self._first_read, thread=True, exit_on_error=False)
        await worker.wait()
        self.on_listed(worker.result)  # shown now, before the keys typed next are handled
        self.set_interval(self.REFRESH_S, self._timed_load)

    def on_unmount(self) -> None:
        self._reader.close()

    def on_resize(self) -> None:
        self.fit_table()
        dialog = self.query_one(".dialog")
        width = dialog.styles.width
        room = self.size.width if width is None else int(width.resolve(self.size, self.app.size))
        if dialog.styles.max_width is not None:
            room = min(room, int(dialog.styles.max_width.resolve(self.size, self.app.size)))
        # (the corners, a line each side, and a space each side of the text: QA found it two
        # columns too long at each width where the hint changes)
        dialog.border_subtitle = self.keys_hint(room - 6)

    def fit_table(self) -> None:
        """The table's height at most what the dialog has room for (CSS's max-height cannot
        say "24 rows, or less if the terminal is short"). Taller, its last rows were cut off
        by the dialog, and the table, which scrolls to its cursor within its own height,
        scrolled no more: at 80x24 `G` then `p` paused a queue out of sight (QA)."""
        dialog = self.query_one(".dialog")
        note = self.query_one("#listing-note")
        most = dialog.styles.max_height  # (.listing's, app.tcss)
        room = self.size.height if most is None else int(most.resolve(self.size, self.app.size))
        room -= dialog.styles.gutter.height
        room -= self.table.styles.margin.height + (note.outer_size.height if note.display else 0)
        self.table.styles.max_height = max(MIN_TABLE_ROWS, min(MAX_TABLE_ROWS, room))

    def keys_hint(self, room: int) -> str:
        """The dialog's keys, as many as fit in ``room`` cells: each described in full, or in
        a word (`p pause`), or, where even that is too long, with the last ones before
        `esc close` left out. At 80 columns the schedules' hint was cut off before `esc close`
        (QA)."""
        names = {"escape": "esc", "delete": "del"}
        keys = [
            (names.get(key, key), binding.description.lower())
            for binding in self.BINDINGS
            if isinstance(binding, Binding) and binding.show
            for key in [binding.key.split(",")[0]]
        ]
        *actions, close = [f"{key} {what}" for key, what in keys]
        short = [f"{key} {re.split(r'[ /]', what)[0]}" for key, what in keys[:-1]]
        for shown in (actions, short, *(short[:n] for n in range(len(short) - 1, -1, -1))):
            hint = " · ".join([*shown, close])
            if len(hint) <= room:
                break
        return hint

    def items(self) -> list:
        """In a thread: what the table lists (plain data)."""
        raise NotImplementedError

    def rows(self, items: list, now: float) -> dict[str, list[Text]]:
        """The table's rows for ``items``, keyed, in order; each row's first cell a KeyText."""
        raise NotImplementedError

    def read(self) -> Listed:
        """In a thread."""
        carried_out = self._actions.done  # (before the read: what the read surely sees)
        began = time.monotonic()
        try:
            return Listed(self.items(), self.app.clock(), actions=carried_out)
        except Exception as exc:  # the database went away or is locked: show it, keep going
            return Listed([], error=error_text(exc))
        finally:
            self._read_took = time.monotonic() - began

    def _first_read(self) -> Listed:
        """In a thread of its own (awaited), its connection closed after."""
        try:
            return self.read()
        finally:
            self.queue.close()

    def _timed_load(self) -> None:
        if not self._loading and time.monotonic() >= self._next_timed:
            self.load()

    def load(self) -> None:
        if self._loading:
            self._again = True
            return
        self._loading = True
        self._reader.submit(lambda: self.post_message(self.read()))

    def on_changed(self, message: Changed) -> None:
        self.load()

    def on_listed(self, message: Listed) -> None:
        self._loading = False
        self._next_timed = time.monotonic() + (self.READ_SHARE - 1) * self._read_took
        if self._again:
            self._again = False
            self.load()
        note = self.query_one("#listing-note", Static)
        if message.error is not None:
            note.update(literal(f"cannot read the queue: {message.error}"))
            note.display = True
            self.fit_table()
            self.caught_up.set()  # (keys typed ahead wait no longer: no rows are coming)
            return
        if message.actions >= self._actions.asked:  # it shows what every action asked for did
            self.paused_asked.clear()
            self.caught_up.set()
        self.items_shown = message.items
        self.shown_at = message.now
        self.show_rows()
        self.loaded = True

    def show_rows(self) -> None:
        note = self.query_one("#listing-note", Static)
        rows = self.rows(self.items_shown, self.shown_at)
        self.table.show(rows)
        if self.select_when_shown is not None and self.table.select(self.select_when_shown):
            self.select_when_shown = None
        note.update("" if rows else self.EMPTY)
        note.display = not rows
        self.fit_table()

    def is_paused(self, item) -> bool:
        """Whether ``item`` (a queue or a schedule) is paused, as last read or as `p` asked."""
        return self.paused_asked.get(item.name, item.paused)

    def toggle_pause(self, pause: Callable[[str], str], resume: Callable[[str], str]) -> None:
        """`p`: pause the selected row's item, or resume it, from the state the user sees."""
        info = self.selected_item()
        if info is None:
            return
        name = info.name
        paused = not self.is_paused(info)
        self.paused_asked[name] = paused
        self.act(lambda: (pause if paused else resume)(name))
        self.show_rows()

    def selected(self) -> str | None:
        key = self.table.selected
        if key is None:
            self.notify(f"No {self.TITLE.lower().rstrip('s')} selected", severity="warning")
        return key

    def selected_item(self):
        """The item of the selected row as last read (matched by its ``name``); None, with a
        warning, when no row is selected."""
        key = self.selected()
        return next((item for item in self.items_shown if item.name == key), None)

    def act(self, do: Callable[[], str]) -> None:
        """Run a queue operation off the UI thread, after those asked for before it; report
        how it went, then read again. Its thread is not the screen's worker: `p p escape`
        typed at once dropped what the screen's end cancelled."""
        self.caught_up.clear()  # the keys typed next wait for the table to show it
        self._actions.add(partial(self._carry_out, self.app, do))

    def _carry_out(self, app, do: Callable[[], str]) -> None:  # noqa: ANN001
        try:
            Done.report(do, app)
        finally:
            self.queue.close()

    def action_close(self) -> None:
        self.dismiss(None)
