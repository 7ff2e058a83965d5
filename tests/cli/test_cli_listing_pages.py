"""`list` and `dlq list` print their tables as they read the jobs, a page at a time (QA: `list`
of a million jobs held 2.4 GB and printed its first line after 69 s, also to `| head -2`)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue
from queuectl.cli import cli, common
from queuectl.workflows import Workflows


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "q.db")
    queue = Queue(path)
    queue.enqueue_many([JobSpec(command=f"echo {n}", id=f"j{n:04d}") for n in range(2500)])
    queue.enqueue(JobSpec(command="true", id="a-much-longer-id-than-the-rest", queue="alpha"))
    queue.close()
    return path


def test_a_reader_that_stops_early_stops_the_reading(db, monkeypatch):
    read: list[int] = []
    list_jobs = Workflows.list_jobs

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        jobs = list_jobs(self, *args, **kwargs)
        read.append(len(jobs))
        return jobs

    monkeypatch.setattr(Workflows, "list_jobs", counted)
    monkeypatch.setattr(common, "TABLE_PAGE", 1000)
    from queuectl.cli import jobs as jobs_cli

    monkeypatch.setattr(jobs_cli, "TABLE_PAGE", 1000)
    lines: list[str] = []

    def echo(text: str = "", **kwargs) -> None:  # noqa: ANN003
        lines.append(text)
        if len(lines) == 3:  # `| head -3`: the reader is gone
            raise BrokenPipeError

    monkeypatch.setattr(common, "echo", echo)
    result = CliRunner().invoke(cli, ["--db", db, "list"])
    assert lines[0].split() == ["ID", "STATE", "QUEUE", "ATTEMPTS", "PRI", "WHEN", "COMMAND"]
    assert lines[1].split()[:3] == ["a-much-longer-id-than-the-rest", "pending", "alpha"]
    assert sum(read) == common.TABLE_PAGE, "one page read, not the 2,501 jobs"
    assert result.exit_code == 1  # (click: a reader that closed the pipe, as `| head` does)


def test_the_pages_after_the_first_keep_its_columns(tmp_path, monkeypatch):
    """QA: past the first page, STATE widened (its first page all `pending`, then `completed`)
    and every column after it moved right. Where a listing fills more than a page, the widths
    that the states and queues listed need are known from the start (the counters)."""
    from queuectl.cli import jobs as jobs_cli
    from queuectl.executor import RunResult

    for module in (common, jobs_cli):
        monkeypatch.setattr(module, "TABLE_PAGE", 3)
    path = str(tmp_path / "q.db")
    queue = Queue(path)
    queue.enqueue_many([JobSpec(command="true", queue="a-long-queue-name")] * 4)
    worker = queue.register_worker(1)
    while (job := queue.claim(worker)) is not None:
        queue.finish(job, RunResult(0, None, ""), worker)
    queue.enqueue_many([JobSpec(command="true")] * 4)  # ("due now": shorter than what comes)
    queue.close()
    result = CliRunner().invoke(cli, ["--db", path, "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 + 8
    for column, header in ((3, "ATTEMPTS"), (-1, "COMMAND")):  # every row's columns in place
        at = lines[0].index(header)
        assert all(line[at - 1] == " " and line[at:].split()[0] == line.split()[column]
                   for line in lines[1:]), lines  # fmt: skip
    assert [line.split()[1] for line in lines[1:]] == ["pending"] * 4 + ["completed"] * 4


def test_a_listing_of_one_page_shows_queue_only_for_a_named_queue_among_its_rows(db):
    """QA: the QUEUE column came for a named queue's jobs that the listing did not show."""
    with_alpha = CliRunner().invoke(cli, ["--db", db, "list", "--limit", "1"])
    assert with_alpha.output.split()[2] == "QUEUE"  # (the newest job is alpha's)
    queue = Queue(db)
    queue.enqueue(JobSpec(command="true", id="newest"))
    queue.close()
    newest = CliRunner().invoke(cli, ["--db", db, "list", "--limit", "1"])
    assert newest.output.splitlines()[0].split() == ["ID", "STATE", "ATTEMPTS", "PRI", "WHEN",
                                                     "COMMAND"]  # fmt: skip


def test_every_job_is_listed_once_the_columns_as_wide_as_their_page_needs(db, monkeypatch):
    monkeypatch.setattr(common, "TABLE_PAGE", 2)
    from queuectl.cli import jobs as jobs_cli

    monkeypatch.setattr(jobs_cli, "TABLE_PAGE", 2)
    result = CliRunner().invoke(cli, ["--db", db, "list"])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["a-much-longer-id-than-the-rest"] + [
        f"j{n:04d}" for n in reversed(range(2500))
    ]
    # The QUEUE column is there from the first line (the counters know of "alpha"), and each
    # row is aligned with the widest id so far: this one's.
    assert all(row.split()[2] == "default" for row in rows[1:])
    assert len({row.index("default") for row in rows[1:]}) == 1


def test_the_dlq_is_listed_as_it_is_read_too(tmp_path):
    path = str(tmp_path / "q.db")
    queue = Queue(path)
    jobs = queue.enqueue_many([JobSpec(command="exit 3", max_retries=0)] * 1500)
    worker = queue.register_worker(1)
    from queuectl.executor import RunResult

    while (job := queue.claim(worker)) is not None:
        queue.finish(job, RunResult(3, "exit code 3", "out\n"), worker)
    queue.close()
    shown = CliRunner().invoke(cli, ["--db", path, "dlq", "list"])
    assert shown.exit_code == 0
    assert len(shown.output.splitlines()) == 1 + 1500
    as_json = CliRunner().invoke(cli, ["--db", path, "dlq", "list", "--json", "--limit", "1200"])
    import json

    listed = json.loads(as_json.output)
    assert len(listed) == 1200 and listed[0]["id"] == jobs[-1].id
    assert listed[0]["output"] == "out\n"
