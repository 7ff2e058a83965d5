"""What the modal forms share: labelled inputs with an error line under each, Save/Cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from textual.widgets.input import Selection

from queuectl.config import KEYS
from queuectl.errors import InvalidInput
from queuectl.text import escaped_line

from ..keys import QUIT_ON_CTRL_C
from ..text import literal

T = TypeVar("T")


class FieldInput(Input):
    """An input of one line. Textual's keeps the first line of a paste and drops the rest
    without a word: a script pasted into the command field lost all but its first line. A paste
    of several lines is refused instead, and the field says so (a trailing newline, as a
    copied line has, is not a second line). So is one with control characters (an escape
    sequence): an input draws its text as it is, and the terminal would obey them.

    Reached (by tab, or as its form opens), its value is selected if ``select_on_focus``, else
    the cursor goes to its end; reached for an error (see FormScreen.action_submit), the cursor
    goes to the end of what was typed, to correct it, nothing selected."""

    def __init__(self, *args: Any, select_on_focus: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, select_on_focus=select_on_focus, **kwargs)
        self.selects = select_on_focus
        self.for_an_error = False  # the next focus is an error's
        # Its value is kept as it is (see Field): it takes the focus in its turn, as any field
        # (disabled, it was skipped, and `e tab tab 5` put 5 one field further on: a job due
        # in 2 h ran in 5 s, QA), and refuses every change, saying why.
        self.read_only = False

    def replace(self, text: str, start: int, end: int) -> None:
        """Every change of the text comes here (typed, pasted, deleted, cut)."""
        if self.read_only:
            self._refuse(KEPT_REFUSED)
            return
        super().replace(text, start, end)

    def _refuse(self, message: str) -> None:
        field = self.parent
        if isinstance(field, Field):
            field.set_error(message)

    def _on_focus(self, event: events.Focus) -> None:
        if not self.app.screen_stack:
            # The app is ending, its screens closed. A form the app makes ahead, unshown, has
            # its first field focused as it is composed; Input's own handler of that focus,
            # come this late, asks for the screen, and Textual raises (CI, once).
            event.prevent_default()
            return
        # Before Input's own handler, which selects the value if select_on_focus.
        for_an_error, self.for_an_error = self.for_an_error, False
        self.select_on_focus = self.selects and not for_an_error
        if not self.select_on_focus and not event.from_app_focus:
            self.cursor_position = len(self.value)

    def _on_paste(self, event: events.Paste) -> None:
        # Textual calls Input's own handler after this one, unless its default is prevented.
        text = event.text.rstrip("\r\n")
        lines = text.splitlines()
        refused = None
        if self.read_only:
            refused = KEPT_REFUSED
        elif len(lines) > 1:
            refused = (
                f"pasted {len(lines)} lines, and this field takes one: nothing was pasted "
                "(join them with ; or &&, or enqueue a script file)"
            )
        elif escaped_line(text) != text:
            refused = (
                "pasted text with control characters (an escape sequence?): nothing was "
                "pasted (the CLI takes it: queuectl enqueue or edit)"
            )
        if refused is not None:
            event.prevent_default()
            event.stop()
            self._refuse(refused)


KEPT_HINT = "control characters shown escaped: kept as it is"
KEPT_REFUSED = (
    "kept as it is: it holds control characters, shown escaped (change it with the CLI: "
    "queuectl edit, or queuectl config set)"
)


# Fields whose text is extended more than replaced (`e`, then ` --all` after the command): the
# cursor comes to their end. Any other field's value (a number, a name, a duration) is selected
# as the field is reached, by tab or as the form opens, so that what is typed replaces it, as in
# any form (`e tab tab 7` over a priority of 5 saved 57, QA); a key that moves the cursor keeps
# it, to edit.
EXTENDED = frozenset({"command", *(key for key in KEYS if key.startswith("on-"))})  # (hooks)


class Field(Vertical):
    """A label, an input and the place its error goes.

    A value with control characters (an escape sequence, a line end: a job's command, a hook)
    is shown with them as escapes, and kept as it is: read-only (FieldInput.read_only). An input
    draws its text as it is, so the terminal obeyed them (the screen cleared, its title set,
    SPEC 5), and escapes typed back would be other text than the value's."""

    def __init__(
        self, key: str, label: str, *, value: str = "", placeholder: str = "", hint: str = ""
    ) -> None:
        super().__init__(id=f"field-{key}", classes="field")
        self.key, self.label, self.value = key, label, value
        self.placeholder, self.hint = placeholder, hint
        self.kept: str | None = None  # the value kept as it is, if it has control characters
        self._put = ""  # the text last put in the input by the form (not typed)
        self._typed = False  # the user has changed the text since (see edited)

    def compose(self) -> ComposeResult:
        shown = self._put = self._take(self.value)
        with Horizontal(classes="field-head"):
            yield Label(self.label, classes="field-label")
            yield Label(self._hint(), classes="field-hint")
        box = FieldInput(
            shown, placeholder=self.placeholder, id=self.key,
            select_on_focus=self.key not in EXTENDED, compact=True,
        )  # fmt: skip
        self._keep(box)
        yield box
        yield Static("", classes="field-error")

    def _keep(self, box: FieldInput) -> None:
        box.read_only = self.kept is not None
        box.set_class(box.read_only, "-kept")

    def _take(self, value: str) -> str:
        """The text the input shows for ``value``; ``kept``: the value, if it is kept as it is."""
        shown = escaped_line(value)
        self.kept = value if shown != value else None
        return shown

    def _hint(self) -> str:
        return self.hint if self.kept is None else KEPT_HINT

    def show(self, value: str) -> None:
        """Put ``value`` in the input (see the class); the field is not edited after it."""
        shown = self._put = self._take(value)
        self._typed = False
        box = self.query_one(FieldInput)
        box.value = shown
        self._keep(box)
        box.cursor_position = len(shown)
        if box.selects and box.has_focus:  # put in while reached: selected, as then
            # (By the field's kind: the last focus, an error's, left `select_on_focus` off, and
            # a form shown again with its focus there took `c 1` as 31, QA.)
            box.selection = Selection(0, len(shown))
            box.select_on_focus = True
        self.query_one(".field-hint", Label).update(self._hint())

    @property
    def text(self) -> str:
        """The field's text: what was typed, or the value kept."""
        return self.query_one(FieldInput).value if self.kept is None else self.kept

    @property
    def edited(self) -> bool:
        """Whether the user has changed the text since the form put it there, even back to
        what it was: typed, it is the user's (a value stored meanwhile elsewhere does not
        replace it, and it is saved as typed)."""
        return self._typed or self.query_one(FieldInput).value != self._put

    def on_input_changed(self, event: Input.Changed) -> None:
        """Edited: the error shown is about text no longer there (a refused paste's stayed
        under the command typed after it)."""
        if event.value != self._put:
            self._typed = True
        if self.has_class("-invalid"):
            self.set_error(None)

    def set_error(self, message: str | None) -> None:
        error = self.query_one(".field-error", Static)
        error.update(literal(message or "", single_line=False))
        self.set_class(bool(message), "-invalid")


class FormBody(VerticalScroll, can_focus=False):
    """A form's fields and buttons: scrolled to the focused field when they do not all fit
    (at 80x24 the config's last field and its buttons were below the screen, out of reach)."""


class FormScreen(ModalScreen[T], Generic[T]):
    """A modal form; subclasses give ``TITLE``, the fields and :meth:`collect`."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), QUIT_ON_CTRL_C]
    TITLE = ""
    SUBTITLE = ""
    SUBMIT = "Save"

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with FormBody(classes="dialog form") as dialog:
            dialog.border_title = self.TITLE
            dialog.border_subtitle = self.SUBTITLE
            yield from self.fields()
            with Horizontal(classes="buttons"):
                yield Button(f"{self.SUBMIT} ⏎", variant="primary", id="submit", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)

    _styled_for: int | None = None  # the app's CSS (Textual counts its changes) last applied

    def on_mount(self) -> None:
        for widget in self.query(Input):
            widget.cursor_blink = not self.app.is_headless  # steady in tests and screenshots

    # Said under a form taller than the terminal, whose buttons are below its fold (QA: at 80x24
    # nothing on the config form's screen said how to save it). Not docked in sight instead:
    # Textual's focus chain then put them before the fields below the fold (tab went to Save).
    KEYS_HINT = "enter saves · esc cancels"

    def on_resize(self, event: events.Resize) -> None:
        """A terminal made smaller: the focused field, in sight again (the keys typed next go
        there; it was left below the form's fold)."""
        focused = self.focused
        if focused is not None:
            self.call_after_refresh(focused.scroll_visible, animate=False)
        self.call_after_refresh(self._say_the_keys)

    def _say_the_keys(self) -> None:
        body = self.query_one(FormBody)
        body.border_subtitle = self.KEYS_HINT if body.max_scroll_y > 0 else self.SUBTITLE

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Textual styles every widget of a screen again each time it is shown (Screen's own
        handler runs after this one). A form shown again (the app keeps its enqueue form) has
        the styles it had, unless the app's CSS changed meanwhile (a theme picked): restyling
        its widgets was a third of what `a` cost the UI thread."""
        styled = self.app._css_update_count
        if self._styled_for == styled:
            event.refresh_styles = False
        self._styled_for = styled

    def show_again(self, values: dict[str, str]) -> None:
        """Before a form the app keeps is shown again: each field's text from ``values`` (else
        empty), no error left, the first field focused."""
        for field in self.query(Field):
            field.set_error(None)
            field.show(values.get(field.key, ""))
        self.set_focus(next(iter(self.query(Input)), None))

    def field(self, key: str) -> Field:
        return self.query_one(f"#field-{key}", Field)

    def text(self, key: str) -> str:
        return self.field(key).text

    def collect(self) -> T | None:
        """The form's value, or None after showing errors with :meth:`Field.set_error`."""
        raise NotImplementedError

    def checked(self, checks: dict[str, Callable[[str], object]]) -> dict[str, object] | None:
        """Each field's text through its check (the engine's validators); None when one or
        more fail, each failure shown under its field."""
        values: dict[str, object] = {}
        for key, check in checks.items():
            try:
                values[key] = check(self.text(key))
            except InvalidInput as exc:
                self.field(key).set_error(str(exc))
            else:
                self.field(key).set_error(None)
        return values if len(values) == len(checks) else None

    async def commit(self, value: T) -> T | None:
        """What the form returns for a valid ``value``; None keeps it open (after showing why
        with :meth:`Field.set_error`). A form that must ask the database first (a name that
        exists) does it here, off the UI thread; the keys typed next wait for it."""
        return value

    async def action_submit(self) -> None:
        result = self.collect()
        if result is not None:
            result = await self.commit(result)
        if result is not None:
            self.dismiss(result)
        else:
            invalid = self.query(".field.-invalid")
            if invalid:
                field = invalid.first()
                box = field.query_one(FieldInput)
                box.for_an_error = self.focused is not box  # (a focus event to come)
                self.set_focus(box)  # at once: the keys typed next go there
                # In sight, its error too, once the errors shown have moved the fields (a form
                # taller than the terminal scrolled to where they were: keys went unseen).
                self.call_after_refresh(field.scroll_visible, animate=False)

    def action_cancel(self) -> None:
        self.dismiss(None)

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        await self.action_submit()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            await self.action_submit()
        else:
            self.action_cancel()
