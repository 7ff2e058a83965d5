"""SPEC 7, dependencies and named queues, on both backends: a job runs only after the jobs it
names completed; a dead dependency blocks it (retried and completed, it unblocks it); a
cancelled one cancels it, down the chain; a queue's limit holds across worker processes and a
paused queue's jobs are not claimed.

Cycles cannot be made: a job can only name jobs that exist before it (or come before it in one
batch), so every edge points from a newer job to an older one."""

from __future__ import annotations

import json
import threading

import pytest

from queuectl import InvalidInput, JobSpec, Queue, QueueError, parse_job, workflows
from queuectl.executor import RunResult
from queuectl.statements import NEAR
from support import wait_until

from .helpers import WorkerProc

OK = RunResult(0, None, "ok\n")
FAILED = RunResult(1, "exit code 1", "")


def run_one(queue: Queue, result: RunResult = OK, worker: str = "w", queues=None):
    """Claim the next job and store ``result`` for it; the job as stored (None: none ready)."""
    job = queue.claim(worker, queues)
    return None if job is None else queue.finish(job, result, worker)


def history(queue: Queue, job_id: str) -> list[tuple[str, str | None]]:
    Event = queue.models.Event
    rows = Event.select().where(Event.job_id == job_id).order_by(Event.id)
    return [(row.event, row.error) for row in rows]


# -- dependencies --------------------------------------------------------------------------


def test_a_job_runs_only_after_the_jobs_it_names(any_queue):
    q = any_queue
    build = q.enqueue(JobSpec(command="make", id="build"))
    test = q.enqueue(JobSpec(command="make test", id="test"))
    deploy = q.enqueue(JobSpec(command="deploy", after=("bui", "test"), priority=10))
    assert deploy.to_dict()["after"] == ["build", "test"]
    assert q.get(deploy.id).waiting_for == ("build", "test")
    assert run_one(q).id == "build"  # deploy's priority does not matter while it waits
    assert q.get(deploy.id).waiting_on == 1
    assert run_one(q).id == "test"
    assert run_one(q).id == deploy.id
    assert [job.to_dict()["after"] for job in q.list_jobs()] == [["build", "test"], [], []]


def test_a_completion_readies_its_dependent_for_the_claim_that_follows_it(any_queue):
    q = any_queue
    first = q.enqueue(JobSpec(command="a", id="a"))
    q.enqueue(JobSpec(command="b", id="b", after=("a",)))
    q.enqueue(JobSpec(command="other", id="other"))
    job = q.claim("w")
    assert job.id == first.id
    stored, following = q.finish_and_claim(job, OK, "w")
    assert stored.state == "completed"
    # SQLite's one statement picks its next job before the completion readies "b"; either way
    # "b" is ready for the claim after it.
    assert {following.id, q.claim("w").id} == {"b", "other"}
    assert q.claim("w") is None


@pytest.mark.parametrize("ref", ["nope", "a"])
def test_an_unknown_or_ambiguous_dependency_enqueues_nothing(any_queue, ref):
    q = any_queue
    q.enqueue(JobSpec(command="x", id="ab1"))
    q.enqueue(JobSpec(command="x", id="ab2"))
    with pytest.raises(InvalidInput, match=repr(ref)):
        q.enqueue_many([JobSpec(command="ok"), JobSpec(command="y", after=(ref,))])
    assert q.counts()["pending"] == 2


def test_a_fan_out_names_one_job_many_times_by_id_and_by_prefix(any_queue):
    """A batch's references are looked up once each (10,000 jobs after one took 3.4 s): each
    spelling still finds its own job, and one that is unknown or ambiguous is refused on the
    line that first names it, however often the batch names it."""
    q = any_queue
    build = q.enqueue(JobSpec(command="make", id="build-1"))
    q.enqueue(JobSpec(command="lint", id="lint"))
    refs = ["build-1", "build", "lint", "li"] * 50
    jobs = q.enqueue_many([JobSpec(command=f"step {n}", after=(ref,)) for n, ref in enumerate(refs)])
    assert [job.to_dict()["after"] for job in jobs] == [
        ["build-1" if ref.startswith("b") else "lint"] for ref in refs
    ]
    assert run_one(q, queues=None).id == build.id
    assert sum(q.get(job.id).waiting_on == 0 for job in jobs) == 100  # lint has not run
    q.enqueue(JobSpec(command="x", id="lint-2"))  # "li" is ambiguous now
    for bad in ("li", "nope"):
        specs = [JobSpec(command="a", after=("lint",)), JobSpec(command="b", after=("build",))]
        specs += [JobSpec(command="c", after=(bad,))] * 3
        with pytest.raises(InvalidInput, match=repr(bad)) as caught:
            q.enqueue_many(specs)
        assert caught.value.index == 2
    assert q.counts()["pending"] == 1 + 200 + 1, "nothing of the refused batches"


def test_a_dependency_purged_while_it_is_looked_up_is_unknown(pg_target, monkeypatch):
    """QA (PostgreSQL, 1-3 % of tries): a dependency purged by another process between its
    look-up and its lock was counted as not completed, and the new job waited for it forever
    (pending, due now, no `after`). It is now unknown, as had the purge come a moment earlier:
    exit 2 naming it, nothing enqueued."""
    q, other = Queue(pg_target), Queue(pg_target)
    try:
        q.enqueue(JobSpec(command="true", id="parent", queue="purged"))
        assert run_one(q).state == "completed"
        find = q._find_dependency

        def found_then_purged(*args, **kwargs):
            dependency = find(*args, **kwargs)
            assert other.purge(queue="purged") == 1  # another process, between the two
            return dependency

        monkeypatch.setattr(q, "_find_dependency", found_then_purged)
        with pytest.raises(InvalidInput, match="no job 'parent'"):
            q.enqueue(JobSpec(command="echo child", after=("parent",)))
        assert q.list_jobs() == []
    finally:
        q.close()
        other.close()


