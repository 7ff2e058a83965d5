"""The bar at the top: what the queue holds, what this app's workers do, and how fast jobs finish."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from queuectl.models import State
from queuectl.reconnect import DISK_FULL
from queuectl.text import duration

from ..data import WINDOW_S
from ..messages import Health
from ..text import literal


COUNTS = (  # label, state, glyph
    ("pending", State.PENDING, "●"),
    ("retrying", State.FAILED, "↻"),
    ("running", State.PROCESSING, "▶"),
    ("done", State.COMPLETED, "✔"),
    ("dead", State.DEAD, "✖"),
    ("cancelled", State.CANCELLED, "⊘"),  # shown once there are some
)
SHOWN_WHEN_ZERO = {State.PENDING, State.FAILED, State.PROCESSING, State.COMPLETED, State.DEAD}
CHART_WIDTH = 17  # the throughput chart and its margin (app.tcss)
# What gives way, first to last, when the bar cannot show all: the counts never do (a bar of
# 120 columns hid the dead count once the rate read "6,300/min"; at 100, all but "3,50").
GIVE_WAY = ("health", "throughput", "rate", "brand")
NOT_WHEN_NARROW = ("throughput", "brand", "health")  # below QueueApp.NARROW columns


class StatsBar(Horizontal):
    """Counts per state, this app's worker threads (and whether paused), and throughput."""

    counts: reactive[dict[str, int]] = reactive(dict, always_update=True, init=False)
    threads = reactive(0, init=False)
    paused = reactive(False, init=False)
    busy = reactive(0, init=False)
    retiring = reactive(0, init=False)  # threads taken away, still running their last job
    stopping = reactive(False, init=False)
    starting = reactive(False, init=False)  # the workers' start is under way (it may wait)
    stopped = reactive(False, init=False)  # the workers stopped by themselves (their file went)
    outage = reactive("", init=False)  # why the workers cannot use the database ("" if they can)
    compact = reactive(False, toggle_class="-compact", init=False)
    error = reactive("", init=False)  # why the last refresh failed; "" once one works again

    def __init__(self, name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.queue_name = name
        self._per_second: list[int] = [0] * WINDOW_S
        self._put_texts: dict[str | None, Text] = {}  # what each Static shows (see _put)
        # Kept, not queried: a snapshot may still arrive while the app closes.
        self._counts = Static(id="counts")
        self._workers = Static(id="workers")
        self._chart = Sparkline([0] * WINDOW_S, id="throughput")
        self._rate = Static(id="rate")
        self._health = Static(id="health")
        self.health = Health()

    def compose(self) -> ComposeResult:
        self._brand_static = Static(self._brand(), id="brand")
        yield self._brand_static
        yield self._counts
        yield self._workers
        yield self._chart
        yield self._rate
        yield self._health

    def _brand(self) -> Text:
        return Text(f" {self.queue_name} ", style="bold")  # a Text: the name is shown literally

    def on_mount(self) -> None:
        self._show_counts()
        self._show_workers()
        self._show_rate()
        self._show_health()

    # -- the last hour's failure rate and run-time p95 --------------------------------------

    def show_health(self, health: Health) -> None:
        self.health = health
        self._show_health()

    def _show_health(self) -> None:
        """``1h 25% failed · p95 1m11s``: the runs that ended in the last hour (all queues)."""
        muted = self.colors["muted"]
        text = Text("1h ", style=muted, no_wrap=True, overflow="ellipsis")
        rate = self.health.failure_rate
        if rate is None:
            text.append("—", style="bold")
        else:
            style = self.colors[State.DEAD] if self.health.failures else self.colors[State.COMPLETED]
            text.append(f"{rate:.0%}", style=f"bold {style}")
        text.append(" failed · p95 ", style=muted)
        p95 = self.health.run_p95
        text.append(duration(p95) if p95 is not None else "—", style="bold")
        text.append(" ")
        self._put(self._health, text)
        self._health_text = text
        self.fit()

    # -- throughput ---------------------------------------------------------------------------

    def show_throughput(self, per_second: list[int]) -> None:
        """Jobs finished (completed or dead, by any worker) in each second of the last minute."""
        self._per_second = list(per_second) or [0]
        self._show_rate()

    @property
    def finished_last_minute(self) -> int:
        return sum(self._per_second)

    @property
    def colors(self) -> dict[str, str]:
        return self.app.theme_variables  # theme.py

    def _show_rate(self) -> None:
        self._chart.data = self._per_second
        rate = Text(f" {self.finished_last_minute:,}", style="bold")
        rate.append("/min ", style=self.colors["muted"])
        self._put(self._rate, rate)
        self._rate_text = rate
        self.fit()

    # -- the text -------------------------------------------------------------------------------

    def _show_counts(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        self.set_class(bool(self.error), "-error")
        if self.error:
            text.append("⚠ cannot read the queue: ", style=f"bold {self.colors[State.DEAD]}")
            # A driver's message may quote anything. "database error: " said again: at 80
            # columns it left "terminating connection due to" and cut the reason (QA).
            text.append(literal(self.error.removeprefix("database error: ")))
            self._count_texts = (text, text)
            self.fit()
            return
        glyphs = text.copy()
        for label, state, glyph in COUNTS:
            value = self.counts.get(state, 0)
            if not value and state not in SHOWN_WHEN_ZERO:
                continue
            style = self.colors[state] if value else self.colors["muted"]
            glyphs.append(f"{glyph}{value:,} ", style=f"bold {style}")
            text.append(f"{value:,}", style=f"bold {style}")
            text.append(f" {label}  ", style=self.colors["muted"])
        self._count_texts = (text, glyphs)
        self.fit()

    def _show_workers(self) -> None:
        text = Text(no_wrap=True)
        if self.stopped:  # its threads and `p` mean nothing now: the jobs still ending, if any
            text.append("■ workers stopped", style=f"bold {self.colors[State.DEAD]}")
            if self.busy:
                text.append(f"  {self.busy}", style="bold")
                text.append(" busy ", style=self.colors["muted"])
            self._workers_text = text
            self._workers_short = Text("■ stopped ", style=f"bold {self.colors[State.DEAD]}")
            self.fit()
            return
        said, in_short, style = self._state()
        text.append(said, style=style)
        text.append(f"  {self.threads}", style="bold")
        text.append(" thread" if self.threads == 1 else " threads", style=self.colors["muted"])
        text.append(", ", style=self.colors["muted"])
        text.append(f"{self.busy}", style="bold")
        text.append(" busy ", style=self.colors["muted"])
        if self.retiring and not self.stopping:
            # Threads taken away (`-`) while running a job end after it: "1 thread, 3 busy"
            # read as a miscount. Counted by the pool: `-` `-` then `+` ran a new thread beside
            # the one retiring, and "1 thread, 1 busy" hid it.
            text.append(f"· {self.retiring} retiring ", style=self.colors["muted"])
        self._workers_text = text
        # Where the whole line does not fit: the threads and whether paused, in short (SPEC 5:
        # the bar shows them; below ~60 columns it showed the counts alone).
        self._workers_short = Text(f"{in_short} ", style=style)  # (off the bar's edge)
        self.fit()

    def _state(self) -> tuple[str, str, str]:
        """This app's workers' state: as the bar says it, in short, and its style."""
        threads = f"{self.threads} thread" if self.threads == 1 else f"{self.threads} threads"
        if self.stopping:
            return "⏳ stopping", "⏳ stopping", f"bold {self.colors[State.FAILED]}"
        if self.outage:  # their jobs wait for it (QA: "▶ running" over a full disk)
            style = f"bold {self.colors[State.DEAD]}"
            if DISK_FULL in self.outage:
                return "⚠ disk full", "⚠ disk full", style
            return "⚠ database lost", "⚠ db lost", style
        if self.starting:  # (behind another process's write lock, for up to a minute)
            return "◌ starting", f"◌ {threads}", self.colors["muted"]
        if self.paused:
            return "⏸ paused", f"⏸ {threads}", f"bold {self.colors[State.FAILED]}"
        if self.threads:
            return "▶ running", threads, f"bold {self.colors[State.COMPLETED]}"
        return "◌ watch only", "watch only", self.colors["muted"]

    # -- fitting it in ------------------------------------------------------------------------

    _count_texts: tuple[Text, Text] = (Text(), Text())  # with labels, with glyphs
    _workers_text = _workers_short = _rate_text = _health_text = Text()

    def on_resize(self) -> None:
        self.fit()

    def _put(self, static: Static, text: Text) -> None:
        """Textual repaints a Static on every update, the same text or not: an idle bar was
        drawn again every second, ~4.5 KB a second to the terminal (QA). Only a change is put."""
        if self._put_texts.get(static.id) != text:
            self._put_texts[static.id] = text
            static.update(text)

    def fit(self) -> None:
        """Every count, always: with labels where they fit (and the bar is not compact), else
        glyphs; then as much of the rest as fits, what gives way first hidden first."""
        if not self.is_mounted:
            return
        width = self.size.width
        narrow = self.has_class("-narrow")
        sizes = {
            "brand": self._brand().cell_len,
            "workers": self._workers_text.cell_len,
            "throughput": CHART_WIDTH,
            "rate": self._rate_text.cell_len,
            "health": self._health_text.cell_len,
        }
        shown = [name for name in sizes if not (narrow and name in NOT_WHEN_NARROW)]
        labels, glyphs = self._count_texts
        choices = [glyphs] if self.compact else [labels, glyphs]
        counts, workers = glyphs, self._workers_text
        for option in choices:
            needed = option.cell_len + 1  # its padding
            fitted = list(shown)
            for name in GIVE_WAY:
                if needed + sum(sizes[each] for each in fitted) <= width:
                    break
                if name in fitted:
                    fitted.remove(name)
            if needed + sum(sizes[each] for each in fitted) <= width:
                counts, shown = option, fitted
                break
        else:  # not even the counts and this app's workers: the counts, and them in short
            shown = [name for name in shown if name not in GIVE_WAY]
            if glyphs.cell_len + 1 + sizes["workers"] > width:
                workers = self._workers_short
                shown = ["workers"] if glyphs.cell_len + 1 + workers.cell_len <= width else []
        self._put(self._counts, counts)
        self._put(self._workers, workers)
        for widget in (self._brand_static, self._workers, self._chart, self._rate, self._health):
            widget.display = widget.id in shown

    def watch_counts(self) -> None:
        self._show_counts()

    def watch_compact(self) -> None:
        self.fit()  # (both forms of the counts are made at each change: it picks one)

    def watch_error(self) -> None:
        self._show_counts()

    def watch_threads(self) -> None:
        self._show_workers()

    def watch_paused(self) -> None:
        self._show_workers()

    def watch_busy(self) -> None:
        self._show_workers()

    def watch_retiring(self) -> None:
        self._show_workers()

    def watch_starting(self) -> None:
        self._show_workers()

    def watch_stopping(self) -> None:
        self._show_workers()

    def watch_stopped(self) -> None:
        self._show_workers()

    def watch_outage(self) -> None:
        self._show_workers()
