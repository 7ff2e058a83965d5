"""A small live table keyed by name (the queues and schedules screens): diff-updated like the
panes, so the cursor stays on its row while the rows refresh."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

Row = list[Text]


class Listing(DataTable):
    """Rows keyed by a name; :meth:`show` diffs a new set of rows in, in the order given."""

    BINDINGS = [  # the panes' moves
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("home,g", "scroll_top", "First row", show=False),
        Binding("end,G", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(
        self,
        columns: list[tuple[str, str, int | None]],
        *,
        give_way: tuple[str, ...] = (),
        last_resort: tuple[str, ...] = (),
        narrow: dict[str, str] | None = None,
        id: str | None = None,
    ) -> None:
        """``columns``: (key, label, width or None for the rest). ``give_way``: the keys of the
        columns left out, in this order, while the rest would be narrower than MIN_REST (at 120
        columns the schedules' command was 5 cells wide, the table scrolled sideways);
        ``last_resort``: then these, while it would be narrower than MIN_FIT (or, once the
        column without a width is left out, while they would not fit). ``narrow``: a column's
        narrower form (another column's key), shown only once that column is left out."""
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._spec = columns
        self._give_way = give_way
        self._last_resort = last_resort
        self._narrow = narrow or {}
        self._visible = list(range(len(columns)))  # the indexes of the columns shown
        self._widths: list[tuple[int, int]] = []  # (index, width) of each column shown
        self._rows: dict[str, Row] = {}  # the rows last given to show, every column's cell
        self._shown: dict[str, Row] = {}  # what the table shows of them

    PADDING = 1  # DataTable's cell padding, each side
    MIN_REST = 16
    MIN_FIT = 8  # the narrowest the column without a width is made
    MIN_CUT = 4  # the narrowest a column is made: three characters and the mark

    def on_resize(self) -> None:
        """Give the column without a width what the others leave of the table's width."""
        room = self.scrollable_content_region.width - 2 * self.PADDING
        dropped: set[str] = set(self._narrow.values())  # a narrow form, until its column goes

        def measured() -> tuple[list[int], int]:
            """The columns shown, and the room those with a width take."""
            visible = [i for i, (k, _, _) in enumerate(self._spec) if k not in dropped]
            return visible, sum((self._spec[i][2] or 0) + 2 * self.PADDING for i in visible)

        def rest_shown() -> bool:
            return any(self._spec[i][2] is None for i in visible)

        visible, fixed = measured()
        steps = [(key, self.MIN_REST) for key in self._give_way]
        for key, enough in steps + [(key, self.MIN_FIT) for key in self._last_resort]:
            if room - fixed >= (enough if rest_shown() else 0):  # the rest is wide enough
                break
            dropped.add(key)
            dropped.discard(self._narrow.get(key, ""))
            visible, fixed = measured()
        rest = max(room - fixed, self.MIN_FIT)
        widths = [(i, self._spec[i][2] or rest) for i in visible]
        # Still too wide (a terminal of 40 columns): the last columns are narrowed, their cells
        # cut with a mark (see show). The table scrolled sideways, and a cron of `*/30 * * * * *`
        # cut at the screen's edge read as another, `*/30 * * * *` (QA).
        over = sum(width + 2 * self.PADDING for _, width in widths) - room
        for n in reversed(range(len(widths))):
            if over <= 0:
                break
            i, width = widths[n]
            cut = min(over, max(width - self.MIN_CUT, 0))
            widths[n] = (i, width - cut)
            over -= cut
        if widths == self._widths:
            return
        self._widths = widths
        self._visible = visible
        selected = self.selected
        rows = dict(self._rows)
        self.clear(columns=True)
        self._shown.clear()
        for i, width in widths:
            key, label, _ = self._spec[i]
            self.add_column(Text(label, overflow="ellipsis", no_wrap=True), key=key, width=width)
        self.show(rows)
        if selected is not None:
            self.select(selected)

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def select(self, key: str) -> bool:
        """Move the cursor to the row of ``key``; False where the table does not show it."""
        if key not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(key), animate=False)
        return True

    def show(self, rows: dict[str, Row]) -> None:
        """Show ``rows`` (every column's cell, keyed), in their order; a row that is the very
        one shown (the same list: its screen made it once) is passed over."""
        given = self._rows
        self._rows = dict(rows)
        if not self.columns:  # not sized yet: the first resize adds the columns, then these
            return
        selected = self.selected
        visible = self._visible
        keys = [self._spec[i][0] for i in visible]
        with self.app.batch_update():
            for key in [key for key in self._shown if key not in rows]:
                self.remove_row(key)
                del self._shown[key]
            widths = dict(self._widths)
            for key, row in rows.items():
                if row is given.get(key) and key in self._shown:
                    continue
                cells = [row[i] for i in visible]
                for cell in cells:  # cut with a mark, as the panes' cells (QA: a cron of
                    cell.overflow = "ellipsis"  # `*/30 * * * * *` read `*/30 * * * *`)
                    cell.no_wrap = True
                if visible and visible[0] == 0 and isinstance(cells[0], KeyText):
                    cells[0] = cells[0].cut_middle(widths.get(0, cells[0].cell_len))
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

    def cut_middle(self, width: int) -> KeyText:
        """This name in ``width`` cells, its middle left out: names often share a prefix (the
        end cut, `deploy-eu-west-…` read the same for each region), so both ends are kept."""
        if self.cell_len <= width or width < 3:
            return self
        tail = (width - 1) // 2
        cut = self[: width - 1 - tail]
        cut.append("…")
        cut.append(self[len(self) - tail :])
        return KeyText(cut, self.plain_key)
