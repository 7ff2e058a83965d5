"""What every part of a Queue stands on: the database connection, the models bound to it, the
write transaction, turn-taking between this process's threads, change announcements, and the
settings stored in the database.

The parts (:mod:`.lifecycle`, :mod:`.registry`, :mod:`.reading`) are mixins of
:class:`QueueCore`; :class:`queuectl.queue.Queue` puts them together.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import peewee

from . import config as config_keys
from . import schema
from .db import Target, open_database, raise_if_disk_full, redact, resolve_target, use_wal
from .errors import InvalidInput, QueueError
from .models import Job, Models, bind
from .statements import Statements

if TYPE_CHECKING:  # the watch (inotify, ctypes) only where a worker or the TUI watches
    from .watch import ChangeDetector

HEARTBEAT_INTERVAL_S = 1.0
LEASE_S = 15.0  # a worker silent for this long is presumed gone, its jobs rescued
HOSTNAME = socket.gethostname()


class QueueCore:
    """One queue's database, in the database named by ``target`` (see
    :func:`queuectl.db.resolve_target`).

    ``clock`` returns UTC epoch seconds; tests inject their own to step through backoffs.
    ``host`` names this machine in the worker registry, and ``lease`` is how long a worker
    may be silent before its jobs are rescued. Across hosts (PostgreSQL), times come from each
    host's clock: keep the clocks in step (NTP) to well within the lease.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        host: str = HOSTNAME,
        lease: float = LEASE_S,
        one_connection: bool = False,
    ) -> None:
        self.target: Target = resolve_target(target)
        self.db = open_database(self.target, one_connection=one_connection)
        self.models: Models = bind(self.db)
        self.clock = clock
        self.host = host
        self.lease = lease
        self.is_sqlite = isinstance(self.db, peewee.SqliteDatabase)
        self._sql = Statements(self.db.param, self.is_sqlite)
        # SQLite has one writer. This process's threads take turns on a lock of their own before
        # asking SQLite: a thread that finds SQLite's lock taken sleeps in its busy handler (1 ms,
        # then 2, 5, ...: longer than a whole `true` job), one waiting here wakes at once.
        self._writers: AbstractContextManager[object] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        if not self.is_sqlite:  # the watch module (inotify, ctypes) is for PostgreSQL only here
            from .watch import notify_channel
        # The schema version this process upgraded the database from, and the worker processes
        # (of an older queuectl) that were running on it then: see upgraded_under.
        self.upgraded_from: int | None = None
        self.upgraded_under: list[tuple[str, int]] = []
        try:
            self.upgraded_from = schema.ensure(self.db, self.models, self._write)
            if self.upgraded_from is not None:
                self.upgraded_under = self._running_processes()
            if self.is_sqlite:
                use_wal(self.db)
            # PostgreSQL: where writers announce changes (see _announce and queuectl.watch).
            self.channel = None if self.is_sqlite else notify_channel(self.db)
            if self.channel is not None:
                self._sql.announce_to(self.channel)
        except peewee.DatabaseError as exc:  # e.g. "database disk image is malformed"
            self.db.close()
            if self.is_sqlite:
                raise_if_disk_full(self.db, exc)  # a new queue on a full disk
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not self.is_sqlite and isinstance(exc, peewee.OperationalError):
                # The connection was cut (a restart): the database is fine (QA).
                raise QueueError(f"database error: {first}") from None
            raise QueueError(f"{redact(str(self.target))} is not a usable database ({first})") from None

    def _running_processes(self) -> list[tuple[str, int]]:
        """(host, pid) of the worker processes that heartbeat (within a lease), oldest first:
        after an upgrade, those of an older queuectl, which may fail where the schema changed
        (QA: an old worker on an upgraded SQLite file fired no schedule again, saying only
        "no such table: job_count", while `status` counted it live)."""
        rows = self.db.execute_sql(
            'SELECT "host", "pid" FROM "worker" WHERE "heartbeat_at" >= '
            f'{self.db.param} ORDER BY "started_at"',
            [self.clock() - self.lease],
        ).fetchall()
        return [(str(host), int(pid)) for host, pid in rows]

    # -- transactions and turns -------------------------------------------------------------

    def _turn(self) -> AbstractContextManager[object]:
        """Held around each use of the connection by the methods a pool's worker threads call
        (claim, finish, release, next_due_in, timeout_for): on SQLite those threads share one
        connection (see :meth:`for_worker_threads`), and this process's writers take turns
        anyway. On PostgreSQL each thread has its own connection and this holds nothing."""
        return self._writers

    def _write(self) -> AbstractContextManager[object]:
        """A write transaction that takes the write lock up front, so that a read followed by a
        write never fails with "database is locked" (SQLite waits on BEGIN IMMEDIATE instead)."""
        if self.is_sqlite:
            return _both(self._writers, _first_error(self.db.atomic("IMMEDIATE")))
        return self.db.atomic()

    def snapshot(self) -> AbstractContextManager[object]:
        """A transaction whose reads all see the database as it was at one moment: the TUI's
        load (counts, then each pane) showed a job claimed between two of its reads both in
        Pending and in Processing. SQLite's read transaction (WAL) is one snapshot; PostgreSQL's
        is only at REPEATABLE READ."""
        if self.is_sqlite:
            return self.db.atomic()
        return _repeatable_read(self.db)

    def drop_page_cache(self) -> None:
        """SQLite: this connection's cached pages freed (``PRAGMA shrink_memory``). A large
        output stored is an overflow chain of 1 KiB pages that stay cached (up to 16 MB) though
        a worker never reads them back; the next statement reads the pages it needs from the
        file (or the system's cache) again. PostgreSQL: nothing (the server keeps the pages)."""
        if self.is_sqlite:
            with self._turn():
                self.db.execute_sql("PRAGMA shrink_memory")

    def for_worker_threads(self) -> QueueCore:
        """The Queue a pool's worker threads use. On SQLite they share one connection, each call
        made in turn (:meth:`_turn`) under this Queue's write lock, which they took for every
        write anyway: with a connection each, every commit of one emptied the page cache of the
        others (SQLite cannot tell which pages changed), so each job read its pages back from
        the file. Other threads (the service thread, the TUI's reads) keep connections of their
        own, and never wait for these. On PostgreSQL this Queue itself: claims with SKIP LOCKED
        run side by side."""
        if not self.is_sqlite:
            return self
        shared = type(self)(
            self.target.location, clock=self.clock, host=self.host, lease=self.lease,
            one_connection=True,
        )  # fmt: skip
        shared._writers = self._writers  # this process's writers still take turns on one lock
        return shared

    def recover(self) -> bool:
        """After a database error in this thread: if the error broke the connection (the server
        restarted, a backend was terminated, the network dropped it), close it, so the next use
        opens a new one; whether it did. peewee does not do this by itself: a broken connection
        stays in place and every later statement fails with "the connection is closed".
        A connection is never replaced in the middle of a transaction; SQLite's need no repair
        (the file is opened again by the same connection once it is readable)."""
        if self.is_sqlite or self.db.is_closed() or self.db.in_transaction():
            return False
        connection = self.db.connection()
        if not (connection.closed or getattr(connection, "broken", False)):
            return False
        self.db.close()
        return True

    def close(self) -> None:
        """Close this thread's connection (each thread has its own), or the one connection of
        a Queue made by :meth:`for_worker_threads`."""
        if not self.db.is_closed():
            self.db.close()

    # -- change announcements ---------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback`` runs after every enqueue or retry made through this object (same process)."""
        with self._listeners_lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._listeners_lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def _announce(self) -> None:
        """Wake workers in other processes (PostgreSQL; SQLite's data_version needs no help).
        Inside a transaction the notification is sent at commit."""
        if not self.is_sqlite:
            self.db.execute_sql("SELECT pg_notify(%s, '')", (self.channel,))

    def change_detector(self) -> ChangeDetector:
        """For one thread: tells cheaply when another process changed the queue."""
        from .watch import detector_for

        return detector_for(self.db, self.channel)

    # -- queries ----------------------------------------------------------------------------

    def _via(
        self, index: str, build: Callable[[type[Job]], peewee.ModelSelect]
    ) -> peewee.ModelSelect:
        """``build(J)`` over ``J``, an alias of Job, with SQLite's planner pinned to ``index``:
        without statistics it would rather sort every waiting job than walk a partial index."""
        alias = self.models.Job.alias("j")
        query = build(alias)  # type: ignore[arg-type]
        if self.is_sqlite:
            query = query.from_(peewee.SQL(f'"job" AS "j" INDEXED BY "{index}"'))
        return query

    # -- settings ---------------------------------------------------------------------------

    def config(self) -> dict[str, config_keys.Value]:
        """Every key with its value (the stored one, else the default)."""
        values = {key.name: key.default for key in config_keys.KEYS.values()}
        for key, value in self.db.execute_sql('SELECT "key", "value" FROM "config"'):
            if key in values:
                values[key] = setting(key, value)
        return values

    def config_get(self, key: str) -> config_keys.Value:
        if key not in config_keys.KEYS:
            config_keys.validate(key, "")  # raises, naming the valid keys
        return self.config()[key]

    def config_set(self, key: str, value: object) -> config_keys.Value:
        parsed = config_keys.validate(key, value)
        Config = self.models.Config
        upsert = Config.insert(key=key, value=str(parsed)).on_conflict(
            conflict_target=[Config.key], update={Config.value: str(parsed)}
        )
        if self.is_sqlite and key == schema.HOOKED_KEY:
            with self._write():  # schema 11: the hook's trigger is there while a hook is set
                upsert.execute()
                for operation in schema.sqlite_hook_trigger(self.db):
                    operation.run()
        else:
            upsert.execute()
        return parsed


