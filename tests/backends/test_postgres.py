"""PostgreSQL specifics: driver and connection errors, SKIP LOCKED claims, LISTEN/NOTIFY
wake-ups, and workers on several "hosts" sharing one queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from queuectl import JobSpec, Queue, QueueError
from queuectl.executor import RunResult
from support import wait_until

HERE = Path(__file__).parent


def test_missing_driver_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from queuectl import Queue, QueueError\n"
        "try:\n    Queue('postgresql://u@127.0.0.1/db')\n"
        "except QueueError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # Not `pip install 'queuectl[postgres]'`: that name is another project's on the index.
    assert "pip install 'psycopg[binary]'" in out.stdout, out.stderr
    assert "pip install '.[postgres]'" in out.stdout


def test_connections_give_up_on_a_silent_network(pg_target):
    """QA: a host cut off without a word was never noticed: libpq waited for the kernel's
    defaults (two hours idle). Keepalives and a TCP user timeout are set, unless the URL says."""
    queue = Queue(pg_target)
    try:
        settings = queue.db.connection().info.get_parameters()
        assert (settings["keepalives_idle"], settings["tcp_user_timeout"]) == ("10", "15000")
    finally:
        queue.close()
    separator = "&" if "?" in pg_target else "?"
    mine = Queue(f"{pg_target}{separator}keepalives_idle=30")
    try:
        assert mine.db.connection().info.get_parameters()["keepalives_idle"] == "30"
    finally:
        mine.close()


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(QueueError, match=r"cannot connect to postgresql://queuectl:\*\*\*@"):
        Queue("postgresql://queuectl:secret@127.0.0.1:1/nothing")


def test_a_foreign_schema_is_refused_and_left_alone(pg_target):
    """Another program's tables, one named as one of ours (`config`): it was kept, the queue's
    tables were made around it, and `enqueue` went on to write there."""
    from playhouse.db_url import connect

    other = connect(pg_target, prefer_psycopg3=True)
    other.execute_sql("CREATE TABLE config (k TEXT, v TEXT)")
    other.execute_sql("INSERT INTO config VALUES ('mine', 'precious')")
    try:
        with pytest.raises(QueueError, match="not a queuectl database"):
            Queue(pg_target)
        assert other.get_tables() == ["config"]
        assert other.execute_sql("SELECT * FROM config").fetchall() == [("mine", "precious")]
    finally:
        other.close()


def test_concurrent_claims_never_share_a_job(pg_target):
    queue = Queue(pg_target)
    queue.enqueue_many([JobSpec(command=f"echo {i}") for i in range(200)])
    worker = queue.register_worker(threads=4)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all():
        try:
            while (job := queue.claim(worker)) is not None:
                with lock:
                    claimed.append(job.id)
        finally:
            queue.close()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(claimed) == 200
    assert len(set(claimed)) == 200
    assert queue.counts()["processing"] == 200


def test_listen_notify_wakes_a_watcher_on_enqueue(pg_target):
    queue = Queue(pg_target)
    watcher = queue.change_detector()
    try:
        assert watcher.wait(0.05) is False
        other = threading.Thread(target=lambda: (queue.enqueue("true"), queue.close()))
        other.start()
        assert watcher.wait(30) is True
        other.join()
    finally:
        watcher.close()


def test_queues_in_two_schemas_do_not_wake_each_other(pg_target):
    import psycopg

    server, _, _ = pg_target.partition("?")
    schema = f"test_other_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        mine = Queue(pg_target)
        other = Queue(f"{server}?options=-csearch_path%3D{schema}")
        assert mine.channel != other.channel
        watcher = mine.change_detector()
        try:
            other.enqueue("true")
            assert watcher.wait(0.3) is False  # the other queue's news is not ours
            mine.enqueue("true")
            assert watcher.wait(30) is True
        finally:
            watcher.close()
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def hosts(pg_target, tmp_path):
    """Start worker processes posing as hosts; all are killed at the end. A host's stderr goes
    to ``HOST.log`` in the test's directory."""
    started: list[subprocess.Popen] = []

    def start(host: str, threads: int = 2, lease: float = 2.0) -> subprocess.Popen:
        with open(tmp_path / f"{host}.log", "w") as errors:
            process = subprocess.Popen(
                [sys.executable, str(HERE / "worker_host.py"), pg_target, host, str(threads),
                 str(lease)],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                start_new_session=True,
            )
        started.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_several_hosts_run_each_job_once_and_rescue_a_vanished_host(pg_target, hosts, tmp_path):
    log = tmp_path / "ran.log"
    queue = Queue(pg_target, lease=2.0)
    queue.config_set("backoff-base", 1)
    # The first job sleeps long enough for its host to be killed under it, once.
    marker = tmp_path / "slept-once"
    slow = JobSpec(
        id="slow-job",
        command=f"if [ ! -e {marker} ]; then echo $$ > {marker}; sleep 60; fi; "
        f"echo slow-job >> {log}",
        priority=10,
    )
    queue.enqueue(slow)
    doomed = hosts("host-a", threads=1)  # busy with the slow job only
    wait_until(lambda: marker.exists() and marker.read_text().strip(), message="slow job started")
    assert queue.get("slow-job").worker.startswith("host-a:")
    # The survivors' lease is long enough that a survivor the loaded machine stalls for a few
    # seconds is not taken for lost by the other (its job would run twice, rightly).
    survivors = [hosts("host-b", lease=6.0), hosts("host-c", lease=6.0)]
    queue.enqueue_many(
        [JobSpec(id=f"job-{i:03}", command=f"echo job-{i:03} >> {log}") for i in range(499)]
    )
    # host-a vanishes: no goodbye, no heartbeat. Another host must rescue its job after the lease.
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(30)
    # Its job's own process group lives on, as it would on a real host that lost its worker;
    # end it so that it cannot write to the log later.
    os.killpg(int(marker.read_text()), signal.SIGKILL)
    wait_until(lambda: queue.counts()["completed"] == 500, timeout=120, message="500 completed")
    lines = log.read_text().split()
    assert sorted(lines) == sorted(["slow-job"] + [f"job-{i:03}" for i in range(499)])
    rescued = queue.get("slow-job")
    assert rescued.attempts == 2
    assert not rescued.worker.startswith("host-a:")
    assert queue.counts() == {"pending": 0, "processing": 0, "completed": 500, "failed": 0, "dead": 0, "cancelled": 0}
    hosts_that_ran = {job.worker.split(":")[0] for job in queue.list_jobs(state="completed")}
    assert hosts_that_ran == {"host-b", "host-c"}
    for survivor in survivors:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(30) == 0


