"""Showing job text literally, and times the way people read them.

Everything a user or a job wrote (commands, output, errors, ids) goes through :func:`literal`
before it reaches the screen: a ``rich.text.Text`` built from the plain string (never parsed as
markup), with control characters and escape sequences made visible instead of obeyed.
"""

from __future__ import annotations

from rich.text import Text

from queuectl.text import visible


def clean(text: str | None, *, single_line: bool = False) -> str:
    """``text`` with control characters shown as ``\\x1b``-style escapes.

    ``single_line`` also shows newlines and tabs as ``⏎`` and a space, for one-line table cells.
    """
    if not text:
        return ""
    text = visible(text.replace("\r\n", "\n"))  # CRLF is just a line end
    if single_line:
        text = text.strip("\n").replace("\n", " ⏎ ").replace("\t", " ")
    return text


def literal(text: str | None, style: str = "", *, single_line: bool = True) -> Text:
    """A Text showing ``text`` exactly as written: no markup, no escapes, ellipsis on overflow."""
    return Text(
        clean(text, single_line=single_line),
        style=style,
        no_wrap=single_line,
        overflow="ellipsis" if single_line else "fold",
        end="",
    )


def duration(seconds: float | None) -> str:
    """A short duration: ``0.42s``, ``4.2s``, ``42s``, ``3m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def coarse(seconds: float) -> str:
    """A duration to the unit that matters: ``12s``, ``3m``, ``2h``, ``4d``."""
    whole = int(max(seconds, 0.0))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h"
    return f"{whole // 86400}d"


def ago(moment: float | None, now: float) -> str:
    if moment is None:
        return ""
    return f"{coarse(now - moment)} ago"
