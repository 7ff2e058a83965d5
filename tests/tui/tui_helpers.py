"""Driving the TUI in tests: build an app, run a scenario against it, wait on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator

from queuectl import Queue
from queuectl.tui.app import QueueApp

SIZE = (120, 40)


@contextlib.contextmanager
def another_connection(path: str) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite file ``path`` of its own, as another process's, to hold its
    write lock (`BEGIN IMMEDIATE` ... `COMMIT`); what it still holds is let go at the end."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


def make_app(queue: Queue, workers: int = 0, clock=None) -> QueueApp:
    return QueueApp(queue, workers=workers, clock=clock, refresh_interval=0.25)


def notices(app) -> list[str]:
    """What the app has said in its notices, oldest first."""
    return [str(notification.message) for notification in app._notifications]


async def until(pilot, condition: Callable[[], object], timeout: float = 30.0,
                what: str | Callable[[], object] = ""):  # fmt: skip
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds, saying
    ``what`` (called, if it is a function: what the app shows by then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what or condition
            raise AssertionError(f"timed out waiting for {said}")
        await pilot.pause(0.02)


async def opened(pilot, kind: type):
    """The screen of ``kind`` that a key just pressed opens, once it is on top: the press may
    return before (a loaded machine: CI found the main screen still on top)."""
    await until(pilot, lambda: isinstance(pilot.app.screen, kind), what=f"a {kind.__name__}")
    return pilot.app.screen


async def resize(pilot, width: int, height: int) -> None:
    """Resize the terminal, as ``pilot.resize_terminal`` does, and wait until the screen has
    the size: that method waits for the process's CPU to go idle too, ~110 ms a call (a test
    going through a hundred widths took 12 s)."""
    from textual.drivers.headless_driver import HeadlessDriver
    from textual.events import Resize
    from textual.geometry import Size

    app, size = pilot.app, Size(width, height)
    if isinstance(app._driver, HeadlessDriver):
        app._driver._size = size
    app.post_message(Resize(size, size))
    await until(pilot, lambda: app.screen.size == size, what=f"the screen at {size}")
    await pilot.pause(0)  # its handlers of the resize ran


def pressing_to_the_end(pilot) -> Callable[..., Awaitable[None]]:
    """``pilot.press``, returning once the app has handled every key pressed, to the end (its
    reply shown: ``KeysInOrder``): Textual's returns once the process looks idle, which on a
    loaded machine came before the key was handled (the main screen still on top, CI)."""
    press, app = pilot.press, pilot.app

    async def pressed(*keys: str) -> None:
        handled = app.keys_handled + sum(not key.startswith("wait:") for key in keys)
        await press(*keys)
        await until(pilot, lambda: app.keys_handled >= handled or app._exit or not app.is_running,
                    what=lambda: f"the app to handle {keys} ({app.keys_handled} of {handled})")

    return pressed


def drive(
    app: QueueApp, scenario: Callable[..., Awaitable[None]], size=SIZE, toasts: bool = False
) -> None:
    """Run ``scenario(pilot)`` against ``app`` once its first snapshot is shown; ``toasts``:
    with its notifications drawn (Textual's tests leave them out)."""

    async def main() -> None:
        async with app.run_test(size=size, notifications=toasts) as pilot:
            pilot.press = pressing_to_the_end(pilot)
            await until(pilot, lambda: app.loads > 0, what="the first snapshot")
            try:
                await scenario(pilot)
            except BaseException:
                app.pool.kill()  # a failed scenario leaves no job running (gated jobs wait on)
                app.pool.join()
                raise
            if not app._exit:
                app.pool.join()  # a test that did not quit leaves no threads behind

    asyncio.run(main())