@pytest.mark.parametrize("retry", ["retry", "retry_dead"])
def test_a_retry_of_a_job_purged_as_it_is_retried_finds_no_job(pg_target, monkeypatch, retry):
    """QA: `retry ID` (and `dlq retry ID`) racing `purge` exited 0, saying nothing, for a job
    that was gone: the row purged between the id's look-up and its lock was left out. It is
    now the unknown job it has become: exit 1, and the other ids given are not retried."""
    queue, purger = Queue(pg_target), Queue(pg_target)
    queue.enqueue(JobSpec(command="false", id="kept", max_retries=0))
    queue.enqueue(JobSpec(command="false", id="gone", max_retries=0, queue="purged"))
    worker = queue.register_worker(1)
    for _ in range(2):
        job = queue.claim(worker)
        queue.finish(job, RunResult(1, "exit code 1", ""), worker)  # dead
    look_up = queue._named  # the ids' look-up, before their rows are locked

    def purged_after_the_look_up(prefixes: list[str]):
        found = look_up(prefixes)
        assert [job.id for job in found] == ["kept", "gone"]
        assert purger.purge(["dead"], queue="purged") == 1
        return found

    monkeypatch.setattr(queue, "_named", purged_after_the_look_up)
    with pytest.raises(QueueError, match="no job 'gone'"):
        getattr(queue, retry)(["kept", "gone"])
    assert [(job.id, job.state) for job in queue.list_jobs()] == [("kept", "dead")]
    purger.close()


