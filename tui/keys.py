"""Keys typed ahead land where the user meant them.

Textual reads a key, hands it to the widget focused at that moment (into that widget's queue) and
reads the next one; a key the widget does not take bubbles up to the app, whose bindings run
against the focus of *that* moment. When a key moves the focus (tab in a form, ``o`` in the
details, ``a`` opening a form) and more keys wait, those were handed to the widget before: a
paste of ``echo x``, Tab, ``2`` gave the command ``echo x2``. Here each key is handled to the end
(the widget, then the bindings it bubbles up to, then a screen it opened) before the next is read.
Actions that move the focus use ``Screen.set_focus``, which applies at once (``Widget.focus()``
waits its turn in the app's queue).

Escape, then a key less than 100 ms later (Textual's ESCDELAY: a fast typist, tmux `send-keys`),
is read as the escape key and that key (:class:`EscapeThenKey`), not as alt and the key.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial

from textual import events
from textual._ansi_sequences import ANSI_SEQUENCES_KEYS
from textual._xterm_parser import XTermParser
from textual.app import App
from textual.binding import Binding
from textual.drivers import linux_driver
from textual.message_pump import MessagePump
from textual.timer import Timer

SETTLE_S = 1.0  # at most this long for one node to handle a key (it may be closing)
LAYOUT_LOOK_S = 0.005  # how often a resize's layout is looked for, while keys wait for it

# ctrl+c on a dialog asks to quit, as on the panes (the app's binding). A dialog's own would
# take it first: Textual's Screen copies a selection with it, as do a text area and a field,
# and with nothing selected they pass it on, to this (QA: on a job's details, its output and
# the forms, ctrl+c did nothing at all).
QUIT_ON_CTRL_C = Binding("ctrl+c", "app.quit", show=False)


async def settled(node: MessagePump | None) -> None:
    """Return once ``node`` has handled every message already sent to it."""
    if node is None:
        return
    done = asyncio.get_running_loop().create_future()
    if node.call_later(lambda: done.done() or done.set_result(None)):
        await asyncio.wait([done], timeout=SETTLE_S)


class KeysInOrder(App):
    """An App that reads a key only once the one before it has been handled. A paste is read
    in its turn too: handed on at once, as Textual does, it went ahead of the keys typed before
    it (`echo ` then a paste of `x` gave `xecho `; `a` then a paste reached the main screen
    before the form opened, and was lost, QA)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._typed: deque[events.Key | events.Paste] = deque()
        self._key_in_hand = False
        self.keys_handled = 0  # (to the end: what they asked for shown, as below)
        # The screen is laid out for the terminal's size: the keys that come with a resize wait
        # for that (QA: `x` sent with a resize to 4 lines cancelled a job the new layout hides;
        # the key was handled against the layout of the old size).
        self._laid_out = True
        self._resizes = 0  # how many resizes came: what is done for an earlier one is not done
        self._timers_kept: dict[str, Timer] = {}  # (Textual holds its timers weakly)
        self._after_keys: list[Callable[[], object]] = []  # (see after_the_keys)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Resize):
            self._resizes += 1
            self._laid_out = False
            await super().on_event(event)
            resize = self._resizes
            self._keep_timer("hold", SETTLE_S, partial(self._layout_done, resize))  # at the latest
            self._look_for_layout(resize)
        elif not isinstance(event, (events.Key, events.Paste)) or event.is_forwarded:
            await super().on_event(event)
        elif self._key_in_hand or not self._laid_out:
            self._typed.append(event)  # typed ahead: waits for the keys before it
        else:
            await self._handle_key(event)

    def _keep_timer(self, name: str, delay: float, callback: Callable[[], object]) -> None:
        if (timer := self._timers_kept.get(name)) is not None:
            timer.stop()
        self._timers_kept[name] = self.set_timer(delay, callback)

    def _look_for_layout(self, resize: int) -> None:
        """Textual hands a resize on to the screen a moment later (on a timer of its own), and
        the screen lays itself out then: its outer size is the terminal's once it has. The
        keys go on after the refresh that follows (QA: released at the next refresh alone, the
        keys were often handled before the screen had the new size)."""
        if self._laid_out or resize != self._resizes:
            return
        try:
            screen = self.screen
        except Exception:  # no screen yet (starting) or none any more (closing)
            self._layout_done(resize)
            return
        if screen.outer_size == self.size:
            screen.call_after_refresh(partial(self._layout_done, resize))
        else:
            self._keep_timer("look", LAYOUT_LOOK_S, partial(self._look_for_layout, resize))

    def _layout_done(self, resize: int) -> None:
        if self._laid_out or resize != self._resizes:
            return
        self._laid_out = True
        for timer in self._timers_kept.values():
            timer.stop()
        self._timers_kept.clear()
        if not self._key_in_hand:
            self._key_in_hand = True
            self.call_later(self._next_key)

    async def _handle_key(self, key: events.Key | events.Paste) -> None:
        if not self.screen_stack:  # the app is ending, its screens closed: nothing takes it
            return
        self._key_in_hand = True
        target = self.focused or self.screen  # where Textual hands the key
        try:
            await super().on_event(key)
        finally:
            asyncio.create_task(self._after(key, target))

    async def _after(self, key: events.Key | events.Paste, target: MessagePump) -> None:
        try:
            node: MessagePump | None = target
            while node is not None:  # the key bubbles up this way, to the app's bindings
                await settled(node)
                node = node._parent
            await settled(self.screen)  # a screen the key opened: composed and focused
            await self.keys_may_go_on()
        finally:
            self.keys_handled += 1
            self.call_later(self._next_key)

    async def keys_may_go_on(self) -> None:
        """Return once the next key may be handled: what the last one asked for is done."""

    def after_the_keys(self, work: Callable[[], object]) -> None:
        """Do ``work`` (work done ahead, that no key asked for) now if no key is waiting or
        being handled, else after the refresh that follows the last of them: made while they
        waited, it put them behind itself."""
        if self._key_in_hand or self._typed:
            self._after_keys.append(work)
        else:
            work()

    async def _next_key(self) -> None:
        self._key_in_hand = False
        if self._typed and self._laid_out:
            await self._handle_key(self._typed.popleft())
        elif not self._typed:
            waited, self._after_keys = self._after_keys, []
            for work in waited:
                self.call_after_refresh(work)


