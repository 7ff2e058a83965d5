"""The real executable in a real terminal (tmux), driven as a person would: keys in, screen out.

`queuectl --db DB tui` runs in a detached tmux session of fixed size; the test enqueues jobs with
the CLI, reads the screen with `tmux capture-pane`, presses keys with `tmux send-keys`, and
waits on conditions with deadlines (never bare sleeps).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support import wait_until

WIDTH, HEIGHT = 120, 36
QUEUECTL = Path(sys.executable).with_name("queuectl")
# COLUMNS and LINES (which test runners may set) would override the terminal's real size.
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "QUEUECTL_DB")}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
    pytest.mark.skipif(not QUEUECTL.exists(), reason="needs the installed queuectl executable"),
]


class Terminal:
    """One tmux server of our own (its own socket), running one session."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.socket = f"queuectl-test-{uuid.uuid4().hex[:8]}"
        self.session = "tui"
        shell_command = " ".join(_quote(part) for part in command)
        self.tmux(
            "new-session", "-d", "-s", self.session, "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", str(cwd), shell_command,
        )  # fmt: skip

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, check=check, timeout=10, env=ENV,
        )  # fmt: skip

    def screen(self) -> list[str]:
        result = self.tmux("capture-pane", "-p", "-t", self.session, check=False)
        return result.stdout.splitlines()

    def press(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.session, key)

    def type_ahead(self, *keys: str) -> None:
        """Every key in one go, no pause between them (a paste, a fast typist)."""
        self.tmux("send-keys", "-t", self.session, *keys)

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", self.session, "-x", str(width), "-y", str(height))

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.session, check=False).returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


def wait_for(condition, timeout: float, what: str, terminal: Terminal | None = None):
    """``support.wait_until``, with the terminal's screen in the failure message."""
    try:
        return wait_until(condition, timeout, what, interval=0.05)
    except AssertionError as exc:
        screen = "\n".join(terminal.screen()) if terminal and terminal.alive() else ""
        raise AssertionError(f"{exc}\n{screen}") from None


def pane_rows(screen: list[str], title: str) -> list[str]:
    """The text of the pane whose border title starts with ``title`` (2x2 layout at 120 cols)."""
    for top, line in enumerate(screen):
        column = line.find(f"─ {title} ")
        if column < 0:
            continue
        left = line.rfind("╭", 0, column)
        right = line.find("╮", column)
        rows = []
        for below in screen[top + 1 :]:
            if below[left : left + 1] == "╰":
                break
            rows.append(below[left + 1 : right])
        return rows
    return []


def shows(terminal: Terminal, title: str, text: str) -> bool:
    return any(text in row for row in pane_rows(terminal.screen(), title))


def on_screen(terminal: Terminal, text: str) -> bool:
    return any(text in line for line in terminal.screen())


