"""Every command's help, import hygiene (no Textual on the scripted path), completion."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue
from queuectl.cli import SUBCOMMANDS, cli

from .conftest import QUEUECTL


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join(prefix + (name,))} does not load"
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from command_paths(command, prefix + (name,))


ALL_COMMANDS = [()] + list(command_paths(cli))


def test_every_family_is_listed():
    names = {path[0] for path in ALL_COMMANDS if path}
    assert names == set(SUBCOMMANDS)
    assert {" ".join(p) for p in ALL_COMMANDS} >= {
        "enqueue", "list", "show", "status", "tui", "worker start", "worker stop",
        "dlq list", "dlq retry", "config get", "config set", "config list",
        "queue list", "queue limit", "queue pause", "queue resume", "schedule add",
        "schedule list", "schedule remove", "schedule pause", "schedule resume", "schedule run",
        "logs", "cancel", "retry", "edit", "purge",
        "history", "stats", "metrics",
    }  # fmt: skip


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "queuectl")
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="queuectl")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {' '.join(('queuectl',) + path)}")


SCRIPT = """
import sys
from queuectl.cli import cli
try:
    cli.main({args!r}, prog_name="queuectl")
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = sorted(
    m for m in sys.modules
    if m in ("textual", "queuectl.spawn") or m.startswith(("textual.", "queuectl.tui"))
)
print(loaded, file=sys.stderr)
sys.exit(3 if loaded else 0)
"""


@pytest.mark.parametrize(
    "args",
    [["status", "--help"], ["--help"], ["enqueue", "--help"], ["config", "list", "--json"],
     ["enqueue", "true"]],
)  # fmt: skip
def test_scripted_commands_never_import_textual(args, tmp_path):
    """Nor the workers' spawning (ctypes): start-up is the whole cost of a scripted command."""
    full = ["--db", str(tmp_path / "q.db"), *args]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(args=full)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


# Peewee (and the database drivers it loads), Textual, and the engine's modules.
HEAVY = ("peewee", "textual", "queuectl.queue", "queuectl.core", "queuectl.models", "queuectl.db",
         "queuectl.worker")  # fmt: skip
