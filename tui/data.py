"""The loader: a worker thread queries the queue and posts plain data to the UI thread.

:class:`Loader` decides when (at once if idle, never two loads at once, at most one every
``MIN_GAP_S``); :func:`load_snapshot` is what the thread runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from queue import SimpleQueue
from types import MappingProxyType

from textual.app import App
from textual.message import Message
from textual.timer import Timer

from queuectl.models import ACTIVE, CLAIMABLE, Job, State
from queuectl.queue import Queue
from queuectl.reading import LIST_COLUMN_NAMES

from .messages import PANES, Health, JobRow, LoadFailed, QueueSnapshot, error_text

WINDOW_S = 60  # the throughput chart: the last minute, one bar a second
HEALTH_WINDOW_S = 3600.0  # the top bar's failure rate and run-time p95: the last hour
PANE_LIMIT = 200  # rows loaded per pane when the app does not say (see JobPane.rows_wanted)
MAX_ROWS = 2000  # a pane never loads more than this, however far one scrolls
# The states of the jobs each pane lists.
PANE_STATES = {
    "waiting": set(CLAIMABLE),
    "processing": set(ACTIVE),
    "completed": {State.COMPLETED},
    "dead": {State.DEAD, State.CANCELLED},  # (cancelled jobs are listed with the dead)
}


def job_row(job: Job, held: Mapping[str, str] = MappingProxyType({})) -> JobRow:
    """``held``: the queues paused or limited to 0, and why (:meth:`Queue.held_queues`)."""
    return JobRow(
        id=job.id,
        command=job.command,
        state=job.state,
        attempts=job.attempts,
        max_retries=job.max_retries,
        priority=job.priority,
        run_at=job.run_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        exit_code=job.exit_code,
        error=job.error,
        worker=job.worker,
        queue=job.queue,
        waiting_for=tuple(getattr(job, "waiting_for", ())),
        blocked_by=tuple(getattr(job, "blocked_by", ())),
        held=held.get(job.queue, ""),
    )


def pane_jobs(
    queue: Queue, name: str, limit: int, text: str = "", last: bool = False
) -> list[Job]:
    """The first ``limit`` jobs of pane ``name`` (``last``: its last ``limit``, in the pane's
    order all the same); with ``text``, only those whose id, command or queue contains it. The
    database does the matching and stops at ``limit`` (``Queue.pane_matching``): a filter never
    loads more rows than the pane shows."""
    if name == "dead":  # cancelled jobs are listed with the dead ones (SPEC 5)
        both = [*_pane_of(queue, "dead", limit, text, last),
                *_pane_of(queue, "cancelled", limit, text, last)]  # fmt: skip
        both.sort(key=lambda job: (job.finished_at or 0.0, job.seq), reverse=True)
        return both[-limit:] if last else both[:limit]
    jobs = _pane_of(queue, name, limit, text, last)
    return queue.fill_after(jobs) if name == "waiting" and text else jobs


def reaching(
    queue: Queue, name: str, jobs: list[Job], limit: int, text: str, job_id: str
) -> tuple[list[Job], int]:
    """The first rows of pane ``name`` through job ``job_id`` (the one selected there), and how
    many were asked for: jobs that came before it in the pane's order (new ones, or of a higher
    priority) pushed it past the ``limit`` rows loaded (``jobs``), and the cursor went on to
    whichever job took its row (`x` cancelled that one). Loaded again, twice as far each time up
    to MAX_ROWS, while the job is still in the pane; one that left it is let go. Past MAX_ROWS,
    the job follows the rows loaded, as their last (the jobs between are not loaded)."""
    if len(jobs) < limit or any(job.id == job_id for job in jobs):
        return jobs, limit  # the pane holds no more jobs, or it is there
    Job = queue.models.Job
    columns = [getattr(Job, column) for column in LIST_COLUMN_NAMES]
    job = Job.select(*columns).where(Job.id == job_id).first()
    if job is None or job.state not in PANE_STATES[name]:
        return jobs, limit
    while len(jobs) >= limit and limit < MAX_ROWS:
        limit = min(2 * limit, MAX_ROWS)
        jobs = pane_jobs(queue, name, limit, text)
        if any(each.id == job_id for each in jobs):
            return jobs, limit
    if not any(each.id == job_id for each in jobs):
        more = queue.fill_after([job]) if name == "waiting" else [job]
        jobs = [*jobs, *more]
    return jobs, limit


def _pane_of(queue: Queue, name: str, limit: int, text: str, last: bool) -> list[Job]:
    """Each state read through its own index, in the pane's order, stopping at ``limit``."""
    if text:
        return queue.pane_matching(name, limit, text, last)
    return queue.pane(name, limit, last)


