"""The config form (`c`): every key, each validated by queuectl.config.validate."""

from __future__ import annotations

from textual.app import ComposeResult

from queuectl.config import KEYS, shown as _shown, validate

from .form import Field, FormScreen


class ConfigScreen(FormScreen[dict]):
    """Returns ``{key: parsed value}`` for the keys whose value changed, or None."""

    TITLE = "Configuration"
    SUBTITLE = "stored in the queue: every worker and script sees it"

    def __init__(self, current: dict[str, int | float]) -> None:
        super().__init__()
        self.current = self._complete(current)

    @staticmethod
    def _complete(current: dict[str, int | float]) -> dict[str, int | float]:
        return {key: current.get(key, spec.default) for key, spec in KEYS.items()}

    def refill(self, current: dict[str, int | float]) -> None:
        """Shown again (the app makes this form once): the values as they are now, no errors,
        the first field focused."""
        self.current = self._complete(current)
        self.show_again({key: _shown(value) for key, value in self.current.items()})

    def fields(self) -> ComposeResult:
        for key, spec in KEYS.items():
            yield Field(
                key,
                key,
                value=_shown(self.current[key]),
                placeholder=f"default {_shown(spec.default) or 'none'}",
                hint=spec.help,
            )

    def collect(self) -> dict | None:
        parsed = self.checked(
            {
                key: lambda text, key=key: validate(key, text.strip() or _shown(KEYS[key].default))
                for key in KEYS
            }
        )
        if parsed is None:
            return None
        return {key: value for key, value in parsed.items() if value != self.current[key]}