def test_a_batch_names_its_earlier_jobs_never_later_ones(any_queue):
    q = any_queue
    jobs = q.enqueue_many([
        JobSpec(command="a", id="fetch"),
        JobSpec(command="b", id="build", after=("fetch",)),
        JobSpec(command="c", after=("build", "fet")),
    ])  # fmt: skip
    assert [job.to_dict()["after"] for job in jobs] == [[], ["fetch"], ["fetch", "build"]]
    assert [job.waiting_on for job in jobs] == [0, 1, 2]
    with pytest.raises(InvalidInput, match="'later'"):
        q.enqueue_many([JobSpec(command="a", after=("later",)), JobSpec(command="b", id="later")])
    with pytest.raises(InvalidInput, match="'self'"):
        q.enqueue_many([JobSpec(command="a", id="self", after=("self",))])
    assert q.counts()["pending"] == 3


def test_a_dead_dependency_blocks_until_retried_and_completed(any_queue):
    q = any_queue
    q.config_set("max-retries", 1)
    q.enqueue(JobSpec(command="flaky", id="dep"))
    waiting = q.enqueue(JobSpec(command="after", id="next", after=("dep",)))
    assert run_one(q, FAILED).state == "dead"
    job = q.get(waiting.id)
    assert (job.state, job.blocked_by) == ("pending", ("dep",))
    assert history(q, "next")[-1] == ("blocked", "dependency dep is dead")
    assert q.claim("w") is None
    assert q.drained()  # it can never run by itself: `--burst` does not wait for it
    q.retry_dead(["dep"])
    assert history(q, "next")[-1] == ("unblocked", None)
    assert q.get("next").blocked_by == ()
    assert not q.drained()
    assert run_one(q).id == "dep"
    assert run_one(q).id == "next"


def test_a_job_claimed_while_the_queue_is_read_for_drained_is_still_left(any_queue, target, clock):
    """`--burst` stopped with a job's retry to come (the suite, once): drained() read "none
    processing", the job was claimed, then it read "none ready"."""
    q = any_queue
    job = q.enqueue(JobSpec(command="x"))
    other = Queue(target, clock=clock)
    read = q.db.execute_sql

    def claimed_after_the_first_read(*args, **kwargs):
        cursor = read(*args, **kwargs)
        if other.get(job.id).state == "pending":
            other.claim("elsewhere")
        return cursor

    try:
        q.db.execute_sql = claimed_after_the_first_read
        assert not q.drained()
    finally:
        del q.db.execute_sql
        other.close()
    assert q.get(job.id).state == "processing"


def test_a_queue_s_job_waiting_for_another_queue_s_running_job_is_left(any_queue):
    """QA: `worker start --burst --queue qb` exited at once while a job of qb waited for a job
    of qa that another worker ran; it ran B once A completed only without `--queue`."""
    q = any_queue
    q.config_set("max-retries", 0)
    q.enqueue(JobSpec(command="a", id="A", queue="qa"))
    q.enqueue(JobSpec(command="a2", id="A2", queue="qa", after=("A",)))
    q.enqueue(JobSpec(command="b", id="B", queue="qb", after=("A2",)))
    assert not q.drained(("qb",))  # A is ready (a worker of qa may come)
    running = q.claim("elsewhere", ("qa",))
    assert running.id == "A"
    assert not q.drained(("qb",))  # A runs, and B waits for it through A2
    q.finish(running, FAILED, "elsewhere")
    assert q.get("A").state == "dead"
    assert q.drained(("qb",))  # B can only run once a user retries A
    assert q.drained()  # nor any worker: A2 and B wait for a dead job
    q.retry_dead(["A"])
    assert not q.drained(("qb",))
    assert run_one(q, queues=("qa",)).id == "A"
    assert not q.drained(("qb",))  # A2 ready
    assert run_one(q, queues=("qa",)).id == "A2"
    assert not q.drained(("qb",))  # B ready
    assert run_one(q, queues=("qb",)).id == "B"
    assert q.drained(("qb",)) and q.drained()


def test_enqueued_after_a_dead_job_it_is_blocked_at_once(any_queue):
    q = any_queue
    q.config_set("max-retries", 1)
    q.enqueue(JobSpec(command="flaky", id="dep"))
    run_one(q, FAILED)
    job = q.enqueue(JobSpec(command="after", after=("dep",)))
    assert job.blocked_by == ("dep",)
    assert history(q, job.id)[-1] == ("blocked", "dependency dep is dead")


def test_a_dependency_that_leaves_completed_holds_its_dependents_again(any_queue):
    q = any_queue
    q.enqueue(JobSpec(command="a", id="a"))
    q.enqueue(JobSpec(command="b", id="b", after=("a",)))
    run_one(q)
    assert q.get("b").waiting_on == 0
    Job = q.models.Job
    Job.update(state="pending").where(Job.id == "a").execute()  # what a retry does to it
    assert q.get("b").waiting_on == 1
    assert run_one(q).id == "a"
    assert run_one(q).id == "b"


