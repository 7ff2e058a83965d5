"""The queue's lifecycle rules (SPEC 3), stepped through with the injected clock: claims, the retry
arithmetic, leases and rescue, the DLQ, ids and prefixes, config. No sleeping through backoffs."""

from __future__ import annotations

import sqlite3
import subprocess
import threading

import pytest

from queuectl import InvalidInput, JobSpec, Queue, QueueError
from queuectl import queue as queue_module
from queuectl import registry
from queuectl.db import SqliteQueueDatabase
from queuectl.executor import RunResult
from support import wait_until

FAIL = RunResult(1, "exit code 1", "boom\n")
OK = RunResult(0, None, "fine\n")


@pytest.fixture
def q(any_queue):
    """These rules hold on both backends: every test here runs on SQLite and on PostgreSQL."""
    return any_queue


@pytest.fixture
def wid(q):
    """A registered, live worker of this process."""
    return q.register_worker(1)


def run_once(q: Queue, wid: str, result: RunResult = FAIL) -> Job:
    job = q.claim(wid)
    assert job is not None, "expected a claimable job"
    stored = q.finish(job, result, wid)
    assert stored is not None
    return q.get(job.id)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# -- claims and attempts --------------------------------------------------------------------


def test_attempts_are_counted_at_claim(q, wid, clock):
    job = q.enqueue("true")
    assert job.attempts == 0 and job.state == "pending"
    claimed = q.claim(wid)
    assert claimed.id == job.id
    assert claimed.attempts == 1
    assert claimed.state == "processing"
    assert claimed.worker == wid
    assert claimed.started_at == clock.now
    stored = q.get(job.id)
    assert (stored.state, stored.attempts, stored.worker) == ("processing", 1, wid)
    assert q.claim(wid) is None  # nothing else is claimable; a processing job is not


def test_success_completes_with_output(q, wid, clock):
    job = q.enqueue("true")
    clock.advance(5)
    stored = run_once(q, wid, OK)
    assert stored.id == job.id
    assert (stored.state, stored.exit_code, stored.error, stored.attempts) == (
        "completed", 0, None, 1,
    )
    assert stored.output == "fine\n"
    assert stored.finished_at == clock.now
    assert q.counts() == {"pending": 0, "processing": 0, "completed": 1, "failed": 0, "dead": 0, "cancelled": 0}


def test_default_retry_schedule_t_t2_t6_then_dead(q, wid, clock):
    t = clock.now
    job = q.enqueue("false")

    first = run_once(q, wid)
    assert (first.state, first.attempts, first.error, first.exit_code) == (
        "failed", 1, "exit code 1", 1,
    )
    assert first.run_at == t + 2
    assert first.output == "boom\n"

    clock.advance(1.999)
    assert q.claim(wid) is None, "a failed job is not claimable before its run_at"
    clock.now = t + 2
    second = run_once(q, wid)
    assert (second.state, second.attempts) == ("failed", 2)
    assert second.run_at == t + 2 + 4

    clock.now = t + 5.999
    assert q.claim(wid) is None
    clock.now = t + 6
    third = run_once(q, wid)
    assert (third.id, third.state, third.attempts, third.error) == (job.id, "dead", 3, "exit code 1")
    clock.advance(10_000)
    assert q.claim(wid) is None, "a dead job is never claimed"


def test_job_max_retries_overrides_config(q, wid, clock):
    q.config_set("max-retries", 1)
    job = q.enqueue(JobSpec(command="false", max_retries=4))
    for attempt in (1, 2, 3):
        stored = run_once(q, wid)
        assert (stored.state, stored.attempts) == ("failed", attempt)
        clock.now = stored.run_at
    assert run_once(q, wid).state == "dead"
    assert q.get(job.id).attempts == 4

    q.config_set("max-retries", 5)
    short = q.enqueue(JobSpec(command="false", max_retries=1))
    stored = run_once(q, wid)
    assert (stored.id, stored.state, stored.attempts) == (short.id, "dead", 1)


@pytest.mark.parametrize("limit", [0, 1])
def test_max_retries_0_or_1_dead_after_first_failed_run(q, wid, limit):
    q.config_set("max-retries", limit)
    assert run_once(q, wid).state == "dead" if q.enqueue("false") else False
    job = q.enqueue(JobSpec(command="false", max_retries=limit))
    q.config_set("max-retries", 3)
    stored = run_once(q, wid)
    assert (stored.id, stored.state, stored.attempts) == (job.id, "dead", 1)


