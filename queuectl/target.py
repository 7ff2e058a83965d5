"""Where a queue lives: the user's target (``--db``, ``QUEUECTL_DB``, or the default file)
parsed into a :class:`Target`. No database code here: the CLI resolves a target before it
decides what to import (see :func:`engine_for`).

A *target* is a file path (SQLite), ``sqlite:///path`` or ``postgresql://user@host:port/dbname``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import NamedTuple

from .env import DB_ENV_VAR
from .errors import QueueError


POSTGRES_SCHEMES = ("postgresql", "postgres")
# The client libraries peewee looks for when it is imported (each optional, probed with an
# import): a process that only ever opens a SQLite file need not pay for loading them.
SERVER_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi", "pymysql", "MySQLdb")


class Target(NamedTuple):
    """Where a queue lives, parsed from a user's target string. (A NamedTuple, as the other
    records every command builds at start-up: a frozen dataclass costs ~0.5 ms to define.)"""

    kind: str  # "sqlite" or "postgresql"
    location: str  # a file path for SQLite, the URL for PostgreSQL

    def __str__(self) -> str:
        return self.location


def default_path() -> str:
    """queuectl.db in the user's data directory, as platformdirs names it. On Linux, where the
    XDG variables are plain absolute paths (the usual case), the directory is read from them
    here: importing platformdirs costs every command that uses the default ~12 ms of CPU
    (pathlib, urllib, tempfile), more than the rest of an `enqueue`. Anything unusual (a
    relative or missing HOME, a relative XDG_DATA_HOME, another system) is left to
    platformdirs, which a test holds this to."""
    if sys.platform == "linux":
        data = os.environ.get("XDG_DATA_HOME", "")
        home = os.environ.get("HOME", "")
        if os.path.isabs(data):
            return os.path.join(data, "queuectl", "queuectl.db")
        if not data and os.path.isabs(home):
            return os.path.join(home, ".local", "share", "queuectl", "queuectl.db")
    return platformdirs_path()


def platformdirs_path() -> str:
    from platformdirs import user_data_path

    return str(user_data_path("queuectl", appauthor=False) / "queuectl.db")


def _absolute(path: str) -> str:
    path = os.path.expanduser(path)
    try:
        return os.path.abspath(path)
    except FileNotFoundError:  # a relative path, from a directory that was deleted
        raise QueueError(f"the current directory no longer exists: give {path!r} as an "
                         "absolute path") from None


def resolve_target(target: str | None = None) -> Target:
    """``--db`` beats ``$QUEUECTL_DB`` beats the per-user data directory."""
    # A bad target exits 1 (SPEC 2), an empty one too: not another queue.
    if target is not None and not target.strip():  # `--db "$UNSET"`
        raise QueueError("--db names no database: give a file path or a URL")
    if target is None:
        target = os.environ.get(DB_ENV_VAR)
        if target is not None and not target.strip():  # `QUEUECTL_DB=$UNSET`: the same
            raise QueueError(
                f"{DB_ENV_VAR} names no database: give a file path or a URL, or unset it"
            )
    raw = target or str(default_path())
    if "://" not in raw:
        scheme = raw.partition(":")[0].lower()
        if scheme == "sqlite" or scheme in POSTGRES_SCHEMES:  # a URL mistyped: no new file
            shown = redact(raw)
            raise QueueError(f"{shown!r} is not a database URL: give sqlite:///path, "
                             "postgresql://user@host:port/dbname or a file path (./name)")  # fmt: skip
        return Target("sqlite", _absolute(raw))
    from urllib.parse import urlparse  # here: a file path, the usual target, needs no URL parser

    try:
        url = urlparse(raw)  # (its scheme in lower case)
    except ValueError as exc:  # "Invalid IPv6 URL": a bracket left open or closed alone
        raise QueueError(f"{redact(raw)!r} is not a valid URL: {exc}") from None
    if url.scheme == "sqlite":
        # As in peewee and SQLAlchemy: sqlite:///jobs.db is relative, sqlite:////abs/jobs.db
        # (four slashes) absolute.
        prefix = len("sqlite:///")
        path = raw[prefix:] if raw[:prefix].lower() == "sqlite:///" else ""
        if url.query or url.fragment:  # taken as part of the name, they made another file
            raise QueueError(f"{raw!r}: a sqlite URL takes no options (after '?' or '#'): "
                             "give the file alone")
        if not path:
            raise QueueError(
                f"{raw!r} names no file (sqlite:///jobs.db, or sqlite:////abs/path/jobs.db)"
            )
        return Target("sqlite", _absolute(path))
    if url.scheme in POSTGRES_SCHEMES:
        try:
            url.port
        except ValueError:  # (its words name the port's text: part of a password, maybe)
            raise QueueError(
                f"{redact(raw)!r} is not a valid URL: its port is not a number (in a password, "
                "write / ? # @ as %2F %3F %23 %40)"
            ) from None
        if not url.path.strip("/"):
            raise QueueError(
                f"{redact(raw)!r} names no database (postgresql://user@host:port/dbname)"
            )
        return Target("postgresql", raw)
    raise QueueError(f"unsupported database {redact(raw)!r}: give a file path, sqlite:///path "
                     "or postgresql://...")  # fmt: skip




@contextlib.contextmanager
def engine_for(target: Target) -> Iterator[None]:
    """Around the first import of the engine in a process that will open only ``target``: for
    a SQLite file, peewee is imported as where no server driver is installed (its probes find
    none), which saves loading psycopg (most of peewee's import time where it is installed).
    Such a process then cannot open a PostgreSQL queue; the CLI opens one target per process.
    Does nothing once peewee is loaded, or for a server target."""
    if target.kind != "sqlite" or "peewee" in sys.modules:
        yield
        return
    hidden = [name for name in SERVER_DRIVERS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import peewee  # noqa: F401

        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def redact(url: str) -> str:
    """``url`` with its password shown as ``***``, for a message or a log: the user's (the
    text after ``user:``, up to the last ``@``, whatever it holds: `@`, `/`, `#` and `?` are
    found in passwords typed unencoded, and a URL parser then reads them as other parts), and a
    ``password=`` option's value."""
    import re
    from urllib.parse import unquote

    def option(match: re.Match[str]) -> str:  # (`pass%77ord=` is a password to libpq too)
        key = match.group(2)
        if unquote(key).lower() != "password":
            return match.group(0)
        return f"{match.group(1)}{key}=***"

    url = re.sub(r"([?&])([^=&#]*)=[^&#]*", option, url)
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:).*@", r"\1***@", url, count=1,
                  flags=re.DOTALL)  # fmt: skip