def test_a_cancelled_dependency_cancels_the_chain_naming_each_dependency(any_queue):
    q = any_queue
    q.enqueue_many([
        JobSpec(command="a", id="a"),
        JobSpec(command="b", id="b", after=("a",)),
        JobSpec(command="c", id="c", after=("b",)),
        JobSpec(command="d", id="d"),
    ])  # fmt: skip
    Job = q.models.Job
    a = q.get("a")
    with q._write():
        Job.update(state="cancelled").where(Job.seq == a.seq).execute()
        cancelled = q.cancel_dependents([a.seq])
    assert sorted(cancelled) == ["b", "c"]
    assert [(j.id, j.state, j.error) for j in q.list_jobs()] == [
        ("d", "pending", None),
        ("c", "cancelled", "dependency b was cancelled"),
        ("b", "cancelled", "dependency a was cancelled"),
        ("a", "cancelled", None),
    ]
    later = q.enqueue(JobSpec(command="e", after=("a",)))
    assert (later.state, later.error) == ("cancelled", "dependency a was cancelled")
    assert q.counts()["cancelled"] == 4


def test_a_cancel_cascades_through_layers_each_after_every_job_of_the_one_before(any_queue):
    """Each job is walked once, however many of the jobs found it runs after (QA: layers of 300
    took 18 s, walked from each of its dependencies). Each names the first of its dependencies
    that was cancelled; one that still waits for a job not cancelled is cancelled all the same
    (it would wait for good), and a job not below the cancelled one is left."""
    q = any_queue
    width = 12
    q.enqueue_many([JobSpec(command="root", id="r"), JobSpec(command="other", id="o")])
    layers = [["r"]]
    for name in "abc":
        ids = [f"{name}{n:02d}" for n in range(width)]
        extra = ("o",) if name == "b" else ()
        q.enqueue_many([JobSpec(command=i, id=i, after=(*layers[-1], *extra)) for i in ids])
        layers.append(ids)
    q.enqueue(JobSpec(command="aside", id="x", after=("o",)))
    q.cancel(["r"])
    errors = {job.id: job.error for job in q.list_jobs(state="cancelled")}
    assert set(errors) == {"r", *layers[1], *layers[2], *layers[3]}
    assert {errors[i] for i in layers[1]} == {"dependency r was cancelled"}
    assert {errors[i] for i in layers[2]} == {"dependency a00 was cancelled"}
    assert {errors[i] for i in layers[3]} == {"dependency b00 was cancelled"}
    assert {q.get(i).state for i in ("o", "x")} == {"pending"}
    assert q.counts()["cancelled"] == 1 + 3 * width


def test_a_job_after_a_cancelled_one_is_retried_only_with_it_or_after_it(any_queue):
    """Retried on its own, it was pending for good: "after a (waiting)" on a job that would
    never complete. Refused, naming that job, and nothing changes; retried with it, or after
    it, it waits for it and runs once it completes."""
    q = any_queue
    q.enqueue_many([JobSpec(command="a", id="a"), JobSpec(command="b", id="b", after=("a",)),
                    JobSpec(command="c", id="c", after=("b",))])  # fmt: skip
    q.cancel(["a"])
    assert [q.get(i).state for i in "abc"] == ["cancelled"] * 3
    with pytest.raises(QueueError, match="job b runs after a, which is cancelled: retry a"):
        q.retry(["b"])
    with pytest.raises(QueueError, match="job c runs after b, which is cancelled"):
        q.retry(["a", "c"])  # a is retried with it, but c waits for b
    assert [q.get(i).state for i in "abc"] == ["cancelled"] * 3  # nothing changed
    assert [j.id for j in q.retry(["b", "a"])] == ["b", "a"]  # both at once, in any order
    assert [j.id for j in q.retry(["c"])] == ["c"]  # after its dependency
    assert [run_one(q).id for _ in range(3)] == ["a", "b", "c"]
    assert q.counts()["completed"] == 3


def test_retrying_every_dead_job_refuses_one_after_a_cancelled_job(any_queue):
    q = any_queue
    q.enqueue_many([JobSpec(command="a", id="a"),
                    JobSpec(command="b", id="b", after=("a",), max_retries=1),
                    JobSpec(command="d", id="d", max_retries=1)])  # fmt: skip
    run_one(q)  # a
    assert run_one(q, FAILED).id in ("b", "d")
    assert run_one(q, FAILED).id in ("b", "d")
    q.retry(["a"])  # b ran after it; now it waits for a again
    q.cancel(["a"])
    with pytest.raises(QueueError, match="job b runs after a, which is cancelled"):
        q.retry_all_dead()
    with pytest.raises(QueueError, match="job b runs after a, which is cancelled"):
        q.retry_dead(["d", "b"])
    assert q.counts()["dead"] == 2


def test_a_job_after_one_purged_before_it_completed_is_not_retried(any_queue):
    """QA: a dead dependency purged cancels its dependent, and `retry` of that dependent then
    ran it, though what it waited for had never completed (its edge to a purged job counted as
    done). Refused, naming it, and nothing changes. A dependency purged once it had completed
    still lets its dependent be retried, and run."""
    q = any_queue
    q.enqueue_many([JobSpec(command="x", id="x", max_retries=0),
                    JobSpec(command="y", id="y", after=("x",)),
                    JobSpec(command="z", id="z", after=("y",)),
                    JobSpec(command="f", id="f"),
                    JobSpec(command="g", id="g", after=("f",), delay=3600)])  # fmt: skip
    assert run_one(q, FAILED).id == "x"  # dead: y waits for good
    assert run_one(q).id == "f"
    q.cancel(["g"])  # (after f completed)
    assert q.purge(["dead", "completed"]) == 2  # x and f
    assert [q.get(i).state for i in "yzg"] == ["cancelled"] * 3
    purged = "job y runs after x, which was purged before it completed"
    for ids in (["y"], ["z", "y"]):
        with pytest.raises(QueueError, match=purged):
            q.retry(ids)
    with pytest.raises(QueueError, match="job z runs after y, which is cancelled"):
        q.retry(["z"])
    assert [q.get(i).state for i in "yz"] == ["cancelled"] * 2  # nothing changed
    assert q.get("y").after_ids == ("x",) and set(q.get("y").purged_deps) == {"x"}
    assert [j.id for j in q.retry(["g"])] == ["g"]
    assert q.get("g").after_ids == ("f",)
    assert run_one(q).id == "g"
    assert run_one(q) is None