@pytest.fixture
def cli(tmp_path):
    db = tmp_path / "queue.db"
    def run(*args: str) -> str:
        result = subprocess.run(
            [str(QUEUECTL), "--db", str(db), *args],
            capture_output=True, text=True, env=ENV, timeout=30, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    run.db = db  # type: ignore[attr-defined]
    return run


def test_the_tui_in_a_real_terminal(cli, tmp_path):
    gate = tmp_path / "gate"
    cli("enqueue", "--id", "flaky", "--max-retries", "1", f"test -e {gate}")
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "2"], tmp_path)
    try:
        wait_for(lambda: "palette" in "".join(terminal.screen()), 30, "the app", terminal)
        # The app starts, its workers run the job, which fails once: the DLQ.
        wait_for(lambda: shows(terminal, "Dead", "flaky"), 30, "flaky in Dead", terminal)
        # A job enqueued by another process shows up, runs, and lands in Completed.
        job_id = cli("enqueue", "echo hi").strip()
        wait_for(lambda: shows(terminal, "Completed", job_id), 30, "the job done", terminal)
        assert json.loads(cli("show", job_id, "--json"))["output"] == "hi\n"
        # Into the Dead pane (shift+tab from the first pane): `enter` there shows its job.
        gate.touch()
        terminal.press("BTab", "Enter")
        wait_for(lambda: on_screen(terminal, "Job flaky"), 30, "flaky's details", terminal)
        terminal.press("Escape")
        wait_for(lambda: not on_screen(terminal, "Job flaky"), 30, "the details closed", terminal)
        # Back in the Dead pane, `r` retries the job.
        terminal.press("r")
        wait_for(lambda: shows(terminal, "Completed", "flaky"), 30, "flaky retried", terminal)
        job = json.loads(cli("show", "flaky", "--json"))
        assert (job["state"], job["attempts"]) == ("completed", 1)
        wait_for(lambda: any("─ Dead 0 " in line for line in terminal.screen()), 30,
                 "an empty DLQ")
        # The enqueue form, typed in one go: the 2 is the max retries Tab moved to, not the
        # end of the command.
        terminal.press("a")
        wait_for(lambda: on_screen(terminal, "Enqueue a job"), 30, "the enqueue form", terminal)
        terminal.type_ahead("echo x", "Tab", "2", "Enter")
        wait_for(lambda: not on_screen(terminal, "Enqueue a job"), 30, "the form closed", terminal)
        jobs = wait_for(
            lambda: [job for job in json.loads(cli("list", "--json")) if "echo x" in job["command"]],
            30, "the job enqueued", terminal,
        )  # fmt: skip
        assert [(job["command"], job["max_retries"]) for job in jobs] == [("echo x", 2)]
        # Its workers run that job at once: `q` while it still ran would ask first (a dialog,
        # no exit). Its result is stored after the pool counts it as no longer running.
        wait_for(lambda: json.loads(cli("show", jobs[0]["id"], "--json"))["state"] == "completed",
                 30, "the enqueued job to complete", terminal)
        # `q` with nothing running: the app quits and the session ends.
        terminal.press("q")
        wait_for(lambda: not terminal.alive(), 30, "the app to exit", terminal)
        assert json.loads(cli("status", "--json"))["workers"] == 0
    finally:
        terminal.kill()


FOOTER_KEYS = ("a Add", "r/R Retry", "x Cancel", "e Edit", "l Log", "c Config", "/ Filter",
               "Q Queues", "S Schedules", "+/- Threads", "p Pause", "q Quit")  # fmt: skip


@pytest.mark.parametrize("width, height", [(80, 24), (60, 15), (40, 20)])
def test_the_footer_shows_every_key_in_a_narrow_terminal(cli, tmp_path, width, height):
    """SPEC 5: the footer shows the keys. In one row, an 80-column terminal (the usual size)
    cut it after `+/- Threads`: `p Pause` and `q Quit` were not on the screen. The footer now
    takes as many rows as its keys need, and gives them back when the terminal widens."""
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)

    def footer_shows_every_key() -> bool:
        footer = "\n".join(terminal.screen()[-4:])
        return all(key in footer for key in FOOTER_KEYS)

    try:
        wait_for(lambda: "palette" in "".join(terminal.screen()), 30, "the app", terminal)
        assert footer_shows_every_key()  # 120 columns: one row
        terminal.resize(width, height)
        wait_for(footer_shows_every_key, 30, f"every key at {width}x{height}", terminal)
        assert "─ Dead 0 " in "".join(terminal.screen())  # the panes are all there still
        terminal.resize(WIDTH, HEIGHT)
        wait_for(lambda: all(key in terminal.screen()[-1] for key in FOOTER_KEYS), 30,
                 "the footer in one row again", terminal)
    finally:
        terminal.kill()


def test_escape_then_a_key_typed_fast_is_the_escape_key_and_that_key(cli, tmp_path):
    """Escape and the next key in one go (a fast typist, a macro): Textual read escape then `/`
    as `/` alone (the escape lost: the old filter stayed, and the new text was added to it) and
    escape then `j` as alt+j (nothing: the details stayed open)."""
    cli("enqueue", "--id", "fast1", "echo FAST1")
    cli("enqueue", "--id", "done29", "echo done29")
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    try:
        wait_for(lambda: shows(terminal, "Pending", "done29"), 30, "the jobs", terminal)
        terminal.type_ahead("/", "FAST", "Enter")
        wait_for(lambda: not shows(terminal, "Pending", "done29"), 30, "the filter", terminal)
        terminal.type_ahead("Escape", "/", "done29", "Enter")
        # (The escape alone shows both jobs for a moment: the new filter is what is waited for.)
        wait_for(lambda: on_screen(terminal, "filter  done29") and shows(terminal, "Pending", "done29")
                 and not shows(terminal, "Pending", "fast1"), 30, "the new filter", terminal)
        terminal.press("Escape")
        wait_for(lambda: shows(terminal, "Pending", "fast1"), 30, "the filter cleared", terminal)
        terminal.type_ahead("g", "Enter")
        wait_for(lambda: on_screen(terminal, "Job fast1"), 30, "fast1's details", terminal)
        terminal.type_ahead("Escape", "j", "Enter")
        wait_for(lambda: on_screen(terminal, "Job done29"), 30, "done29's details", terminal)
    finally:
        terminal.kill()


