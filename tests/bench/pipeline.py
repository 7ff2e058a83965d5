"""Issue #15: a pipeline of jobs in chains (each after the one before it) beside as many
independent jobs, on one idle `worker start --count 2` process: the chains cost the claim
nothing while they wait, so the pipeline keeps >= 80 % of the independent jobs' throughput."""

from __future__ import annotations

import time

from .harness import Children, Figure, Report, Settings, Target, fresh_sqlite, queuectl_command

CHAIN = 10


def specs(n: int, chained: bool) -> list:
    from queuectl import JobSpec

    if not chained:
        return [JobSpec(command="true") for _ in range(n)]
    jobs = []
    for index in range(n):
        job_id = f"p{index:07d}"
        after = (f"p{index - 1:07d}",) if index % CHAIN else None
        jobs.append(JobSpec(command="true", id=job_id, after=after))
    return jobs


def jobs_per_second(target: str, n: int, chained: bool) -> float:
    from queuectl import Queue

    queue = Queue(target)
    try:
        with Children() as children:
            children.start([*queuectl_command(), "--db", target, "worker", "start", "--count", "2"])
            children.wait_until(lambda: len(queue.live_workers()) >= 1, 60,
                                "the worker to register")
            time.sleep(0.3)
            queue.enqueue_many(specs(n, chained))
            enqueued = time.time()
            children.wait_until(lambda: queue.counts()["completed"] >= n, max(60, n / 20),
                                f"{n} jobs to complete", interval=0.1)  # fmt: skip
            last = queue.db.execute_sql('SELECT MAX("finished_at") FROM "job"').fetchone()[0]
            return n / (last - enqueued)
    finally:
        queue.close()


def run(settings: Settings, report: Report) -> None:
    n = 2000 if settings.quick else 10_000
    reps = settings.reps(2)
    plain, chained = [], []
    for _ in range(reps):
        plain.append(jobs_per_second(fresh_sqlite(settings, "independent"), n, chained=False))
        chained.append(jobs_per_second(fresh_sqlite(settings, "pipeline"), n, chained=True))
    report.add(Figure(f"#15 pipeline: {n} jobs in chains of {CHAIN}", "jobs/s", chained,
                      f"{n} independent jobs", plain, [Target(">= 0.80x", at_least=0.80)]))  # fmt: skip
