"""The TUI's pure helpers (and the engine's text helpers as the TUI uses them): literal text,
durations, column fitting, pane totals, the fields of the details."""

from __future__ import annotations

import pytest
from rich.text import Text

from queuectl.tui.data import pane_summaries
from queuectl.models import Job
from queuectl.text import ago, coarse_relative_time, duration, folded_line, safe
from queuectl.tui.screens.details import FIELDS
from queuectl.tui.text import literal
from queuectl.tui.widgets.pane import (
    KINDS, MIN_FLEX, PADDING, QUEUE, WIDE_WHEN, _tries_text, fit_columns,
)  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("[bold]x[/]", "[bold]x[/]"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("bell\x07 nul\x00 del\x7f csi\x9b", "bell\\x07 nul\\x00 del\\x7f csi\\x9b"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_shows_control_characters_instead_of_obeying_them(raw, shown):
    assert safe(raw) == shown


def test_one_line_cells_show_newlines_as_a_mark():
    assert folded_line("a\r\nb\tc\n") == "a ⏎ b c"


def test_literal_is_a_text_without_markup():
    text = literal("[red]x[/red] \x1b[1m")
    assert isinstance(text, Text) and text.plain == "[red]x[/red] \\x1b[1m" and not text.spans


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.421, "0.42s"), (4.24, "4.2s"), (42, "42s"), (185, "3m05s"), (7300, "2h01m"),
     (273600, "3d04h"), (0.0042, "4ms"), (0.0994, "99ms"), (0.0996, "0.10s"), (0.0002, "0ms"),
     (-3, "0ms"), (None, ""), (0.99951, "1.0s"), (0.994, "0.99s"), (9.96, "10s"), (9.94, "9.9s"),
     (10.99, "10s")],  # fmt: skip
)
def test_duration(seconds, shown):
    assert duration(seconds) == shown


def test_ago():
    assert ago(100.0, 160.0) == "1m ago" and ago(None, 1.0) == ""


def test_coarse_relative_time():
    assert coarse_relative_time(220.0, 100.0) == "in 2m"
    assert coarse_relative_time(100.5, 100.0) == "0s ago"


@pytest.mark.parametrize("wait", [297.0, 299.6, 3599.0, 95.5, 12.4, 7205.0])
def test_a_wait_ahead_reads_in_the_tui_as_list_and_show_say_it(wait):
    """QA: a job due in 4m57s was `due in 5m` in `list` and `show`, and `in 4m` in the TUI."""
    from queuectl.text import countdown, relative_time

    assert relative_time(1000.0 + wait, 1000.0) == f"in {countdown(wait)}"
    assert coarse_relative_time(1000.0 + wait, 1000.0) == f"in {countdown(wait)}"


def test_the_details_show_every_public_field_but_the_output_above_it():
    assert sorted(FIELDS) == sorted(name for name in Job.PUBLIC_FIELDS if name != "output")


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("width", [20, 37, 57, 77, 117, 200])
def test_columns_fit_the_pane(kind, width):
    columns = fit_columns(KINDS[kind].columns, width)
    assert columns[0][0].key == "id" and "command" in [c.key for c, _ in columns]
    used = sum(w + 2 * PADDING for _, w in columns)
    assert used <= width or width < 40  # tiny panes keep id and a usable command, and scroll


def test_the_waiting_pane_s_columns_fill_it_exactly_with_a_queue_and_a_wide_when():
    """The command's two parts of the spare width left the last error under MIN_FLEX, which
    was raised on its own: at 90 to 97 cells the table was a cell wider than the pane."""
    plain = KINDS["waiting"].columns
    wide = (plain[0], QUEUE, *(WIDE_WHEN if c.key == "when" else c for c in plain[1:]))
    for columns in (plain, wide):
        for width in range(40, 260):
            fitted = fit_columns(columns, width)
            least = sum((c.width or MIN_FLEX) + 2 * PADDING for c, _ in fitted)
            if width >= least:  # else the pane scrolls: nothing fits
                assert sum(w + 2 * PADDING for _, w in fitted) == width, width


@pytest.mark.parametrize(("runs", "most", "shown"), [
    (1, 3, "1/3"), (16, 10_000, "16/10k"), (0, 100_000, "0/100k"), (0, 2_100_000_000, "0/2.1G"),
    (1500, 2000, "1k/2k"),  # read "2k/2k": as if every retry were spent
    (9999, 10_000, "9k/10k"),
    (10, 100_000, "10/…"),  # read "10/10…": as 10 of 10
    (10_000, 10_000, "10k/…"), (99_999, 100_000, "99k/…"),
])  # fmt: skip
def test_tries_never_overstate_the_runs_nor_cut_the_limit_to_another_number(runs, most, shown):
    assert _tries_text(runs, most) == shown


