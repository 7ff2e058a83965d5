"""A purge on SQLite reads each batch's pages before it takes the write lock: the same jobs are
deleted as before, a job retried between that read and the batch's transaction is kept, and a
purged job's output is gone from the file where the connection's ``secure_delete`` says so."""

from __future__ import annotations

import time

import pytest

import queuectl.control as control
from queuectl import Queue


def finished(q: Queue, count: int, state: str = "completed") -> list[int]:
    """``count`` jobs finished an hour ago, each with one history row; their seqs."""
    Job, Event = q.models.Job, q.models.Event
    now = time.time()
    seqs = []
    for _ in range(count):
        job = q.get(q.enqueue("true").id)
        Job.update(state=state, finished_at=now - 3600).where(Job.seq == job.seq).execute()
        Event.insert(job_seq=job.seq, job_id=job.id, queue="default", at=now - 3600 + job.seq,
                     event=state).execute()  # fmt: skip
        seqs.append(job.seq)
    return seqs


def test_a_purge_in_many_batches_deletes_every_finished_job_and_its_history_only(target,
                                                                                  monkeypatch):
    monkeypatch.setattr(control, "PURGE_FIRST_BATCH", 30)  # several batches
    q = Queue(target)
    try:
        done = finished(q, 70) + finished(q, 10, "cancelled")
        kept = finished(q, 5, "dead")
        waiting = q.get(q.enqueue("true").id)
        Job, Event = q.models.Job, q.models.Event
        history = Event.select().where(Event.job_seq.in_(kept)).count()
        assert q.purge() == 80
        assert {seq for (seq,) in Job.select(Job.seq).tuples()} == {*kept, waiting.seq}
        assert not Event.select().where(Event.job_seq.in_(done)).exists()
        assert Event.select().where(Event.job_seq.in_(kept)).count() == history >= 5
        assert q.counts()["completed"] == 0 and q.counts()["dead"] == 5
    finally:
        q.close()


def test_a_job_retried_after_the_batch_was_read_ahead_is_not_purged(tmp_path, monkeypatch):
    path = str(tmp_path / "queue.db")
    q, other = Queue(path), Queue(path)
    try:
        seqs = finished(q, 20)
        retried = q.models.Job.get(q.models.Job.seq == seqs[3])
        warm = q._warm
        calls = []

        def warm_then_retry(*args):
            warm(*args)
            if not calls:  # another process retries a job of the batch just read
                other.retry([retried.id])
            calls.append(args)

        monkeypatch.setattr(q, "_warm", warm_then_retry)
        assert q.purge() == 19
        assert calls and q.get(retried.id).state == "pending"
    finally:
        q.close()
        other.close()


def test_a_purged_jobs_output_is_not_left_in_the_file_with_secure_delete_on(tmp_path):
    path = tmp_path / "queue.db"
    q = Queue(str(path))
    try:
        q.db.execute_sql("PRAGMA secure_delete = ON")  # the setting this machine's build defaults to
        secret = "purged-secret-" + "x" * 40
        seqs = finished(q, 20)
        q.models.Job.update(output=secret).where(q.models.Job.seq.in_(seqs)).execute()
        q.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert secret.encode() in path.read_bytes()
        assert q.purge() == 20
        q.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert secret.encode() not in path.read_bytes()
        wal = tmp_path / "queue.db-wal"
        assert not wal.exists() or secret.encode() not in wal.read_bytes()
    finally:
        q.close()
