"""Yes/no questions, and the screen shown while running jobs finish before quitting."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

REASKED_EVERY_S = 0.2  # how often a question given as a function is asked again


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question``; returns True for yes. A question given as a function is asked again
    while it is shown (the quit dialog's count of running jobs changes under it)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self, title: str, question: str | Callable[[], str], yes: str = "Yes", no: str = "No"
    ) -> None:
        super().__init__()
        self.title_text, self.question, self.yes, self.no = title, question, yes, no

    def _question(self) -> str:
        return self.question() if callable(self.question) else self.question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm") as dialog:
            dialog.border_title = self.title_text
            yield Static(self._question(), classes="question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} y", variant="primary", id="yes", compact=True)
                yield Button(f"{self.no} n", id="no", compact=True)

    def on_mount(self) -> None:
        if callable(self.question):
            self.set_interval(REASKED_EVERY_S, self._ask_again)

    def _ask_again(self) -> None:
        self.query_one(".question", Static).update(self._question())

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


class StoppingScreen(ModalScreen[None]):
    """Shown while this app's running jobs finish; `k` kills them instead (back to pending)."""

    BINDINGS = [Binding("k", "kill", "Kill running jobs")]

    def __init__(self, busy: Callable[[], int], kill: Callable[[], None]) -> None:
        super().__init__()
        self._busy, self._kill = busy, kill

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm") as dialog:
            dialog.border_title = "Quitting"
            yield Static(id="waiting", classes="question")
            yield Static(
                "Press k to kill them now: they go back to pending, their attempt not counted.",
                classes="hint",
            )

    def on_mount(self) -> None:
        self._update()
        self.set_interval(0.2, self._update)

    def _update(self) -> None:
        busy = self._busy()
        jobs = "job" if busy == 1 else "jobs"
        self.query_one("#waiting", Static).update(
            f"Waiting for {busy} running {jobs} to finish…"
        )

    def action_kill(self) -> None:
        self._kill()
