"""A busy TUI stays quick (issue #17): the enqueue form is made once and shown again as new, the
last hour's health is read beside the loads (a slow one does not hold the panes back), a
busy pool's job events reach the UI thread as one message until it has handled it, the panes
wait while a screen covers them, and the footer is not made again for the same keys."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

from textual.widgets import Button, Input, Static
from tui_helpers import drive, make_app, opened, until

from queuectl.spec import JobSpec
from queuectl.tui import data
from queuectl.tui import app as app_module
from queuectl.tui.app import QueueApp
from queuectl.tui.screens.enqueue import EnqueueScreen


def test_the_enqueue_form_opens_again_empty(seeded, fixed_clock):
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("a", *"make release")
        app.screen.query_one("#priority", Input).value = "high"
        await pilot.press("enter")  # refused: the error shows under priority
        first = app.screen
        assert isinstance(first, EnqueueScreen) and first.field("priority").has_class("-invalid")
        await pilot.press("escape")
        assert not isinstance(app.screen, EnqueueScreen)
        await pilot.press("a", *"echo again")
        form = app.screen
        assert isinstance(form, EnqueueScreen)
        assert form.text("command") == "echo again"  # typed into the first field, as new
        assert form.text("priority") == ""
        assert not form.query(".field.-invalid")
        assert str(form.field("priority").query_one(".field-error", Static).render()) == ""
        await pilot.press("enter")
        await until(pilot, lambda: any(j.command == "echo again" for j in seeded.list_jobs()),
                    what="the job enqueued")  # fmt: skip
        assert not any(j.command == "make release" for j in seeded.list_jobs())

    drive(app, scenario)


def test_a_slow_health_read_does_not_hold_the_panes_back(seeded, fixed_clock, monkeypatch):
    """The top bar's last hour can take seconds with a million jobs; the loads go on meanwhile,
    and the figures show once read."""
    release = threading.Event()
    real = data.health

    def slow(queue, *args):
        release.wait(10)
        return real(queue, *args)

    monkeypatch.setattr(data, "health", slow)
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        loads = app.loads
        await until(pilot, lambda: app.loads >= loads + 3, what="loads while health is read")
        assert app.health_loads == 0
        release.set()
        await until(pilot, lambda: app.health_loads > 0, what="the last hour's health")
        shown = str(app.stats.query_one("#health", Static).render())
        assert "43% failed" in shown

    try:
        drive(app, scenario)
    finally:
        release.set()


def test_a_busy_pools_events_are_one_message_until_handled(seeded, fixed_clock):
    handled = []

    class Counting(QueueApp):
        CSS_PATH = os.path.join(os.path.dirname(app_module.__file__), QueueApp.CSS_PATH)

        def on_pool_event(self, event) -> None:
            handled.append(event)
            super().on_pool_event(event)

    app = Counting(seeded, workers=0, clock=fixed_clock, refresh_interval=0.25)

    async def scenario(pilot):
        job = SimpleNamespace(id="x")
        sent = threading.Thread(
            target=lambda: [app._pool_event(SimpleNamespace(kind="ended", job=job))
                            for _ in range(2000)]  # fmt: skip
        )
        sent.start()
        sent.join()
        await until(pilot, lambda: handled, what="the news")
        await pilot.pause(0.1)
        assert len(handled) < 20  # not one a job
        handled.clear()
        app._pool_event(SimpleNamespace(kind="started", job=job))  # news after: a message again
        await until(pilot, lambda: handled, what="the next news")

    drive(app, scenario)


def test_a_slow_health_read_is_asked_for_less_often(seeded, fixed_clock, monkeypatch):
    """Its figures move slowly: a read that took long waits ten times as long for the next."""
    real = data.health
    reads = []

    def slow(queue, *args):
        reads.append(1)
        threading.Event().wait(0.6)  # the next read ~6 s later: far past 4 loads, even slowed
        return real(queue, *args)

    monkeypatch.setattr(data, "health", slow)
    monkeypatch.setattr(data.Loader, "HEALTH_EVERY_S", 0.1)
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await until(pilot, lambda: app.health_loads > 0, what="the last hour's health")
        loads = app.loads
        await until(pilot, lambda: app.loads >= loads + 4, what="loads")  # a second or more
        assert len(reads) == 1  # the next one after ~6 s (10 x 0.6 s), not after 0.1 s

    drive(app, scenario)


def test_the_panes_wait_under_a_form_and_catch_up_once_it_closes(seeded, fixed_clock):
    """Nobody reads the panes under an open screen: what was loaded meanwhile is shown once
    they are back on top (a busy pool changed them every second, each time drawn again under
    the form the user was typing into)."""
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("a")
        await opened(pilot, EnqueueScreen)
        seeded.enqueue(JobSpec("echo from elsewhere", id="elsewhere"))
        app.request_load()
        await until(pilot, lambda: app._held is not None, what="a load while the form is open")
        assert "elsewhere" not in pane_ids(app, "waiting")  # not drawn under the form
        await pilot.press("escape")
        await until(pilot, lambda: "elsewhere" in pane_ids(app, "waiting"), what="caught up")

    drive(app, scenario)


def test_the_footer_is_not_made_again_when_a_form_opens_and_closes(seeded, fixed_clock):
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await until(pilot, lambda: app.footer.children, what="the footer's keys")
        await pilot.pause(0.2)  # its first bindings, composed as they settle
        keys = list(app.footer.children)
        for _ in range(2):
            await pilot.press("a")
            await opened(pilot, EnqueueScreen)
            await pilot.press("escape")
            await pilot.pause()
        assert list(app.footer.children) == keys  # the same widgets: the same keys shown
        await pilot.press("tab")  # another pane: the same keys again
        await pilot.pause()
        assert list(app.footer.children) == keys

    drive(app, scenario)


def test_the_form_shown_again_after_a_theme_change_has_the_new_theme(seeded, fixed_clock):
    """A form shown again keeps its styles (not computed again), unless the CSS changed."""
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("a")
        before = app.screen.query_one("#submit", Button).styles.background
        await pilot.press("escape")
        app.theme = "textual-light"
        await pilot.pause()
        await pilot.press("a")
        await opened(pilot, EnqueueScreen)
        after = app.screen.query_one("#submit", Button).styles.background
        assert after != before

    drive(app, scenario)


def pane_ids(app, name: str) -> list[str]:
    table = app.grid.query_one(f"#pane-{name}")
    return [str(key.value) for key in table.rows]


def test_the_enqueue_form_is_made_before_the_first_a(seeded, fixed_clock):
    """Made once the panes are shown: the first `a` only shows it, as every later one does."""
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        await until(pilot, lambda: app._form is not None and app._form.is_mounted,
                    what="the form made ahead")  # fmt: skip
        form = app._form
        await pilot.press("a", *"echo first")
        assert app.screen is form
        assert form.text("command") == "echo first"
        await pilot.press("enter")
        await until(pilot, lambda: any(j.command == "echo first" for j in seeded.list_jobs()),
                    what="the job enqueued")  # fmt: skip

    drive(app, scenario)
