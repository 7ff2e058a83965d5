"""Limits that command-line options declare, in a module that imports nothing: the CLI builds
its options (and their ``--help``) without loading the engine."""

MAX_THREADS = 256  # worker threads in one process; more processes scale further
