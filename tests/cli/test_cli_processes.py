"""End to end: the real `queuectl` executable, workers in background processes, signals.

Nothing here sleeps to wait: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import pytest

from support import stop_process, wait_until

from .conftest import QUEUECTL


def ok(done) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def jq(qc, *args):
    return json.loads(ok(qc(*args, "--json")))


def state_of(qc, job_id: str) -> dict:
    return jq(qc, "show", job_id)


def one_error(done, code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("Error:")]) == 1, done.stderr
    assert done.stdout == ""
    return lines[-1]


def test_seed_flow_workers_status_list_dlq(qc, spawn, queue):
    ids = [ok(qc("enqueue", f"echo job {n}")).strip() for n in range(4)]
    worker = spawn("worker", "start", "--count", "2")
    wait_until(lambda: queue.counts()["completed"] == 4)
    status = jq(qc, "status")
    assert status["completed"] == 4 and status["pending"] == 0
    assert status["workers"] == 2  # the threads of the one live worker process
    completed = jq(qc, "list", "--state", "completed")
    assert sorted(job["id"] for job in completed) == sorted(ids)
    assert all(job["output"].startswith("job ") for job in completed)

    assert ok(qc("config", "set", "max-retries", "1")) == "max-retries = 1\n"
    failing = ok(qc("enqueue", "echo oops >&2; exit 7")).strip()
    wait_until(lambda: queue.get(failing).state == "dead")
    dead = jq(qc, "dlq", "list")
    assert [job["id"] for job in dead] == [failing]
    assert dead[0]["attempts"] == 1 and dead[0]["exit_code"] == 7 and "oops" in dead[0]["output"]

    first_end = queue.get(failing).finished_at
    assert ok(qc("dlq", "retry", failing[:6])).strip() == failing
    # The worker runs it again (attempts start over) and it dies again after one run.

    def died_again() -> bool:
        job = queue.get(failing)
        return job.state == "dead" and job.finished_at > first_end and job.attempts == 1

    wait_until(died_again)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    log = worker.log()
    assert f"started {ids[0]} echo job 0" in log
    assert f"dead {failing}" in log
    assert jq(qc, "status")["workers"] == 0


def gated(tmp_path, then: str) -> tuple[str, object]:
    """A job's command that runs until the test touches the gate, then ``then``: it is still
    running whenever the test looks (a short `sleep` could end between two slow polls)."""
    gate = tmp_path / "gate"
    return f"while [ ! -e {gate} ]; do sleep 0.02; done; {then}", gate


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])  # fmt: skip
def test_first_stop_signal_lets_the_running_job_finish_and_exits_0(qc, spawn, queue, signum,
                                                                    tmp_path):
    """SIGTERM is also what a service manager sends to stop a unit (README: systemd); SIGHUP
    is what the worker gets when the terminal it runs in is closed. Killed by it, as it was,
    the worker left its job running as an orphan and the job ran again once rescued."""
    command, gate = gated(tmp_path, "echo finished")
    job_id = ok(qc("enqueue", command)).strip()
    worker = spawn("worker", "start")
    wait_until(lambda: queue.get(job_id).state == "processing")
    worker.signal(signum)
    wait_until(lambda: "stopping after 1 running job(s)" in worker.log(), 30, worker.log)
    gate.touch()
    assert worker.wait(30) == 0
    job = queue.get(job_id)
    assert job.state == "completed" and job.output == "finished\n"
    assert f"{signal.Signals(signum).name}: stopping" in worker.log()


def test_a_worker_started_with_its_stop_signals_blocked_still_stops_on_sigterm(qc, spawn, queue,
                                                                              tmp_path):
    """Some supervisors and CI runners start children with every signal blocked."""
    command, gate = gated(tmp_path, "echo finished")
    job_id = ok(qc("enqueue", command)).strip()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        worker = spawn("worker", "start")  # inherits this thread's mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    wait_until(lambda: queue.get(job_id).state == "processing")
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "stopping after 1 running job(s)" in worker.log(), 30, worker.log)
    gate.touch()
    assert worker.wait(30) == 0
    assert queue.get(job_id).output == "finished\n"
    assert "SIGTERM: stopping" in worker.log()


def test_a_worker_started_under_nohup_goes_on_after_sighup(qc, spawn, queue, tmp_path):
    """`nohup queuectl worker start &`: the terminal's going away is not a stop."""
    command, gate = gated(tmp_path, "echo finished")
    job_id = ok(qc("enqueue", command)).strip()
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        worker = spawn("worker", "start")  # inherits the ignored SIGHUP, as nohup's child does
    finally:
        signal.signal(signal.SIGHUP, before)
    wait_until(lambda: queue.get(job_id).state == "processing")
    worker.signal(signal.SIGHUP)
    gate.touch()
    wait_until(lambda: queue.get(job_id).state == "completed", 30)
    later = ok(qc("enqueue", "echo later")).strip()  # still claiming: it did not stop
    wait_until(lambda: queue.get(later).state == "completed", 30, worker.log)
    assert "SIGHUP" not in worker.log()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_jobs_keep_an_inherited_sighup_immunity_but_not_the_workers_stop_signals(qc, spawn, queue):
    """A script's `nohup queuectl worker start &` ignores SIGHUP and SIGINT: SIGHUP's immunity
    goes on to the jobs; SIGINT, the worker's own stop signal, is at its default in them (as the
    README says), and still stops the worker."""
    job_id = ok(qc("enqueue", "grep SigIgn /proc/self/status")).strip()
    before = {signum: signal.signal(signum, signal.SIG_IGN)
              for signum in (signal.SIGHUP, signal.SIGINT)}  # fmt: skip
    try:
        worker = spawn("worker", "start")
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    wait_until(lambda: queue.get(job_id).state == "completed", 30, worker.log)
    assert queue.get(job_id).output.split() == ["SigIgn:", "0000000000000001"]  # SIGHUP only
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0
    assert "SIGINT: stopping" in worker.log()


