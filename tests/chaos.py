"""The chaos run (issue #18): real worker processes over a few thousand jobs while a driver kills,
stops and resumes them, cancels and retries jobs and takes the database away; then every
invariant is checked from an append-only ledger the jobs write and from the database.

    python -m tests.chaos [--backend sqlite|postgresql] [--jobs N] [--seconds S] [--seed X]

Minutes long and opt-in: not part of the pytest run (tests/reliability/test_chaos.py runs a
small one where QUEUECTL_CHAOS=1). Exit status 0 when every invariant held, 1 otherwise.

The workers: three processes. On SQLite, `queuectl worker start` on one file. On PostgreSQL,
three simulated hosts: each a worker process posing as its own host (tests/backends/
worker_host.py: the CLI has no option for the host name) with its own URL through its own
outage proxy (tests/backends/outage.py); the driver reaches the server directly.

The database going away: on PostgreSQL every proxy is taken down for a few seconds (every
connection cut, new ones refused). On SQLite the driver holds an exclusive lock on the file for a
few seconds (as a backup or a stuck writer would): every write waits (the workers' busy
timeout), reads go on.

The jobs (each appends a start and an end line to the ledger with O_APPEND, one write a line):
``ok``, ``sleep`` (0.1-0.6 s), ``flaky`` (its first run fails, later ones succeed), ``bad``
(always fails: dead after max_retries attempts); chains of 3 (each after the previous); a
queue ``narrow`` limited to 2; a schedule ``tick`` every 2 seconds; the four hooks append to a
hook ledger with their environment.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER_HOST = ROOT / "tests" / "backends" / "worker_host.py"
DEFAULT_PG_URL = "postgresql://queuectl:queuectl@127.0.0.1:5432/queuectl_test"
WORKERS = 3
THREADS = 4  # per worker process
LEASE_S = 10.0  # PostgreSQL's simulated hosts: silent this long, a worker is presumed gone
STOP_S = (2.0, 4.0)  # a SIGSTOP lasts this long (well within the lease: no rescue expected)
OUTAGE_S = 4.0
NARROW_LIMIT = 2
MAX_RETRIES = {"ok": 3, "sleep": 3, "flaky": 3, "bad": 2}
SETTLE_S = 240.0  # after the chaos, the jobs must all be final within this
CHAOS_EVERY_S = (1.5, 3.5)

JOB_SH = r"""#!/bin/sh
# $1 job id, $2 kind, $3 queue, $4 seconds to sleep
d='{dir}'
n=$(( $(cat "$d/runs/$1" 2>/dev/null || echo 0) + 1 ))
echo $n > "$d/runs/$1"
printf 'S %s %s %s %s %s %s\n' "$1" "$n" "$(date +%s.%N)" "$3" "$$" "$QUEUECTL_WORKER" >> "$d/ledger"
[ "$4" = 0 ] || sleep "$4"
rc=0
case $2 in
  bad) rc=1 ;;
  flaky) [ "$n" -le 1 ] && rc=3 ;;
esac
printf 'E %s %s %s %s %s %s\n' "$1" "$n" "$(date +%s.%N)" "$3" "$$" "$rc" >> "$d/ledger"
exit $rc
"""

HOOK_SH = r"""#!/bin/sh
printf 'H %s %s %s %s %s %s\n' "$QUEUECTL_JOB_ID" "$QUEUECTL_JOB_STATE" "$QUEUECTL_JOB_ATTEMPTS" \
  "${{QUEUECTL_EXIT_CODE:--}}" "$(date +%s.%N)" "$QUEUECTL_WORKER" >> '{dir}/hooks'
