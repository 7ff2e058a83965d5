"""``logs``: a job's output so far, and with ``--follow`` as it is printed (SPEC 6)."""

from __future__ import annotations

import errno
import os
import select
import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from ..states import ACTIVE, CLAIMABLE, State
from ..text import NewOutput, OutputCursor, safe, visible
from .common import Settings, WholeNumber, pass_settings, write_all
from .jobs import complete_ids

if TYPE_CHECKING:
    from ..models import Job
    from ..queue import Queue

FOLLOW_WAIT_S = 1.0  # the longest wait between two reads while following


@click.command()
@click.argument("job_id", metavar="ID", shell_complete=complete_ids())
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new output until the job leaves processing.")
@click.option("--tail", "-n", "lines", type=WholeNumber(min=0), metavar="N",
              help="Start with the last N lines only.")
@click.option("--raw", is_flag=True,
              help="Print the output as stored, even to a terminal (control characters too).")
@pass_settings
def logs(settings: Settings, job_id: str, follow: bool, lines: int | None, raw: bool) -> None:
    """Print a job's output so far; with --follow, also what it prints next.

    ID may be any unique prefix. While a job runs its output is stored every 0.75 s
    (the last 1 MiB of it is kept). --follow waits for a job that has not started yet (one
    waiting to retry: after its last run's output) and ends (exit 0) once the job is no
    longer processing (a run its worker gave back, the job pending again, is followed on to
    the next run). To a terminal, control characters other than newline and tab are shown
    as escapes (see `show`); to a pipe, or with --raw, the output is printed as stored.

    \b
    Examples:
      queuectl logs 3k9x
      queuectl logs -f -n 20 3k9x
    """
    queue = settings.queue
    job = queue.get(job_id)
    out = _Output(raw or not _terminal())
    try:
        if not follow:
            out.write(_last_lines(job.output or "", lines))
            if not job.output:  # (on stderr, as `list` says "no jobs": stdout stays empty)
                click.echo(f"no output: {_why_none(job)}", err=True)
            return
        _Follower(queue, job, out, lines).run()
    finally:
        out.close()


def _why_none(job: Job) -> str:
    """Why ``job`` has no output (QA: `logs` of a job not yet run printed nothing at all)."""
    if job.state == State.PROCESSING:
        return "the job has printed nothing yet"
    if job.attempts == 0:
        return f"the job has not run yet (it is {job.state})"
    return "the job printed nothing"


def _terminal() -> bool:
    return sys.stdout.isatty()


class _Output:
    """stdout, made safe for a terminal unless ``as_stored``: as `show` shows output, CRLF is a
    line end and other control characters are escapes (QA: a CRLF job's every line ended in
    ``\x0d`` in `logs`, not in `show` or the TUI)."""

    def __init__(self, as_stored: bool) -> None:
        self.as_stored = as_stored
        self.stream = sys.stdout.buffer
        self.line_ended = True  # what was written ends with a newline (or nothing was)
        # A terminal's: a carriage return that ended a write, kept until the next write tells
        # whether it began a line end (``-f`` may read a CRLF's two halves apart).
        self.held = ""

    def write(self, text: str) -> None:
        if not text:
            return
        self.line_ended = text.endswith("\n")
        if not self.as_stored:
            text, self.held = self.held + text, ""
            if text.endswith("\r"):
                text, self.held = text[:-1], "\r"
            text = safe(text)
        self._put(text)

    def end_line(self) -> None:
        """To a terminal, end a line cut short (by a skip, or a run's end), so that the lines on
        either side are not read as one (QA: `1860`, then `204` after a skip, read `1860204`).
        As stored (a pipe, ``--raw``) no byte is added: the stderr line says where (QA)."""
        if not self.as_stored and not self.line_ended:
            self.write("\n")

    def reader_gone(self) -> bool:
        """Whether standard output is a pipe its reader has closed (`logs -f ID | head -1`): seen
        between two reads, as `tail -f` sees it, not at the next write, which may come much
        later or never (QA: 14 s, until the job printed again)."""
        try:
            poller = select.poll()
            poller.register(self.stream.fileno(), 0)  # (an error is reported unasked)
            return any(events & select.POLLERR for _, events in poller.poll(0))
        except (OSError, ValueError, AttributeError):  # no descriptor: never a pipe
            return False

    def close(self) -> None:
        """Write a carriage return still held (one that ended the output)."""
        if self.held:
            self.held = ""
            self._put(visible("\r"))

    def _put(self, text: str) -> None:
        if text:
            write_all(self.stream, text.encode("utf-8", "surrogateescape"))


