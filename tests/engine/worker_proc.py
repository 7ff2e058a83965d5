"""A worker process for the multi-process tests, on the engine API only (not the CLI).

    python worker_proc.py DB THREADS [--burst]

Prints ``ready WORKER_ID`` once its pool runs, one ``EVENT KIND JOB_ID`` line per job event on
stdout, logs warnings to stderr. SIGTERM stops it gracefully (a second one kills running jobs);
so does a stop request through the queue. Exits 0 when its pool has stopped.
"""

import logging
import signal
import sys

from queuectl import Queue, WorkerPool


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    burst = "--burst" in sys.argv[3:]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def event(e) -> None:
        print(f"EVENT {e.kind} {e.job.id}", flush=True)

    pool = WorkerPool(Queue(path), threads=threads, burst=burst, on_event=event)
    terms = []

    def on_term(signum, frame) -> None:
        terms.append(signum)
        if len(terms) == 1:
            pool.stop()
        else:
            pool.kill()

    signal.signal(signal.SIGTERM, on_term)
    pool.start()
    print(f"ready {pool.worker_id}", flush=True)
    pool.run_until_stopped()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
