"""Durations as users type them (SPEC 5): ``90`` (seconds), ``90s``, ``15m``, ``2h``, ``7d``."""

from __future__ import annotations

import math
import re

from .errors import InvalidInput

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; InvalidInput naming the accepted forms otherwise."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None:
        raise InvalidInput(f"invalid duration {text!r:.40} (e.g. 90, 90s, 15m, 2h, 7d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise InvalidInput(f"duration {text!r:.40} is too long")
    return seconds