def _last_lines(text: str, count: int | None) -> str:
    """The last ``count`` lines of ``text``, as tail(1) counts them: each ends at a newline,
    never at a carriage return (a progress bar's) or another of str.splitlines' breaks."""
    if count is None:
        return text
    if count == 0:
        return ""
    at = len(text) - 1 if text.endswith("\n") else len(text)
    for _ in range(count):
        at = text.rfind("\n", 0, at)
        if at < 0:
            return text
    return text[at + 1 :]


class _Stderr:
    """What reconnect.Outage logs to: one line on stderr."""

    def warning(self, message: str, *args: object) -> None:
        click.echo(f"queuectl logs: {message % args}", err=True)


class _Follower:
    """Prints what a job prints, from the run it is in or the next one it starts, until that
    run ends (an :class:`~queuectl.text.OutputCursor` tells what of each read is new)."""

    def __init__(self, queue: Queue, job: Job, out: _Output, lines: int | None) -> None:
        self.queue = queue
        self.seq = job.seq
        self.job_id = job.id
        self.out = out
        self.lines = lines
        self.cursor = OutputCursor()
        self.said_last_run = False  # a job waiting to run again: its last run's output printed
        # That output was printed: the next run's begins after a line on stderr saying so (QA:
        # a job printing the same twice read as one run's output).
        self.next_run_to_say = False
        # A job not running: the attempts it had made. The run followed is its next: seen
        # running, or (a quick run, begun and ended between two looks) by its attempts.
        self.attempts_before = job.attempts or 0
        from ..reconnect import Outage, ReadUnderWay

        self.outage = Outage(_Stderr())  # type: ignore[arg-type]
        self.look = ReadUnderWay()

    def run(self) -> None:
        from ..reconnect import Backoff

        outage = self.outage
        backoff = Backoff()
        changes = None
        ended = threading.Event()
        if not self.queue.is_sqlite:  # (SQLite's reads wait for no one)
            threading.Thread(target=self._say_no_answer, args=(ended,), daemon=True).start()
        try:
            while True:
                try:
                    if changes is None:
                        changes = self.queue.change_detector()
                    with self.look.reading():
                        done = self._step()
                    outage.ok()
                    backoff.reset()
                    if done:
                        return
                    if self.out.reader_gone():
                        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
                    changes.wait(FOLLOW_WAIT_S)
                except Exception as exc:
                    peewee = sys.modules.get("peewee")
                    if peewee is None or not isinstance(exc, peewee.PeeweeException):
                        raise
                    try:
                        self.queue.recover()
                    except Exception:  # tried again after the next failure
                        pass
                    outage.failed(exc)
                    time.sleep(backoff.next())
        finally:
            ended.set()
            if changes is not None:
                changes.close()

    def _say_no_answer(self, ended: threading.Event) -> None:
        """On a thread of its own: a look unanswered for NO_ANSWER_SAID_S is said as an outage
        (once; "reachable again" follows as the look returns)."""
        from ..reconnect import no_answer

        while not ended.wait(0.25):
            waited = self.look.unanswered_for()
            if waited is not None:
                self.outage.failed(TimeoutError(no_answer(waited)), since=self.look.since)

    def _step(self) -> bool:
        """One look at the job; whether following is over."""
        from ..errors import QueueError

        progress = self.queue.progress(self.seq)
        self.outage.ok()  # (said before what this read shows: QA, "back" came after it)
        if progress is None:
            raise QueueError(f"job {self.job_id} was deleted")
        followed = self.cursor.run
        if progress.state in CLAIMABLE and followed is None:
            if (progress.attempts or 0) > self.attempts_before:
                # The next run began and ended between two looks (a quick one that failed, to
                # be retried): its output, and the end (QA: it waited on, and followed a later
                # run, the runs between left out).
                job = self.queue.output_of(self.seq)
                if job is not None and job.state in CLAIMABLE:
                    self._say_next_run(job.attempts)
                    self.out.write(_last_lines(job.output or "", self.lines))
                    return True
                return False  # it changed again: the next look sees how
            if (progress.attempts or progress.output_bytes) and not self.said_last_run:
                # To run again (failed, or given back): the last run's output first, as `logs`
                # prints it (QA: nothing until the next run started), then the next run's.
                self.said_last_run = True
                job = self.queue.output_of(self.seq)
                if job is not None:
                    self.out.write(_last_lines(job.output or "", self.lines))
                    self.lines = None
                    self.next_run_to_say = True
            return False  # not started yet: wait for the start
        if followed is None and self.said_last_run and progress.state not in ACTIVE and (
            (progress.attempts or 0) <= self.attempts_before
        ):
            # Ended while it waited to run again (cancelled): its last run's output is printed
            # already (QA: printed again, after "attempt 1 started", a run that never began).
            click.echo(f"queuectl logs: the job is {progress.state}: it did not run again",
                       err=True)  # fmt: skip
            return True
        run = (progress.attempts, progress.started_at)
        if followed is not None and run != followed:
            if progress.attempts > followed[0]:  # type: ignore[operator]
                return True  # the run followed ended, and another began: that one is not ours
            # Given back, its attempt not counted (a worker's hard stop, or its database
            # away): not an end, the job runs again (QA: it exited 0 mid-job). What the run
            # printed last is stored as it is given back: printed first, unless the next run
            # has begun (its output is in its place).
            if progress.state in CLAIMABLE:
                self._print_rest(followed)
            click.echo("queuectl logs: the run was stopped by its worker before its end and "
                       "the job put back, its attempt not counted; following its next run",
                       err=True)  # fmt: skip
            self.cursor, self.lines, self.said_last_run = OutputCursor(), None, True
            self.attempts_before = followed[0] - 1  # type: ignore[operator]  # (not counted)
            return False
        ended = progress.state not in ACTIVE  # (its last output stored as it ended)
        if run != followed or progress.output_bytes != self.cursor.shown or ended:
            self._print(run)
        return ended

    def _print_rest(self, run: tuple[object, object]) -> None:
        """What is new of the output stored for ``run``, a run given back."""
        job = self.queue.output_of(self.seq)
        if job is not None and job.state in CLAIMABLE:
            self._write(self.cursor.advance(run, job.output or "", job.output_bytes,
                                            can_clear=False))  # fmt: skip

    def _print(self, run: tuple[object, object]) -> None:
        job = self.queue.output_of(self.seq)
        if job is None or (job.attempts, job.started_at) != run:
            return  # the next look sees what changed
        stored = job.output or ""
        first = self.cursor.run is None
        new = self.cursor.advance(run, stored, job.output_bytes, can_clear=False)
        if first:  # the output so far, as `logs` prints it
            self._say_next_run(job.attempts)
            self.out.write(_last_lines(stored, self.lines))
            return
        self._write(new)

    def _say_next_run(self, attempt: int) -> None:
        """After the last run's output, a line on stderr where the next run's begins."""
        if self.next_run_to_say:
            self.next_run_to_say = False
            self.out.end_line()
            click.echo(f"queuectl logs: attempt {attempt} started", err=True)

    def _write(self, new: NewOutput) -> None:
        """What is new, after a line on stderr saying how many bytes were skipped before it,
        if any (to a terminal, a line the skip cut is ended there: :meth:`_Output.end_line`)."""
        if new.skipped:
            self.out.end_line()  # (first: the line on stderr is a line of its own)
            click.echo(f"queuectl logs: {new.skipped} bytes skipped", err=True)
        self.out.write(new.text)
