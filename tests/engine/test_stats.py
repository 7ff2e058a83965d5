"""Stats (SPEC 8): per queue over a window, from the history's events; durations as users type
them."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue
from queuectl.spec import parse_duration
from queuectl.errors import InvalidInput
from queuectl.executor import RunResult

OK = RunResult(0, None, "")
FAIL = RunResult(1, "exit code 1", "")


def run_one(q: Queue, clock, worker: str, seconds: float, result: RunResult = OK) -> None:
    job = q.claim(worker)
    assert job is not None
    clock.advance(seconds)
    q.finish(job, result, worker)


def test_percentiles_of_known_run_and_wait_times(any_queue, clock):
    q = any_queue
    worker = q.register_worker(1)
    for seconds in range(1, 21):  # runs of 1..20 s, each waiting (from due to start) as long
        q.enqueue("true")
        clock.advance(seconds)
        run_one(q, clock, worker, seconds)
    figures = q.stats(since=3600).queues["default"]
    assert figures.runs == {"completed": 20, "failed": 0, "dead": 0, "cancelled": 0}
    assert figures.finished == 20
    assert figures.finished_per_minute == pytest.approx(20 / 60)
    # Interpolated as PostgreSQL's percentile_cont: p50 of 1..20 is 10.5, p95 is 19.05.
    assert figures.run_p50 == pytest.approx(10.5)
    assert figures.run_p95 == pytest.approx(19.05)
    assert figures.run_max == pytest.approx(20)
    assert (figures.wait_p50, figures.wait_p95) == (pytest.approx(10.5), pytest.approx(19.05))
    assert figures.oldest_waiting is None


def test_runs_are_counted_by_what_they_led_to(any_queue, clock):
    q = any_queue
    q.enqueue(JobSpec(command="flaky", max_retries=2))
    worker = q.register_worker(1)
    run_one(q, clock, worker, 1, FAIL)  # a retry is scheduled: failed
    clock.advance(10)
    run_one(q, clock, worker, 1, FAIL)  # no retry left: dead
    q.enqueue("true")
    run_one(q, clock, worker, 1)
    lost = q.enqueue(JobSpec(command="sleep 1000", max_retries=5))
    gone = q.register_worker(1)
    assert q.claim(gone).id == lost.id
    q.unregister_worker(gone)
    q.rescue_lost()  # rescued, to be retried: counted as failed
    figures = q.stats().queues["default"]
    assert figures.runs == {"completed": 1, "failed": 2, "dead": 1, "cancelled": 0}
    assert figures.finished == 2  # completed and dead; the rescued job waits for its retry


def test_the_window_queue_filter_and_oldest_waiting(any_queue, clock):
    q = any_queue
    worker = q.register_worker(1)
    q.enqueue("true")
    run_one(q, clock, worker, 5)
    clock.advance(7200)  # that run is now two hours old
    q.enqueue("true")
    run_one(q, clock, worker, 3)
    waiting = q.enqueue("sleep 1")  # due now, and waits
    q.enqueue(JobSpec(command="later", delay=600))  # not due: not waiting yet
    clock.advance(42)
    recent = q.stats(since=3600).queues["default"]
    assert recent.runs["completed"] == 1 and recent.run_max == pytest.approx(3)
    assert recent.oldest_waiting == pytest.approx(42)
    assert q.stats(since=3 * 3600).queues["default"].runs["completed"] == 2
    assert q.stats(queue="other").queues["other"].runs["completed"] == 0, "named: always listed"
    assert list(q.stats(queue="other").queues) == ["other"]
    assert waiting.id


@pytest.mark.parametrize(
    "text, seconds",
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), (" 1.5h ", 5400),
     ("0", 0)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "1w", "h", "2 hours", "1e999", "nan", "1.2.3"])
def test_bad_durations_name_the_forms(text):
    with pytest.raises(InvalidInput, match="90s, 15m"):
        parse_duration(text)


def test_run_times_and_waits_are_each_runs_own(any_queue, clock):
    """Each run's row carries its duration and its wait from due to start (schema 9): waits of
    0..9 s beside run times of 10..100 s; a run given back (released) has a wait and no run
    time; a job cancelled while it waited is finished without a run."""
    q = any_queue
    worker = q.register_worker(1)
    for index in range(10):
        q.enqueue("true")
        clock.advance(index)  # waits 0..9 s
        run_one(q, clock, worker, 10 * (index + 1))
    q.enqueue("sleep 100")
    clock.advance(50)
    claimed = q.claim(worker)
    clock.advance(1000)
    assert q.release(claimed, worker)  # waited 50 s; no run time
    q.cancel([q.enqueue("sleep 1").id])
    figures = q.stats(since=3 * 3600).queues["default"]
    assert figures.runs == {"completed": 10, "failed": 0, "dead": 0, "cancelled": 0}
    assert figures.finished == 11
    assert (figures.run_p50, figures.run_p95, figures.run_max) == (
        pytest.approx(55), pytest.approx(95.5), pytest.approx(100),
    )  # fmt: skip
    # Waits 0..9 and 50: p50 is 5, p95 between 9 and 50.
    assert (figures.wait_p50, figures.wait_p95) == (pytest.approx(5), pytest.approx(29.5))
    assert q.stats(since=3 * 3600, queue="default").queues["default"].run_p95 == pytest.approx(95.5)


def test_no_runs_no_figures(any_queue, clock):
    q = any_queue
    q.enqueue("true")
    figures = q.stats().queues["default"]
    assert (figures.run_p50, figures.run_p95, figures.run_max) == (None, None, None)
    assert (figures.wait_p50, figures.wait_p95, figures.finished) == (None, None, 0)
    assert figures.oldest_waiting == 0


def test_one_run_ties_and_queues_of_their_own(any_queue, clock):
    """One run: each percentile is that run; equal runs: every figure is their time; each
    queue's figures are its own runs'."""
    q = any_queue
    worker = q.register_worker(1)
    q.enqueue(JobSpec(command="true", queue="one"))
    run_one(q, clock, worker, 7)
    for _ in range(5):
        q.enqueue(JobSpec(command="true", queue="ties"))
        clock.advance(2)  # each waits 2 s
        run_one(q, clock, worker, 3)
    report = q.stats()
    one, ties = report.queues["one"], report.queues["ties"]
    assert (one.run_p50, one.run_p95, one.run_max) == (7, 7, 7)
    assert (one.wait_p50, one.wait_p95) == (0, 0) and one.runs["completed"] == 1
    assert (ties.run_p50, ties.run_p95, ties.run_max) == (3, 3, 3)
    assert (ties.wait_p50, ties.wait_p95) == (2, 2) and ties.runs["completed"] == 5
    assert list(q.stats(queue="ties").queues) == ["ties"]
