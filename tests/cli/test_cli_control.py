"""`logs`, `cancel`, `retry`, `edit` and `purge` (SPEC 6): in-process for inputs and exit codes,
with real worker processes where a command acts on a running job. On both backends."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from cli.conftest import QUEUECTL, Cli
from queuectl import Queue
from support import stop_process, wait_until


def one_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def set_fields(queue, job_id: str, **fields) -> None:
    q = queue.open()
    try:
        q.models.Job.update(**fields).where(q.models.Job.id == job_id).execute()
    finally:
        q.close()


def enqueue(run, command: str = "true") -> str:
    return run.ok("enqueue", command).strip()


# -- in-process: inputs, exit codes, nothing changed on refusal -------------------------------


def test_cancel_waiting_jobs_and_refuse_finished_ones(run, queue):
    first, second, done = enqueue(run), enqueue(run), enqueue(run)
    set_fields(queue, done, state="completed")
    assert "completed" in one_error(run("cancel", first, done), 1)
    assert queue.get(first).state == "pending", "nothing changed for any id"
    assert "no job" in one_error(run("cancel", "nosuchjob"), 1)
    assert run.ok("cancel", first, second[:7]).split() == [first, second]
    assert [job["state"] for job in run.json("list", "--state", "cancelled")] == ["cancelled"] * 2
    one_error(run("cancel", first), 1)
    assert run("cancel").exit_code == 2


def test_a_cancelled_job_shows_no_due_time_ahead(run, queue):
    """A failed job waiting for its retry, cancelled: final, so `show` gives no due time to
    come (its run_at stayed at the retry it will never have)."""
    job_id = enqueue(run)
    set_fields(queue, job_id, state="failed", attempts=1, run_at=time.time() + 3600)
    run.ok("cancel", job_id)
    job = queue.get(job_id)
    assert job.state == "cancelled" and job.run_at == job.finished_at
    [run_at] = [line for line in run.ok("show", job_id).splitlines() if line.startswith("run_at")]
    assert "(in " not in run_at, run_at


def test_retry_finished_jobs_only(run, queue):
    dead, pending = enqueue(run), enqueue(run)
    set_fields(queue, dead, state="dead", attempts=3, error="exit code 1")
    assert "pending" in one_error(run("retry", dead, pending), 1)
    assert queue.get(dead).state == "dead"
    [retried] = run.json("retry", dead)
    assert (retried["state"], retried["attempts"], retried["error"]) == ("pending", 0, None)


def test_edit(run, queue):
    job_id = enqueue(run, "echo old")
    edited = run.json("edit", job_id[:6], "--command", "echo new", "--priority", "4",
                      "--max-retries", "2", "--timeout", "9", "--delay", "30", "--queue", "q-1")  # fmt: skip
    assert edited["id"] == job_id and edited["command"] == "echo new"
    assert (edited["priority"], edited["max_retries"], edited["timeout"], edited["queue"]) == (
        4, 2, 9.0, "q-1"
    )
    for bad in ([], ["--priority", "x"], ["--queue", "no spaces"], ["--command", " "],
                ["--delay", "1", "--run-at", "2030-01-01"], ["--timeout", "0"]):  # fmt: skip
        result = run("edit", job_id, *bad)
        assert result.exit_code == 2, (bad, result.output)
    set_fields(queue, job_id, state="processing")
    assert "only a pending or failed job" in one_error(run("edit", job_id, "--priority", "1"), 1)
    assert queue.get(job_id).priority == 4


def test_purge(run, queue):
    now = time.time()
    done, cancelled, dead, waiting = (enqueue(run) for _ in range(4))
    set_fields(queue, done, state="completed", finished_at=now - 7200)
    set_fields(queue, cancelled, state="cancelled", finished_at=now)
    set_fields(queue, dead, state="dead", finished_at=now - 7200)
    assert run("purge", "--state", "pending").exit_code == 2
    assert run("purge", "--older-than", "soon").exit_code == 2
    assert run.ok("purge", "--older-than", "1h") == "purged 1 job\n"
    assert run.json("purge") == {"deleted": 1}
    assert run.ok("purge", "-s", "DEAD", "--queue", "default") == "purged 1 job\n"
    assert [job["id"] for job in run.json("list")] == [waiting]


@pytest.fixture
def purged_once_done(monkeypatch, queue):
    """As each command's change commits, another process runs every waiting job it left (to
    completion) and purges every finished job: the moment a `purge` loop or a busy worker beside
    a script takes (QA: `cancel` and `dlq retry --all --json` then exited 1, "no job X", their
    change done)."""
    inside = False
    notify = Queue._notify

    def run_and_purge(self) -> None:
        nonlocal inside
        notify(self)
        if inside:
            return
        inside = True
        other = queue.open()
        try:
            Job = other.models.Job
            Job.update(state="completed", finished_at=time.time()).where(
                Job.state == "pending"
            ).execute()
            other.purge(["completed", "cancelled", "dead"])
        finally:
            other.close()
            inside = False

    monkeypatch.setattr(Queue, "_notify", run_and_purge)


def test_a_change_is_reported_when_its_jobs_are_purged_at_once(run, queue, purged_once_done):
    cancelled = [enqueue(run) for _ in range(3)]
    assert run.ok("cancel", *cancelled).split() == cancelled
    as_json = [enqueue(run) for _ in range(2)]
    jobs = run.json("cancel", *as_json)
    assert [(job["id"], job["state"]) for job in jobs] == [(i, "cancelled") for i in as_json]

    dead = [enqueue(run) for _ in range(4)]
    for job_id in dead:
        set_fields(queue, job_id, state="dead", attempts=3, finished_at=time.time())
    retried = run.json("dlq", "retry", "--all")
    assert sorted(job["id"] for job in retried) == sorted(dead)
    assert {(job["state"], job["attempts"]) for job in retried} == {("pending", 0)}
    assert queue.list_jobs() == [], "each one was run and purged after the retry"

    for command in (("retry",), ("dlq", "retry"), ("edit", "--priority", "7")):
        job_id = enqueue(run)
        if command[0] != "edit":
            set_fields(queue, job_id, state="dead", attempts=3, finished_at=time.time())
        shown = run.json(*command, job_id)
        shown = shown[0] if isinstance(shown, list) else shown
        assert (shown["id"], shown["state"]) == (job_id, "pending"), command
    assert queue.list_jobs() == []


@pytest.mark.parametrize("args", [(), ("--older-than", "1d"), ("--state", "dead")])
def test_purge_of_a_queue_never_opened_before(tmp_path, args):
    """A cron'd `purge` on a new host's file failed: "database table is locked", exit 1."""
    result = Cli(str(tmp_path / "new.db"))("purge", *args)
    assert (result.exit_code, result.stdout) == (0, "purged 0 jobs\n"), result.output


def test_logs_prints_the_output_so_far(run, queue):
    job_id = enqueue(run)
    set_fields(queue, job_id, state="completed", output="one\ntwo\n\x1b[31mthree\n")
    assert run.ok("logs", job_id) == "one\ntwo\n\x1b[31mthree\n"  # not a terminal: as stored
    assert run.ok("logs", "-n", "2", job_id) == "two\n\x1b[31mthree\n"
    assert run.ok("logs", "--tail", "0", job_id) == ""
    assert run.ok("logs", "-f", job_id) == "one\ntwo\n\x1b[31mthree\n"  # finished: ends at once
    one_error(run("logs", "nosuchjob"), 1)


def test_logs_of_a_job_without_output_says_why_on_stderr(run, queue):
    """QA: `logs` of a job not yet run printed nothing at all, exit 0: was it broken?"""
    job_id = enqueue(run)
    result = run("logs", job_id)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "no output: the job has not run yet (it is pending)\n"
    running, ended = enqueue(run), enqueue(run)
    set_fields(queue, running, state="processing", attempts=1)
    assert run("logs", running).stderr == "no output: the job has printed nothing yet\n"
    set_fields(queue, ended, state="completed", attempts=1, output="")
    assert run("logs", ended).stderr == "no output: the job printed nothing\n"
    set_fields(queue, ended, output="done\n")
    assert (run("logs", ended).stdout, run("logs", ended).stderr) == ("done\n", "")


@pytest.mark.parametrize(("output", "count", "tail"), [
    ("first\nDownloading 10%\rDownloading 100%\n", 1, "Downloading 10%\rDownloading 100%\n"),
    ("first\nDownloading 10%\rDownloading 100%\n", 2, "first\nDownloading 10%\rDownloading 100%\n"),
    ("line3 \u0085 x\x0c y\u2028\nlast\n", 2, "line3 \u0085 x\x0c y\u2028\nlast\n"),
    ("a\nno newline at the end", 1, "no newline at the end"),
    ("a\n\nb\n", 2, "\nb\n"),
    ("only\n", 5, "only\n"),
])  # fmt: skip
def test_logs_n_counts_lines_as_tail_does(run, queue, output, count, tail):
    """`-n 2` of a progress bar's output printed half a line and hid the line before: lines
    were cut at every break str.splitlines knows (\\r, \\x0c, U+0085, U+2028), not at newlines."""
    job_id = enqueue(run)
    set_fields(queue, job_id, state="completed", output=output)
    assert run.ok("logs", "-n", str(count), job_id) == tail


def test_logs_to_a_terminal_makes_control_characters_visible(run, queue, monkeypatch):
    job_id = enqueue(run)
    set_fields(queue, job_id, state="completed", output="a\tb\n\x1b[31mred\n")
    import queuectl.cli.logs as logs_module

    monkeypatch.setattr(logs_module, "_terminal", lambda: True)
    assert run.ok("logs", job_id) == "a\tb\n\\x1b[31mred\n"
    assert run.ok("logs", "--raw", job_id) == "a\tb\n\x1b[31mred\n"


def test_logs_to_a_terminal_ends_crlf_lines_as_show_does(run, queue, monkeypatch, capfdbinary):
    """QA: SPEC 6 says control characters are shown "as in `show`": `show` and the TUI end a
    CRLF line with the line, `logs` showed ``\x0d`` on every line. A carriage return alone
    (a progress bar's) stays an escape; ``-f`` may read a CRLF's halves apart."""
    job_id = enqueue(run)
    output = "a\r\nb\r\nprogress 10%\rprogress 20%\n"
    set_fields(queue, job_id, state="completed", output=output)
    import queuectl.cli.logs as logs_module

    monkeypatch.setattr(logs_module, "_terminal", lambda: True)
    shown = "a\nb\nprogress 10%\\x0dprogress 20%\n"
    assert run.ok("logs", job_id) == shown
    assert shown in run.ok("show", job_id)
    assert run("logs", "--raw", job_id).stdout_bytes == output.encode()  # (not .stdout: click's
    # test runner reads "\r\n" as "\n")
    set_fields(queue, job_id, output="done\r")  # ended by a carriage return: shown at the end
    assert run.ok("logs", job_id) == "done\\x0d"
    out = logs_module._Output(as_stored=False)
    for piece in ("one\r", "\ntwo\r", "\r", "\n"):  # as `logs -f` reads them
        out.write(piece)
    out.close()
    assert capfdbinary.readouterr().out == b"one\ntwo\\x0d\n"


# -- real processes ---------------------------------------------------------------------------


def test_cancel_a_running_job_returns_once_it_is_cancelled(qc, spawn, queue):
    job_id = qc("enqueue", "echo started; sleep 30").stdout.strip()
    spawn("worker", "start")
    wait_until(lambda: queue.get(job_id).output == "started\n", 30, "the job's live output")
    done = qc("cancel", job_id, "--json")
    assert done.returncode == 0, done.stderr
    [job] = json.loads(done.stdout)
    assert job["state"] == "cancelled" and job["output"] == "started\n"
    assert job["error"].startswith("cancelled")
    again = qc("retry", job_id)
    assert again.returncode == 0 and again.stdout.strip() == job_id
    wait_until(lambda: queue.get(job_id).state == "processing", 30, "the retried job to run")


def test_a_running_job_cancelled_is_not_due_again(qc, spawn, queue):
    """Its run ends as a failure would, but no retry is due: run_at is not set ahead by the
    backoff (it showed "run_at ... (in 30s)" after `cancel`)."""
    assert qc("config", "set", "backoff-base", "30").returncode == 0
    job_id = qc("enqueue", "echo started; sleep 30").stdout.strip()
    spawn("worker", "start")
    wait_until(lambda: queue.get(job_id).output == "started\n", 30, "the job's live output")
    assert qc("cancel", job_id).returncode == 0
    job = json.loads(qc("show", job_id, "--json").stdout)
    assert job["state"] == "cancelled" and job["run_at"] == job["finished_at"]
    shown = qc("show", job_id).stdout
    [run_at] = [line for line in shown.splitlines() if line.startswith("run_at")]
    assert "(in " not in run_at, run_at


def test_logs_follow_prints_output_as_it_comes_until_the_job_ends(qc, spawn, queue, tmp_path):
    gate = tmp_path / "gate"
    job_id = qc("enqueue", f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two").stdout.strip()
    follower = spawn("logs", "-f", job_id)  # before any worker: it waits for the start
    spawn("worker", "start")
    wait_until(lambda: "one\n" in follower.log(), 30, "the first line, while the job runs")
    assert queue.get(job_id).state == "processing"
    gate.touch()
    assert follower.wait(30) == 0
    assert follower.log() == "one\ntwo\n"


def test_logs_follow_goes_on_to_the_next_run_of_a_job_given_back(qc, spawn, queue, tmp_path):
    """QA: a run given back (a worker's hard stop, or its database away: pending again, its
    attempt not counted) ended `logs -f` with exit 0 while the job was still to run: a script
    waiting on it went on. It says so and follows the next run to its end."""
    gate = tmp_path / "gate"
    job_id = qc("enqueue", f"echo run; while [ ! -e {gate} ]; do sleep 0.05; done; echo end").stdout.strip()
    first = spawn("worker", "start")
    follower = spawn("logs", "-f", job_id)
    wait_until(lambda: "run\n" in follower.log(), 30, "the first run's line")
    first.signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping" in first.log(), 30, first.log)
    first.signal(signal.SIGINT)  # the hard stop: the job goes back to pending
    assert first.wait(30) == 130
    assert queue.get(job_id).state == "pending"
    later = spawn("logs", "-f", job_id)  # QA: printed nothing where `logs` printed the run
    wait_until(lambda: later.log() == "run\n", 30, later.log)
    wait_until(lambda: "following its next run" in follower.log(), 30, follower.log)
    assert follower.proc.poll() is None  # still following
    gate.touch()
    spawn("worker", "start")
    assert follower.wait(30) == 0, follower.log()
    lines = follower.log().splitlines()
    assert [line for line in lines if not line.startswith("queuectl logs:")] == ["run", "run", "end"]
    # The next run, its attempt uncounted, is attempt 1 again.
    assert later.wait(30) == 0
    assert later.log() == "run\nqueuectl logs: attempt 1 started\nrun\nend\n"


def test_a_run_given_back_keeps_all_it_printed(qc, spawn, queue, tmp_path):
    """QA: a run given back by a hard stop kept only the output stored last (every 0.75 s):
    what it printed after that was lost to `logs` and `show`."""
    marker = tmp_path / "printed"
    job_id = qc("enqueue", f"echo one; sleep 1; echo last; touch {marker}; sleep 60").stdout.strip()
    worker = spawn("worker", "start")
    wait_until(lambda: marker.exists(), 30, "the last line")
    worker.signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping" in worker.log(), 30, worker.log)
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 130
    job = queue.get(job_id)
    assert (job.state, job.output) == ("pending", "one\nlast\n")


def failed_once(queue, output: str) -> None:
    """The queue's one job claimed and failed, as a worker would, having printed ``output``:
    it waits to retry."""
    from queuectl.executor import RunResult

    engine = queue.open()
    try:
        worker = engine.register_worker(1)
        engine.finish(engine.claim(worker), RunResult(1, "exit code 1", output), worker)
        engine.unregister_worker(worker)
    finally:
        engine.close()


def test_logs_follow_on_a_job_waiting_to_retry_prints_its_last_run_then_the_next(qc, spawn,
                                                                                queue, tmp_path):
    """QA: on a failed job (its retry due later) `logs -f` printed nothing until the retry
    started, where `logs` printed its output; it prints that, then follows the next run."""
    gate = tmp_path / "gate"
    job_id = qc("enqueue", f"[ -e {gate} ] && echo second || exit 1").stdout.strip()
    failed_once(queue, "first\n")
    assert queue.get(job_id).state == "failed"
    follower = spawn("logs", "-f", job_id)
    wait_until(lambda: follower.log() == "first\n", 30, follower.log)
    assert follower.proc.poll() is None  # waiting for the retry
    gate.touch()
    spawn("worker", "start")
    assert follower.wait(30) == 0, follower.log()
    # stderr's line, between the two runs (the log has both streams)
    assert follower.log() == "first\nqueuectl logs: attempt 2 started\nsecond\n"


def test_logs_follow_on_a_job_waiting_to_retry_that_is_cancelled_prints_no_run_again(
    qc, spawn, queue
):
    """QA (SQLite twice, PostgreSQL): `logs -f` on a job waiting to retry, then `cancel`: it
    printed the last run's output a second time, after "attempt 1 started", a run that never
    began. It ends, saying the job did not run again."""
    job_id = qc("enqueue", "echo out1; false").stdout.strip()
    failed_once(queue, "out1\n")
    follower = spawn("logs", "-f", job_id)
    wait_until(lambda: follower.log() == "out1\n", 30, follower.log)
    assert qc("cancel", job_id).returncode == 0
    assert follower.wait(30) == 0
    assert follower.log() == "out1\nqueuectl logs: the job is cancelled: it did not run again\n"


def test_logs_follow_ends_with_a_quick_run_it_did_not_see_running(qc, spawn, queue, tmp_path):
    """QA (PostgreSQL, 3 of 3): `logs -f` on a job waiting to retry, whose next run began and
    failed between two of its looks, waited on: it printed a later run's output instead (the
    runs between left out, and nothing said), exiting when the job went dead. It prints that
    run's output and ends, as for a run it saw start."""
    from queuectl.executor import RunResult

    job_id = qc("enqueue", "--max-retries", "5", "exit 1").stdout.strip()
    engine = queue.open()
    try:
        worker = engine.register_worker(1)
        engine.finish(engine.claim(worker), RunResult(1, "exit code 1", "first\n"), worker)
        follower = spawn("logs", "-f", job_id)
        wait_until(lambda: follower.log() == "first\n", 30, follower.log)
        with engine.db.atomic():  # begun and ended between two looks, whenever they come
            Job = engine.models.Job
            Job.update(run_at=0).where(Job.id == job_id).execute()  # its retry due now
            engine.finish(engine.claim(worker), RunResult(1, "exit code 1", "second\n"), worker)
        engine.unregister_worker(worker)
    finally:
        engine.close()
    assert follower.wait(30) == 0, follower.log()
    assert follower.log() == "first\nqueuectl logs: attempt 2 started\nsecond\n"
    assert queue.get(job_id).state == "failed"  # the job waits to retry: it was not followed on