def test_a_form_left_with_escape_and_keys_typed_fast_after_it_enqueues_nothing(cli, tmp_path):
    """Escape out of the enqueue form, then more keys, all within Textual's 100 ms of each
    other, and an escape at the end: Textual read the keys after the first escape as one
    unknown sequence, then gave them to the form with that escape as `^`. The form stayed
    open and enqueued `echo left^aecho kept`; with `c` (the config) instead of `a`, the
    abandoned command `echo left^c` was enqueued and run."""
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    commands = lambda: [job["command"] for job in json.loads(cli("list", "--json"))]  # noqa: E731
    try:
        wait_for(lambda: "palette" in "".join(terminal.screen()), 30, "the app", terminal)
        terminal.type_ahead("a", "echo left", "Escape", "a", "echo kept", "Enter", "Escape")
        wait_for(lambda: commands() == ["echo kept"], 30, "only the second form's job", terminal)
        # The config opened and closed, the keys after it land in a new form.
        terminal.type_ahead("a", "echo gone", "Escape", "c", "Escape", "a", "echo last", "Enter")
        wait_for(lambda: commands() == ["echo last", "echo kept"], 30, "one more job", terminal)
    finally:
        terminal.kill()


def test_a_paste_with_an_escape_sequence_is_refused_and_acts_as_no_key(cli, tmp_path):
    """A bracketed paste of `echo a<ESC>[0m`, a newline and `x` into the enqueue form: Textual
    read the ESC as a key sequence's start and sent the rest as keys, so the newline submitted
    `^echo a[0m` and the `x` cancelled the selected job. The paste is refused as a whole."""
    cli("enqueue", "--id", "keep-me", "--delay", "600", "sleep 1")
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    pasted = tmp_path / "paste.txt"
    pasted.write_text("echo a\x1b[0m\nx")
    try:
        wait_for(lambda: shows(terminal, "Pending", "keep-me"), 30, "the job", terminal)
        terminal.press("a")
        wait_for(lambda: on_screen(terminal, "Enqueue a job"), 30, "the form", terminal)
        terminal.tmux("load-buffer", "-b", "p", str(pasted))
        terminal.tmux("paste-buffer", "-p", "-b", "p", "-t", terminal.session)  # bracketed
        wait_for(lambda: on_screen(terminal, "nothing was pasted"), 30, "the refusal", terminal)
        assert on_screen(terminal, "Enqueue a job"), "the form was submitted"
        terminal.type_ahead("echo typed", "Enter")
        jobs = wait_for(lambda: len(rows := json.loads(cli("list", "--json"))) == 2 and rows,
                        30, "the typed job", terminal)  # fmt: skip
        assert {job["id"]: job["state"] for job in jobs}["keep-me"] == "pending"
        assert sorted(job["command"] for job in jobs) == ["echo typed", "sleep 1"]
    finally:
        terminal.kill()


def test_keys_typed_while_the_app_starts_all_land(cli, tmp_path):
    """Typed before the app had made the terminal raw, enter arrived as a newline (the line
    mode's CR to NL), which Textual read as ctrl+j: the form stayed open, nothing enqueued."""
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    try:
        terminal.type_ahead("a", "echo early", "Tab", "5", "Enter")
        jobs = wait_for(lambda: json.loads(cli("list", "--json")), 30, "the job", terminal)
        assert [(job["command"], job["max_retries"]) for job in jobs] == [("echo early", 5)]
    finally:
        terminal.kill()


