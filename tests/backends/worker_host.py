"""A worker process posing as one host: `python worker_host.py TARGET HOST THREADS LEASE`.

Runs a WorkerPool until SIGTERM (graceful); prints "ready" to stdout once it runs.
"""

import signal
import sys

from queuectl import Queue, WorkerPool


def main() -> None:
    target, host, threads, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    queue = Queue(target, host=host, lease=lease)

    pool = WorkerPool(queue, threads).start()
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    print("ready", flush=True)
    pool.run_until_stopped()


if __name__ == "__main__":
    main()