def test_config_is_read_at_decision_time(q, wid, clock):
    q.config_set("max-retries", 5)
    job = q.enqueue("false")
    first = run_once(q, wid)
    assert first.state == "failed" and first.run_at == clock.now + 2

    q.config_set("backoff-base", 3)  # changed between runs: the next failure uses it
    clock.now = first.run_at
    second = run_once(q, wid)
    assert second.state == "failed" and second.run_at == clock.now + 3**2

    q.config_set("max-retries", 3)
    clock.now = second.run_at
    third = run_once(q, wid)
    assert (third.id, third.state, third.attempts) == (job.id, "dead", 3)


def test_job_timeout_overrides_config_read_at_claim(q, wid):
    plain = q.enqueue("true")
    own = q.enqueue(JobSpec(command="true", timeout=7))
    assert q.timeout_for(q.get(plain.id)) == 300
    assert q.timeout_for(q.get(own.id)) == 7
    q.config_set("job-timeout", 42)
    assert q.timeout_for(q.get(plain.id)) == 42
    assert q.timeout_for(q.get(own.id)) == 7


def test_a_run_gets_the_job_timeout_configured_when_it_was_claimed(q, wid):
    own = q.enqueue(JobSpec(command="true", timeout=7))
    plain = q.enqueue("true")
    q.config_set("job-timeout", 42)
    first, second = q.claim(wid), q.claim(wid)
    assert first.id == own.id and second.id == plain.id
    q.config_set("job-timeout", 5)  # after the claim: this run keeps what it started with
    assert (q.timeout_for(first), q.timeout_for(second)) == (7, 42)
    stored, following = q.finish_and_claim(second, OK, wid)
    assert following is None and q.timeout_for(stored) == 42  # still that run's
    assert q.timeout_for(q.get(plain.id)) == 5  # not claimed here: as it is now


def test_a_claim_reads_an_unusable_stored_timeout_as_the_default(q, wid):
    q.models.Config.insert(key="job-timeout", value="soon").execute()  # stored by hand
    q.enqueue("true")
    assert q.timeout_for(q.claim(wid)) == 300


def test_claim_order_priority_then_run_at_then_enqueue_order(q, wid, clock):
    now = clock.now
    low_old = q.enqueue(JobSpec(command="a", id="low-late", run_at=now - 5))
    high_1 = q.enqueue(JobSpec(command="b", id="high-1", priority=5))
    low_early = q.enqueue(JobSpec(command="c", id="low-early", run_at=now - 50))
    high_2 = q.enqueue(JobSpec(command="d", id="high-2", priority=5))
    negative = q.enqueue(JobSpec(command="e", id="negative", priority=-1, run_at=now - 99))
    same_a = q.enqueue(JobSpec(command="f", id="same-a"))
    same_b = q.enqueue(JobSpec(command="g", id="same-b"))
    future = q.enqueue(JobSpec(command="h", id="future", priority=100, delay=10))
    order = [q.claim(wid).id for _ in range(7)]
    assert order == [
        high_1.id, high_2.id, low_early.id, low_old.id, same_a.id, same_b.id, negative.id,
    ]
    assert q.claim(wid) is None
    clock.advance(10)
    assert q.claim(wid).id == future.id


def test_a_due_retry_competes_by_run_at(q, wid, clock):
    q.config_set("backoff-base", 1)
    retried = q.enqueue(JobSpec(command="x", id="retried"))
    run_once(q, wid)  # failed, run_at = now + 1
    clock.advance(5)
    newer = q.enqueue(JobSpec(command="y", id="newer"))  # run_at = now, later than the retry's
    assert [q.claim(wid).id, q.claim(wid).id] == [retried.id, newer.id]


def test_delay_and_run_at(q, wid, clock):
    delayed = q.enqueue(JobSpec(command="x", delay=30))
    at = q.enqueue(JobSpec(command="y", run_at=clock.now + 60))
    assert q.get(delayed.id).run_at == clock.now + 30
    assert q.next_due_in() == 30
    assert q.claim(wid) is None
    clock.advance(29.9)
    assert q.claim(wid) is None
    clock.advance(0.1)
    assert q.claim(wid).id == delayed.id
    assert q.next_due_in() == pytest.approx(30)
    assert q.claim(wid) is None
    clock.advance(30)
    assert q.next_due_in() == 0
    assert q.claim(wid).id == at.id
    assert q.next_due_in() is None


# -- the DLQ ------------------------------------------------------------------------------