"""


# -- the plan ---------------------------------------------------------------------------------


@dataclass
class Planned:
    id: str
    kind: str
    queue: str = "default"
    nap: float = 0.0
    after: str | None = None
    chain: bool = False

    def spec(self, folder: Path):
        from queuectl import JobSpec

        return JobSpec(
            id=self.id,
            command=f"sh {folder}/job.sh {self.id} {self.kind} {self.queue} {self.nap:g}",
            max_retries=MAX_RETRIES[self.kind], queue=self.queue, cwd=str(folder),
            after=(self.after,) if self.after else None,
        )  # fmt: skip


def plan(count: int, rng: random.Random) -> list[Planned]:
    jobs: list[Planned] = []
    while len(jobs) < count:
        n = len(jobs)
        roll = rng.random()
        if roll < 0.10 and count - n >= 3:  # a chain of 3: never `bad` (a dead link blocks it)
            previous = None
            for _ in range(3):
                kind = rng.choice(["ok", "sleep", "flaky"])
                job = Planned(f"c{len(jobs):05d}", kind, nap=_nap(kind, rng), after=previous,
                              chain=True)  # fmt: skip
                jobs.append(job)
                previous = job.id
            continue
        if roll < 0.25:
            jobs.append(Planned(f"n{n:05d}", "sleep", queue="narrow", nap=rng.uniform(0.1, 0.4)))
            continue
        kind = rng.choices(["ok", "sleep", "flaky", "bad"], [50, 20, 15, 15])[0]
        jobs.append(Planned(f"j{n:05d}", kind, nap=_nap(kind, rng)))
    return jobs


def _batches(jobs: list[Planned], size: int) -> list[list[Planned]]:
    """``jobs`` in batches of about ``size``, a chain never split (its links are enqueued in
    one transaction: a link cancelled before the next is enqueued would refuse it)."""
    batches: list[list[Planned]] = [[]]
    for n, job in enumerate(jobs):
        batches[-1].append(job)
        follows = n + 1 < len(jobs) and jobs[n + 1].after == job.id
        if len(batches[-1]) >= size and not follows:
            batches.append([])
    return [batch for batch in batches if batch]


def _nap(kind: str, rng: random.Random) -> float:
    return round(rng.uniform(0.1, 0.6), 2) if kind == "sleep" else 0.0


# -- the workers ------------------------------------------------------------------------------


@dataclass
class Slot:
    """One of the three worker processes (restarted when killed)."""

    name: str
    url: str
    folder: Path
    backend: str
    process: subprocess.Popen | None = None
    stopped_until: float | None = None
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        log = open(self.folder / f"worker-{self.name}.log", "a")
        if self.backend == "sqlite":
            args = [sys.executable, "-m", "queuectl", "--db", self.url, "worker", "start",
                    "--count", str(THREADS)]  # fmt: skip
        else:
            args = [sys.executable, str(WORKER_HOST), self.url, f"host-{self.name}",
                    str(THREADS), str(LEASE_S)]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.folder, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pids.append(self.process.pid)
        self.restart_at = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def usable(self) -> bool:
        """Running and not stopped: may be killed or stopped."""
        return self.alive and self.stopped_until is None


# -- the driver -------------------------------------------------------------------------------


@dataclass
class Action:
    at: float
    kind: str  # kill, stop, cont, restart, outage, back, cancel, retry
    target: str
    ok: bool = True


class Chaos:
    def __init__(self, args: argparse.Namespace, folder: Path, url: str) -> None:
        self.args = args
        self.folder = folder
        self.url = url
        self.rng = random.Random(args.seed)
        self.actions: list[Action] = []
        self.outages: list = []
        self.slots: list[Slot] = []
        self.lock_thread: threading.Thread | None = None
        self.logging = threading.Lock()
        self.signals = threading.Lock()  # a SIGSTOP and its SIGCONT (from a timer), one at a time

    def log(self, kind: str, target: str, ok: bool = True) -> None:
        with self.logging:  # (from this loop, the outage's thread and the SIGCONT timers)
            action = Action(time.time(), kind, target, ok)
            self.actions.append(action)
            with open(self.folder / "actions", "a") as actions:
                actions.write(f"{action.at:.6f} {kind} {target} {ok}\n")

    def setup(self) -> None:
        from queuectl import JobSpec, Queue

        (self.folder / "runs").mkdir()
        (self.folder / "job.sh").write_text(JOB_SH.format(dir=self.folder))
        (self.folder / "hook.sh").write_text(HOOK_SH.format(dir=self.folder))
        self.queue = Queue(self.url)
        self.queue.config_set("backoff-base", 1)
        for state in ("completed", "failed", "dead", "cancelled"):
            self.queue.config_set(f"on-{state}", f"sh {self.folder}/hook.sh")
        self.queue.set_queue_limit("narrow", NARROW_LIMIT)
        for name in "abc"[:WORKERS]:
            url = self.url
            if self.args.backend == "postgresql":
                from tests.backends.outage import Outage

                proxy = Outage(self.url)
                self.outages.append(proxy)
                url = proxy.url
            self.slots.append(Slot(name, url, self.folder, self.args.backend))
        for slot in self.slots:
            slot.start()
        self.schedule_added = self.queue.add_schedule(
            "tick", "*/2 * * * * *",
            JobSpec(command=f"sh {self.folder}/job.sh tick ok default 0", max_retries=1,
                    cwd=str(self.folder)),
        ).next_due - 2  # the first due time is the first even second after it was added

    # -- the chaos period ---------------------------------------------------------------------

    def run(self) -> None:
        jobs = plan(self.args.jobs, self.rng)
        self.plan = {job.id: job for job in jobs}
        start = time.time()
        end = start + self.args.seconds
        count = max(1, int(self.args.seconds * 0.7 / 2))  # one batch every 2 s, 70% of the time
        chunks = _batches(jobs, -(-len(jobs) // count))
        batches = len(chunks)
        enqueue_at = [start + i * 2 for i in range(batches)]
        outages = [start + self.args.seconds * 0.3, start + self.args.seconds * 0.6]
        next_chaos = start + 3
        print(f"chaos: {self.args.backend}, {len(jobs)} jobs, {self.args.seconds:.0f} s, "
              f"seed {self.args.seed}, in {self.folder}", flush=True)  # fmt: skip
        batch = 0
        while True:
            now = time.time()
            self._tend(now, end)
            if batch < batches and now >= enqueue_at[batch]:
                self.queue.enqueue_many([job.spec(self.folder) for job in chunks[batch]])
                batch += 1
            if outages and now >= outages[0]:
                outages.pop(0)
                self._outage()
            if now >= end and batch >= batches:
                break
            if now >= next_chaos:
                next_chaos = now + self.rng.uniform(*CHAOS_EVERY_S)
                self._act()
            time.sleep(0.05)
        # The end of the chaos: every worker back and running, the schedule stopped.
        self.queue.remove_schedule("tick")
        self.schedule_removed = time.time()
        while any(s.stopped_until or not s.alive for s in self.slots) or self.lock_thread:
            self._tend(float("inf"), 0)
            time.sleep(0.05)

    def _tend(self, now: float, end: float) -> None:
        """Restart what is due to come back (a stopped worker goes on by its own timer)."""
        for slot in self.slots:
            if slot.restart_at is None and slot.process.poll() is not None:
                # It exited by itself: started while the database was away, a worker exits 1
                # (SPEC 2). As a service manager would (Restart=always), start it again.
                self.log("exited", f"{slot.name}:{slot.process.pid}:{slot.process.returncode}")
                slot.restart_at = time.time() + 1.0
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.start()
                self.log("restart", slot.name)
        if self.lock_thread is not None and not self.lock_thread.is_alive():
            self.lock_thread = None

    def _act(self) -> None:
        kind = self.rng.choices(["kill", "stop", "cancel", "retry"], [3, 2, 3, 2])[0]
        usable = [slot for slot in self.slots if slot.usable]
        if kind in ("kill", "stop") and len(usable) >= 2:
            # A worker running jobs, where there is one: its jobs are the ones at stake.
            Job = self.queue.models.Job
            busy = {int(w.split(":")[1]) for (w,) in Job.select(Job.worker).where(
                Job.state == "processing", Job.worker.is_null(False)).tuples()}  # fmt: skip
            slot = self.rng.choice([s for s in usable if s.process.pid in busy] or usable)
            if kind == "kill":
                slot.process.kill()
                slot.process.wait()
                slot.restart_at = time.time() + self.rng.uniform(0.5, 2.0)
                self.log("kill", f"{slot.name}:{slot.process.pid}")
            else:
                stopped_for = self.rng.uniform(*STOP_S)
                with self.signals:
                    os.kill(slot.process.pid, signal.SIGSTOP)
                    slot.stopped_until = time.time() + stopped_for
                    self.log("stop", f"{slot.name}:{slot.process.pid}")
                # Its own timer, not this loop: the driver's next write may wait for the write
                # lock that the stopped worker holds (SQLite), and would wait for good.
                cont = threading.Timer(stopped_for, self._cont, (slot, slot.process))
                cont.daemon = True
                cont.start()
        elif kind == "cancel":
            Job = self.queue.models.Job
            ids = [j for (j,) in Job.select(Job.id).where(
                Job.state.in_(["pending", "failed", "processing"]), Job.schedule.is_null()
            ).tuples()]  # fmt: skip
            for job_id in self.rng.sample(ids, min(3, len(ids))):
                self._try("cancel", job_id, self.queue.cancel)
        elif kind == "retry":
            Job = self.queue.models.Job
            ids = [j for (j,) in Job.select(Job.id).where(
                Job.state.in_(["dead", "cancelled", "completed"]), Job.schedule.is_null()
            ).tuples() if not self.plan[j].chain]  # fmt: skip
            for job_id in self.rng.sample(ids, min(3, len(ids))):
                self._try("retry", job_id, self.queue.retry)

    def _cont(self, slot: Slot, process: subprocess.Popen) -> None:
        with self.signals:
            if slot.process is process and slot.stopped_until is not None:
                os.kill(process.pid, signal.SIGCONT)
                slot.stopped_until = None
                self.log("cont", slot.name)

    def _try(self, kind: str, job_id: str, call) -> None:
        from queuectl import QueueError

        at = time.time()
        try:
            call([job_id])
            ok = True
        except QueueError:  # it finished (or left its state) meanwhile
            ok = False
        self.log(kind, job_id, ok)
        self.actions[-1].at = at

    def _outage(self) -> None:
        self.log("outage", self.args.backend)
        if self.outages:
            for proxy in self.outages:
                proxy.down()

            def back() -> None:
                time.sleep(OUTAGE_S)
                for proxy in self.outages:
                    proxy.up()
                self.log("back", "proxies")
        else:
            path = self.url

            def back() -> None:
                connection = sqlite3.connect(path, timeout=60, isolation_level=None)
                connection.execute("BEGIN EXCLUSIVE")
                time.sleep(OUTAGE_S)
                connection.execute("ROLLBACK")
                connection.close()
                self.log("back", "lock")

        self.lock_thread = threading.Thread(target=back, daemon=True)
        self.lock_thread.start()

    # -- the end ------------------------------------------------------------------------------

    def settle(self) -> bool:
        """Wait until every job is final (or pending behind a dead dependency) and every hook
        has run; whether it came to that in time."""
        Job = self.queue.models.Job
        deadline = time.time() + SETTLE_S

        def unsettled() -> int:
            return Job.select().where(
                Job.state.in_(["processing", "failed"])
                | ((Job.state == "pending") & (Job.waiting_on == 0))
            ).count()

        while unsettled() or self.queue.deliveries():
            if time.time() > deadline:
                print(f"NOT SETTLED: {unsettled()} jobs, {len(self.queue.deliveries())} hooks; "
                      f"{self.queue.counts()}", flush=True)  # fmt: skip
                return False
            time.sleep(0.5)
        time.sleep(1.0)  # the last hooks' lines
        return True

    def stop(self) -> None:
        for slot in self.slots:
            if slot.process is None:
                continue
            with self.signals:
                if slot.stopped_until is not None:
                    os.kill(slot.process.pid, signal.SIGCONT)
                    slot.stopped_until = None
            if slot.process.poll() is None:
                slot.process.terminate()
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                slot.process.wait(30)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
        for proxy in self.outages:
            proxy.close()


# -- the checks -------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of a job as the ledger saw it."""

    job: str
    n: int
    start: float
    queue: str
    worker_pid: int | None
    end: float | None = None
    rc: int | None = None