def test_a_listing_reads_every_jobs_dependencies_at_once(any_queue):
    q = any_queue
    q.enqueue_many([JobSpec(command="x", id=f"j{n}") for n in range(3)])
    q.enqueue_many([JobSpec(command="y", after=(f"j{n}", "j0")) for n in range(3)])
    queries = []
    original = q.db.execute_sql

    def counting(sql, *args, **kwargs):
        queries.append(sql)
        return original(sql, *args, **kwargs)

    q.db.execute_sql = counting
    jobs = q.list_jobs(with_output=False)
    del q.db.execute_sql
    assert len(queries) == 2  # the jobs, then every dependency of theirs
    assert [job.to_dict()["after"] for job in jobs][:3] == [["j0", "j2"], ["j0", "j1"], ["j0"]]


# -- queues --------------------------------------------------------------------------------


def test_workers_of_some_queues_claim_only_theirs(any_queue):
    q = any_queue
    q.enqueue(JobSpec(command="a", queue="reports"))
    q.enqueue(JobSpec(command="b"))
    assert q.claim("w", ("deploy",)) is None
    assert q.claim("w", ("reports",)).queue == "reports"
    assert q.claim("w", ("deploy", "default")).queue == "default"


def test_a_paused_queue_is_not_claimed_and_its_jobs_still_come_in(any_queue):
    q = any_queue
    q.pause_queue("slow")
    q.enqueue(JobSpec(command="a", queue="slow", priority=5))
    q.enqueue(JobSpec(command="b"))
    assert run_one(q).queue == "default"
    assert q.claim("w") is None
    assert q.next_due_in() is None  # idle workers do not spin on it
    info = {i.name: i for i in q.queues()}["slow"]
    assert (info.paused, info.limit, info.counts["pending"]) == (True, None, 1)
    q.resume_queue("slow")
    assert run_one(q).queue == "slow"
    assert [i.name for i in q.queues()] == ["default", "slow"]


def test_a_limit_holds_in_each_claim_and_frees_as_jobs_finish(any_queue):
    q = any_queue
    q.set_queue_limit("one", 1)
    q.enqueue_many([JobSpec(command=f"j{n}", id=f"j{n}", queue="one") for n in range(3)])
    first = q.claim("w")
    assert q.claim("w") is None and q.next_due_in() is None
    stored, following = q.finish_and_claim(first, OK, "w")
    assert stored.state == "completed" and following.id == "j1"
    q.set_queue_limit("one", None)
    assert q.claim("w").id == "j2"
    assert q.queues()[0].to_dict() == {
        "name": "one", "pending": 0, "processing": 2, "completed": 1, "failed": 0, "dead": 0,
        "cancelled": 0, "limit": None, "paused": False,
    }  # fmt: skip


def test_a_limited_queue_keeps_its_jobs_priority_over_other_queues(any_queue):
    """QA (PostgreSQL): once a queue had a limit, a completion claimed the next job of the
    queues without one, whatever its priority: a limited queue's priority-10 jobs waited
    behind 40 of priority 0 in another queue, far below the limit."""
    q = any_queue
    q.set_queue_limit("a", 5)
    q.enqueue_many([JobSpec(command="b", id=f"b{n}", queue="b") for n in range(3)])
    q.enqueue_many([JobSpec(command="a", id=f"a{n}", queue="a", priority=10) for n in range(3)])
    q.enqueue(JobSpec(command="c", id="c-first", queue="c", priority=20))
    order = []
    job = q.claim("w")
    while job is not None:
        order.append(job.id)
        _, job = q.finish_and_claim(job, OK, "w")
    assert order == ["c-first", "a0", "a1", "a2", "b0", "b1", "b2"]


HELD_BACKLOG = NEAR + 8  # past the entries a claim looks at before it probes each queue


@pytest.mark.parametrize("hold", ["pause", "full limit"])
def test_a_held_queue_s_backlog_first_in_claim_order_leaves_the_others_in_order(any_queue, hold):
    """QA: a claim passed over a held queue's backlog entry by entry (20,000 jobs of a paused
    queue made every other queue's claims ~20 times slower); it now probes each queue's first
    job once the first entries are held. Whichever way the job is found, the claims keep the
    claim order across the other queues, their filter, and the hold."""
    q = any_queue
    held = [JobSpec(command="h", id=f"h{n}", queue="held", priority=9) for n in range(HELD_BACKLOG)]
    q.enqueue_many(held)
    if hold == "pause":
        q.pause_queue("held")
    else:
        q.set_queue_limit("held", 1)
        assert q.claim("w", ("held",)).id == "h0"  # its one place taken
    q.enqueue_many([
        JobSpec(command="a", id="a-low", queue="a", priority=1),
        JobSpec(command="b", id="b-high", queue="b", priority=5),
        JobSpec(command="a", id="a-high", queue="a", priority=5),
        JobSpec(command="c", id="c", queue="c", priority=3),
        JobSpec(command="b", id="b-low", queue="b", priority=1),
    ])  # fmt: skip
    assert q.claim("w", ("a", "c", "held")).id == "a-high"  # a filter: b's waits
    order = []
    job = q.claim("w")
    while job is not None:
        order.append(job.id)
        _, job = q.finish_and_claim(job, OK, "w")
    assert order == ["b-high", "c", "a-low", "b-low"]  # then nothing: the rest is held
    if hold == "pause":
        q.resume_queue("held")
        assert q.claim("w").id == "h0"
    else:
        q.set_queue_limit("held", 2)
        assert q.claim("w").id == "h1" and q.claim("w") is None