def make_dead(q: Queue, wid: str, command: str = "false", **kwargs) -> Job:
    job = q.enqueue(JobSpec(command=command, max_retries=1, **kwargs))
    stored = run_once(q, wid)
    assert (stored.id, stored.state) == (job.id, "dead")
    return stored


def test_dlq_retry_resets_and_runs_now(q, wid, clock):
    dead = make_dead(q, wid)
    assert q.get(dead.id).output == "boom\n"
    clock.advance(100)
    [revived] = q.retry_dead([dead.id[:5]])
    assert revived.id == dead.id
    # Nothing of the last run is left to read as the pending job's (`show`, `logs` showed
    # its output); its history keeps it.
    assert (revived.state, revived.attempts, revived.error, revived.exit_code) == (
        "pending", 0, None, None,
    )
    assert (q.get(dead.id).output, q.get(dead.id).output_bytes) == (None, None)
    assert revived.run_at == clock.now
    assert revived.worker is None
    claimed = q.claim(wid)
    assert (claimed.id, claimed.attempts) == (dead.id, 1)
    # With its own max_retries 1, it is dead again after one failed run
    assert q.finish(claimed, FAIL, wid).state == "dead"


def test_dlq_retry_is_all_or_nothing(q, wid):
    dead_1 = make_dead(q, wid, id="dead-1")
    dead_2 = make_dead(q, wid, id="dead-2")
    pending = q.enqueue(JobSpec(command="true", id="still-pending"))
    before = {job.id: job.__data__ for job in q.list_jobs()}

    with pytest.raises(QueueError, match="not dead"):
        q.retry_dead([dead_1.id, pending.id, dead_2.id])
    with pytest.raises(QueueError, match="no job"):
        q.retry_dead([dead_1.id, "nosuchjob"])
    with pytest.raises(QueueError, match="ambiguous"):
        q.retry_dead(["dead-"])
    assert {job.id: job.__data__ for job in q.list_jobs()} == before

    revived = q.retry_dead([dead_1.id, dead_2.id])
    assert [job.state for job in revived] == ["pending", "pending"]


def test_retry_all_dead(q, wid):
    ids = {make_dead(q, wid).id for _ in range(3)}
    q.enqueue("true")
    assert set(q.retry_all_dead()) == ids
    assert q.counts()["pending"] == 4 and q.counts()["dead"] == 0
    assert q.retry_all_dead() == []


# -- ids and prefixes -------------------------------------------------------------------------


