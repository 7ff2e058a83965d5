"""Change detection: how an idle worker learns, cheaply, that another process changed the queue.

SQLite: on Linux the kernel (inotify) says when the database's files are written; elsewhere
``PRAGMA data_version`` is polled. PostgreSQL: LISTEN/NOTIFY (writers announce through
:meth:`queuectl.queue.Queue._announce`). :func:`detector_for` picks one.
"""

from __future__ import annotations

import hashlib
import os
import select
import sqlite3
import time

import peewee

from .reconnect import Backoff

try:  # Linux only
    from inotify_simple import INotify, flags
except (ImportError, OSError):  # pragma: no cover - other platforms
    INotify = None  # type: ignore[assignment,misc]

# PostgreSQL: the payload of the announcement that a running job's output was stored. Readers
# of output (`logs -f`, the TUI) wake on it; a pool's service thread ignores it (see ignored).
OUTPUT_PAYLOAD = "output"


def notify_channel(db: peewee.Database) -> str:
    """The LISTEN/NOTIFY channel of the queue in ``db``'s current schema: queues in two schemas
    of one database do not wake each other."""
    schema = db.execute_sql("SELECT current_schema()").fetchone()[0] or "public"
    channel = f"queuectl:{schema}"
    if len(channel.encode()) > 63:  # PostgreSQL's identifier limit
        channel = "queuectl:" + hashlib.sha1(schema.encode()).hexdigest()[:20]
    return channel


def detector_for(db: peewee.Database, channel: str | None = None) -> ChangeDetector:
    """A detector for one thread, with a connection of its own (``channel``: PostgreSQL's)."""
    if isinstance(db, peewee.SqliteDatabase):
        return SqliteFileEvents.open(db) or SqliteDataVersion(db)
    return PostgresNotifications(db, channel or notify_channel(db))


class ChangeDetector:
    """Tells one thread that another process changed the queue. This base one knows no cheap
    way, so it only waits: idle workers then rely on their own periodic checks."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as a change is seen."""
        time.sleep(timeout)
        return False

    def prime(self) -> None:
        """Called once by the detector's thread before it first waits: what it reports as a
        change is what happens from now on."""

    def wrote(self) -> None:
        """Called by the detector's thread after a commit of its own (its heartbeat): no change
        to report."""

    def close(self) -> None:
        pass


class SqliteDataVersion(ChangeDetector):
    """SQLite's ``PRAGMA data_version`` changes when another connection commits: a read of
    shared memory, cheap enough to ask every few milliseconds."""

    # Each poll costs CPU, mostly the sleep's wake-up, for as long as a worker is idle: a longer
    # interval costs less, and at this one a job enqueued by another process still starts soon
    # after its commit.
    interval = 0.01

    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        self.last: int | None = None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            changed = self.changed()
            remaining = deadline - time.monotonic()
            if changed or remaining <= 0:
                return changed
            time.sleep(min(self.interval, remaining))

    def prime(self) -> None:
        try:
            self.changed()  # the version changes are counted from
        except (sqlite3.Error, peewee.PeeweeException):
            pass  # the file is away: its first wait counts from then

    def changed(self) -> bool:
        """Whether another connection committed since the last call."""
        # The sqlite3 connection itself: through the ORM each poll cost much more CPU.
        version = self.db.connection().execute("PRAGMA data_version").fetchone()[0]
        changed = self.last is not None and version != self.last
        self.last = version
        return changed


