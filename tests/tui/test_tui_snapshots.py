"""How the TUI looks: byte-compared SVG snapshots of seeded scenes (tests/tui/__snapshots__/).

Deterministic by construction: a fixed terminal size, jobs with fixed ids and times on a fixed
clock, no worker threads (nothing runs), no toasts, and no cursor blink (headless apps don't).
Regenerate on purpose with ``pytest tests/tui --snapshot-update`` and look at the result.
"""

from __future__ import annotations

from tui_helpers import until
from textual.widgets import Input, TextArea

from queuectl.tui.app import QueueApp


def scene(queue, clock) -> QueueApp:
    return QueueApp(queue, workers=0, clock=clock, refresh_interval=3600)


async def loaded(pilot) -> None:
    await until(pilot, lambda: pilot.app.loads > 0, what="the first snapshot")
    # The top bar's last hour is read beside the loads (data.Loader): the seeded runs in it.
    await until(pilot, lambda: pilot.app.health_loads > 0, what="the last hour's health")
    await pilot.pause()


def test_main_screen(snap_compare, seeded, fixed_clock):
    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(120, 36), run_before=loaded)


def test_narrow_terminal(snap_compare, seeded, fixed_clock):
    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(80, 24), run_before=loaded)


def test_narrow_terminal_dead_pane_focused(snap_compare, seeded, fixed_clock):
    async def dead_pane(pilot) -> None:
        await loaded(pilot)
        await pilot.press("shift+tab")

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(80, 24), run_before=dead_pane)


def test_enqueue_form_with_an_error(snap_compare, seeded, fixed_clock):
    async def form(pilot) -> None:
        await loaded(pilot)
        await pilot.press("a", *"make release")
        pilot.app.screen.query_one("#priority", Input).value = "high"
        await pilot.press("enter")

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(120, 36), run_before=form)


def test_enqueue_form_narrow(snap_compare, seeded, fixed_clock):
    async def form(pilot) -> None:
        await loaded(pilot)
        await pilot.press("a")

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(80, 24), run_before=form)


def test_config_form(snap_compare, seeded, fixed_clock):
    async def form(pilot) -> None:
        await loaded(pilot)
        await pilot.press("c")

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(120, 36), run_before=form)


def test_details_of_a_dead_job(snap_compare, seeded, fixed_clock):
    async def details(pilot) -> None:
        await loaded(pilot)
        await pilot.press("shift+tab", "enter")
        output = pilot.app.screen.query_one("#output", TextArea)
        await until(pilot, lambda: output.text, what="the job's output")

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(120, 36), run_before=details)


def test_markup_and_escapes_shown_literally(snap_compare, markup_queue, fixed_clock):
    assert snap_compare(
        scene(markup_queue, fixed_clock), terminal_size=(120, 24), run_before=loaded
    )


def test_queues_screen(snap_compare, workflows_queue, fixed_clock):
    async def queues(pilot) -> None:
        await loaded(pilot)
        await pilot.press("Q", "down")
        await pilot.pause()

    assert snap_compare(scene(workflows_queue, fixed_clock), terminal_size=(120, 36), run_before=queues)


def test_schedules_screen(snap_compare, workflows_queue, fixed_clock):
    async def schedules(pilot) -> None:
        await loaded(pilot)
        await pilot.press("S")
        await pilot.pause()

    assert snap_compare(
        scene(workflows_queue, fixed_clock), terminal_size=(120, 36), run_before=schedules
    )


def test_filtered_view_with_queues_and_dependencies(snap_compare, workflows_queue, fixed_clock):
    async def filtered(pilot) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"deploy", "enter")
        app = pilot.app
        await until(pilot, lambda: app.loads and app.panes[0].filter == "deploy", what="filtered")
        await pilot.pause()

    assert snap_compare(
        scene(workflows_queue, fixed_clock), terminal_size=(120, 36), run_before=filtered
    )


def test_live_output_of_a_running_job(snap_compare, output_queue, fixed_clock):
    async def output(pilot) -> None:
        await loaded(pilot)
        await pilot.press("tab", "l")
        await until(pilot, lambda: getattr(pilot.app.screen, "reads", 0) > 0, what="the output")
        await pilot.pause()

    assert snap_compare(scene(output_queue, fixed_clock), terminal_size=(120, 36), run_before=output)


def test_details_with_the_history_timeline(snap_compare, seeded, fixed_clock):
    async def details(pilot) -> None:
        await loaded(pilot)
        await pilot.press("down", "down", "enter")  # health-chk: failed once, to be retried
        screen = pilot.app.screen
        await until(pilot, lambda: getattr(screen, "fields_table", None), what="the job")
        await pilot.pause()

    assert snap_compare(scene(seeded, fixed_clock), terminal_size=(120, 40), run_before=details)