def test_pane_summaries_put_retrying_jobs_with_pending_ones():
    counts = {"pending": 3, "failed": 2, "processing": 1, "completed": 9, "dead": 4}
    assert pane_summaries(counts, 1) == {
        "waiting": (5, "2 retrying"),
        "processing": (1, "1 worker live"),
        "completed": (9, ""),
        "dead": (4, ""),
    }


def _keys(data: str) -> list[str]:
    """The keys the app's terminal parser reads from ``data``, typed in one go."""
    from textual import events

    from queuectl.tui.keys import EscapeThenKey

    return [token.key for token in EscapeThenKey().feed(data) if isinstance(token, events.Key)]


@pytest.mark.parametrize(
    ("typed", "keys"),
    [
        # Escape and a key typed fast: the escape key, then that key, whatever follows (Textual
        # read on while keys came within 100 ms, and a later escape made the first one a `^`).
        ("\x1baecho x\r", ["escape", "a", "e", "c", "h", "o", "space", "x", "enter"]),
        ("\x1bj\x1b/", ["escape", "j", "escape", "slash"]),
        ("\x1b\r", ["escape", "enter"]),
        ("\x1b1", ["escape", "1"]),  # not macOS's option character ¡
        ("a\n", ["a", "enter"]),  # enter typed before the terminal was raw: a newline
        # What terminals do send with ESC first reads as before.
        ("\x1b\t\x1b[Z", ["escape", "tab", "shift+tab"]),  # (terminals send shift+tab so)
        ("\x1b[A\x1bb\x1b\x7f", ["up", "ctrl+left", "ctrl+w"]),
    ],
)
def test_escape_then_a_key_typed_fast_is_both_keys(typed, keys):
    assert _keys(typed) == keys


def test_a_bracketed_paste_is_one_paste_whatever_it_holds():
    """An ESC inside a paste began a key sequence in Textual's parser, and what followed it
    was sent as keys (a pasted newline and `x`: the form submitted, a job cancelled). The
    paste is its text, whole, in one Paste; its marks may come split over several reads."""
    from textual import events

    from queuectl.tui.keys import EscapeThenKey

    parser = EscapeThenKey()
    tokens = []
    for read in ("a\x1b[200~echo a\x1b[0m\nx\x1b[201~b", "\x1b[20", "0~hi\x1b", "[201", "~c"):
        tokens.extend(parser.feed(read))
    got = [(type(t).__name__, t.text if isinstance(t, events.Paste) else t.key) for t in tokens]
    assert got == [("Key", "a"), ("Paste", "echo a\x1b[0m\nx"), ("Key", "b"),
                   ("Paste", "hi"), ("Key", "c")]  # fmt: skip


def test_the_timeline_shows_no_run_for_a_job_cancelled_while_it_waited():
    """A job cancelled before it ever ran showed "run 0  0.00s → cancelled": a run that never
    was. A cancel of a running job ends its run; one of a job waiting for its retry does not."""
    import io

    from rich.console import Console

    from queuectl.tui.screens.details import timeline

    def lines(*records: tuple) -> list[str]:
        keys = ("event", "at", "attempt", "worker", "exit_code", "error", "duration")
        table = timeline([dict(zip(keys, record)) for record in records], len(records), 100.0,
                         {"muted": "dim"})  # fmt: skip
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(table)
        return [" ".join(line.split()) for line in console.export_text().splitlines()]

    never = lines(("enqueued", 10.0, 0, None, None, None, None),
                  ("cancelled", 11.0, 0, None, None, "cancelled", None))  # fmt: skip
    assert never == ["1m ago enqueued", "1m ago cancelled"]
    ran = lines(("enqueued", 10.0, 0, None, None, None, None),
                ("started", 11.0, 1, "box:1", None, None, None),
                ("failed", 12.0, 1, "box:1", 1, "exit code 1", 1.0),
                ("cancelled", 20.0, 1, None, None, "cancelled", None))  # fmt: skip
    assert ran == ["1m ago enqueued", "1m ago run 1 1.0s exit 1 on box → failed",
                   "1m ago cancelled"]  # fmt: skip


def test_a_read_of_the_stand_in_for_a_hung_up_terminal_ends_with_the_app():
    """SIGHUP swaps the terminal for a pipe that never has data; Textual's input thread, between
    its select and its read at that moment, blocked on that read for good, and the process never
    exited (a test's TUI, its tmux closed, lived on). `restore()`, at the app's end, closes the
    pipe: the read ends. In a process of its own (the swap is of this process's fds 0-2)."""
    import subprocess
    import sys

    script = """
import os, threading
from queuectl.tui.signals import StopSignals
signals = StopSignals(lambda: None, lambda: None, lambda: None, lambda: None)
out = os.dup(1)
signals._let_go_of_terminal()
reader = threading.Thread(target=os.read, args=(0, 10), daemon=True)
reader.start()
reader.join(0.3)
assert reader.is_alive()  # blocked, as Textual's input thread was
signals.restore()
reader.join(10)
os.write(out, b"stuck" if reader.is_alive() else b"ended")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.stdout == b"ended", (done.stdout, done.stderr)
