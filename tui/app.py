"""The queuectl TUI: four live panes over one queue, and this app's own worker pool.

The App only wires things together. The loader (``data.Loader``) reads the queue in a worker
thread and posts a :class:`QueueSnapshot`; the panes (``widgets/pane.py``) diff it into their
tables; the forms (``screens/``) return values that actions hand to worker threads. The UI thread
never runs a query. Colours are the theme's (``theme.py``); keys typed ahead are handled in order
(``keys.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from urllib.parse import urlparse

from textual import events, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input

from queuectl.config import KEYS
from queuectl.errors import JobRunning, QueueError
from queuectl.models import ACTIVE, CLAIMABLE, DEFAULT_QUEUE, FINAL, Job, State
from queuectl.queue import Queue, WholeId
from queuectl.reconnect import NO_ANSWER_SAID_S, no_answer
from queuectl.spec import JobSpec
from queuectl.text import escaped_line, shorten, utc_time
from queuectl.worker import MAX_THREADS, JobEvent

from .data import HealthLoaded, Loader, pane_summaries
from .in_order import InOrder
from .keys import KeysInOrder, read_escape_then_key, settled
from .pool import PoolControl
from .messages import (PANES, Carried, Done, JobRow, LoadFailed, PoolEvent, QueueSnapshot,
                       error_text)  # fmt: skip
from .screens.config import ConfigScreen
from .screens.confirm import ConfirmScreen, QuitQuestion, StoppingScreen, running
from .screens.details import DetailsScreen
from .screens.edit import EditScreen
from .screens.enqueue import EnqueueScreen
from .screens.listing import ListingScreen
from .screens.output import OutputScreen
from .screens.queues import QueuesScreen
from .screens.schedules import SchedulesScreen
from .signals import StopSignals
from .theme import THEME, VARIABLES
from .widgets.filter import FilterBar
from .widgets.footer import Footer
from .widgets.pane import JobPane
from .widgets.stats import StatsBar



CANCEL_WAIT_S = 10.0  # `x` on a running job: how long to wait for its worker to stop it
ACTIONS_AT_EXIT_S = 30.0  # quitting: how long to let what keys asked for finish
# A quit whose workers' last writes wait for a database that has not answered for this long
# shows what it waits for, and the way out, though no job runs.
QUIT_DIALOG_AFTER_S = 1.0
QUIT_POLL_S = 0.25
UNSENT_SHOWN = 200  # characters of a command not enqueued, in its notice
# What a key asked for that has waited this long for another process's write lock is said to
# wait (SQLite: the database's lock_waited_since), for LOCK_WAIT_SAID_FOR_S, and again after
# that while it still waits.
LOCK_WAIT_SAID_AFTER_S = 1.0
LOCK_WAIT_SAID_FOR_S = 10.0
ENQUEUE_FORM = "enqueue"  # the enqueue form's name among the installed screens
# The config form's: made once as the enqueue form is, and shown again with the values as they
# are (composing its eight fields every time made `c` take 70-150 ms).
CONFIG_FORM = "config"


def display_name(queue: Queue) -> str:
    """The queue as a person recognises it: a file name, or a server and database. Shown as
    typed, on one line, never obeyed: control characters as escapes (a file named with ESC [41m
    painted the bar red, QA; a newline hid the rest), bytes that are not UTF-8 as ``\\xff``."""
    if queue.target.kind == "sqlite":
        name = os.path.basename(queue.target.location)
    else:
        url = urlparse(queue.target.location)
        name = f"{url.hostname or 'localhost'}{url.path}"
    return escaped_line(os.fsencode(name).decode("utf-8", "backslashreplace"))  # (\n, \t too)


class QueueApp(KeysInOrder):
    """queuectl's terminal UI over ``queue``, running ``workers`` worker threads."""

    CSS_PATH = "app.tcss"
    TITLE = "queuectl"
    # The footer shows the descriptions; a binding with a tooltip is a palette command too.
    BINDINGS = [
        Binding("a", "enqueue", "Add", tooltip="Enqueue a job"),
        Binding("r", "retry", "Retry", key_display="r/R",
                tooltip="Retry the selected dead or cancelled job"),
        Binding("R", "retry_all", "Retry all", show=False, tooltip="Retry all dead jobs"),
        Binding("x", "cancel_job", "Cancel", tooltip="Cancel the selected job"),
        Binding("e", "edit", "Edit", tooltip="Edit the selected waiting job"),
        Binding("l", "output", "Log", tooltip="The selected job's output, live"),
        Binding("c", "config", "Config", tooltip="Edit the configuration"),
        Binding("slash", "filter", "Filter", tooltip="Filter the panes by id, command or queue"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the filter"),
        Binding("Q", "queues", "Queues", tooltip="Queues: counts, limits, pause / resume"),
        Binding("S", "schedules", "Schedules",
                tooltip="Schedules: add, pause / resume, run now, remove"),  # fmt: skip
        Binding("plus", "threads(1)", "Threads", key_display="+/-", tooltip="Add a worker thread"),
        Binding("minus", "threads(-1)", "Fewer threads", show=False,
                tooltip="Remove a worker thread"),  # fmt: skip
        Binding("p", "pause", "Pause", tooltip="Pause / resume workers"),
        Binding("q", "quit", "Quit"),
        # As in the tools it stands beside (Textual's own ctrl+c only said "press ctrl+q", QA);
        # in a form's field ctrl+c copies, the field's binding first.
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    threads = reactive(0, init=False)
    paused = reactive(False, init=False)
    filter_text = reactive("", init=False)  # `/`: the panes show only the jobs that match

    def __init__(
        self,
        queue: Queue,
        workers: int = 2,
        *,
        clock: Callable[[], float] | None = None,
        refresh_interval: float = 1.0,
        queues: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.register_theme(THEME)
        self.theme = THEME.name
        self.queue = queue
        self.clock = clock or queue.clock
        self.refresh_interval = refresh_interval
        self._counted_at: float | None = None  # when the counts shown were read (queue.clock)
        self.set_reactive(QueueApp.threads, max(0, min(workers, MAX_THREADS)))
        self.pool = PoolControl(
            queue, self._pool_event, lambda error: self.post_message(Done(error, "error")),
            queues,
        )
        self.loader = Loader(self, queue, self.clock, self._rows_wanted, lambda: self.filter_text,
                             background_gap=refresh_interval, selected=self._selected,
                             ends=self._ends, actions=self._actions_settled)  # fmt: skip
        self._pool_news = threading.Event()  # a PoolEvent is posted and not yet handled
        # What keys asked of the queue (see _act); each carried out, the panes are read again.
        self._actions = InOrder("queuectl-actions", after=lambda: self.post_message(Carried()))
        self._acts_shown = asyncio.Event()  # the panes show what every action asked for did
        self._acts_shown.set()
        # Running jobs that `x` asked to stop, whose stop is still awaited (_cancel_running):
        # their actions are not counted as carried out until then.
        self._stopping = 0
        self._stopping_lock = threading.Lock()
        self._covered = asyncio.Event()  # a screen covers the panes (see keys_may_go_on)
        self._problem_said = False  # the pool's problem was said (see _say_problem)
        self._filter_shown = asyncio.Event()  # the panes show the filter's rows
        self._filter_shown.set()
        self._tab_shown = asyncio.Event()  # the pane maximized by tab is laid out (see _cycle)
        self._tab_shown.set()
        self.several_queues = False  # jobs of more than one queue seen: the panes show the queue
        self._quitting = False
        self.signals: StopSignals | None = None  # run_app's SIGTERM/SIGHUP handlers
        # The app's loop and its context, once it runs (the signal handlers call into it).
        self.loop: tuple[asyncio.AbstractEventLoop, contextvars.Context] | None = None
        self.loads = 0  # snapshots applied (tests wait on it)
        self.health_loads = 0  # the last hour's health shown (read beside the loads)
        self.config_values: dict[str, int | float] = {}
        self._form: EnqueueScreen | None = None  # made at the first `a`, then shown again
        # The enqueue form's queue when left blank: the app's first, when it runs only some.
        self.enqueue_queue = queues[0] if queues else DEFAULT_QUEUE
        self._config_form: ConfigScreen | None = None  # the same for `c`
        self._held: QueueSnapshot | None = None  # loaded while the panes were covered
        self._stale = False  # a refresh was due while the panes were covered
        self._lock_wait_said = -math.inf  # when a lock wait was last said (time.monotonic())

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self.stats = StatsBar(display_name(self.queue), id="stats")
        yield self.stats.data_bind(threads=QueueApp.threads, paused=QueueApp.paused)
        with Grid(id="panes") as self.grid:
            for name in PANES:
                yield JobPane(name)
        self.filter_bar = FilterBar(id="filter-bar")
        yield self.filter_bar
        self.footer = Footer(compact=True)
        yield self.footer

    NARROW = 100  # columns: below this the panes stack and the bars get terse
    CRAMPED = 40  # columns: below this a dialog's buttons stand closer
    WIDE = 140  # columns: from this on the bar names the states (below, glyphs: room for the
    # last hour's failure rate and p95)
    STACKED = 16  # rows: four stacked panes of 4. Where the bars leave fewer, stacked panes other
    # than the focused one show their title only (else the last panes fell off the screen, and
    # tab focused panes nobody could see)
    PANE = 4  # rows: the fewest that show a pane's job (its borders, its header, one row)
    # Fewer rows than the stacked titles and one pane need: the focused pane alone is shown. (At
    # 80x12 or 40x14 the focused pane had no row left, and `r`, `x` or `e` acted on a job
    # nobody saw, QA.) Fewer rows than one pane needs beside the footer: no footer.
    SHORTEST = 3 * 2 + PANE

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        narrow = width < self.NARROW
        self.footer.show_command_palette = not narrow
        _, footer_rows = self.footer.grid_at(width)  # a narrow terminal's footer wraps
        self.footer.display = height - 1 - footer_rows >= self.PANE
        rows = height - 1 - (footer_rows if self.footer.display else 0)  # the panes'
        stacked = narrow or rows < 2 * self.PANE  # (side by side, two panes a column)
        self.grid.set_class(stacked, "-narrow")
        self.grid.set_class(stacked and rows < self.STACKED, "-short")
        self.grid.set_class(stacked and rows < self.SHORTEST, "-alone")
        self.stats.compact = width < self.WIDE
        self.stats.set_class(narrow, "-narrow")
        self.stats.fit()
        # A dialog's buttons closer together: at 29 columns "Keep n" was off the edge (QA).
        self.set_class(width < self.CRAMPED, "-cramped")

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return VARIABLES  # for any theme the palette picks

    @property
    def panes(self) -> list[JobPane]:
        return list(self.grid.query(JobPane))

    def on_mount(self) -> None:
        self.loop = asyncio.get_running_loop(), contextvars.copy_context()
        self._main_screen = self.screen
        self._fit(self.size.width, self.size.height)
        self.panes[0].focus()
        self.set_interval(self.refresh_interval, self._tick)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.request_load()
        self.pool.want(self.threads, self.paused)
        if self.signals is not None and self.signals.received:  # came before the loop ran
            self.stop_signalled()

    # -- loading: a thread queries (data.Loader), the UI thread applies ---------------------

    def request_load(self) -> None:
        self.loader.request()

    # While a screen is over the panes (a form, the details, the palette), they are not kept up
    # to date: nobody reads them, and a busy pool changed them every second, each time drawn
    # again under the open screen (the keys typed into it waited behind). Their last snapshot is
    # kept and shown, with a fresh load, once they are on top again.

    @property
    def panes_on_top(self) -> bool:
        stack = self.screen_stack
        return bool(stack) and stack[-1] is self._main_screen

    def _tick(self) -> None:
        if self.panes_on_top:
            self.loader.request(background=True)
        else:
            self._stale = True
        # Not only as loads end: a network that drops packets holds the panes' reads until a
        # connection gives up, and the bar said "▶ running" for 30 s after the workers' fence
        # had said "no answer for 12s" (PostgreSQL).
        self._say_outage()
        self._say_if_unanswered()
        self._say_if_writes_wait()

    def _say_if_unanswered(self) -> None:
        """The bar says a read of the panes has waited for the database this long (PostgreSQL),
        in place of counts it cannot update: a watcher (no workers, no fence) showed the counts
        of before as if live, for as long as the server did not answer. Cleared by the next
        load that comes back."""
        silent = self.loader.unanswered_for
        if silent is not None and silent >= NO_ANSWER_SAID_S:
            self.stats.error = no_answer(silent)

    def _say_if_writes_wait(self) -> None:
        """Say that what a key asked for (a retry, an enqueue, a pause...) waits for another
        process's write lock, once it has for LOCK_WAIT_SAID_AFTER_S: it is done once the lock
        is let go (or fails after the busy timeout, and says so). Nothing was said for as long
        as the lock was held, and the key looked lost (QA). The app's workers use databases of
        their own: their waits are the top bar's."""
        waited_since = getattr(self.queue.db, "lock_waited_since", lambda: None)()
        now = time.monotonic()
        if waited_since is None or now - waited_since < LOCK_WAIT_SAID_AFTER_S:
            return
        if now - self._lock_wait_said >= LOCK_WAIT_SAID_FOR_S:
            self._lock_wait_said = now
            self.notify("Waiting: another process holds the database's write lock. What you "
                        "asked for is done once it is let go.", severity="warning",
                        timeout=LOCK_WAIT_SAID_FOR_S)  # fmt: skip

    def _screen_changed(self, screen: Screen) -> None:
        if screen is not self._main_screen:
            self._covered.set()
            return
        self._covered.clear()
        held, self._held = self._held, None
        if held is not None:
            self.on_queue_snapshot(held)
        if self._stale:
            self._stale = False
            self.request_load()

    def _rows_wanted(self) -> dict[str, int]:
        return {pane.kind.name: pane.rows_wanted for pane in self.panes}

    CATCH_UP_S = 5.0  # at most this long, keys typed ahead wait for a pane's rows (below)
    LOAD_WAIT_S = 30.0  # ... or this long, while the load that brings them is being read
    LOAD_LOOK_S = 0.1  # (how often that is looked at)

    async def keys_may_go_on(self) -> None:
        """A move down past the rows a pane loaded waits for the load that brings more rows
        (JobPane._past_the_rows_loaded), and so do the keys typed after it: `enter` or `x` act
        on the job the moves typed before them reach. So do the keys typed after a filter is
        set or cleared, until the panes show its rows: `/ text enter x` cancelled the job
        selected before, which the filter hid. And the keys typed after an action, until the
        panes (or the `Q`/`S` table) show what it did: `x x` cancelled one job and then said
        it was cancelled, where typed slowly it cancels the next one; `a`, a job, enter, `G`,
        `x` cancelled the job that was last before the new one came."""
        screen = self.screen
        if isinstance(screen, ListingScreen):  # its rows show once the table has its columns
            deadline = time.monotonic() + self.CATCH_UP_S
            while not screen.table.columns and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await _within(screen.caught_up, self.CATCH_UP_S)
            return
        if self.panes_on_top:  # (the panes are not drawn while a screen covers them)
            # Or until a screen covers them: an action may ask first (`x` on a job that started
            # since the panes were read opens the question for a running one), and its
            # dialog's keys waited for panes it covered, 5 s (QA: `n` then `j x` cancelled
            # the row below the one meant, 5 s later).
            self._covered.clear()  # (they are on top now)
            await _within(self._acts_shown, self.CATCH_UP_S, or_=self._covered)
            if not self.panes_on_top:
                await settled(self.screen)  # the dialog: composed and focused
                return
        pane = self.focused
        if not isinstance(pane, JobPane):
            return
        for shown in (self._tab_shown, self._filter_shown):
            await _within(shown, self.CATCH_UP_S)
        await self._rows_shown(pane)

    async def _rows_shown(self, pane: JobPane) -> None:
        """Wait for the rows a move (or `g`, `G`) asked for: ``CATCH_UP_S``, and on while a load
        is being read, up to ``LOAD_WAIT_S`` (ctrl+c typed meanwhile ends the wait). With a load
        slower than ``CATCH_UP_S`` (a busy machine, a big database), the keys went on before the
        rows came, and `G`, 40 `k`, enter opened a job below the one meant. A load that fails
        ends the wait (``on_load_failed``)."""
        started = time.monotonic()
        while not pane.caught_up.is_set():
            waited = time.monotonic() - started
            if waited >= self.LOAD_WAIT_S or self._quit_typed():
                return
            if waited >= self.CATCH_UP_S and not self.loader.reading:
                return
            await _within(pane.caught_up, self.LOAD_LOOK_S)

    def _quit_typed(self) -> bool:
        return any(isinstance(key, events.Key) and key.key == "ctrl+c" for key in self._typed)

    def _ends(self) -> frozenset[str]:
        """The panes whose last rows are loaded (the user went to their end with `G`)."""
        return frozenset(pane.kind.name for pane in self.panes if pane.at_end)

    def _selected(self) -> dict[str, str]:
        """The job selected in each pane whose cursor was moved (one on the first row stays on
        the first row, whichever job comes there): the loads reach it wherever it went."""
        return {
            pane.kind.name: job_id for pane in self.panes if (job_id := pane.kept_selection)
        }

    def on_queue_snapshot(self, snapshot: QueueSnapshot) -> None:
        if not self.panes_on_top:  # shown once they are (_screen_changed)
            self._held = snapshot
            self.loader.loaded()
            return
        if snapshot.filter != self.filter_text:  # read for a filter since changed
            self.loader.loaded()
            self.request_load()
            return
        summaries = pane_summaries(snapshot.counts, snapshot.live_workers)
        # The queue column, once jobs of two queues were loaded (the panes load only the rows
        # they show: counting the queues of a million jobs at every tick is not worth it).
        names = {row.queue for rows in snapshot.panes.values() for row in rows}
        self.several_queues = self.several_queues or len(names) > 1
        for pane in self.panes:
            total, note = summaries[pane.kind.name]
            rows = snapshot.panes[pane.kind.name]
            more = len(rows) >= snapshot.limits.get(pane.kind.name, len(rows) + 1)
            pane.show(rows, total, snapshot.now, snapshot.config, note,
                      show_queue=self.several_queues, filter=snapshot.filter, more=more,
                      at_end=pane.kind.name in snapshot.ends)  # fmt: skip
        counts = snapshot.counts
        stats = self.stats
        stats.counts = counts
        self._counted_at = self.queue.clock()  # (the jobs' clock, a moment after the read)
        stats.show_throughput(snapshot.finished)
        if snapshot.health is not None:  # read every few seconds (Loader.HEALTH_EVERY_S)
            stats.show_health(snapshot.health)
        stats.busy = self.pool.busy
        stats.retiring = self.pool.retiring
        stats.starting = self.pool.starting
        self._say_problem()
        self._say_outage()
        stats.error = ""
        self.config_values = snapshot.config
        self.loads += 1
        self._filter_shown.set()
        if snapshot.actions >= self._actions.asked:
            self._acts_shown.set()
        self.loader.loaded()
        if self.loads == 1:
            self.call_after_refresh(self.after_the_keys, self._prepare_form)

    def on_health_loaded(self, message: HealthLoaded) -> None:
        self.stats.show_health(message.health)
        self.health_loads += 1

    def _say_problem(self, again: bool = False) -> None:
        """Why this app's workers stopped by themselves, if they did (said once, for a while,
        unless ``again``; the bar says "workers stopped" from then on)."""
        problem = self.pool.problem
        if problem is None:
            return
        self.stats.stopped = True
        self.stats.busy = self.pool.busy  # (the loads that set it may be failing)
        if again or not self._problem_said:
            self._problem_said = True
            self.notify(f"This app's workers stopped: {problem}", severity="error", timeout=30,
                        markup=False)  # fmt: skip

    def _say_outage(self) -> None:
        """The bar says while this app's workers cannot use the database (their jobs' results
        wait): a full disk lets the panes' reads through, and they showed "▶ running" (QA).
        Said once as a notice too, in the words of the workers' log."""
        outage = self.pool.outage
        if outage and not self.stats.outage:
            self.notify(f"This app's workers cannot use the database ({outage}); they keep "
                        "trying, and their jobs' results wait.", severity="warning", timeout=10,
                        markup=False)  # fmt: skip
        self.stats.outage = outage

    def on_load_failed(self, message: LoadFailed) -> None:
        self._say_problem()
        self._say_outage()
        self.stats.error = message.error
        self._filter_shown.set()  # (keys typed ahead wait no longer: no rows are coming)
        self._acts_shown.set()
        for pane in self.panes:
            pane.rows_not_coming()
        self.loader.loaded()

    def on_pool_event(self, event: PoolEvent) -> None:
        self._pool_news.clear()  # before the load: news from now on asks for another
        self._tick()

    def on_data_table_row_highlighted(self, event: JobPane.RowHighlighted) -> None:
        pane = event.data_table
        if isinstance(pane, JobPane) and pane.near_the_end:
            self.request_load()  # scrolling on: load the next rows

    def on_done(self, done: Done) -> None:
        self.notify(done.text, severity=done.severity, markup=False)  # type: ignore[arg-type]
        self.request_load()

    def on_carried(self, message: Carried) -> None:
        self.loader.request(at_once=True)  # the keys typed next wait for it (keys_may_go_on)

    # -- the worker pool ----------------------------------------------------------------------

    def _pool_event(self, event: JobEvent) -> None:
        """Called in a worker thread: hand the news to the UI thread, once until it has read it.
        A busy pool starts and ends thousands of jobs a second; one load shows them all, and a
        message each kept the UI thread busy with them (keys waited behind)."""
        if not self._pool_news.is_set():
            self._pool_news.set()
            self.post_message(PoolEvent(event.kind, event.job.id))

    def watch_threads(self) -> None:
        self._want_workers()

    def watch_paused(self) -> None:
        self._want_workers()

    def _want_workers(self) -> None:
        self.pool.want(self.threads, self.paused)
        # Whether they are still starting, as of now: the bar had it from the last load, and
        # `p` pressed just after the start read "◌ starting" until the next (CI).
        self.stats.starting = self.pool.starting

    def action_threads(self, change: int) -> None:
        if self._quitting or self._stopped_by_problem():
            return
        threads = max(0, min(self.threads + change, MAX_THREADS))
        if threads == self.threads:  # at a bound: say so, the key was not lost
            at = f"at most {MAX_THREADS} threads" if threads else "no thread left: watching only"
            self.notify(at, severity="warning", timeout=3)
        self.threads = threads

    def action_pause(self) -> None:
        if not self._stopped_by_problem():
            self.paused = not self.paused

    def _stopped_by_problem(self) -> bool:
        """`+`, `-` and `p` once the workers stopped by themselves: said again, not applied
        (the bar read "3 threads", "paused", over workers that ran nothing)."""
        if self.pool.problem is None:
            return False
        self._say_problem(again=True)
        return True

    # -- panes ----------------------------------------------------------------------------------

    def _focused_pane(self) -> JobPane | None:
        return self.focused if isinstance(self.focused, JobPane) else None

    def _in_sight(self, pane: JobPane | None) -> bool:
        """Whether the job selected in ``pane`` is in sight: a key acts on no job the user
        cannot see (in a terminal too short to show one, it says so), or will see at the next
        refresh (JobPane.selection_coming_in_sight)."""
        if pane is None or pane.selection_coming_in_sight:
            return True
        if pane.shows_rows:  # (scrolled away with the mouse wheel: the cursor stays put)
            self.notify("The selected job is out of sight: move to it first", severity="warning")
        else:
            self.notify("No job in sight: the terminal is too short to show one",
                        severity="warning")  # fmt: skip
        return False

    def _cycle(self, step: int) -> None:
        panes = self.panes
        current = self._focused_pane()
        index = panes.index(current) if current in panes else -step
        # At once, not with Widget.focus() (which waits its turn behind the keys already typed):
        # `shift+tab r` typed ahead must retry in the pane shift+tab chose.
        pane = panes[(index + step) % len(panes)]
        screen = pane.screen  # its own: the palette may still be the current one
        screen.set_focus(pane)
        if screen.maximized is not None:  # (the palette's "Maximize"): the pane shown moves on
            screen.maximize(pane)  # QA: focus went on to panes out of sight
            # The keys typed next wait for it to be laid out: before, it had no rows in sight,
            # and `tab tab x` said "No job in sight" (QA, 5 of 7).
            self._tab_shown.clear()
            self.call_after_refresh(self._tab_shown.set)

    def action_next_pane(self) -> None:
        self._cycle(1)

    def action_previous_pane(self) -> None:
        self._cycle(-1)

    # -- actions with forms ---------------------------------------------------------------------

    def action_enqueue(self) -> None:
        default = self.config_values.get("max-retries", KEYS["max-retries"].default)
        form = self._enqueue_form(default)
        if form is not None:
            self.push_screen(ENQUEUE_FORM, self._enqueue)

    def _enqueue_form(self, default: int | float) -> EnqueueScreen | None:
        """The enqueue form, made once and shown again emptied (None: it is open already).
        Composing and styling its widgets every time was half of what `a` cost the UI thread."""
        form = self._form
        if form is not None and form in self.screen_stack:
            return None
        if form is None or form.default_max_retries != default:
            if form is not None:
                self.uninstall_screen(ENQUEUE_FORM)
            form = self._form = EnqueueScreen(default, self.enqueue_queue)
            self.install_screen(form, ENQUEUE_FORM)
        elif form.is_mounted:  # shown before: as new
            form.show_again({})
        return form

    def _prepare_form(self) -> None:
        """Make the enqueue and config forms ahead, once the panes are shown, so that the first
        `a` or `c` only shows one: making a screen of two dozen widgets cost that key 150 ms of
        the UI thread. Keys typed meanwhile go first (``after_the_keys``): `a` typed as the app
        opened waited for both forms to be made, and then the first showing of its own."""
        default = self.config_values.get("max-retries", KEYS["max-retries"].default)
        form = self._enqueue_form(default)
        if form is not None and not form.is_running:
            self._get_screen(ENQUEUE_FORM)  # the first step of Textual's push: mounts it
        self.call_after_refresh(self.after_the_keys, self._prepare_config_form)

    def _prepare_config_form(self) -> None:
        """The config form too, after a frame of its own (refilled when `c` shows it): made
        with the enqueue form, the two held the UI thread at once, and a key typed then waited
        for both."""
        if self._config_form is None and self._config_screen() is not None:
            self._get_screen(CONFIG_FORM)

    def _enqueue(self, spec: JobSpec | None) -> None:
        if spec is not None:
            self._act(partial(self._enqueue_now, spec))

    def _enqueue_now(self, spec: JobSpec) -> str:
        """In the actions' thread. A job not enqueued (a full disk, the server away) is said with
        its command, so that what was typed is not lost (QA). The form is not filled in again
        with it: keys typed ahead into a form so filled joined two commands into one (QA)."""
        try:
            job = self.queue.enqueue(spec)
        except Exception as exc:
            shown = shorten(escaped_line(spec.command), UNSENT_SHOWN)
            # With what else was typed in the form (QA: only the command was said).
            # A JSON job's own keys too (QA: a duplicate id said only the command and queue).
            given = [f"{name.replace('_', ' ')} {value}" for name, value in (
                ("id", spec.id), ("after", " ".join(spec.after or ()) or None),
                ("max_retries", spec.max_retries), ("priority", spec.priority),
                ("timeout", spec.timeout), ("delay", spec.delay),
                ("run_at", None if spec.run_at is None else utc_time(spec.run_at)),
                ("cwd", spec.cwd),
                ("queue", None if spec.queue == DEFAULT_QUEUE else spec.queue),
            ) if value is not None]  # fmt: skip
            options = f" ({', '.join(given)})" if given else ""
            raise QueueError(f"Not enqueued ({error_text(exc)}): {shown}{options}") from None
        return f"Enqueued {job.id}"

    def action_config(self) -> None:
        if self._config_screen() is not None:
            self.push_screen(CONFIG_FORM, self._save)

    def _config_screen(self) -> ConfigScreen | None:
        """The config form, made once and shown again with the values as they are now (None:
        it is open already)."""
        form = self._config_form
        if form is None:
            form = self._config_form = ConfigScreen(self.config_values)
            self.install_screen(form, CONFIG_FORM)
        elif form in self.screen_stack:
            return None
        elif form.is_mounted:
            form.refill(self.config_values)
        return form

    def _save(self, changes: dict | None) -> None:
        if changes is None:
            return
        if not changes:
            self.notify("Config unchanged")
            return

        def said(keys: Iterable[str]) -> str:
            return ", ".join(f"{key} = {escaped_line(str(changes[key]))}" for key in keys)

        def save() -> str:
            saved: list[str] = []
            for key, value in changes.items():
                try:
                    self.queue.config_set(key, value)
                except Exception as exc:  # what was not saved, said (QA: "database error" only)
                    left = [each for each in changes if each not in saved]
                    also = f"; saved: {said(saved)}" if saved else ""
                    raise QueueError(f"Not saved ({error_text(exc)}): {said(left)}{also}") from None
                saved.append(key)
            return f"Saved {said(changes)}"

        self._act(save)

    def action_details(self) -> None:
        pane = self._focused_pane()
        if not self._in_sight(pane):
            return
        job_id = pane.selected_id if pane else None
        if job_id is None:
            self.notify("No job selected", severity="warning")
            return
        self.push_screen(DetailsScreen(self.queue, job_id))

    def action_retry(self) -> None:
        pane = self._focused_pane()
        if not self._in_sight(pane):
            return
        if pane is None or pane.kind.name != "dead":
            self.notify("Select a job in the Dead pane to retry it", severity="warning")
            return
        job_id = pane.selected_id
        if job_id is None:
            self.notify("The DLQ is empty", severity="warning")
            return
        # Dead or cancelled alike (SPEC 6); the engine refuses a job retried meanwhile.
        self._act(lambda: f"Retrying {self.queue.retry([WholeId(job_id)])[0].id}")

    def action_retry_all(self) -> None:
        dead = self.stats.counts.get(State.DEAD, 0)  # the pane lists cancelled jobs too
        if not dead:
            self.notify("The DLQ is empty", severity="warning")
            return
        jobs = "job" if dead == 1 else "jobs"
        question = f"Put {dead:,} dead {jobs} back to pending, to run again?"
        # The jobs counted: those dead when the count was read, not those that died while the
        # question was open (QA: "Put 1 dead job back" retried 3).
        dead_by = self._counted_at

        def answer(yes: bool | None) -> None:
            if yes:
                self._act(partial(self._retry_all_dead, dead_by))

        self.push_screen(ConfirmScreen("Retry all dead jobs", question, "Retry all"), answer)

    def _retry_all_dead(self, dead_by: float | None) -> str:
        retried = len(self.queue.retry_all_dead(dead_by))
        return f"Retrying {retried:,} dead {'job' if retried == 1 else 'jobs'}"

    # -- controlling a job: cancel (`x`), edit (`e`), its live output (`l`) -------------------

    def _selected_row(self) -> JobRow | None:
        pane = self._focused_pane()
        if not self._in_sight(pane):
            return None
        row = pane.selected_row if pane else None
        if row is None:
            self.notify("No job selected", severity="warning")
        return row

    def action_cancel_job(self) -> None:
        row = self._selected_row()
        if row is None:
            return
        if row.state in FINAL:
            self.notify(f"{row.id} is {row.state}: nothing to cancel", markup=False)
            return
        if row.state not in ACTIVE:
            self._act(partial(self._cancel_waiting, row.id))
        else:
            self._confirm_cancel(row.id)

    def _confirm_cancel(self, job_id: str) -> None:
        """Ask before a running job is stopped (SPEC 5), then stop it."""
        question = f"{job_id} is running: stop it (its process is killed) and cancel it?"

        def answer(yes: bool | None) -> None:
            if yes:
                self._act(partial(self._cancel_running, job_id))

        self.push_screen(ConfirmScreen("Cancel a running job", question, "Cancel it", "Keep"),
                         answer)  # fmt: skip

    def _cancel_waiting(self, job_id: str) -> str | None:
        """In a worker thread: cancel a job the panes show waiting. The panes are up to a
        refresh old: a job that has started since is not stopped unasked (its process killed
        by an `x` meant for a waiting job); the question is asked first, as for a running one."""
        try:
            return f"Cancelled {self.queue.cancel([WholeId(job_id)], running=False)[0].id}"
        except JobRunning:
            self.call_from_thread(self._confirm_cancel, job_id)
            return None

    def _cancel_running(self, job_id: str) -> str | None:
        """In the actions' thread: ask the job's worker (any process) to stop it; wait for that
        on a thread of its own, so that the actions asked after it do not wait too. The keys
        typed after it do (keys_may_go_on), until the panes show the job stopped: while it
        still showed running, `x y x y` asked the same job twice (QA)."""
        job = self.queue.cancel([WholeId(job_id)])[0]
        if job.state not in ACTIVE:  # it ended meanwhile: cancelled at once, if it was waiting
            return f"Cancelled {job.id}"
        with self._stopping_lock:
            self._stopping += 1
        threading.Thread(target=self._carry_out, args=(partial(self._stopped, job),),
                         name="queuectl-cancel", daemon=True).start()  # fmt: skip
        return None

    def _stopped(self, job: Job) -> str:
        try:
            stopped = self.queue.wait_stopped([job.seq], CANCEL_WAIT_S)
        finally:
            with self._stopping_lock:
                self._stopping -= 1
        if stopped:
            return f"Cancelled {job.id} (stopped)"
        return f"Cancel of {job.id} asked: its worker has not stopped it yet"

    def _actions_settled(self) -> int:
        """The actions carried out, for a load to tell whether it shows them all (see
        on_queue_snapshot): less the stops still awaited, whose jobs still show running."""
        with self._stopping_lock:
            return self._actions.done - self._stopping

    def action_edit(self) -> None:
        row = self._selected_row()
        if row is None:
            return
        if row.state not in CLAIMABLE:
            self.notify(f"Only a waiting job can be edited: {row.id} is {row.state}",
                        severity="warning", markup=False)  # fmt: skip
            return
        default = self.config_values.get("max-retries", KEYS["max-retries"].default)

        def edited(outcome: tuple[str, str] | None) -> None:
            if outcome is not None:
                self.notify(outcome[0], severity=outcome[1], markup=False)  # type: ignore[arg-type]
                self._act(lambda: None)  # done by the form: the keys typed next wait to see it

        self.push_screen(EditScreen(self.queue, row, self.clock(), default), edited)

    def action_output(self) -> None:
        row = self._selected_row()
        if row is not None:
            self.push_screen(OutputScreen(self.queue, row.id))

    def _act(self, do: Callable[[], str | None]) -> None:
        """Run a queue operation off the UI thread, after those asked for before it (typed
        ahead, `a … enter` six times stored the jobs out of order); report how it went (None:
        it says so itself)."""
        self._acts_shown.clear()  # the keys typed next wait for the panes to show it
        self._actions.add(partial(self._carry_out, do))

    def _carry_out(self, do: Callable[[], str | None]) -> None:
        try:
            Done.report(do, self)
        finally:
            self.queue.close()

    # -- the filter (`/`) --------------------------------------------------------------------

    def action_filter(self) -> None:
        bar = self.filter_bar
        pane = self._focused_pane()
        if pane is not None:
            self._filter_from = pane
        # The pane keeps its room while the filter is typed (no pane has the focus: in a short
        # terminal every pane showed its title only, and the matches only after enter, QA).
        for each in self.panes:
            each.set_class(each is getattr(self, "_filter_from", None), "-room")
        bar.display = True
        # At once: the keys typed right after `/` are the filter's text.
        bar.input.screen.set_focus(bar.input)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.filter_bar.input:
            self.filter_text = event.value.strip()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.filter_bar.input:  # keep the filter, back to the panes
            event.stop()
            self.filter_bar.display = bool(self.filter_text)
            self._back_to_panes()

    def action_clear_filter(self) -> None:
        bar = self.filter_bar
        if not bar.display and not self.filter_text:
            return
        bar.input.value = ""
        self.filter_text = ""
        bar.display = False
        self._back_to_panes()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, JobPane):  # the pane focused has the room (see -room)
            self._no_room_kept()

    def _no_room_kept(self) -> None:
        for each in self.panes:
            each.remove_class("-room")

    def _back_to_panes(self) -> None:
        """From the filter's field to the pane `/` was typed in; where the user has moved to a
        pane since (`/ x enter tab tab escape`), they stay there: the key after `escape` acts
        on the row they look at (`x` cancelled a job of the pane left, QA)."""
        self._no_room_kept()
        if self._focused_pane() is not None:
            return
        pane = getattr(self, "_filter_from", None) or self.panes[0]
        pane.screen.set_focus(pane)

    def watch_filter_text(self) -> None:
        self._filter_shown.clear()
        self.request_load()

    # -- queues (`Q`) and schedules (`S`) ---------------------------------------------------

    def action_queues(self) -> None:
        if not isinstance(self.screen, QueuesScreen):
            self.push_screen(QueuesScreen(self.queue))

    def action_schedules(self) -> None:
        if not isinstance(self.screen, SchedulesScreen):
            self.push_screen(SchedulesScreen(self.queue))

    # -- quitting -------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; if this app's workers run jobs, ask, then let them finish first."""
        if self._quitting:
            return
        if not self._still_running():
            # A result waiting for the database is waited for: said (QA: the app sat a minute
            # showing only "stopping").
            self._stop_and_exit(wait_screen=bool(self.pool.results_waiting))
            return

        def question() -> str:
            # Asked again while shown: a cancel typed ahead may stop a job, a hook may end.
            busy, hooks = self.pool.busy, self.pool.hooks
            if not busy and not hooks:
                return "No job is running in this app's workers now. Quit?"
            one = busy + hooks == 1
            return (
                f"{running(busy, hooks, '')} {'is' if one else 'are'} running in this app's "
                f"workers. Quit once {'it finishes' if one else 'they finish'}?\n"
                "(No new job is started once you answer yes.)"
            )

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop_and_exit(wait_screen=bool(self._still_running()))

        self.push_screen(QuitQuestion(question), answer)

    def stop_signalled(self) -> None:
        """SIGTERM or SIGHUP (see ``signals.py``): quit as a "yes" to `q` does, without asking."""
        if not self._quitting:
            self._stop_and_exit(wait_screen=bool(self._still_running()))

    def _still_running(self) -> str:
        """What this app's workers run now, in words ("": nothing): jobs, and hooks (a quit
        waits for both, a hook at most its 30 s, and then for the hooks their ends made due;
        a quit with nothing running leaves the hooks due but not started to the next
        worker)."""
        return running(self.pool.busy, self.pool.hooks)

    def _quit_waits_for(self) -> str:
        """What a quit waits for, in words ("" for nothing more): jobs and hooks to finish, and
        results to be stored once the database answers."""
        said = []
        if still := self._still_running():
            said.append(f"{still} to finish")
        if waiting := self.pool.results_waiting:
            said.append(f"{waiting} result{'s' if waiting != 1 else ''} to be stored")
        return " and ".join(said)

    def _quit_waits_why(self) -> str:
        """Why a quit waits for the database ("" if it does not): as the panes see it now,
        else as the workers last said it (QA: the reason the workers gave as the server shut
        down stayed, past its restart); or, before they said anything (another process's write
        lock, said only after a while), that results wait for it (QA: the dialog said nothing
        for 30 s)."""
        if self.pool.outage:
            return self.stats.error or self.pool.outage
        silent = self.pool.unanswered_for
        if silent is not None and silent >= QUIT_DIALOG_AFTER_S:
            # A network that drops packets is said as an outage only once a connection gives
            # up (a connect's timeout, a statement's 15 s): the dialog said nothing meanwhile.
            return no_answer(silent)
        if self.pool.results_waiting:
            return ("another process may hold its write lock" if self.queue.is_sqlite
                    else "it has not answered yet")  # fmt: skip
        return ""

    def _stop_and_exit(self, wait_screen: bool) -> None:
        self._quitting = True
        self.stats.stopping = True
        self.pool.stop(hooks=wait_screen)  # waiting for jobs: for the hooks of their ends too
        if wait_screen:
            self._show_stopping()
        self._join_pool()

    def _show_stopping(self) -> None:
        if not isinstance(self.screen, StoppingScreen):
            self.push_screen(StoppingScreen(self._quit_waits_for, self.pool.kill,
                                            self._quit_waits_why, lambda: self.pool.busy,
                                            self.pool.give_up))  # fmt: skip

    @work(thread=True, group="quit", exit_on_error=False)
    def _join_pool(self) -> None:
        while not self.pool.join(QUIT_POLL_S):
            if self._quit_waits_why():
                # The workers' last steps wait for the database, though no job runs: said,
                # with the way out (it was 40 s of "stopping" in the bar, the network silent).
                self.call_from_thread(self._show_stopping)
                self.pool.join()
                break
        # What keys asked for before `q` is done before the app ends (an enqueue typed ahead).
        self._actions.wait(ACTIONS_AT_EXIT_S)
        self.call_from_thread(self.exit)

    # -- the command palette --------------------------------------------------------------------

    # The actions of keys that a user typing into the filter types into it: the footer does not
    # offer them while it has the focus ("+/- Threads" was shown while `+` went into the text).
    TYPED_INTO_THE_FILTER = frozenset(
        binding.action.split("(")[0] for binding in BINDINGS
        if len(binding.key) == 1 or binding.key in ("slash", "plus", "minus")
    )  # fmt: skip

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        bar = getattr(self, "filter_bar", None)
        if bar is not None and action in self.TYPED_INTO_THE_FILTER and self.focused is bar.input:
            return False
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for binding in (*self.BINDINGS, *JobPane.BINDINGS):
            if isinstance(binding, Binding) and binding.tooltip:
                key = self.get_key_display(replace(binding, key_display=None))
                action = partial(self.run_action, binding.action.removeprefix("app."))
                yield SystemCommand(binding.tooltip, f"key: {key}", action)
        if isinstance(screen, ListingScreen):  # the queues' or schedules' own keys
            for binding in screen.BINDINGS:
                if isinstance(binding, Binding) and binding.tooltip:
                    key = self.get_key_display(replace(binding, key_display=None))
                    yield SystemCommand(binding.tooltip, f"key: {key}",
                                        partial(screen.run_action, binding.action))  # fmt: skip
        yield from super().get_system_commands(screen)


def run_app(target: str | None, workers: int = 2, queues: tuple[str, ...] | None = None) -> int:
    """Open the queue at ``target`` and run the TUI with ``workers`` worker threads (claiming
    jobs of ``queues`` only, if given). SIGTERM and SIGHUP stop it as `worker start` stops.
    Returns the exit code (see :func:`_exit_code`)."""
    queue = Queue(target)
    app = QueueApp(queue, workers=workers, queues=queues)
    read_escape_then_key()
    app.signals = StopSignals(
        lambda: app.loop, app.stop_signalled,
        # Not on the handler's own thread: it may have interrupted one holding the pool's lock.
        lambda: threading.Thread(target=app.pool.kill, name="kill", daemon=True).start(),
        lambda: threading.Thread(target=_end_with_the_jobs, args=(app,), name="hangup",
                                 daemon=True).start(),  # fmt: skip
    ).install()
    try:
        app.run()
    finally:  # however the app ended, this process's workers stop gracefully
        if still := app._still_running():
            with contextlib.suppress(OSError, ValueError):  # the terminal may be gone
                print(f"Waiting for {still} to finish…", file=sys.stderr)
        app.pool.join()
        if not app.pool.given_up:
            # (Else not: peewee closes a connection under the lock that a connect still
            # under way holds, for its timeout: the quit waited 8 s more, twice a connect.)
            queue.close()
        app.signals.restore()
        if unstored := app.pool.unstored_said():
            with contextlib.suppress(OSError, ValueError):
                print(f"Error: {unstored}", file=sys.stderr)
    return _exit_code(app)


def _exit_code(app: QueueApp) -> int:
    """0, or as `worker start`'s: 128 + the signal after a second one killed the running jobs
    (143 for SIGTERM), so that a supervisor can tell a hard stop from a clean one (QA: 0);
    1 where results could not be stored by the stop (QA: a quit in an outage said nothing)."""
    received = app.signals.received if app.signals is not None else []
    if len(received) > 1:
        return 128 + received[1]
    return 1 if app.pool.unstored_said() else 0


def _end_with_the_jobs(app: QueueApp) -> None:
    """After SIGHUP: once the pool has stopped (its running jobs ended and stored, the worker
    unregistered), end the process, whether or not the app's loop could end by itself."""
    app.pool.join()
    if not app.pool.given_up:  # (see run_app)
        with contextlib.suppress(Exception):  # this thread's connection, if it opened one
            app.queue.close()
    os._exit(_exit_code(app))


async def _within(
    event: asyncio.Event, timeout: float, or_: asyncio.Event | None = None
) -> None:
    """Return once ``event`` (or ``or_``) is set, or after ``timeout`` seconds."""
    events = [each for each in (event, or_) if each is not None]
    if any(each.is_set() for each in events):
        return
    waits = [asyncio.ensure_future(each.wait()) for each in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for each in waits:
            each.cancel()
