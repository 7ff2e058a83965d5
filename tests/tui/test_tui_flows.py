"""Workflows in the TUI (SPEC 5, 7): the queues screen (`Q`), the schedules screen (`S`), the
filter (`/`), the queue and dependencies of jobs in the panes and the details."""

from __future__ import annotations

import pytest

from test_tui_pilot import column, pane, plain, screen_text, type_ahead, typed
from textual.command import CommandList
from textual.widgets import DataTable, Input, Static
from tui_helpers import drive, make_app, notices, opened, resize, until

from queuectl.queue import Queue
from queuectl.spec import JobSpec
from queuectl.tui.screens.confirm import ConfirmScreen
from queuectl.tui.screens.details import DetailsScreen
from queuectl.tui.screens.queues import LimitScreen, QueuesScreen
from queuectl.tui.screens.schedules import ScheduleForm, SchedulesScreen


def rows(screen) -> list[str]:
    return [str(key.value) for key in screen.table.rows]


def error_of(screen, key: str) -> str:
    return str(screen.field(key).query_one(".field-error", Static).render())


def queue_info(queue, name: str):
    return next(info for info in queue.queues() if info.name == name)


# -- the panes -------------------------------------------------------------------------------


def test_panes_show_queues_and_what_waiting_jobs_wait_for(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        waiting = pane(app, "waiting")
        await until(pilot, lambda: "notify-ops" in column(waiting, "id"))
        when = dict(zip(column(waiting, "id"), column(waiting, "when")))
        assert when["deploy-web"] == "after test-s…"
        assert when["notify-ops"] == "blocked: deploy… is dead"
        assert when["docs-build"] == "ready"
        # Several queues: a narrow pane names the queue of the jobs not in `default`.
        commands = dict(zip(column(waiting, "id"), column(waiting, "command")))
        assert commands["migrate-db"] == "deploy ▸ ./migrate.sh --dry-run"
        assert commands["docs-build"] == "make docs"

    drive(app, scenario)


def test_a_job_of_a_paused_queue_shows_paused_not_ready(workflows_queue, fixed_clock):
    """A due job of a paused queue read "ready", though no worker claims it."""
    workflows_queue.enqueue(JobSpec("./rotate-logs.sh", id="rotate", queue="ops"))
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        waiting = pane(app, "waiting")
        when = lambda: dict(zip(column(waiting, "id"), column(waiting, "when")))  # noqa: E731
        await until(pilot, lambda: when().get("rotate") == "⏸ paused")
        assert when()["notify-ops"] == "blocked: deploy… is dead"  # what it waits for first
        assert when()["docs-build"] == "ready"
        workflows_queue.resume_queue("ops")
        await until(pilot, lambda: when().get("rotate") == "ready")
        workflows_queue.set_queue_limit("ops", 0)  # as held as paused (QA: "due now" in `list`)
        await until(pilot, lambda: when().get("rotate") == "⏸ limit 0")

    drive(app, scenario)


def test_blocked_fits_a_narrow_waiting_pane_with_its_word_and_id(workflows_queue, fixed_clock):
    """QA, at 100 to 109 columns: "blocked: deploy… is dead" ran past the pane's edge, cut with
    no ellipsis. The table now fits its pane, its "When" showing "blocked: deploy…"."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        waiting = pane(app, "waiting")
        await until(pilot, lambda: "notify-ops" in column(waiting, "id"))
        await pilot.pause()
        shown = sum(c.get_render_width(waiting) for c in waiting.columns.values())
        assert shown <= waiting.scrollable_content_region.width
        lines = [waiting.render_line(y).text for y in range(waiting.size.height)]
        (row,) = [line for line in lines if "notify-ops" in line]
        assert "blocked: deploy…" in row

    drive(app, scenario, size=(100, 30))


def test_a_wide_pane_has_a_queue_column(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await until(pilot, lambda: "queue" in [c.key.value for c in pane(app, "waiting").columns.values()])
        waiting = pane(app, "waiting")
        queues = dict(zip(column(waiting, "id"), column(waiting, "queue")))
        assert queues["migrate-db"] == "deploy" and queues["docs-build"] == "default"

    drive(app, scenario, size=(200, 40))


def test_a_wide_waiting_pane_gives_the_command_more_room_than_the_last_error(seeded,
                                                                              fixed_clock):
    """At 200 columns the command and the last error had the same width: a deploy command was
    cut at 26 characters beside an empty error."""
    seeded.enqueue(JobSpec("./scripts/deploy.sh --env production --region eu-west-1",
                           id="deploy"))  # fmt: skip
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        waiting = pane(app, "waiting")
        await until(pilot, lambda: "deploy" in column(waiting, "id"))
        widths = {c.key.value: c.width for c in waiting.columns.values()}
        assert widths["command"] >= 2 * widths["error"] - 1
        commands = dict(zip(column(waiting, "id"), column(waiting, "command")))
        assert commands["deploy"].startswith("./scripts/deploy.sh --env production")

    drive(app, scenario, size=(200, 40))


def test_one_queue_no_queue_shown(seeded, fixed_clock):
    app = make_app(seeded, clock=fixed_clock)

    async def scenario(pilot):
        assert "queue" not in [c.key.value for c in pane(app, "waiting").columns.values()]
        assert not any("▸" in text for text in column(pane(app, "waiting"), "command"))

    drive(app, scenario, size=(200, 40))


def test_details_show_dependencies_both_ways(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        app.push_screen(DetailsScreen(workflows_queue, "test-suite"))
        await until(pilot, lambda: getattr(app.screen, "fields_table", None) is not None)
        text = plain(app.screen.fields_table)
        assert "needed by" in text and "deploy-web pending" in text
        app.pop_screen()
        app.push_screen(DetailsScreen(workflows_queue, "notify-ops"))
        await until(pilot, lambda: getattr(app.screen, "fields_table", None) is not None)
        assert "deploy-prod dead" in plain(app.screen.fields_table)
        app.pop_screen()
        assert workflows_queue.purge(["dead"]) >= 1  # notify-ops is cancelled for it
        app.push_screen(DetailsScreen(workflows_queue, "notify-ops"))
        await until(pilot, lambda: getattr(app.screen, "fields_table", None) is not None)
        assert "deploy-prod purged" in plain(app.screen.fields_table)

    drive(app, scenario)


# -- the filter ------------------------------------------------------------------------------


def test_slash_filters_every_pane_and_escape_clears_it(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "slash", *typed("DEPLOY"), "enter")  # any case; typed before it opens
        await until(pilot, lambda: app.filter_text == "DEPLOY")
        await until(pilot, lambda: column(pane(app, "dead"), "id") == ["deploy-prod"])
        # By id, command or queue: migrate-db is in the queue `deploy`.
        await until(pilot, lambda: column(pane(app, "waiting"), "id") == [
            "migrate-db", "deploy-web", "notify-ops"])  # fmt: skip
        assert column(pane(app, "completed"), "id") == []
        assert "no match" in pane(app, "completed").border_subtitle
        assert app.filter_bar.display and app.filter_bar.text == "DEPLOY"  # shown while on
        await until(pilot, lambda: app.focused is pane(app, "waiting"))  # enter: to the panes
        await pilot.press("escape")
        await until(pilot, lambda: not app.filter_bar.display and app.filter_text == "")
        await until(pilot, lambda: len(column(pane(app, "completed"), "id")) == 5)

    drive(app, scenario)


def test_slow_loads_refresh_with_a_share_of_a_core(
        live_queue, monkeypatch):  # fmt: skip
    """QA: a filter over a million jobs (a second a load) was loaded again and again, 50-64 %
    of a core, and keys waited behind it. A slow load is followed by a wait of LOAD_SHARE
    times its length before the next one nobody asked for."""
    import time

    from queuectl.tui import data

    for n in range(3):
        live_queue.enqueue(JobSpec(f"echo job {n}", id=f"j{n}"))
    loads: list[float] = []
    load_snapshot = data.load_snapshot

    def slow(queue, clock, limits, text="", **kwargs):
        if text:
            loads.append(time.monotonic())
            time.sleep(0.3)
        return load_snapshot(queue, clock, limits, text, **kwargs)

    monkeypatch.setattr(data, "load_snapshot", slow)
    app = make_app(live_queue)  # (refreshed every 0.25 s)

    async def scenario(pilot):
        await until(pilot, lambda: len(column(pane(app, "waiting"), "id")) == 3)
        type_ahead(app, "slash", *typed("job 1"), "enter")
        await until(pilot, lambda: column(pane(app, "waiting"), "id") == ["j1"])
        began = time.monotonic()
        await pilot.pause(3.0)
        timed = [at for at in loads if at >= began]
        # Back to back: ~10. With a share of a quarter: one every 1.2 s at most.
        assert len(timed) <= 4, [round(at - began, 2) for at in timed]
        await pilot.press("escape")
        await until(pilot, lambda: len(column(pane(app, "waiting"), "id")) == 3)

    drive(app, scenario)


def test_keys_typed_after_a_filter_act_on_the_jobs_it_shows(live_queue):
    """`/ small 5 enter x` in one go cancelled the job selected before the filter (the first
    row), which the filter hid, not the one job it shows: the `x` came before its rows."""
    for n in range(1, 7):
        live_queue.enqueue(JobSpec(f"echo small {n}", id=f"s{n}"))
    app = make_app(live_queue)

    async def scenario(pilot):
        await until(pilot, lambda: len(column(pane(app, "waiting"), "id")) == 6)
        selected = pane(app, "waiting").selected_id
        type_ahead(app, "slash", *typed("small 5"), "enter", "x")
        await until(pilot, lambda: live_queue.get("s5").state == "cancelled")
        assert [job.id for job in live_queue.list_jobs("cancelled")] == ["s5"], selected
        type_ahead(app, "escape", "x")  # the filter cleared: the first row again
        await until(pilot, lambda: live_queue.get(selected).state == "cancelled")
        assert len(live_queue.list_jobs("cancelled")) == 2

    drive(app, scenario)


def test_a_paste_into_the_filter_leaves_its_control_characters_out(live_queue):
    """The filter's input drew a pasted escape sequence as it was: the terminal obeyed it."""
    from textual import events

    live_queue.enqueue(JobSpec("echo deploy", id="d1"))
    app = make_app(live_queue)

    async def scenario(pilot):
        await pilot.press("slash")
        app.filter_bar.input.post_message(events.Paste("dep\x1b]2;T\x07loy\n"))
        await until(pilot, lambda: app.filter_text == "dep]2;Tloy")
        assert all(c.isprintable() for c in app.filter_bar.input.value)

    drive(app, scenario)


def test_the_filter_matches_percent_and_underscore_literally(live_queue):
    for job_id, command in (("p1", "echo 100% done"), ("p2", "echo 100 done"),
                            ("u1", "echo a_b"), ("u2", "echo axb")):  # fmt: skip
        live_queue.enqueue(JobSpec(command, id=job_id))
    app = make_app(live_queue)

    async def scenario(pilot):
        type_ahead(app, "slash", *typed("0% d"))
        await until(pilot, lambda: column(pane(app, "waiting"), "id") == ["p1"])
        type_ahead(app, "escape", "slash", *typed("a_b"))
        await until(pilot, lambda: column(pane(app, "waiting"), "id") == ["u1"])
        await pilot.press("escape")
        await until(pilot, lambda: len(column(pane(app, "waiting"), "id")) == 4)

    drive(app, scenario)


def test_the_engine_filter_loads_no_more_than_the_limit(workflows_queue):
    jobs = workflows_queue.pane_matching("completed", 2, "")
    assert len(jobs) == 2
    assert [j.id for j in workflows_queue.pane_matching("waiting", 1, "deploy")] == ["migrate-db"]
    assert workflows_queue.pane_matching("dead", 10, "nothing like it") == []


# -- queues ----------------------------------------------------------------------------------


def test_Q_lists_queues_and_p_pauses_and_resumes_the_selected_one(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "Q", "down", "p")  # typed at once: the rows are there for `p`
        await until(pilot, lambda: queue_info(workflows_queue, "deploy").paused)
        screen = await opened(pilot, QueuesScreen)
        assert rows(screen) == ["default", "deploy", "ops"]
        await until(pilot, lambda: "paused" in screen.table.get_row("deploy")[-1].plain)
        cells = [cell.plain for cell in screen.table.get_row("default")]
        assert cells[:4] == ["default", "3", "2", "5"]  # pending, processing, completed
        await pilot.press("down", "p")  # ops was paused: resumed
        await until(pilot, lambda: not queue_info(workflows_queue, "ops").paused)
        await pilot.press("escape")  # (once the table shows the `p`)
        await until(pilot, lambda: not isinstance(app.screen, QueuesScreen))

    drive(app, scenario)


@pytest.mark.parametrize("presses", [2, 3, 4])
def test_p_typed_ahead_on_Q_toggles_once_a_key(workflows_queue, fixed_clock, presses):
    """`p p` typed at once paused the queue twice (each `p` read the same last-read row):
    each `p` now toggles what the one before it asked for, and they are carried out in order."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "Q", "down", *["p"] * presses)  # deploy: running
        words = ["Paused", "Resumed"] * 2
        said = [f"{word} queue deploy" for word in words[:presses]]
        await until(pilot, lambda: notices(app) == said)
        assert queue_info(workflows_queue, "deploy").paused == (presses % 2 == 1)
        state = "paused" if presses % 2 else "running"
        await until(pilot, lambda: state in app.screen.table.get_row("deploy")[-1].plain)

    drive(app, scenario)


def test_g_and_G_move_to_the_first_and_last_queue_as_in_the_panes(workflows_queue, fixed_clock):
    """`g` did nothing here: `n g d y` on the schedules screen removed the row the cursor was
    on, not the first one. Both screens share the table."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "Q", "G", "p")  # ops, the last row: paused -> resumed
        await until(pilot, lambda: not queue_info(workflows_queue, "ops").paused)
        type_ahead(app, "g", "p")  # default, the first row
        await until(pilot, lambda: queue_info(workflows_queue, "default").paused)
        assert not queue_info(workflows_queue, "deploy").paused

    drive(app, scenario)


def test_l_sets_and_removes_a_queue_limit_with_a_validated_form(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "Q", "l", "backspace", *typed("-1"), "enter")  # default: no limit yet
        await until(pilot, lambda: isinstance(app.screen, LimitScreen) and
                    app.screen.field("limit").has_class("-invalid"))  # fmt: skip
        assert error_of(app.screen, "limit") == "'limit' must be >= 0, got -1"
        type_ahead(app, "backspace", "backspace", *typed("3"), "enter")
        await until(pilot, lambda: queue_info(workflows_queue, "default").limit == 3)
        assert isinstance(app.screen, QueuesScreen)
        await until(pilot, lambda: app.screen.table.get_row("default")[-2].plain == "3")
        type_ahead(app, "down", "l", "backspace", *typed("none"), "enter")  # deploy: 1 -> none
        await until(pilot, lambda: queue_info(workflows_queue, "deploy").limit is None)

    drive(app, scenario)


def test_Q_reads_slow_counts_with_a_share_of_a_core_but_an_action_s_read_at_once(
        workflows_queue, fixed_clock, monkeypatch):  # fmt: skip
    """QA: with a million jobs the queues' counts take a second, read every second and back to
    back: 60-87 % of a core while `Q` was open. A slow read is followed by a wait of
    READ_SHARE times its length; the read after an action (`p`) is not held back."""
    import time

    reads: list[float] = []
    counted = QueuesScreen.items

    def slow(screen):
        reads.append(time.monotonic())
        time.sleep(0.5)  # (as a million jobs' counts, shorter)
        return counted(screen)

    monkeypatch.setattr(QueuesScreen, "items", slow)
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("Q")
        await until(pilot, lambda: isinstance(app.screen, QueuesScreen) and app.screen.loaded)
        opened = time.monotonic()
        await pilot.pause(4.0)
        timed = [at for at in reads if at >= opened]
        # Every second: 4 (50 % of a core). With a share of a quarter: one every 2 s at most.
        assert len(timed) <= 3, [round(at - opened, 2) for at in timed]
        asked = len(reads)
        await pilot.press("p")  # pauses "default": read again at once, to show it
        await until(pilot, lambda: "paused" in app.screen.table.get_row("default")[-1].plain,
                    5, what="the pause shown")  # fmt: skip
        assert len(reads) > asked

    drive(app, scenario)


def test_Q_follows_changes_made_elsewhere_every_second_on_one_connection(
        workflows_queue, fixed_clock):  # fmt: skip
    """QA: the queues and schedules screens read every 2 s (SPEC 5: at least every second), a
    pause made elsewhere shown up to 1.6 s later; and each read was a thread, on PostgreSQL a
    new connection. They read every second, on one thread that keeps its connection while
    the screen is open and closes it after."""
    from test_tui_pilot import connections_opened

    assert QueuesScreen.REFRESH_S <= 1.0 and SchedulesScreen.REFRESH_S <= 1.0
    elsewhere = Queue(str(workflows_queue.target), clock=fixed_clock)  # another process's view
    opened = connections_opened(workflows_queue)
    app = make_app(workflows_queue, clock=fixed_clock)
    state = lambda name: app.screen.table.get_row(name)[-1].plain  # noqa: E731

    async def scenario(pilot):
        await pilot.press("Q")
        await until(pilot, lambda: isinstance(app.screen, QueuesScreen))
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        app.loader.request = lambda *args, **kwargs: None  # (the panes' loads are not counted)
        await until(pilot, lambda: not app.loader._loading and not app.loader._health_loading)
        before = len(opened)
        for name in ("default", "deploy"):
            elsewhere.pause_queue(name)
            await until(pilot, lambda: "paused" in state(name), 10, what=f"{name} paused")
        assert set(opened[before:]) <= {"queuectl-listing"}, opened[before:]  # (its first)
        assert len(opened[before:]) <= 1, opened[before:]
        reader = screen._reader._thread
        await pilot.press("escape")
        await until(pilot, lambda: not reader.is_alive(), 10, what="the reader to end")

    try:
        drive(app, scenario)
    finally:
        elsewhere.close()


def test_the_Q_screen_says_a_database_error_s_cause(workflows_queue, fixed_clock, monkeypatch):
    """QA: the bar said `database error: database "x" does not exist`, the Q screen the whole
    of psycopg's text on two lines, its cause last."""
    import peewee

    app = make_app(workflows_queue, clock=fixed_clock)

    def dropped(self):
        raise peewee.OperationalError('connection failed: connection to server at "127.0.0.1",'
                                      ' port 5432 failed: FATAL:  database "gone" does not exist')

    async def scenario(pilot):
        monkeypatch.setattr(QueuesScreen, "items", dropped)
        await pilot.press("Q")
        note = lambda: str(app.screen.query_one("#listing-note", Static).render())  # noqa: E731
        await until(pilot, lambda: "cannot read" in note(), what=note)
        assert note() == 'cannot read the queue: database error: database "gone" does not exist'

    drive(app, scenario)


# -- schedules -------------------------------------------------------------------------------


def test_S_then_a_form_typed_ahead_adds_a_schedule(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "a", *typed("hourly-sync"), "tab", *typed("@hourly"), "tab",
                   *typed("rsync -a src/ dst/"), "tab", *typed("Europe/Paris"), "tab", "space",
                   "enter")  # fmt: skip
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen)
                    and "hourly-sync" in [s.name for s in workflows_queue.schedules()])  # fmt: skip
        info = workflows_queue.get_schedule("hourly-sync")
        assert (info.cron, info.zone, info.no_overlap) == ("@hourly", "Europe/Paris", True)
        assert info.job["command"] == "rsync -a src/ dst/"
        await until(pilot, lambda: "hourly-sync" in rows(app.screen))

    drive(app, scenario)


