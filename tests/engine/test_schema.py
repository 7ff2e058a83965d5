"""Where the queue lives (SPEC 2): file modes, WAL, bad targets, schema versions, migrations."""

from __future__ import annotations

import os
import sqlite3
import stat

import peewee
import pytest

from queuectl import JobSpec, Queue, QueueError
from queuectl import db, schema
from queuectl.executor import RunResult


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_umask():
    """Prove the modes are chosen, not inherited from a friendly umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_file_is_0600_in_a_0700_folder_with_wal(tmp_path, no_umask):
    path = tmp_path / "made" / "by" / "queuectl" / "queue.db"
    q = Queue(str(path))
    q.enqueue("true")  # a write: the -wal and -shm files exist now
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        assert sidecar.exists()
        assert mode(sidecar) == 0o600, suffix
    assert q.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] > 0
    q.close()


def test_a_busy_queue_keeps_its_wal_bounded(db_path):
    """Every commit of a busy worker adds pages to the WAL; they are copied into the database
    file once it holds db.WAL_AUTOCHECKPOINT_PAGES, so the file stops growing there."""
    q = Queue(db_path)
    q.enqueue_many([JobSpec(command="true")] * 1500)
    worker = q.register_worker(1)
    job = q.claim(worker)
    done = RunResult(0, None, "")
    for _ in range(1499):  # ~8 pages each: three times the limit
        _, job = q.finish_and_claim(job, done, worker)
    assert job is not None and q.counts()["completed"] == 1499
    page = q.db.execute_sql("PRAGMA page_size").fetchone()[0]
    limit = db.WAL_AUTOCHECKPOINT_PAGES * (page + 24) + 64 * page  # frames, and one commit more
    assert 0 < os.path.getsize(f"{db_path}-wal") <= limit
    q.close()


def test_a_new_file_has_small_pages_and_an_old_one_keeps_its_own(tmp_path):
    """A busy worker's commits write whole pages: a new file gets db.PAGE_SIZE; a file made
    with other pages (SQLite's default 4 KiB, by an older queuectl) keeps them and still works."""
    new = Queue(str(tmp_path / "new.db"))
    assert new.db.execute_sql("PRAGMA page_size").fetchone()[0] == db.PAGE_SIZE < 4096
    new.close()
    made = sqlite3.connect(tmp_path / "old.db")
    made.execute("PRAGMA page_size = 4096")
    made.execute("VACUUM")
    made.close()
    old = Queue(str(tmp_path / "old.db"))
    job = old.enqueue("echo kept")
    assert old.db.execute_sql("PRAGMA page_size").fetchone()[0] == 4096
    old.close()
    assert Queue(str(tmp_path / "old.db")).get(job.id).command == "echo kept"


def test_an_existing_folder_keeps_its_mode(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Queue(str(folder / "q.db")).close()
    assert mode(folder) == 0o755
    assert mode(folder / "q.db") == 0o600


def test_sqlite_url_target(tmp_path, monkeypatch):
    """As in peewee and SQLAlchemy: three slashes and a relative path, four for an absolute one."""
    path = tmp_path / "url.db"
    assert str(path).startswith("/")
    q = Queue(f"sqlite:///{path}")  # four slashes in all
    assert q.target.location == str(path)
    q.enqueue(JobSpec(command="x", id="one"))
    assert Queue(str(path)).get("one").command == "x"
    monkeypatch.chdir(tmp_path)
    assert Queue("sqlite:///url.db").get("one").command == "x"


@pytest.mark.parametrize("target", ["sqlite://", "sqlite:///", "mysql://host/db", "ftp://x/y"])
def test_unusable_urls(target):
    with pytest.raises(QueueError) as info:
        Queue(target)
    assert "\n" not in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database, just some text that is long enough\n" * 100)
    before = path.read_bytes()
    with pytest.raises(QueueError) as info:
        Queue(str(path))
    message = str(info.value)
    assert str(path) in message and "not" in message and "\n" not in message
    assert path.read_bytes() == before


def test_a_directory(tmp_path):
    with pytest.raises(QueueError, match="is a directory"):
        Queue(str(tmp_path))


def test_a_database_of_views_only_is_refused_and_left_alone(tmp_path):
    """A file holding only a view had the queue's tables made in it (and one named `job`
    failed with "views may not be indexed")."""
    for name in ("report", "job"):
        path = tmp_path / f"{name}.db"
        connection = sqlite3.connect(path)
        connection.execute(f"CREATE VIEW {name} AS SELECT 1 AS one")
        connection.commit()
        connection.close()
        before = path.read_bytes()
        with pytest.raises(QueueError, match=f"not a queuectl database .*{name}"):
            Queue(str(path))
        assert path.read_bytes() == before


@pytest.mark.parametrize("table", ["customers", "config", "job"])
def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path, table):
    """Another program's database, whatever its tables are called: one named as one of ours
    (`config`, `job`) was kept, the schema built around it, and the file changed."""
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute(f"CREATE TABLE {table} (name TEXT)")
    connection.execute(f"INSERT INTO {table} VALUES ('ada')")
    connection.commit()
    connection.close()
    with pytest.raises(QueueError, match="not a queuectl database") as info:
        Queue(str(path))
    assert table in str(info.value)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == [(table,)]
        assert connection.execute(f"SELECT * FROM {table}").fetchall() == [("ada",)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        connection.close()


def test_a_newer_schema_is_refused(db_path):
    q = Queue(db_path)
    q.enqueue(JobSpec(command="x", id="kept"))
    q.db.execute_sql("UPDATE queuectl_schema SET value = '99' WHERE key = 'version'")
    q.close()
    with pytest.raises(QueueError, match="newer") as info:
        Queue(db_path)
    assert "99" in str(info.value)
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("SELECT id FROM job").fetchall() == [("kept",)]
    finally:
        connection.close()


def test_a_registered_migration_upgrades_an_older_file_keeping_rows(db_path, monkeypatch):
    old = Queue(db_path)
    old.enqueue_many([JobSpec(command=f"echo {n}", id=f"job-{n}") for n in range(20)])
    old.config_set("max-retries", 5)
    old.close()

    following = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", following)
    monkeypatch.setitem(
        schema.MIGRATIONS,
        following,
        lambda m: [m.add_column("job", "tags", peewee.TextField(null=True))],
    )
    new = Queue(db_path)
    assert schema.read_version(new.db) == following
    columns = [c.name for c in new.db.get_columns("job")]
    assert "tags" in columns
    assert len(new.list_jobs()) == 20
    assert new.get("job-7").command == "echo 7"
    assert new.config()["max-retries"] == 5
    new.close()
    # Opening it again does not migrate again
    again = Queue(db_path)
    assert schema.read_version(again.db) == following
    again.close()


def test_an_empty_file_becomes_a_queue(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    q = Queue(str(path))
    q.enqueue("true")
    assert q.counts()["pending"] == 1


def test_a_path_under_a_file(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    with pytest.raises(QueueError) as info:
        Queue(str(blocker / "queue.db"))
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(QueueError):
        Queue(str(blocker / "deeper" / "queue.db"))


def test_target_resolution_order(tmp_path, monkeypatch):
    from queuectl.db import resolve_target

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("QUEUECTL_DB", raising=False)
    default = resolve_target(None)
    assert (default.kind, default.location) == (
        "sqlite", str(tmp_path / "xdg" / "queuectl" / "queuectl.db"),
    )
    monkeypatch.setenv("QUEUECTL_DB", str(tmp_path / "from-env.db"))
    assert resolve_target(None).location == str(tmp_path / "from-env.db")
    monkeypatch.chdir(tmp_path)
    assert resolve_target("given.db").location == str(tmp_path / "given.db"), "--db wins"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_target("~/q.db").location == str(tmp_path / "home" / "q.db")
    assert resolve_target(f"sqlite:///{tmp_path}/u.db").location == str(tmp_path / "u.db")
    assert resolve_target("sqlite:///u.db").location == str(tmp_path / "u.db")
    assert resolve_target("postgresql://u@h:5432/db").kind == "postgresql"
    assert resolve_target("SQLite:///u.db").location == str(tmp_path / "u.db")  # any case
    assert resolve_target("./sqlite:u.db").location == str(tmp_path / "sqlite:u.db")


@pytest.mark.parametrize("mistyped", ["sqlite:u.db", "SQLITE:/u.db", "postgresql:host/db",
                                      "postgres:db"])  # fmt: skip
def test_a_mistyped_url_is_refused_not_made_a_file_of(tmp_path, monkeypatch, mistyped):
    """`sqlite:u.db` made an empty queue in a file named "sqlite:u.db"."""
    from queuectl.db import resolve_target

    monkeypatch.chdir(tmp_path)
    with pytest.raises(QueueError, match="is not a database URL"):
        resolve_target(mistyped)
    assert list(tmp_path.iterdir()) == []
