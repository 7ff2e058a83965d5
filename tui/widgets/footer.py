"""The footer: Textual's, composed again only when the keys it shows change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """Textual recomposes its footer whenever its screen's bindings may have changed, which
    includes every time a form opens over the screen and every time it closes: the same keys
    each time, made and styled again as a dozen new widgets behind a key press. This one
    recomposes only when what it would show differs from what it shows."""

    _shown: tuple | None = None  # what the last compose showed (see _keys)

    def _keys(self) -> tuple:
        bindings = tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )
        return bindings, self.show_command_palette, self.compact

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if (
            self._shown is not None
            and self.is_attached
            and screen is self.screen
            and self._keys() == self._shown
        ):
            return
        super().bindings_changed(screen)
