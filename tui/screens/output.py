"""A job's output, live (`l`): new output appears as the job prints it, whichever process runs it.

A :class:`Follower` reads in a worker thread every ``POLL_S``: the job's progress (state, run,
bytes printed: no output), and its stored output only when the bytes printed moved. It posts
what is new as an :class:`OutputRead`; the screen appends it to a ``Log`` (text drawn as written,
never markup) after making control characters visible (:func:`queuectl.text.safe`). The log
follows the end unless the reader scrolled up; it follows again once they scroll back down.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Self

from rich.cells import get_character_cell_size
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from queuectl.errors import QueueError
from queuectl.models import State
from queuectl.queue import Queue, WholeId
from queuectl.reconnect import NO_ANSWER, ReadUnderWay, no_answer
from queuectl.text import OutputCursor, safe

from ..data import keep_looking
from ..keys import QUIT_ON_CTRL_C
from ..messages import OutputRead
from ..text import expand_tabs, literal

# How often the job's progress is read (a row's few columns, not its output). A worker stores
# output every OUTPUT_EVERY_S (0.75 s): read every 0.5 s, a line showed up to 1.28 s after it
# was printed, where SPEC 6 gives 1 s (QA).
POLL_S = 0.1
# Lines kept on screen, the first ones let go past it (a job may print for days); the status
# says how many. A whole stored tail (1 MiB) of 21-byte lines fits.
MAX_LINES = 50_000


class Follower:
    """Follows one job's output across reads (call :meth:`step` from one thread at a time): an
    :class:`~queuectl.text.OutputCursor` tells what of each read is new."""

    def __init__(self, queue: Queue, job_id: str) -> None:
        self.queue, self.job_id = queue, job_id
        self.seq: int | None = None
        self.cursor = OutputCursor()
        self.state: str | None = None
        self.gone = False  # the job was deleted, and that was said

    def step(self) -> OutputRead | None:
        """One look at the job: what changed since the last look, or None if nothing did."""
        queue, cursor = self.queue, self.cursor
        if self.seq is None:
            self.seq = queue.get(WholeId(self.job_id)).seq
        progress = queue.progress(self.seq)
        if progress is None:
            if self.gone:
                return None
            self.state, self.gone = None, True
            return OutputRead(None, error=f"job {self.job_id} was deleted")
        run = (progress.attempts, progress.started_at)
        if run == cursor.run and progress.output_bytes == cursor.shown:
            if progress.state == self.state:
                return None
            self.state = progress.state
            return OutputRead(str(progress.state), total=cursor.shown)
        job = queue.output_of(self.seq)
        if job is None:
            return None  # deleted between the two reads: the next look says so
        self.state = str(job.state)
        run = (job.attempts, job.started_at)
        new = cursor.advance(run, job.output or "", job.output_bytes, can_clear=True)
        return OutputRead(
            self.state, text=safe(new.text), reset=new.anew, skipped=new.skipped,
            total=cursor.shown,
        )


class OutputLog(Log):
    """The log of the output; its `end` follows the output again, at once (an animated scroll
    could end short of output that arrived meanwhile, and not follow).

    Lines longer than the log is wide are wrapped as they are written, at the width it has
    then, as the details wrap them (QA: a progress bar's line, made of carriage returns, kept
    growing out of sight at the right while the screen showed its first 107 columns, and each
    write measured the whole line again: 600 KB of it slowed every key). Resized, it wraps
    the lines it keeps again at its new width (QA: those written before were cut at the right
    edge, or stayed narrow)."""

    dropped = 0  # the first lines, let go past max_lines
    column = 0  # cells of the last line, as wrapped
    WIDEST = 400  # the width wrapped at before the log is laid out
    wrapped_at = 0  # the width the lines shown were wrapped at

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.written = [""]  # the lines kept, as written (the last one going on), unwrapped

    def _wrap_width(self) -> int:
        # (the scrollbar's column kept: one that comes later would cut what was wrapped)
        width = self.content_region.width - self.styles.scrollbar_size_vertical
        return width if width > 0 else self.WIDEST

    def on_resize(self) -> None:
        if self._wrap_width() == self.wrapped_at or self.written == [""]:
            return
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        text = "\n".join(self.written)
        super().clear()  # (Log's: the lines let go stay counted)
        self.column, self.written = 0, [""]
        self.write(text, scroll_end=at_end)

    @classmethod
    def _process_line(cls, line: str) -> str:
        return super()._process_line(expand_tabs(line))  # (Textual's counts characters)

    def _wrapped(self, data: str) -> str:
        """``data`` (lines ending at "\\n" alone, as safe() makes them) with a line end where
        the line it goes on would pass the log's width; tabs as spaces to their stops."""
        width = self.wrapped_at = self._wrap_width()
        pieces = []
        for index, line in enumerate(data.split("\n")):
            if index:
                pieces.append("\n")
                self.column = 0
            if "\t" in line:  # to the stops from where the line goes on
                line = expand_tabs(" " * self.column + line)[self.column :]
            while line:
                room = width - self.column
                if line.isascii():
                    fits = min(len(line), room)
                    cells = fits
                else:
                    fits, cells = _fitting(line, room)
                if fits == len(line):
                    pieces.append(line)
                    self.column += cells
                    break
                if fits == 0 and self.column == 0:  # a wide character in a narrower log
                    fits = 1
                pieces.append(line[:fits])
                pieces.append("\n")
                self.column = 0
                line = line[fits:]
        return "".join(pieces)

    def write(self, data: str, scroll_end: bool | None = None) -> Self:
        first, *more = data.split("\n")
        self.written[-1] += first
        self.written.extend(more)
        if len(self.written) > MAX_LINES:  # (what the log lets go of, at any width)
            del self.written[: len(self.written) - MAX_LINES]
        data = self._wrapped(data)
        # Lines end at "\n" alone: the text is made safe() first, the gap line too.
        held = max(len(self.lines), 1) + data.count("\n") if data else len(self.lines)
        # Textual's Log sizes itself before it drops the lines past max_lines, not after: past
        # MAX_LINES lines it was as tall as every line written, and its end showed nothing.
        super().write(data, scroll_end=False)
        self.dropped += held - len(self.lines)
        self.virtual_size = Size(self.virtual_size.width, self.line_count)
        if self.auto_scroll if scroll_end is None else scroll_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        return self

    def clear(self) -> Self:
        self.dropped = self.column = 0
        self.written = [""]
        return super().clear()

    def action_scroll_end(self) -> None:
        screen = self.screen
        if isinstance(screen, OutputScreen):
            screen.action_follow()
        else:
            super().action_scroll_end()


