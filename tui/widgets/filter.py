"""The filter bar (`/`): the text every pane is filtered by, shown while a filter is on.

The bar only edits and shows the text; the app owns the filter (``QueueApp.filter_text``) and
the loader applies it in the database (``Queue.pane_matching``).
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label


class FilterInput(Input):
    """The filter's input: a paste is one line of text, its control characters (an escape
    sequence, line ends) left out: an input draws its text as it is, and the terminal would
    obey them."""

    def _on_paste(self, event: events.Paste) -> None:
        text = "".join(c for c in event.text if c.isprintable())
        if text != event.text:
            event.prevent_default()
            event.stop()
            if text:
                self.insert_text_at_cursor(text)


class FilterBar(Horizontal):
    """``/`` and an input; hidden while no filter is on and the input is not being typed in."""

    def compose(self) -> ComposeResult:
        yield Label("/ filter", id="filter-label")
        self.input = FilterInput(
            placeholder="id, command or queue contains…", id="filter", compact=True,
            select_on_focus=False,
        )  # fmt: skip
        yield self.input
        yield Label("⏎ keep · esc clear", id="filter-hint")

    def on_mount(self) -> None:
        self.input.cursor_blink = not self.app.is_headless  # steady in tests and screenshots

    @property
    def text(self) -> str:
        return self.input.value
