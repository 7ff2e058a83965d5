"""The configuration keys users can set, their defaults and their validation."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

from .errors import InvalidInput
from .spec import number, parse_duration, whole_number
from .states import State


# The largest whole number a key takes: a job-timeout is added to the clock as a float, and
# a job's own max_retries is a 32-bit INTEGER on PostgreSQL (the same bound as here).
INT_MAX = 2**31 - 1


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = whole_number(str(text))  # ASCII digits: int() took any ("٣")
        except ValueError:  # also a number of more than 4300 digits
            raise InvalidInput(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise InvalidInput(f"expected a whole number >= {minimum}, got {value}")
        if value > INT_MAX:
            raise InvalidInput(f"expected a whole number <= {INT_MAX}, got {text!r:.40}")
        return value

    return parse


def _number_at_least(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = number(str(text))
        except ValueError:
            raise InvalidInput(f"expected a number >= {minimum:g}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise InvalidInput(f"expected a finite number >= {minimum:g}, got {text!r}")
        return int(value) if value.is_integer() and abs(value) < 1e16 else value  # as shown()

    return parse


def _duration(text: str) -> int | float:
    try:
        return parse_duration(str(text).strip())
    except InvalidInput:
        raise InvalidInput(
            f"expected a duration such as 0, 90, 90s, 15m, 2h or 7d, got {text!r:.40}"
        ) from None


def _shell_command(text: str) -> str:
    """A hook (SPEC 8): a shell command, or empty for none."""
    command = str(text).strip()
    if "\x00" in command:
        raise InvalidInput("a command cannot contain NUL")
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the command is not valid UTF-8") from None
    return command


Value = int | float | str


class Key(NamedTuple):  # not a frozen dataclass: every command defines it (see target.Target)
    name: str
    default: Value
    parse: Callable[[str], Value]
    help: str


def shown(value: Value) -> str:
    """A value as `config` prints it, and as it reads back: a number whole where it is whole,
    else its shortest exact form (`%g` made 1.23456789 read 1.23457, which the TUI's form then
    saved over the value, and 1234567.5 read 1.23457e+06, which no duration parses); an empty
    hook as nothing."""
    if isinstance(value, str):
        return value
    from .text import shown_number

    return shown_number(value)


KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        Key("max-retries", 3, _int_at_least(0), "runs a job gets before it goes to the DLQ"),
        Key("backoff-base", 2, _number_at_least(1), "retry n waits backoff-base ** n seconds"),
        Key("job-timeout", 300, _int_at_least(1), "seconds a job may run before it is killed"),
        Key("retention", 0, _duration, "keep completed, cancelled jobs this long (0: forever)"),
        *(
            Key(f"on-{state}", "", _shell_command, f"shell command run when a job is {state}")
            for state in (State.COMPLETED, State.FAILED, State.DEAD, State.CANCELLED)
        ),
    )
}


def validate(key: str, value: object) -> Value:
    """The parsed value of ``key``; InvalidInput naming the problem otherwise."""
    if key not in KEYS:
        raise InvalidInput(f"unknown config key {key!r} (valid: {', '.join(KEYS)})")
    try:
        return KEYS[key].parse(str(value))
    except InvalidInput as exc:
        raise InvalidInput(f"invalid value for {key}: {exc}") from None
