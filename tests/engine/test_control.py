"""Following and controlling jobs (SPEC 6) on the engine API: live output, cancel (waiting,
running, in another process, lost), retry, edit, purge and retention. On both backends."""

from __future__ import annotations

import threading
import time

import pytest

from .helpers import WorkerProc
from queuectl import JobSpec, Queue
from queuectl.errors import InvalidInput, QueueError
from queuectl.executor import RunResult
from queuectl.spec import parse_duration, validate_name
from support import wait_until


@pytest.fixture
def q(target):
    queue = Queue(target)
    yield queue
    queue.close()


@pytest.fixture
def workers(target, tmp_path):
    """Worker processes on this test's queue (another process, as on another host)."""
    started: list[WorkerProc] = []

    def start(threads: int = 1) -> WorkerProc:
        proc = WorkerProc(target, threads, tmp_path, f"worker-{len(started)}")
        started.append(proc)
        proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.stop()


def add(q: Queue, command: str = "true", **fields) -> object:
    job = q.get(q.enqueue(command).id)
    if fields:
        q.models.Job.update(**fields).where(q.models.Job.seq == job.seq).execute()
    return q.get(job.id)


def state(q: Queue, job) -> str:
    return q.get(job.id).state


# -- live output --------------------------------------------------------------------------------


def test_a_running_jobs_output_is_visible_to_other_connections_as_it_prints(q, target, pools):
    job = add(q, "echo first; sleep 30")
    pools(q, threads=1)
    other = Queue(target)  # another connection, as `logs` in another process would have
    try:
        running = wait_until(lambda: (j := other.get(job.id)).output and j, 30, "live output")
        assert running.state == "processing"
        assert running.output == "first\n" and running.output_bytes == 6
    finally:
        other.close()


def test_a_running_jobs_live_output_is_its_whole_capped_tail_as_the_results(q, pools):
    """SPEC 6: the stored output stays capped as in section 3 (1 MiB, the tail kept), while
    it runs too: 200 KB printed are all there, not the last 64 KiB."""
    job = add(q, "head -c 200000 /dev/zero | tr '\\0' x; echo; sleep 30")
    pools(q)
    running = wait_until(lambda: (j := q.get(job.id)).output_bytes == 200_001 and j, 5,
                         "live output")  # fmt: skip
    assert running.output == "x" * 200_000 + "\n"
    q.cancel([job.id])
    done = wait_until(lambda: (j := q.get(job.id)).state == "cancelled" and j, 10, "the cancel")
    assert done.output == "x" * 200_000 + "\n"


def test_a_short_jobs_output_is_stored_once_with_its_size(q, pools):
    job = add(q, "printf 'a\\nb\\n'")
    pools(q, threads=1)
    wait_until(lambda: state(q, job) == "completed")
    done = q.get(job.id)
    assert done.output == "a\nb\n" and done.output_bytes == 4


def test_a_new_run_starts_with_empty_output(q):
    job = add(q, "echo x")
    wid = q.register_worker(1)
    claimed = q.claim(wid)
    q.finish(claimed, RunResult(1, "exit code 1", "old\n", 4), wid)
    q.models.Job.update(run_at=0).execute()
    again = q.claim(wid)
    assert again.seq == job.seq and q.get(job.id).output is None and again.output_bytes == 0


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_waiting_jobs_at_once_and_refuse_finished_ones_all_or_nothing(q):
    pending, failed = add(q), add(q, state="failed", error="exit code 1")
    done = add(q, state="completed")
    with pytest.raises(QueueError, match="completed"):
        q.cancel([pending.id, done.id])
    assert state(q, pending) == "pending", "nothing changed"
    q.cancel([pending.id, failed.id[:8]])
    for job in (pending, failed):
        cancelled = q.get(job.id)
        assert cancelled.state == "cancelled" and cancelled.finished_at is not None
        assert cancelled.error == "cancelled"
    with pytest.raises(QueueError, match="cancelled"):
        q.cancel([pending.id])
    assert q.claim(q.register_worker(1)) is None, "a cancelled job never runs"