def test_second_sigint_kills_the_job_back_to_pending_uncounted(qc, spawn, queue):
    job_id = ok(qc("enqueue", "sleep 30")).strip()
    worker = spawn("worker", "start")
    wait_until(lambda: queue.get(job_id).state == "processing")
    worker.signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping" in worker.log())
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 130
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.worker) == ("pending", 0, None)
    assert jq(qc, "status")["workers"] == 0


def test_second_sigint_while_a_stopping_worker_waits_for_a_hook_exits_at_once(
    qc, spawn, queue, tmp_path
):
    """A worker stopping waits for its hooks still running (up to the stop timeout); a second
    SIGINT then did nothing until the hook timed out (30 s), and the worker exited 0. Now it
    kills the hook, and exits 130; the hook's delivery is left for another worker."""
    started = tmp_path / "hook-started"
    ok(qc("config", "set", "on-completed", f"touch {started}; sleep 60"))
    job_id = ok(qc("enqueue", "true")).strip()
    worker = spawn("worker", "start")
    wait_until(lambda: started.exists(), 30, "the hook to run")
    worker.signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping" in worker.log())
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 130, worker.log()  # not the hook's 30 s timeout
    assert "another worker will run it" in worker.log() and "failed" not in worker.log()
    assert queue.get(job_id).state == "completed"
    assert [d.job_id for d in queue.deliveries()] == [job_id]  # for another worker to run


def test_a_stop_lets_a_running_hook_end_so_it_runs_once(qc, spawn, queue, tmp_path):
    """QA: a stop killed the hooks still running at its stop timeout, and the next worker ran
    them again: twice for one change, where SPEC 8 runs a hook again only if its worker died.
    A hook's own timeout (30 s) bounds the wait; the worker did not die."""
    started, ran = tmp_path / "hook-started", tmp_path / "hook-ran"
    ok(qc("config", "set", "on-completed", f"touch {started}; sleep 2; echo x >> {ran}"))
    job_id = ok(qc("enqueue", "true")).strip()
    worker = spawn("worker", "start", "--stop-timeout", "0.5")
    wait_until(lambda: started.exists(), 30, "the hook to run")
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0, worker.log()
    assert ran.read_text() == "x\n", worker.log()  # it ran to its end, past the stop timeout
    assert "another worker will run it" not in worker.log()
    assert queue.deliveries() == []  # delivered: no other worker runs it again
    assert worker.log().count(f"completed {job_id}") == 1


def test_a_stop_lets_a_hook_run_past_the_stop_timeout_and_its_grace(qc, spawn, queue, tmp_path):
    """A hook still running at a stop runs to its end (its own 30 s bound it), however long past
    --stop-timeout: the worker beats meanwhile. On PostgreSQL, a stop whose heartbeats had not
    landed since it began exits 1 after --stop-timeout and 2 s (a network that drops packets):
    the heartbeats of a stop's last hooks were not counted, and a 4 s hook was cut off."""
    started, ran = tmp_path / "hook-started", tmp_path / "hook-ran"
    ok(qc("config", "set", "on-completed", f"touch {started}; sleep 4; echo x >> {ran}"))
    ok(qc("enqueue", "true"))
    worker = spawn("worker", "start", "--stop-timeout", "0.5")
    wait_until(lambda: started.exists(), 30, "the hook to run")
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0, worker.log()
    assert ran.read_text() == "x\n", worker.log()
    assert queue.deliveries() == []


