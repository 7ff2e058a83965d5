"""What a user asks to enqueue, parsed and validated: a JSON object or a plain shell command.

The CLI (`enqueue`, `enqueue --file`) and the TUI's form both go through :func:`parse_job`, so a
job is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .errors import InvalidInput, QueueError

MAX_ID_LENGTH = 64
# Integers every backend stores (PostgreSQL's INTEGER is 32 bits).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# The longest timeout or delay (about 68 years): a run_at it gives is still a date.
MAX_SECONDS = 2**31 - 1
# The least timeout: a millisecond. Less is no time at all, and PostgreSQL's 4-byte real refused
# 1e-300 ("value out of range: underflow", a database error where SQLite took it).
MIN_TIMEOUT = 0.001


class JobSpec(NamedTuple):
    """A validated request for one job. ``None`` means "not given".

    Immutable and compared by value. A NamedTuple, not a frozen dataclass: `enqueue` defines it
    at every start, and a frozen dataclass of ten fields costs ~1 ms to define (its methods are
    generated and compiled), a NamedTuple ~0.2 ms."""

    command: str
    id: str | None = None
    max_retries: int | None = None
    priority: int | None = None
    timeout: float | None = None
    delay: float | None = None
    run_at: float | None = None  # UTC epoch seconds
    cwd: str | None = None
    queue: str | None = None  # None: the default queue (SPEC 7)
    after: tuple[str, ...] | None = None  # ids or unique prefixes of the jobs it runs after

    def replace(self, **changes: Any) -> "JobSpec":
        """A copy with ``changes`` (as ``dataclasses.replace``)."""
        return self._replace(**changes)

    def with_defaults(self, defaults: "JobOptions") -> "JobSpec":
        """Fill what this spec leaves open from options given for every job."""
        changes = {
            name: getattr(defaults, name)
            for name in _OPTION_NAMES
            if getattr(self, name) is None and getattr(defaults, name) is not None
        }
        if self.run_at is not None or self.delay is not None:
            changes.pop("run_at", None)
            changes.pop("delay", None)
        # Called once per line of `enqueue --file`: with no options given (the usual case) the
        # spec is returned as is.
        return self.replace(**changes) if changes else self


class JobOptions(NamedTuple):
    """Options that apply to every job of one enqueue (``--priority`` and friends). A
    NamedTuple, not a frozen dataclass: `enqueue` defines it at every start (see Target)."""

    id: str | None = None
    max_retries: int | None = None
    priority: int | None = None
    timeout: float | None = None
    delay: float | None = None
    run_at: float | None = None
    queue: str | None = None
    after: tuple[str, ...] | None = None


_OPTION_NAMES = JobOptions._fields


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{key!r} must be a string, got {_type_name(value)}")
    if "\x00" in value:
        raise InvalidInput(f"{key!r} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{key!r} is not valid UTF-8") from None
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# Linux's MAX_ARG_STRLEN: the longest one argument of an exec (32 pages of 4 KiB). A command run
# by `/bin/sh -c` is one; a command started directly (see queuectl.direct) is its words.
MAX_ARGUMENT_BYTES = 131072


def validate_command(value: Any) -> str:
    command = _text("command", value)
    if not command.strip():
        raise InvalidInput("'command' is empty")
    if len(command) * 4 >= MAX_ARGUMENT_BYTES:  # (a command this short fits, however encoded)
        _check_startable(command)
    return command


def _check_startable(command: str) -> None:
    """Refuse a command no run could start: one argument past Linux's bound. It was accepted,
    then failed every run, "Argument list too long", into the DLQ (QA)."""
    size = len(command.encode("utf-8", "surrogateescape"))
    if size < MAX_ARGUMENT_BYTES:
        return
    from .direct import direct_words

    words = direct_words(command)
    if words is None or any(len(word.encode("utf-8", "surrogateescape")) >= MAX_ARGUMENT_BYTES
                            for word in words):  # fmt: skip
        raise InvalidInput(
            f"'command' is {size:,} bytes: /bin/sh takes at most {MAX_ARGUMENT_BYTES - 1:,} "
            "(Linux's limit on one argument); put it in a script and enqueue the script"
        )
    # Started directly, word by word: the words, the environment and a pointer to each must
    # fit in the system's bound on a program's arguments (ARG_MAX; QA: 3.6 MB of words failed
    # every run). The environment is this process's: a worker's is much the same.
    pointer = 8
    room = os.sysconf("SC_ARG_MAX")
    needed = sum(len(word.encode("utf-8", "surrogateescape")) + 1 + pointer for word in words)
    needed += sum(
        len(os.fsencode(key)) + len(os.fsencode(value)) + 2 + pointer
        for key, value in os.environ.items()
    )  # fmt: skip
    if needed >= room:
        raise InvalidInput(
            f"'command' is {size:,} bytes in {len(words):,} words: with the environment, more "
            f"than a program's arguments may hold here ({room:,} bytes, ARG_MAX); put it in a "
            "script and enqueue the script"
        )


def validate_id(value: Any) -> str:
    """An id is typed and printed: no spaces, and no character a terminal obeys or hides
    rather than shows (an escape sequence printed raw to a pipe was not the id shown)."""
    job_id = _text("id", value)
    if (
        not job_id
        or len(job_id) > MAX_ID_LENGTH
        or any(c.isspace() for c in job_id)
        or _has_control(job_id)
    ):
        raise InvalidInput(
            f"'id' must be 1 to {MAX_ID_LENGTH} characters without spaces or control "
            f"characters, got {job_id!r}"
        )
    if job_id.startswith("-"):  # `show -abc` would be taken for options
        raise InvalidInput(f"'id' cannot start with '-' (read as an option), got {job_id!r}")
    return job_id


def _has_control(text: str) -> bool:
    """Whether ``text`` has a control or format character (Unicode Cc, Cf: escapes, the
    bidirectional overrides, zero-width ones), or a character that shows as nothing."""
    if text.isprintable() and text.isascii():  # the usual id: none at all
        return False
    import unicodedata

    from .text import _PRINTABLE_INVISIBLE  # (the Hangul fillers: letters that show nothing)

    return any(unicodedata.category(c) in ("Cc", "Cf") or c in _PRINTABLE_INVISIBLE for c in text)


def validate_int(key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key!r} must be a whole number, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise InvalidInput(f"{key!r} must be >= {minimum}, got {_number(value)}")
    low = INT_MIN if minimum is None else max(minimum, INT_MIN)
    if not low <= value <= INT_MAX:
        raise InvalidInput(f"{key!r} must be from {low} to {INT_MAX}, got {_number(value)}")
    return value


def _number(value: int | float) -> str:
    """``value`` for a message: an int of thousands of digits is not spelled out (Python
    refuses to, past 4300)."""
    if isinstance(value, int) and not -(10**20) < value < 10**20:
        return "a number of more than 20 digits"
    return str(value)


def validate_seconds(key: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{key!r} must be a number of seconds, got {_type_name(value)}")
    # Compared before math.isfinite, which cannot take an int too large for a float.
    low = MIN_TIMEOUT if positive else 0
    if value < low or value > MAX_SECONDS or not math.isfinite(value):
        bound = f">= {MIN_TIMEOUT}" if positive else ">= 0"
        raise InvalidInput(
            f"{key!r} must be a finite number {bound} and <= {MAX_SECONDS}, got {_number(value)}"
        )
    return float(value)


# Numbers as users type them: ASCII digits, an optional sign (and for a number of seconds a
# decimal point and an exponent; `nan` and `inf` pass, for the bounds to refuse by name). int()
# and float() alone also took any Unicode digit ("٣" was 3), underscores ("1_0") and, for
# float(), "infinity".
_WHOLE_TEXT = r"\s*[+-]?[0-9]+\s*"
_NUMBER_TEXT = r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|nan)\s*"


def whole_number(text: str) -> int:
    """``text`` as an int, if it is a whole number in ASCII digits; else ValueError (as int()
    gives, also for a number of more than 4300 digits)."""
    import re

    if not isinstance(text, str) or re.fullmatch(_WHOLE_TEXT, text) is None:
        raise ValueError(text)
    return int(text)


def number(text: str) -> float:
    """``text`` as a float, if it is a number in ASCII digits (or `nan`, `inf`); else
    ValueError."""
    import re

    if not isinstance(text, str) or re.fullmatch(_NUMBER_TEXT, text, re.IGNORECASE) is None:
        raise ValueError(text)
    return float(text)


def parse_int(key: str, text: str, minimum: int | None = None) -> int:
    """A whole number typed by a user (an option's value), bounded as :func:`validate_int`."""
    try:
        value = whole_number(text)
    except ValueError:
        raise InvalidInput(f"{text!r:.40} is not a whole number") from None
    return validate_int(key, value, minimum)


def parse_seconds(key: str, text: str, *, positive: bool) -> float:
    """A number of seconds typed by a user, bounded as :func:`validate_seconds`."""
    try:
        value = number(text)
    except ValueError:
        raise InvalidInput(f"{text!r:.40} is not a number of seconds") from None
    return validate_seconds(key, value, positive=positive)


def parse_time(key: str, value: Any) -> float:
    """An ISO 8601 time (naive means UTC) as epoch seconds."""
    text = _text(key, value)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{key!r} is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:  # in UTC it must still be a date (year 1 to 9999), or no listing could show it
        datetime.fromtimestamp(moment.timestamp(), timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput(f"{key!r} is out of range: {text!r}") from None
    return moment.timestamp()


# A name's characters (QUEUE_NAME's): checked as a set, where no command needs to compile the
# pattern at start-up.
_NAME_PATTERN = r"[A-Za-z0-9._-]{1,64}"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_AFTER = 1000


def __getattr__(name: str) -> Any:
    """``QUEUE_NAME``, the compiled pattern of a valid name, made on first use (PEP 562)."""
    if name == "QUEUE_NAME":
        import re

        globals()[name] = pattern = re.compile(_NAME_PATTERN)
        return pattern
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_name(key: str, value: Any) -> str:
    """A queue's or a schedule's name (SPEC 7): 1-64 ASCII letters, digits, '.', '_' or '-'."""
    text = _text(key, value)
    if not (0 < len(text) <= 64 and _NAME_CHARS.issuperset(text)):
        raise InvalidInput(
            f"{key!r} must be 1 to 64 ASCII letters, digits, '.', '_' or '-', got {text!r}"
        )
    return text


def validate_after(value: Any) -> tuple[str, ...]:
    """A list of job ids (or unique prefixes), each once, in order."""
    if not isinstance(value, list):
        raise InvalidInput(f"'after' must be a list of job ids, got {_type_name(value)}")
    if len(value) > MAX_AFTER:
        raise InvalidInput(f"'after' names more than {MAX_AFTER} jobs")
    ids: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):  # (not "'after' must be a string": it must be a list)
            raise InvalidInput(f"each id in 'after' must be a string, got {_type_name(item)}")
        text = _text("after", item)
        if not text.strip():
            raise InvalidInput("'after' holds an empty id")
        ids[text] = None
    return tuple(ids)


def current_directory() -> str:
    """The directory this process runs in, as a job's ``cwd``: QueueError where it cannot be one
    (removed since, or named in bytes that are not UTF-8, which the database cannot hold)."""
    try:
        here = os.getcwd()
    except FileNotFoundError:
        raise QueueError("the current directory no longer exists: give 'cwd'") from None
    try:
        here.encode("utf-8")
    except UnicodeEncodeError:
        from .text import as_typed

        raise QueueError(
            f"the current directory's path is not valid UTF-8 ({as_typed(here)}): give 'cwd'"
        ) from None
    return here


def validate_cwd(value: Any) -> str:
    text = _text("cwd", value)
    if not text.strip():  # not "wherever this ran": a script's empty variable
        raise InvalidInput("'cwd' is empty")
    return text


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once: of `{"command": "a", "command": "b"}`
    json.loads keeps the last, silently."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"key {key!r} given twice")
            seen.add(key)
    return data


_VALIDATORS = {
    "command": validate_command,
    "id": validate_id,
    "max_retries": lambda v: validate_int("max_retries", v, minimum=0),
    "priority": lambda v: validate_int("priority", v),
    "timeout": lambda v: validate_seconds("timeout", v, positive=True),
    "delay": lambda v: validate_seconds("delay", v, positive=False),
    "run_at": lambda v: parse_time("run_at", v),
    "cwd": validate_cwd,
    "queue": lambda v: validate_name("queue", v),
    "after": validate_after,
}


# Keys whose null means "use the config" (SPEC 3): as `--json` prints a job, it can be enqueued.
_NULL_IS_CONFIG = ("max_retries", "timeout")


def spec_from_mapping(data: dict[str, Any], valid: tuple[str, ...] | None = None) -> JobSpec:
    """``valid``: the keys a schedule's job takes: an unknown key's message lists them, and a
    job's other keys are refused by name, before their values are checked (`"after": [1]`
    said "each id in 'after' must be a string" where "cannot have 'after'" was meant, QA)."""
    unknown = sorted(set(data) - set(_VALIDATORS))
    if unknown:
        listed = ", ".join(valid or _VALIDATORS)
        raise InvalidInput(f"unknown key {', '.join(map(repr, unknown))} (valid: {listed})")
    refused = [] if valid is None else [key for key in data if key not in valid]
    if refused:  # by name, before its value is looked at
        raise InvalidInput(f"a schedule's job cannot have {refused[0]!r}")
    if "command" not in data:
        raise InvalidInput("missing 'command'")
    if "delay" in data and "run_at" in data:
        raise InvalidInput("give 'delay' or 'run_at', not both")
    values = {
        key: None if value is None and key in _NULL_IS_CONFIG else _VALIDATORS[key](value)
        for key, value in data.items()
    }
    if values.get("cwd") is not None:
        cwd = os.path.expanduser(values["cwd"])
        if not os.path.isabs(cwd):  # from here: this directory must be one a job can have
            cwd = os.path.join(current_directory(), cwd)
        values["cwd"] = _text("cwd", os.path.normpath(cwd))
    return JobSpec(**values)


# A key and its colon: `{ "command": "make", }` (a trailing comma) is JSON mistyped, and
# `{'command': 'ls'}` JSON in the wrong quotes; `{ "$HOME/run"; }` is a shell group.
# A key without quotes too, right after the brace (`{command: "ls"}`, as JavaScript writes it):
# sh's group needs a blank after its `{` (`{ x: ; }` runs `x:`).
_JSON_START = (r"""\{(?:\s*(?:"(?:[^"\\]|\\.)*"|'[^']*')|[A-Za-z_][A-Za-z0-9_]*)\s*:""")


def _looks_like_json(text: str) -> bool:
    # `{ echo a; }` is a shell group; `{"command": ...}` and `{}` are meant as JSON.
    if text.startswith(('{"', "{}", "{\n")):
        return True
    import re

    return re.match(_JSON_START, text) is not None


def parse_job(text: str, valid: tuple[str, ...] | None = None) -> JobSpec:
    """A JSON object (see SPEC 4, `enqueue`) or else a plain shell command. ``valid``: see
    :func:`spec_from_mapping`."""
    stripped = text.strip()
    if stripped.startswith("[{"):  # `[` (test) given an object: jobs meant as a JSON array
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, list):
            raise InvalidInput("a JSON array: enqueue takes one job (a JSON object); "
                               "`enqueue --file` takes one job a line")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped, object_pairs_hook=_object)
        except (ValueError, RecursionError) as exc:  # ValueError: also a 4300+ digit number
            if _looks_like_json(stripped):
                if isinstance(exc, json.JSONDecodeError):
                    message = exc.msg
                elif isinstance(exc, _DuplicateKey):
                    message = str(exc)
                elif isinstance(exc, RecursionError):
                    message = "too deeply nested"
                else:
                    message = "a number is too long"
                raise InvalidInput(f"invalid JSON: {message}") from None
        else:
            if isinstance(data, dict):
                return spec_from_mapping(data, valid)
    return JobSpec(command=validate_command(text))


# -- durations (SPEC 5), shared by purge --older-than, config `retention` and others -----------

# Compiled on first use (by re's own cache): most commands parse no duration.
_DURATION = r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhd]?)\s*"
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, key: str = "duration") -> int | float:
    """Seconds from ``90`` (seconds), ``90s``, ``15m``, ``2h`` or ``7d`` (SPEC 5); a number of
    seconds is taken as it is. Whole seconds come back as an int."""
    if isinstance(value, bool):
        raise InvalidInput(f"{key!r} must be a duration such as 90, 90s, 15m, 2h or 7d")
    if isinstance(value, (int, float)):
        seconds: float = value
    else:
        import re

        match = re.fullmatch(_DURATION, str(value), re.IGNORECASE)
        if match is None:
            raise InvalidInput(
                f"{key!r} must be a duration such as 90, 90s, 15m, 2h or 7d, got {str(value)!r:.40}"
            )
        seconds = float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise InvalidInput(f"{key!r} must be from 0 to {MAX_DURATION_S // 86400} days")
    return int(seconds) if float(seconds).is_integer() else float(seconds)


MAX_DURATION_S = 100 * 365 * 86400  # a century: any later cut-off is before every job