def _fitting(text: str, room: int) -> tuple[int, int]:
    """How many of ``text``'s first characters fit in ``room`` cells, and their cells."""
    cells = 0
    for index, character in enumerate(text):
        size = get_character_cell_size(character)
        if cells + size > room:
            return index, cells
        cells += size
    return len(text), cells


class OutputScreen(ModalScreen[None]):
    """The live output of one job."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("G", "follow", "Follow", show=False),  # `end` too: the log's own key
        Binding("g", "top", "Top", show=False),
        QUIT_ON_CTRL_C,
    ]

    def __init__(self, queue: Queue, job_id: str) -> None:
        super().__init__()
        self.queue, self.job_id = queue, job_id
        self.follower = Follower(queue, job_id)
        self._left = threading.Event()  # the screen is gone: its thread ends (keep_looking)
        self.state: str | None = None
        self.total = 0
        self.skipped = 0  # bytes of this run dropped from storage before they were shown
        self.error: str | None = None
        self.reads = 0  # reads applied (tests wait on it)
        self._look_under_way = ReadUnderWay()
        self._unanswered_said = False
        # At the end of the output, following it: until the reader scrolls up, and again once
        # they scroll back to the end (set by the log's scrolling, not by the output growing).
        self.following = True

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog live-output") as dialog:
            dialog.border_title = Text("Output of ") + literal(self.job_id)
            dialog.border_subtitle = "esc close · end follow"
            yield Static(Text("loading…", style=self.app.theme_variables["muted"]), id="output-status")
            log = OutputLog(id="live-output", max_lines=MAX_LINES, auto_scroll=False)
            yield log

    @property
    def log_view(self) -> OutputLog:
        return self.query_one("#live-output", OutputLog)

    def on_mount(self) -> None:
        self.set_focus(self.log_view)
        self.watch(self.log_view, "scroll_y", self._scrolled, init=False)
        keep_looking("queuectl-output", self.queue, self._left, self._look)
        if not self.queue.is_sqlite:  # (SQLite's reads wait for no one)
            self.set_interval(0.5, self._say_if_unanswered)

    def on_unmount(self) -> None:
        self._left.set()

    def _say_if_unanswered(self) -> None:
        """The status line says a read of the job unanswered for NO_ANSWER_SAID_S (PostgreSQL),
        and no longer once it is answered."""
        waited = self._look_under_way.unanswered_for()
        if waited is not None:
            self.error = no_answer(waited)
            self._unanswered_said = True
            self._show_status()
        elif self._unanswered_said:  # that read was answered (and posted what it found)
            self._unanswered_said = False
            if self.error is not None and self.error.startswith(NO_ANSWER):
                self.error = None
                self._show_status()

    def _look(self) -> float:
        """One step of the follower, posted if anything changed; a look every POLL_S."""
        with self._look_under_way.reading():
            return self._look_once()

    def _look_once(self) -> float:
        try:
            read = self.follower.step()
            if read is not None:
                self.post_message(read)
        except QueueError as exc:
            self.post_message(OutputRead(None, error=str(exc)))
        except Exception as exc:  # the database went away: say so, try again next time
            self.post_message(OutputRead(self.state, error=f"could not read the job: {exc}"))
            with contextlib.suppress(Exception):
                self.queue.recover()  # a broken connection: a new one at the next read
        return POLL_S

    def _scrolled(self) -> None:
        log = self.log_view
        self.following = log.is_vertical_scroll_end or log.max_scroll_y == 0
        self._show_status()

    def _to_the_end(self) -> None:
        self.log_view.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_output_read(self, read: OutputRead) -> None:
        read.stop()
        self.reads += 1
        log = self.log_view
        following = self.following
        self.state, self.error = read.state, read.error
        if read.error is None:
            self.total = read.total
        if read.reset:
            log.clear()
            self.skipped = read.skipped
        elif read.skipped:
            self.skipped += read.skipped
            gap = f"⋯ {read.skipped:,} bytes skipped ⋯"
            after = "\n" if log.lines and log.lines[-1] else ""  # the gap on a line of its own
            log.write(f"{after}{gap}\n", scroll_end=following)
        if read.text:
            log.write(read.text, scroll_end=following)
        if following:  # again once laid out (the first output arrives before the log is sized)
            self.call_after_refresh(self._follow)
        self._show_status()

    def _follow(self) -> None:
        """To the end, unless the reader scrolled up since (between a read and the refresh that
        lays it out: taken back to the end, the suite found, under load)."""
        if self.following:
            self._to_the_end()

    def _show_status(self) -> None:
        colors = self.app.theme_variables
        muted = colors["muted"]
        following = self.following
        text = Text(no_wrap=True, overflow="ellipsis")
        # (Each part's trailing space inside it: Textual drops one after a style's end.)
        if self.state is not None:
            text.append(f"{self.state} ", style=f"bold {colors.get(self.state, '')}")
            text.append(f"· {self.total:,} bytes ", style=muted)
        if self.skipped:
            text.append("· ", style=muted)
            text.append(f"{self.skipped:,} bytes skipped ", style=colors[State.FAILED])
        dropped = self.log_view.dropped if self.is_mounted else 0
        if dropped:
            text.append("· ", style=muted)
            lines = "line" if dropped == 1 else f"{dropped:,} lines"
            text.append(f"first {lines} not kept here ", style=colors[State.FAILED])
        if self.error:
            text.append("· " if self.state else "", style=muted)
            text.append(literal(f"{self.error} ", colors[State.DEAD]))
        if not following:
            text.append("· scrolled up: end to follow", style=muted)
        self.query_one("#output-status", Static).update(text)

    def action_follow(self) -> None:
        self.following = True
        self._to_the_end()
        self._show_status()

    def action_top(self) -> None:
        self.log_view.scroll_home(animate=False, immediate=True)

    def action_close(self) -> None:
        self.dismiss(None)