def test_keys_typed_after_adding_a_schedule_find_it_in_the_table(workflows_queue, fixed_clock):
    """QA: two schedules added, then `j r` typed at once: the `j` was lost (the table did not
    show the second one yet), and `r` ran the first. Typed slowly, `j` reaches the second."""
    app = make_app(workflows_queue, clock=fixed_clock)
    before = {s.name for s in workflows_queue.schedules()}

    async def scenario(pilot):
        await pilot.press("S")
        names = rows(app.screen)
        type_ahead(app, "G", "a", *typed("zz-s1"), "tab", *typed("@daily"), "tab",
                   *typed("echo s1"), "enter", "a", *typed("zz-s2"), "tab", *typed("@hourly"),
                   "tab", *typed("echo s2"), "enter", "G", "r")  # fmt: skip
        await until(pilot, lambda: any("from schedule" in n for n in notices(app)),
                    what=notices(app))  # fmt: skip
        ran = [n for n in notices(app) if "from schedule" in n]
        assert ran[0].endswith("from schedule zz-s2"), (names, notices(app))
        assert {s.name for s in workflows_queue.schedules()} == before | {"zz-s1", "zz-s2"}

    drive(app, scenario)


def test_a_schedule_added_is_selected_for_the_keys_typed_next(workflows_queue, fixed_clock):
    """QA: after `a` added a schedule the cursor stayed on the first row, and `p` typed next
    paused that one (7 of 7), not the one just added."""
    app = make_app(workflows_queue, clock=fixed_clock)
    paused = {s.name for s in workflows_queue.schedules() if s.paused}

    async def scenario(pilot):
        type_ahead(app, "S", "a", *typed("zz-new"), "tab", *typed("@daily"), "tab",
                   *typed("echo zz"), "enter", "p")  # fmt: skip
        await until(pilot, lambda: "Paused schedule zz-new" in notices(app), what=notices(app))
        assert {s.name for s in workflows_queue.schedules() if s.paused} == paused | {"zz-new"}
        assert app.screen.table.selected == "zz-new"

    drive(app, scenario)


