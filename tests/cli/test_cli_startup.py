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
SERVER_DRIVERS = ("psycopg", "psycopg2")
TEXTUAL = ("textual", "queuectl.tui")
ALL = WORKER_SIDE + OTHER_PARTS + ENGINE + SERVER_DRIVERS + TEXTUAL

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