def read_ledger(path: Path) -> list[Run]:
    runs: dict[tuple[str, int, str], Run] = {}
    ordered: list[Run] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if parts[0] == "S" and len(parts) >= 6:
            worker = parts[6] if len(parts) > 6 else ""
            pid = int(worker.split(":")[1]) if worker.count(":") == 2 else None
            run = Run(parts[1], int(parts[2]), float(parts[3]), parts[4], pid)
            runs[(parts[1], int(parts[2]), parts[5])] = run
            ordered.append(run)
        elif parts[0] == "E" and len(parts) == 7:
            run = runs.get((parts[1], int(parts[2]), parts[5]))
            if run is not None:
                run.end, run.rc = float(parts[3]), int(parts[6])
    return ordered


class Report:
    def __init__(self) -> None:
        self.figures: dict[str, object] = {}
        self.violations: list[str] = []

    def bad(self, text: str) -> None:
        self.violations.append(text)


def check(chaos: Chaos, settled: bool) -> Report:
    queue, report = chaos.queue, Report()
    Job, Event = queue.models.Job, queue.models.Event
    jobs = {job.id: job for job in Job.select()}
    events: dict[str, list] = collections.defaultdict(list)
    for event in Event.select().order_by(Event.id):
        events[event.job_id].append(event)
    ledger = read_ledger(chaos.folder / "ledger")
    by_job: dict[str, list[Run]] = collections.defaultdict(list)
    for run in ledger:
        by_job[run.job].append(run)
    actions = chaos.actions
    kills = [(a.at, int(a.target.split(":")[1])) for a in actions if a.kind == "kill"]
    killed_at = {pid: at for at, pid in kills}
    cancelled_by_driver = {a.target for a in actions if a.kind == "cancel" and a.ok}
    after_of = {job.id: job.after for job in chaos.plan.values()}

    def killed_during(run: Run) -> bool:
        """Whether the run's worker was killed while the run was its own. The slack: a job
        spawned just before its worker's SIGKILL writes its first line just after it (the
        driver notes the kill once the worker is reaped)."""
        at = killed_at.get(run.worker_pid or -1)
        return at is not None and at >= run.start - 1.0

    # 1. Every job in the state its rules give.
    rescues = legit_reruns = duplicates = 0
    for job_id, planned in chaos.plan.items():
        job = jobs.get(job_id)
        if job is None:
            report.bad(f"{job_id}: not in the database")
            continue
        history = events[job_id]
        retried = [e.at for e in history if e.event == "retried"]
        since = retried[-1] if retried else float("-inf")
        segment = [e for e in history if e.at >= since and e.event != "retried"]
        rescues += sum(e.event == "rescued" or (e.event == "dead" and e.error == "worker lost")
                       for e in history)  # fmt: skip
        failures = [e for e in segment if e.event in ("failed", "rescued", "dead")]
        state = job.state
        if state == "cancelled":
            dependency = after_of[job_id]
            cascaded = dependency is not None and jobs[dependency].state == "cancelled"
            if job_id not in cancelled_by_driver and not cascaded:
                report.bad(f"{job_id}: cancelled, but nobody cancelled it or its dependency")
        elif state == "completed":
            if planned.kind == "bad":
                report.bad(f"{job_id}: an always-failing job is completed")
        elif state == "dead":
            if job.attempts != MAX_RETRIES[planned.kind] or len(failures) != job.attempts:
                report.bad(f"{job_id}: dead with attempts {job.attempts}, "
                           f"{len(failures)} failed runs, max_retries {MAX_RETRIES[planned.kind]}")
            genuine = [e for e in failures if e.error != "worker lost"]
            allowed = {"bad": job.attempts, "flaky": 1}.get(planned.kind, 0)
            if planned.kind != "bad" and len(genuine) > allowed:
                report.bad(f"{job_id} ({planned.kind}): dead from {len(genuine)} failures")
        elif state == "pending" and job.waiting_on:
            dependency = after_of[job_id]
            if dependency is None or jobs[dependency].state not in ("dead", "pending"):
                report.bad(f"{job_id}: pending behind {dependency} "
                           f"({jobs[dependency].state if dependency else '-'})")  # fmt: skip
        elif settled:
            report.bad(f"{job_id}: left {state}")
        # 2. A completed job completed once (a rerun after its worker was killed is a rescue).
        if state == "completed":
            successes = [r for r in by_job[job_id] if r.rc == 0 and r.start >= since - 0.05]
            extra = [r for r in successes[:-1] if killed_during(r)]
            legit_reruns += len(extra)
            if len(successes) - len(extra) != 1:
                duplicates += max(0, len(successes) - len(extra) - 1)
                report.bad(f"{job_id}: completed, with {len(successes)} successful runs "
                           f"since {since}: " + "; ".join(map(str, successes)))  # fmt: skip
        # The rules on the attempts: an always-failing job ran once an attempt.
        if planned.kind == "bad" and state == "dead" and not any(
            killed_during(r) for r in by_job[job_id]
        ):
            ran = [r for r in by_job[job_id] if r.start >= since - 0.05]
            if len(ran) != job.attempts:
                report.bad(f"{job_id}: dead with attempts {job.attempts} after {len(ran)} runs")

    # 3. No queue over its limit: the ledger's runs of `narrow`, each until its end line, or
    # until the database ended its run (killed, cancelled), whichever came first.
    points = []
    for run in ledger:
        if run.queue != "narrow":
            continue
        ends = [run.end] if run.end is not None else []
        later = [e.at for e in events[run.job] if e.at >= run.start and e.event != "started"]
        ends += later[:1]
        if not ends:
            report.bad(f"{run.job}: a run of {run.start} never ended")
            continue
        points += [(run.start, 1), (min(ends), -1)]
    most = level = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):
        level += step
        most = max(most, level)
    if most > NARROW_LIMIT:
        report.bad(f"queue narrow: {most} runs at once (limit {NARROW_LIMIT})")

    # 4. No job ran before its dependency completed.
    for job_id, dependency in after_of.items():
        if dependency is None:
            continue
        done = [e.at for e in events[dependency] if e.event == "completed"]
        for run in by_job[job_id]:
            if not done or run.start < done[0]:
                report.bad(f"{job_id}: ran at {run.start} before {dependency} completed "
                           f"({done[:1]})")  # fmt: skip

    # 5. Each schedule time fired once; a run of missed ones only where nothing could fire.
    fired = sorted(job.created_at for job in jobs.values() if job.schedule == "tick")
    first = int(chaos.schedule_added) + 2
    due = list(range(first, int(chaos.schedule_removed) + 1, 2))
    disrupted = []
    for a in actions:
        if a.kind in ("kill", "stop", "outage", "exited"):
            until = next((b.at for b in actions if b.at > a.at and b.kind in
                          {"kill": ("restart",), "exited": ("restart",), "stop": ("cont",),
                           "outage": ("back",)}[a.kind]
                          and (a.kind == "outage" or b.target == a.target.split(":")[0])),
                         float("inf"))  # fmt: skip
            disrupted.append((a.at, until + 3.0))  # a restarted worker takes a moment to start
    twice = caught_up = lost = 0
    previous = chaos.schedule_added
    for at in fired:
        covered = [t for t in due if previous < t <= at]
        if not covered:
            twice += 1
            report.bad(f"schedule: fired at {at} with no due time since {previous}")
        elif len(covered) > 1:
            if any(start <= at and stop >= covered[0] for start, stop in disrupted):
                caught_up += len(covered) - 1
            else:
                lost += len(covered) - 1
                report.bad(f"schedule: times {covered} fired once, at {at}, with workers up")
        previous = at
    pending_times = [t for t in due if t > previous]
    if len(pending_times) > 1:
        lost += len(pending_times) - 1
        report.bad(f"schedule: times {pending_times} never fired")

    # 6. Every change to completed/failed/dead/cancelled ran its hook once (again only where
    # the worker running it was killed).
    hook_lines = collections.defaultdict(list)
    hooks_path = chaos.folder / "hooks"
    for line in hooks_path.read_text().splitlines() if hooks_path.exists() else []:
        parts = line.split()
        if len(parts) == 7:
            hook_lines[(parts[1], parts[2])].append((float(parts[5]), parts[6]))
    expected_hooks = collections.Counter()
    for job_id, history in events.items():
        for e in history:
            if e.event in ("completed", "failed", "dead", "cancelled", "rescued"):
                state = "failed" if e.event == "rescued" else e.event
                expected_hooks[(job_id, state)] += 1
    hook_reruns = missing_hooks = duplicate_hooks = 0
    for key in set(expected_hooks) | set(hook_lines):
        want, got = expected_hooks[key], hook_lines[key]
        if len(got) < want:
            missing_hooks += want - len(got)
            report.bad(f"hook: {key} ran {len(got)} times for {want} changes")
        elif len(got) > want:
            spare = len(got) - want
            rerun = sum(1 for at, worker in got
                        if worker.count(":") == 2
                        and killed_at.get(int(worker.split(":")[1]), -1) >= at - 0.5)  # fmt: skip
            hook_reruns += min(spare, rerun)
            if spare > rerun:
                duplicate_hooks += spare - rerun
                report.bad(f"hook: {key} ran {len(got)} times for {want} changes: {got}")

    count = collections.Counter(a.kind for a in actions)
    cancels = [a for a in actions if a.kind == "cancel"]
    retries = [a for a in actions if a.kind == "retry"]
    report.figures = {
        "backend": chaos.args.backend,
        "jobs": len(chaos.plan),
        "runs (ledger)": len(ledger),
        "runs (database)": sum(e.event == "started" or e.started_at is not None
                               for h in events.values() for e in h),  # fmt: skip
        "kills": count["kill"],
        "stops": count["stop"],
        "outages": count["outage"],
        "exits (restarted during an outage)": count["exited"],
        "rescues (worker lost)": rescues,
        "reruns after a kill": legit_reruns,
        "cancels (done/asked)": f"{sum(a.ok for a in cancels)}/{len(cancels)}",
        "retries (done/asked)": f"{sum(a.ok for a in retries)}/{len(retries)}",
        "duplicates": duplicates,
        "limit max observed": f"{most} (limit {NARROW_LIMIT})",
        "schedule times fired/expected": f"{len(fired)}/{len(due)} (caught up {caught_up}, "
        f"fired twice {twice}, lost {lost})",
        "hooks ran/changes": f"{sum(len(v) for v in hook_lines.values())}/"
        f"{sum(expected_hooks.values())} (reruns after a kill {hook_reruns}, missing "
        f"{missing_hooks}, duplicates {duplicate_hooks})",
        "final states": dict(collections.Counter(j.state for j in jobs.values())),
        "settled": settled,
        "violations": len(report.violations),
    }
    return report


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=None,
                        help="how long the chaos lasts (default: 30 + jobs/20)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (ledgers, logs)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or 30 + args.jobs / 20
    args.seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    folder = Path(tempfile.mkdtemp(prefix="queuectl-chaos-"))
    schema = None
    if args.backend == "sqlite":
        url = str(folder / "queue.db")
    else:
        import psycopg

        base = os.environ.get("QUEUECTL_TEST_PG_URL", DEFAULT_PG_URL)
        schema = f"chaos_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{base}?options=-csearch_path%3D{schema}"
    chaos = Chaos(args, folder, url)
    try:
        chaos.setup()
        chaos.run()
        settled = chaos.settle()
        chaos.stop()
        report = check(chaos, settled)
    finally:
        chaos.stop()
        if schema is not None:
            chaos.queue.close()
            with psycopg.connect(base, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    width = max(map(len, report.figures))
    for key, value in report.figures.items():
        print(f"{key:<{width}}  {value}")
    for line in report.violations[:50]:
        print("VIOLATION:", line)
    if report.violations or not args.keep:
        print(f"ledgers and worker logs: {folder}" if report.violations or args.keep else "")
    if not report.violations and not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