def test_the_schedule_form_shows_the_engines_errors(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("S", "a")
        form = app.screen
        assert isinstance(form, ScheduleForm)
        for key, text in (("name", "bad name"), ("cron", "61 * * * *"), ("zone", "Mars/Base"),
                          ("command", '{"command": "x", "after": ["a"]}')):  # fmt: skip
            form.query_one(f"#{key}", Input).value = text
        await pilot.press("enter")
        assert app.screen is form
        assert "'name' must be 1 to 64 ASCII letters" in error_of(form, "name")
        assert error_of(form, "cron") == "bad cron expression '61 * * * *'"
        assert "unknown time zone 'Mars/Base'" in error_of(form, "zone")
        assert error_of(form, "command") == "a schedule's job cannot have 'after'"
        # A name that exists is found by the database: shown under the name, focus there.
        for key, text in (("name", "nightly-backup"), ("cron", "@daily"), ("zone", ""),
                          ("command", "true")):  # fmt: skip
            form.query_one(f"#{key}", Input).value = text
        await pilot.press("enter")
        await until(pilot, lambda: form.field("name").has_class("-invalid"))
        assert error_of(form, "name") == "a schedule named 'nightly-backup' exists"
        assert app.focused is form.query_one("#name", Input)
        type_ahead(app, "end", *["backspace"] * 6, *typed("copy"), "enter")  # nightly-copy
        await until(pilot, lambda: not isinstance(app.screen, ScheduleForm))
        names = [info.name for info in workflows_queue.schedules()]
        assert "nightly-copy" in names, names
        assert workflows_queue.get_schedule("nightly-copy").cron == "@daily"

    drive(app, scenario)


def test_schedules_pause_run_now_and_remove_after_asking(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "p")  # the first row: health-ping
        await until(pilot, lambda: workflows_queue.get_schedule("health-ping").paused)
        screen = app.screen
        await until(pilot, lambda: "paused" in screen.table.get_cell("health-ping", "due").plain)
        await pilot.press("down", "r")  # nightly-backup, now
        job = await until(pilot, lambda: [j for j in workflows_queue.list_jobs()
                                          if j.schedule == "nightly-backup"])  # fmt: skip
        await until(pilot, lambda: screen.table.get_cell("nightly-backup", "last").plain == job[0].id)
        await pilot.press("d")
        await opened(pilot, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("d", "y")
        await until(pilot, lambda: "nightly-backup" not in
                    [s.name for s in workflows_queue.schedules()])  # fmt: skip
        await until(pilot, lambda: "nightly-backup" not in rows(screen))
        assert job[0].id in [j.id for j in workflows_queue.list_jobs()]  # its jobs stay

    drive(app, scenario, size=(160, 40))  # wide enough for the last job's column


def test_actions_typed_before_the_screen_closes_are_all_carried_out(workflows_queue, fixed_clock):
    """`p p p escape` typed at once: the actions not yet carried out when the screen closed
    were dropped (the queue stayed as the first `p` left it)."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "Q", "down", "p", "p", "p", "escape")  # deploy: running
        said = ["Paused queue deploy", "Resumed queue deploy", "Paused queue deploy"]
        await until(pilot, lambda: notices(app) == said, 30, "the three actions")
        # (escape waits for the table to show the last `p`: it may come after its notice)
        await until(pilot, lambda: not isinstance(app.screen, QueuesScreen), 30, "closed")
        assert queue_info(workflows_queue, "deploy").paused

    drive(app, scenario)


def test_a_key_typed_after_a_schedule_s_removal_acts_on_the_next_row(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "d", "y", "p")  # health-ping removed; p: the row now first
        await until(pilot, lambda: len(notices(app)) == 2)
        removed, paused = notices(app)
        assert removed == "Removed schedule health-ping"
        assert paused.startswith("Paused schedule ") and "health-ping" not in paused

    drive(app, scenario)


def test_p_typed_ahead_on_S_toggles_once_a_key(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "p", "p", "p", "p")  # the first row: health-ping
        said = ["Paused schedule health-ping", "Resumed schedule health-ping"] * 2
        await until(pilot, lambda: notices(app) == said)
        assert not workflows_queue.get_schedule("health-ping").paused
        await until(pilot, lambda: "paused" not in
                    app.screen.table.get_cell("health-ping", "due").plain)  # fmt: skip

    drive(app, scenario)


@pytest.mark.parametrize(("size", "columns"), [
    ((120, 35), ["name", "cron", "zone", "due", "command"]),
    ((200, 50), ["name", "cron", "zone", "due", "last", "overlap", "command"]),
    ((80, 24), ["name", "cron", "due"]),
    ((60, 20), ["name", "cron", "soon"]),
    ((40, 20), ["name", "soon"]),
])  # fmt: skip
def test_the_schedules_table_fits_and_gives_its_command_room(workflows_queue, fixed_clock,
                                                               size, columns):  # fmt: skip
    """At 120 columns the schedules' command column was 5 cells wide ("Comma"), and the table
    scrolled sideways: the overlap and last job columns now give way to it. The zone stays: it
    says why a schedule of `0 3 * * *` is due at 02:00 (UTC)."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("S")
        table = await until(pilot, lambda: isinstance(app.screen, SchedulesScreen)
                            and app.screen.table.row_count and app.screen.table)  # fmt: skip
        assert [str(key.value) for key in table.columns] == columns
        assert "command" not in table.columns or table.columns["command"].width >= 16
        assert table.virtual_size.width <= table.scrollable_content_region.width

    drive(app, scenario, size=size)


def test_a_narrow_schedules_table_shows_each_name_and_when_it_is_due_whole(workflows_queue,
                                                                           fixed_clock):  # fmt: skip
    """QA: at 40 columns the schedules' table read "Nex…", "*/1…", "202…": each column was cut
    to fit, the due time to three characters. There the due time now says how soon only, and
    the cron gives way (`enter` shows it): the cells shown read whole. Narrower still, a cell
    cut to its column ends in `…` (QA: `*/30 * * * * *`, every 30 seconds, cut by the screen's
    edge read `*/30 * * * *`, every 30 minutes)."""
    from queuectl.text import coarse_relative_time

    workflows_queue.add_schedule("every30s", "*/30 * * * * *", JobSpec("true", cwd="/"))
    soon = coarse_relative_time(workflows_queue.get_schedule("every30s").next_due, fixed_clock())
    app = make_app(workflows_queue, clock=fixed_clock)

    def row_of(table, name: str) -> str:
        return next(line for line in screen_text(table) if name in line)

    async def scenario(pilot):
        await pilot.press("S")
        table = await until(pilot, lambda: isinstance(app.screen, SchedulesScreen)
                            and app.screen.table.row_count and app.screen.table)  # fmt: skip
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert "Next due" in row_of(table, "Name")
        assert row_of(table, "every30s").split() == ["every30s", *soon.split()]
        assert row_of(table, "weekly-report").split() == ["weekly-report", "⏸", "paused"]
        await resize(pilot, 24, 20)
        await until(pilot, lambda: all("…" in line for line in screen_text(table)[1:4]))
        assert table.virtual_size.width <= table.scrollable_content_region.width

    drive(app, scenario, size=(40, 20))


def test_the_queues_screen_adds_each_row_once_and_redraws_only_what_changed(
    workflows_queue, fixed_clock, monkeypatch
):  # fmt: skip
    """QA: `Q` with 1,000 queues took ~0.8 s to open, and ~40 ms of the UI thread at each
    refresh. More rows than fit brought the scrollbar, which narrowed the table: its columns
    were made again and every row added a second time. And each refresh made every row anew and
    compared it with the one shown. The scrollbar's room is now kept, and a queue as it was
    keeps its row: a refresh touches only the cells of the queues that changed."""
    from queuectl.tui.widgets.listing import Listing

    names = [f"bulk-{n:02d}" for n in range(60)]
    workflows_queue.enqueue_many([JobSpec("true", queue=name, cwd="/") for name in names])
    added, updated = [], []
    monkeypatch.setattr(Listing, "add_row", lambda self, *cells, key=None, **kw: (
        added.append(key), DataTable.add_row(self, *cells, key=key, **kw))[1])  # fmt: skip
    monkeypatch.setattr(Listing, "update_cell", lambda self, row, column, value, **kw: (
        updated.append((row, column)), DataTable.update_cell(self, row, column, value, **kw))[1])
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("Q")
        screen = await opened(pilot, QueuesScreen)
        await until(pilot, lambda: screen.table.row_count > len(names))
        assert len(added) == len(set(added)) == screen.table.row_count, "each row added once"
        assert screen.table.max_scroll_y > 0  # more rows than fit
        updated.clear()
        workflows_queue.enqueue(JobSpec("true", queue="bulk-07", cwd="/"))
        await until(pilot, lambda: screen.table.get_cell("bulk-07", "pending").plain == "2")
        assert updated == [("bulk-07", "pending")]
        assert len(added) == screen.table.row_count

    drive(app, scenario, size=(80, 24))


def test_the_queues_table_shows_the_limit_and_state_at_80_columns(workflows_queue, fixed_clock):
    """At 80 columns the queues' Limit and State columns were off screen (the table scrolled
    sideways, and not far enough), though `p` and `l` act on them: the counts give way."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("Q")
        table = await until(pilot, lambda: isinstance(app.screen, QueuesScreen)
                            and app.screen.table.row_count and app.screen.table)  # fmt: skip
        assert [str(key.value) for key in table.columns] == [
            "name", "pending", "processing", "limit", "paused"]  # fmt: skip
        assert table.virtual_size.width <= table.scrollable_content_region.width

    drive(app, scenario, size=(80, 24))


@pytest.mark.parametrize("width", [28, 40])
def test_a_narrow_queues_table_keeps_the_limit_and_state(workflows_queue, fixed_clock, width):
    """QA: at 25-33 columns the table scrolled sideways, the limits (right-aligned) and the
    state off its edge: `p` paused a queue and nothing on screen changed. The waiting and
    running counts give way too where even the limit and state would not fit."""
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("Q")
        table = await until(pilot, lambda: isinstance(app.screen, QueuesScreen)
                            and app.screen.table.row_count and app.screen.table)  # fmt: skip
        deploy = table.header_height + table.get_row_index("deploy")
        await until(pilot, lambda: len(screen_text(table)) > deploy, what="the table laid out")
        assert [str(key.value) for key in table.columns] == ["name", "limit", "paused"]
        assert table.virtual_size.width <= table.scrollable_content_region.width
        row = screen_text(table)[deploy]
        assert " 1 " in row and "▶" in row, row  # its limit of 1, running
        if width >= 40:  # (whole: the scrollbar's room once cut it to `▶ runn…`)
            assert "▶ running" in row, row

    drive(app, scenario, size=(width, 20))


def test_long_queue_names_keep_both_ends(workflows_queue, fixed_clock):
    """Names that share a long prefix read alike when the end is cut (`deploy-…` for every
    region): a name too long for its cell leaves out its middle."""
    names = ["deploy-production-cluster-eu-west-1", "deploy-production-cluster-us-east-2"]
    for name in names:
        workflows_queue.enqueue(JobSpec(command="true", queue=name))
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        await pilot.press("Q")
        table = await until(pilot, lambda: isinstance(app.screen, QueuesScreen)
                            and app.screen.table.row_count and app.screen.table)  # fmt: skip
        width = table.columns["name"].width
        assert width < len(names[0])
        shown = [table.get_cell(name, "name").plain for name in names]
        assert [len(text) for text in shown] == [width, width]
        assert shown[0] != shown[1]
        assert shown[0].startswith("deploy-") and shown[0].endswith("west-1") and "…" in shown[0]
        assert shown[1].endswith("east-2")

    drive(app, scenario, size=(80, 24))


def test_the_footer_offers_no_key_that_types_into_the_filter_while_it_is_typed(seeded,
                                                                               fixed_clock):
    """`/ a + b`: the footer read "+/- Threads" while `+` went into the filter's text."""
    app = make_app(seeded, clock=fixed_clock)

    def offered() -> set[str]:
        return {binding.description for _, binding, enabled, _ in
                app.screen.active_bindings.values() if binding.show and enabled}  # fmt: skip

    async def scenario(pilot):
        assert {"Add", "Threads", "Filter", "Quit"} <= offered()
        await pilot.press("slash", "a", "plus", "b")
        await until(pilot, lambda: app.filter_bar.input.value == "a+b")
        assert app.threads == 0
        assert not {"Add", "Threads", "Filter", "Quit", "Pause"} & offered()
        await pilot.press("enter")  # keep the filter, back to the panes: the keys are back
        await until(pilot, lambda: {"Add", "Threads", "Quit"} <= offered())

    drive(app, scenario)


def test_new_actions_are_in_the_footer_and_the_palette(workflows_queue, fixed_clock):
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Filter the panes by id, command or queue", "Clear the filter",
                      "Queues: counts, limits, pause / resume",
                      "Schedules: add, pause / resume, run now, remove"):  # fmt: skip
            assert title in titles
        footer = {b.description for b in app.active_bindings_descriptions()} if hasattr(
            app, "active_bindings_descriptions") else None  # fmt: skip
        shown = {binding.description for _, binding, enabled, _ in app.active_bindings.values()
                 if binding.show}  # fmt: skip
        assert {"Filter", "Queues", "Schedules"} <= shown, (footer, shown)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Run the selected schedule now" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Add a schedule")
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ScheduleForm))

    drive(app, scenario)


