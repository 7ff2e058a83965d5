"""`python -m tests.bench.counted ARGS...`: the queuectl CLI with ARGS, counting the statements it
sends to PostgreSQL (each ``execute`` of a psycopg cursor or connection is one round trip); the
count so far is written to $BENCH_STATEMENTS_FILE every second. pg_stat_database cannot tell
them: its transaction counts take in autovacuum's visits too."""

from __future__ import annotations

import os
import sys
import threading
import time

import psycopg

_count = 0
_lock = threading.Lock()
_execute = psycopg.Cursor.execute
_executemany = psycopg.Cursor.executemany


def _counted(method):  # type: ignore[no-untyped-def]
    def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        global _count
        with _lock:
            _count += 1
        return method(self, *args, **kwargs)

    return call


def _report(path: str) -> None:
    while True:
        with open(path + ".tmp", "w") as file:
            file.write(str(_count))
        os.replace(path + ".tmp", path)
        time.sleep(1.0)


def main() -> int:
    psycopg.Cursor.execute = _counted(_execute)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = _counted(_executemany)  # type: ignore[method-assign]
    threading.Thread(target=_report, args=(os.environ["BENCH_STATEMENTS_FILE"],),
                     daemon=True).start()  # fmt: skip
    from queuectl.cli import main as cli

    sys.argv[0] = "queuectl"
    return cli()


if __name__ == "__main__":
    sys.exit(main())
