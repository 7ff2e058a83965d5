"""queuectl/text.py's escapes: job text shown as written, never obeyed. Text with no control or
format character is returned as it is (a worker logs two lines a job); anything else is escaped
exactly as the pattern says, whichever way it is taken."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuectl.text import _UNSAFE_CHARS, escaped_line, safe, visible

UNSAFE = re.compile(_UNSAFE_CHARS)


def escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def reference(text: str) -> str:
    return UNSAFE.sub(lambda m: escape(m.group()), text)


# Plain text, and text seeded with what must be escaped or kept (controls, C1, bidi
# overrides and isolates, non-ASCII spaces, newlines and tabs).
SPECIAL = ("\x00\x07\x1b\x7f\x85\x9b\u202a\u202e\u2066\u2069\u00a0\u2028\u3000\n\t\r\\é中"
           "\u3164\u034f\u200d\U000e0072\U0001d173\U0001f468")
texts = st.one_of(st.text(), st.text(alphabet=st.sampled_from(SPECIAL) | st.characters()))
# As the other property tests: no per-example deadline (a loaded CI machine can pause one for
# longer than the default 200 ms, which Hypothesis reports as a failure), the same examples on
# every run, no example database left in the working directory.
STEADY = settings(deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])


@STEADY
@given(texts)
def test_visible_escapes_exactly_the_unsafe_characters(text):
    assert visible(text) == reference(text)


@STEADY
@given(texts)
def test_one_line_escapes_line_ends_and_tabs_too(text):
    assert escaped_line(text) == reference(text).replace("\n", "\\n").replace("\t", "\\t")
    assert "\n" not in escaped_line(text) and "\t" not in escaped_line(text)


def test_the_usual_cases():
    assert escaped_line("touch out/j1") == "touch out/j1"
    assert escaped_line("échelle 中文 ok") == "échelle 中文 ok"
    assert escaped_line(None) == "" and escaped_line("") == ""
    assert escaped_line("a\tb\nc\x1b[31m") == "a\\tb\\nc\\x1b[31m"
    assert visible("right\u202eleft") == "right\\u202eleft"
    assert visible("a\u00a0b") == "a\u00a0b"  # not printable to Python, yet kept
    assert safe("a\r\nb\x07") == "a\nb\\x07"


def test_characters_that_show_as_nothing_are_shown_as_escapes():
    """QA: the line and paragraph separators vanished in a pane and broke the details' output
    into two lines; the marks, the soft hyphen and the byte order mark passed unseen (a command
    that reads as another). Zero-width joiners stay: emoji and scripts are made of them."""
    text = "echo A\u2028B\u2029C\u200fE\u061cF\u00adG\ufeffH\u200bI\u2060J\u200eK"
    assert visible(text) == (
        "echo A\\u2028B\\u2029C\\u200fE\\u061cF\\xadG\\ufeffH\\u200bI\\u2060J\\u200eK"
    )
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u0915\u094d\u200d\u0937"
    assert visible(family) == family


def test_a_str_subclass_comes_back_a_plain_str():
    from queuectl.states import State

    for function in (visible, escaped_line, safe):
        assert type(function(State.COMPLETED)) is str and function(State.COMPLETED) == "completed"


# -- stored output: what logs -f counts (the executor stores bytes that are not UTF-8 as escapes)

# Bytes a job may print: escaped ones (0x80-0xff, NUL), parts of a character, and a backslash
# and an x that are not an escape (printed escapes themselves are ambiguous: left out).
printed = st.binary().filter(lambda data: b"\\x" not in data) | st.lists(
    st.sampled_from([b"a", b"\n", b"\xff", b"\x00", b"\xe2\x82\xac", b"\xe2\x82", b"\\", b"x"]),
).map(b"".join).filter(lambda data: b"\\x" not in data)


@STEADY
@given(printed, st.integers(min_value=0, max_value=64))
def test_a_stored_tail_is_found_by_the_bytes_it_stands_for(data, cut):
    """Each escape counts as the one byte it stands for: the last N bytes' text is the stored
    text of those bytes (`logs -f` once counted an escape as four bytes, and printed again)."""
    from queuectl.executor import _readable
    from queuectl.text import output_size, output_tail

    stored = _readable(data)
    assert output_size(stored) == len(data)
    count = min(cut, len(data))
    assert output_tail(stored, count) == _readable(data[len(data) - count :])


def test_the_truncation_line_is_the_executors_only_where_bytes_were_dropped():
    from queuectl.executor import TailBuffer
    from queuectl.text import output_body

    line = "[queuectl: output truncated, 5 earlier bytes dropped]\n"
    assert output_body(line + "line2\n", len(line + "line2\n")) == (0, line + "line2\n")
    cut = TailBuffer(16)
    cut.write(b"\xff" * 10 + b"0123456789abcdef")
    assert output_body(cut.text(), cut.total) == (10, "0123456789abcdef")
    assert output_body(line + "x\n", None) == (5, "x\n")  # stored before output_bytes was kept


# -- following output: what `logs -f` prints and `l` shows of each read (OutputCursor)


@STEADY
@given(
    st.lists(printed, min_size=1, max_size=8),
    st.integers(min_value=8, max_value=48),
    st.booleans(),
)
def test_a_follower_shows_each_byte_printed_once_or_says_it_was_skipped(chunks, cap, can_clear):
    """A job prints in chunks; after each, its stored output (the executor's capped tail) is
    read by a follower. Every byte the job printed is either shown once or counted as skipped:
    never shown twice (output printed again) and never lost unannounced. A follower that can
    clear its screen (the TUI) ends showing what a fresh read shows."""
    from queuectl.executor import TailBuffer
    from queuectl.text import OutputCursor, output_body, output_size

    buffer, cursor = TailBuffer(cap), OutputCursor()
    shown, skipped = "", 0
    for chunk in chunks:
        buffer.write(chunk)
        new = cursor.advance((1, 100.0), buffer.text(), buffer.total, can_clear=can_clear)
        if new.anew:
            shown, skipped = "", 0
        shown, skipped = shown + new.text, skipped + new.skipped
        assert output_size(shown) + skipped == buffer.total
    start, body = output_body(buffer.text(), buffer.total)
    if can_clear and not start:
        assert shown == body


def test_a_new_run_is_shown_anew():
    from queuectl.text import OutputCursor

    cursor = OutputCursor()
    assert cursor.advance((1, 1.0), "one\n", 4, can_clear=False) == ("one\n", 0, True)
    assert cursor.advance((1, 1.0), "one\ntwo\n", 8, can_clear=False) == ("two\n", 0, False)
    assert cursor.advance((1, 1.0), "one\ntwo\n", 8, can_clear=False) == ("", 0, False)
    assert cursor.advance((2, 9.0), "again\n", 6, can_clear=False) == ("again\n", 0, True)


def test_every_format_character_but_the_joiners_and_the_blank_letters_are_escaped():
    """QA's second look: tag characters hid `rm -rf` after `echo safe` (shown `echo safe END`),
    and other format characters and the Hangul fillers showed nothing and broke the panes'
    columns. Every Unicode Cf character is escaped but U+200C and U+200D."""
    import sys
    import unicodedata

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) == "Cf" and char not in "\u200c\u200d":
            assert visible(f"a{char}b") == f"a{escape(char)}b", hex(code)
    hidden = "echo safe\U000e0072\U000e006d\U000e0020\U000e002d\U000e0072\U000e0066 END"
    assert visible(hidden) == "echo safe" + "".join(map(escape, hidden[9:15])) + " END"
    for filler in "\u115f\u1160\u3164\uffa0\u034f":
        assert visible(f"a{filler}b") == f"a{escape(filler)}b"
        assert escaped_line(f"a{filler}b") == f"a{escape(filler)}b"
    assert visible("ok \u200c\u200d 中文 é") == "ok \u200c\u200d 中文 é"