def test_pane_matching_on_both_backends(any_queue):
    """The filter's query: any case, `%`, `_` and `\\` literal, in the pane's order, LIMITed."""
    for job_id, command in (("p1", "echo 100% DONE"), ("p2", "echo 100 done"), ("u1", "echo a_b"),
                            ("u2", "echo axb"), ("b1", "echo a\\b")):  # fmt: skip
        any_queue.enqueue(JobSpec(command, id=job_id, queue="q-" + job_id))
    match = lambda text, limit=10: [j.id for j in any_queue.pane_matching("waiting", limit, text)]  # noqa: E731
    assert match("0% d") == ["p1"]
    assert match("A_B") == ["u1"]
    assert match("a\\b") == ["b1"]
    assert match("q-u") == ["u1", "u2"]  # by queue
    assert match("echo", limit=2) == ["p1", "p2"]  # claim order, LIMITed
    assert any_queue.pane_matching("completed", 10, "echo") == []
    # Any case beyond ASCII too (SQLite's LIKE ignores the case of ASCII letters only), and
    # the pattern's own characters are literal.
    for job_id, command in (("e1", "echo Élan ÄRGER"), ("r1", "echo ПРИВЕТ"),
                            ("g1", "ls *.txt [ab]? élan")):  # fmt: skip
        any_queue.enqueue(JobSpec(command, id=job_id))
    assert match("élan") == ["e1", "g1"]
    assert match("ärger") == ["e1"] and match("привет") == ["r1"]
    assert match("*.txt [ab]? É") == ["g1"] and match("é*") == []