def test_ctrl_c_ends_logs_follow_quietly_with_130(qc, spawn, queue):
    """QA: Ctrl-C on `logs -f` printed click's "Aborted!" and exited 1, as for a failure
    (`tail -f` ends quietly, 130 in a shell)."""
    job_id = qc("enqueue", "exit 1").stdout.strip()
    failed_once(queue, "first\n")
    follower = spawn("logs", "-f", job_id)
    wait_until(lambda: follower.log() == "first\n", 30, follower.log)  # following: no worker
    follower.signal(signal.SIGINT)
    assert follower.wait(30) == 130
    assert follower.log() == "first\n"


def test_logs_follow_ends_once_its_reader_closes_the_pipe(qc, env, queue, tmp_path):
    """`logs -f ID | head -1` ends (quietly, 1, as for any closed pipe) once head has its line,
    as `tail -f` does: it ran on until the job printed again or ended (QA: 14 s)."""
    job_id = qc("enqueue", "exit 1").stdout.strip()
    failed_once(queue, "first\nsecond\n")  # followed on: it waits for the next run
    follower = subprocess.Popen([*QUEUECTL, "logs", "-f", job_id], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert follower.stdout.readline() == b"first\n"
        follower.stdout.close()
        assert follower.wait(15) == 1
        assert follower.stderr.read() == b""
    finally:
        stop_process(follower)
        follower.stderr.close()


def test_logs_follow_prints_each_byte_once_past_the_stored_cap(qc, spawn, queue, tmp_path):
    """1.3 MB printed in two parts, each less than the cap (1 MiB) apart: the stored output is
    cut at its head from the second part on, and `logs -f` still prints every byte once (it
    once printed a job's whole output a second time when the stored tail had been cut)."""
    gates = [tmp_path / "gate1", tmp_path / "gate2"]
    wait = "while [ ! -e {} ]; do sleep 0.05; done"
    command = (f"seq 1 100000; {wait.format(gates[0])}; seq 100001 200000; "
               f"{wait.format(gates[1])}; echo END")  # fmt: skip
    job_id = qc("enqueue", command).stdout.strip()
    follower = spawn("logs", "-f", job_id)
    spawn("worker", "start")
    for gate, last in zip(gates, ("100000", "200000")):
        wait_until(lambda: follower.log().endswith(f"\n{last}\n"), 30, f"{last}, while it runs")
        gate.touch()
    assert follower.wait(30) == 0
    printed = "".join(f"{n}\n" for n in range(1, 200001)) + "END\n"
    assert queue.get(job_id).output.endswith(printed[-1000:])  # the stored tail, cut
    assert follower.log() == printed


def test_logs_follow_prints_bytes_that_are_not_utf8_once_past_the_stored_cap(
    qc, spawn, queue, tmp_path
):
    """As above, with a byte that is not UTF-8 on every line (stored as a 4-character escape):
    the follower counts each escape as the one byte it stands for, so it prints every line once
    (it once printed about 2,500 lines twice, counting an escape as 4 bytes of output)."""
    gates = [tmp_path / "gate1", tmp_path / "gate2"]
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys, time\n"
        "for part, gate in enumerate(sys.argv[1:]):\n"
        "    lines = (b'%d-%05d \\xff\\n' % (part, i) for i in range(45000))\n"
        "    sys.stdout.buffer.write(b''.join(lines))\n"
        "    sys.stdout.flush()\n"
        "    while not os.path.exists(gate):\n"
        "        time.sleep(0.05)\n"
    )  # fmt: skip
    job_id = qc("enqueue", f"{sys.executable} {script} {gates[0]} {gates[1]}").stdout.strip()
    follower = spawn("logs", "-f", job_id)
    spawn("worker", "start")
    for part, gate in enumerate(gates):
        last = f"{part}-44999 \\xff\n"
        wait_until(lambda: follower.log().endswith(last), 30, f"{last!r}, while it runs")
        gate.touch()
    assert follower.wait(30) == 0
    printed = "".join(f"{part}-{i:05d} \\xff\n" for part in (0, 1) for i in range(45000))
    assert queue.get(job_id).output.startswith("[queuectl: output truncated, ")  # cut
    assert follower.log() == printed


