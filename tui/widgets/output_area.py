"""A job's whole stored output, read-only, made ready off the UI thread.

``TextArea.load_text`` of a job's 1 MiB of output took 345 ms of the UI thread (its lines wrapped
once at width 0, once at the widget's width, and once more when the scrollbar appeared and took a
column): `enter` on such a job answered in 550-680 ms, and a running job's details froze as long
every second its output grew. Here the document and its wrapping are built by the thread that
reads the job (:func:`prepare`), at the width the area has, and the UI thread only swaps them in
(:meth:`OutputArea.show`); the scrollbar's column is kept whether it shows or not, so its coming
does not wrap the lines again.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.document._document import Document
from textual.document._document_navigator import DocumentNavigator
from textual.document._wrapped_document import WrappedDocument
from textual.binding import Binding
from textual.widgets import TextArea

# TextArea's indent_width, which it expands tabs to: a terminal's tab stops, as `l` shows them (QA:
# the details drew a tab up to the next 4th column, the live output to the next 8th).
TAB_WIDTH = 8


@dataclass(frozen=True)
class Prepared:
    """Text ready to show: its document, wrapped at ``width`` (0: not wrapped)."""

    text: str
    document: Document
    wrapped: WrappedDocument
    width: int
    grew: bool  # the text shown before is where this one starts (a running job printed more)
    # The same run's text, its start dropped: it printed past the stored cap (1 MiB).
    moved_on: bool = False


# A line longer than this many rows of the area's width is shown as lines of at most that
# (each ending at its last space, where one is near): TextArea divides a whole line into its
# rows to draw any one of them, and a progress bar's 600 KB line (carriage returns, no newline)
# took a second a key (QA: `pagedown` 0.9-1.7 s). One row in this many may end short.
LONG_LINE_ROWS = 64


def prepare(text: str, width: int, shown: str = "", moved_on: bool = False) -> Prepared:
    """In any thread: ``text`` as a document wrapped at ``width`` (its very long lines cut, see
    LONG_LINE_ROWS); ``shown``, the text the area shows now (see :attr:`Prepared.grew`)."""
    document = Document(_long_lines_cut(text, LONG_LINE_ROWS * width))
    return Prepared(
        text, document, WrappedDocument(document, width, TAB_WIDTH), width,
        grew=bool(shown) and text.startswith(shown), moved_on=moved_on,
    )  # fmt: skip


def _long_lines_cut(text: str, most: int) -> str:
    """``text`` with each line longer than ``most`` characters cut into lines of at most that,
    each after its last space in its second half if it has one; the same cuts in a text that
    grew from it (a running job's): a reader's place stays where it was."""
    if most <= 0 or len(text) <= most:
        return text
    lines = text.split("\n")
    if all(len(line) <= most for line in lines):
        return text
    cut_lines = []
    for line in lines:
        while len(line) > most:
            at = line.rfind(" ", most // 2, most) + 1 or most
            cut_lines.append(line[:at])
            line = line[at:]
        cut_lines.append(line)
    return "\n".join(cut_lines)


class OutputArea(TextArea):
    """A read-only, soft-wrapped TextArea shown text :func:`prepare` made ready."""

    DEFAULT_CSS = """
    OutputArea {
        scrollbar-gutter: stable;
    }
    """
    # Read-only: the start and the end of the whole output, as in `less` and the `l` screen
    # (TextArea's home and end went to the ends of one line: 10,000 lines took 830 page-downs).
    BINDINGS = [
        Binding("g,home,ctrl+home", "output_start", "Start", show=False),
        Binding("G,end,ctrl+end", "output_end", "End", show=False),
    ]

    # The document its lines are wrapped for, and at what width (set by TextArea's __init__).
    _wrapped: tuple[WrappedDocument, int] | None = None

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", read_only=True, soft_wrap=True, id=id)
        self.cursor_blink = False
        self.indent_width = TAB_WIDTH
        self.shown = ""  # the text shown (read by the thread that prepares the next)
        self.shown_once = False  # whether show() has run
        self._asked: str | None = None  # g/G (start, end) asked before it had
        self._scroll_wanted = "start"

    @property
    def at_end(self) -> bool:
        """Whether the reader is at the end of the output (`G`), following it."""
        return self.shown_once and self.cursor_location == self.document.end

    def action_output_start(self) -> None:
        self._go("start")

    def action_output_end(self) -> None:
        self._go("end")

    def _go(self, end: str) -> None:
        """To the output's start or end; asked before the output is shown (`enter o G` typed
        at once: QA), once it is. The scroll follows once the lines are laid out: right after
        the text came, the cursor's line was not yet at the bottom."""
        if not self.shown_once:
            self._asked = end
            return
        self.move_cursor((0, 0) if end == "start" else self.document.end)
        self._scroll_wanted = end  # the last asked: `G g` typed at once ends at the start
        self.call_after_refresh(self._scroll)

    def _scroll(self) -> None:
        if self._scroll_wanted == "start":
            self.scroll_home(animate=False)
        else:
            self.scroll_end(animate=False)

    def _rewrap_and_refresh_virtual_size(self) -> None:
        # Textual wraps every line again whenever the area is resized (the fields above it
        # loading made it shorter) and whenever the scrollbar comes or goes: 220 ms of the UI
        # thread each time for 1 MiB. Here only when the width the lines wrap at did change
        # (the scrollbar's column is kept), or the document is new.
        wrapped = (self.wrapped_document, self.wrap_width)
        if wrapped != self._wrapped:
            self.wrapped_document.wrap(self.wrap_width, tab_width=self.indent_width)
            self._wrapped = wrapped
        self._line_cache.clear()
        self._refresh_size()

    def show(self, prepared: Prepared) -> None:
        """Show ``prepared``, as ``load_text`` would show its text. When the text grew, the
        reader's place is kept; else the area shows its start."""
        place, scrolled = self.cursor_location, self.scroll_offset
        at_end = self.at_end  # (G): it follows the end
        self.history.clear()
        self.document = prepared.document
        self.wrapped_document = prepared.wrapped
        self.navigator = DocumentNavigator(prepared.wrapped)
        self._build_highlight_map()  # plain text: empties the highlights and the line cache
        self._wrapped = (prepared.wrapped, prepared.width)
        self._rewrap_and_refresh_virtual_size()  # wraps again only if resized since
        if prepared.grew:
            self.move_cursor(place)
            self.scroll_to(scrolled.x, scrolled.y, animate=False)
        else:
            self.move_cursor((0, 0))
        self.shown = prepared.text
        self.shown_once = True
        asked, self._asked = self._asked, None
        if asked is None and (prepared.grew or prepared.moved_on) and at_end:
            asked = "end"  # a running job's new lines, as `l` shows them (QA)
        if asked is not None:
            self._go(asked)
        self.post_message(self.Changed(self).set_sender(self))
