"""SPEC 7, schedules: cron expressions (seconds first, zones, aliases), one job per due time
however many pools look, one catch-up job after downtime, --no-overlap, pause/resume/run."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from queuectl import InvalidInput, JobSpec, Queue, QueueError
from queuectl.executor import RunResult
from queuectl.schedules import check_cron, next_time
from support import wait_until

from .helpers import WorkerProc

START = datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()  # a Friday, 00:00 UTC


def test_cron_forms():
    assert next_time("*/10 * * * * *", "UTC", START + 1) == START + 10  # seconds first
    assert next_time("30 5 * * * *", "UTC", START) == START + 5 * 60 + 30
    assert next_time("0 3 * * *", "UTC", START) == START + 3 * 3600
    assert next_time("0 3 * * *", "Europe/Paris", START) == START + 2 * 3600
    assert next_time("@hourly", "UTC", START) == START + 3600
    assert next_time("@daily", "UTC", START + 1) == START + 86400


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_a_time_of_day_in_the_hour_clocks_go_back_runs_once_and_hourly_jobs_in_both():
    """Paris sets clocks back at 03:00 on 2026-10-25: 02:00-03:00 happens twice. A daily job at
    02:30 ran at both (00:30 and 01:30 UTC); it runs at the first, as cron's does. A job due
    every 30 minutes runs in both passes; the spring day without 02:30 runs it at 03:00."""

    def due(cron: str, start: str, count: int) -> list[str]:
        times, at = [], _utc(start)
        for _ in range(count):
            at = next_time(cron, "Europe/Paris", at)
            times.append(datetime.fromtimestamp(at, timezone.utc).strftime("%m-%d %H:%M"))
        return times

    assert due("30 2 * * *", "2026-10-23T12:00", 4) == [
        "10-24 00:30", "10-25 00:30", "10-26 01:30", "10-27 01:30"]  # fmt: skip
    assert due("15 1-3 * * *", "2026-10-24T22:00", 4) == [
        "10-24 23:15", "10-25 00:15", "10-25 02:15", "10-26 00:15"]  # fmt: skip
    assert due("*/30 * * * *", "2026-10-24T23:50", 6) == [
        "10-25 00:00", "10-25 00:30", "10-25 01:00", "10-25 01:30", "10-25 02:00", "10-25 02:30",
    ]  # fmt: skip
    assert due("30 2 * * *", "2026-03-28T12:00", 2) == ["03-29 01:00", "03-30 00:30"]


@pytest.mark.parametrize(
    "name, cron, zone",
    [("bad name", "@daily", None), ("x", "* * *", None), ("x", "61 * * * *", None),
     ("x", "* * * * * * *", None), ("x", "@reboot", None), ("x", "@daily", "Mars/Base"),
     # croniter's random values and hashes are not cron's (QA: "R R * * *" fired 1-5 times a day)
     ("x", "R R * * *", None), ("x", "0 r(1-5) * * *", None), ("x", "0,R 3 * * *", None),
     ("x", "H * * * *", None),
     # a step longer than the field's cycle: croniter's `*/61` seconds is second 0 alone (QA)
     ("x", "*/61 * * * * *", None), ("x", "0 0-23/25 * * *", None), ("x", "0 0 1 1/13 *", None),
     ("x", "0 0 * * 1,*/8", None), ("x", "0 0 */32 * *", None)],
)  # fmt: skip
def test_bad_schedules_are_refused(any_queue, name, cron, zone):
    with pytest.raises(InvalidInput):
        any_queue.add_schedule(name, cron, JobSpec(command="x"), zone=zone)
    assert any_queue.schedules() == []


def test_month_and_day_names_are_cron_s_own():
    assert check_cron("0 3 * MAR,apr FRI") == "0 3 * MAR,apr FRI"


def test_steps_up_to_a_field_s_cycle_are_kept():
    for cron in ("*/60 * * * * *", "*/60 * * * *", "0 */24 * * *", "0 0 */31 * *",
                 "0 0 1 */12 *", "0 0 * * */7", "0 0 * * 1-5/2"):  # fmt: skip
        assert check_cron(cron) == cron


def test_names_are_unique_and_unknown_ones_fail(any_queue):
    any_queue.add_schedule("nightly", "@daily", JobSpec(command="x"))
    with pytest.raises(InvalidInput, match="exists"):
        any_queue.add_schedule("nightly", "@hourly", JobSpec(command="y"))
    for action in (any_queue.remove_schedule, any_queue.pause_schedule,
                   any_queue.resume_schedule, any_queue.run_schedule):  # fmt: skip
        with pytest.raises(QueueError, match="no schedule"):
            action("other")


def test_each_due_time_gives_one_job_whoever_looks(target, clock, tmp_path, monkeypatch):
    clock.now = START
    monkeypatch.chdir(tmp_path)
    first, second = Queue(target, clock=clock), Queue(target, clock=clock)
    try:
        first.add_schedule("tick", "* * * * *", JobSpec(command="echo tick", priority=3,
                                                       queue="ops"))  # fmt: skip
        assert first.fire_due_schedules() == []
        clock.advance(60)
        fired = first.fire_due_schedules() + second.fire_due_schedules()
        assert len(fired) == 1
        job = first.get(fired[0].id)
        assert (job.schedule, job.cwd, job.priority, job.queue) == ("tick", str(tmp_path), 3, "ops")
        # A long downtime: one job for all the times missed, and the next due time from now.
        clock.advance(3600)
        assert len(second.fire_due_schedules() + first.fire_due_schedules()) == 1
        info = first.schedules()[0]
        assert info.next_due == START + 60 + 3600 + 60 and info.last_job_id is not None
    finally:
        first.close()
        second.close()


def test_a_time_fired_after_waiting_for_the_write_lock_is_not_due_again(db_path):
    """SQLite: a pool looked, found a time due, then waited for the write lock (another
    process held it). It moved the schedule on from the time it had looked, to a due time
    already past once the lock came: the schedule was due again at once, and another pool
    fired the same missed time a second time (the chaos run saw it)."""
    import sqlite3
    import threading

    from support import WatchedClock

    clock = WatchedClock(START)
    first, second = Queue(db_path, clock=clock), Queue(db_path, clock=clock)
    try:
        first.add_schedule("tick", "* * * * *", JobSpec(command="echo tick"))
        clock.advance(61)  # due: START + 60
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        fired: list = []
        firing = threading.Thread(target=lambda: fired.extend(first.fire_due_schedules()),
                                  name="firing")  # fmt: skip
        firing.start()
        wait_until(lambda: "firing" in clock.readers, 30, "the pool to look")
        clock.advance(90)  # the lock is held past the next due time (START + 120)
        holder.execute("ROLLBACK")
        holder.close()
        firing.join(30)
        assert len(fired) == 1
        assert second.fire_due_schedules() == [], "the same missed time fired twice"
        assert first.schedules()[0].next_due == START + 180
    finally:
        first.close()
        second.close()


def test_no_overlap_skips_while_the_last_job_waits_or_runs(any_queue, clock):
    q = any_queue
    clock.now = START
    q.add_schedule("slow", "* * * * *", JobSpec(command="x"), no_overlap=True)
    clock.advance(60)
    [job] = q.fire_due_schedules()
    clock.advance(60)
    assert q.fire_due_schedules() == []  # still pending: skipped, and the time passes
    assert q.schedules()[0].next_due == START + 180
    claimed = q.claim("w")
    q.finish(claimed, RunResult(0, None, ""), "w")
    clock.advance(60)
    assert len(q.fire_due_schedules()) == 1


def test_pause_resume_run_remove(any_queue, clock):
    q = any_queue
    clock.now = START
    q.add_schedule("s", "* * * * *", JobSpec(command="x"))
    q.pause_schedule("s")
    clock.advance(600)
    assert q.fire_due_schedules() == [] and q.next_schedule_due() is None
    info = q.resume_schedule("s")
    assert info.next_due == START + 660  # from now: paused times are not made up for
    job = q.run_schedule("s")
    assert job.schedule == "s" and q.schedules()[0].last_job_id == job.id
    q.remove_schedule("s")
    assert q.schedules() == []


def test_a_seconds_schedule_with_three_worker_processes(target, tmp_path):
    """Every 2 s, 3 worker processes firing: exactly one job per due time."""
    queue = Queue(target)
    procs = []
    try:
        procs = [WorkerProc(target, 1, tmp_path, f"worker-{n}") for n in range(3)]
        for proc in procs:
            proc.wait_ready()
        # Added once every worker runs: a due time that passed while they started (seconds on
        # a loaded machine) is fired late, at a `now` just before the next even second, and
        # the job's created_at (taken after the wait for the write lock) can fall past it, in
        # the slot of the next due time's job: two slots' jobs in one, though each due time
        # had one job.
        queue.add_schedule("tick", "*/2 * * * * *", JobSpec(command="true", cwd=str(tmp_path)))
        wait_until(lambda: len(queue.list_jobs(with_output=False)) >= 4, 30, "4 scheduled jobs")
    finally:
        for proc in procs:
            proc.stop(30)  # not SIGKILLed before it wrote its events (counted below)
    jobs = queue.list_jobs(with_output=False)
    queue.close()
    # Each job is enqueued at its due time (an even second) by the first pool to see it due:
    # two jobs in one 2-second slot would be two jobs for one due time.
    slots = [int(job.created_at) // 2 for job in jobs]
    assert len(set(slots)) == len(slots), sorted(job.created_at for job in jobs)
    assert all(job.schedule == "tick" for job in jobs)
    scheduled = sum(len(proc.events("scheduled")) for proc in procs)
    assert scheduled == len(jobs)
    assert os.path.isdir(jobs[0].cwd)


def test_a_worker_killed_while_firing_neither_loses_nor_doubles_the_time(target, tmp_path):
    """The compare-and-swap on next_due and the job it enqueues are one transaction: a process
    killed between them (SIGKILL) leaves the time due, and the next worker fires it once."""
    Queue(target, clock=lambda: START).add_schedule("tick", "* * * * *", JobSpec(command="true"))
    code = (
        "import os, signal\n"
        "from queuectl import Queue\n"
        "from queuectl.schedules import Schedules\n"
        "Schedules._fire = lambda self, row: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"Queue({target!r}, clock=lambda: {START + 60}).fire_due_schedules()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, timeout=60)
    assert done.returncode == -signal.SIGKILL
    later = Queue(target, clock=lambda: START + 60)
    try:
        assert len(later.fire_due_schedules()) == 1
        assert later.fire_due_schedules() == []
        assert [job.schedule for job in later.list_jobs()] == ["tick"]
    finally:
        later.close()


POISONED = {  # a schedule's stored job or timetable, as an older queuectl or a hand left it
    "cwd not UTF-8": lambda row: {**row, "job": json.dumps({**json.loads(row["job"]),
                                                             "cwd": "/srv/bad\udcffdir"})},
    "job not an object": lambda row: {**row, "job": "[]"},
    "command null": lambda row: {**row, "job": json.dumps({**json.loads(row["job"]),
                                                             "command": None})},
    "command a number": lambda row: {**row, "job": json.dumps({**json.loads(row["job"]),
                                                                 "command": 42})},
    "max_retries 1e400": lambda row: {**row, "job": row["job"][:-1] + ', "max_retries": 1e400}'},
    "priority a word": lambda row: {**row, "job": json.dumps({**json.loads(row["job"]),
                                                              "priority": "high"})},
    "queue not a name": lambda row: {**row, "job": json.dumps({**json.loads(row["job"]),
                                                               "queue": "bad name!/"})},
    "not JSON": lambda row: {**row, "job": "not json {"},
}  # fmt: skip


@pytest.mark.parametrize("poison", POISONED)
def test_a_schedule_whose_job_the_database_refuses_passes_its_time_and_the_others_fire(
    any_queue, clock, caplog, poison
):
    """A schedule whose job cannot be enqueued (stored by an older queuectl from a directory
    named in bytes that are not UTF-8, or changed by hand): it failed at every round, and
    (first in the loop) kept every other schedule from firing. Its time now passes, said once,
    and the others fire."""
    for name in ("a-bad", "b-good"):
        any_queue.add_schedule(name, "* * * * *", JobSpec(command="true"))
    Schedule = any_queue.models.Schedule
    row = POISONED[poison]({"job": Schedule.get(Schedule.name == "a-bad").job})
    Schedule.update(**row).where(Schedule.name == "a-bad").execute()
    clock.advance(61)
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        fired = any_queue.fire_due_schedules()
    assert [job.schedule for job in fired] == ["b-good"]
    assert caplog.text.count("schedule a-bad: its job cannot be enqueued") == 1
    assert any_queue.get_schedule("a-bad").next_due > clock()  # not tried again each round
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        assert any_queue.fire_due_schedules() == []
        clock.advance(60)
        assert sorted(job.schedule for job in any_queue.fire_due_schedules()) == ["b-good"]
    assert "a-bad" not in caplog.text  # said once, not at each of its times
    with pytest.raises(QueueError, match="schedule a-bad: its job cannot be enqueued"):
        any_queue.run_schedule("a-bad")  # `schedule run`, the TUI's `r`: one clear line


def test_many_schedules_due_at_once_fire_together_once_each_whoever_looks(target, clock, caplog):
    """QA: 400 schedules due at one time were fired a transaction each (the last 0.8 s late on
    PostgreSQL, later with more pools racing for each). They fire FIRED_TOGETHER to a
    transaction now, each still once whichever pool looks, a bad one passing alone."""
    import threading

    from queuectl.schedules import FIRED_TOGETHER

    clock.now = START
    pools = [Queue(target, clock=clock) for _ in range(2)]
    try:
        names = [f"s{n:03}" for n in range(2 * FIRED_TOGETHER + 50)]
        for name in names:
            pools[0].add_schedule(name, "* * * * *", JobSpec(command=f"echo {name}"))
        Schedule = pools[0].models.Schedule
        Schedule.update(job="[]").where(Schedule.name == "s120").execute()  # a bad one
        clock.advance(60)
        committed, fired = [], [[], []]

        def fire(pool: Queue, into: list) -> None:
            if pool.is_sqlite:  # (peewee's connection is the thread's)
                pool.db.connection().set_trace_callback(
                    lambda sql: committed.append(sql) if sql == "COMMIT" else None)
            into.extend(pool.fire_due_schedules())

        racing = [threading.Thread(target=fire, args=(pools[i], fired[i])) for i in range(2)]
        with caplog.at_level(logging.WARNING, logger="queuectl"):
            for thread in racing:
                thread.start()
            for thread in racing:
                thread.join(60)
        every = sorted(job.schedule for job in fired[0] + fired[1])
        assert every == [name for name in names if name != "s120"]
        assert caplog.text.count("schedule s120: its job cannot be enqueued") == 1
        assert all(info.next_due == START + 120 for info in pools[1].schedules())
        if pools[0].is_sqlite:  # each pool: its 3 chunks, and the bad one's pass (not 250)
            assert len(committed) <= 2 * (3 + 1), len(committed)
    finally:
        for pool in pools:
            pool.close()


def test_a_schedule_whose_zone_is_gone_is_paused_and_the_others_fire(any_queue, clock, caplog):
    """A zone a tzdata update removed: its next time cannot be told at all."""
    for name in ("a-gone", "b-good"):
        any_queue.add_schedule(name, "* * * * *", JobSpec(command="true"))
    Schedule = any_queue.models.Schedule
    Schedule.update(zone="US/Pacific-Gone").where(Schedule.name == "a-gone").execute()
    clock.advance(61)
    with caplog.at_level(logging.WARNING, logger="queuectl"):
        assert [job.schedule for job in any_queue.fire_due_schedules()] == ["b-good"]
    assert "schedule a-gone is paused: its next time cannot be told" in caplog.text
    assert any_queue.get_schedule("a-gone").paused


def test_a_schedule_whose_stored_job_is_unreadable_is_still_listed_and_can_go(any_queue):
    """QA: one schedule whose stored job was not a JSON object made `schedule list` (and the
    TUI's S) fail for every schedule: it could not be seen to be removed."""
    for name in ("a-bad", "b-good"):
        any_queue.add_schedule(name, "* * * * *", JobSpec(command="true"))
    Schedule = any_queue.models.Schedule
    for stored in ("[]", "null", "not json {"):
        Schedule.update(job=stored).where(Schedule.name == "a-bad").execute()
        assert [info.name for info in any_queue.schedules()] == ["a-bad", "b-good"]
        assert any_queue.get_schedule("a-bad").job == {}
        any_queue.pause_schedule("a-bad")
        any_queue.resume_schedule("a-bad")
    any_queue.remove_schedule("a-bad")
    assert [info.name for info in any_queue.schedules()] == ["b-good"]


def test_resuming_a_schedule_whose_cron_cannot_be_read_is_one_clear_error(any_queue):
    any_queue.add_schedule("garbled", "* * * * *", JobSpec(command="true"))
    any_queue.pause_schedule("garbled")
    Schedule = any_queue.models.Schedule
    Schedule.update(cron="garbage cron here x y").where(Schedule.name == "garbled").execute()
    with pytest.raises(QueueError, match="schedule garbled: its next time cannot be told"):
        any_queue.resume_schedule("garbled")
    assert any_queue.get_schedule("garbled").paused


class _Timed:
    """What ScheduleTimer asks of a queue: the time, the earliest due time, the firing."""

    def __init__(self, now: float, earliest: float | None) -> None:
        self.now, self.earliest, self.reads = now, earliest, 0

    def clock(self) -> float:
        return self.now

    def next_schedule_due(self) -> float | None:
        self.reads += 1
        return self.earliest

    def fire_due_schedules(self) -> list:
        self.earliest = None
        return ["fired"]


def test_a_schedule_added_just_after_a_read_fires_on_time():
    """QA: an enqueue (a change: the due time read again), then a schedule added 0.3 s later,
    due at the next second: its first job came 0.8 s late, the due time read again only a
    second after the last read. A change now has it read RECHECK_S after, and the service
    thread's round ends then."""
    from queuectl.schedules import RECHECK_S, UNWATCHED_RECHECK_S, ScheduleTimer

    timer, queue = ScheduleTimer(), _Timed(100.0, None)
    assert timer.tick(queue) == [] and queue.reads == 1
    assert timer.due_in(100.3) == float("inf")  # nothing changed: no reason to look
    queue.now, queue.earliest = 100.02, 101.0  # the enqueue's change, then the new schedule
    timer.changed()
    assert timer.due_in(queue.now) == pytest.approx(RECHECK_S - 0.02)
    queue.now = 100.0 + RECHECK_S
    assert timer.tick(queue) == [] and queue.reads == 2
    assert timer.due_in(queue.now) == pytest.approx(1.0 - RECHECK_S)
    queue.now = 101.0
    assert timer.tick(queue) == ["fired"]
    # A busy pool watches no changes: it reads again once UNWATCHED_RECHECK_S is up.
    timer.unwatched()
    assert timer.due_in(queue.now) == pytest.approx(UNWATCHED_RECHECK_S)


def test_a_stopping_pool_does_not_spin_on_a_schedule_it_no_longer_fires(db_path, monkeypatch):
    """A stopping pool fires no schedule, yet its service thread's rounds were as long as the
    time to the next due time (or to the next look after a change): once past, no time at
    all, and the thread spun on a core (0.91 of one) while the last job ran to its end."""
    from queuectl import WorkerPool

    rounds = []
    all_busy = WorkerPool._all_busy
    monkeypatch.setattr(WorkerPool, "_all_busy", lambda self: rounds.append(1) or all_busy(self))
    queue = Queue(db_path)
    queue.add_schedule("tick", "* * * * * *", JobSpec(command="true", cwd="/"))
    job = queue.enqueue(JobSpec(command="sleep 30", priority=9))
    pool = WorkerPool(queue, 1).start()
    try:
        wait_until(lambda: queue.get(job.id).state == "processing", 30, "the job to start")
        pool.stop()
        wait_until(lambda: queue.next_schedule_due() < queue.clock() - 1, 30, "a time to pass")
        before = len(rounds)
        time.sleep(1.0)  # (what is measured: the rounds of a second)
        assert len(rounds) - before < 50, "the service thread spun"
    finally:
        pool.kill()
        assert pool.join(30)
        queue.close()