LOADED = f"""
import json, sys
{{code}}
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
RUN_CLI = """
from queuectl.cli import cli
try:
    cli.main({args!r}, prog_name="queuectl", standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def loaded_after(code: str) -> list[str]:
    """Which of the HEAVY modules a fresh interpreter has imported after ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(code=code)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_queuectl_loads_no_engine():
    assert loaded_after("import queuectl") == []


def test_version_loads_no_engine():
    assert loaded_after(RUN_CLI.format(args=["--version"])) == []


def test_help_loads_no_textual():
    assert "textual" not in loaded_after(RUN_CLI.format(args=["--help"]))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "queuectl")
def test_help_loads_no_engine(path):
    """The root help lists every family's short help, so every command module loads light."""
    assert loaded_after(RUN_CLI.format(args=[*path, "--help"])) == []


def test_a_database_command_loads_no_textual(tmp_path):
    loaded = loaded_after(RUN_CLI.format(args=["--db", str(tmp_path / "q.db"), "status"]))
    assert "textual" not in loaded
    assert "peewee" in loaded  # the check can see a module that was imported


def test_a_sqlite_command_loads_no_server_driver(tmp_path):
    """A command on a SQLite file does not pay for importing psycopg, even where it is
    installed (peewee probes for it); a PostgreSQL command does load it."""
    code = RUN_CLI.format(args=["--db", str(tmp_path / "q.db"), "enqueue", "true"])
    code += "\nimport sys; print(sys.modules.get('psycopg') is None and 'psycopg' not in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True"


def test_the_api_names_load_on_first_use():
    import queuectl
    from queuectl import InvalidInput, JobEvent, JobSpec, Queue, QueueError, WorkerPool, parse_job

    for name, value in [("Queue", Queue), ("WorkerPool", WorkerPool), ("JobEvent", JobEvent),
                        ("JobSpec", JobSpec), ("parse_job", parse_job),
                        ("InvalidInput", InvalidInput), ("QueueError", QueueError)]:
        assert getattr(queuectl, name) is value
    assert set(queuectl.__all__) <= set(dir(queuectl))
    assert queuectl.__version__
    with pytest.raises(AttributeError):
        queuectl.no_such_name


def test_python_dash_m_queuectl(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: queuectl")


def test_bash_completion_script_and_completions(env):
    source = subprocess.run(
        QUEUECTL, env={**env, "_QUEUECTL_COMPLETE": "bash_source"}, capture_output=True,
        text=True, timeout=30,
    )
    assert source.returncode == 0
    assert "_queuectl_completion" in source.stdout
    words = subprocess.run(
        QUEUECTL,
        env={**env, "_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": "queuectl config get m",
             "COMP_CWORD": "3"},
        capture_output=True, text=True, timeout=30,
    )
    assert "max-retries" in words.stdout
    commands = subprocess.run(
        QUEUECTL,
        env={**env, "_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": "queuectl dl",
             "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=30,
    )
    assert "dlq" in commands.stdout


def test_job_ids_complete(env, qc):
    assert qc("enqueue", "--id", "zeta-1", "true").returncode == 0
    assert qc("enqueue", "--id", "alpha-1", "true").returncode == 0
    words = subprocess.run(
        QUEUECTL,
        env={**env, "_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": "queuectl show ze",
             "COMP_CWORD": "2"},
        capture_output=True, text=True, timeout=30,
    )
    assert words.stdout.split() == ["plain,zeta-1"]


def test_completing_an_id_makes_no_database_where_there_is_none(env, tmp_path):
    """QA: a tab after a mistyped `--db` made that file, and its folders."""
    missing = tmp_path / "typo" / "queue.db"
    words = subprocess.run(
        QUEUECTL,
        env={**env, "_QUEUECTL_COMPLETE": "bash_complete",
             "COMP_WORDS": f"queuectl --db {missing} show ze", "COMP_CWORD": "4"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert words.returncode == 0 and words.stdout.split() == []
    assert not (tmp_path / "typo").exists()


def test_an_older_job_s_id_completes_past_many_newer_ones(env, qc, target):
    """QA: completion looked at the 200 newest jobs only: the id of an older job (a dead one to
    `retry`, say) never completed. `dlq retry` completes dead jobs' ids only."""
    queue = Queue(target)
    try:
        queue.enqueue(JobSpec(command="true", id="ab-old"))
        queue.enqueue_many([JobSpec(command="true", id=f"ab-new-{n}") for n in range(250)])
        queue.enqueue(JobSpec(command="true", id="ab-dead"))
        queue.models.Job.update(state="dead").where(queue.models.Job.id == "ab-dead").execute()
    finally:
        queue.close()

    def completed(words: str) -> list[str]:
        done = subprocess.run(
            QUEUECTL,
            env={**env, "_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": words,
                 "COMP_CWORD": str(len(words.split()) - 1)},
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return [line.split(",", 1)[1] for line in done.stdout.split()]

    assert completed("queuectl show ab-o") == ["ab-old"]
    assert len(completed("queuectl show ab-")) == 200  # newest first, as many as a shell shows
    assert completed("queuectl show ab-")[0] == "ab-dead"
    assert completed("queuectl dlq retry ab") == ["ab-dead"]


@pytest.mark.skipif(not hasattr(click.exceptions, "NoSuchCommand"), reason="click < 8.2 suggests none")
@pytest.mark.parametrize("typed, hint", [
    ("lst", "Did you mean 'list'?"),
    ("stauts", "'stats', 'status'"),
    ("dlq lst", "Did you mean 'list'?"),
])  # fmt: skip
def test_a_mistyped_command_is_refused_with_the_closest_names(typed, hint):
    """QA: a subcommand's typo got "Did you mean", a top-level one (its commands loaded lazily)
    got none."""
    result = CliRunner().invoke(cli, typed.split())
    assert result.exit_code == 2
    assert f"No such command '{typed.split()[-1]}'" in result.output and hint in result.output
