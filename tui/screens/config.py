"""The config form (`c`): every key, each validated by queuectl.config.validate."""

from __future__ import annotations

from textual import events, work
from textual.app import ComposeResult
from textual.timer import Timer

from queuectl.config import KEYS, shown as _shown, validate

from .form import Field, FormScreen


class ConfigScreen(FormScreen[dict]):
    """Returns ``{key: parsed value}`` for the keys the user edited, or None."""

    TITLE = "Configuration"
    SUBTITLE = "stored in the queue: every worker and script sees it"

    FOLLOW_S = 1.0  # while open, the stored values are read this often (see follow)

    def __init__(self, current: dict[str, int | float]) -> None:
        super().__init__()
        self.current = self._complete(current)
        self._following: Timer | None = None

    @staticmethod
    def _complete(current: dict[str, int | float]) -> dict[str, int | float]:
        return {key: current.get(key, spec.default) for key, spec in KEYS.items()}

    def refill(self, current: dict[str, int | float]) -> None:
        """Shown again (the app makes this form once): the values as they are now, no errors,
        the first field focused."""
        self.current = self._complete(current)
        self.show_again({key: _shown(value) for key, value in self.current.items()})

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self._read()
        if self._following is None:
            self._following = self.set_interval(self.FOLLOW_S, self._read)
        else:
            self._following.resume()

    def on_screen_suspend(self) -> None:
        if self._following is not None:
            self._following.pause()

    @work(thread=True, exclusive=True, group="config", exit_on_error=False)
    def _read(self) -> None:
        queue = self.app.queue
        try:
            stored = queue.config()
        except Exception:  # the database went away: the form keeps what it shows
            return
        finally:
            queue.close()  # this thread's connection
        self.app.call_from_thread(self.follow, stored)

    def follow(self, stored: dict[str, int | float]) -> None:
        """While open: a value another process stored shows in its field, unless the user has
        edited that field. The form opened with the values of the panes' last read, which can
        be older than a `config set` just before `c`, and showed them until it closed."""
        if not self.is_current:
            return
        for key, value in self._complete(stored).items():
            self.current[key] = value
            field = self.field(key)
            if field.edited or field.text == _shown(value):
                continue
            field.show(_shown(value))  # (one with control characters now: read-only)

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
        # What the user edited, as edited, even where it equals the value the form last read
        # (another process may have stored another since: `3` typed over a stale `3` is meant).
        return {key: value for key, value in parsed.items() if self.field(key).edited}