def _file_deleted_under_a_worker(tmp_path, setup, when, ends=("", "-wal", "-shm"),
                                 meanwhile=lambda: None) -> str:  # fmt: skip
    """A `worker start` on a SQLite file of its own, set up by the commands ``setup``; once
    ``when()`` holds, the file (with its -wal and -shm, unless ``ends`` says otherwise) is
    deleted, then ``meanwhile()`` runs. The worker must exit 1; returns its log."""
    import os

    db = tmp_path / "queue.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("QUEUECTL_DB", None)
    for args in setup:
        subprocess.run([*QUEUECTL, "--db", str(db), *args], env=env, check=True,
                       capture_output=True, timeout=60)  # fmt: skip
    log = tmp_path / "worker.log"
    with open(log, "w") as stderr:
        worker = subprocess.Popen([*QUEUECTL, "--db", str(db), "worker", "start"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)  # fmt: skip
    try:
        wait_until(lambda: when(log.read_text()), 30, "the worker to get there")
        for end in ends:
            (tmp_path / f"queue.db{end}").unlink(missing_ok=True)
        meanwhile()
        assert worker.wait(30) == 1, log.read_text()
    finally:
        stop_process(worker)
    return log.read_text()


def test_a_worker_whose_database_file_is_deleted_stops_and_does_not_make_it_again(tmp_path):
    """QA: with its SQLite file deleted, a worker went on running the jobs of the file it had
    open, which no other process sees (the jobs enqueued into the file made next never ran),
    and a connection opened afterwards made the file again, empty and readable by everyone."""
    said = _file_deleted_under_a_worker(tmp_path, [("enqueue", "true")],
                                        lambda log: "completed" in log)  # fmt: skip
    db = tmp_path / "queue.db"
    assert f"the database file {db} was deleted or replaced; the workers stop" in said
    assert "Traceback" not in said
    assert not db.exists()  # not made again (it would be 0644, and empty)


def test_the_queue_made_after_a_file_deleted_under_a_worker_works_while_that_worker_lives(
    tmp_path,
):
    """QA: `rm queue.db` (its -wal and -shm stay, open in the worker letting its job end): every
    command then failed, "database error: disk I/O error", until that worker exited (its job
    could run for hours), as the new file took the old one's -wal and -shm for its own. And
    the new queue must outlive the old worker's exit."""
    import os

    db, gate = tmp_path / "queue.db", tmp_path / "gate"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("QUEUECTL_DB", None)
    made = []

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*QUEUECTL, "--db", str(db), *args], env=env, text=True,
                              capture_output=True, timeout=60)  # fmt: skip

    def meanwhile() -> None:
        wait_until(lambda: "waiting for 1 running job(s)" in (tmp_path / "worker.log").read_text(),
                   30, "the worker to see the file gone")  # fmt: skip
        made.append(ok(command("enqueue", "echo new")).strip())
        assert json.loads(ok(command("status", "--json")))["pending"] == 1
        gate.touch()  # the old worker's job ends: it exits, closing its connections

    try:
        said = _file_deleted_under_a_worker(
            tmp_path, [("enqueue", f"while [ ! -e {gate} ]; do sleep 0.05; done")],
            lambda log: "started" in log, ends=("",), meanwhile=meanwhile,
        )  # fmt: skip
    finally:
        gate.touch()  # (the job runs in a session of its own: a failed test leaves it no wait)
    assert "Traceback" not in said
    [job] = json.loads(ok(command("list", "--json")))
    assert (job["id"], job["state"]) == (made[0], "pending")  # the new queue, whole
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob("queue.db.*.new"))


def test_a_hook_running_as_the_database_file_goes_ends_and_is_not_said_to_be_left(tmp_path):
    """QA: the worker whose file went killed its running hook and said "another worker will
    run it" (none could: the delivery was in that file), unformatted, after "stopped"."""
    started, ran = tmp_path / "started", tmp_path / "ran"
    hook = f"touch {started}; sleep 3; echo x >> {ran}"
    said = _file_deleted_under_a_worker(
        tmp_path, [("config", "set", "on-completed", hook), ("enqueue", "true")],
        lambda log: started.exists(),
    )  # fmt: skip
    assert ran.read_text() == "x\n", said  # it ran to its end
    assert "another worker will run it" not in said
    assert said.rstrip().endswith("stopped"), said


def test_burst_drains_retries_and_delays_then_exits_0(qc, spawn, queue):
    ok(qc("config", "set", "backoff-base", "1"))
    quick = ok(qc("enqueue", "true")).strip()
    later = ok(qc("enqueue", "--delay", "0.5", "echo later")).strip()
    flaky = ok(qc("enqueue", "--max-retries", "2", "exit 1")).strip()
    worker = spawn("worker", "start", "--burst", "--count", "2")
    assert worker.wait(30) == 0
    assert queue.get(quick).state == "completed"
    assert queue.get(later).state == "completed"
    dead = queue.get(flaky)
    assert (dead.state, dead.attempts) == ("dead", 2)
    log = worker.log()
    assert f"failed {flaky}" in log and "retry in" in log


def wardens_of(worker_line: str) -> list[str]:
    """The warden processes (queuectl.warden) of the worker a log's first line names."""
    worker_id = worker_line.split(" worker ", 1)[1].split()[0]
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    args = cmdline.read().split(b"\0")
            except OSError:
                continue
            if any(b"from queuectl.warden import main" in arg for arg in args[:4]) and (
                args[-2:] == [worker_id.encode(), b""]
            ):
                found.append(entry.name)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the warden finds jobs through /proc")
def test_a_worker_killed_takes_its_jobs_processes_with_it(qc, spawn, tmp_path):
    """SIGKILL (the OOM killer) ended a worker, not its jobs, each in a session of its own; with
    no worker left on its host to kill what they left, another host's rescued the job after the
    lease and ran it again while the first run went on (QA: two runs at once). Its warden kills
    them at once. A worker that stops as it should leaves be what its jobs left on purpose."""
    from queuectl.procs import pid_running

    sleeping = tmp_path / "sleeping"
    qc("enqueue", f"sleep 300 & echo $! > {sleeping}; wait")
    worker = spawn("worker", "start")
    wait_until(lambda: sleeping.exists() and sleeping.read_text().strip(), 30, "the job's sleep")
    sleeper = int(sleeping.read_text())
    try:
        wait_until(lambda: wardens_of(worker.log().splitlines()[0]), 30, "the worker's warden")
        worker.proc.kill()
        worker.wait(10)
        wait_until(lambda: not pid_running(sleeper), 10, "the job's process to be killed")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)

    left = tmp_path / "left"
    # (in a queue of its own: the first job is to run again, rescued)
    qc("enqueue", "--queue", "q2", f"sleep 300 > /dev/null 2>&1 & echo $! > {left}")
    worker = spawn("worker", "start", "--burst", "--queue", "q2")  # its job ends, its sleep not
    assert worker.wait(30) == 0
    daemon = int(left.read_text())
    try:
        assert pid_running(daemon), "a stop as it should be killed what a job left on purpose"
        assert wardens_of(worker.log().splitlines()[0]) == []
    finally:
        os.kill(daemon, signal.SIGKILL)


