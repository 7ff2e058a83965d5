"""Notification hooks (SPEC 8): recorded with the change, delivered once by a live worker process,
the job's text only in the environment."""

from __future__ import annotations

import logging
import os
import signal
import time

from queuectl import JobSpec, Queue, WorkerPool
from queuectl.executor import RunResult
from queuectl.hooks import HookRunner
from support import wait_until

from .helpers import WorkerProc

OK = RunResult(0, None, "")


def finish_one(q: Queue, worker: str, result: RunResult = OK):
    job = q.claim(worker)
    assert job is not None
    return q.finish(job, result, worker)


def test_a_change_is_recorded_for_delivery_only_when_its_hook_is_set(any_queue):
    q = any_queue
    worker = q.register_worker(1)
    q.enqueue("true")
    finish_one(q, worker)
    assert q.deliveries() == [], "no hook set: nothing to deliver"
    q.config_set("on-completed", "echo done")
    q.config_set("on-dead", "echo dead")
    job = q.enqueue(JobSpec(command="exit 7", max_retries=1))
    finish_one(q, worker, RunResult(7, "exit code 7", ""))
    q.enqueue("true")
    finish_one(q, worker)
    dead, completed = q.deliveries()
    assert (dead.job_id, dead.state, dead.hook, dead.exit_code, dead.error, dead.attempts) == (
        job.id, "dead", "echo dead", 7, "exit code 7", 1,
    )  # fmt: skip
    assert (completed.state, completed.hook) == ("completed", "echo done")


def test_a_delivery_is_taken_once_and_again_only_after_its_worker_is_gone(any_queue, clock):
    q = any_queue
    q.config_set("on-completed", "true")
    first = q.register_worker(1)
    q.enqueue("true")
    finish_one(q, first)
    taken = q.take_deliveries(first, 4)
    assert len(taken) == 1 and taken[0].taken_by == first
    clock.advance(q.lease / 2)
    second = q.register_worker(1)
    assert q.take_deliveries(second, 4) == [], "its worker lives: nobody else takes it"
    clock.advance(q.lease / 2 + 1)  # the first is silent past its lease; the second beats
    q.heartbeat(second, 1)
    q.rescue_lost()
    again = q.take_deliveries(second, 4)
    assert [d.id for d in again] == [taken[0].id] and again[0].taken_by == second
    q.deliveries_done(second, [again[0].id])
    assert q.deliveries() == []


def test_a_hook_gets_the_change_in_its_environment_and_never_runs_job_text(target, tmp_path):
    out, pwned = tmp_path / "hook.out", tmp_path / "pwned"
    # The job runs `exit 7`: the rest is a comment. The hook must not run it either.
    command = f"exit 7 # $(touch {pwned}1) `touch {pwned}2` ; touch {pwned}3"
    q = Queue(target)
    pool = None
    try:
        q.config_set(
            "on-dead",
            'printf "%s\\n" "$QUEUECTL_JOB_ID" "$QUEUECTL_JOB_STATE" "$QUEUECTL_JOB_QUEUE" '
            '"$QUEUECTL_JOB_COMMAND" "$QUEUECTL_JOB_ATTEMPTS" "$QUEUECTL_EXIT_CODE" '
            f'"$QUEUECTL_ERROR" > {out}.tmp && mv {out}.tmp {out}',
        )
        job = q.enqueue(JobSpec(command=command, max_retries=1))
        pool = WorkerPool(q, 1).start()
        wait_until(out.exists, 30, "the hook to run")
        assert out.read_text().split("\n")[:7] == [
            job.id, "dead", "default", command, "1", "7", "exit code 7",
        ]  # fmt: skip
        assert not any(os.path.exists(f"{pwned}{n}") for n in (1, 2, 3))
        wait_until(lambda: q.deliveries() == [], 30, "the delivery to be deleted")
        assert q.get(job.id).state == "dead"
    finally:
        if pool is not None:
            pool.stop()
            pool.join(30)
        q.close()


