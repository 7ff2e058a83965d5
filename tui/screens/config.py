"""The config form (`c`): the three keys, each validated by queuectl.config.validate."""

from __future__ import annotations

from textual.app import ComposeResult

from queuectl.config import KEYS, validate
from queuectl.errors import InvalidInput

from .form import Field, FormScreen


def _shown(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class ConfigScreen(FormScreen[dict]):
    """Returns ``{key: parsed value}`` for the keys whose value changed, or None."""

    TITLE = "Configuration"
    SUBTITLE = "stored in the queue: every worker and script sees it"

    def __init__(self, current: dict[str, int | float]) -> None:
        super().__init__()
        self.current = {key: current.get(key, spec.default) for key, spec in KEYS.items()}

    def fields(self) -> ComposeResult:
        for key, spec in KEYS.items():
            yield Field(
                key,
                key,
                value=_shown(self.current[key]),
                placeholder=f"default {_shown(spec.default)}",
                hint=spec.help,
            )

    def collect(self) -> dict | None:
        parsed: dict[str, int | float] = {}
        ok = True
        for key in KEYS:
            text = self.text(key).strip() or _shown(KEYS[key].default)
            try:
                parsed[key] = validate(key, text)
            except InvalidInput as exc:
                self.field(key).set_error(str(exc))
                ok = False
            else:
                self.field(key).set_error(None)
        if not ok:
            return None
        return {key: value for key, value in parsed.items() if value != self.current[key]}