def test_two_retries_of_every_dead_job_at_once_list_each_job_once(pg_target):
    """QA: two `dlq retry --all` at the same moment both printed every id (1 in 4 tries): the
    second read the dead jobs before the first committed, then revived none of them."""
    first, second = Queue(pg_target), Queue(pg_target)
    try:
        worker = first.register_worker(1)
        for _ in range(3):
            first.enqueue(JobSpec(command="false", max_retries=1))
            first.finish(first.claim(worker), RunResult(1, "exit code 1", ""), worker)
        listed: list[list[str]] = []
        assert first.counts()["dead"] == 3, first.counts()
        with first.db.atomic():  # the first's retry, not yet committed as the second asks
            revived = first.retry_all_dead()
            holding = first.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            racing = threading.Thread(target=lambda: listed.append(second.retry_all_dead()))
            racing.start()
            # It waits on the first's rows (without the lock, having read them): counted by the
            # session it waits for, not by every session waiting on this server.
            wait_until(lambda: blocked_by(first, holding), 30, "the second to wait")
        racing.join(30)
        assert len(revived) == 3 and listed == [[]]
        assert first.counts()["pending"] == 3
    finally:
        second.close()
        first.close()


def test_a_worker_stop_racing_the_first_registration_still_stops_it(pg_target):
    """CI: `worker start &` then at once `worker stop`, on a database no `worker stop` had yet
    run on, left the worker running (1 in some hundreds). The registration read "no stop asked"
    (no row to lock), the stop wrote its time and asked the registered workers (the new one
    not yet committed: none), and the registration committed, asked nothing. A stop that comes
    while a registration is uncommitted now waits for it, and asks it too."""
    starting, stopping, watcher = Queue(pg_target), Queue(pg_target), Queue(pg_target)
    asked: list[int] = []
    try:
        with starting.db.atomic():  # the registration, its read of the stop's time done
            worker = starting.register_worker(1, started_at=starting.clock())
            holding = starting.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            racing = threading.Thread(target=lambda: asked.append(stopping.request_stop()))
            racing.start()
            # Without the wait the stop ends here, before the registration commits.
            wait_until(lambda: asked or blocked_by(watcher, holding), 30, "the stop to end or wait")
        racing.join(30)
        assert asked == [1], "the stop found the new worker once it was registered"
        assert starting.heartbeat(worker, 1) is True
    finally:
        for queue in (starting, stopping, watcher):
            queue.close()


def blocked_by(watcher: Queue, pid: int) -> int:
    """How many server sessions wait for a lock that session ``pid`` holds (other tests' sessions,
    on the same server at the same time, are not counted)."""
    return watcher.db.execute_sql(
        "SELECT pg_stat_clear_snapshot(), COUNT(*) FROM pg_stat_activity "
        "WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    ).fetchone()[1]


@pytest.mark.parametrize("where", ["url", "PGOPTIONS"])
def test_a_server_giving_floats_to_6_digits_still_stores_results(pg_target, monkeypatch, where):
    """QA: with extra_float_digits 0 (PostgreSQL's default before 12, or set for a role or a
    database) times read back to 6 digits, no run matched its claim, and no job ever finished
    ("its result is not stored", processing for ever)."""
    from queuectl import WorkerPool

    if where == "url":
        target = pg_target + "%20-cextra_float_digits%3D0"
    else:
        target = pg_target.split("?options=")[0]
        schema = pg_target.split("search_path%3D")[1]
        monkeypatch.setenv("PGOPTIONS", f"-c search_path={schema} -c extra_float_digits=0")
    queue = Queue(target)
    try:
        assert queue.db.execute_sql("SHOW extra_float_digits").fetchone()[0] == "3"
        job = queue.enqueue("echo hi")
        pool = WorkerPool(queue, 1, burst=True).start()
        assert pool.join(30)
        stored = queue.get(job.id)
        assert (stored.state, stored.output) == ("completed", "hi\n")
    finally:
        queue.close()