def health(queue: Queue, since: float = HEALTH_WINDOW_S) -> Health:
    """The runs that ended in the last ``since`` seconds, over every queue (SPEC 8 stats)."""
    runs = failures = 0
    p95s = []
    for stats in queue.stats(since).queues.values():
        runs += sum(stats.runs.values())
        failures += stats.runs[State.FAILED] + stats.runs[State.DEAD]
        if stats.run_p95 is not None:
            p95s.append(stats.run_p95)
    return Health(runs, failures, max(p95s) if p95s else None)


def load_snapshot(
    queue: Queue,
    clock: Callable[[], float] | None = None,
    limits: dict[str, int] | None = None,
    text: str = "",
    with_health: bool = False,
    selected: dict[str, str] | None = None,
    ends: frozenset[str] = frozenset(),
) -> QueueSnapshot:
    """Counts, config, live workers and the first rows of every pane (``limits[pane]`` of them;
    with ``text``, of the jobs that match it; through ``selected[pane]``, the job selected there,
    see :func:`reaching`; of the panes in ``ends``, their last rows, the user went to the end
    with `G`); ``with_health``: the last hour's :func:`health` too (heavier than the
    rest: the loader asks for it every few seconds)."""
    limits = {name: (limits or {}).get(name, PANE_LIMIT) for name in PANES}
    now = (clock or queue.clock)()
    with queue.snapshot():  # read at one moment: a job in one pane, as counted
        counts = queue.counts(fold=False)  # (read-only: no write in it)
        held = queue.held_queues()
        panes = {}
        for name in PANES:
            jobs = pane_jobs(queue, name, limits[name], text, last=name in ends)
            if selected and name in selected and name not in ends:
                jobs, limits[name] = reaching(queue, name, jobs, limits[name], text,
                                              selected[name])  # fmt: skip
            panes[name] = [job_row(job, held) for job in jobs]
        config = queue.config()
        live_workers = sum(worker.threads for worker in queue.live_workers())  # as `status`
        finished = queue.finished_per_second(WINDOW_S)
    queue.fold_counters()  # (a write: after the read-only snapshot)
    return QueueSnapshot(
        now=now,
        counts=counts,
        panes=panes,
        config=config,
        live_workers=live_workers,
        finished=finished,
        filter=text,
        limits=limits,
        ends=ends,
        health=health(queue) if with_health else None,
    )


def pane_summaries(counts: dict[str, int], live_workers: int) -> dict[str, tuple[int, str]]:
    """Per pane: how many jobs it holds in all, and a note for its border."""
    failed = counts[State.FAILED]
    cancelled = counts.get(State.CANCELLED, 0)
    workers = f"{live_workers} worker{'' if live_workers == 1 else 's'} live"
    return {
        "waiting": (counts[State.PENDING] + failed, f"{failed:,} retrying" if failed else ""),
        "processing": (counts[State.PROCESSING], workers),
        "completed": (counts[State.COMPLETED], ""),
        "dead": (
            counts[State.DEAD] + cancelled,
            f"{cancelled:,} cancelled" if cancelled else "",
        ),
    }


class HealthLoaded(Message):
    """The last hour's :func:`health`, read beside the loads (see :class:`Loader`)."""

    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health


log = logging.getLogger(__name__)


def let_go_of_a_replaced_file(queue: Queue) -> None:
    """SQLite, in a thread that keeps its connection: closed if the file at the queue's path is
    gone or another since it was opened, so the next read opens the path again (and says it is
    gone), where it would read on from the file deleted."""
    from queuectl.db import file_replaced

    if queue.is_sqlite and file_replaced(queue.db):
        queue.close()


