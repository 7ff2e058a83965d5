"""A small live table keyed by name (the queues and schedules screens): diff-updated like the
panes, so the cursor stays on its row while the rows refresh."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

Row = list[Text]


class Listing(DataTable):
    """Rows keyed by a name; :meth:`show` diffs a new set of rows in, in the order given."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, columns: list[tuple[str, str, int | None]], *, id: str | None = None) -> None:
        """``columns``: (key, label, width or None for the rest)."""
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._spec = columns
        self._shown: dict[str, Row] = {}

    PADDING = 1  # DataTable's cell padding, each side

    def on_resize(self) -> None:
        """Give the column without a width what the others leave of the table's width."""
        fixed = sum((width or 0) + 2 * self.PADDING for _, _, width in self._spec)
        rest = max(self.scrollable_content_region.width - fixed - 2 * self.PADDING, 8)
        widths = [width or rest for _, _, width in self._spec]
        if widths == getattr(self, "_widths", None):
            return
        self._widths = widths
        selected = self.selected
        shown = dict(self._shown)
        self.clear(columns=True)
        self._shown.clear()
        for (key, label, _), width in zip(self._spec, widths):
            self.add_column(Text(label), key=key, width=width)
        self.show(shown)
        if selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def show(self, rows: dict[str, Row]) -> None:
        if not self.columns:  # not sized yet: the first resize adds the columns, then these
            self._shown = dict(rows)
            return
        selected = self.selected
        keys = [key for key, _, _ in self._spec]
        with self.app.batch_update():
            for key in [key for key in self._shown if key not in rows]:
                self.remove_row(key)
                del self._shown[key]
            for key, cells in rows.items():
                before = self._shown.get(key)
                if before is None:
                    self.add_row(*cells, key=key)
                else:
                    for column, old, new in zip(keys, before, cells):
                        if old != new:
                            self.update_cell(key, column, new)
                self._shown[key] = cells
            order = list(rows)
            if [row.key.value for row in self.ordered_rows] != order:
                rank = {key: index for index, key in enumerate(order)}
                self.sort(key=lambda cells: rank[cells[0].plain_key])
            if selected in self._shown:
                index = self.get_row_index(selected)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False)


class KeyText(Text):
    """The first cell of a row, which remembers the row's key (to order the rows by)."""

    def __init__(self, text: Text, key: str) -> None:
        super().__init__(end="", no_wrap=True, overflow="ellipsis")
        self.append(text)
        self.plain_key = key