def test_generated_ids_are_short_and_unique():
    ids = [queue_module.new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {12}
    assert set("".join(ids[:1000])) <= set(queue_module.ID_ALPHABET)


def test_enqueued_ids_are_short(q):
    jobs = q.enqueue_many([JobSpec(command="true") for _ in range(50)])
    assert len({job.id for job in jobs}) == 50
    assert all(10 <= len(job.id) <= 14 for job in jobs)


def test_get_by_unique_prefix(q):
    a = q.enqueue(JobSpec(command="x", id="abc123"))
    q.enqueue(JobSpec(command="x", id="abd456"))
    q.enqueue(JobSpec(command="x", id="ab"))
    assert q.get("abc").id == a.id
    assert q.get("abc123").id == a.id
    assert q.get("ab").id == "ab", "an exact id wins over being a prefix of others"
    with pytest.raises(QueueError, match="ambiguous"):
        q.get("a")
    with pytest.raises(QueueError, match="no job"):
        q.get("zzz")
    with pytest.raises(QueueError, match="no job"):
        q.get("abc1234")


def test_a_whole_id_names_that_job_only_once_it_is_gone(q):
    """What the TUI passes (a row's id): QA's `e` on a job purged meanwhile edited `ue3-b`, the
    one job whose id starts with `ue3`; `x` and `r` cancelled and retried such a job."""
    from queuectl.queue import WholeId

    q.enqueue(JobSpec(command="a", id="ue3"))
    other = q.enqueue(JobSpec(command="b", id="ue3-b"))
    assert q.get(WholeId("ue3")).command == "a"
    q.cancel([WholeId("ue3")])
    assert q.purge(states=["cancelled"]) == 1
    assert q.get("ue3").id == other.id  # typed, a prefix (SPEC 3)
    for act in (lambda: q.get(WholeId("ue3")), lambda: q.cancel([WholeId("ue3")]),
                lambda: q.retry([WholeId("ue3")]),
                lambda: q.edit(WholeId("ue3"), {"priority": 9})):  # fmt: skip
        with pytest.raises(QueueError, match="^no job 'ue3'$"):
            act()
    left = q.get("ue3-b")
    assert (left.state, left.priority) == ("pending", 0)


def test_prefix_is_literal_and_case_sensitive(q):
    """A prefix is a prefix: not a LIKE pattern, and case matters (ids are case-sensitive)."""
    upper = q.enqueue(JobSpec(command="x", id="Build-1"))
    lower = q.enqueue(JobSpec(command="x", id="build-2"))
    assert q.get("Bu").id == upper.id
    assert q.get("bu").id == lower.id
    with pytest.raises(QueueError, match="no job"):
        q.get("BUILD")
    pct = q.enqueue(JobSpec(command="x", id="50%_off"))
    q.enqueue(JobSpec(command="x", id="50xyoff"))
    assert q.get("50%").id == pct.id
    assert q.get("50%_").id == pct.id
    with pytest.raises(QueueError, match="no job"):
        q.get("5_x")


def test_duplicate_ids_enqueue_nothing(q):
    q.enqueue(JobSpec(command="x", id="taken"))
    with pytest.raises(InvalidInput, match="duplicate id 'twice'"):
        q.enqueue_many(
            [JobSpec(command="a"), JobSpec(command="b", id="twice"), JobSpec(command="c", id="twice")]
        )
    with pytest.raises(InvalidInput, match="taken"):
        q.enqueue_many([JobSpec(command="a", id="fresh"), JobSpec(command="b", id="taken")])
    with pytest.raises(InvalidInput):
        q.enqueue(JobSpec(command="x", id="taken"))
    assert [job.id for job in q.list_jobs()] == ["taken"]


def test_enqueue_many_is_one_transaction_over_batches(q):
    """More jobs than one INSERT batch, the last one bad: nothing at all is enqueued."""
    specs = [JobSpec(command=f"echo {n}") for n in range(1200)]
    specs.append(JobSpec(command="x", id="dup"))
    q.enqueue(JobSpec(command="x", id="dup"))
    with pytest.raises(InvalidInput):
        q.enqueue_many(specs)
    assert q.counts()["pending"] == 1
    jobs = q.enqueue_many(specs[:-1])
    assert q.counts()["pending"] == 1201
    assert len({job.id for job in jobs}) == 1200


# -- leases, rescue, release, stale finishes ---------------------------------------------------


def test_silent_worker_past_its_lease_is_rescued_by_the_retry_rules(q, wid, clock):
    job = q.enqueue("sleep 100")
    claimed = q.claim(wid)
    clock.advance(queue_module.LEASE_S - 1)
    assert q.rescue_lost() == [], "still within its lease"
    assert q.get(job.id).state == "processing"

    clock.advance(2)  # no heartbeat for LEASE_S + 1 seconds
    rescued = q.rescue_lost()
    assert [r.id for r in rescued] == [job.id]
    stored = q.get(job.id)
    assert (stored.state, stored.error, stored.attempts, stored.exit_code) == (
        "failed", "worker lost", 1, None,
    )
    assert stored.run_at == clock.now + 2
    WorkerProcess = q.models.WorkerProcess
    assert WorkerProcess.get_or_none(WorkerProcess.id == wid) is None
    assert q.finish(claimed, OK, wid) is None, "the lost worker's late result is dropped"
    assert q.get(job.id).state == "failed"


def test_rescue_with_attempts_used_up_goes_dead(q, wid, clock):
    job = q.enqueue(JobSpec(command="sleep 100", max_retries=1))
    q.claim(wid)
    clock.advance(queue_module.LEASE_S + 1)
    q.rescue_lost()
    stored = q.get(job.id)
    assert (stored.state, stored.error, stored.attempts) == ("dead", "worker lost", 1)


def test_worker_with_dead_pid_on_this_host_is_rescued_at_once(q, wid, clock):
    job = q.enqueue("sleep 100")
    q.claim(wid)
    WorkerProcess = q.models.WorkerProcess
    WorkerProcess.update(pid=dead_pid()).where(WorkerProcess.id == wid).execute()
    rescued = q.rescue_lost()
    assert [r.id for r in rescued] == [job.id]
    assert q.get(job.id).error == "worker lost"


def test_a_worker_killed_but_not_yet_reaped_is_rescued_at_once(q, wid, clock):
    """A worker killed with -9 stays a zombie until its supervisor reaps it: it was taken for
    alive (QA: its job waited 12 s, its queue's slot with it)."""
    job = q.enqueue("sleep 100")
    q.claim(wid)
    zombie = subprocess.Popen(["true"])
    try:
        wait_until(lambda: open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0]
                   == "Z", 10, "the child to exit, unreaped")  # fmt: skip
        WorkerProcess = q.models.WorkerProcess
        WorkerProcess.update(pid=zombie.pid).where(WorkerProcess.id == wid).execute()
        assert [r.id for r in q.rescue_lost()] == [job.id]
    finally:
        zombie.wait()


