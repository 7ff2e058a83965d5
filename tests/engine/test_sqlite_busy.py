"""SQLite: a writer that finds another connection's write lock taken waits for it in short steps
(queuectl.db.SqliteQueueDatabase, never sleeping through a pause of the other writer): it gets
the lock once it is free, however many steps it waited; it gives up only after
SQLITE_BUSY_TIMEOUT_S in all; and a connection given a busy timeout of its own
(`PRAGMA busy_timeout`) keeps that bound."""

from __future__ import annotations

import sqlite3
import threading

import peewee
import pytest

from queuectl import Queue
from queuectl import db as queuectl_db
from queuectl.spec import JobSpec

MANY_STEPS_S = 20 * queuectl_db.SQLITE_BUSY_STEP_MS / 1000


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "queue.db")
    Queue(path).close()
    return path


@pytest.fixture
def hold_lock(path):
    """Another connection takes SQLite's write lock; ``hold_lock(after)`` releases it ``after``
    seconds later (None: at the end of the test)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    lock = threading.Lock()
    timers = []

    def release():
        with lock:
            if connection.in_transaction:
                connection.execute("COMMIT")

    def hold(after):
        if after is not None:
            timers.append(threading.Timer(after, release))
            timers[-1].start()

    yield hold
    for timer in timers:
        timer.join()
    release()
    connection.close()


def test_an_enqueue_waits_many_steps_for_the_lock_then_writes(path, hold_lock):
    queue = Queue(path)
    try:
        hold_lock(MANY_STEPS_S)
        assert queue.enqueue(JobSpec(command="true", id="waited")).id == "waited"
        assert queue.get("waited").state == "pending"
    finally:
        queue.close()


def test_a_claim_waits_many_steps_for_the_lock_then_claims(path):
    queue = Queue(path)
    queue.enqueue(JobSpec(command="true", id="j"))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(MANY_STEPS_S, lambda: holder.execute("COMMIT"))
    timer.start()
    try:
        job = queue.claim("w1")
    finally:
        timer.join()
        holder.close()
    try:
        assert job is not None and job.id == "j"
        assert queue.get("j").state == "processing"
    finally:
        queue.close()


def test_a_writer_gives_up_after_the_whole_busy_timeout_and_changes_nothing(
    path, hold_lock, monkeypatch
):
    monkeypatch.setattr(queuectl_db, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    queue = Queue(path)
    try:
        hold_lock(None)
        with pytest.raises(peewee.OperationalError, match="database is locked"):
            queue.enqueue(JobSpec(command="true", id="never"))
    finally:
        queue.close()


def test_a_busy_timeout_set_on_the_connection_is_its_bound(path, hold_lock):
    queue = Queue(path)
    try:
        queue.db.execute_sql("PRAGMA busy_timeout = 50")  # SQLite's own handler, 50 ms
        hold_lock(1.0)  # free again in a second: tried again meanwhile, it would succeed
        with pytest.raises(peewee.OperationalError, match="database is locked"):
            queue.enqueue(JobSpec(command="true", id="refused"))
    finally:
        queue.close()
    queue = Queue(path)
    try:
        assert [job.id for job in queue.list_jobs()] == []
    finally:
        queue.close()


def test_opening_a_new_file_another_process_is_still_creating_waits_for_it(tmp_path):
    """Processes opening a new file at once: one still holds the file's lock from creating it
    (before the switch to WAL, readers wait for it too) while another connects. The connection's
    own set-up (its pragmas) waits in short steps like any statement, not SQLite's one step."""
    path = str(tmp_path / "queue.db")
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("CREATE TABLE first (n)")
    creator.execute("BEGIN EXCLUSIVE")
    creator.execute("INSERT INTO first VALUES (1)")
    timer = threading.Timer(MANY_STEPS_S, lambda: creator.execute("COMMIT"))
    timer.start()
    try:
        database = queuectl_db._open_sqlite(path)
        assert database.execute_sql("SELECT n FROM first").fetchall() == [(1,)]
        database.close()
    finally:
        timer.join()
        creator.close()


def test_a_write_waiting_for_the_lock_says_since_when_until_it_is_through(path, hold_lock):
    """The TUI tells a user whose key waits behind another process's write lock (QA: `r` showed
    nothing for as long as the lock was held): the database says which of its writes wait, and
    since when, and says nothing once they went through."""
    import time

    queue = Queue(path)
    try:
        assert queue.db.lock_waited_since() is None
        done = threading.Event()
        before = time.monotonic()
        writer = threading.Thread(target=lambda: (queue.enqueue(JobSpec("true", id="w8")),
                                                  done.set()))  # fmt: skip
        writer.start()
        deadline = time.monotonic() + 30
        while queue.db.lock_waited_since() is None:
            assert time.monotonic() < deadline and not done.is_set(), "the write never waited"
            time.sleep(0.005)
        assert before <= queue.db.lock_waited_since() <= time.monotonic()
        hold_lock(0)
        writer.join(30)
        assert done.is_set() and queue.get("w8").state == "pending"
        assert queue.db.lock_waited_since() is None
    finally:
        queue.close()
