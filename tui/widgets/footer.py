"""The footer: Textual's, composed again only when the keys it shows change, and wrapped onto
more rows when one row cannot show them all."""

from __future__ import annotations

from math import ceil

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey


class Footer(TextualFooter):
    """Textual recomposes its footer whenever its screen's bindings may have changed, which
    includes every time a form opens over the screen and every time it closes: the same keys
    each time, made and styled again as a dozen new widgets behind a key press. This one
    recomposes only when what it would show differs from what it shows.

    Textual's footer is one row, cut at the terminal's edge: at 80 columns the last keys shown
    were ``+/- Threads``, and ``p Pause`` and ``q Quit`` were not (SPEC 5: the footer shows the
    keys). When the keys do not fit in one row, this one lays them out in as few rows as hold
    them all, as a grid whose columns are as wide as their widest key."""

    _shown: tuple | None = None  # what the last compose showed (see _keys)

    def _keys(self) -> tuple:
        bindings = tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )
        return bindings, self.show_command_palette, self.compact

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys()
        yield from super().compose()
        self.call_after_refresh(self._wrap)

    def bindings_changed(self, screen: Screen) -> None:
        if (
            self._shown is not None
            and self.is_attached
            and screen is self.screen
            and self._keys() == self._shown
        ):
            return
        super().bindings_changed(screen)

    def watch_show_command_palette(self) -> None:
        # Textual's footer shows or hides the palette's key at its next compose only: a terminal
        # made narrow kept it, drawn over the keys it now wraps.
        if self.is_attached:
            self.call_after_refresh(self.recompose)

    def on_resize(self, event: events.Resize) -> None:
        self._wrap()

    def grid_at(self, width: int) -> tuple[int, int]:
        """The columns and rows the keys take in a footer ``width`` columns wide."""
        _, columns, rows = self._grid(width)
        return columns, rows

    def _grid(self, width: int) -> tuple[list[int], int, int]:
        """The keys' widths, and the columns and rows they take in ``width`` columns."""
        if self.show_command_palette:
            for key in self.query(FooterKey).filter(".-command-palette"):
                width -= key.outer_size.width  # docked on the right, beside the rows
        widths = self._widths()
        columns = _columns(widths, width) if width > 0 else len(widths)
        return widths, columns, ceil(len(widths) / columns) if columns else 1

    def _widths(self) -> list[int]:
        """The columns each key shown takes (one per action, as Textual's compose shows them)."""
        actions: set[str] = set()
        widths = []
        for _, binding, _, _ in self.screen.active_bindings.values():
            if binding.show and binding.action not in actions:
                actions.add(binding.action)
                widths.append(_width(self.app.get_key_display(binding), binding.description))
        return widths

    def _wrap(self) -> None:
        """One row if every key fits in it, else the fewest rows that hold them all."""
        widths, columns, rows = self._grid(self.size.width)
        if rows <= 1:
            self.styles.layout = "horizontal"
        else:
            self.styles.layout = "grid"
            self.styles.grid_size_columns = columns
            self.styles.grid_columns = " ".join(
                str(max(widths[column::columns])) for column in range(columns)
            )
        self.styles.height = max(rows, 1)


def _width(key_display: str, description: str) -> int:
    """The columns a key takes in the compact footer: the key, a space and its description, and
    the margin after it."""
    width = cell_len(key_display) + 1
    if description:
        width += 1 + cell_len(description)
    return width


def _columns(widths: list[int], room: int) -> int:
    """The columns of the grid of keys of ``widths``, filled row by row, in the fewest rows whose
    columns, each as wide as its widest key, fit in ``room``; the rows as evenly filled as they
    can be (12 keys in two rows: six and six, not eleven and one)."""
    for rows in range(1, len(widths) + 1):
        columns = ceil(len(widths) / rows)
        if sum(max(widths[column::columns]) for column in range(columns)) <= room:
            return columns
    return 1
