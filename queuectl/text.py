"""Job text made safe to show on a terminal, shared by the CLI's human output and the TUI.

Commands, output and errors are shown as written, never obeyed: control characters (escape
sequences among them) and the bidirectional overrides that can make text read differently from
what it is are replaced by visible ``\\xNN`` / ``\\uNNNN`` escapes. ``--json`` keeps text intact.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls (0x80-0x9f: 8-bit CSI and friends), and
# the bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every unsafe character shown as an escape (newlines and tabs are kept)."""
    return _UNSAFE.sub(_escape, text)
