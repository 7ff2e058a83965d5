"""The read side of the queue: counts, listings, the TUI's panes, the job as scripts see it."""

from __future__ import annotations

from datetime import datetime

import pytest

from queuectl import InvalidInput, JobSpec
from queuectl.executor import RunResult

SPEC_FIELDS = [
    "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
    "created_at", "updated_at", "started_at", "finished_at", "exit_code", "error", "output",
    "worker", "cwd", "queue", "after", "schedule",
]


@pytest.fixture
def q(any_queue):
    """These rules hold on both backends: every test here runs on SQLite and on PostgreSQL."""
    return any_queue


def finish(q, wid, clock, result):
    job = q.claim(wid)
    clock.advance(1)
    return q.finish(job, result, wid)


def test_counts_list_and_panes(q, clock):
    wid = q.register_worker(1)
    for name in ("a", "b", "c", "d", "e"):
        q.enqueue(JobSpec(command=f"echo {name}", id=name, max_retries=1))
        clock.advance(1)
    finish(q, wid, clock, RunResult(0, None, "out-a"))  # a completed
    finish(q, wid, clock, RunResult(1, "exit code 1", ""))  # b dead
    finish(q, wid, clock, RunResult(0, None, "out-c"))  # c completed, after a
    q.claim(wid)  # d processing
    q.enqueue(JobSpec(command="x", id="urgent", priority=9, delay=100))

    assert q.counts() == {"pending": 2, "processing": 1, "completed": 2, "failed": 0, "dead": 1, "cancelled": 0}
    assert [j.id for j in q.list_jobs()] == ["urgent", "e", "d", "c", "b", "a"]
    assert [j.id for j in q.list_jobs(state="COMPLETED")] == ["c", "a"]
    assert [j.id for j in q.list_jobs(limit=2)] == ["urgent", "e"]
    assert q.list_jobs(state="completed")[0].output == "out-c"
    assert q.list_jobs(state="completed", with_output=False)[0].output is None
    with pytest.raises(InvalidInput, match="pending, processing, completed, failed, dead"):
        q.list_jobs(state="running")

    assert [j.id for j in q.pane("waiting", 10)] == ["urgent", "e"]
    assert [j.id for j in q.pane("processing", 10)] == ["d"]
    assert [j.id for j in q.pane("completed", 10)] == ["c", "a"]
    assert [j.id for j in q.pane("completed", 1)] == ["c"]
    assert [j.id for j in q.pane("dead", 10)] == ["b"]
    assert q.pane("completed", 10)[0].output is None, "panes leave the output out"
    with pytest.raises(ValueError):
        q.pane("nope", 1)


def test_a_listing_read_a_page_at_a_time_is_the_listing(q, clock):
    """`list --json` reads its jobs a page at a time (QA: 200,000 jobs held 850 MB before the
    first was printed): the same jobs, in the same order, whatever the page and the limit."""
    ids = [q.enqueue(JobSpec(command=f"echo {n}", queue="odd" if n % 2 else "default",
                             after=[f"j{n - 1}"] if n else [], id=f"j{n}")).id
           for n in range(11)]  # fmt: skip
    assert [j.id for j in q.each_job(page=3)] == ids[::-1]
    for limit in (0, 1, 3, 4, 7, 11, 12, 2**63):
        for page in (1, 3, 11, 500):
            paged = list(q.each_job(limit=limit, page=page))
            assert [j.to_dict() for j in paged] == [j.to_dict() for j in q.list_jobs(limit=limit)]
    assert [j.id for j in q.each_job(queue="odd", limit=4, page=3)] == ["j9", "j7", "j5", "j3"]
    assert [j.after_ids for j in q.each_job(limit=2, page=1)] == [("j9",), ("j8",)]


def test_a_panes_last_rows_are_the_end_of_its_order(q, clock):
    """The TUI's `G` loads a pane's last rows: the same order, read from the other end of the
    same index (waiting: the ready jobs in claim order, then those waiting for a dependency)."""
    wid = q.register_worker(2)
    for n in range(6):
        q.enqueue(JobSpec(command=f"echo {n}", id=f"run{n}", max_retries=0))
        clock.advance(1)
    for n in range(6):
        finish(q, wid, clock, RunResult(0 if n % 2 else 1, None if n % 2 else "exit 1", ""))
    for n in range(3):
        q.enqueue(JobSpec(command="sleep 9", id=f"busy{n}"))
        assert q.claim(wid).id == f"busy{n}"
        clock.advance(1)
    blocker = q.enqueue(JobSpec(command="x", id="blocker", delay=999))
    for n, priority in enumerate((0, 5, 0, 9, 1)):
        q.enqueue(JobSpec(command="x", id=f"wait{n}", priority=priority, delay=n))
    q.enqueue(JobSpec(command="x", id="blocked1", after=[blocker.id]))
    q.enqueue(JobSpec(command="x", id="blocked2", after=[blocker.id]))
    for pane in ("waiting", "processing", "completed", "dead"):
        every = [job.id for job in q.pane(pane, 100)]
        assert len(every) >= 3, pane
        for limit in (1, 2, len(every) - 1, len(every), 100):
            assert [job.id for job in q.pane(pane, limit, last=True)] == every[-limit:], (
                pane, limit)
    assert [job.id for job in q.pane("waiting", 3, last=True)] == ["blocker", "blocked1", "blocked2"]


def test_job_as_scripts_see_it(q, clock):
    job = q.enqueue(JobSpec(command="echo hi", id="one", priority=2, timeout=5.5))
    data = q.get("one").to_dict()
    assert list(data) == SPEC_FIELDS
    assert data["max_retries"] is None and data["timeout"] == 5.5
    created = datetime.fromisoformat(data["created_at"])
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert created.timestamp() == pytest.approx(clock.now)
    assert data["started_at"] is None
    assert data["cwd"] == job.cwd


def test_finished_per_second_over_the_last_minute(q, clock):
    """The TUI's throughput chart: completed and dead jobs by the second they finished."""
    wid = q.register_worker(1)
    clock.now = 2_000_000_000.5
    for result in (RunResult(0, None, ""), RunResult(1, "exit code 1", "")):
        q.enqueue(JobSpec(command="x", max_retries=1))
        finish(q, wid, clock, result)  # 1 s each: at ...01.5 (completed), ...02.5 (dead)
    q.enqueue(JobSpec(command="retried later", max_retries=5))
    finish(q, wid, clock, RunResult(1, "exit code 1", ""))  # failed, not finished for good
    clock.advance(10)
    per_second = q.finished_per_second(60)
    assert len(per_second) == 60
    assert sum(per_second) == 2
    assert per_second[-13:-10] == [1, 1, 0]  # seconds ...01, ...02, ...03; now is ...13
    clock.advance(60)
    assert q.finished_per_second(60) == [0] * 60
