"""The two kinds of failure a user can meet; the CLI maps them to exit codes 1 and 2."""


class QueueError(Exception):
    """The operation failed (unknown job, bad database, job in the wrong state): exit 1."""

    exit_code = 1


class InvalidInput(QueueError):
    """The user's input is invalid (bad JSON, unknown key, wrong type): exit 2."""

    exit_code = 2


class JobRunning(QueueError):
    """A job asked to be cancelled as a waiting one has started meanwhile: nothing changed
    (the TUI then asks whether to stop it)."""