def test_past_a_held_backlog_a_queue_with_nothing_due_yet_is_passed_to_the_next(any_queue, clock):
    """Past a paused backlog the claim looks at each queue's first due job, queue after queue:
    a queue whose ready jobs are not due yet (here "b", between "a" and "c" in name order, and
    first in claim order) is passed to the next, and its job is claimed once it is due."""
    q = any_queue
    q.enqueue_many([JobSpec(command="h", queue="held", priority=9) for _ in range(HELD_BACKLOG)])
    q.pause_queue("held")
    later = [JobSpec(command="b", id=f"b{n}", queue="b", priority=5, delay=60) for n in range(3)]
    due = [JobSpec(command="a", id="a", queue="a"), JobSpec(command="c", id="c", queue="c", priority=1)]
    q.enqueue_many(later + due)
    job = q.claim("w")
    assert job.id == "c"
    _, following = q.finish_and_claim(job, OK, "w")
    assert following.id == "a"
    _, following = q.finish_and_claim(following, OK, "w")
    assert following is None
    clock.advance(61)
    job = q.claim("w")
    assert job.id == "b0"
    _, following = q.finish_and_claim(job, OK, "w")
    assert following.id == "b1"


def test_a_dependent_runs_next_past_a_paused_backlog(any_queue):
    """With a paused queue's backlog first in claim order, a job's dependent is still the
    next job claimed once it completes (on PostgreSQL a job that has dependents is stored, and
    the next claimed, by a statement each; one without, by one statement: both pass the
    backlog by a probe per queue)."""
    q = any_queue
    q.enqueue_many([JobSpec(command="h", queue="held", priority=9) for _ in range(HELD_BACKLOG)])
    q.pause_queue("held")
    q.enqueue(JobSpec(command="a", id="a", queue="a"))
    q.enqueue(JobSpec(command="b", id="b", queue="b", after=("a",), priority=5))
    q.enqueue(JobSpec(command="c", id="c", queue="c", priority=1))
    job = q.claim("w")
    order = []
    while job is not None:
        order.append(job.id)
        stored, job = q.finish_and_claim(job, OK, "w")
        assert stored.state == "completed"
        job = job or q.claim("w")  # (SQLite's one statement claims before "b" is ready)
    # "c" comes first (priority 1, "b" waiting); once "a" completed, "b" (priority 5) is next.
    assert order == ["c", "a", "b"]
    assert q.counts()["completed"] == 3 and q.counts()["pending"] == HELD_BACKLOG


def test_a_run_past_a_paused_backlog_is_stored_and_the_next_claimed_by_one_statement(
    pg_target, monkeypatch
):
    """PostgreSQL, #17: while a paused queue holds NEAR jobs or more, a successful run's result
    is stored and the next job claimed by one statement, as with no backlog, planned without
    sorts (they took two, a savepoint around the claim: ~0.42x the claims' rate with no
    backlog), and in no transaction of its own: the session plans without sorts from the first
    such claim (a transaction around each took three round trips more: 0.46-0.49x; measured by
    `python -m tests.bench --only held`). Once the backlog is resumed, the session plans as
    configured again. Counted, not timed: what the database was sent for each run (the
    settings a worker reads once a second read once here)."""
    monkeypatch.setattr(workflows, "LIMITS_RECHECK_S", 3600.0)
    q = Queue(pg_target)
    try:
        q.enqueue_many([JobSpec(command="h", queue="held", priority=9)] * HELD_BACKLOG)
        q.pause_queue("held")
        q.enqueue_many([JobSpec(command="x", id=f"x{n}", queue=f"q{n % 3}") for n in range(6)])
        sent: list[str] = []
        real_sql, real_begin = q.db.execute_sql, q.db.begin

        def counted(sql, params=None, *args, **kwargs):
            sent.append(sql)
            return real_sql(sql, params, *args, **kwargs)

        def begun(*args, **kwargs):
            sent.append("BEGIN")
            return real_begin(*args, **kwargs)

        job = q.claim("w")
        q.db.execute_sql, q.db.begin = counted, begun
        order = [job.id]
        while job is not None:
            sent.clear()
            stored, job = q.finish_and_claim(job, OK, "w")
            assert stored.state == "completed"
            assert len(sent) == 1 and sent[0].startswith("WITH"), sent  # the one statement
            # which no longer reads the first NEAR entries, all held, before each queue's first
            assert f"LIMIT {NEAR}" not in sent[0]
            if job is not None:
                order.append(job.id)
        assert order == [f"x{n}" for n in range(6)]
        assert q.counts()["completed"] == 6 and q.counts()["pending"] == HELD_BACKLOG
        q.db.execute_sql, q.db.begin = real_sql, real_begin
        assert q.db.execute_sql("SHOW enable_sort").fetchone() == ("off",)
        q.resume_queue("held")
        assert q.claim("w").queue == "held"
        assert q.db.execute_sql("SHOW enable_sort").fetchone() == ("on",)
        assert q.db.execute_sql("SHOW jit").fetchone() == q.db.execute_sql(
            "SELECT reset_val FROM pg_settings WHERE name = 'jit'").fetchone()  # fmt: skip
    finally:
        q.close()


