"""Job details (`enter`): every field, its dependencies, its history as a timeline (runs with
their duration, exit code and worker, the waits between them) and the whole stored output."""

from __future__ import annotations

import contextlib
import threading
import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from queuectl.errors import QueueError
from queuectl.models import ACTIVE, FINAL, Job, State
from queuectl.queue import Queue, WholeId
from queuectl.text import coarse_relative_time, duration, safe, utc_time

from ..data import keep_looking
from ..keys import QUIT_ON_CTRL_C
from ..messages import JobLoaded
from ..text import literal
from ..widgets.output_area import OutputArea, prepare
from .output import POLL_S

# Every public field but the output (shown below them), in reading order.
FIELDS = (
    "id", "state", "command", "attempts", "max_retries", "priority", "timeout", "exit_code",
    "error", "run_at", "created_at", "started_at", "finished_at", "updated_at", "worker", "cwd",
    "queue", "schedule",
)  # fmt: skip
LONG = {"id", "command", "error", "worker", "cwd"}  # always a line of their own
PAIRS_FROM = 100  # screen columns from which short fields go two to a line
NAME_WIDTH = 11
DEPENDENCIES_SHOWN = 20  # of each side; the rest are counted
# The whole job is read again at least this often while it may change (times shown relative to
# now, an edit, its history), and at once when a glance every POLL_S sees its run move (its
# output grew, it started or ended): read every second alone, a line printed showed up to 1.7 s
# later (a worker stores output every 0.75 s), where SPEC 6 gives 1 s (QA).
READ_EVERY_S = 1.0
WAITING_LOOK_S = 0.5  # how often a job that waits is looked at (QA: ten times a second)
FINISHED_LOOK_S = 1.0  # ... and one that is over (retried or purged elsewhere), its times redrawn
# A running job that printed past the stored cap (1 MiB): its tail moves on at each store, and
# each is a whole new text to lay out. Shown again at most this often while the reader follows
# its end (`G`), and not at all while they read elsewhere in it: the text slid away under them
# (QA), and each new text took half a core and 0.3-0.8 s a key.
MOVED_ON_EVERY_S = 2.0


def dependency_lines(
    after: list[tuple[str, str]],
    needed_by: list[tuple[str, str]],
    totals: tuple[int, int],
    colors: dict[str, str],
) -> Table:
    """The jobs a job runs after and those that run after it (SPEC 7), each with its state."""
    muted = colors["muted"]
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(style=muted, no_wrap=True, width=NAME_WIDTH)
    table.add_column(overflow="fold", ratio=1)
    for name, jobs, total in (("after", after, totals[0]), ("needed by", needed_by, totals[1])):
        if not jobs:
            table.add_row(Text(name), Text("—", style=muted))
            continue
        line = Text()
        for index, (job_id, state) in enumerate(jobs):
            if index:
                line.append(", ", style=muted)
            line.append(literal(f"{job_id} "))  # the space before the state inside: see pane.py
            line.append(state, style=colors.get(state, muted))
        if total > len(jobs):
            line.append(f", and {total - len(jobs):,} more", style=muted)
        table.add_row(Text(name), line)
    return table


def field_lines(
    job: dict[str, object],
    times: dict[str, float | None],
    now: float,
    pairs: bool,
    colors: dict[str, str],
) -> Group:
    """The fields as (name, value) lines: long ones alone, short ones two to a line if wide.
    ``colors``: the theme's variables (theme.py)."""
    muted = colors["muted"]

    def value(name: str) -> Text:
        content = job.get(name)
        if content is None:
            return Text("—", style=muted)
        if name == "state":
            return Text(str(content), style=f"bold {colors.get(str(content), '')}")
        moment = times.get(name)
        if moment is not None:  # to the second, and how long ago
            text = Text(utc_time(moment, zone="+00:00"))
            text.append(f"  {coarse_relative_time(moment, now)}", style=muted)
            return text
        return literal(str(content), single_line=False)

    def grid(per_line: int) -> Table:
        table = Table.grid(padding=(0, 2), expand=True)
        for _ in range(per_line):
            table.add_column(style=muted, no_wrap=True, width=NAME_WIDTH)
            table.add_column(overflow="fold", ratio=1)
        return table

    # Runs of consecutive fields that share a layout: [["id"], ["state"], ["command"], ...].
    runs: list[list[str]] = []
    for name in FIELDS:
        alone = name in LONG or not pairs
        if runs and not alone and runs[-1][0] not in LONG:
            runs[-1].append(name)
        else:
            runs.append([name])
    blocks = []
    for run in runs:
        per_line = 2 if len(run) > 1 else 1
        table = grid(per_line)
        for start in range(0, len(run), per_line):
            line: list[Text] = []
            for name in run[start : start + per_line]:
                line += [Text(name), value(name)]
            table.add_row(*line)
        blocks.append(table)
    return Group(*blocks)


