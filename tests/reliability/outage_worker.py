"""A worker process for the outage tests (test_outage_features.py), on the engine API:

    python outage_worker.py TARGET THREADS [--host H] [--lease S] [--clock FILE] [--queue Q]...

Prints ``ready WORKER_ID`` once its pool runs; logs warnings (the outage's lines) to stderr.
``--clock FILE``: its time is the real time plus the seconds FILE holds (the test moves it, so
that due times pass without waiting for them). SIGTERM stops it gracefully.
"""

import logging
import signal
import sys
import time

from queuectl import Queue, WorkerPool


def offset_clock(path: str):  # noqa: ANN201
    def clock() -> float:
        with open(path) as f:
            return time.time() + float(f.read())

    return clock


def main() -> None:
    target, threads, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    options, queues = {}, []
    for flag, value in zip(rest[::2], rest[1::2]):
        if flag == "--host":
            options["host"] = value
        elif flag == "--lease":
            options["lease"] = float(value)
        elif flag == "--clock":
            options["clock"] = offset_clock(value)
        elif flag == "--queue":
            queues.append(value)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    pool = WorkerPool(Queue(target, **options), threads, queues=queues or None)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    pool.start()
    print(f"ready {pool.worker_id}", flush=True)
    pool.run_until_stopped()


if __name__ == "__main__":
    main()