@pytest.mark.parametrize("hold", ["pause", "full limit"])
def test_a_claim_past_a_held_backlog_works_about_as_much_as_past_one_held_job(tmp_path, hold):
    """SQLite's claims, counted in the database's own instructions (not timed): with 4,000 jobs
    of a held queue first in claim order, three complete-and-claims of other queues' jobs cost
    about what they cost with one held job first. They grew with the backlog (16 times the work
    at 2,000 jobs) until a claim probed each queue's first job past the first NEAR entries; and
    they still took those NEAR steps at every claim, 4 times the work (#17: 0.66x the claims'
    rate), until a worker that has seen them all held goes to each queue's first at once."""

    def work(backlog: int) -> int:
        q = Queue(str(tmp_path / f"{backlog}.db"))
        try:
            q.enqueue_many([JobSpec(command="h", queue="held", priority=9)] * backlog)
            if hold == "pause":
                q.pause_queue("held")
            else:
                q.set_queue_limit("held", 1)
                assert q.claim("other", ("held",)) is not None  # its one place taken
            q.enqueue_many([JobSpec(command="a", queue=f"q{n % 3}") for n in range(4)])
            job = q.claim("w")
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            q.db.connection().set_progress_handler(count, 100)
            for _ in range(3):
                _, job = q.finish_and_claim(job, OK, "w")
                assert job is not None and job.queue != "held"
            return steps[0]
        finally:
            q.close()

    one, backlog = work(1), work(4000)
    assert backlog < 1.5 * one, (one, backlog)


def test_a_limited_queue_s_jobs_start_in_claim_order_under_racing_claims(target):
    """QA (PostgreSQL): two worker processes of 3 threads ran a limit-1 queue's jobs as
    1 3 2 4 ...: a claim waiting for the queue's turn held the first job it saw, and the claim
    whose turn it was took the next one. Idle workers claim again as every run ends (they are
    woken), so claims race at each end; here three threads claim without pause."""
    count = 20
    setup = Queue(target)
    setup.set_queue_limit("one", 1)
    for n in range(count):  # one by one: each its own enqueue time
        setup.enqueue(JobSpec(command="x", id=f"j{n:02d}", queue="one"))
    started: list = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        queue = Queue(target)
        try:
            while not stop.is_set():
                job = queue.claim(name)
                while job is not None:
                    started.append((job.started_at, job.seq, job.id))
                    _, job = queue.finish_and_claim(job, OK, name)
        except BaseException as exc:  # (seen by the test, not lost in the thread)
            errors.append(exc)
        finally:
            queue.close()

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: errors or setup.counts()["completed"] == count, 60,
                   "every job to run")  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        setup.close()
    assert not errors, errors
    assert [job_id for _, _, job_id in sorted(started)] == [f"j{n:02d}" for n in range(count)]


def test_settings_of_one_queue_changed_at_once_all_hold(target):
    """Two `queue pause` at once on PostgreSQL: both read no row, both inserted one, and one
    failed on the key ("duplicate key value violates unique constraint"). A pause and a limit
    at once could each write the other's value back. Two `queue resume` at once: the row went
    (back to the defaults) while the other waited on its lock, which failed with a traceback.
    Each change from a process of its own (a Queue each)."""
    queue = Queue(target)
    rounds, racers = 60, 8
    # The racers and the test meet twice a round: to start their changes at once, and when
    # done. Each racer keeps its Queue (and connection) through the rounds: a new one each
    # time cost 10 s of connections on PostgreSQL.
    meet = threading.Barrier(racers + 1, timeout=30)
    failures: list[BaseException] = []

    def acts(round_: int) -> list:
        name = f"race{round_}"
        if round_ % 2:
            return [lambda q: q.resume_queue(name)] * racers
        return [lambda q: q.pause_queue(name)] * 4 + [lambda q: q.set_queue_limit(name, 2)] * 4

    def race(index: int) -> None:
        mine = Queue(target)
        try:
            for round_ in range(rounds):
                meet.wait()
                try:
                    acts(round_)[index](mine)
                except Exception as exc:  # the test's to report
                    failures.append(exc)
                meet.wait()
        except threading.BrokenBarrierError:
            pass  # the test failed: it says why
        finally:
            mine.close()

    threads = [threading.Thread(target=race, args=(index,)) for index in range(racers)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(rounds):
            name = f"race{round_}"
            if round_ % 2:
                queue.pause_queue(name)
            meet.wait()  # go
            meet.wait()  # done
            assert failures == []
            info = {i.name: i for i in queue.queues()}.get(name)
            if round_ % 2:
                assert info is None  # no settings left, no jobs: not listed
            else:
                assert (info.paused, info.limit) == (True, 2)
    finally:
        meet.abort()  # (a racer still waiting ends)
        for thread in threads:
            thread.join(timeout=60)
    queue.close()


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "é", "a/b"])
def test_queue_names_are_checked(any_queue, name):
    with pytest.raises(InvalidInput, match="'queue'"):
        parse_job(json.dumps({"command": "x", "queue": name}))
    with pytest.raises(InvalidInput):
        any_queue.set_queue_limit(name, 1)
    assert any_queue.queues() == []


