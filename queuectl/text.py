"""Job text and times as people read them, shared by the CLI's human output and the TUI.

Commands, output and errors are shown as written, never obeyed: control characters (escape
sequences among them) and the bidirectional overrides that can make text read differently from
what it is are replaced by visible ``\\xNN`` / ``\\uNNNN`` escapes. ``--json`` keeps text intact.

Plain strings only: the CLI prints them, the TUI wraps them in Rich ``Text`` (``tui/text.py``).
Where the CLI and the TUI render the same thing differently (a one-line job command, a duration),
each rendering has its own name here.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

# Characters that show as nothing, or as a line end where none is, each screen in its own way
# (QA): every format character (Unicode Cf, 14.0: the soft hyphen, the Arabic letter mark, the
# zero-width space, the left-to-right and right-to-left marks, the word joiner and the invisible
# operators, the byte order mark, the tags that can spell a hidden `rm -rf` after a command, and
# the rest) but the zero-width non-joiner and joiner, which scripts and emoji are made of; the
# line and paragraph separators; and the letters and the mark that print as nothing (the Hangul
# fillers, the combining grapheme joiner), which Python counts as printable.
_PRINTABLE_INVISIBLE = "\u034f\u115f\u1160\u3164\uffa0"
_INVISIBLE = (
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    "\u2028\u2029\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f" + _PRINTABLE_INVISIBLE
)
# C0 controls except tab and newline, DEL, C1 controls (0x80-0x9f: 8-bit CSI and friends), the
# bidirectional embeddings, overrides and isolates, and the invisible characters above.
# Compiled on first use: a command that prints no job text (`enqueue`) need not compile it at
# start-up.
_UNSAFE_CHARS = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069" + _INVISIBLE + "]"
_unsafe: re.Pattern[str] | None = None


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _plain(text: str) -> bool:
    """Whether ``text`` has no character to escape: the usual job text, told without the
    pattern (a worker logs two lines a job)."""
    return text.isprintable() and (
        text.isascii() or not any(char in text for char in _PRINTABLE_INVISIBLE)
    )


# -- text ------------------------------------------------------------------------------------


def as_typed(text: str) -> str:
    """``text`` quoted and escaped as ``repr`` does, but bytes that are not UTF-8 (argv's
    surrogate escapes) read as typed, ``\\xff``, not ``\\udcff``: a name in an error."""
    return "'" + "".join(map(_typed_char, text)) + "'"


def _typed_char(char: str) -> str:
    if "\udc80" <= char <= "\udcff":
        return f"\\x{ord(char) - 0xDC00:02x}"
    return "\\'" if char == "'" else repr(char)[1:-1]


def visible(text: str) -> str:
    """``text`` with every unsafe character shown as an escape (newlines and tabs are kept)."""
    if _plain(text):  # no control or format character at all: the usual job text
        return str(text)  # (a plain str, as the pattern's sub gives for a str subclass too)
    global _unsafe
    if _unsafe is None:
        _unsafe = re.compile(_UNSAFE_CHARS)
    return _unsafe.sub(_escape, text)


def safe(text: str | None) -> str:
    """Text safe to show over several lines: CRLF is a line end, the rest :func:`visible`."""
    return visible(text.replace("\r\n", "\n")) if text else ""


def escaped_line(text: str | None) -> str:
    """On one line for logs and tables: newlines and tabs as ``\\n`` and ``\\t`` escapes too."""
    if not text or _plain(text):  # (a worker's log line, twice a job: no copy, no regex)
        return str(text) if text else ""
    return visible(text).replace("\n", "\\n").replace("\t", "\\t")


def folded_line(text: str | None) -> str:
    """On one line for a table cell: each line end a ``⏎`` mark, a tab a space."""
    return safe(text).strip("\n").replace("\n", " ⏎ ").replace("\t", " ")


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: East Asian wide characters and most emoji two,
    combining marks and format characters none (QA: `list` sized an id of 64 emoji for 64
    cells, and its next columns stood out of line)."""
    if text.isascii():
        return len(text)
    import unicodedata

    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells (see :func:`cells`), the last one an ellipsis;
    whole when ``width`` <= 0."""
    if width <= 0 or cells(text) <= width:
        return text
    used = end = 0
    for end, char in enumerate(text):  # noqa: B007 (where it stops is the point)
        used += cells(char)
        if used > width - 1:
            break
    return text[:end] + "…"


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis; whole when ``width`` <= 0."""
    if width <= 0 or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