def test_logs_follow_prints_output_that_starts_like_the_truncation_line(
    qc, spawn, queue, tmp_path
):
    """A job that prints the line the executor puts before a cut tail, itself: nothing was
    dropped (its stored size says so), so `logs -f` prints every line and skips nothing."""
    gates = [tmp_path / "gate1", tmp_path / "gate2"]
    wait = "while [ ! -e {} ]; do sleep 0.05; done"
    marker = "[queuectl: output truncated, 5 earlier bytes dropped]"
    command = (f"echo '{marker}'; {wait.format(gates[0])}; echo line2; "
               f"{wait.format(gates[1])}; echo line3")  # fmt: skip
    job_id = qc("enqueue", command).stdout.strip()
    follower = spawn("logs", "-f", job_id)
    spawn("worker", "start")
    for gate, last in zip(gates, (marker, "line2")):
        stored = lambda: (queue.get(job_id).output or "").endswith(f"{last}\n")  # noqa: E731
        wait_until(stored, 30, f"{last!r} stored")
        gate.touch()
    assert follower.wait(30) == 0
    assert follower.log() == f"{marker}\nline2\nline3\n"


def follow_past_a_gate(
    qc, spawn, queue, command: str, gate, first: str, terminal: bool = False
) -> str:
    """What `logs -f` printed (stdout and stderr, as they came) of a job running ``command``,
    followed from its ``first`` output on, the ``gate`` file made then; the job ran to its end.
    ``terminal``: printed to a terminal, not a file."""
    job_id = qc("enqueue", command).stdout.strip()
    spawn("worker", "start")
    wait_until(lambda: queue.get(job_id).output == first, 30, "the job's first output")
    follower = spawn("logs", "-f", job_id, terminal=terminal)
    wait_until(lambda: follower.log() == first, 30, "the follower's first output")
    gate.touch()
    assert follower.wait(30) == 0
    return follower.log()


