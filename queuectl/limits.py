"""Limits that command-line options declare, in a module that imports nothing: the CLI builds
its options (and their ``--help``) without loading the engine."""

MAX_THREADS = 256  # worker threads in one process; more processes scale further
# Once a stop is asked for, how long a finished job's result may wait for an unreachable
# database before the worker gives up on it (the job is then rescued as "worker lost").
STOP_TIMEOUT_S = 30.0
MAX_STOP_TIMEOUT_S = 1e9  # ~31 years: under threading.TIMEOUT_MAX, added to time.monotonic()