def test_a_command_too_long_for_one_variable_is_cut_and_its_hooks_run(target, tmp_path):
    """QA: a job whose command is over 128 KiB (it ran: started directly, as words each
    shorter) had its hook fail to start ("Argument list too long": Linux's bound on one
    variable), and the change was never notified. So was a job that died of that very
    bound. The variable is cut to fit, ending with " [cut]"."""
    out = tmp_path / "hooks.out"
    word = "x" * 100_000
    ran = f"/bin/true {word} {word}"  # 200,000 bytes, started directly
    wide = "é" * 50_000  # 2 bytes a character: the cut falls inside one, and is moved before it
    died = f"true ##{wide}{wide}"  # through /bin/sh -c: one argument too long for the exec
    q = Queue(target)
    pool = None
    try:
        hook = (f'printf "%s %s %s\\n" "$QUEUECTL_JOB_ID" "${{#QUEUECTL_JOB_COMMAND}}" '
                f'"$QUEUECTL_JOB_STATE" >> {out}; '
                f'printf "%s" "$QUEUECTL_JOB_COMMAND" > {tmp_path}/$QUEUECTL_JOB_ID.command')
        q.config_set("on-completed", hook)
        q.config_set("on-dead", hook)
        completed = q.enqueue(JobSpec(command=ran))
        dead = q.enqueue(JobSpec(command=died, max_retries=1))
        pool = WorkerPool(q, 1).start()
        wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 2, 30,
                   lambda: f"both hooks to run: {q.get(dead.id).error}")  # fmt: skip
        assert q.get(completed.id).state == "completed" and q.get(dead.id).state == "dead"
        for job in (completed, dead):
            told = (tmp_path / f"{job.id}.command").read_bytes().decode()
            assert told.endswith(" [cut]") and job.command.startswith(told[: -len(" [cut]")])
            assert len(f"QUEUECTL_JOB_COMMAND={told}".encode()) < 128 * 1024
    finally:
        if pool is not None:
            pool.stop()
            pool.join(30)
        q.close()


def test_a_burst_worker_delivers_before_it_exits(target, tmp_path):
    out = tmp_path / "hook.out"
    q = Queue(target)
    try:
        q.config_set("on-completed", f'echo "$QUEUECTL_JOB_ID" >> {out}')
        jobs = q.enqueue_many([JobSpec(command="true")] * 3)
        pool = WorkerPool(q, 2, burst=True).start()
        pool.run_until_stopped()
        assert sorted(out.read_text().split()) == sorted(job.id for job in jobs)
        assert q.deliveries() == []
    finally:
        q.close()


def test_a_stopping_worker_beats_while_its_last_hook_runs_past_the_lease(target, tmp_path):
    """QA: a stop waited for a running hook without a heartbeat; past the lease, the worker
    was taken for lost, its delivery taken again (by itself too: a 25 s hook ran six times),
    and on its host the rescuer killed the hook. It beats until the hook has ended."""
    import threading

    gate, runs = tmp_path / "gate", tmp_path / "runs"
    q = Queue(target, lease=1.5)
    other = Queue(target, lease=1.5)  # another worker's view: it rescues the silent
    try:
        q.config_set("on-completed", f"echo x >> {runs}; while [ ! -e {gate} ]; do sleep 0.05; done")
        q.enqueue("true")
        pool = WorkerPool(q, 1).start()
        wait_until(lambda: runs.exists(), 30, "the hook to run")
        pool.stop()
        joined = threading.Thread(target=pool.join)
        joined.start()
        deadline = time.monotonic() + 4 * q.lease  # well past the lease
        while time.monotonic() < deadline:
            other.rescue_lost()
            assert pool.worker_id in [w.id for w in other.live_workers()], "taken for lost"
            assert len(q.deliveries()) == 1
            time.sleep(0.1)
        gate.touch()
        joined.join(30)
        assert not joined.is_alive()
        assert runs.read_text() == "x\n"  # once
        assert q.deliveries() == []
    finally:
        gate.touch()
        q.close()
        other.close()