def test_logs_follow_says_how_much_it_skipped(qc, spawn, queue, tmp_path):
    """More than the stored cap (1 MiB) printed between two reads: a line on stderr says how
    much. To a file, the bytes are as stored (SPEC 6): what it printed and what it said it
    skipped are what the job printed, to the byte (QA: a newline added at each skip)."""
    gate = tmp_path / "gate"
    command = (
        f"printf 'start\\na'; while [ ! -e {gate} ]; do sleep 0.05; done; "
        "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo end"
    )
    log = follow_past_a_gate(qc, spawn, queue, command, gate, "start\na")  # a line cut
    assert "bytes skipped" in log and log.endswith("a\nend\n")
    # Each read shows what is new; a read that finds the stored window (1 MiB) past what was
    # shown says how much it skipped. A follower slowed down may read more than twice, so more
    # than one window may be shown, but never a byte twice and never the whole 3 MB. (Its
    # stderr line comes in the midst of the a's here: nothing ends the line cut.)
    notes = re.findall(r"queuectl logs: (\d+) bytes skipped\n", log)
    shown = len(log) - sum(len(f"queuectl logs: {n} bytes skipped\n") for n in notes)
    assert shown + sum(int(n) for n in notes) == len("start\na") + 3_000_000 + len("\nend\n")
    assert shown < 3_000_000