def test_a_form_shows_the_invalid_field_it_focuses(cli, tmp_path):
    """40x12, keys typed ahead: a bad queue name, enter. The focus went to the first invalid
    field (the empty command), but the form stayed scrolled down at the queue: what was typed
    next went into a field nobody saw."""
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    try:
        wait_for(lambda: "palette" in "".join(terminal.screen()), 30, "the app", terminal)
        terminal.resize(40, 12)
        terminal.type_ahead("a", "Tab", "Tab", "Tab", "Tab", "bad q", "Enter")
        wait_for(lambda: on_screen(terminal, "'command' is empty"), 30, "the command's error",
                 terminal)  # fmt: skip
        terminal.type_ahead("echo seen", "Enter")
        wait_for(lambda: on_screen(terminal, "'queue' must be"), 30, "the queue's error", terminal)
        assert json.loads(cli("list", "--json")) == []
    finally:
        terminal.kill()


def test_moves_typed_ahead_past_the_rows_loaded_are_all_made(cli, tmp_path):
    """A pane loads the rows near its cursor; `j` typed ahead past them (key repeat, a paste)
    was lost, and `enter` then opened a job far above the one the moves reached. `G` went to
    the last row loaded, not to the last job."""
    lines = [json.dumps({"command": f"echo job{n:05d}", "id": f"job{n:05d}", "delay": 600})
             for n in range(1000)]  # fmt: skip
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    cli("enqueue", "--file", str(tmp_path / "jobs.jsonl"))
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)
    try:
        wait_for(lambda: shows(terminal, "Pending", "job00000"), 30, "the jobs", terminal)
        terminal.type_ahead("g", *["j"] * 150, "Enter")
        wait_for(lambda: on_screen(terminal, "Job job00150"), 30, "job00150's details", terminal)
        # `G` is the last of the 1,000 jobs, not the last row loaded; moves up from there load
        # the rows above; `g` is the first job again.
        terminal.type_ahead("Escape")
        wait_for(lambda: not on_screen(terminal, "Job job00150"), 30, "closed", terminal)
        terminal.type_ahead("G", *["k"] * 40, "Enter")
        wait_for(lambda: on_screen(terminal, "Job job00959"), 30, "job00959's details", terminal)
        terminal.type_ahead("Escape")
        wait_for(lambda: not on_screen(terminal, "Job job00959"), 30, "closed", terminal)
        assert any(re.search(r"─ last \d+ ─", line) for line in terminal.screen())
        terminal.type_ahead("g", "Enter")
        wait_for(lambda: on_screen(terminal, "Job job00000"), 30, "job00000's details", terminal)
    finally:
        terminal.kill()


def test_keys_typed_after_an_action_act_on_the_rows_it_left(cli, tmp_path):
    """QA, in tmux: `a`, a job due last, enter, `G`, `x` sent at once cancelled the job that
    was last before it came; `x x` cancelled one job, then said it was cancelled already."""
    for n in (1, 2, 3):
        cli("enqueue", "--id", f"old{n}", "--delay", str(900 + n), f"echo old{n}")
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "0"], tmp_path)

    def states() -> dict[str, str]:
        return {job["command"]: job["state"] for job in json.loads(cli("list", "--json"))}

    try:
        wait_for(lambda: shows(terminal, "Pending", "old3"), 30, "the jobs", terminal)
        terminal.type_ahead("a", "echo newjob", "Tab", "Tab", "Tab", "950", "Enter", "G", "x")
        wait_for(lambda: states().get("echo newjob") == "cancelled", 30, "the new job cancelled",
                 terminal)  # fmt: skip
        terminal.type_ahead("g", "x", "x")
        wait_for(lambda: states()["echo old2"] == "cancelled", 30, "old1, old2 cancelled",
                 terminal)  # fmt: skip
        assert states() == {"echo old1": "cancelled", "echo old2": "cancelled",
                            "echo old3": "pending", "echo newjob": "cancelled"}  # fmt: skip
        assert not on_screen(terminal, "cannot be cancelled")
    finally:
        terminal.kill()