def test_dead_pid_on_another_host_waits_for_the_lease(q, clock):
    other = Queue(q.target.location, clock=clock, host="elsewhere")
    wid = other.register_worker(1)
    WorkerProcess = other.models.WorkerProcess
    WorkerProcess.update(pid=dead_pid()).where(WorkerProcess.id == wid).execute()
    job = other.enqueue("sleep 100")
    other.claim(wid)
    assert q.rescue_lost() == [], "a pid means nothing on another host"
    clock.advance(queue_module.LEASE_S + 1)
    assert [r.id for r in q.rescue_lost()] == [job.id]


def test_a_pid_of_a_host_of_the_same_name_waits_for_the_lease(q, clock, monkeypatch):
    """Two hosts of one name: containers given the host's name (`--network host`) but their own
    process ids, machines left with a default name. The pid of the other's worker means nothing
    here: a worker that found it dead rescued the jobs of a live worker, again and again, until
    they were dead, "worker lost" (QA, on PostgreSQL with `unshare --uts --pid`)."""
    from queuectl import registry

    monkeypatch.setattr(registry, "process_space", lambda: "another-boot.another-namespace")
    other = Queue(q.target.location, clock=clock)  # the same host name
    wid = other.register_worker(1)
    WorkerProcess = other.models.WorkerProcess
    WorkerProcess.update(pid=dead_pid()).where(WorkerProcess.id == wid).execute()
    job = other.enqueue("sleep 100")
    other.claim(wid)
    monkeypatch.undo()  # this worker's own process space
    assert q.host == other.host
    assert q.rescue_lost() == [], "a pid of another process space means nothing here"
    clock.advance(queue_module.LEASE_S + 1)
    assert [r.id for r in q.rescue_lost()] == [job.id]


def test_a_live_worker_is_never_robbed(q, wid, clock):
    job = q.enqueue("sleep 100")
    q.claim(wid)
    for _ in range(10):  # a long run, heartbeating all along
        clock.advance(queue_module.LEASE_S * 0.9)
        assert q.heartbeat(wid, 1) is False
        assert q.rescue_lost() == []
    stored = q.get(job.id)
    assert (stored.state, stored.worker) == ("processing", wid)
    assert [w.id for w in q.live_workers()] == [wid]
    assert q.finish(stored, OK, wid).state == "completed"


def test_a_processing_job_of_an_unregistered_worker_is_rescued(q, clock):
    job = q.enqueue("x")
    q.claim("ghost:1:abcd")  # no worker row at all
    assert [r.id for r in q.rescue_lost()] == [job.id]
    assert q.get(job.id).state == "failed"


def test_a_processing_job_with_no_worker_at_all_is_rescued(q, clock):
    """A row edited by hand (or by an older queuectl) to processing with a NULL worker."""
    job = q.enqueue("x")
    Job = q.models.Job
    Job.update(state="processing", attempts=1, started_at=clock.now).where(
        Job.id == job.id
    ).execute()
    assert [r.id for r in q.rescue_lost()] == [job.id]
    assert (q.get(job.id).state, q.get(job.id).error) == ("failed", "worker lost")


def test_a_worker_presumed_dead_comes_back(q, wid, clock):
    clock.advance(queue_module.LEASE_S + 1)
    assert q.live_workers() == []
    q.rescue_lost()
    assert q.heartbeat(wid, 2) is False
    assert [w.id for w in q.live_workers()] == [wid]


class HeldLock:
    """Another connection holding the SQLite file's write lock, as a worker of another process
    would (or a user's sqlite3 shell); :attr:`waited` is set once a statement of this process
    has found it taken and waits."""

    def __init__(self, path: str, monkeypatch) -> None:
        self.waited = threading.Event()
        again_until = SqliteQueueDatabase._again_until

        def spy(database, exc, deadline, connection):
            self.waited.set()
            return again_until(database, exc, deadline, connection)

        monkeypatch.setattr(SqliteQueueDatabase, "_again_until", spy)
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self, *statements: tuple[str, tuple]) -> None:
        """Run ``statements`` in the held transaction, then commit it."""
        for sql, params in statements:
            self.connection.execute(sql, params)
        self.connection.execute("COMMIT")

    def close(self) -> None:
        """Let go, released or not (a test that failed while it was held must not leave a
        thread waiting for the lock)."""
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")
        self.connection.close()


