"""The oldest waiting job per queue (`stats`, the metrics) from schema 10's index on (queue,
run_at) over ready jobs: every queue found, only ready jobs counted; a schema 9 database gains
the index and a new file has it."""

from __future__ import annotations

import pytest

from queuectl import JobSpec, Queue, schema
from queuectl.executor import RunResult
from queuectl.models import READY_QUEUE_INDEX

FAIL = RunResult(1, "exit code 1", "")


def at(seconds: float):
    # Epoch seconds: approx's default (relative) tolerance would be half an hour.
    return pytest.approx(seconds, abs=1e-6)


def test_each_queue_its_oldest_ready_job(any_queue, clock):
    q = any_queue
    start = clock()
    q.enqueue(JobSpec(command="true", queue="a"))  # due at start
    clock.advance(5)
    q.enqueue(JobSpec(command="true", queue="a"))
    first = q.enqueue(JobSpec(command="true", queue="b"))  # due at start + 5
    q.enqueue(JobSpec(command="later", queue="c", delay=600))  # not due yet: not waiting
    q.enqueue(JobSpec(command="after", queue="d", after=(first.id,)))  # waits for a dependency
    # A failed job waits once its retry is due; a running job does not wait.
    retried = q.enqueue(JobSpec(command="flaky", queue="e", max_retries=3))
    worker = q.register_worker(2)
    claimed = q.claim(worker, queues=("e",))
    assert claimed.id == retried.id
    retry_at = q.finish(claimed, FAIL, worker).run_at  # failed: waits once its retry is due
    assert retry_at > clock()
    assert q.enqueue(JobSpec(command="run", queue="f")).id == q.claim(worker, queues=("f",)).id
    assert q.oldest_waiting() == {"a": at(start), "b": at(start + 5)}
    assert q.oldest_waiting("a") == {"a": at(start)}
    assert q.oldest_waiting("c") == {} and q.oldest_waiting("zzz") == {}
    assert q.oldest_waiting("0") == {} and q.oldest_waiting("aa") == {}, "not the next queue's"
    clock.advance(3600)  # the retry is due now, and the delayed job
    due = q.oldest_waiting()
    assert due == {"a": at(start), "b": at(start + 5), "c": at(start + 605), "e": at(retry_at)}
    figures = q.stats()
    assert figures.queues["a"].oldest_waiting == pytest.approx(3605)
    assert "d" not in figures.queues and "f" not in figures.queues
    assert q.stats(queue="b").queues["b"].oldest_waiting == pytest.approx(3600)


def test_no_ready_job_no_oldest(any_queue):
    assert any_queue.oldest_waiting() == {}
    assert any_queue.stats().queues == {}


def _index_columns(queue: Queue) -> list[str]:
    found = [i for i in queue.db.get_indexes("job") if i.name == READY_QUEUE_INDEX]
    assert len(found) == 1, "the index is there, once"
    return list(found[0].columns)


def test_a_new_file_has_the_index(target):
    queue = Queue(target)
    try:
        assert _index_columns(queue) == ["queue", "run_at"]
        assert schema.read_version(queue.db) == schema.SCHEMA_VERSION >= 10
    finally:
        queue.close()


def test_a_schema_9_database_gains_the_index_keeping_its_jobs(target, clock):
    queue = Queue(target, clock=clock)
    try:
        kept = queue.enqueue(JobSpec(command="true", queue="mail"))
        queue.db.execute_sql(f'DROP INDEX "{READY_QUEUE_INDEX}"')
        queue.db.execute_sql("UPDATE queuectl_schema SET value = '9' WHERE key = 'version'")
    finally:
        queue.close()
    clock.advance(7)
    upgraded = Queue(target, clock=clock)
    try:
        assert _index_columns(upgraded) == ["queue", "run_at"]
        assert schema.read_version(upgraded.db) == schema.SCHEMA_VERSION
        assert upgraded.get(kept.id).queue == "mail"
        assert upgraded.oldest_waiting() == {"mail": at(kept.run_at)}
        from playhouse import migrate

        with upgraded._write():  # the step again: harmless
            migrator = migrate.SchemaMigrator.from_database(upgraded.db)
            migrate.migrate(*schema.MIGRATIONS[10](migrator))
        assert _index_columns(upgraded) == ["queue", "run_at"]
    finally:
        upgraded.close()
