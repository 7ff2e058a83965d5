"""The other process of a fault-injection test: ``python child.py ACTION DB [ARGS]``.

It says what it is doing on stdout, one line at a time (flushed), so that the test can act at
the right moment: kill it, or tell it (a line on stdin) to go on.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys


def say(line: str) -> None:
    print(line, flush=True)


def enqueue_many(db: str, count: str) -> None:
    """Enqueue ``count`` jobs in one call (one transaction); killed at some moment by the test."""
    from queuectl import JobSpec, Queue

    queue = Queue(db)
    specs = [JobSpec(command=f"echo {n}") for n in range(int(count))]
    say("ready")
    queue.enqueue_many(specs)
    say("done")


def enqueue_many_killed_inside(db: str, count: str, fraction: str) -> None:
    """Enqueue ``count`` jobs in one call and SIGKILL this process from inside SQLite, when
    ``fraction`` of the work of that call is done: surely in the middle of its transaction."""
    from queuectl import JobSpec, Queue

    specs = [JobSpec(command=f"echo {n}") for n in range(int(count))]
    ticks = 0
    kill_at: int | None = None

    def progress() -> int:
        nonlocal ticks
        ticks += 1
        if kill_at is not None and ticks >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    # A dry run on a scratch file measures the work (SQLite's progress ticks) of the call.
    scratch = Queue(db + ".scratch")
    scratch.db.connection().set_progress_handler(progress, 100)
    scratch.enqueue_many(specs)
    total, ticks = ticks, 0
    queue = Queue(db)
    kill_at = max(1, int(total * float(fraction)))
    queue.db.connection().set_progress_handler(progress, 100)
    say(f"ready {total}")
    queue.enqueue_many(specs)
    say("done")


def die_in_finish(db: str) -> None:
    """A worker process that runs one job and dies (SIGKILL) right after the job ended, before
    its result is stored."""
    from queuectl import Queue, WorkerPool

    def finish(self, job, result, worker_id, *queues, **kwargs):
        say(f"ran {job.id} {result.output.strip()}")
        os.kill(os.getpid(), signal.SIGKILL)

    Queue.finish = Queue.finish_and_claim = finish  # the pool stores results through either
    queue = Queue(db)
    pool = WorkerPool(queue, 1).start()
    say(f"worker {pool.worker_id}")
    pool.run_until_stopped()


def run_worker(db: str) -> None:
    """A worker process (one thread), until it is killed."""
    from queuectl import Queue, WorkerPool

    pool = WorkerPool(Queue(db), 1).start()
    say(f"worker {pool.worker_id}")
    pool.run_until_stopped()


def hold_write_lock(db: str) -> None:
    """Take SQLite's write lock (BEGIN IMMEDIATE) and keep it until a line arrives on stdin."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("UPDATE job SET priority = priority WHERE 0")
    say("locked")
    sys.stdin.readline()
    connection.execute("COMMIT")
    connection.close()
    say("released")


def open_queue(db: str, action: str = "open") -> None:
    """Open the queue (and write to it): prints ``ok``, or ``QueueError: <message>``, or the
    name of any other exception."""
    from queuectl import Queue, QueueError

    try:
        queue = Queue(db)
        if action == "write":
            queue.enqueue("true")
        say("ok")
    except QueueError as exc:
        say(f"QueueError: {exc}")
    except BaseException as exc:  # reported to the test, which fails on it
        say(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")


ACTIONS = {
    "enqueue_many": enqueue_many,
    "enqueue_many_killed_inside": enqueue_many_killed_inside,
    "die_in_finish": die_in_finish,
    "run_worker": run_worker,
    "hold_write_lock": hold_write_lock,
    "open_queue": open_queue,
}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