def in_thread(call) -> tuple[threading.Thread, list]:
    """Start ``call`` in a thread; the thread, and a list that holds what it returned once done."""
    results: list = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def test_a_heartbeat_that_waited_for_the_lock_records_when_it_landed(clocked_queue, clock,
                                                                      db_path, monkeypatch):
    """Stamped with the time it began to wait, it would land already old, and another worker
    back from the same wait could take this one for gone."""
    q = clocked_queue
    wid = q.register_worker(1)
    lock = HeldLock(db_path, monkeypatch)
    try:
        beating, _ = in_thread(lambda: q.heartbeat(wid, 1))
        assert lock.waited.wait(30), "the heartbeat never waited for the lock"
        clock.advance(queue_module.LEASE_S + 1)  # the lock held past the lease
        lock.release()
        beating.join(30)
    finally:
        lock.close()
    WorkerProcess = q.models.WorkerProcess
    assert WorkerProcess.get(WorkerProcess.id == wid).heartbeat_at == clock.now
    assert [w.id for w in q.live_workers()] == [wid]


def test_a_rescue_spares_a_worker_whose_heartbeat_landed_while_it_waited_for_the_lock(
    clocked_queue, clock, db_path, monkeypatch
):
    """Two workers back from one outage: the first to look finds the other silent past the
    lease, but the other's heartbeat takes the lock first. The rescue reads again under the
    lock, and leaves the other's job alone."""
    q = clocked_queue
    other = Queue(db_path, clock=clock)
    try:
        wid = other.register_worker(1)
        job = other.enqueue("sleep 100")
        other.claim(wid)
    finally:
        other.close()
    clock.advance(queue_module.LEASE_S + 1)
    lock = HeldLock(db_path, monkeypatch)
    try:
        rescue, rescued = in_thread(q.rescue_lost)
        assert lock.waited.wait(30), "the rescue never waited for the lock"
        lock.release(('UPDATE "worker" SET "heartbeat_at" = ? WHERE "id" = ?', (clock.now, wid)))
        rescue.join(30)
    finally:
        lock.close()
    assert rescued == [[]], "a worker that had just beaten was robbed"
    stored = q.get(job.id)
    assert (stored.state, stored.worker, stored.attempts) == ("processing", wid, 1)


def test_release_gives_the_job_back_uncounted(q, wid, clock):
    job = q.enqueue("sleep 100")
    claimed = q.claim(wid)
    assert q.release(claimed, "someone-else") is False
    assert q.get(job.id).state == "processing"
    assert q.release(claimed, wid) is True
    stored = q.get(job.id)
    assert (stored.state, stored.attempts, stored.worker) == ("pending", 0, None)
    assert stored.run_at == job.run_at  # it keeps its place in the queue
    again = q.claim(wid)
    assert (again.id, again.attempts) == (job.id, 1)


def test_finish_by_a_worker_that_lost_the_job_changes_nothing(q, wid, clock):
    job = q.enqueue("x")
    claimed = q.claim(wid)
    assert q.finish(claimed, OK, "another-worker") is None
    clock.advance(queue_module.LEASE_S + 1)
    q.rescue_lost()
    clock.now = q.get(job.id).run_at
    new_wid = q.register_worker(1)
    reclaimed = q.claim(new_wid)
    assert (reclaimed.id, reclaimed.attempts) == (job.id, 2)
    before = q.get(job.id).__data__
    assert q.finish(claimed, OK, wid) is None
    assert q.finish(claimed, FAIL, wid) is None
    assert q.get(job.id).__data__ == before
    assert q.finish(reclaimed, OK, new_wid).state == "completed"