def test_logs_follow_never_joins_the_lines_either_side_of_a_skip(qc, spawn, queue, tmp_path):
    """QA: where more than the stored cap was printed between two reads, the kept tail starts
    mid-line, and the line cut there was printed on the end of the one before the skip
    (`1860` then `204`: `1860204`, a line nobody printed). To a terminal, the line before a
    skip is ended there (to a file, the bytes are as stored: the test above). Each line the
    job prints here says its number twice (`L7:7E`): a line made of two is told from one the
    job printed."""
    gate = tmp_path / "gate"
    command = (f"printf L0:; while [ ! -e {gate} ]; do sleep 0.05; done; echo 0E; "
               "awk 'BEGIN { for (n = 1; n <= 300000; n++) printf \"L%d:%dE\\n\", n, n }'")
    log = follow_past_a_gate(qc, spawn, queue, command, gate, "L0:", terminal=True)
    note = re.compile(r"queuectl logs: \d+ bytes skipped\n")
    assert note.search(log), log[:200]  # 4.8 MB at once: more than the stored 1 MiB
    # Its line on stderr is a line of its own, the cut line ended before it (QA: glued on, a
    # blank line after it).
    assert not re.search(r"[^\n]queuectl logs: \d+ bytes skipped|skipped\n\n", log)
    for line in note.sub("", log).splitlines():
        whole = re.fullmatch(r"L(\d+):(\d+)E", line)
        if whole:
            assert whole[1] == whole[2], line  # two lines' parts, printed as one
        else:  # the start of a line (before a skip) or its end (after one), not both
            assert not (line.startswith("L") and line.endswith("E")), line
            assert line.count(":") <= 1, line
    assert log.endswith("L300000:300000E\n")


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["down", "hold"])
def test_logs_follow_lives_through_a_database_outage(pg_target, tmp_path, cut):
    """The follower's database goes away and comes back: one line each way on stderr, and it
    goes on to print the rest (the worker reaches the server directly all along). ``hold``: the
    server stops answering, its connection open: `logs -f` waited in silence for as long as
    that lasted; it says so once a look has waited 5 s."""
    from backends.outage import Outage

    from cli.conftest import QUEUECTL

    gate = tmp_path / "gate"
    queue = Queue(pg_target)
    proxy = Outage(pg_target)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started: list[subprocess.Popen] = []

    def start(*args: str, log: str) -> subprocess.Popen:
        with open(tmp_path / log, "w") as out:
            started.append(subprocess.Popen([*QUEUECTL, *args], stdout=out,
                                            stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        return started[-1]

    def log(name: str) -> str:
        return (tmp_path / name).read_text()

    try:
        job = queue.enqueue(f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two")
        start("--db", pg_target, "worker", "start", log="worker.log")
        follower = start("--db", proxy.url, "logs", "-f", job.id, log="logs.log")
        wait_until(lambda: log("logs.log") == "one\n", 30, "the first line")
        getattr(proxy, cut)()
        wait_until(lambda: "database unreachable" in log("logs.log"), 30, "the outage line")
        if cut == "hold":
            assert "database unreachable (no answer for" in log("logs.log")
        gate.touch()
        wait_until(lambda: queue.get(job.id).state == "completed", 30)
        proxy.up()
        assert follower.wait(30) == 0
        lines = log("logs.log").splitlines()
        assert [line for line in lines if "database" not in line] == ["one", "two"], lines
        assert sum("database unreachable" in line for line in lines) == 1
        assert sum("database reachable again" in line for line in lines) == 1
    finally:
        for process in started:
            stop_process(process)
        proxy.close()
        queue.close()