def test_escape_leaves_the_focus_in_the_pane_moved_to_after_the_filter(live_queue):
    """QA: `/ keep enter tab tab escape x` took the focus back to the Pending pane, where `/`
    was typed, and `x` cancelled a waiting job there (one the filter had hidden) at once,
    while the user looked at a completed job in the pane they had moved to."""
    from queuectl.executor import RunResult

    live_queue.enqueue(JobSpec("sleep 100", id="keep1"))
    ran = live_queue.claim("tester:1:0000")
    live_queue.finish(ran, RunResult(0, None, ""), "tester:1:0000")
    live_queue.enqueue(JobSpec("true", id="done1"))
    live_queue.enqueue(JobSpec("sleep 100", id="keep2"))
    app = make_app(live_queue)

    async def scenario(pilot):
        await until(pilot, lambda: len(column(pane(app, "waiting"), "id")) == 2)
        type_ahead(app, "slash", *typed("keep"), "enter", "tab", "tab", "escape", "x")
        await until(pilot, lambda: any("nothing to cancel" in n for n in notices(app)),
                    what="x to speak of the completed job")  # fmt: skip
        assert app.focused is pane(app, "completed") and app.filter_text == ""
        assert [job.state for job in live_queue.list_jobs()].count("cancelled") == 0
        handled = app.keys_handled + 6
        type_ahead(app, "slash", *typed("keep"), "escape")  # from the field: back where `/` was
        await until(pilot, lambda: app.keys_handled >= handled, what="the six keys handled")
        assert app.filter_text == "" and not app.filter_bar.display
        assert app.focused is pane(app, "completed")

    drive(app, scenario)