LEDGER_JOB = (
    'echo "start $(date +%s.%N)" >> {ledger}; sleep 0.3; echo "end $(date +%s.%N)" >> {ledger}'
)


def most_at_once(ledger) -> int:
    """The most jobs running at once, from the start and end lines they wrote."""
    marks = []
    for line in ledger.read_text().split("\n"):
        if line:
            kind, at = line.split()
            marks.append((float(at), 0 if kind == "end" else 1))
    running = most = 0
    for _, starts in sorted(marks):
        running += 1 if starts else -1
        most = max(most, running)
    return most


def test_a_limit_holds_across_worker_processes(target, tmp_path):
    """3 processes x 3 threads, a queue limited to 2: never 3 of its jobs at once, and 2 do
    run at once (the limit is a limit, not a lock)."""
    queue = Queue(target)
    queue.set_queue_limit("narrow", 2)
    ledger = tmp_path / "ledger"
    queue.enqueue_many(
        [JobSpec(command=LEDGER_JOB.format(ledger=ledger), queue="narrow") for _ in range(12)]
        + [JobSpec(command="true") for _ in range(6)]
    )
    procs = [WorkerProc(target, 3, tmp_path, f"worker-{n}") for n in range(3)]
    try:
        for proc in procs:
            proc.wait_ready()
        wait_until(lambda: queue.counts()["completed"] == 18, 30,
                   message=f"18 completed ({queue.counts()})")  # fmt: skip
    finally:
        for proc in procs:
            proc.stop()
        queue.close()
    assert most_at_once(ledger) == 2


def test_a_limit_set_here_holds_for_this_queues_next_claim(any_queue):
    """A Queue that has just set a limit claims that queue's jobs at once, within the limit:
    on PostgreSQL it no longer trusts what it read of limits before (a second's cache)."""
    q = any_queue
    q.enqueue_many([JobSpec(command="x", id=f"j{n}", queue="one") for n in range(3)])
    assert q.claim("w", ("other",)) is None  # limits read: none
    q.set_queue_limit("one", 1)
    assert q.claim("w").id == "j0"
    assert q.claim("w") is None


def test_a_limit_set_in_another_process_is_seen_by_a_pool_at_once(pg_target, monkeypatch):
    """PostgreSQL: a pool reads whether any queue has a limit at most once a second; a claim
    that finds nothing while a job is due reads it afresh. (Read on the clock alone, a limit
    set from another process on a queue whose jobs were running left its next job unclaimed
    for up to that second: QA saw it start 0.38-0.70 s late.) The second is an hour here:
    read on the clock alone, the job would not start in time."""
    from queuectl import WorkerPool, workflows

    monkeypatch.setattr(workflows, "LIMITS_RECHECK_S", 3600.0)
    here, elsewhere = Queue(pg_target), Queue(pg_target)
    pool = WorkerPool(here, 1).start()
    try:
        first = elsewhere.enqueue(JobSpec(command="true", queue="one"))
        wait_until(lambda: elsewhere.get(first.id).state == "completed", 30, "the first job's run")
        elsewhere.set_queue_limit("one", 1)
        second = elsewhere.enqueue(JobSpec(command="true", queue="one"))
        wait_until(lambda: elsewhere.get(second.id).state == "completed", 15,
                   "the job enqueued after the limit to run")  # fmt: skip
    finally:
        pool.stop()
        assert pool.join(30)
        here.close()
        elsewhere.close()


def test_a_limit_set_in_another_process_on_a_busy_pool_s_queue_is_seen_at_once(
    pg_target, monkeypatch
):
    """PostgreSQL, as above, with the pool's one thread busy on the queue when its limit is set:
    no thread watched for the announcement, and the run's end claimed through the statement
    that leaves limited queues out. The thread then spun, claiming nothing, until the limits
    were read again (QA: 0.39-0.85 s). The second is an hour here."""
    from queuectl import WorkerPool, workflows

    monkeypatch.setattr(workflows, "LIMITS_RECHECK_S", 3600.0)
    here, elsewhere = Queue(pg_target), Queue(pg_target)
    jobs = elsewhere.enqueue_many([JobSpec(command="sleep 0.3", queue="one")] * 4)
    pool = WorkerPool(here, 1).start()
    try:
        wait_until(lambda: elsewhere.get(jobs[0].id).state == "processing", 30, "the first run")
        elsewhere.set_queue_limit("one", 1)
        wait_until(lambda: all(elsewhere.get(j.id).state == "completed" for j in jobs), 30,
                   "the queue's jobs to run under its limit")  # fmt: skip
    finally:
        pool.stop()
        assert pool.join(30)
        here.close()
        elsewhere.close()


def blocked_by(watcher: Queue, pid: int, through: bool = False) -> int:
    """How many server sessions wait for a lock that session ``pid`` holds (other tests' sessions,
    on the same server at the same time, are not counted); ``through``: or wait behind one that
    does (a second waiter for a row waits for the first)."""
    behind = (" OR EXISTS (SELECT 1 FROM pg_stat_activity AS b WHERE %s = ANY(pg_blocking_pids("
              "b.pid)) AND b.pid = ANY(pg_blocking_pids(a.pid)))") if through else ""  # fmt: skip
    return watcher.db.execute_sql(
        "SELECT pg_stat_clear_snapshot(), COUNT(*) FROM pg_stat_activity AS a "
        f"WHERE %s = ANY(pg_blocking_pids(a.pid)){behind}", (pid, pid) if through else (pid,)
    ).fetchone()[1]


