"""Job text as Rich ``Text``: shown literally, never parsed as markup.

Everything a user or a job wrote (commands, output, errors, ids) goes through :func:`literal`
before it reaches the screen. The plain-string rendering (escapes, one-line folding, durations,
relative times) is the engine's, in :mod:`queuectl.text`, shared with the CLI.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from queuectl.text import folded_line, safe


def literal(text: str | None, style: str = "", *, single_line: bool = True) -> Text:
    """A Text showing ``text`` exactly as written: no markup, no escapes, ellipsis on overflow.

    ``single_line`` folds it onto one line (:func:`queuectl.text.folded_line`) for table cells.
    """
    return Text(
        folded_line(text) if single_line else safe(text),
        style=style,
        no_wrap=single_line,
        overflow="ellipsis" if single_line else "fold",
        end="",
    )


def expand_tabs(line: str, size: int = 8) -> str:
    """``line``'s tabs as spaces up to the next stop of ``size`` cells, a wide character taking
    two, as a terminal puts them (``str.expandtabs`` counts characters: `日本\tX` put X two
    columns past the stop, QA)."""
    if "\t" not in line:
        return line
    *parts, last = line.split("\t")
    spaced, column = [], 0
    for part in parts:
        column += cell_len(part)
        pad = size - column % size
        spaced.append(part + " " * pad)
        column += pad
    return "".join(spaced) + last