def test_finish_and_claim_stores_the_result_and_takes_the_next_job(q, wid, clock):
    first, second = q.enqueue("one"), q.enqueue("two")
    claimed = q.claim(wid)
    clock.advance(2)
    stored, following = q.finish_and_claim(claimed, FAIL, wid)
    # The failure follows the retry rules as finish() does; the next job is claimed at once.
    assert (stored.id, stored.state, stored.run_at) == (first.id, "failed", clock.now + 2)
    assert (following.id, following.state, following.attempts) == (second.id, "processing", 1)
    assert q.get(first.id).state == "failed" and q.get(second.id).worker == wid
    stored, following = q.finish_and_claim(following, OK, wid)
    assert (stored.state, following) == ("completed", None)  # the retry is not due yet
    assert q.counts() == {"pending": 0, "processing": 0, "completed": 1, "failed": 1, "dead": 0, "cancelled": 0}


def test_finish_and_claim_by_a_worker_that_lost_the_job_still_claims(q, wid):
    job = q.enqueue("x")
    claimed = q.claim(wid)
    waiting = q.enqueue("y")
    stored, following = q.finish_and_claim(claimed, OK, "another-worker")
    assert stored is None and q.get(job.id).state == "processing"  # not that worker's run
    assert following.id == waiting.id


def test_a_worker_id_taken_already_is_drawn_again(q, monkeypatch):
    tags = iter(["beef", "beef", "cafe"])
    monkeypatch.setattr(registry.secrets, "token_hex", lambda n: next(tags))
    first, second = q.register_worker(1), q.register_worker(2)
    assert (first.rsplit(":", 1)[1], second.rsplit(":", 1)[1]) == ("beef", "cafe")
    assert {w.id: w.threads for w in q.live_workers()} == {first: 1, second: 2}


