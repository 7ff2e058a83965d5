"""`worker start`'s event lines (one a job event on stderr), as a user reads them."""

from __future__ import annotations

import re

from queuectl.cli.worker import EventLog
from queuectl.models import Job
from queuectl.worker import JobEvent, Released

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _job(**fields: object) -> Job:
    job = Job(id="a0jfv9e4308e", command="echo hi", state="processing", attempts=1)
    for name, value in fields.items():
        setattr(job, name, value)
    return job


def _lines(capsys, *events: JobEvent) -> list[str]:
    log = EventLog()
    for event in events:
        log(event)
    return capsys.readouterr().err.splitlines()


def test_a_job_s_start_and_completion_lines(capsys):
    started = _job(started_at=100.0)
    done = _job(state="completed", started_at=100.0, finished_at=104.25, exit_code=0)
    lines = _lines(capsys, JobEvent("started", started, "worker-1"),
                   JobEvent("completed", done, "worker-2"))  # fmt: skip
    assert len(lines) == 2
    assert re.fullmatch(f"{STAMP} worker-1 started a0jfv9e4308e echo hi", lines[0])
    assert re.fullmatch(f"{STAMP} worker-2 completed a0jfv9e4308e exit 0 in 4.2s", lines[1])


def test_a_completion_without_its_times_has_no_duration(capsys):
    done = _job(state="completed", started_at=None, finished_at=104.0, exit_code=0)
    (line,) = _lines(capsys, JobEvent("completed", done, "worker-1"))
    assert line.endswith(" worker-1 completed a0jfv9e4308e exit 0")


def test_job_text_is_shown_on_one_line(capsys):
    job = _job(command="echo one\necho\ttwo")
    (line,) = _lines(capsys, JobEvent("started", job, "worker-1"))
    assert line.endswith(" started a0jfv9e4308e echo one\\necho\\ttwo")


def test_a_very_long_command_is_cut_in_its_log_line(capsys):
    """A 300,000-character command was logged whole, as one line as long."""
    job = _job(command="echo " + "x" * 300_000)
    (line,) = _lines(capsys, JobEvent("started", job, "worker-1"))
    assert line.endswith(" started a0jfv9e4308e echo " + "x" * 495 + "… (299,505 characters more)")
    assert len(line) < 600


def test_other_events_keep_their_lines(capsys):
    failed = _job(state="dead", error="exit code 3", exit_code=3, started_at=1.0, finished_at=2.0)
    released = _job(state="pending")
    lines = _lines(capsys, JobEvent("dead", failed, "worker-1"),
                   Released(released, "worker-1", "stop"),
                   Released(released, "worker-1", "outage"),
                   Released(released, "worker-1", "suspended"))  # fmt: skip
    assert lines[0].endswith(" dead a0jfv9e4308e exit code 3 in 1.0s, attempt 1: moved to the DLQ")
    assert lines[1].endswith(
        " released a0jfv9e4308e killed by stop: back to pending, attempt not counted"
    )
    # The fence's kill (PostgreSQL, see WorkerPool._fence) is not a stop: QA read "by stop".
    assert lines[2].endswith(" released a0jfv9e4308e killed while the database did not answer: "
                             "back to pending, attempt not counted")
    # A process that stood still past the fence's point: the database answered all along.
    assert lines[3].endswith(" released a0jfv9e4308e killed as this process had not run: "
                             "back to pending, attempt not counted")


def test_the_worker_s_first_line_comes_before_any_job_s(tmp_path, monkeypatch):
    """QA: a `--burst` worker once said its first job's start before the line saying it runs:
    the threads started before that line was written. However slow the main thread is to write
    it (made slow here), it comes first."""
    import time

    from click.testing import CliRunner

    from queuectl.cli import cli

    import queuectl.db

    db = str(tmp_path / "q.db")
    assert CliRunner().invoke(cli, ["--db", db, "enqueue", "true"]).exit_code == 0
    redact = queuectl.db.redact

    def slow_redact(target: str) -> str:  # (the first line's, only)
        time.sleep(0.3)  # a job's start is said meanwhile, unless no thread has started yet
        return redact(target)

    monkeypatch.setattr(queuectl.db, "redact", slow_redact)
    result = CliRunner().invoke(cli, ["--db", db, "worker", "start", "--burst"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert " main worker " in lines[0] and " running 1 thread(s) (burst) on " in lines[0], lines
    assert " started " in lines[1], lines
