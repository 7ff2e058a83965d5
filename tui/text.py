"""Job text as Rich ``Text``: shown literally, never parsed as markup.

Everything a user or a job wrote (commands, output, errors, ids) goes through :func:`literal`
before it reaches the screen. The plain-string rendering (escapes, one-line folding, durations,
relative times) is the engine's, in :mod:`queuectl.text`, shared with the CLI.
"""

from __future__ import annotations

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