def test_worker_threads_sharing_a_queue_run_every_job_once(q, wid):
    """Queue.for_worker_threads (on SQLite: one connection for all the pool's threads, calls
    taking turns) under eight threads claiming and storing successes and failures at once."""
    jobs = q.enqueue_many(
        [JobSpec(command="fail" if n % 3 == 0 else "ok", max_retries=1) for n in range(300)]
    )
    workers = q.for_worker_threads()
    runs: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            job = workers.claim(wid)
            while job is not None:
                runs.append(job.id)
                _, job = workers.finish_and_claim(job, FAIL if job.command == "fail" else OK, wid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert sorted(runs) == sorted(job.id for job in jobs), "every job run once, and once only"
    states = {job.id: q.get(job.id).state for job in jobs}
    assert states == {job.id: "dead" if job.command == "fail" else "completed" for job in jobs}
    workers.close()


def test_finish_and_claim_in_one_statement_stores_what_finish_then_claim_store(tmp_path, clock):
    """On SQLite a success is stored and the next job claimed by one UPDATE (the worker's hot
    path); row for row it must leave what the two separate steps leave."""
    queues = [Queue(str(tmp_path / f"{name}.db"), clock=clock) for name in ("one", "two")]
    assert queues[0]._sql.complete_and_claim is not None
    rows, start = [], clock.now
    for one_statement, q in zip((True, False), queues):
        clock.now = start
        wid = q.register_worker(1)
        for n, priority in enumerate([0, 5, 0, 1]):
            q.enqueue(JobSpec(id=f"job{n}", command=f"echo {n}", priority=priority))
        job = q.claim(wid)
        for step in range(5):  # four jobs, then nothing left to claim
            clock.advance(1.5)
            result = RunResult(0, None, f"out {step}")
            if one_statement:
                stored, job = q.finish_and_claim(job, result, wid)
            else:
                stored, job = q.finish(job, result, wid), q.claim(wid)
            assert stored.state == "completed" and stored.output == f"out {step}"
            if job is None:
                break
        assert step == 3
        same_worker = [{**j.__data__, "worker": j.worker == wid} for j in q.list_jobs(limit=10)]
        rows.append([*same_worker, q.counts()])
        q.close()
    assert rows[0] == rows[1]


def test_request_stop_reaches_heartbeats(q, wid):
    assert q.heartbeat(wid, 1) is False
    assert q.request_stop() == 1
    assert q.heartbeat(wid, 1) is True
    q.unregister_worker(wid)
    assert q.live_workers() == []


def test_a_worker_still_starting_when_worker_stop_ran_stops_as_it_registers(q, clock):
    """QA: `worker start &` then `worker stop` missed the worker still starting (not yet
    registered: "no workers running"), and it ran on. A process started before a `worker stop`
    on its host is asked to stop as it registers; one started after it runs."""
    started = clock()  # the process starts...
    clock.advance(0.2)
    assert q.request_stop() == 0  # ... `worker stop` finds nobody ...
    clock.advance(0.2)
    late = q.register_worker(1, started_at=started)  # ... and it registers after all
    assert q.heartbeat(late, 1) is True, "asked to stop"
    clock.advance(1)
    fresh = q.register_worker(1, started_at=clock())  # started after that `worker stop`
    assert q.heartbeat(fresh, 1) is False
    assert q.heartbeat(q.register_worker(1), 1) is False  # (no start time given: a library's)
    clock.advance(1)
    assert q.request_stop() == 3
    assert q.heartbeat(fresh, 1) is True


def test_a_worker_stop_reaches_only_its_own_process_space_s_workers_still_starting(
        q, clock, monkeypatch):  # fmt: skip
    """The stop of workers still starting is kept per host: per process space, as the pids
    (a host name over ~24 characters cut the space off the 64-character key: QA's reading)."""
    from queuectl import registry

    long_name = "build-runner-" + "x" * 60
    here = Queue(q.target.location, clock=clock, host=long_name)
    try:
        started = clock()
        clock.advance(0.2)
        monkeypatch.setattr(registry, "process_space", lambda: "another-boot.another-namespace")
        here.request_stop()  # a container of the same (long) name asks its own workers
        monkeypatch.undo()
        clock.advance(0.2)
        assert here.heartbeat(here.register_worker(1, started_at=started), 1) is False
    finally:
        here.close()


# -- config -----------------------------------------------------------------------------------


def test_config_defaults_and_set(q):
    assert q.config().items() >= {
        "max-retries": 3, "backoff-base": 2, "job-timeout": 300, "retention": 0
    }.items()
    assert q.config_set("backoff-base", "1.5") == 1.5
    assert q.config_set("max-retries", " 0 ") == 0
    assert q.config_set("job-timeout", 1) == 1
    assert q.config().items() >= {
        "max-retries": 0, "backoff-base": 1.5, "job-timeout": 1, "retention": 0
    }.items()
    assert q.config_get("backoff-base") == 1.5
    other = Queue(q.target.location)
    assert other.config() == q.config(), "stored in the database, seen by every process"


@pytest.mark.parametrize(
    "key, value",
    [
        ("max-retries", -1), ("max-retries", "x"), ("max-retries", 1.5), ("max-retries", ""),
        ("max-retries", True),
        ("backoff-base", 0.5), ("backoff-base", 0), ("backoff-base", "nan"),
        ("backoff-base", "inf"), ("backoff-base", "-2"), ("backoff-base", "two"),
        ("job-timeout", 0), ("job-timeout", -5), ("job-timeout", "abc"), ("job-timeout", 2.5),
        ("no-such-key", 1), ("max_retries", 1),
    ],
)
def test_bad_config_is_invalid_input_and_changes_nothing(q, key, value):
    q.config_set("max-retries", 7)
    before = q.config()
    with pytest.raises(InvalidInput):
        q.config_set(key, value)
    assert q.config() == before


def test_config_get_unknown_key(q):
    with pytest.raises(InvalidInput, match="unknown config key"):
        q.config_get("nope")


def test_huge_backoff_is_capped(q, wid, clock):
    q.config_set("backoff-base", 1e6)
    q.enqueue(JobSpec(command="false", max_retries=100))
    for _ in range(3):
        stored = run_once(q, wid)
        assert stored.state == "failed"
        assert stored.run_at <= clock.now + queue_module.MAX_BACKOFF_S
        clock.now = stored.run_at


def test_two_queues_in_one_process_keep_to_their_own_files(tmp_path, clock):
    """Models are bound per Queue: a second Queue (another file, or the same one) neither
    steals the first one's database nor deadlocks against its transactions."""
    a = Queue(str(tmp_path / "a.db"), clock=clock)
    a_worker = a.register_worker(1)
    a.enqueue(JobSpec(command="x", id="in-a"))
    b = Queue(str(tmp_path / "b.db"), clock=clock)
    b.enqueue(JobSpec(command="x", id="in-b"))
    a_again = Queue(str(tmp_path / "a.db"), clock=clock, host="elsewhere")
    assert [job.id for job in a.list_jobs()] == ["in-a"]
    assert [job.id for job in b.list_jobs()] == ["in-b"]
    assert a.claim(a_worker).id == "in-a"
    clock.advance(queue_module.LEASE_S + 1)
    assert [job.id for job in a_again.rescue_lost()] == ["in-a"]  # a write transaction
    assert a.get("in-a").error == "worker lost"
    assert b.counts()["pending"] == 1 and b.counts()["failed"] == 0
    for q in (a, b, a_again):
        q.close()