class DetailsScreen(ModalScreen[None]):
    """Loads one job off the UI thread, then shows it."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("o", "focus_output", "Output"),
        QUIT_ON_CTRL_C,
    ]

    def __init__(self, queue: Queue, job_id: str) -> None:
        super().__init__()
        self.queue, self.job_id = queue, job_id
        self.fields_table: Group | None = None  # what is shown, once loaded
        self._left = threading.Event()  # the screen is gone: its thread ends (keep_looking)
        self._seq: int | None = None
        self._run: tuple[object, ...] | None = None  # the job's run as last read in full
        self._read_at = 0.0  # time.monotonic() of that read
        self._gone = False  # it is no longer in the database (said): no more looks
        self._shown: JobLoaded | None = None  # the last read shown (its times are redrawn)
        self._output_run: tuple[object, ...] | None = None  # (attempts, started_at) last read
        self._moved_on_at = float("-inf")  # time.monotonic() a moved-on tail was last shown

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog details") as dialog:
            dialog.border_title = Text("Job ") + literal(self.job_id)
            dialog.border_subtitle = "esc close · o output · g/G its start/end"
            with VerticalScroll(id="fields"):
                yield Static(Text("loading…", style=self.app.theme_variables["muted"]), id="fields-table")
            self.output = OutputArea(id="output")
            self.output.border_title = "Output"
            yield self.output

    def on_mount(self) -> None:
        # Once laid out: the output is wrapped by the reading thread, at the area's width.
        self.call_after_refresh(self._start)
        self.set_interval(FINISHED_LOOK_S, self._redraw_times)

    def _start(self) -> None:
        keep_looking("queuectl-details", self.queue, self._left, self._look)

    def on_unmount(self) -> None:
        self._left.set()

    def _look(self) -> float | None:
        """The job read at once, then looked at every POLL_S while it runs, every
        WAITING_LOOK_S while it waits, and every FINISHED_LOOK_S once it is over (retried or
        purged from elsewhere: QA found a purged job shown on as if it were there): the
        seconds to the next look, None once it is gone."""
        self._glance()
        if self._gone:
            return None
        state = None if self._run is None else self._run[0]
        if state in FINAL:
            return FINISHED_LOOK_S
        # A waiting job prints nothing: a look every WAITING_LOOK_S sees it start, and its
        # first output is stored 0.75 s into its run.
        return POLL_S if state in ACTIVE else WAITING_LOOK_S

    def _glance(self) -> None:
        """The job read in full (:meth:`_read`) if its run moved, or READ_EVERY_S passed while
        it may change; else only its progress (a row's few columns, not its output)."""
        if self._seq is not None:
            try:
                progress = self.queue.progress(self._seq)
            except Exception:  # the database went away: the full read says so
                progress = None
            unchanged = progress is not None and _run_of(progress) == self._run
            if unchanged and (
                progress.state in FINAL or time.monotonic() < self._read_at + READ_EVERY_S
            ):
                return
        self._read()

    def _read(self) -> None:
        self._read_at = time.monotonic()
        try:
            job = self.queue.get(WholeId(self.job_id))
            self._seq, self._run = job.seq, _run_of(job)
            times = {name: getattr(job, name) for name in Job.TIME_FIELDS}
            after = []
            for dep_id in job.after_ids[:DEPENDENCIES_SHOWN]:
                if dep_id in job.purged_deps:  # (another job may have its id since)
                    after.append((dep_id, "purged"))
                    continue
                try:
                    after.append((dep_id, str(self.queue.get(WholeId(dep_id)).state)))
                except QueueError:  # purged meanwhile
                    after.append((dep_id, "purged"))
            needed_by = [(dep.id, str(dep.state)) for dep in self.queue.dependents(job)]
            events = self.queue.history(job)
            text, shown = safe(job.output or ""), self.output.shown
            run, self._output_run = self._output_run, (job.attempts, job.started_at)
            moved_on = (job.state == State.PROCESSING and run == self._output_run
                        and bool(shown) and not text.startswith(shown))  # fmt: skip
            elsewhere = not self.output.at_end  # the reader, in the output shown
            held = moved_on and (
                elsewhere or time.monotonic() < self._moved_on_at + MOVED_ON_EVERY_S
            )
            # Its lines wrapped here, not on the UI thread (see OutputArea); unchanged, not at all.
            output = None
            if text != shown and not held:
                output = prepare(text, self.output.wrap_width, shown, moved_on)
                if moved_on:
                    self._moved_on_at = time.monotonic()
            self.post_message(JobLoaded(
                job.to_dict(), times=times, after=after,
                needed_by=needed_by[:DEPENDENCIES_SHOWN], after_total=len(job.after_ids),
                needed_by_total=len(needed_by),
                history=history_records(events[-HISTORY_SHOWN:]), history_total=len(events),
                output=output, output_held=held and elsewhere,
            ))  # fmt: skip
        except QueueError as exc:  # deleted (purged) since it was shown
            self._gone = True
            self.post_message(JobLoaded(None, str(exc)))
        except Exception as exc:  # the database went away: say so, don't crash
            self.post_message(JobLoaded(None, f"could not read the job: {exc}"))
            with contextlib.suppress(Exception):
                self.queue.recover()  # a broken connection: a new one at the next look

    def on_job_loaded(self, message: JobLoaded) -> None:
        table = self.query_one("#fields-table", Static)
        if message.job is None:
            self._shown = None
            table.update(literal(message.error, self.app.theme_variables[State.DEAD], single_line=False))
            return
        self._shown = message
        self._show_fields(message)
        job = message.job
        dialog = self.query_one(".dialog")
        dialog.border_title = Text("Job ") + literal(str(job["id"]))
        if message.output is not None:
            self.output.show(message.output)
        raw = str(job.get("output") or "")
        size = len(raw.encode("utf-8", "replace"))
        self.output.border_subtitle = f"{size:,} bytes" if raw else "no output"
        if message.output_held:
            self.output.border_subtitle = "printed on past the last 1 MiB kept: G for the latest"

    def _redraw_times(self) -> None:
        """The times "… ago" move on between reads (a finished job is read again only if it
        changes: QA saw "22s ago" stay so)."""
        shown = self._shown
        if shown is not None and shown.job is not None and shown.job["state"] in FINAL:
            self._show_fields(shown)  # (one that may change is read again every second)

    def on_resize(self) -> None:
        """The fields laid out again for the new width: one to a line below PAIRS_FROM
        columns, two above (QA: from 60 to 200 columns, a waiting job's fields stayed one to a
        line until it was read again)."""
        shown = self._shown
        if shown is not None and shown.job is not None:
            self._show_fields(shown)

    def _show_fields(self, message: JobLoaded) -> None:
        assert message.job is not None
        job = message.job
        pairs = self.app.size.width >= PAIRS_FROM
        self.fields_table = Group(
            field_lines(job, message.times, self.app.clock(), pairs, self.app.theme_variables),
            dependency_lines(
                message.after, message.needed_by,
                (message.after_total, message.needed_by_total), self.app.theme_variables,
            ),
            Text("history", style=f"bold {self.app.theme_variables['muted']}"),
            timeline(message.history, message.history_total, self.app.clock(),
                     self.app.theme_variables),
        )  # fmt: skip
        self.query_one("#fields-table", Static).update(self.fields_table)

    def action_focus_output(self) -> None:
        self.set_focus(self.output)  # at once, for the keys typed next

    def action_close(self) -> None:
        self.dismiss(None)


def _run_of(job: Job) -> tuple[object, ...]:
    """What changes as a job runs: its state, which run, and how much that run printed."""
    return (job.state, job.attempts, job.started_at, job.output_bytes)


# -- the history timeline (SPEC 8) -----------------------------------------------------------

HISTORY_SHOWN = 50  # the last records of a job's history shown; the rest are counted
RUN_ENDS = {"completed", "failed", "dead", "cancelled", "rescued", "released"}


def history_records(events) -> list[dict[str, object]]:
    """A job's history events (``Queue.history``) as plain data for the UI thread."""
    return [
        {
            "at": event.at, "event": event.event, "attempt": event.attempt,
            "worker": event.worker, "exit_code": event.exit_code, "error": event.error,
            "duration": event.duration,
        }
        for event in events
    ]  # fmt: skip


def timeline(
    records: list[dict[str, object]], total: int, now: float, colors: dict[str, str]
) -> Table:
    """The history as a timeline: each run on one line (when it started, how long it took, its
    exit code, where it ran and what it led to), the waits between runs, and the other changes
    (enqueued, edited, retried, ...) as they happened."""
    muted = colors["muted"]
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(style=muted, no_wrap=True, width=NAME_WIDTH)
    table.add_column(no_wrap=True, width=9)
    table.add_column(overflow="fold", ratio=1)
    if total > len(records):
        table.add_row(Text("…"), Text(""), Text(f"{total - len(records):,} earlier records", style=muted))
    if not records:
        table.add_row(Text("—"), Text(""), Text("no history recorded", style=muted))
    start: dict[str, object] | None = None  # the run under way
    ended: float | None = None  # when the last run ended (the wait before the next is shown)
    for record in records:
        event, at = str(record["event"]), float(record["at"])  # type: ignore[arg-type]
        when = Text(coarse_relative_time(at, now))
        if event == "started":
            if ended is not None and at - ended >= 0.5:
                table.add_row(Text(""), Text("waited", style=muted),
                              Text(duration(at - ended), style=muted))  # fmt: skip
            start, ended = record, None
            continue
        if event in RUN_ENDS and (start is not None or event != "cancelled"):
            # (A job cancelled while it waited ended no run: a plain event, as `history` has.)
            began = float(start["at"]) if start else at  # type: ignore[arg-type]
            took = record["duration"]
            took = float(took) if took is not None else at - began  # type: ignore[arg-type]
            attempt = record["attempt"] if record["attempt"] is not None else (start or {}).get("attempt")
            worker = str(record["worker"] or (start or {}).get("worker") or "")
            # (Each part's trailing spaces inside it: Textual drops one after a style's end.)
            detail = Text()
            detail.append(f"{duration(took)}  ", style="bold")
            if record["exit_code"] is not None:
                detail.append(f"exit {record['exit_code']}  ")
            if worker:
                detail.append("on ", style=muted)
                detail.append(literal(f"{worker.rsplit(':', 1)[0]}  "))
            detail.append("→ ", style=muted)
            detail.append(event, style=colors.get(event if event != "rescued" else "failed", ""))
            error = str(record["error"] or "")
            if error.startswith(event):  # "cancelled (killed by signal SIGTERM)"
                detail.append(literal(error[len(event) :]))
            elif error and event != "completed" and error != f"exit code {record['exit_code']}":
                # (an exit code's own error says no more than the "exit N" before it)
                detail.append(": ", style=muted)
                detail.append(literal(error))
            run = Text(f"run {attempt}" if attempt is not None else "run")
            table.add_row(Text(coarse_relative_time(began, now)), run, detail)
            start, ended = None, at
            continue
        detail = Text()
        if record["error"] and record["error"] != event:  # (not "cancelled: cancelled")
            detail.append(literal(str(record["error"]), muted))
        table.add_row(when, Text(event, style=colors.get(event, "")), detail)
        if event == "retried":
            ended = None
    if start is not None:  # running now
        began = float(start["at"])  # type: ignore[arg-type]
        detail = Text()
        detail.append(f"{duration(now - began)} ", style="bold")
        detail.append("so far  ", style=muted)
        if start["worker"]:
            detail.append("on ", style=muted)
            detail.append(literal(str(start["worker"]).rsplit(":", 1)[0]))
        attempt = start["attempt"]
        run = Text(f"run {attempt}" if attempt is not None else "run", style=colors.get("processing", ""))
        table.add_row(Text(coarse_relative_time(began, now)), run, detail)
    return table