def test_cancel_a_running_job_stops_its_process_group_and_keeps_exit_code_and_output(q, pools):
    job = add(q, "trap 'echo stopping; exit 5' TERM; echo started; sleep 30 & wait")
    pools(q, threads=1)
    wait_until(lambda: q.get(job.id).output == "started\n", 30, "the job to print")
    found = q.cancel([job.id])
    assert [j.state for j in found] == ["processing"]
    assert q.wait_stopped([job.seq], 30)
    stopped = q.get(job.id)
    assert stopped.state == "cancelled" and stopped.exit_code == 5
    assert stopped.output == "started\nstopping\n" and stopped.attempts == 1


def test_a_finished_run_of_a_job_being_cancelled_ends_cancelled(q):
    """Whichever way a run ends once a cancel was asked (success, failure with retries left,
    lost worker), the job ends cancelled: one final state, never run again."""
    q.config_set("on-cancelled", "true")
    ok, failing, lost = add(q, "a"), add(q, "b"), add(q, "c")
    wid = q.register_worker(3)
    runs = {q.claim(wid).seq: None for _ in range(3)}
    assert set(runs) == {ok.seq, failing.seq, lost.seq}
    q.cancel([ok.id, failing.id, lost.id])
    stored = q.finish(q.get(ok.id), RunResult(0, None, "fine\n", 5), wid)
    assert stored.state == "cancelled" and q.get(ok.id).output == "fine\n"
    # It says why it is cancelled though it succeeded (its error was empty), and so do its
    # history and its hook (recorded with the state, they had no error).
    why = "cancelled (it exited 0 by itself as the cancel came)"
    assert q.get(ok.id).error == why == stored.error
    assert (q.history(ok.id)[-1].event, q.history(ok.id)[-1].error) == ("cancelled", why)
    assert [(d.job_id, d.error) for d in q.deliveries()] == [(ok.id, why)]
    stored = q.finish(q.get(failing.id), RunResult(1, "exit code 1", "", 0), wid)
    assert stored.state == "cancelled" and q.get(failing.id).exit_code == 1
    assert q.get(failing.id).error == "exit code 1"
    q.unregister_worker(wid)  # its worker is gone: the rescue must not retry it
    q.rescue_lost()
    assert state(q, lost) == "cancelled"


def test_a_run_that_succeeds_as_the_cancel_comes_says_why_it_is_cancelled(q):
    """The busy worker's path: the run's result stored and the next job claimed in one
    statement (SQLite and PostgreSQL each have their own)."""
    first, second = add(q, "a"), add(q, "b")
    wid = q.register_worker(1)
    job = q.claim(wid)
    assert job.id == first.id
    q.config_set("on-cancelled", "true")
    q.cancel([first.id])
    stored, following = q.finish_and_claim(job, RunResult(0, None, "", 0), wid)
    assert stored.state == "cancelled" and following.id == second.id
    why = "cancelled (it exited 0 by itself as the cancel came)"
    assert q.get(first.id).error == why == stored.error
    assert (q.history(first.id)[-1].event, q.history(first.id)[-1].error) == ("cancelled", why)
    assert [(d.job_id, d.error) for d in q.deliveries()] == [(first.id, why)]


def test_cancel_races_the_natural_end_in_another_process(q, workers):
    """Cancel jobs whose runs end on their own at about the same moment, many times: each one
    ends in exactly one final state, and a cancel that was accepted ends it cancelled."""
    workers(2)
    for round_ in range(12):
        job = add(q, f"sleep 0.0{round_ % 4}")
        wait_until(lambda: state(q, job) != "pending", 30)
        try:
            found = q.cancel([job.id])
        except QueueError:
            assert state(q, job) == "completed"  # it ended first: nothing changed
            continue
        assert q.wait_stopped([j.seq for j in found], 30)
        final = q.get(job.id)
        assert final.state == "cancelled" and final.attempts <= 1, (round_, final.to_dict())
    time.sleep(0.3)  # nothing may run a cancelled job again
    assert q.counts()["processing"] == 0 and q.counts()["pending"] == 0


def test_cancel_a_job_running_in_another_process(q, workers):
    proc = workers(1)
    job = add(q, "echo started; sleep 30")
    wait_until(lambda: q.get(job.id).output, 30, "the job to start and print")
    q.cancel([job.id])
    assert q.wait_stopped([job.seq], 30)
    final = q.get(job.id)
    assert final.state == "cancelled" and final.output == "started\n"
    assert "cancelled" in final.error
    wait_until(lambda: ("cancelled", job.id) in proc.events(), 30)