# -- stored output ---------------------------------------------------------------------------

# The line the executor puts before a stored tail whose head was dropped (queuectl.executor).
# Patterns as strings, compiled (and cached by ``re``) on first use, as _UNSAFE_CHARS is.
_TRUNCATED = r"\[queuectl: output truncated, (\d+) earlier bytes dropped\]\n"
# How the executor stores a byte of output that is not UTF-8, and a NUL: a ``\xNN`` escape,
# four characters that stand for one byte (the bytes it escapes are 0x80-0xff and 0x00).
_BYTE_ESCAPE = rb"\\x(?:00|[89a-f][0-9a-f])"


def output_size(text: str) -> int:
    """How many bytes of a run's output the stored ``text`` stands for: its UTF-8 bytes, an
    escaped byte counted once. (An escape the job printed itself, backslash and all, is counted
    as one byte too: the stored text cannot tell the two apart.)"""
    data = text.encode("utf-8", "surrogateescape")
    return len(data) - 3 * len(re.findall(_BYTE_ESCAPE, data))


def output_body(stored: str, printed: int | None) -> tuple[int, str]:
    """The stored output's text after the truncation line, and the byte of the run's output
    where that text starts (0 when nothing was dropped). ``printed`` is how many bytes the run
    printed (its ``output_bytes``; None for output stored before that was kept).

    A job may print a line that reads like the truncation line: it is the executor's only
    where the stored text does not stand for all that was printed."""
    match = re.match(_TRUNCATED, stored)
    if match is None or (printed is not None and output_size(stored) == printed):
        return 0, stored
    return int(match.group(1)), stored[match.end() :]


def output_tail(text: str, count: int) -> str:
    """The end of the stored ``text`` that stands for the last ``count`` bytes of output (see
    :func:`output_size`), or all of it. Counted from the end, so that only the new output's
    escapes are counted; a character cut at its start is shown as stored bytes are."""
    data = text.encode("utf-8", "surrogateescape")
    at = len(data) - count
    if at <= 0:
        return text
    # The escapes that may fall in the tail: ``count`` bytes are at most 4 * ``count`` stored.
    lowest = max(len(data) - 4 * count - 4, 0)
    escapes = [m.start() for m in re.compile(_BYTE_ESCAPE).finditer(data, lowest)]
    for escape in reversed(escapes):  # each one in the tail stands for 1 byte, not 4
        if escape + 4 <= at:
            break
        at -= 3
    return data[max(at, 0) :].decode("utf-8", "backslashreplace")


class NewOutput(NamedTuple):
    """What a read of a job found that its reader has not been shown yet."""

    text: str = ""  # the new output, as stored
    skipped: int = 0  # bytes of output dropped from storage before they were shown
    anew: bool = False  # ``text`` is the run's whole stored output, to replace what was shown


class OutputCursor:
    """How far one reader has been shown a run's output, so that each read gives what is new:
    the CLI's ``logs -f`` and the TUI's ``l`` each follow a job with one.

    Tracks the run shown (``run``: its attempts and start), how many of its bytes were shown
    (``shown``, the run's ``output_bytes`` when last read) and, while none of them were dropped,
    the text shown, which tells what is new exactly even where bytes are stored as escapes.
    Once the stored output is a cut tail, what is new is counted in bytes (:func:`output_tail`).
    """

    def __init__(self) -> None:
        self.run: tuple[object, object] | None = None
        self.shown = 0
        self.text = ""

    def advance(
        self, run: tuple[object, object], stored: str, printed: int | None, *, can_clear: bool
    ) -> NewOutput:
        """What of ``stored`` (run ``run``'s output, ``printed`` bytes of it) is new. A reader
        that ``can_clear`` what it showed gets a new run's, or a rewritten text's, whole output
        (``anew``); one that cannot (a terminal) gets what follows the bytes it was shown."""
        total = printed if printed is not None else len(stored.encode("utf-8", "surrogateescape"))
        start, body = output_body(stored, printed)
        # What was shown is known as text, and the stored text still begins with it.
        known = not start and body.startswith(self.text) and bool(self.text or not self.shown)
        if run != self.run or (can_clear and not start and not known):
            new = NewOutput(body, skipped=start, anew=True)
        elif known:
            new = NewOutput(body[len(self.text) :])
        elif total <= self.shown:
            new = NewOutput()
        elif self.shown < start:  # the stored tail moved past what was shown
            new = NewOutput(body, skipped=start - self.shown)
        else:  # by bytes of output, each escaped byte one (as the executor counts them)
            new = NewOutput(output_tail(body, total - self.shown))
        self.run, self.shown, self.text = run, total, "" if start else body
        return new


