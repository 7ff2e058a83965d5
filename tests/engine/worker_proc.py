"""A worker process for the multi-process tests, on the engine API only (not the CLI).

    python worker_proc.py DB THREADS [--burst] [--lease SECONDS]

Prints ``ready WORKER_ID`` once its pool runs, one ``EVENT KIND JOB_ID`` line per job event on
stdout, logs warnings to stderr. SIGTERM stops it gracefully (a second one kills running jobs);
so does a stop request through the queue. Exits 0 when its pool has stopped.
"""

import logging
import signal
import sys
import threading

from queuectl import Queue, WorkerPool


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    burst = "--burst" in sys.argv[3:]
    options = {}
    if "--lease" in sys.argv:
        options["lease"] = float(sys.argv[sys.argv.index("--lease") + 1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:  # one write per line: threads never interleave within one
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def event(e) -> None:
        say(f"EVENT {e.kind} {e.job.id} {e.reason}".rstrip())

    pool = WorkerPool(Queue(path, **options), threads=threads, burst=burst, on_event=event)
    terms = []

    def on_term(signum, frame) -> None:
        terms.append(signum)
        if len(terms) == 1:
            pool.stop()
        else:
            pool.kill()

    signal.signal(signal.SIGTERM, on_term)
    pool.start()
    say(f"ready {pool.worker_id}")
    pool.run_until_stopped()
    say("stopped")


if __name__ == "__main__":
    main()