def keep_looking(name: str, queue: Queue, left: threading.Event,
                 look: Callable[[], float | None]) -> None:  # fmt: skip
    """Call ``look`` on a daemon thread of its own, on one connection (a thread a look was, on
    PostgreSQL, a new connection ten times a second), until ``left`` is set or ``look`` returns
    None; it returns the seconds to wait before the next look. For a screen that follows a job
    while it is open."""

    def run() -> None:
        try:
            while not left.is_set():
                let_go_of_a_replaced_file(queue)
                wait = look()
                if wait is None:
                    return
                left.wait(wait)
        finally:
            queue.close()

    threading.Thread(target=run, name=name, daemon=True).start()


class Reader:
    """One daemon thread of its own that runs the reads it is given, one at a time, on one
    connection (each thread has its own): a thread a read, the TUI opened a connection to
    PostgreSQL (a server process started) at every refresh, several a second while its pool
    was busy. A read that fails on a broken connection has it replaced for the next."""

    def __init__(self, name: str, queue: Queue) -> None:
        self.name, self.queue = name, queue
        self._reads: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, read: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._reads.put(read)

    def close(self) -> None:
        """End the thread once the reads given are done, its connection closed."""
        if self._thread is not None:
            self._reads.put(None)

    def _run(self) -> None:
        while True:
            read = self._reads.get()
            if read is None:
                self.queue.close()
                return
            let_go_of_a_replaced_file(self.queue)
            try:
                read()
            except Exception:  # (each read posts its own failure)
                log.exception("a read of the TUI failed")
            with contextlib.suppress(Exception):
                self.queue.recover()  # broken (an outage): the next read opens a new one