def test_x_y_x_y_typed_ahead_stops_two_running_jobs(cli, tmp_path):
    """QA, in tmux: `x y x y` on the app's two running jobs stopped the first only, and said
    "Cancelled" of it twice: the keys after the first `y` did not wait for the panes to show
    it stopped, so the second `x` asked for the same job again."""
    gate = tmp_path / "gate"
    for name in ("joba", "jobb", "jobc"):
        cli("enqueue", "--id", name, f"while [ ! -e {gate} ]; do sleep 0.05; done")
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "2"], tmp_path)

    def states() -> dict[str, str]:
        return {job["id"]: job["state"] for job in json.loads(cli("list", "--json"))}

    try:
        wait_for(lambda: shows(terminal, "Processing", "joba")
                 and shows(terminal, "Processing", "jobb"), 30, "two jobs running",
                 terminal)  # fmt: skip
        terminal.type_ahead("Tab", "g", "x", "y", "x", "y")
        wait_for(lambda: list(states().values()).count("cancelled") == 2, 30,
                 "two jobs cancelled", terminal)  # fmt: skip
        wait_for(lambda: states()["jobc"] == "processing", 30, "jobc started", terminal)
        assert states() == {"joba": "cancelled", "jobb": "cancelled", "jobc": "processing"}
        assert not on_screen(terminal, "cannot be cancelled")
        wait_for(lambda: on_screen(terminal, "Cancelled jobb"), 10, "jobb's notice", terminal)
    finally:
        gate.touch()
        terminal.kill()


def test_the_top_bar_shows_every_count_at_any_width(cli, tmp_path):
    """The counts gave way to the rest of the bar: at 120 columns, once the rate read
    "2,700/min", the dead count was gone; at 100, all but a cut "1,10". Now the chart, the
    rate and the rest give way first."""
    from queuectl import JobSpec, Queue
    from queuectl.executor import RunResult

    queue = Queue(str(cli.db))
    try:
        queue.enqueue_many([JobSpec("true", id=f"ok{n:04d}") for n in range(1500)]
                           + [JobSpec("false", id=f"bad{n:04d}", max_retries=0)
                              for n in range(1200)])  # fmt: skip
        while (job := queue.claim("elsewhere")) is not None:
            failed = job.id.startswith("bad")
            result = RunResult(1, "exit code 1", "") if failed else RunResult(0, None, "")
            queue.finish(job, result, "elsewhere")
        queue.enqueue_many([JobSpec("echo", id=f"wait{n:04d}", delay=600) for n in range(1100)])
    finally:
        queue.close()
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui", "--workers", "2"], tmp_path)
    try:
        wait_for(lambda: "2,700/min" in terminal.screen()[0], 30, "the bar", terminal)
        for width in (120, 100, 80, 60, 40):
            terminal.resize(width, HEIGHT)

            def drawn_at_this_width() -> bool:  # (not the last width's lines, cut by tmux)
                top = terminal.screen()[1]
                return len(top) == width and top.endswith("╮")

            wait_for(drawn_at_this_width, 30, f"the app drawn at {width}", terminal)
            # (The bar fits itself once it has its new size: a frame after the panes.)
            wait_for(lambda: all(count in terminal.screen()[0] for count in
                                 ("1,100", "1,500", "1,200")), 10, f"the counts at {width}",
                     terminal)  # fmt: skip
    finally:
        terminal.kill()


def app_pid(db: Path) -> int | None:
    """The pid of `queuectl --db DB tui`, found by its command line."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if str(db) in argv and "tui" in argv and any(a.endswith("queuectl") for a in argv):
            return int(entry)
    return None


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def running_app(cli, job_id: str, terminal: Terminal) -> int:
    """Once the app runs ``job_id``: the app's pid."""
    wait_for(lambda: json.loads(cli("show", job_id, "--json"))["state"] == "processing",
             30, "the job to start", terminal)  # fmt: skip
    pid = app_pid(cli.db)
    assert pid is not None
    return pid


@pytest.fixture
def gated_job(cli, tmp_path):
    """A job that runs until the test opens its gate, counting its runs in a file; the gate is
    opened at the end whatever happened, so no job outlives the test."""
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo run >> {runs}"
    yield cli("enqueue", command).strip(), gate, runs
    gate.touch()


def test_closing_the_terminal_lets_the_running_job_finish_once(cli, tmp_path, gated_job):
    """The window closed (tmux gone: the terminal hangs up). By default SIGHUP killed the app:
    its job ran on as an orphan, stayed `processing`, and ran a second time once rescued."""
    job_id, gate, runs = gated_job
    terminal = Terminal([str(QUEUECTL), "--db", str(cli.db), "tui"], tmp_path)
    pid = None
    try:
        pid = running_app(cli, job_id, terminal)
        terminal.kill()  # the terminal goes away, the app gets SIGHUP
        wait_for(lambda: not terminal.alive(), 10, "the terminal to go")
        # No screen any more; the app waits for its job, and starts no other.
        later = cli("enqueue", "echo later").strip()
        assert not gone(pid)
        gate.touch()
        wait_for(lambda: gone(pid), 30, "the app to exit once its job ended")
        job = json.loads(cli("show", job_id, "--json"))
        assert (job["state"], job["attempts"]) == ("completed", 1)
        assert runs.read_text() == "run\n"
        assert json.loads(cli("show", later, "--json"))["state"] == "pending"
        assert json.loads(cli("status", "--json"))["workers"] == 0
    finally:
        terminal.kill()
        if pid is not None and not gone(pid):
            os.kill(pid, 9)