class SqliteFileEvents(SqliteDataVersion):
    """Linux: the kernel (inotify) wakes the thread when the database's files are written (a
    commit appends to the -wal file), so an idle worker sleeps instead of polling: polling
    every few milliseconds cost an idle `worker start` CPU all along. After an event, data_version
    is asked a few times, 1 ms apart (the write can come just before the commit is visible). A
    poll every ``interval`` stays as a safety net (a network file system reports no writes):
    no more often than a still pool's service thread looks (worker.QUIET_TICK_S)."""

    interval = 0.25
    settle = 0.001
    settle_polls = 20
    # While jobs run, every commit (two a job) is an event: after reporting a change, wait
    # this long before watching again, so that a busy pool is woken once in that time rather
    # than twice a job (each wake-up costs CPU). An idle queue's first change still wakes at once.
    quiet_after_change = 0.005

    def __init__(self, db: peewee.Database, events: INotify) -> None:
        super().__init__(db)
        self.events = events
        self.name = os.path.basename(db.database)
        self.reported = 0.0  # time.monotonic() of the last change reported
        self.pending = False  # a change seen by wrote(), reported by the next wait

    @classmethod
    def open(cls, db: peewee.Database) -> SqliteFileEvents | None:
        """A watch on the database's folder, or None where inotify is not available."""
        if INotify is None:
            return None
        try:
            events = INotify(nonblocking=True)
        except OSError:
            return None
        try:
            folder = os.path.dirname(os.path.abspath(db.database))
            events.add_watch(folder, flags.MODIFY | flags.MOVED_TO | flags.CREATE)
        except OSError:
            events.close()
            return None
        return cls(db, events)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        quiet = self.reported + self.quiet_after_change - time.monotonic()
        if quiet > 0:
            time.sleep(min(quiet, timeout))
        while True:
            if self.pending or self.changed():
                self.pending = False
                self.reported = time.monotonic()
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.events], [], [], min(self.interval, remaining))
            if ready and self._ours():
                for _ in range(self.settle_polls):
                    if self.changed():
                        self.reported = time.monotonic()
                        return True
                    time.sleep(self.settle)

    def wrote(self) -> None:
        """The thread's own commit wrote the -wal file, an event that is no change (its own
        commits leave data_version as it was): each one woke the thread, which then asked
        data_version settle_polls times (an idle worker's heartbeat, every second). Its events
        are read and dropped now; a commit of another process seen meanwhile is reported by
        the next wait, and one whose event came in the microseconds between our commit and
        this read but whose data is not visible yet, by the next poll (``interval``)."""
        try:
            self.events.read(timeout=0)
            self.pending = self.changed() or self.pending
        except (OSError, sqlite3.Error):
            self.pending = True  # the next wait reports a change: the thread looks itself

    def _ours(self) -> bool:
        """Read the pending events; whether one was about this database's files."""
        return any(event.name.startswith(self.name) for event in self.events.read(timeout=0))

    def close(self) -> None:
        self.events.close()


class PostgresNotifications(ChangeDetector):
    """PostgreSQL's LISTEN/NOTIFY: a dedicated connection sleeps on its socket until a writer
    announces a change (see :meth:`Queue._announce`); no polling.

    The connection is replaced when it breaks (a server restart, a terminated backend): the next
    :meth:`wait` connects and LISTENs again, and reports a change, since announcements made
    meanwhile were lost. While the server is unreachable each wait tries once and then sleeps
    out its timeout; the pool's own statements report the outage (see queuectl.reconnect)."""

    CONNECT_TIMEOUT_S = 5

    def __init__(self, db: peewee.PostgresqlDatabase, channel: str) -> None:
        self.params = {"connect_timeout": self.CONNECT_TIMEOUT_S, **db.connect_params}
        self.dbname = db.database
        self.channel = channel
        self.connection = None
        # Payloads that are no change for this reader (e.g. a pool's: OUTPUT_PAYLOAD).
        self.ignored: frozenset[str] = frozenset()
        self._retry = Backoff()
        self._retry_at = 0.0
        self._listen()

    def _listen(self) -> bool:
        """(Re)connect and LISTEN; whether it worked."""
        import psycopg
        from psycopg import sql

        try:
            self.connection = psycopg.connect(dbname=self.dbname, autocommit=True, **self.params)
            self.connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error:
            self.close()
            self._retry_at = time.monotonic() + self._retry.next()
            return False
        self._retry.reset()
        return True

    def wait(self, timeout: float) -> bool:
        import psycopg

        if self.connection is None:
            deadline = time.monotonic() + timeout
            if time.monotonic() >= self._retry_at and self._listen():
                return True  # announcements made while it was away are lost: look again
            time.sleep(max(deadline - time.monotonic(), 0))
            return False
        changed = False
        deadline = time.monotonic() + timeout
        try:
            # Read at least once, however short the wait: with no time left (a round with a
            # schedule due at once, say) none was read, and the threads waited for the safety
            # net's look (QA: a job picked up after 30 s, not 0.5).
            while not changed:
                remaining = max(deadline - time.monotonic(), 0.0)
                for notify in self.connection.notifies(timeout=remaining, stop_after=1):
                    changed = notify.payload not in self.ignored
                if time.monotonic() >= deadline:
                    break
            if changed:  # several announcements in a burst count as one change
                for _ in self.connection.notifies(timeout=0.001):
                    pass
        except psycopg.Error:
            self.close()  # the next wait connects again
            return True
        return changed

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None