# -- retry and edit -----------------------------------------------------------------------------


def test_retry_finished_jobs_as_new_and_refuse_other_states(q):
    dead = add(q, state="dead", attempts=3, error="exit code 1", exit_code=1, finished_at=1.0)
    cancelled = add(q, state="cancelled", cancel_requested_at=1.0, finished_at=1.0)
    completed = add(q, state="completed", attempts=1, finished_at=1.0)
    pending = add(q)
    with pytest.raises(QueueError, match="pending"):
        q.retry([dead.id, pending.id])
    assert state(q, dead) == "dead"
    retried = q.retry([dead.id, cancelled.id, completed.id])
    for job in retried:
        assert job.state == "pending" and job.attempts == 0 and job.error is None
        assert job.exit_code is None and job.finished_at is None
        assert job.cancel_requested_at is None and job.run_at <= time.time()


def test_edit_a_waiting_job_validated_and_recorded(q):
    job = add(q, "echo old", state="failed", error="x")
    edited = q.edit(job.id, {"command": "echo new", "priority": 7, "max_retries": 1,
                             "timeout": 5, "delay": 60, "queue": "fast.lane"})  # fmt: skip
    assert (edited.command, edited.priority, edited.max_retries, edited.timeout, edited.queue) == (
        "echo new", 7, 1, 5.0, "fast.lane"
    )
    assert edited.run_at > time.time() + 50 and edited.state == "failed"
    Event = q.models.Event
    events = [e.event for e in Event.select().where(Event.job_seq == job.seq).order_by(Event.id)]
    assert events[-1] == "edited" and events.count("edited") == 1  # after how it got to failed
    for bad in ({}, {"command": " "}, {"priority": "high"}, {"queue": "a b"}, {"tags": 1},
                {"delay": 1, "run_at": "2030-01-01"}):  # fmt: skip
        with pytest.raises(InvalidInput):
            q.edit(job.id, bad)
    assert q.get(job.id).command == "echo new"


def test_edit_refuses_running_and_finished_jobs(q):
    running = add(q)
    q.claim(q.register_worker(1))
    done = add(q, state="completed")
    for job in (running, done):
        with pytest.raises(QueueError, match="only a pending or failed job"):
            q.edit(job.id, {"priority": 1})
    assert q.get(running.id).priority == 0


def test_edit_racing_a_claim_is_whole_or_refused(q, target):
    other = Queue(target)
    wid = other.register_worker(1)
    try:
        for _ in range(15):
            job = add(q, "echo old")
            claimed: list = []
            claimer = threading.Thread(target=lambda: claimed.append(other.claim(wid)))
            claimer.start()
            try:
                q.edit(job.id, {"command": "echo new", "priority": 3})
                edited = True
            except QueueError:
                edited = False
            claimer.join()
            run = claimed[0]
            if edited:
                assert run is None or (run.command, run.priority) == ("echo new", 3)
            else:
                assert (run.command, run.priority) == ("echo old", 0)
            q.models.Job.delete().execute()
    finally:
        other.close()


# -- purge and retention ------------------------------------------------------------------------


def test_purge_deletes_finished_jobs_and_their_history_only(q, target):
    now = time.time()
    old_done = add(q, state="completed", finished_at=now - 7200)
    new_done = add(q, state="completed", finished_at=now)
    cancelled = add(q, state="cancelled", finished_at=now - 7200)
    dead = add(q, state="dead", finished_at=now - 7200)
    other_queue = add(q, state="completed", finished_at=now - 7200, queue="other")
    waiting, running = add(q), add(q, "x", state="processing")
    q.edit(waiting.id, {"priority": 1})
    Event = q.models.Event
    Event.insert(job_seq=old_done.seq, job_id=old_done.id, queue="default", at=now,
                 event="completed").execute()  # fmt: skip
    with pytest.raises(InvalidInput):
        q.purge(["pending"])
    assert q.purge([], 3600, "default") == 2  # old completed and cancelled of that queue
    left = {job.id for job in q.list_jobs()}
    assert left == {new_done.id, dead.id, other_queue.id, waiting.id, running.id}
    assert not Event.select().where(Event.job_seq == old_done.seq).exists()
    assert Event.select().where(Event.job_seq == waiting.seq).exists()
    assert q.purge(["dead"]) == 1 and q.purge() == 2
    assert {job.id for job in q.list_jobs()} == {waiting.id, running.id}
    assert q.counts()["completed"] == 0 and q.counts()["pending"] == 1


