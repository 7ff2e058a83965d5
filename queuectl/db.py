"""Choosing and opening the database: target resolution, SQLite pragmas, the schema version.

A *target* is what the user gives with ``--db`` or ``QUEUECTL_DB``: a file path (SQLite),
``sqlite:///path`` or ``postgresql://user@host:port/dbname``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import peewee

from .errors import QueueError
from .target import POSTGRES_SCHEMES, Target, default_path, redact, resolve_target  # noqa: F401

SQLITE_BUSY_TIMEOUT_S = 60.0
# How long one attempt of a statement waits in SQLite's busy handler for another connection's
# lock. The handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 ms, then 100 ms at a time: a
# waiter that had missed a few of another writer's pauses (a long purge's, 30 ms between
# transactions of 20 ms) slept through the next ones, the same 50 or 100 ms each, and a worker's
# claim waited 0.7 s for a lock that was free every 50 ms (10M jobs purged beside it). With this
# bound the handler sleeps 1, 2, 5, 10 and 7 ms, then the statement is tried again
# (SqliteQueueDatabase) until SQLITE_BUSY_TIMEOUT_S is spent: a waiter looks every 10 ms at most.
SQLITE_BUSY_STEP_MS = 25
# The page size of a new SQLite file (SQLite's default is 4 KiB; a file keeps the size it was
# made with). A commit writes every page it changed, whole, to the WAL, and a job's finish and
# the next claim change about 8 (the two rows, four indexes, the per-state counts): with 1 KiB
# pages a quarter of the bytes are checksummed, copied and fsynced at the checkpoint, so a busy
# worker spends less CPU on each statement and finishes more jobs a second.
PAGE_SIZE = 1024
# Pages the WAL may hold before a commit copies them into the database file (SQLite's default is
# 1,000). A busy worker writes about 8 pages a job, so the default made every 125th job's commit
# stop for a checkpoint (two fsyncs) while the pool's other threads waited for the write lock:
# 4,000 (a WAL of up to 4 MB, 16 MB with 4 KiB pages) does that a quarter as often.
WAL_AUTOCHECKPOINT_PAGES = 4000
# Once a write was refused for a full disk, every statement first copies the WAL into the file
# (SqliteQueueDatabase.make_room) until the file system has room for this many WALs as long as
# WAL_AUTOCHECKPOINT_PAGES lets them grow.
LOW_DISK_WALS = 2
# ... and a connection opened on a file system that lacks that room copies its WAL into the file
# at this many pages (about 100 KB), not WAL_AUTOCHECKPOINT_PAGES: on a disk with less free than
# one 4 MB WAL, the WAL filled the disk before any write was refused, and then the file had no
# room left to take it in (QA: a 4 MB disk, the queue stalled for good until room was made).
LOW_DISK_AUTOCHECKPOINT_PAGES = 100
# How long opening a PostgreSQL connection may take (libpq's connect_timeout), unless the URL's
# `connect_timeout` or $PGCONNECT_TIMEOUT says otherwise. libpq's own default is to wait for
# ever: a server that accepts the connection but never answers (a host gone behind a proxy or a
# load balancer, a stuck server) held every command, and a worker's reconnect, without end.
PG_CONNECT_TIMEOUT_S = 5
# A network that drops a connection's packets without a word (a host cut off, a firewall's
# timeout): libpq waited for the kernel's defaults, two hours for an idle connection (the LISTEN
# one) and a quarter of an hour for an unanswered statement. With these, the connection breaks
# after 25 s of silence (idle) or 15 s of unacknowledged data, and the worker reconnects. Each
# unless the URL gives it.
PG_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                "keepalives_count": 3, "tcp_user_timeout": 15_000}  # fmt: skip


_SQLITE_CONFIG_MEMSTATUS = 9  # sqlite3.h
_sqlite_opened = False  # whether this process has opened an SQLite database (see below)


def sqlite_without_memory_statistics() -> bool:
    """For a worker process, before it opens any database: SQLite's memory statistics (what
    ``sqlite3_status`` reports) turned off. SQLite counts each allocation for them under a
    global mutex, ~18k instructions a job (4 % of a finish-and-claim, measured with callgrind);
    queuectl reads none of them, and Python's sqlite3 cannot turn them off. Their switch,
    ``sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0)``, takes only while the library is shut down,
    and Python's sqlite3 starts it at import: so it is shut down, set and started again here,
    through ctypes on the very library ``_sqlite3`` uses. That is safe only while no connection
    exists, so it is not done once this process has opened a database. Linux only (a variadic
    call through ctypes is passed as a plain one there). Returns whether it took effect."""
    if _sqlite_opened or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)  # its symbols, and those of what it links
        major, minor, patch = sqlite3.sqlite_version_info
        if library.sqlite3_libversion_number() != major * 1_000_000 + minor * 1000 + patch:
            return False  # not the library sqlite3 runs on
        if library.sqlite3_shutdown() != 0:
            return False
        took = library.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
        if library.sqlite3_initialize() != 0:  # pragma: no cover (it was running a moment ago)
            raise QueueError("SQLite failed to start again")
        return took
    except (OSError, AttributeError):  # no such library or symbol: SQLite left as it is
        return False


def open_database(target: Target, one_connection: bool = False) -> peewee.Database:
    """Open (and for SQLite create, 0600) the database; fail with one clear QueueError.
    ``one_connection``: SQLite's threads share one connection (see Queue.for_worker_threads)
    instead of each opening its own."""
    if target.kind == "sqlite":
        return _open_sqlite(target.location, one_connection)
    return _open_postgresql(target.location)


def _open_sqlite(path: str, one_connection: bool = False) -> peewee.SqliteDatabase:
    """``path``: absolute (see :func:`resolve_target`). os.path, not pathlib: every command
    opens a file here, and importing pathlib (with urllib) costs a start-up ~2 ms."""
    global _sqlite_opened
    _sqlite_opened = True
    if os.path.isdir(path):
        raise QueueError(f"{path} is a directory, not a database file")
    folder = os.path.dirname(path)
    created = False
    if not os.path.exists(path):
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as exc:  # a loop of links (a link to nothing yet is made, below)
                if exc.errno == errno.ELOOP:
                    raise QueueError(f"cannot open {path}: {exc.strerror}") from None
        # A link to a file not made yet: that file, in its folder (QA: O_EXCL refuses the link
        # itself, and a folder the link names was not made).
        real = os.path.realpath(path)
        if not os.path.exists(os.path.dirname(real)):
            try:
                _make_folders(os.path.dirname(real))
            except OSError as exc:
                raise QueueError(f"cannot create {os.path.dirname(real)}: {exc.strerror}") from None
        try:
            created = _create(real)
        except OSError as exc:
            where = "" if real == path else f" (where {path} points)"
            raise QueueError(f"cannot create {real}{where}: {exc.strerror}") from None
    elif not os.access(path, os.R_OK):
        raise QueueError(f"cannot read {path}: permission denied")
    elif not os.access(path, os.W_OK):
        # SQLite would open it read-only, then fail at the first write (in WAL mode readers
        # write too, to the -shm file): say so now, in the same words.
        raise QueueError(f"cannot write {path}: {_why_not_writable(folder)}")
    elif not os.access(folder, os.W_OK) and not all(
        os.path.exists(path + end) for end in ("-wal", "-shm")
    ):  # SQLite makes them at the first use: "attempt to write a readonly database" (QA)
        raise QueueError(f"cannot write in {folder} (SQLite keeps its -wal and -shm files "
                         f"beside the database): {_why_not_writable(folder)}")  # fmt: skip
    # SQLite gives the -wal and -shm files the database file's own mode, so they are 0600 too.
    database = SqliteQueueDatabase(
        path,
        timeout=SQLITE_BUSY_STEP_MS / 1000,
        # journal_mode=wal is set by use_wal() once the file is known to be a queue: a foreign
        # database is refused untouched.
        pragmas=[
            ("page_size", PAGE_SIZE),  # for a new file; no-op for one that has tables
            ("synchronous", "normal"),
            ("cache_size", -16000),
            ("foreign_keys", 1),
            ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
        ],
        check_same_thread=False,
        thread_safe=not one_connection,
    )
    database.created = created  # type: ignore[attr-defined]
    try:
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT count(*) FROM sqlite_master")
    except (peewee.DatabaseError, sqlite3.DatabaseError) as exc:
        database.close()
        raise_if_disk_full(database, exc)
        for end in ("-wal", "-shm"):  # QA: another user's; the file itself is fine
            if os.path.exists(path + end) and not os.access(path + end, os.R_OK | os.W_OK):
                raise QueueError(f"cannot write {path}{end} (SQLite's {end[1:]} file of the "
                                 f"database): {_why_not_writable(folder)}") from None  # fmt: skip
        raise QueueError(f"{path} is not a usable SQLite database ({exc})") from None
    database.identity = _identity(path)  # type: ignore[attr-defined]  # see file_replaced
    return database


# SQLite's lock bytes in a database file (PENDING_BYTE, RESERVED_BYTE, then the SHARED range).
_SQLITE_LOCKS_START, _SQLITE_LOCKS_LENGTH = 0x40000000, 512


def _create(path: str) -> bool:
    """Make a new, empty queue file at ``path``, 0600; False if another process made it first.

    A ``-wal`` and ``-shm`` already beside it belong to a file that was deleted, perhaps still
    open in a process (a worker that is letting its running jobs end): a connection to the new
    file took them for its own, and failed with "disk I/O error" while that process lived (QA).
    They go before any connection can open the new file: it is made under another name, locked
    where SQLite takes its locks (a connection waits, as for any lock), put in place only if no
    file is there yet (never widening the mode of one somebody else made, as O_EXCL), and the
    two are removed before the lock goes. The process that had them open keeps using them: a
    connection to a deleted file never deletes them by name (SQLITE_FCNTL_HAS_MOVED)."""
    making = f"{path}.{os.urandom(6).hex()}.new"
    fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        import fcntl

        fcntl.lockf(fd, fcntl.LOCK_EX, _SQLITE_LOCKS_LENGTH, _SQLITE_LOCKS_START)
        try:
            os.link(making, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links (FAT, some shares): made in place
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                return False
        for end in ("-wal", "-shm"):
            try:
                os.remove(path + end)
            except FileNotFoundError:
                pass
        return True
    finally:
        os.remove(making)
        os.close(fd)  # and with it the lock


def _identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` (its device and inode), or None where there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def file_replaced(database: peewee.Database) -> bool:
    """SQLite: whether the file at the database's path is gone, or another file, since it was
    opened. A connection open on a deleted (or moved-over) file goes on working on it, unseen
    by every process that opens the path (QA: a TUI's workers ran nothing of what was
    enqueued into the new file, and said they ran)."""
    opened = getattr(database, "identity", None)
    return opened is not None and _identity(database.database) != opened


def _why_not_writable(folder: str) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def raise_if_disk_full(database: peewee.SqliteDatabase, exc: Exception) -> None:
    """After ``exc`` opening ``database``: if its disk is full, raise the QueueError that says
    so (SQLite says "disk I/O error", or "database or disk is full": the file is fine), and
    remove the empty file made for a new queue. "Full" is SQLite's word, even with room left: a
    migration can need more (QA: it said the file was "not a usable database")."""
    from .reconnect import DISK_FULL  # (not on every command's start-up path)

    path = database.database
    if DISK_FULL not in str(exc):  # SQLite said only "disk I/O error": is the disk full?
        try:
            disk = os.statvfs(os.path.dirname(path))
        except OSError:
            return
        # A file system without blocks (/proc) is not full; root may use the blocks kept for it.
        if not disk.f_blocks or (disk.f_bfree if os.geteuid() == 0 else disk.f_bavail):
            return
    if getattr(database, "created", False):
        try:
            if os.path.getsize(path) == 0:
                os.remove(os.path.realpath(path))  # (made where a link points, if one does)
        except OSError:
            pass
    raise QueueError(f"cannot open {path}: the disk is full ({exc})") from None


class _Cursor(sqlite3.Cursor):
    """A cursor whose fetches raise peewee's errors, as its ``execute`` does (peewee converts
    only what ``execute_sql`` raises). A statement's write can fail as its rows are fetched: an
    ``UPDATE ... RETURNING`` of its own commits once its last row is read, and with the disk
    full that commit raised a bare ``sqlite3.OperationalError`` the worker did not take for an
    outage. Its threads died (the process then exited 0), and a job's result was stored as a
    failure of the job, which then ran again. A full disk is told to the database it is of
    (``owner``: see SqliteQueueDatabase.make_room)."""

    owner: SqliteQueueDatabase | None = None

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: sqlite3.Error) -> peewee.PeeweeException:
        if self.owner is not None:
            self.owner.note_full(exc)
        return _as_peewee(exc)


def _as_peewee(exc: sqlite3.Error) -> peewee.PeeweeException:
    """``exc`` as the peewee error of the same name (as peewee's own conversion makes it)."""
    kind = getattr(peewee, type(exc).__name__, None)
    if not (isinstance(kind, type) and issubclass(kind, peewee.PeeweeException)):
        kind = peewee.DatabaseError
    return kind(exc, *exc.args)


def _read_write_uri(path: str) -> str:
    """SQLite's URI of the file at ``path``, opened for reading and writing, never created."""
    for char, escaped in (("%", "%25"), ("?", "%3f"), ("#", "%23")):
        path = path.replace(char, escaped)
    # An empty authority first: a path that begins with // (POSIX keeps it) would be one (QA).
    return f"file://{path}?mode=rw"


class WaitAbandoned(Exception):
    """A statement given up before it started, or while it waited for another connection's
    lock (see SqliteQueueDatabase.abandoning): it did nothing."""


class _Abandoning:
    """See SqliteQueueDatabase.abandoning (a class: it is on a claim's path, under 1 µs, where
    contextlib's generator took 3 µs)."""

    __slots__ = ("local", "when")

    def __init__(self, local: threading.local, when: Callable[[], bool] | None) -> None:
        self.local, self.when = local, when

    def __enter__(self) -> None:
        self.local.when = self.when

    def __exit__(self, *exc: object) -> None:
        self.local.when = None


class SqliteQueueDatabase(peewee.SqliteDatabase):
    """peewee's SqliteDatabase, but a statement that found another connection's lock taken
    ("database is locked" after SQLITE_BUSY_STEP_MS in SQLite's busy handler) is tried again,
    until SQLITE_BUSY_TIMEOUT_S after its first attempt: a statement of its own (autocommit) or
    the BEGIN of a transaction, which changed nothing when they failed. A statement inside a
    transaction is never tried again (it is the transaction that would have to be), nor one of
    a connection whose ``PRAGMA busy_timeout`` was set to something else (its own bound, as
    SQLite's handler keeps it).

    A full disk: the WAL is copied into the file only once it holds WAL_AUTOCHECKPOINT_PAGES
    (about 4 MB), so on a small or nearly full disk it grew until the disk was full, and then
    took whatever room a user made, filling it again within seconds: the queue did no more work
    however much room was made short of that (QA). Once a statement fails for a full disk,
    each statement outside a transaction first copies the WAL into the file (a PASSIVE
    checkpoint; nothing to do when it is copied already), so the next write starts the WAL
    again from its beginning instead of making it longer; until the file system has room for
    LOW_DISK_WALS of the longest WALs."""

    _abandon = threading.local()  # .when: see abandoning()
    room_wanted = False  # a statement failed for a full disk, and the disk is low since
    refused = False  # ... and one failed since the WAL was last cut back to nothing
    # A wait for another connection's lock ends once this says so (see lock_waits_end_when).
    stop_waiting: Callable[[], bool] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The threads whose statement waits for another connection's lock, each since when
        # (time.monotonic()): see lock_waited_since.
        self._lock_waits: dict[int, float] = {}

    def lock_waited_since(self) -> float | None:
        """Since when (time.monotonic()) a statement of this database waits for another
        connection's lock (the longest waiting, if several do), or None: the TUI says so while
        what a key asked for waits (QA: `r` behind another process's write lock showed nothing
        for as long as the lock was held)."""
        return min(list(self._lock_waits.values()), default=None)

    def _connect(self) -> sqlite3.Connection:
        """peewee's, but never creating the file (:func:`_open_sqlite` made it, 0600): each
        thread opens a connection of its own, and one opened after the file was deleted made
        it again, empty and readable by everyone (0644), where the TUI then read "no such
        table" (QA). Such a connection now fails: "unable to open database file"."""
        conn = sqlite3.connect(_read_write_uri(self.database), timeout=self._timeout,
                               isolation_level=None, uri=True, **self.connect_params)  # fmt: skip
        try:
            self._add_conn_hooks(conn)
        except Exception:
            conn.close()
            raise
        return conn

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
        """The connection's pragmas (peewee runs them itself, as it connects), each tried again
        like a statement while another process holds a lock that reading the file needs (a new
        file being switched to WAL, say): a pragma's setting is the same whenever it is made."""
        for pragma, value in self._pragmas:
            deadline = None
            while True:
                try:
                    if pragma == "wal_autocheckpoint" and self._disk_low(conn):
                        value = LOW_DISK_AUTOCHECKPOINT_PAGES
                    conn.execute(f"PRAGMA {pragma} = {value}")
                    break
                except sqlite3.OperationalError as exc:
                    deadline = self._again_until(exc, deadline, conn)
                except UnicodeDecodeError:  # SQLite's message quotes schema text of bad bytes
                    raise sqlite3.DatabaseError(
                        "malformed database schema (it is not valid UTF-8)"
                    ) from None

    def _disk_low(self, conn: sqlite3.Connection) -> bool | None:
        """Whether the file system lacks room for LOW_DISK_WALS of the longest WALs (None: it
        could not be read)."""
        try:
            (page,) = conn.execute("PRAGMA page_size").fetchone()
            disk = os.statvfs(os.path.dirname(self.database))
        except (sqlite3.Error, OSError):
            return None
        return disk.f_bavail * disk.f_frsize < LOW_DISK_WALS * WAL_AUTOCHECKPOINT_PAGES * page

    def cursor(self, named_cursor: object = None) -> sqlite3.Cursor:
        if self.is_closed():
            if not self.autoconnect:
                raise peewee.InterfaceError("Error, database connection not opened.")
            self.connect()
        cursor = self._state.conn.cursor(_Cursor)
        cursor.owner = self
        return cursor

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self.room_wanted:
            self.make_room()
        self._abandon_before()
        run = super().execute_sql
        try:
            return run(sql, params)
        except peewee.OperationalError as exc:
            self.note_full(exc)
            deadline = self._again_until(exc, None, self._state.conn)
        return self._again(lambda: run(sql, params), deadline)

    def begin(self, lock_type: str | None = None) -> None:
        if self.room_wanted:
            self.make_room()
        self._abandon_before()
        begin = super().begin
        try:
            begin(lock_type)
            return
        except peewee.OperationalError as exc:
            self.note_full(exc)
            deadline = self._again_until(exc, None, self._state.conn)
        self._again(lambda: begin(lock_type), deadline)

    def _again(self, run: Callable[[], Any], deadline: float) -> Any:
        """``run`` (a statement that found another connection's lock taken) tried again until
        it goes through or :meth:`_again_until` gives up; meanwhile this thread is counted as
        waiting for a lock (lock_waited_since)."""
        me = threading.get_ident()
        self._lock_waits[me] = time.monotonic()
        try:
            while True:
                try:
                    return run()
                except peewee.OperationalError as exc:
                    self.note_full(exc)
                    deadline = self._again_until(exc, deadline, self._state.conn)
        finally:
            self._lock_waits.pop(me, None)

    def commit(self) -> None:
        try:
            super().commit()
        except peewee.OperationalError as exc:
            self.note_full(exc)
            raise

    def note_full(self, exc: Exception) -> None:
        from .reconnect import DISK_FULL  # (not on every command's start-up path)

        if DISK_FULL in str(exc):
            self.room_wanted = self.refused = True

    def make_room(self) -> None:
        """Copy the WAL into the file, as far as it goes (see the class), outside a transaction;
        once the file system has room for LOW_DISK_WALS WALs, no longer before every
        statement."""
        conn = self._state.conn
        if conn is None or conn.in_transaction:
            return
        # After a refusal, the WAL cut back to nothing, as soon as no other connection reads
        # or writes (a few ms at most), to give its room on the disk to the database: written
        # again from its start, it kept the room it had taken, and a file that had to grow
        # filled the disk again (QA). Until that is done, and between refusals, PASSIVE.
        mode = "TRUNCATE" if self.refused else "PASSIVE"
        try:
            (busy, _, _) = conn.execute(f"PRAGMA main.wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:  # no room even for that yet: the next one tries again
            return
        if mode == "TRUNCATE" and not busy:
            self.refused = False
        if self._disk_low(conn) is False:
            self.room_wanted = False

    def abandoning(self, when: Callable[[], bool] | None) -> _Abandoning:
        """Within, in this thread: a statement of its own (or a BEGIN), as it starts or while it
        waits for another connection's lock, raises WaitAbandoned once ``when()`` is true; it
        did nothing. A worker's claim, waiting as a stop came: it claimed the job once the lock
        went, and gave it back at once (QA: "started", "released")."""
        return _Abandoning(self._abandon, when)

    def _again_until(self, exc: Exception, deadline: float | None,
                     connection: sqlite3.Connection | None) -> float:
        """After ``exc`` on ``connection``: when to stop trying the statement again, or raise
        ``exc`` (or WaitAbandoned, see :meth:`abandoning`)."""
        now = time.monotonic()
        if deadline is None:
            if str(exc) != "database is locked" or not self._may_try_again(connection):
                raise exc
            self._maybe_abandon()
            time.sleep(0.001)
            return now + SQLITE_BUSY_TIMEOUT_S - SQLITE_BUSY_STEP_MS / 1000
        if now >= deadline or str(exc) != "database is locked":
            raise exc
        if self.stop_waiting is not None and self.stop_waiting():
            raise exc
        self._maybe_abandon()
        # Where SQLite answers "locked" without its handler's wait (a lock it does not wait
        # for, as the switch to WAL takes), a pause of our own rather than a spin.
        time.sleep(0.001)
        return deadline

    def _abandon_before(self) -> None:
        """Within :meth:`abandoning`, a statement (outside a transaction) is given up before it
        starts too: it may have waited for this process's writers' turn (a heartbeat waiting
        for another process's lock held it), not in SQLite (QA: the claim came as the lock
        went, with no wait of its own to give up)."""
        when = getattr(self._abandon, "when", None)
        if when is not None and when():
            conn = self._state.conn
            if conn is None or not conn.in_transaction:
                raise WaitAbandoned()

    def _maybe_abandon(self) -> None:
        when = getattr(self._abandon, "when", None)
        if when is not None and when():
            raise WaitAbandoned()

    @staticmethod
    def _may_try_again(connection: sqlite3.Connection | None) -> bool:
        if connection is None or connection.in_transaction:
            return False
        (step,) = connection.execute("PRAGMA busy_timeout").fetchone()
        return bool(step == SQLITE_BUSY_STEP_MS)


@contextlib.contextmanager
def lock_waits_end_when(database: peewee.Database, stop: Callable[[], bool]) -> Iterator[None]:
    """Within: a statement of ``database`` (SQLite) that waits for another connection's lock
    gives up ("database is locked") once ``stop()`` is true, not only at the busy timeout. A
    start behind a lock held for long ends at a stop signal or the TUI's quit, and a stopping
    worker's stores at its stop timeout (QA: each came through only once the lock went, or
    60 s later)."""
    if not isinstance(database, SqliteQueueDatabase):
        yield
        return
    database.stop_waiting = stop
    try:
        yield
    finally:
        database.stop_waiting = None


def use_wal(database: peewee.SqliteDatabase) -> None:
    """Switch the file to WAL (it stays so). The switch needs a lock that SQLite does not wait
    for when several processes open a new file at once: wait for it here instead."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            database.execute_sql("PRAGMA journal_mode = wal")
            return
        except (peewee.OperationalError, sqlite3.OperationalError) as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _make_folders(folder: str) -> None:
    """``folder`` and each missing parent, all 0700 (``os.makedirs`` would give the parents the
    umask's mode, 0777 under umask 0). Another process may create one at the same moment."""
    missing = []
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for each in reversed(missing):
        try:
            os.mkdir(each, 0o700)
        except FileExistsError:
            if not os.path.isdir(each):
                os.stat(each)  # a loop of links says so (QA: "File exists" named no loop)
                raise


def _quiet_psycopg() -> None:
    """psycopg logs warnings of its own (a connection cut mid-pipeline: "error ignored
    terminating <psycopg.Pipeline [BAD]>: ...", several lines), which Python's last-resort
    handler printed to stderr before the command's one "Error:" line (QA). Its errors reach
    queuectl as exceptions, said once each; the warnings go nowhere."""
    import logging

    psycopg_log = logging.getLogger("psycopg")
    if not psycopg_log.handlers:
        psycopg_log.addHandler(logging.NullHandler())
        psycopg_log.propagate = False


def _open_postgresql(url: str) -> peewee.Database:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise QueueError(
            "PostgreSQL support is not installed: pip install 'psycopg[binary]' (or, from "
            "queuectl's checkout, pip install '.[postgres]')"
        ) from None
    from urllib.parse import parse_qsl, urlparse

    from playhouse.db_url import connect

    _quiet_psycopg()

    given = dict(parse_qsl(urlparse(url).query))
    params: dict[str, int] = {key: value for key, value in PG_KEEPALIVE.items() if key not in given}
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        params["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    # Times are floats, compared as read back (whose run a result is): a server whose
    # extra_float_digits is 0 (the default before PostgreSQL 12, or set for a role) gives them
    # to 6 digits, and no result was ever stored (QA). 3: every digit, on every version.
    options = given.get("options", os.environ.get("PGOPTIONS", ""))
    params["options"] = f"{options} -c extra_float_digits=3".strip()  # type: ignore[assignment]
    try:
        database = connect(url, prefer_psycopg3=True, **params)
        database.connect(reuse_if_open=True)
    except (peewee.DatabaseError, peewee.InterfaceError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueueError(f"cannot connect to {redact(url)}: {first}") from None
    return database
