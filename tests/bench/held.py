"""Claims with a held queue's backlog first in claim order (a paused queue, a full limited one).

In-process, one thread, no job run: 20,000 jobs of queue "held" enqueued first at a higher
priority, then held (paused, or limited to 1 with one of its jobs claimed), then 2,000 jobs in
3 (and 300) other queues, claimed and completed by Queue.claim and Queue.finish_and_claim until
none is left; jobs/s against the same 2,000 jobs with one job held the same way (what the hold
itself costs), in the same run, each on a new database. A claim used to pass over the held backlog entry by entry: 20,000 paused jobs made the
others' claims ~20 times slower on SQLite, and a full limit-1 queue ~40 times on PostgreSQL.
"""

from __future__ import annotations

import time

from .harness import Figure, Report, Settings, Target, fresh_sqlite, pg_schema

BACKLOG = 20_000
JOBS = 2_000
HOLDS = ("none", "paused", "full limit 1")


def rate(target: str, hold: str, queues: int, backlog: int = BACKLOG, jobs: int = JOBS) -> float:
    """Jobs/s of the other queues' claims and completions with ``hold`` on the backlog."""
    from queuectl import JobSpec, Queue
    from queuectl.executor import RunResult

    q = Queue(target)
    try:
        if hold != "none":
            q.enqueue_many([JobSpec("true", queue="held", priority=5) for _ in range(backlog)])
            if hold == "paused":
                q.pause_queue("held")
            else:
                q.set_queue_limit("held", 1)
                q.claim("other-worker", ("held",))
        q.enqueue_many([JobSpec("true", queue=f"q{n % queues}") for n in range(jobs)])
        if not q.is_sqlite:
            q.db.execute_sql('ANALYZE "job"')  # as autovacuum would have, soon after
        ok = RunResult(0, None, "")
        done = 0
        start = time.perf_counter()
        job = q.claim("w")
        while job is not None:
            assert job.queue != "held", "a held queue's job was claimed"
            done += 1
            _, job = q.finish_and_claim(job, ok, "w")
        elapsed = time.perf_counter() - start
        assert done == jobs, f"{done} of {jobs} claimed"
        return done / elapsed
    finally:
        q.close()


def run(settings: Settings, report: Report) -> None:
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if settings.pg_url is not None:
        backends.append(("postgresql", settings.pg_url))
    else:
        report.note("PostgreSQL unreachable: its held-queue claims are skipped")
    jobs = 500 if settings.quick else JOBS
    backlog = 5_000 if settings.quick else BACKLOG
    for name, url in backends:
        for queues in (3, 300):
            # Each hold with one job held (its baseline: what the hold itself costs the claims)
            # and with the backlog, interleaved, each on a new database.
            samples: dict[tuple[str, int], list[float]] = {}
            for _ in range(settings.reps(3)):
                for hold in HOLDS[1:]:
                    for held in (1, backlog):
                        if url is None:
                            target = fresh_sqlite(settings, "held")
                            got = rate(target, hold, queues, held, jobs)
                        else:
                            with pg_schema(url) as target:
                                got = rate(target, hold, queues, held, jobs)
                        samples.setdefault((hold, held), []).append(got)
            for hold in HOLDS[1:]:
                report.add(Figure(
                    f"#17 {name}: claims of {queues} other queues, {backlog:,} jobs {hold} "
                    "first in claim order", "jobs/s", samples[(hold, backlog)],
                    baseline_name="1 job held", baseline=samples[(hold, 1)],
                    # (Before schema 20: 0.05x with 3 queues, the backlog passed over at each claim.)
                    targets=[Target(">= 0.7x" if queues == 3 else ">= 0.2x",
                                    at_least=0.7 if queues == 3 else 0.2)],
                ))  # fmt: skip