def test_a_long_purge_leaves_the_write_lock_free_between_its_batches(q, target):
    """A purge of many jobs is many short transactions; on SQLite it pauses between them with
    the write lock free, so a worker of another process claims meanwhile rather than waiting
    for the whole purge. Here a writer on another connection that gives up after 0.2 s enqueues
    a job at each pause; the purge deletes only finished jobs, theirs stay."""
    jobs = q.enqueue_many([JobSpec(command="true")] * 2500)
    Job = q.models.Job
    now = time.time()
    Job.update(state="completed", finished_at=now, updated_at=now).execute()
    other = Queue(target)
    if other.is_sqlite:
        other.db.execute_sql("PRAGMA busy_timeout = 200")
    added: list[str] = []
    q._let_writers_in = lambda seconds: added.append(other.enqueue("echo between").id)
    try:
        assert q.purge() == len(jobs)
    finally:
        other.close()
    if q.is_sqlite:
        assert len(added) >= 2  # several transactions, another writer in after each
    assert {job.id for job in q.list_jobs()} == set(added)
    assert q.counts()["completed"] == 0 and q.counts()["pending"] == len(added)


def test_retention_is_applied_by_workers(q, pools):
    q.config_set("retention", "1h")
    old = add(q, state="completed", finished_at=time.time() - 7200)
    recent = add(q, state="cancelled", finished_at=time.time() - 60)
    old_dead = add(q, state="dead", finished_at=time.time() - 7200)
    pools(q, threads=1)
    wait_until(lambda: old.id not in {job.id for job in q.list_jobs()}, 30, "retention")
    assert {job.id for job in q.list_jobs()} == {recent.id, old_dead.id}


def test_retention_off_keeps_everything(q):
    add(q, state="completed", finished_at=1.0)
    assert q.purge_expired() == (0, False)


# -- validators shared with other commands ------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200),
                                          ("7d", 604800), ("0", 0), ("1.5m", 90)])  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "-1", "7w", "1e3", "90 s s"])
def test_bad_durations(text):
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_queue_names():
    assert validate_name("queue", "a-Z_0.9") == "a-Z_0.9"
    for bad in ("", "a b", "x" * 65, "é", "a/b", 3):
        with pytest.raises(InvalidInput):
            validate_name("queue", bad)


def test_a_job_cancelled_as_its_worker_gives_it_back_ends_cancelled(q):
    """A hard stop gives running jobs back to pending; one that a user cancelled meanwhile
    ends cancelled instead (and counts as finished, for purge and retention)."""
    job = add(q)
    wid = q.register_worker(1)
    run = q.claim(wid)
    q.cancel([job.id])
    assert q.release(run, wid)
    ended = q.get(job.id)
    assert ended.state == "cancelled" and ended.finished_at is not None
    assert q.purge() == 1


def test_strays_given_back_after_an_outage_stay_cancelled(q):
    cancelled, other = add(q, "a"), add(q, "b")
    wid = q.register_worker(2)
    q.claim(wid), q.claim(wid)
    q.cancel([cancelled.id])
    assert q.give_back_strays(wid, set()) == 2
    assert state(q, cancelled) == "cancelled" and q.get(cancelled.id).finished_at is not None
    assert state(q, other) == "pending" and q.get(other.id).finished_at is None


# -- what follows for the jobs that wait on a cancelled or purged one (SPEC 7) -------------------


def test_cancelling_a_job_cancels_the_jobs_after_it(q):
    first = add(q, "a")
    second = q.enqueue(JobSpec(command="b", after=(first.id,)))
    third = q.enqueue(JobSpec(command="c", after=(second.id,)))
    q.cancel([first.id])
    assert [state(q, job) for job in (first, second, third)] == ["cancelled"] * 3
    assert first.id in q.get(second.id).error