def test_enter_on_a_schedule_shows_every_field_and_its_whole_command(workflows_queue,
                                                                      fixed_clock):
    """QA: the table's Command column showed ~17 characters even at 160 columns, and nothing
    in the app showed the rest. Nor its name, at the longest (64), cut in the list and title."""
    from queuectl.tui.screens.schedules import ScheduleDetails

    command = "echo '[@click=app.quit]q[/]' && " + " && ".join(f"./step-{n}.sh" for n in range(20))
    name = "zz-long-" + "n" * 56
    workflows_queue.add_schedule(name, "*/5 * * * *",
                                 JobSpec(command=command, queue="deploy", priority=3))  # fmt: skip
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "G", "enter")

        def shown() -> str:  # (the screen pushed, then composed, then laid out)
            if not isinstance(app.screen, ScheduleDetails) or not app.screen.query(Static):
                return ""
            return " ".join("".join(screen_text(app.screen.query_one(Static))).split())

        flat = await until(pilot, shown)
        assert " ".join(command.split()) in flat  # whole, literally (markup not obeyed)
        assert "*/5 * * * *" in flat and "deploy" in flat and "config max-retries" in flat
        assert f"name {name}" in flat
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        assert app.screen.table.selected == name

    drive(app, scenario, size=(120, 40))