def test_a_claim_that_waited_for_its_queue_s_turn_starts_when_it_got_it(pg_target, clock):
    """PostgreSQL: a claim in a limited queue waits for the queue's lock while another claim
    or a run's end holds it. Its job's started_at was the time the claim began to look, so a
    run could read as started before the run it waited for had ended (the limit broken on
    paper: QA saw 139 of 150 in a queue of limit 1)."""
    import threading

    q, holder, watcher = (Queue(pg_target, clock=clock) for _ in range(3))
    try:
        q.set_queue_limit("one", 1)
        job = q.enqueue(JobSpec(command="x", queue="one"))
        claimed: list = []
        with holder.db.atomic():
            holder.db.execute_sql(
                'SELECT 1 FROM "queue_setting" WHERE "name" = %s FOR UPDATE', ("one",)
            )
            holding = holder.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            claiming = threading.Thread(target=lambda: claimed.append(q.claim("w")))
            claiming.start()
            wait_until(lambda: blocked_by(watcher, holding) == 1,
                       30, "the claim to wait for the queue's lock")  # fmt: skip
            clock.advance(10.0)  # the other claim's transaction took this long
        claiming.join(30)
        assert claimed[0].id == job.id
        assert claimed[0].started_at == clock() == q.get(job.id).started_at
    finally:
        for each in (q, holder, watcher):
            each.close()


def test_a_claim_waiting_for_a_limited_queue_s_turn_holds_no_other_queue_s_job(pg_target,
                                                                               clock):
    """QA's second look (PostgreSQL): a claim locked the first job of the queues without a
    limit, then waited for a limited queue's turn (its job came first), holding it: every
    other claim took the next one meanwhile, and such a queue's jobs ran out of order."""
    q, other, holder, watcher = (Queue(pg_target, clock=clock) for _ in range(4))
    try:
        q.set_queue_limit("limited", 1)
        q.enqueue(JobSpec(command="x", id="l0", queue="limited", priority=5))
        q.enqueue_many([JobSpec(command="x", id=f"u{n}", queue="free") for n in range(2)])
        claimed: dict[str, object] = {}
        with holder.db.atomic():  # the limited queue's turn, taken by another claim
            holder.db.execute_sql(
                'SELECT 1 FROM "queue_setting" WHERE "name" = %s FOR UPDATE', ("limited",)
            )
            holding = holder.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            threads = [threading.Thread(target=lambda who=who, queue=queue: claimed.update(
                {who: queue.claim(who)})) for who, queue in (("a", q), ("b", other))]  # fmt: skip
            threads[0].start()
            wait_until(lambda: blocked_by(watcher, holding) == 1, 30, "a's claim to wait")
            threads[1].start()
            wait_until(lambda: blocked_by(watcher, holding, through=True) == 2
                       or "b" in claimed, 30, "b's claim to wait too")  # fmt: skip
        for thread in threads:
            thread.join(30)
        assert claimed["a"].id == "l0"
        assert claimed["b"].id == "u0"  # the first of its queue, not the one after it
    finally:
        for each in (q, other, holder, watcher):
            each.close()


def test_a_large_batch_is_counted_recorded_and_ordered_as_one_job_is(any_queue):
    """A batch of many statements' worth of rows (PostgreSQL inserts them 500 to a statement,
    its counters and history counting per statement): every job counted and its enqueue
    recorded once, in the batch's order, its dependencies on earlier lines kept."""
    q = any_queue
    count = 1234
    specs = [JobSpec(command=f"c{n}", id=f"j{n:04d}") for n in range(count)]
    specs.append(parse_job('{"command": "last", "id": "tail", "after": ["j0000", "j1233"]}'))
    ids = q.enqueue_ids(specs)
    assert ids == [f"j{n:04d}" for n in range(count)] + ["tail"]
    assert q.counts()["pending"] == count + 1
    Job, Event = q.models.Job, q.models.Event
    seqs = [job.id for job in Job.select(Job.id).order_by(Job.seq)]
    assert seqs == ids  # claimed in the order given: the seqs follow it
    assert Event.select().where(Event.event == "enqueued").count() == count + 1
    [tail] = q.fill_after([q.get("tail")])
    assert sorted(tail.after_ids) == ["j0000", "j1233"]


def test_a_schema_16_database_keeps_the_ids_of_its_dependencies(target):
    """Schema 17 stores a dependency's id on its edge. Upgrading fills it in for every
    dependency still there, so purging one afterwards leaves it named; one purged before the
    upgrade cannot be named (its id went with its row)."""
    queue = Queue(target)
    try:
        kept = queue.enqueue(JobSpec(command="kept", id="kept"))
        gone = queue.enqueue(JobSpec(command="gone", id="gone"))
        later = queue.enqueue(JobSpec(command="later", after=("kept", "gone")))
        assert run_one(queue).id == kept.id and run_one(queue).id == gone.id
        db = queue.db
        db.execute_sql('ALTER TABLE "job_dep" DROP COLUMN "dep_id"')
        db.execute_sql("UPDATE queuectl_schema SET value = '16' WHERE key = 'version'")
        Job = queue.models.Job
        Job.delete().where(Job.id == "gone").execute()  # purged before the upgrade
    finally:
        queue.close()
    upgraded = Queue(target)
    try:
        assert "dep_id" in {c.name for c in upgraded.db.get_columns("job_dep")}
        assert upgraded.get(later.id).after_ids == ("kept",)
        assert upgraded.purge(["completed"]) == 1
        assert upgraded.get(later.id).after_ids == ("kept",), "named once purged"
        assert upgraded.get(later.id).state == "pending"
    finally:
        upgraded.close()
