"""Yes/no questions, and the screen shown while running jobs finish before quitting."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from queuectl.limits import STOP_TIMEOUT_S

from ..keys import QUIT_ON_CTRL_C

REASKED_EVERY_S = 0.2  # how often a question given as a function is asked again


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question``; returns True for yes. A question given as a function is asked again
    while it is shown (the quit dialog's count of running jobs changes under it)."""

    ANSWERS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    BINDINGS = [*ANSWERS, QUIT_ON_CTRL_C]  # (QA: ctrl+c did nothing on "Cancel a running job")

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


class QuitQuestion(ConfirmScreen):
    """The quit question: `ctrl+c` again says yes (a third kills, see :class:`StoppingScreen`),
    as a second ctrl+c stops `worker start` (QA: it did nothing here)."""

    BINDINGS = [*ConfirmScreen.ANSWERS, Binding("ctrl+c", "answer(True)", "Yes", show=False)]

    def __init__(self, question: Callable[[], str]) -> None:
        super().__init__("Quit", question, "Quit")


def running(jobs: int, hooks: int, adjective: str = "running ") -> str:
    """What a pool runs, in words: "1 running job", "2 running jobs and 1 notification hook"
    ("" for nothing); ``adjective`` goes before the first noun."""
    said = []
    if jobs:
        said.append(f"{jobs} {adjective}job{'s' if jobs != 1 else ''}")
    if hooks:
        said.append(f"{hooks} {'' if jobs else adjective}notification hook"
                    f"{'s' if hooks != 1 else ''}")  # fmt: skip
    return " and ".join(said)


class StoppingScreen(ModalScreen[None]):
    """Shown while this app's running jobs (and hooks) finish; `k` or `ctrl+c` kills them
    instead (jobs back to pending). ``waiting`` says what the quit waits for, as "1 running job
    to finish" ("" for nothing more: the workers' last steps)."""

    BINDINGS = [Binding("k,ctrl+c", "kill", "Kill running jobs")]

    KILL_HINT = (
        "Press k (or ctrl+c) to kill them now: jobs go back to pending, their attempt not "
        "counted; a hook killed runs again in another worker."
    )
    # While the workers cannot reach the database, what ends is stored only once it answers: a
    # quit then said nothing of it, and its jobs came back as "worker lost", an attempt counted
    # (QA). `worker start` waits as long (STOP_TIMEOUT_S).
    OUTAGE_HINT = (
        "The database is not answering ({why}): what ends is stored once it does, for up to "
        "{timeout:.0f} s; jobs whose end is not stored by then are rescued by another worker "
        "as \"worker lost\"."
    )
    OUTAGE_KILL_HINT = (
        " Press k (or ctrl+c) to kill the running jobs now: they go back to pending, their "
        "attempt not counted, if the database answers in time."
    )
    # Nothing to finish or store: the wait is for the workers' last writes (unregistering, or
    # their start's statements). It said a rescue "as worker lost" of nothing, and twice.
    OUTAGE_IDLE_HINT = (
        "The database is not answering ({why}): the workers wait for it for up to "
        "{timeout:.0f} s to unregister."
    )
    # With no job running: the wait for the database ended (a result waiting is rescued as the
    # hint before says).
    QUIT_NOW_HINT = (
        " Press ctrl+c to quit now: this app's workers then read as live until their lease "
        "runs out."
    )

    def __init__(
        self, waiting: Callable[[], str], kill: Callable[[], None],
        outage: Callable[[], str], running: Callable[[], int],
        quit_now: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """``outage``: why the workers cannot use the database now ("" if they can);
        ``running``: how many jobs they run (`k` is offered only while some do); ``quit_now``:
        ends the wait for the database (offered while it does not answer and no job runs)."""
        super().__init__()
        self._waiting, self._kill, self._outage = waiting, kill, outage
        self._jobs_running, self._quit_now = running, quit_now
        self._killed = False  # `k` was pressed: not offered again

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm") as dialog:
            dialog.border_title = "Quitting"
            yield Static(id="waiting", classes="question", markup=False)
            yield Static(self.KILL_HINT, id="quit-hint", classes="hint", markup=False)

    def on_mount(self) -> None:
        self._update()
        self.set_interval(0.2, self._update)

    def _update(self) -> None:
        waiting = self._waiting()
        # (Nothing left to finish: "the workers to finish" read as if jobs still ran.)
        self.query_one("#waiting", Static).update(f"Waiting for {waiting or 'the workers to stop'}…")
        why = self._outage()
        # Only while jobs run, once (QA: offered with nothing running, and again after k).
        offered = not self._killed and self._jobs_running() > 0
        if why:
            hint = (self.OUTAGE_HINT if waiting else self.OUTAGE_IDLE_HINT).format(
                why=why, timeout=STOP_TIMEOUT_S)  # fmt: skip
            hint += self.OUTAGE_KILL_HINT if offered else ""
            hint += self.QUIT_NOW_HINT if self._quits_now() else ""
        else:
            hint = self.KILL_HINT if offered else ""
        self.query_one("#quit-hint", Static).update(hint)

    def _quits_now(self) -> bool:
        """Whether ctrl+c quits at once: no job runs, and the database does not answer."""
        return self._quit_now is not None and self._jobs_running() == 0 and bool(self._outage())

    def action_kill(self) -> None:
        if self._quits_now():
            self._quit_now()  # type: ignore[misc]
            return
        self._killed = True
        self._kill()
        self._update()
