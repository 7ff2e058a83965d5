"""Seeded queues for the TUI's tests, snapshots and screenshots: fixed ids, a fixed clock.

Jobs are put in each state through the Queue's own lifecycle (enqueue, claim, finish), with the
clock moved by hand, so every time shown on screen is the same on every run.
"""

from __future__ import annotations

from queuectl.executor import RunResult
from queuectl.queue import Queue
from queuectl.spec import JobSpec

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SOMEONE = "buildbox:4242:beef"
CWD = "/srv/app"  # every seeded job's directory, whatever the tests run from  # a worker process of another machine, for processing jobs


class FixedClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _run(queue: Queue, clock: FixedClock, spec: JobSpec, at: float, took: float, result: RunResult):
    clock.now = at
    queue.enqueue(spec)
    job = queue.claim(SOMEONE)
    assert job is not None and job.id == spec.id, "seed jobs are claimed one by one"
    clock.now = at + took
    return queue.finish(job, result, SOMEONE)


def ok(output: str = "") -> RunResult:
    return RunResult(exit_code=0, error=None, output=output)


def failed(code: int, output: str = "") -> RunResult:
    return RunResult(exit_code=code, error=f"exit code {code}", output=output)


def seed(queue: Queue, clock: FixedClock) -> None:
    """A queue with jobs in every pane, as at ``T0``."""
    done = [
        ("build-web", "npm run build --prefix web", 240, 38.2, "built 214 modules\n"),
        ("backup-db", "pg_dump shop | gzip > /backups/shop.sql.gz", 420, 71.5, ""),
        ("thumbs-17", "convert in/17.png -resize 256x256 out/17.png", 95, 0.42, ""),
        ("mail-digest", "python -m mailer --digest daily", 1500, 3.1, "sent 1,204 mails\n"),
        ("report-q3", "Rscript reports/q3.R --out reports/q3.pdf", 7300, 185.0, "ok\n"),
    ]
    for job_id, command, ago, took, output in done:
        _run(queue, clock, JobSpec(command, id=job_id, cwd=CWD), T0 - ago - took, took, ok(output))
    dead = [
        ("deploy-prod", "./deploy.sh production", 600, failed(1, "error: host unreachable\n"), 1),
        ("sync-s3", "aws s3 sync ./dist s3://bucket", 3000, failed(2, "fatal: bad creds\n"), 1),
    ]
    for job_id, command, ago, result, retries in dead:
        _run(queue, clock, JobSpec(command, id=job_id, max_retries=retries, cwd=CWD), T0 - ago, 2.0, result)
    # A flaky job: failed once, waiting to be retried in a while.
    _run(
        queue, clock, JobSpec("curl -fsS https://api.example.com/health", id="health-chk",
                              max_retries=5, cwd=CWD),
        T0 - 2, 1.0, failed(22, "curl: (22) The requested URL returned error: 503\n"),
    )  # fmt: skip
    # Jobs a worker of another machine is running now.
    for job_id, command, started in (
        ("train-model", "python train.py --epochs 40 --lr 3e-4", 754.0),
        ("encode-4k", "ffmpeg -i raw/talk.mov -c:v libx265 talk.mp4", 12.3),
    ):
        clock.now = T0 - started
        queue.enqueue(JobSpec(command, id=job_id, cwd=CWD))
        assert queue.claim(SOMEONE).id == job_id
    # Waiting jobs: due now, later, and by priority.
    clock.now = T0 - 30
    queue.enqueue(JobSpec("pytest -q tests/", id="test-suite", priority=5, cwd=CWD))
    queue.enqueue(JobSpec("make docs", id="docs-build", cwd=CWD))
    queue.enqueue(JobSpec("./cleanup.sh --older-than 7d", id="cleanup", delay=330, cwd=CWD))
    clock.now = T0


def seed_markup(queue: Queue, clock: FixedClock) -> None:
    """Job text that must be shown as written: markup, an escape sequence, a newline."""
    _run(
        queue, clock, JobSpec("echo [/]", id="markup-dead", max_retries=1, cwd=CWD), T0 - 5, 1.0,
        failed(3, "[bold red]boom[/] \x1b[2J cleared?\n"),
    )  # fmt: skip
    clock.now = T0
    queue.enqueue(JobSpec("echo [bold]not bold[/] [red]x[/red]", id="markup-1", cwd=CWD))
    queue.enqueue(JobSpec("printf '\x1b[31mred\x1b[0m'\necho two", id="escape-1", cwd=CWD))


def seed_workflows(queue: Queue, clock: FixedClock) -> None:
    """On top of :func:`seed`: named queues (one limited, one paused), jobs waiting for others
    (one of them blocked by a dead job) and schedules, as at ``T0``."""
    clock.now = T0 - 20
    queue.enqueue(JobSpec("./deploy.sh web", id="deploy-web", queue="deploy", after=("test-suite",),
                          cwd=CWD))  # fmt: skip
    queue.enqueue(JobSpec("./notify.sh ops 'deploy failed'", id="notify-ops", queue="ops",
                          after=("deploy-prod",), cwd=CWD))  # fmt: skip
    queue.enqueue(JobSpec("./migrate.sh --dry-run", id="migrate-db", queue="deploy", cwd=CWD))
    queue.set_queue_limit("deploy", 1)
    queue.pause_queue("ops")
    clock.now = T0 - 5
    queue.add_schedule("nightly-backup", "0 3 * * *",
                       JobSpec("pg_dump shop | gzip > /backups/shop.sql.gz", cwd=CWD),
                       zone="Europe/Paris")  # fmt: skip
    queue.add_schedule("health-ping", "*/5 * * * *",
                       JobSpec("curl -fsS https://api.example.com/health", cwd=CWD),
                       no_overlap=True)  # fmt: skip
    queue.add_schedule("weekly-report", "@weekly",
                       JobSpec("Rscript reports/weekly.R", queue="reports", cwd=CWD))
    queue.pause_schedule("weekly-report")
    clock.now = T0


def seed_output(queue: Queue, clock: FixedClock) -> None:
    """On top of :func:`seed`: what the running ``train-model`` printed so far, its stored tail
    past the cap (earlier bytes dropped), with text that must be shown as written."""
    lines = [f"epoch {n:2d}/40  loss={1.9 / n:.4f}  acc={0.5 + n / 90:.3f}  [{'#' * n:<16.16}]"
             for n in range(1, 15)]  # fmt: skip
    lines[6] += "  [bold]checkpoint[/] saved \x1b[32mok\x1b[0m"
    tail = "\n".join(lines) + "\n"
    dropped = 48_213
    stored = f"[queuectl: output truncated, {dropped} earlier bytes dropped]\n" + tail
    job = queue.get("train-model")
    assert queue.store_output(job, SOMEONE, stored, dropped + len(tail.encode()))