def test_a_schedule_s_details_taller_than_the_terminal_scroll_to_its_end(workflows_queue,
                                                                        fixed_clock):
    """QA: at 80x24 a long command was cut, the fields after it never shown, no key moved it."""
    from textual.containers import VerticalScroll

    from queuectl.tui.screens.schedules import ScheduleDetails

    command = "echo " + " ".join(f"word{n}" for n in range(400)) + " TAILEND"
    workflows_queue.add_schedule("zz-long", "*/5 * * * *", JobSpec(command=command))
    app = make_app(workflows_queue, clock=fixed_clock)

    async def scenario(pilot):
        type_ahead(app, "S", "G", "enter")
        # (pushed, then composed, then laid out: its scroll is known once it is)
        def laid_out() -> VerticalScroll | None:
            if not isinstance(app.screen, ScheduleDetails) or not app.screen.query(VerticalScroll):
                return None
            box = app.screen.query_one(VerticalScroll)
            return box if box.max_scroll_y else None

        box = await until(pilot, laid_out)
        assert box.max_scroll_y > 0 and app.focused is box
        await pilot.press("end")
        await until(pilot, lambda: box.scroll_y == box.max_scroll_y and box.scroll_y > 0)

    drive(app, scenario, size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (60, 15), (60, 7)])