class Loader:
    """Refreshes ``app``'s view of ``queue``: posts a QueueSnapshot, or LoadFailed, to ``app``;
    every ``HEALTH_EVERY_S`` a HealthLoaded too.

    ``limits()`` says how many rows each pane wants; the app calls :meth:`loaded` once it has
    applied what a load posted. The last hour's health is read by a thread of its own, beside the
    loads: with a million jobs it can take longer than a load, and the panes and counts do not
    wait for it.
    """

    MIN_GAP_S = 0.2  # loads asked for by the user's actions: at most this often
    # Loads nobody asked for (the app's timer, news of its own pool): at most one every
    # ``background_gap`` seconds (the app's refresh interval). A busy pool changes every pane all
    # the time, and drawing them 5 times a second took a third of a core from the UI thread
    # (keys waited behind it).
    # A slow load (a filter, which matches text in every job: a second with a million jobs) is
    # followed by a wait of this many times its length before the next one nobody asked for:
    # the loads take at most a quarter of a core (QA: 50-64 % with a filter set, and keys slower).
    LOAD_SHARE = 4
    HEALTH_EVERY_S = 5.0  # the last hour's stats, heavier than counts: at most this often
    # ... and with a wait of at least this many times the last read's length: the last hour's
    # figures move slowly, and with a million jobs one read took seconds of a core (asked every
    # 5 s, a core was busy with it all the time, and the app's own workers and keys waited).
    HEALTH_SHARE = 10

    def __init__(
        self,
        app: App,
        queue: Queue,
        clock: Callable[[], float],
        limits: Callable[[], dict[str, int]],
        text: Callable[[], str] = str,
        background_gap: float = 1.0,
        selected: Callable[[], dict[str, str]] = dict,
        ends: Callable[[], frozenset[str]] = frozenset,
        actions: Callable[[], int] = int,
    ) -> None:
        self.app, self.queue, self.clock, self.limits = app, queue, clock, limits
        self.actions = actions  # how many of the app's actions are carried out (QueueSnapshot)
        self.selected = selected  # the job selected in each pane: loaded wherever it went
        self.ends = ends  # the panes whose last rows are loaded, not their first
        self.background_gap = background_gap
        self.text = text  # the filter: panes load only the jobs that match it
        self._loading = False
        self._again = False  # asked for while loading: load once more when done
        self._again_at_once = False  # ... and keys typed ahead wait for that load
        self._last = float("-inf")  # time.monotonic() of the last load started
        self._last_took = 0.0  # seconds, the last load
        self._timer: Timer | None = None
        self._timer_due = 0.0  # time.monotonic() when the timer fires
        self._health_at = float("-inf")  # time.monotonic() of the last health read started
        self._health_loading = False
        self._health_every = self.HEALTH_EVERY_S  # grows with a slow read (HEALTH_SHARE)
        self._reader = Reader("queuectl-load", queue)
        self._health_reader = Reader("queuectl-health", queue)

    def request(self, background: bool = False, at_once: bool = False) -> None:
        """Refresh soon: at once if idle, else after the load in flight (never two at once);
        ``background``: not asked for by the user (at most one every ``background_gap``);
        ``at_once``: keys typed ahead wait for it (after an action), no gap kept."""
        if self._loading:
            self._again = self._again or not background
            self._again_at_once = self._again_at_once or at_once
            return
        gap = self.MIN_GAP_S
        if background:
            gap = max(self.background_gap, gap, self.LOAD_SHARE * self._last_took)
        if at_once:
            gap = 0.0
        wait = self._last + gap - time.monotonic()
        if wait > 0:
            due = time.monotonic() + wait
            if self._timer is not None and due < self._timer_due:  # sooner: the user asked
                self._timer.stop()
                self._timer = None
            if self._timer is None:
                self._timer, self._timer_due = self.app.set_timer(wait, self._timed), due
            return
        self._loading, self._again, self._again_at_once = True, False, False
        self._last = time.monotonic()
        with_health = (
            self._last - self._health_at >= self._health_every and not self._health_loading
        )
        if with_health:
            self._health_at = self._last
        # Counted before the read: the actions it surely sees.
        load = partial(self._load, self.limits(), self.text(), selected=self.selected(),
                       ends=self.ends(), actions=self.actions())  # fmt: skip
        self._reader.submit(load)
        if with_health:
            self._health_loading = True
            self._health_reader.submit(self._load_health)

    @property
    def reading(self) -> bool:
        """A load is being read (or shown)."""
        return self._loading

    @property
    def unanswered_for(self) -> float | None:
        """PostgreSQL: seconds the load in flight has waited for the server, if one does (a
        server that does not answer, or a network that drops packets: a read gives up only once
        the connection does, 15 s and more). None on SQLite, whose reads wait for no one."""
        if not self._loading or self.queue.is_sqlite:
            return None
        return time.monotonic() - self._last

    def loaded(self) -> None:
        """The app has shown what the last load posted."""
        self._loading = False
        if self._again:
            at_once, self._again_at_once = self._again_at_once, False
            self.request(at_once=at_once)

    def _timed(self) -> None:
        self._timer = None
        self.request()

    def _load_health(self) -> None:
        """On a thread of its own (a Reader's)."""
        started = time.monotonic()
        try:
            figures = health(self.queue)
            took = time.monotonic() - started
            self._health_every = max(self.HEALTH_EVERY_S, took * self.HEALTH_SHARE)
            self.app.post_message(HealthLoaded(figures))
        except Exception as exc:  # as a load's: shown, and read again next time
            self.app.post_message(LoadFailed(error_text(exc)))
        finally:
            self._health_loading = False

    def _load(
        self,
        limits: dict[str, int],
        text: str = "",
        selected: dict[str, str] | None = None,
        ends: frozenset[str] = frozenset(),
        actions: int = 0,
    ) -> None:
        """On the loads' thread (a Reader's)."""
        started = time.monotonic()
        try:
            snapshot = load_snapshot(self.queue, self.clock, limits, text, selected=selected,
                                     ends=ends)  # fmt: skip
            snapshot.actions = actions
            self._last_took = time.monotonic() - started  # (before the app hears of it)
            self.app.post_message(snapshot)
        except Exception as exc:  # the database went away or is locked: show it, keep going
            self._last_took = time.monotonic() - started
            self.app.post_message(LoadFailed(error_text(exc)))