@pytest.mark.parametrize("meanwhile", ["the job ends", "the worker dies"])
def test_worker_stop_from_another_process(qc, spawn, queue, env, tmp_path, meanwhile):
    """It waits for the running job. A worker that froze (SIGSTOP, a host cut off) or died
    meanwhile left the live workers as one that stops does, and was said "stopped" (QA): it is
    said presumed lost."""
    command, gate = gated(tmp_path, "echo done")
    job_id = ok(qc("enqueue", command)).strip()
    worker = spawn("worker", "start", "--count", "2")
    wait_until(lambda: queue.get(job_id).state == "processing")
    said = tmp_path / "stop.stderr"
    with open(said, "w") as stderr:
        stopping = subprocess.Popen([*QUEUECTL, "worker", "stop", "--timeout", "30"], env=env,
                                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        # It waits for the running job: let the job end (or its worker die) only then.
        wait_until(lambda: "waiting for 1 worker process" in said.read_text(), 30, said.read_text)
        assert said.read_text() == "waiting for 1 worker process to finish its jobs...\n"
        if meanwhile == "the job ends":
            gate.touch()
        else:
            worker.proc.kill()  # its job unfinished (its warden kills the job's processes)
        out, _ = stopping.communicate(timeout=60)
    finally:
        stop_process(stopping)
        gate.touch()
    assert stopping.returncode == 0, said.read_text()
    if meanwhile == "the worker dies":
        assert out.startswith("stopped 0 worker processes; 1 presumed lost, not stopped "), out
        return
    assert out == "stopped 1 worker process\n"
    assert worker.wait(30) == 0
    assert queue.get(job_id).state == "completed"  # its running job finished first
    assert qc("worker", "stop").stderr == "no workers running\n"


def test_worker_stop_right_after_worker_start_stops_it(qc, spawn, queue):
    """QA: `worker start &` then at once `worker stop` said "no workers running" and exited
    0 while the worker, still starting, ran on (5 of 5 on SQLite, 4 of 8 on PostgreSQL). It
    stops, whether `worker stop` finds it registered or it registers just after."""
    for _ in range(3):
        worker = spawn("worker", "start")
        assert qc("worker", "stop", "--timeout", "30").returncode == 0
        assert worker.wait(30) == 0, worker.log()
    job_id = ok(qc("enqueue", "true")).strip()  # and a worker started after it runs
    assert qc("worker", "start", "--burst").returncode == 0
    assert queue.get(job_id).state == "completed"


def test_worker_stop_stops_a_worker_whose_python_is_still_starting(qc, spawn, env, tmp_path,
                                                                   queue):
    """A suite run, once (4 runs of 24 under load): `worker start &`, then `worker stop`, whose
    stop came before the worker's Python had read the clock it took as its start. The worker
    took the stop for an older one and ran on. Its start is now its process's: here Python is
    held 1.5 s before queuectl loads, past the whole `worker stop`."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(1.5)\n")
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(slow), path]))
    worker = spawn("worker", "start")
    env.pop("PYTHONPATH") if path is None else env.update(PYTHONPATH=path)
    stopping = qc("worker", "stop", "--timeout", "30")
    assert (stopping.returncode, stopping.stderr) == (0, "no workers running\n")
    assert worker.wait(30) == 0
    assert "stopped" in worker.log().splitlines()[-1]
    spawn("worker", "start")  # and one started after that stop is not asked to stop
    engine = queue.open()
    try:
        live = wait_until(engine.live_workers, 30, "the next worker to register")
        assert [worker.stop_requested for worker in live] == [False]
    finally:
        engine.close()


def test_a_sqlite_url_with_options_is_refused_not_made_a_file_of_that_name(qc, tmp_path):
    line = one_error(qc("--db", "sqlite:///jobs.db?mode=ro", "status"), 1)
    assert "takes no options" in line
    assert list(tmp_path.glob("jobs.db*")) == []  # it made a file named 'jobs.db?mode=ro'


@pytest.mark.parametrize("kind", ["garbage", "directory", "foreign"])
def test_a_bad_database_is_one_line_exit_1(qc, tmp_path, kind):
    if kind == "garbage":
        target = tmp_path / "garbage.db"
        target.write_bytes(b"\x00\x01 not sqlite at all " * 200)
    elif kind == "directory":
        target = tmp_path
    else:
        import sqlite3

        target = tmp_path / "other.db"
        with sqlite3.connect(target) as conn:
            conn.execute("CREATE TABLE users (name TEXT)")
        conn.close()
    for args in (["status"], ["enqueue", "true"], ["worker", "start", "--burst"]):
        line = one_error(qc("--db", str(target), *args), 1)
        assert line.startswith("Error: ") and str(target) in line


def test_inputs_that_were_quietly_taken_otherwise_are_refused(qc, queue):
    """Each was accepted and meant something else than what was typed: an empty --db (a
    script's unset variable) opened $QUEUECTL_DB or the default queue; of two `command` keys
    the last won; an empty cwd became the current directory; an empty zone became UTC."""
    assert "--db names no database" in one_error(qc("--db", "", "enqueue", "echo x"), 1)
    assert "key 'command' given twice" in one_error(
        qc("enqueue", '{"command": "rm -rf build", "command": "make"}'), 2)
    assert "'cwd' is empty" in one_error(qc("enqueue", '{"command": "make", "cwd": ""}'), 2)
    assert "unknown time zone ''" in one_error(
        qc("schedule", "add", "nightly", "@daily", "make", "--tz", ""), 2)
    assert jq(qc, "status")["pending"] == 0  # nothing enqueued where $QUEUECTL_DB points
    assert jq(qc, "schedule", "list") == []


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_queuectl_db_is_refused_as_an_empty_db_is(env, tmp_path, value):
    """`QUEUECTL_DB=$UNSET` (a script's typo) opened, and created, the default queue."""
    env = {**env, "QUEUECTL_DB": value, "XDG_DATA_HOME": ""}  # the default: under $HOME
    done = subprocess.run([*QUEUECTL, "enqueue", "echo x"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "QUEUECTL_DB names no database" in one_error(done, 1)  # a bad target (SPEC 2)
    assert not (tmp_path / ".local").exists()  # the default queue ($HOME is tmp_path) not made


def test_a_deleted_current_directory_is_one_line_not_a_traceback(qc, tmp_path, env):
    gone = tmp_path / "gone"

    def from_gone(*args: str) -> subprocess.CompletedProcess:
        gone.mkdir()
        script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
        return subprocess.run(["sh", "-c", script, "sh", str(gone), *QUEUECTL, *args],
                              env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert "give 'cwd'" in one_error(from_gone("schedule", "add", "s", "@hourly", "pwd"), 1)
    assert "give 'here.db' as an absolute path" in one_error(
        from_gone("--db", "here.db", "status"), 1)
    assert jq(qc, "schedule", "list") == []


def test_bad_inputs_of_the_spec(qc, tmp_path, queue):
    too_many = qc("enqueue", '{"command": "x", "max_retries": 2147483648}')
    assert "'max_retries' must be from 0 to 2147483647" in one_error(too_many, 2)
    assert "unknown key" in one_error(qc("enqueue", '{"command": "x", "nope": 1}'), 2)
    wrong_type = qc("enqueue", '{"command": "x", "priority": "high"}')
    assert "must be a whole number" in one_error(wrong_type, 2)
    assert "'command' is empty" in one_error(qc("enqueue", '{"command": " "}'), 2)
    ok(qc("enqueue", "--id", "dup", "true"))
    assert "duplicate id" in one_error(qc("enqueue", "--id", "dup", "true"), 2)
    assert "line 2:" in one_error(qc("enqueue", "--file", "-", input='echo a\n{"command": 1}\n'), 2)
    assert "no job" in one_error(qc("show", "zzzz"), 1)
    assert "is not dead" in one_error(qc("dlq", "retry", "dup"), 1)
    assert "unknown config key" in one_error(qc("config", "set", "colour", "red"), 2)
    listed = qc("list", "--state", "finished")
    assert listed.returncode == 2
    assert "pending, processing, completed, failed, dead" in listed.stderr
    assert [job["id"] for job in jq(qc, "list")] == ["dup"]  # nothing else was enqueued
    assert jq(qc, "config", "list").items() >= {
        "max-retries": 3, "backoff-base": 2, "job-timeout": 300, "retention": 0
    }.items()


def test_bare_queuectl_when_piped_prints_help(qc):
    done = qc(input="")
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: queuectl")


@pytest.mark.postgres
def test_the_cli_on_postgresql(qc, spawn, pg_target):
    def pg(*args, **kwargs):
        return qc("--db", pg_target, *args, **kwargs)

    ok(pg("config", "set", "max-retries", "1"))
    good = ok(pg("enqueue", "echo from postgres")).strip()
    bad = ok(pg("enqueue", "exit 4")).strip()
    worker = spawn("--db", pg_target, "worker", "start", "--burst", "--count", "2")
    assert worker.wait(30) == 0, worker.log()
    assert json.loads(ok(pg("status", "--json")))["completed"] == 1
    assert json.loads(ok(pg("show", good, "--json")))["output"] == "from postgres\n"
    assert [job["id"] for job in json.loads(ok(pg("dlq", "list", "--json")))] == [bad]
    assert ok(pg("dlq", "retry", bad)).strip() == bad
    assert json.loads(ok(pg("status", "--json")))["pending"] == 1


@pytest.mark.postgres
def test_the_worker_s_first_line_hides_the_database_password(pg_target):
    """It logged `on postgresql://user:PASSWORD@host/db` (a log kept by journald)."""
    from urllib.parse import urlparse

    from queuectl.cli import cli
    from click.testing import CliRunner

    url = urlparse(pg_target)
    assert url.password, "the test server's URL has a password"
    result = CliRunner().invoke(cli, ["--db", pg_target, "worker", "start", "--burst"])
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert f" running 1 thread(s) (burst) on postgresql://{url.username}:***@{url.hostname}" \
        in first  # fmt: skip
    assert f":{url.password}@" not in result.output


def test_a_stop_while_a_result_waits_for_room_says_it_waits_for_it(tiny_disk, tmp_path):
    """QA: a job that ended on a full disk still holds its job until its result is stored, and
    the stop waits for that, but the stop line said "stopping after 0 running job(s) finish"."""
    from queuectl import Queue
    from support import fill

    from .conftest import FreshQueue, Spawned

    db = str(tiny_disk / "queue.db")
    env = {**__import__("os").environ, "QUEUECTL_DB": db, "PYTHONUNBUFFERED": "1",
           "HOME": str(tmp_path)}  # fmt: skip
    command, gate = gated(tmp_path, "echo finished")
    made = Queue(db)
    job_id = made.enqueue(command).id
    made.close()
    queue = FreshQueue(db)
    worker = Spawned(["worker", "start"], env, tmp_path, tmp_path / "worker.log")
    try:
        wait_until(lambda: queue.get(job_id).state == "processing", 30, worker.log)
        filler = fill(tiny_disk)
        gate.touch()
        wait_until(lambda: "full" in worker.log(), 30, worker.log)  # its result refused
        worker.signal(signal.SIGTERM)
        said = "SIGTERM: stopping after 0 running job(s) finish, and 1 result(s) are stored"
        wait_until(lambda: said in worker.log(), 30, worker.log)
        filler.unlink()
        assert worker.wait(30) == 0, worker.log()
        job = queue.get(job_id)
        assert (job.state, job.output) == ("completed", "finished\n")
    finally:
        worker.cleanup()


def test_work_goes_on_once_room_is_made_on_a_disk_the_wal_filled(tiny_disk, tmp_path):
    """QA: on a small disk the WAL (copied into the file only at 4,000 pages, ~4 MB) filled it;
    the room a user then made went to the WAL too, which filled the disk again within seconds,
    and the queue did no more work however long it waited. Once a write is refused for a full
    disk, each write first copies the WAL into the file, so the WAL starts again from its
    beginning instead of growing."""
    from .conftest import FreshQueue

    worker, db, gate = _worker_on_a_copy(400, tiny_disk, tmp_path, "512k")
    gate.touch()
    reader = FreshQueue(str(db))
    try:
        wait_until(lambda: "cannot be written" in worker.log(), 60, worker.log)
        done = reader.counts()["completed"]
        assert done < 400, "the disk filled before the jobs were done"
        # Room for what the WAL holds to be copied into the file, and more.
        subprocess.run(["mount", "-o", "remount,size=1m", str(tiny_disk)], check=True, timeout=30)
        wait_until(lambda: reader.counts()["completed"] == 400, 60,
                   lambda: f"{reader.counts()}\n{worker.log()}")  # fmt: skip
    finally:
        worker.cleanup()


def test_a_worker_opened_on_a_disk_with_less_room_than_a_wal_keeps_its_wal_short(
        tiny_disk, tmp_path):  # fmt: skip
    """QA: on a 4 MB disk, a worker's WAL (copied into the file only at 4,000 pages) filled the
    disk before any write was refused; the file then had no room to take it in, and the queue
    stalled until room was made. A connection opened on a disk without room for two such WALs
    copies its WAL into the file every 100 pages: 900 jobs run there, none refused."""
    import os

    from queuectl import JobSpec

    from .conftest import FreshQueue, Spawned

    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True, timeout=30)
    db = tiny_disk / "queue.db"
    queue = FreshQueue(str(db))
    env = {**os.environ, "QUEUECTL_DB": str(db), "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    worker = Spawned(["worker", "start", "--count", "2"], env, tmp_path, tmp_path / "worker.log")
    try:
        for batch in range(3):
            queue.enqueue_many([JobSpec(command="true") for _ in range(300)])
            wait_until(lambda: queue.counts()["completed"] == 300 * (batch + 1), 60,
                       lambda: f"{queue.counts()}\n{worker.log()[-2000:]}")  # fmt: skip
        assert "cannot be written" not in worker.log()
        assert os.path.getsize(f"{db}-wal") < 1_000_000
    finally:
        worker.cleanup()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``signum`` (/proc: SigCgt)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def test_a_sigterm_before_the_worker_is_running_exits_0_at_once(tmp_path):
    """QA: a SIGTERM 0.1-0.6 s after `worker start` (while it imported, opened the database)
    ended it with 143, "stopped hard", where a stop with nothing running exits 0. Here the
    start waits for the database's write lock (a migration to make), held by another
    connection: the signal ends it at once, with 0, the lock still held."""
    import os
    import sqlite3

    from queuectl import Queue

    from .conftest import Spawned

    db = tmp_path / "queue.db"
    queue = Queue(str(db))
    queue.enqueue("true")
    queue.db.execute_sql('ALTER TABLE "job_dep" DROP COLUMN "dep_id"')  # back to schema 16
    queue.db.execute_sql("UPDATE queuectl_schema SET value = '16' WHERE key = 'version'")
    queue.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    env = {**os.environ, "QUEUECTL_DB": str(db), "HOME": str(tmp_path)}
    worker = Spawned(["worker", "start"], env, tmp_path, tmp_path / "worker.log")
    try:
        wait_until(lambda: _catches(worker.proc.pid, signal.SIGTERM), 30, "its handler")
        worker.signal(signal.SIGTERM)
        assert worker.wait(10) == 0, worker.log()
        assert worker.log() == "queuectl: SIGTERM before the worker started: exiting\n"
    finally:
        holder.rollback()
        holder.close()
        worker.cleanup()
    reopened = Queue(str(db))
    try:
        assert reopened.counts()["pending"] == 1, "the queue is as it was, and opens"
    finally:
        reopened.close()


def test_room_made_smaller_than_the_wal_goes_to_the_database(tiny_disk, tmp_path):
    """QA's second look: room made for a stalled queue, less than the WAL file already held,
    was used up again by the database, growing, while the WAL kept the room it had: written
    again from its start, it was never made shorter. After a refusal the WAL is now cut back to
    nothing once no one else reads or writes, so its room goes to the database."""
    import contextlib
    import os

    from .conftest import FreshQueue

    worker, db, gate = _worker_on_a_copy(3000, tiny_disk, tmp_path, "2176k")  # (file: 1.1 MB)
    (tiny_disk / "filler").write_bytes(b"x" * 300_000)
    gate.touch()
    reader = FreshQueue(str(db))
    wal = [0]  # the longest the WAL was seen, up to the refusal (it is cut back soon after)

    def refused() -> bool:
        with contextlib.suppress(FileNotFoundError):
            wal[0] = max(wal[0], os.path.getsize(f"{db}-wal"))
        return "cannot be written" in worker.log()

    try:
        wait_until(refused, 60, worker.log)
        assert reader.counts()["completed"] < 3000, "the disk filled before the jobs were done"
        assert wal[0] > 300_000, f"the WAL ({wal[0]} bytes) holds more than the room made"
        (tiny_disk / "filler").unlink()
        wait_until(lambda: reader.counts()["completed"] == 3000, 120,
                   lambda: f"{reader.counts()}\n{worker.log()[-2000:]}")  # fmt: skip
    finally:
        worker.cleanup()


def _worker_on_a_copy(jobs: int, disk, tmp_path, size: str):
    """``jobs`` jobs enqueued where there is room, the file copied onto ``disk`` (its WAL
    empty), and `worker start --count 2` on it, started while the disk has room for its WALs
    (a process that opens a low disk keeps its WAL short from the start, see
    db.LOW_DISK_AUTOCHECKPOINT_PAGES), the disk then made ``size`` (a mount's `size=`). The jobs
    wait for the gate to run (`true` then): two have started. The worker, the file's path, and
    the gate."""
    import os
    import shutil

    from queuectl import JobSpec, Queue

    from .conftest import FreshQueue, Spawned

    gate = tmp_path / "gate"
    made = tmp_path / "made.db"
    queue = Queue(str(made))
    command = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    queue.enqueue_many([JobSpec(command=command) for _ in range(jobs)])
    queue.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    queue.close()
    subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True, timeout=30)
    db = disk / "queue.db"
    shutil.copy(made, db)
    env = {**os.environ, "QUEUECTL_DB": str(db), "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    worker = Spawned(["worker", "start", "--count", "2"], env, tmp_path, tmp_path / "worker.log")
    reader = FreshQueue(str(db))
    wait_until(lambda: reader.counts()["processing"] == 2, 60, worker.log)
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True, timeout=30)
    return worker, db, gate


def test_worker_start_on_a_full_disk_waits_for_room(tiny_disk, tmp_path):
    """QA: `worker start` on a queue whose disk was full exited 1 at once ("database error:
    database or disk is full"), where a running worker waits for room; a supervisor that
    restarts it on failure started it again and again. It waits to start now, and a stop
    signal meanwhile ends it with 0."""
    import os

    from queuectl import Queue
    from support import fill

    from .conftest import FreshQueue, Spawned

    db = tiny_disk / "queue.db"
    queue = Queue(str(db))
    ids = [queue.enqueue("true").id for _ in range(3)]
    queue.close()
    filler = fill(tiny_disk)
    env = {**os.environ, "QUEUECTL_DB": str(db), "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    waiting = "; starting once there is room"
    stopped = Spawned(["worker", "start"], env, tmp_path, tmp_path / "stopped.log")
    worker = None
    try:
        wait_until(lambda: waiting in stopped.log(), 30, stopped.log)
        stopped.signal(signal.SIGTERM)
        assert stopped.wait(10) == 0, stopped.log()
        assert "SIGTERM: stopped before it started" in stopped.log()
        worker = Spawned(["worker", "start", "--burst"], env, tmp_path, tmp_path / "worker.log")
        wait_until(lambda: waiting in worker.log(), 30, worker.log)
        filler.unlink()
        assert worker.wait(60) == 0, worker.log()
        assert [FreshQueue(str(db)).get(job_id).state for job_id in ids] == ["completed"] * 3
    finally:
        stopped.cleanup()
        if worker is not None:
            worker.cleanup()



def test_worker_start_behind_another_process_s_write_lock_waits_for_it():
    """QA: `worker start` while another process held the write lock past the busy timeout
    exited 1 ("database error: database is locked"). Its start is tried again, said once, in
    words (SPEC 2: no user sees "database is locked"); anything else still ends it."""
    import peewee

    from queuectl.cli.worker import Stopper, _started_once_there_is_room

    lines, tries = [], []

    class Log:
        def line(self, thread, text):
            lines.append(text)

    def started():
        tries.append(1)
        if len(tries) < 3:
            raise peewee.OperationalError("database is locked")
        return "the pool"

    assert _started_once_there_is_room(started, Stopper(), Log()) == "the pool"
    assert lines == ["warning: the database cannot be written (another process holds the "
                     "database's write lock); starting once it lets go"]  # fmt: skip

    def broken():
        raise peewee.OperationalError("no such table: job")

    with pytest.raises(peewee.OperationalError):
        _started_once_there_is_room(broken, Stopper(), Log())


@contextlib.contextmanager
def beside_a_write_lock(db_path: str, tmp_path, *args: str, locked_first: bool = False):
    """`queuectl ARGS` on the SQLite file ``db_path``, and another process's connection to it
    (``locker``: its `BEGIN EXCLUSIVE` takes the write lock; ``locked_first``: taken before the
    command starts); both ended afterwards, the lock let go."""
    import sqlite3

    from .conftest import Spawned

    env = {**os.environ, "QUEUECTL_DB": db_path, "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    locker = sqlite3.connect(db_path, isolation_level=None)
    if locked_first:
        locker.execute("BEGIN EXCLUSIVE")
    worker = Spawned(list(args), env, tmp_path, tmp_path / "worker.log")
    try:
        yield worker, locker
    finally:
        if locker.in_transaction:
            locker.execute("COMMIT")
        locker.close()
        worker.cleanup()


@pytest.mark.parametrize("while_it_runs", [False, True])
def test_a_stop_behind_another_process_s_write_lock_keeps_to_the_stop_timeout(db_path, tmp_path,
                                                                               while_it_runs):
    """QA: `worker start --stop-timeout 10`, a job's result waiting for another process's
    write lock, and SIGTERM: it exited after 71 s (the 60 s busy timeout, then the stop
    timeout). The store's wait ends with the stop timeout; the job is left to be rescued.
    ``while_it_runs``: the lock taken before the job ends, so that a heartbeat waits for it
    first, holding this process's writers' turn (QA: a stop waited out a 40 s lock)."""
    import time

    from queuectl import Queue

    from .conftest import FreshQueue

    queue = Queue(db_path)
    command, gate = gated(tmp_path, "echo done")
    job_id = queue.enqueue(command).id
    queue.close()
    with beside_a_write_lock(db_path, tmp_path, "worker", "start", "--stop-timeout", "2") as (
        worker, locker
    ):
        wait_until(lambda: FreshQueue(db_path).get(job_id).state == "processing", 30)
        locker.execute("BEGIN EXCLUSIVE")  # held for the rest of the test
        if while_it_runs:
            time.sleep(1.5)  # (a heartbeat into its wait)
        gate.touch()  # the job ends; its result waits for the lock
        time.sleep(0.5)  # (into the store's wait)
        worker.signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert worker.wait(30) == 1, worker.log()  # well before the busy timeout's 60 s
        assert time.monotonic() - stopped < 20
        last = worker.log().rstrip().splitlines()[-1]  # (as the pool ends, or left at its end)
        assert "stopped with 1 result(s) not stored" in last, worker.log()
        assert last.endswith('their jobs are rescued as "worker lost"'), worker.log()


def test_an_idle_stop_behind_another_process_s_write_lock_says_it_in_words(db_path, tmp_path):
    """QA: `--stop-timeout 1`, no job, another process's write lock: "delivering hooks failed
    (database is locked)", "unregistering failed (database is locked)", exit 0, its row left.
    SPEC 2: no user sees "database is locked"; the stop says it could not unregister."""
    from queuectl import Queue

    Queue(db_path).close()
    with beside_a_write_lock(db_path, tmp_path, "worker", "start", "--stop-timeout", "1") as (
        worker, locker
    ):
        wait_until(lambda: " running 1 thread" in worker.log(), 30, worker.log)
        locker.execute("BEGIN EXCLUSIVE")  # held until the worker is gone
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 1, worker.log()
        log = worker.log()
        assert "database is locked" not in log, log
        assert ("unregistering failed (another process holds the database's write lock)"
                in log), log  # fmt: skip
        assert ("the database could not be written within the stop timeout: this worker is read "
                "as live until its lease runs out") in log, log  # fmt: skip


def test_a_stop_signal_ends_worker_start_waiting_behind_a_write_lock(db_path, tmp_path):
    """QA: `worker start` behind another process's write lock took a SIGTERM only once its
    registration had waited out the 60 s busy timeout, or the lock went: then it started and
    ran a job first. The signal ends the wait: exit 0 at once, nothing run."""
    import time

    from queuectl import Queue

    from .conftest import FreshQueue

    queue = Queue(db_path)
    job_id = queue.enqueue("true").id
    queue.close()
    with beside_a_write_lock(db_path, tmp_path, "worker", "start", locked_first=True) as (
        worker, _
    ):
        time.sleep(2)  # (into its registration's wait; a signal before it exits 0 at once too)
        worker.signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert worker.wait(30) == 0, worker.log()
        assert time.monotonic() - stopped < 15, "it waited for the busy timeout"
    assert "running" not in worker.log(), worker.log()
    assert FreshQueue(db_path).get(job_id).state == "pending"