def test_a_running_job_that_ends_cancelled_cancels_the_jobs_after_it(q):
    first = add(q, "a")
    second = q.enqueue(JobSpec(command="b", after=(first.id,)))
    wid = q.register_worker(1)
    run = q.claim(wid)
    q.cancel([first.id])
    assert state(q, second) == "pending"  # until the run ends
    q.finish(run, RunResult(0, None, "", 0), wid)
    assert state(q, first) == "cancelled" and state(q, second) == "cancelled"


def test_purging_a_dead_job_cancels_the_jobs_after_it(q):
    first = add(q, "a")
    second = q.enqueue(JobSpec(command="b", after=(first.id,)))
    q.models.Job.update(state="dead", finished_at=1.0).where(q.models.Job.seq == first.seq).execute()
    assert q.purge(["dead"]) == 1
    assert state(q, second) == "cancelled" and "purged" in q.get(second.id).error
    assert q.get(second.id).after_ids == (first.id,), "`after` still names the purged job"


def test_a_job_still_names_a_completed_dependency_once_it_is_purged(q):
    """QA: `show` gave `"after": []` once retention purged the job it ran after, and a script
    re-creating the pipeline from it lost its order. It names it still, waiting for it no more."""
    first, other = add(q, "a"), add(q, "b")
    second = q.enqueue(JobSpec(command="c", after=(first.id, other.id)))
    wid = q.register_worker(1)
    for _ in range(2):
        q.finish(q.claim(wid), RunResult(0, None, "", 0), wid)
    assert q.purge(["completed"]) == 2
    job = q.get(second.id)
    assert (job.state, job.after_ids, job.waiting_for) == ("pending", (first.id, other.id), ())
    assert q.list_jobs("pending")[0].after_ids == (first.id, other.id)
    assert q.claim(wid).id == second.id


def test_a_purge_batch_ends_once_its_time_is_spent(q, monkeypatch):
    """On SQLite a batch commits as soon as it has held the write lock PURGE_HOLD_S, in the
    middle of the jobs it selected (here at once: one chunk a batch); the rest go in the next
    batches, and every finished job goes, with its history."""
    from queuectl import control

    jobs = q.enqueue_many([JobSpec(command="true")] * 300)
    Job = q.models.Job
    now = time.time()
    Job.update(state="completed", finished_at=now, updated_at=now).execute()
    monkeypatch.setattr(control, "PURGE_HOLD_S", 0.0)
    pauses: list[int] = []
    q._let_writers_in = lambda seconds: pauses.append(q.counts()["completed"])
    assert q.purge() == len(jobs)
    if q.is_sqlite:
        chunk = control.PURGE_CHUNK
        assert pauses == list(range(len(jobs) - chunk, -1, -chunk))  # the last finds none left
    assert q.counts()["completed"] == 0 and not q.models.Event.select().exists()


def test_retry_and_cancel_of_many_ids_read_them_a_chunk_at_a_time(tmp_path):
    """QA: `retry` of 10,000 cancelled dependents by id, with their root, took 34 s: each id
    was read by a statement of its own (and its dependencies by another), and SQLite checked
    for a cancelled dependency from every cancelled job. Counted in reads (not timed): a few a
    chunk of 500 ids, not two an id; the jobs are as one by one (ids, states, after)."""
    q = Queue(str(tmp_path / "queue.db"))
    try:
        root = q.enqueue(JobSpec(command="true", id="root"))
        dependents = q.enqueue_many([JobSpec(command="true", after=("root",))] * 1100)
        ids = [root.id] + [job.id for job in dependents]
        run = []  # the reads (the cascade's updates run in triggers, a statement a job)
        q.db.connection().set_trace_callback(
            lambda sql: run.append(sql) if sql.startswith("SELECT") else None)
        cancelled = q.cancel(ids[:1] + [ids[5][:8]] + ids[1:5] + ids[6:])  # (a prefix too)
        assert len(run) < 100, len(run)
        assert {job.state for job in cancelled} == {"cancelled"} and len(cancelled) == 1101
        assert cancelled[1].id == ids[5] and cancelled[1].after_ids == ("root",)
        run.clear()
        retried = q.retry(ids)
        assert len(run) < 100, len(run)
        assert [job.id for job in retried] == ids
        assert retried[0].state == "pending" and retried[1].state == "pending"
        assert retried[1].waiting_for == ("root",)
    finally:
        q.close()
