"""Start-up: what each command path leaves unimported, so a scripted command pays only for what it
uses (issue #17). Asserted on the modules a fresh interpreter has loaded, never on timings."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing

import click
import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue, schema
from queuectl.cli import SUBCOMMANDS, SUMMARIES, cli
from queuectl.core import QueueCore
from queuectl.workflows import Workflows

# The worker's side of the engine, and what only schedules, hooks or a watch need.
WORKER_SIDE = (
    "concurrent.futures", "croniter", "ctypes", "inotify_simple", "queuectl.executor",
    "queuectl.spawn", "queuectl.watch", "queuectl.worker", "signal", "subprocess", "zoneinfo",
)  # fmt: skip
# The Queue's mixins that a one-shot enqueue does not call.
OTHER_PARTS = (
    "queuectl.control", "queuectl.history", "queuectl.hooks", "queuectl.queue",
    "queuectl.registry", "queuectl.schedules",
)  # fmt: skip
ENGINE = ("peewee", "queuectl.core", "queuectl.models", "queuectl.db", "queuectl.schema",
          "queuectl.lifecycle", "queuectl.workflows", "queuectl.spec")  # fmt: skip
# The models no one-shot command touches (the worker's, the history's, schedules', hooks').
OTHER_MODELS = ("queuectl.tables",)
SERVER_DRIVERS = ("psycopg", "psycopg2")
TEXTUAL = ("textual", "queuectl.tui")
TEXT = ("queuectl.text",)  # job text and times made readable: a listing's, not enqueue's
ALL = WORKER_SIDE + OTHER_PARTS + ENGINE + SERVER_DRIVERS + TEXTUAL + OTHER_MODELS + TEXT

RUN = """
import json, sys
from queuectl.cli import cli
try:
    cli.main({args!r}, prog_name="queuectl", standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = [name for name in {names!r} if sys.modules.get(name) is not None]
print(json.dumps(loaded))
"""


def loaded_by(*args: str) -> set[str]:
    """Which of ALL a fresh interpreter has imported after running ``queuectl ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(args=list(args), names=ALL)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "q.db")
    Queue(path).close()
    return path


def test_enqueue_on_sqlite_loads_only_what_enqueueing_uses(db):
    loaded = loaded_by("--db", db, "enqueue", "true")
    assert {"peewee", "queuectl.workflows", "queuectl.schema"} <= loaded  # the check sees them
    assert loaded.isdisjoint(SERVER_DRIVERS + WORKER_SIDE + OTHER_PARTS + TEXTUAL), loaded
    assert loaded.isdisjoint(OTHER_MODELS + TEXT), loaded  # it prints only an id


def test_enqueue_with_options_still_loads_no_worker_side(db):
    queue = Queue(db)
    first = queue.enqueue("true").id  # something to run after
    queue.close()
    loaded = loaded_by("--db", db, "enqueue", "--queue", "deploy", "--after", first, "--delay",
                       "5", "--priority", "3", "--json", "true")  # fmt: skip
    assert loaded.isdisjoint(SERVER_DRIVERS + WORKER_SIDE + OTHER_PARTS + TEXTUAL), loaded


def test_enqueue_file_and_list_and_show_load_no_worker_side(db, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text('true\n{"command": "false", "id": "second", "after": []}\n')
    for args in (["enqueue", "--file", str(jobs)], ["list", "--state", "pending"],
                 ["show", "second"], ["list", "--json"]):  # fmt: skip
        loaded = loaded_by("--db", db, *args)
        assert loaded.isdisjoint(SERVER_DRIVERS + WORKER_SIDE + OTHER_PARTS + TEXTUAL), args


def test_config_get_loads_the_database_but_no_jobs_engine(db):
    loaded = loaded_by("--db", db, "config", "get", "max-retries")
    assert {"peewee", "queuectl.core", "queuectl.schema"} <= loaded
    assert loaded.isdisjoint(SERVER_DRIVERS + WORKER_SIDE + OTHER_PARTS + TEXTUAL), loaded
    assert "queuectl.lifecycle" not in loaded and "queuectl.workflows" not in loaded
    assert loaded.isdisjoint(OTHER_MODELS), loaded


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["enqueue", "--help"]])
def test_help_loads_no_engine_nor_other_commands(args):
    loaded = loaded_by(*args)
    assert loaded <= {"queuectl.spec"}, loaded  # enqueue's options check values as the engine does