@pytest.mark.parametrize("key", ["Q", "S"])
def test_G_p_in_a_short_terminal_pauses_the_last_row_in_sight(queue, fixed_clock, key, size):
    """QA: at 80x24 the Q and S tables were taller than their dialog, which cut their last
    rows off: `G` put the cursor on a row out of sight, the table scrolled no further, and `p`
    paused a queue (or a schedule) the user could not see."""
    for n in range(10, 50):
        if key == "Q":
            queue.set_queue_limit(f"z{n}", 2)
        else:
            queue.add_schedule(f"z{n}", "@daily", JobSpec(command="true", cwd="/"))
    app = make_app(queue, clock=fixed_clock, workers=0)
    listing = QueuesScreen if key == "Q" else SchedulesScreen
    paused = (lambda: queue_info(queue, "z49").paused) if key == "Q" else (
        lambda: next(s for s in queue.schedules() if s.name == "z49").paused)  # fmt: skip

    async def scenario(pilot):
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, listing) and app.screen.table.row_count)
        await pilot.press("G", "p")
        await until(pilot, paused, what="z49 paused")
        await pilot.pause(0.1)
        shown = app.export_screenshot()
        assert "z49" in shown and ("z48" in shown or size[1] < 8)  # (7 lines: room for one)

    drive(app, scenario, size=size)


@pytest.mark.parametrize("key", ["Q", "S"])
def test_the_q_and_s_dialogs_say_how_to_close_them_at_any_width(queue, fixed_clock, key):
    """QA: at 80 columns the schedules' keys were cut off before `esc close`; then, at each
    width where the hint changes, it was two columns too long. The keys that fit are shown,
    described in full where there is room, and `esc close` always, at every width."""
    queue.add_schedule("nightly", "@daily", JobSpec(command="true", cwd="/"))
    queue.set_queue_limit("nightly", 2)
    app = make_app(queue, clock=fixed_clock, workers=0)
    listing = QueuesScreen if key == "Q" else SchedulesScreen

    def bottom_border() -> str:
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        return next(line for line in lines if "╰" in line)

    async def scenario(pilot):
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, listing) and app.screen.table.row_count)
        await pilot.pause(0.1)
        line = bottom_border()
        assert "p pause/resume" in line and (key == "Q" or "r run now" in line), line
        for width in range(130, 23, -1):  # narrowed while open: the keys fit again
            await resize(pilot, width, 20)
            line = bottom_border()
            assert "esc close" in line and "…" not in line, (width, line)
            assert width < 40 or "p pause" in line, (width, line)

    drive(app, scenario, size=(130, 20))