# -- durations -------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """A duration as measured: ``4ms``, ``0.42s``, ``4.2s``, ``42s``, ``3m05s``, ``2h03m``,
    ``3d04h``. Under a tenth of a second in milliseconds: short jobs' run times and waits read
    ``0.00s`` (QA: every figure of `stats` on a queue of quick jobs)."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 0.0995:  # (what would round to 100ms is 0.10s)
        return f"{seconds * 1000:.0f}ms"
    # Each form is chosen by the figure it would print, so 0.9996 reads 1.0s, not 1.00s, and
    # 9.96 reads 10s, not 10.0s.
    if round(seconds, 2) < 1:
        return f"{seconds:.2f}s"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    whole = max(int(seconds), 10)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def coarse_duration(seconds: float) -> str:
    """A duration in the one unit that matters, cut down: ``12s``, ``3m``, ``2h``, ``4d``."""
    whole = int(max(seconds, 0.0))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h"
    return f"{whole // 86400}d"


def shown_number(value: float) -> str:
    """A number as users type it: whole where it is whole, else its shortest exact form (%g made
    1234567 read 1.23457e+06, and 1.23456789 read 1.23457)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def exact_duration(seconds: float) -> str:
    """A duration as a user gives one, in the largest unit that holds it whole: ``90s``,
    ``100m``, ``36h``, ``7d`` (``1.5s`` if not a whole second)."""
    if seconds != int(seconds):
        return f"{shown_number(seconds)}s"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def tries(attempts: int, max_retries: int) -> str:
    """``2/3``: runs made of the runs a job may have. max_retries 0 gives one run, as 1 does
    (SPEC 3): so ``1/1``, never ``1/0``."""
    return f"{attempts}/{max(max_retries, 1)}"


def rounded_duration(seconds: float) -> str:
    """A duration in one unit, rounded, sign ignored: ``4.2s``, ``95s``, ``42m``, ``5h``, ``3d``."""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


# -- moments ---------------------------------------------------------------------------------


def utc_time(moment: float | None, *, zone: str = "Z") -> str:
    """UTC epoch seconds to the second: ``2026-11-28T21:00:03Z`` (``-`` for None)."""
    if moment is None:
        return "-"
    # isoformat, not strftime's %Y, which glibc does not pad: the year 999 was "999-06-01" (QA).
    moment_utc = datetime.fromtimestamp(moment, timezone.utc).replace(tzinfo=None)
    return moment_utc.isoformat(timespec="seconds") + zone


def relative_time(moment: float | None, now: float) -> str:
    """``now``, ``in 42m`` or ``42m ago`` (:func:`rounded_duration`); ``-`` for None."""
    if moment is None:
        return "-"
    delta = moment - now
    if abs(delta) < 0.5:
        return "now"
    return f"in {rounded_duration(delta)}" if delta > 0 else f"{rounded_duration(delta)} ago"


def coarse_relative_time(moment: float, now: float) -> str:
    """``in 3m`` (:func:`countdown`) or ``3m ago`` (:func:`coarse_duration`): less than a second
    ahead is past."""
    delta = moment - now
    return f"in {countdown(delta)}" if delta >= 1 else f"{coarse_duration(-delta)} ago"


def countdown(seconds: float) -> str:
    """A wait ahead as `list` and `show` round it (:func:`rounded_duration`: ``5m`` at 4m57s,
    where the TUI said ``4m``, QA), in whole seconds under 10 s (no room for tenths)."""
    if seconds < 10:
        return f"{int(max(seconds, 0.0))}s"
    return rounded_duration(seconds)


def ago(moment: float | None, now: float) -> str:
    """How long ago: ``3m ago`` (:func:`coarse_duration`), never in the future; "" for None."""
    if moment is None:
        return ""
    return f"{coarse_duration(now - moment)} ago"