def test_root_help_imports_no_command_module():
    code = (
        "import sys\nfrom queuectl.cli import cli\n"
        "try:\n    cli.main(['--help'], prog_name='queuectl')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('queuectl.cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "['queuectl.cli.common']"


def test_root_help_lists_each_command_with_its_own_summary(monkeypatch):
    """The summaries the root help shows without importing a command are each command's own
    (a new command without one is imported to be listed, and fails this test)."""
    ctx = click.Context(cli)
    assert set(SUMMARIES) == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert SUMMARIES[name] == command.get_short_help_str(limit=10**6), name
    # And the listing reads as click makes it from the commands themselves.
    listed = CliRunner().invoke(cli, ["--help"], prog_name="queuectl").stdout
    monkeypatch.setattr(cli, "summaries", {})
    assert CliRunner().invoke(cli, ["--help"], prog_name="queuectl").stdout == listed


def test_the_parts_the_cli_opens_run_the_queues_own_methods():
    """`enqueue`, `list`, `show` open Workflows and `config` QueueCore: what they call there is
    what a Queue runs (no mixin of the Queue overrides it)."""
    for name in ("enqueue", "enqueue_many", "get", "list_jobs", "config", "close"):
        assert getattr(Queue, name) is getattr(Workflows, name), name
    for name in ("config", "config_get", "config_set", "close"):
        assert getattr(Queue, name) is getattr(QueueCore, name), name


@pytest.mark.parametrize("args", [["config", "get", "max-retries"], ["config", "list"],
                                  ["config", "set", "max-retries", "5"], ["show", "keep-me"]])  # fmt: skip
def test_a_newer_database_is_refused_by_every_part(target, args):
    """`config` and `show` open a part of the Queue: it checks the schema as the Queue does."""
    queue = Queue(target)
    queue.enqueue_many([JobSpec(command="true", id="keep-me")])
    newer = schema.SCHEMA_VERSION + 1
    queue.db.execute_sql(f"UPDATE queuectl_schema SET value = '{newer}' WHERE key = 'version'")
    queue.close()
    result = CliRunner().invoke(cli, ["--db", target, *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "upgrade queuectl" in lines[0] and f"schema {newer}" in lines[0]
    if "://" not in target:  # nothing was changed
        with closing(sqlite3.connect(target)) as connection:
            assert connection.execute("SELECT * FROM config").fetchall() == []
            assert connection.execute("SELECT value FROM queuectl_schema").fetchall() == [
                (str(newer),)
            ]


@pytest.mark.postgres
def test_enqueue_on_postgresql_loads_its_driver_but_no_worker_side(pg_target):
    Queue(pg_target).close()  # the schema exists (creating it is once in a queue's life)
    loaded = loaded_by("--db", pg_target, "enqueue", "true")
    assert "psycopg" in loaded
    # (psycopg imports concurrent.futures itself; the watch gives the queue's NOTIFY channel.)
    unwanted = ("croniter", "queuectl.executor", "queuectl.worker") + OTHER_PARTS + TEXTUAL
    assert loaded.isdisjoint(unwanted), loaded & set(unwanted)


@pytest.mark.parametrize(
    "env",
    [{"XDG_DATA_HOME": "/srv/data", "HOME": "/home/ann"}, {"HOME": "/home/ann"},
     {"XDG_DATA_HOME": "", "HOME": "/home/ann/"}, {"XDG_DATA_HOME": "/srv/data/", "HOME": ""},
     {"XDG_DATA_HOME": "relative", "HOME": "/home/ann"}, {"HOME": "/"}],
)  # fmt: skip
def test_the_default_queue_is_where_platformdirs_puts_it(monkeypatch, env):
    from queuectl import target

    for name in ("XDG_DATA_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = os.path.abspath(target.platformdirs_path())
    assert os.path.abspath(target.default_path()) == expected
    assert target.resolve_target().location == expected


@pytest.mark.skipif(sys.platform != "linux", reason="elsewhere platformdirs names the folder")
def test_a_command_on_the_default_queue_loads_no_platformdirs(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("QUEUECTL_DB", "XDG_DATA_HOME")}  # fmt: skip
    env["HOME"] = str(tmp_path)
    code = RUN.format(args=["enqueue", "true"], names=["platformdirs"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert (tmp_path / ".local" / "share" / "queuectl" / "queuectl.db").exists()


def test_version_is_the_installed_packages():
    """`--version` prints queuectl.__version__ (no metadata lookup): the same as pip installed."""
    from importlib.metadata import version

    import queuectl

    assert queuectl.__version__ == version("queuectl")
    result = CliRunner().invoke(cli, ["--version"], prog_name="queuectl")
    assert result.exit_code == 0 and result.stdout == f"queuectl, version {version('queuectl')}\n"


# -- what the start-up's savings rely on -----------------------------------------------------


def test_the_models_defined_on_first_use_are_the_same_models(tmp_path):
    """The worker's and the history's models come from queuectl.tables on first use: imported
    from queuectl.models as ever, in the same order, each with its table, bound per queue."""
    from queuectl import models

    assert [model.__name__ for model in models.ALL_MODELS] == list(models.MODEL_NAMES)
    from queuectl.models import Event, HookDelivery, WorkerProcess

    assert (Event._meta.table_name, HookDelivery._meta.table_name) == ("job_event", "hook_delivery")
    assert WorkerProcess is models.WorkerProcess
    queue = Queue(str(tmp_path / "q.db"))
    try:
        queue.enqueue("true")
        bound = queue.models.Event
        assert issubclass(bound, Event) and bound._meta.database is queue.db
        assert [row.event for row in bound.select()] == ["enqueued"]
        assert {model._meta.table_name for model in queue.models.all} <= set(queue.db.get_tables())
        # Binding copies each field (shallowly): the copy is the bound model's, the template's
        # field stays the template's.
        from queuectl.models import Job

        job = queue.models.Job
        for name, field in Job._meta.fields.items():
            copied = job._meta.fields[name]
            assert copied is not field and (copied.model, field.model) == (job, Job), name
            assert copied.column_name == field.column_name and type(copied) is type(field)
    finally:
        queue.close()
    with pytest.raises(AttributeError):
        models.NoSuchModel  # noqa: B018


def test_a_job_spec_behaves_as_the_frozen_dataclass_it_was():
    import copy
    import pickle

    from queuectl.spec import JobOptions

    spec = JobSpec("make", priority=3, after=("a",))
    assert spec == JobSpec(command="make", priority=3, after=("a",)) != JobSpec("make")
    assert hash(spec) == hash(JobSpec("make", priority=3, after=("a",)))
    assert repr(JobSpec("x")) == (
        "JobSpec(command='x', id=None, max_retries=None, priority=None, timeout=None, "
        "delay=None, run_at=None, cwd=None, queue=None, after=None)"
    )
    with pytest.raises(AttributeError):
        spec.command = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del spec.priority
    assert pickle.loads(pickle.dumps(spec)) == spec and copy.deepcopy(spec) == spec
    assert spec.replace(priority=5) == JobSpec("make", priority=5, after=("a",))
    assert spec.with_defaults(JobOptions(priority=9, max_retries=2)) == JobSpec(
        "make", priority=3, max_retries=2, after=("a",)
    )
    with pytest.raises(TypeError):
        JobSpec()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "name", ["a", "q.b-c_9", "x" * 64, "", "x" * 65, "a b", "é", "a\n", "a/b"]
)
def test_a_name_is_checked_as_its_pattern_says(name):
    """validate_name checks characters without compiling QUEUE_NAME; the pattern agrees."""
    from queuectl.errors import InvalidInput
    from queuectl.spec import QUEUE_NAME, validate_name

    try:
        validate_name("queue", name)
        accepted = True
    except InvalidInput:
        accepted = False
    assert accepted == (QUEUE_NAME.fullmatch(name) is not None)


@pytest.mark.parametrize("columns", [None, "40", "100", "200", "abc", "-5"])
def test_help_is_as_wide_as_clicks_own_formatter_makes_it(monkeypatch, columns):
    """The root group's contexts measure the terminal without shutil, to the same width."""
    import shutil

    from queuectl.cli import HelpContext

    monkeypatch.delenv("COLUMNS", raising=False)
    if columns is not None:
        monkeypatch.setenv("COLUMNS", columns)
    width = HelpContext(cli).make_formatter().width
    assert width == click.Context(cli).make_formatter().width
    assert width == max(min(shutil.get_terminal_size().columns, 80) - 2, 50)
    assert cli.get_command(click.Context(cli), "enqueue").context_class is HelpContext


QUEUECTL = [sys.executable, "-m", "queuectl"]  # through main(), as the console script runs


def test_a_command_that_exits_at_once_keeps_its_exit_code_and_output(db):
    """main() ends a finished command without the interpreter's teardown: the exit codes, the
    output (all of it, through a pipe) and the database are as with any exit."""
    done = subprocess.run([*QUEUECTL, "--db", db, "enqueue", "--file", "-"], input="true\n" * 3000,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and len(done.stdout.split()) == 3000, done.stderr
    done = subprocess.run([*QUEUECTL, "--db", db, "list", "--json", "--limit", "5000"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 3000
    done = subprocess.run([*QUEUECTL, "--db", db, "show", "no-such-job"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("Error:") and done.stdout == ""
    done = subprocess.run([*QUEUECTL, "--db", db, "enqueue", "--priority", "x", "true"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Error:" in done.stderr
    done = subprocess.run([*QUEUECTL, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("queuectl, version")
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM job").fetchone() == (3000,)


MAIN_WITH = """
import atexit, sys, threading, time
{setup}
sys.argv = ["queuectl", *{args!r}]
from queuectl.cli import main
main()
"""


def _main_with(setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = MAIN_WITH.format(setup=setup, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_exiting_at_once_still_runs_the_atexit_handlers(db):
    done = _main_with("atexit.register(print, 'atexit ran')", "--db", db, "enqueue", "true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "atexit ran"


def test_a_thread_still_running_gets_the_usual_exit(db):
    """The teardown waits for a non-daemon thread: main() leaves the exit to it. (The thread
    is set free as the usual exit begins, as concurrent.futures frees its workers.)"""
    setup = ("release = threading.Event()\n"
             "threading.Thread(target=lambda: (release.wait(30), print('thread done'))).start()\n"
             "threading._register_atexit(release.set)")  # fmt: skip
    done = _main_with(setup, "--db", db, "config", "get", "max-retries")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3", "thread done"]


def test_a_profiler_still_gets_its_results(db, tmp_path):
    """Under a profiler (or a tracer, a coverage tool) the usual exit: it writes its results."""
    out, script = tmp_path / "enqueue.prof", tmp_path / "run.py"
    script.write_text("from queuectl.cli import main\nmain()\n")
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), str(script), "--db", db, "enqueue"]
    done = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.exists() and out.stat().st_size > 0


# -- the WAL a quick exit leaves -------------------------------------------------------------

LEFT_OPEN = """
import atexit, sys
from queuectl.cli import common
{setup}
def report():
    parts = common._LEFT_OPEN
    print("left open:", [part.db.execute_sql("PRAGMA synchronous").fetchone()[0] for part in parts])
atexit.register(report)
sys.argv = ["queuectl", *{args!r}]
from queuectl.cli import main
main()
"""


def _run_main(*args: str, setup: str = "", stdin: str = "") -> list[str]:
    code = LEFT_OPEN.format(setup=setup, args=list(args))
    done = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _job_ids(path: str) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:  # another process's view
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in connection.execute("SELECT id FROM job ORDER BY seq")]


def test_a_one_shot_command_leaves_the_wal_its_commit_made_durable(db):
    """`enqueue` from the console script commits with synchronous=FULL (2: the WAL synced at
    commit) and leaves the WAL for the next process instead of copying it back at close."""
    first = _run_main("--db", db, "enqueue", "true")
    assert first[-1] == "left open: [2]"
    assert os.path.getsize(db + "-wal") > 0  # kept: the job is in it, not yet in the file
    second = _run_main("--db", db, "enqueue", "--file", "-", stdin="a\nb\n")
    assert second[-1] == "left open: [2]"
    assert _job_ids(db) == [first[0], *second[:2]]  # read back through the WAL, in order
    assert _run_main("--db", db, "config", "get", "max-retries") == ["3", "left open: [2]"]


def test_a_wal_past_the_limit_is_emptied_at_close(db):
    job_id = _run_main("--db", db, "enqueue", "true", setup="common.KEPT_WAL_BYTES = 0")[0]
    assert not os.path.exists(db + "-wal")  # the last close checkpointed and removed it
    assert _job_ids(db) == [job_id]


def test_a_command_opening_the_whole_queue_closes_it_as_before(db):
    """`status` (the whole Queue, committing as the workers do) closes the file: the WAL a
    previous command left is copied back and removed."""
    job_id = _run_main("--db", db, "enqueue", "true")[0]
    assert os.path.exists(db + "-wal")
    assert _run_main("--db", db, "status")[-1] == "left open: []"
    assert not os.path.exists(db + "-wal")
    assert _job_ids(db) == [job_id]


def test_in_process_the_database_is_closed_as_before(db):
    """Without main() (CliRunner, a caller's cli.main) nothing is left open."""
    result = CliRunner().invoke(cli, ["--db", db, "enqueue", "true"])
    assert result.exit_code == 0, result.output
    assert not os.path.exists(db + "-wal")


def test_another_process_with_the_queue_open_sees_each_kept_commit(db):
    """A reader (a TUI, a worker) open all along sees the jobs of commands that exited at once,
    and the next writer appends to the same WAL."""
    queue = Queue(db)
    try:
        assert queue.list_jobs(None, 10) == []
        ids = [_run_main("--db", db, "enqueue", "true")[0] for _ in range(2)]
        assert [job.id for job in queue.list_jobs(None, 10)] == ids[::-1]
        claimed = queue.claim("w1")
        assert claimed is not None and claimed.id == ids[0]
    finally:
        queue.close()
    assert _run_main("--db", db, "list", "--state", "processing")[1].startswith(ids[0])