def test_sigterm_quits_as_q_does_and_a_second_one_kills_the_job(cli, tmp_path, gated_job):
    """`kill PID` (a session manager, a script): the first asks nothing and waits for the
    running job; the second kills it, back to pending uncounted, as `worker start` does. The
    terminal is given back as it was."""
    job_id, _, runs = gated_job
    shell = f"{_quote(str(QUEUECTL))} --db {_quote(str(cli.db))} tui; echo exited $?; sleep 60"
    terminal = Terminal(["sh", "-c", shell], tmp_path)
    pid = None
    try:
        pid = running_app(cli, job_id, terminal)
        os.kill(pid, 15)
        wait_for(lambda: on_screen(terminal, "Waiting for 1 running job"), 30,
                 "the app to wait for its job", terminal)  # fmt: skip
        os.kill(pid, 15)
        # 143, as `worker start`'s hard stop: a supervisor tells it from a clean stop (QA: 0)
        wait_for(lambda: on_screen(terminal, "exited 143"), 30, "the app to exit", terminal)
        job = json.loads(cli("show", job_id, "--json"))
        assert (job["state"], job["attempts"], job["worker"]) == ("pending", 0, None)
        assert not runs.exists()
        modes = terminal.tmux("display", "-p", "-t", terminal.session,
                              "#{alternate_on} #{mouse_any_flag}").stdout.split()  # fmt: skip
        assert modes == ["0", "0"]
        assert json.loads(cli("status", "--json"))["workers"] == 0
    finally:
        terminal.kill()
        if pid is not None and not gone(pid):
            os.kill(pid, 9)


def test_a_quit_while_postgresql_does_not_answer_says_so_and_ctrl_c_quits_at_once(
    pg_target, tmp_path
):
    """`q` with no job running while the network dropped packets without a word: the bar said
    "stopping" and nothing else for 40 s (the workers' last writes waited for connections to
    give up). After a second the quitting dialog says the database has not answered, for how
    long, and that ctrl+c quits now; it does, exit 1, with the line saying what was left."""
    from backends.outage import Outage
    from queuectl import Queue

    outage = Outage(pg_target)
    shell = (f"{_quote(str(QUEUECTL))} --db {_quote(outage.url)} tui --workers 1; "
             "echo exited $?; sleep 60")  # fmt: skip
    terminal = Terminal(["sh", "-c", shell], tmp_path)
    queue = Queue(pg_target)
    pid = None
    try:
        wait_for(lambda: queue.live_workers(), 30, "the app's workers to register", terminal)
        [registered] = queue.live_workers()
        pid = registered.pid
        wait_for(lambda: on_screen(terminal, "1 worker live"), 30, "the panes", terminal)
        outage.hold()
        terminal.press("q")
        def dialog_says(text: str) -> bool:  # (its lines wrapped where the reason puts them)
            words = (word for line in terminal.screen() for word in line.split() if word != "│")
            return text in " ".join(words)

        # ("no answer for 1 s", or a connection's own error once one gives up: said either way)
        wait_for(lambda: dialog_says("Press ctrl+c to quit now"), 15,
                 "the dialog to say why, and the way out", terminal)  # fmt: skip
        assert dialog_says("The database is not answering (")
        terminal.press("C-c")
        # (Without it the quit waits the stop's timeout, 30 s, as `worker start` does.)
        wait_for(lambda: on_screen(terminal, "exited 1"), 10, "the app to quit", terminal)
        assert on_screen(terminal, "Error: stopped without unregistering this app's workers")
    finally:
        outage.close()  # (refused from now)
        terminal.kill()
        queue.close()
        if pid is not None:  # an app still quitting (the code before waited 40 s) is ended
            try:
                wait_until(lambda: gone(pid), 10, "the app to end")
            except AssertionError:
                os.kill(pid, 9)