def setting(key: str, stored: object) -> config_keys.Value:
    """A stored config value as its key parses it; its default if none is stored, or if what is
    stored does not parse (set by hand, or under other bounds): better than failing every job
    run (and `config list`) until someone sets it again."""
    if stored is None:
        return config_keys.KEYS[key].default
    try:
        return config_keys.KEYS[key].parse(stored)  # type: ignore[arg-type]
    except InvalidInput:
        return config_keys.KEYS[key].default


@contextlib.contextmanager
def _both(
    first: AbstractContextManager[object], second: AbstractContextManager[object]
) -> Iterator[None]:
    with first, second:
        yield


@contextlib.contextmanager
def _repeatable_read(db: peewee.Database) -> Iterator[None]:
    with db.atomic():
        db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


@contextlib.contextmanager
def _first_error(transaction: AbstractContextManager[object]) -> Iterator[None]:
    """``transaction``, but raising the error that ended it: on some errors (a full disk, an I/O
    error) SQLite rolls back by itself, and peewee's ROLLBACK then fails with "no transaction
    is active", which would hide the reason from the user."""
    try:
        with transaction:
            yield
    except (peewee.OperationalError, sqlite3.OperationalError) as exc:  # peewee's or raw
        if "no transaction is active" not in str(exc):
            raise
        first = exc.__context__  # past the failed ROLLBACK (peewee's error wraps the driver's)
        while first is not None and "no transaction is active" in str(first):
            first = first.__context__
        if isinstance(first, Exception):
            raise first from None
        raise