def test_a_delivery_whose_take_was_lost_is_run_by_its_own_worker(any_queue, tmp_path):
    """A take commits, and its answer is lost (the connection cut at that moment): the rows
    stood under a live worker that did not run them, and nobody did until it stopped. The
    worker takes back its own deliveries that it is not running."""
    q = any_queue
    ran = tmp_path / "ran"
    q.config_set("on-completed", f"echo $QUEUECTL_JOB_ID >> {ran}")
    worker = q.register_worker(1)
    job = q.enqueue("true")
    finish_one(q, worker)
    [lost] = q.take_deliveries(worker, 4)  # taken, as far as the database knows
    runner = HookRunner(q, worker)
    assert runner.poll() == 1
    runner.close(timeout=20)
    assert ran.read_text() == f"{job.id}\n" and q.deliveries() == []
    assert lost.taken_by == worker


def test_a_failed_hook_is_one_log_line_and_not_retried(any_queue, caplog):
    q = any_queue
    q.config_set("on-completed", "echo oops; exit 9")
    worker = q.register_worker(1)
    job = q.enqueue("true")
    finish_one(q, worker)
    runner = HookRunner(q, worker)
    with caplog.at_level(logging.WARNING, logger="queuectl.hooks"):
        runner.close(timeout=20)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"hook on-completed for job {job.id} failed: exit code 9 (oops)"]
    assert q.deliveries() == []
    assert q.get(job.id).state == "completed"


def test_a_delivery_whose_worker_process_died_is_run_by_another(target, tmp_path):
    marker = tmp_path / "marker"
    q = Queue(target)
    first = second = None
    try:
        q.config_set("on-completed", f'echo "$QUEUECTL_WORKER" >> {marker}; sleep 2')
        q.enqueue("true")
        first = WorkerProc(target, 1, tmp_path, "first")
        first_id = first.wait_ready()
        wait_until(marker.exists, 30, "the first worker's hook to start")
        first.process.send_signal(signal.SIGKILL)
        first.wait_exit(30)
        second = WorkerProc(target, 1, tmp_path, "second")
        second_id = second.wait_ready()
        wait_until(lambda: len(marker.read_text().split()) == 2, 30, "the hook to run again")
        assert marker.read_text().split() == [first_id, second_id]
        wait_until(lambda: q.deliveries() == [], 30, "the delivery to be done")
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.stop()
        q.close()


def test_a_stop_given_seconds_to_take_hooks_leaves_the_rest_to_others(db_path, tmp_path):
    """The TUI's quit (hooks_at_stop seconds, not the whole stop timeout): QA's quit, with
    workers elsewhere finishing jobs, ran 100 of their hooks for 27 s. Those due past the
    window stay in the database for another worker; none runs twice."""
    runs = tmp_path / "runs"
    q = Queue(db_path)
    other = Queue(db_path)
    try:
        q.config_set("on-completed", f"echo x >> {runs}; sleep 1")
        # Its own thread claims nothing (a pause alone raced the first enqueue): the jobs are
        # "another process's", in a queue this pool does not serve.
        pool = WorkerPool(q, 1, queues=("elsewhere",), hooks_at_stop=0.5).start()
        worker = other.register_worker(1)
        for _ in range(40):
            other.enqueue(JobSpec(command="true"))
            other.finish(other.claim(worker), RunResult(0, None, ""), worker)
        pool.stop()
        assert pool.join(60)
        ran = len(runs.read_text().split()) if runs.exists() else 0
        assert ran + len(q.deliveries()) == 40  # each run once, or left
        assert len(q.deliveries()) >= 10, f"{ran} run: it took past its half second"
    finally:
        q.close()
        other.close()