class EscapeThenKey(XTermParser):
    """A terminal sends alt+j as ESC then j, so Textual reads ESC and a key that came within
    its ESCDELAY (100 ms) of it as alt and that key: escape then `j` typed fast reached the app
    as alt+j (nothing), and escape then `/`, enter or space as that key alone, the escape lost
    (escape, `/` to filter again: the old filter was never cleared). Worse, while keys went on
    coming within ESCDELAY of each other, Textual went on reading them as one sequence, and an
    escape after them made it give up on that sequence and hand out its keys with the first
    escape as a `^`: in a form holding `echo y`, escape, `a`, `echo x`, enter and escape typed
    fast left that form open, its command `echo y^aecho x`, and saved it.

    This app binds no alt key, so ESC and a key that begins no longer sequence are the escape
    key, then that key, at once: ESC tab too (Textual reads it as shift+tab, which terminals
    send as ESC [ Z). Sequences a terminal does send for a key with alt (ESC DEL: alt+backspace,
    ESC b and ESC f: alt+arrows on macOS) are in Textual's table and read whole, as before; so
    are sequences begun by ESC and ``[``, ``O``, ``]``, ``P``, ``_`` or ``^`` (arrows, mouse,
    paste, the terminal's replies).

    Enter typed while the app starts, before the terminal is raw, reaches it as a newline
    (the terminal's line mode turns CR into NL), which Textual reads as ctrl+j: `a`, a command,
    enter typed at once left the form unsent. A newline is enter here (as ctrl+j is in a shell).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pasted: list[str] | None = None  # a bracketed paste's text so far, while in one
        self._held = ""  # the end of a read that may begin a paste's start or end mark

    def feed(self, data: str) -> Iterable[events.Event]:
        """A bracketed paste is text, whatever it holds: Textual read an ESC inside one as the
        start of a key sequence, and sent what followed as keys (a pasted `echo a\\e[0m`, a
        newline and `x` submitted the form, then cancelled the selected job). Its text is taken
        here, up to the paste's end mark, and sent whole as one Paste."""
        if not data:  # the end of input
            yield from super().feed(data)
            return
        text, self._held = self._held + data, ""
        while text:
            if self._pasted is None:
                start = text.find(PASTE_START)
                if start < 0:
                    keep = _mark_begun(text, PASTE_START, lone_escape=False)
                    self._held = text[len(text) - keep :] if keep else ""
                    text = text[: len(text) - keep]
                    if text:
                        yield from super().feed(text)
                    return
                if start:
                    yield from super().feed(text[:start])
                text = text[start + len(PASTE_START) :]
                self._pasted = []
            else:
                end = text.find(PASTE_END)
                if end < 0:
                    keep = _mark_begun(text, PASTE_END, lone_escape=True)
                    self._pasted.append(text[: len(text) - keep])
                    self._held = text[len(text) - keep :] if keep else ""
                    return
                self._pasted.append(text[:end])
                pasted, self._pasted = "".join(self._pasted), None
                yield events.Paste(pasted.replace("\x00", ""))
                text = text[end + len(PASTE_END) :]

    def _sequence_to_key_events(self, sequence: str, alt: bool = False) -> Iterator[events.Key]:
        if sequence == "\n":
            sequence = "\r"
        if alt or _escape_then_key(sequence):
            yield events.Key("escape", "\x1b")
            sequence = sequence[-1]
        yield from super()._sequence_to_key_events(sequence, alt=False)


PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def _mark_begun(text: str, mark: str, lone_escape: bool) -> int:
    """How many of the last characters of ``text`` begin ``mark`` (the rest of it may come in
    the next read). A lone ESC counts only if ``lone_escape``: outside a paste it is the escape
    key more likely, and held back it would wait for the next key."""
    for size in range(min(len(mark) - 1, len(text)), 0, -1):
        if text.endswith(mark[:size]) and (size > 1 or lone_escape):
            return size
    return 0


# What may follow ESC in a longer sequence: CSI, SS3, OSC, DCS, APC and PM.
_INTRODUCERS = frozenset("[O]P_^")


def _escape_then_key(sequence: str) -> bool:
    """Whether ``sequence`` is ESC and a key that is no key with alt in Textual's table (its
    macOS option characters, ESC 1 for ¡, are the escape key and the digit here), or tab."""
    return (
        len(sequence) == 2
        and sequence[0] == "\x1b"
        and sequence[1] not in _INTRODUCERS
        and sequence[1] != "\x1b"
        and (sequence[1] == "\t" or not isinstance(ANSI_SEQUENCES_KEYS.get(sequence), tuple))
    )


def read_escape_then_key() -> None:
    """Make the terminal's driver parse keys with :class:`EscapeThenKey` (Linux and macOS)."""
    linux_driver.XTermParser = EscapeThenKey  # type: ignore[misc]
