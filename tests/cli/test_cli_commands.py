"""In-process (CliRunner) tests of parsing, validation, output and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest

from queuectl import JobSpec
from queuectl.executor import RunResult

from .conftest import QUEUECTL

JOB_KEYS = [
    "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
    "created_at", "updated_at", "started_at", "finished_at", "exit_code", "error", "output",
    "worker", "cwd", "queue", "after", "schedule",
]  # fmt: skip


def one_error_line(result, code: int) -> str:
    """The result failed with ``code`` and exactly one `Error:` line (no traceback)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return errors[0]


def kill_job(queue, job_id: str) -> None:
    """Run ``job_id`` to death by hand: claim it and fail it (max_retries 1)."""
    queue = queue.open()
    worker = queue.register_worker(1)
    job = queue.claim(worker)
    assert job is not None and job.id == job_id
    queue.finish(job, RunResult(exit_code=3, error="exit code 3", output="boom\n"), worker)
    queue.unregister_worker(worker)
    assert queue.get(job_id).state == "dead"


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_plain_command_prints_only_the_id(run, queue):
    out = run.ok("enqueue", "echo hello world")
    job_id = out.strip()
    assert out == job_id + "\n"
    job = queue.get(job_id)
    assert job.command == "echo hello world"
    assert job.state == "pending"
    assert job.cwd == os.getcwd()
    assert 8 <= len(job_id) <= 20


def test_enqueue_json_object_with_every_key(run, tmp_path):
    spec = {
        "id": "build-1",
        "command": "make",
        "max_retries": 5,
        "priority": 7,
        "timeout": 12.5,
        "run_at": "2030-01-02T03:04:05Z",
        "cwd": str(tmp_path),
    }
    job = run.json("enqueue", json.dumps(spec))
    assert list(job) == JOB_KEYS
    assert job["id"] == "build-1"
    assert job["max_retries"] == 5 and job["priority"] == 7 and job["timeout"] == 12.5
    run_at = datetime.fromisoformat(job["run_at"])
    assert run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert job["cwd"] == str(tmp_path)
    assert job["state"] == "pending" and job["attempts"] == 0


def test_options_are_defaults_for_keys_the_json_leaves_out(run):
    job = run.json(
        "enqueue", "--max-retries", "9", "--priority", "4", "--timeout", "30",
        '{"command": "true", "priority": 1}',
    )
    assert job["priority"] == 1  # the JSON wins
    assert job["max_retries"] == 9 and job["timeout"] == 30


def test_a_job_as_json_prints_it_enqueues_again(run):
    """`max_retries` and `timeout` print as null ("use config", SPEC 3): a script that sent a
    job back in the same shape got exit 2, "'max_retries' must be a whole number, got null"."""
    job = run.json("enqueue", '{"command": "true", "max_retries": null, "timeout": null}')
    assert (job["max_retries"], job["timeout"]) == (None, None)
    shape = {key: job[key] for key in ("command", "max_retries", "priority", "timeout", "queue")}
    again = run.json("enqueue", json.dumps(shape))
    assert {key: again[key] for key in shape} == shape
    assert "'priority' must be a whole number, got null" in one_error_line(
        run("enqueue", '{"command": "true", "priority": null}'), 2)  # no config behind it


def test_enqueue_options_on_a_plain_command(run):
    job = run.json("enqueue", "--id", "mine", "--delay", "3600", "--priority", "-2", "sleep 1")
    assert job["id"] == "mine" and job["priority"] == -2
    delay = datetime.fromisoformat(job["run_at"]) - datetime.fromisoformat(job["created_at"])
    assert delay.total_seconds() == pytest.approx(3600)


def test_a_shell_group_is_a_command_not_json(run, queue):
    job_id = run.ok("enqueue", "{ echo a; echo b; }").strip()
    assert queue.get(job_id).command == "{ echo a; echo b; }"


@pytest.mark.parametrize(
    "arg, message",
    [
        ('{"command": "x", "colour": "red"}', "unknown key 'colour'"),
        ('{"command": "x", "max_retries": "3"}', "'max_retries' must be a whole number"),
        ('{"command": "x", "priority": 1.5}', "'priority' must be a whole number"),
        ('{"command": "x", "timeout": 0}', "'timeout'"),
        ('{"command": ""}', "'command' is empty"),
        ('{"command": 5}', "'command' must be a string"),
        ("   ", "'command' is empty"),
        ('{"command": "x",}', "invalid JSON"),
        ('{"priority": 1}', "missing 'command'"),
        ('{"command": "x", "delay": 1, "run_at": "2030-01-01"}', "not both"),
        ('{"command": "x", "run_at": "tomorrow"}', "ISO 8601"),
    ],
)
def test_invalid_job_exit_2_naming_the_problem(run, queue, arg, message):
    error = one_error_line(run("enqueue", arg), 2)
    assert message in error
    assert queue.counts()["pending"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--max-retries", "-1", "x"],
        ["--max-retries", "two", "x"],
        ["--timeout", "0", "x"],
        ["--timeout", "nan", "x"],
        ["--delay", "-5", "x"],
        ["--run-at", "soon", "x"],
        ["--id", "has space", "x"],
        ["--delay", "1", "--run-at", "2030-01-01", "x"],
        ["a", "b"],
        [],
    ],
)
def test_bad_enqueue_options_are_usage_errors(run, queue, args):
    result = run("enqueue", *args)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and "Traceback" not in result.output
    assert queue.counts()["pending"] == 0


@pytest.mark.parametrize("job_id", ["j\x1b[1mX", "a\u202eb", "zero\u200bwidth", "del\x7f"])
def test_an_id_with_a_control_character_is_refused(run, queue, job_id):
    """Such an id printed to a pipe is not the id a terminal shows: exit 2, nothing enqueued."""
    for args in (["--id", job_id, "x"], [json.dumps({"id": job_id, "command": "x"})]):
        error = one_error_line(run("enqueue", *args), 2)
        assert "control characters" in error and repr(job_id) in error
    assert queue.counts()["pending"] == 0


def test_duplicate_id_exit_2_and_the_first_job_is_kept(run, queue):
    run.ok("enqueue", "--id", "once", "echo first")
    error = one_error_line(run("enqueue", '{"id": "once", "command": "echo second"}'), 2)
    assert "duplicate id 'once'" in error
    assert queue.get("once").command == "echo first"
    assert queue.counts()["pending"] == 1


# -- enqueue --file --------------------------------------------------------------------------


def test_enqueue_file_one_job_per_line(run, queue, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(
        "# nightly\n"
        "echo one\n"
        "\n"
        '{"id": "two", "command": "echo two", "priority": 5}\n'
        "   # indented comment\n"
        "echo three\r\n"
    )
    out = run.ok("enqueue", "--priority", "1", "--file", str(jobs))
    ids = out.split()
    assert len(ids) == 3 and ids[1] == "two"
    assert [queue.get(i).command for i in ids] == ["echo one", "echo two", "echo three"]
    assert [queue.get(i).priority for i in ids] == [1, 5, 1]


def test_enqueue_file_drops_a_leading_byte_order_mark(run, queue):
    """A file saved "with BOM" (Windows editors): the mark is not part of the first command."""
    result = run("enqueue", "--file", "-", input=b"\xef\xbb\xbfecho one\r\necho two\n")
    assert result.exit_code == 0, result.output
    assert [queue.get(i).command for i in result.stdout.split()] == ["echo one", "echo two"]


def test_enqueue_file_from_stdin_as_json(run):
    result = run("enqueue", "--json", "--file", "-", input="echo a\necho b\n")
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)
    assert [job["command"] for job in jobs] == ["echo a", "echo b"]
    assert all(list(job) == JOB_KEYS for job in jobs)


@pytest.mark.parametrize(
    "content, line, message",
    [
        ('echo ok\n# fine\n{"command": "x", "bogus": 1}\necho never\n', 3, "unknown key 'bogus'"),
        ('echo ok\n{"command": "x",\n', 2, "invalid JSON"),
        ('{"id": "a", "command": "x"}\necho\n{"id": "a", "command": "y"}\n', 3, "duplicate id 'a'"),
    ],
)
def test_a_bad_line_rejects_the_whole_file(run, queue, tmp_path, content, line, message):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(content)
    error = one_error_line(run("enqueue", "--file", str(jobs)), 2)
    assert error.startswith(f"Error: line {line}: ")
    assert message in error
    assert queue.counts()["pending"] == 0


def test_a_file_line_whose_id_exists_names_the_line(run, queue, tmp_path):
    run.ok("enqueue", "--id", "taken", "true")
    jobs = tmp_path / "jobs.txt"
    jobs.write_text('echo a\n{"id": "taken", "command": "b"}\n')
    error = one_error_line(run("enqueue", "--file", str(jobs)), 2)
    assert error.startswith("Error: line 2: duplicate id 'taken'")
    assert queue.counts()["pending"] == 1


def test_a_file_that_is_not_utf8_names_the_line(run, queue, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_bytes(b"echo a\necho \xff\n")
    error = one_error_line(run("enqueue", "--file", str(jobs)), 2)
    assert error == "Error: line 2: not valid UTF-8"
    assert queue.counts()["pending"] == 0


def test_file_usage_errors(run, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("echo a\n")
    assert run("enqueue", "--id", "x", "--file", str(jobs)).exit_code == 2
    assert run("enqueue", "--file", str(jobs), "echo b").exit_code == 2
    assert run("enqueue", "--file", str(tmp_path / "missing.txt")).exit_code == 2


# -- list, show, status ----------------------------------------------------------------------


def test_list_newest_first_by_state_any_case_with_limit(run, queue):
    ids = [run.ok("enqueue", f"echo {n}").strip() for n in range(3)]
    listed = run.json("list")
    assert [job["id"] for job in listed] == ids[::-1]
    assert all(list(job) == JOB_KEYS for job in listed)
    pending = run.json("list", "--state", "PENDING", "--limit", "2")
    assert [job["id"] for job in pending] == [ids[2], ids[1]]
    assert run.json("list", "--state", "Dead") == []
    human = run.ok("list")
    assert human.splitlines()[0].split() == ["ID", "STATE", "ATTEMPTS", "PRI", "WHEN", "COMMAND"]
    assert all(job_id in human for job_id in ids)


def test_list_of_several_states(run, queue):
    """`--state` given twice kept only the last one, silently; purge takes it repeated."""
    dead = run.ok("enqueue", '{"command": "exit 1", "max_retries": 0}').strip()
    run.ok("worker", "start", "--burst")
    waiting = run.ok("enqueue", "--delay", "600", "true").strip()
    both = run.json("list", "-s", "pending", "--state", "DEAD", "-s", "dead")
    assert [job["id"] for job in both] == [waiting, dead]  # each once, newest first
    assert [job["id"] for job in run.json("list", "-s", "dead")] == [dead]
    result = run("list", "-s", "completed", "-s", "cancelled")
    assert (result.exit_code, result.stderr) == (0, "no completed or cancelled jobs\n")
    assert run("list", "-s", "dead", "-s", "done").exit_code == 2


def test_a_limit_of_0_lists_nothing_without_saying_there_is_nothing(run):
    job_id = run.ok("enqueue", '{"command": "exit 1", "max_retries": 1}').strip()
    run.ok("worker", "start", "--burst")
    assert run.json("dlq", "list") != [] and run.json("list", "--limit", "0") == []
    for args in (["list", "--limit", "0"], ["dlq", "list", "--limit", "0"]):
        result = run(*args)
        assert (result.exit_code, result.output) == (0, "")
    assert job_id in run.ok("dlq", "list")


def test_a_job_of_max_retries_0_shows_the_one_run_it_may_have(run):
    run.ok("enqueue", '{"command": "exit 1", "max_retries": 0}')
    run.ok("worker", "start", "--burst")
    [row] = run.ok("dlq", "list").splitlines()[1:]
    assert row.split()[1] == "1/1"  # it said 1/0: more attempts than allowed, it seemed


def test_a_json_listing_read_slowly_leaves_sqlite_free_to_checkpoint(tmp_path):
    """QA: `list --json | less` held one read transaction until its last byte was read: SQLite
    could not checkpoint, the WAL grew to 158 MB and workers ran 3× slower. Each page is a
    statement of its own now: nothing is held while the reader reads."""
    import sqlite3

    from queuectl import JobSpec, Queue
    from support import stop_process, wait_until

    db = tmp_path / "queue.db"
    queue = Queue(str(db))
    queue.enqueue_many([JobSpec(command=f"echo {n}") for n in range(5000)])  # ~3 MB of JSON
    queue.close()
    env = {k: v for k, v in os.environ.items() if k != "QUEUECTL_DB"}
    lister = subprocess.Popen([*QUEUECTL, "--db", str(db), "list", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert lister.stdout.read(1000).startswith(b'[{"id":')  # then read no more: it waits
        checker = sqlite3.connect(db, isolation_level=None)
        checker.execute("PRAGMA busy_timeout = 5000")
        checker.execute("CREATE TABLE test_writes (n INTEGER PRIMARY KEY)")

        def checkpointed() -> bool:
            checker.execute("INSERT INTO test_writes DEFAULT VALUES")  # (for the WAL)
            busy, _, _ = checker.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0

        wait_until(checkpointed, 10, "a checkpoint with the listing's reader waiting")
        assert os.path.getsize(f"{db}-wal") == 0
        checker.close()
        assert lister.poll() is None  # it still waited for its reader
    finally:
        stop_process(lister)


def test_list_unknown_state_exit_2_listing_the_valid_ones(run):
    result = run("list", "--state", "done")
    assert result.exit_code == 2
    assert "pending, processing, completed, failed, dead" in result.stderr


def test_show_by_unique_prefix(run, queue):
    run.ok("enqueue", "--id", "alpha-1", "echo a")
    run.ok("enqueue", "--id", "beta-1", "echo b")
    job = run.json("show", "alp")
    assert job["id"] == "alpha-1" and list(job) == JOB_KEYS
    human = run.ok("show", "beta")
    for field in JOB_KEYS:
        assert f"{field}:" in human


def test_show_unknown_or_ambiguous_id_exit_1(run):
    run.ok("enqueue", "--id", "job-a", "true")
    run.ok("enqueue", "--id", "job-b", "true")
    assert "no job 'nope'" in one_error_line(run("show", "nope"), 1)
    assert "ambiguous" in one_error_line(run("show", "job-"), 1)
    # QA: bytes that are not UTF-8 were named as Python's escape for them ('\udcff')
    assert "no job '\\xffjob'" in one_error_line(run("show", "\udcffjob"), 1)


def test_show_neutralises_escape_sequences_but_json_keeps_them(run, queue):
    job_id = run.ok("enqueue", "printf '\\033]0;pwned\\007'").strip()
    queue = queue.open()
    worker = queue.register_worker(1)
    job = queue.claim(worker)
    text = "\x1b[31mred\x1b[0m\ttab\r\nnext \u202eevil\n"
    queue.finish(job, RunResult(exit_code=0, error=None, output=text), worker)
    human = run.ok("show", job_id)
    assert "\x1b" not in human and "\u202e" not in human
    assert "\\x1b[31mred\\x1b[0m\ttab\nnext \\u202eevil" in human
    assert run.json("show", job_id)["output"] == text
    listed = run.ok("list")
    assert "\x1b" not in listed and "\x07" not in listed


def test_status_counts_and_exact_json_keys(run, queue):
    run.ok("enqueue", "true")
    run.ok("enqueue", "true")
    kill_job_id = run.ok("enqueue", "--max-retries", "1", "--priority", "9", "exit 3").strip()
    kill_job(queue, kill_job_id)
    status = run.json("status")
    assert status == {
        "pending": 2, "processing": 0, "completed": 0, "failed": 0, "dead": 1, "cancelled": 0, "workers": 0
    }
    assert list(status) == ["pending", "processing", "completed", "failed", "dead", "cancelled", "workers"]
    queue.register_worker(3)  # a live worker process with 3 threads
    assert run.json("status")["workers"] == 3
    human = run.ok("status")
    assert "workers     3  (1 worker process)" in human


# -- dlq -------------------------------------------------------------------------------------


def test_dlq_list_and_retry_by_prefix(run, queue):
    dead_id = run.ok("enqueue", "--id", "dead-one", "--max-retries", "1", "exit 3").strip()
    kill_job(queue, dead_id)
    listed = run.json("dlq", "list")
    assert [job["id"] for job in listed] == ["dead-one"]
    assert listed[0]["output"] == "boom\n"
    assert "exit code 3" in run.ok("dlq", "list")
    # Named twice (an id and its prefix): retried and printed once, as retry and cancel do.
    assert [j["id"] for j in run.json("dlq", "retry", "dead-", "dead-one")] == ["dead-one"]
    job = queue.get("dead-one")
    assert (job.state, job.attempts, job.error) == ("pending", 0, None)
    assert run.json("dlq", "list") == []


def test_dlq_retry_of_a_job_that_is_not_dead_changes_nothing(run, queue):
    dead_id = run.ok("enqueue", "--max-retries", "1", "exit 3").strip()
    kill_job(queue, dead_id)
    alive_id = run.ok("enqueue", "true").strip()
    error = one_error_line(run("dlq", "retry", dead_id, alive_id), 1)
    assert "is not dead" in error
    assert queue.get(dead_id).state == "dead"
    assert queue.get(alive_id).state == "pending"
    assert "no job" in one_error_line(run("dlq", "retry", "missing"), 1)


def test_dlq_retry_all(run, queue):
    first = run.ok("enqueue", "--max-retries", "1", "exit 3").strip()
    kill_job(queue, first)
    second = run.ok("enqueue", "--max-retries", "1", "exit 4").strip()
    kill_job(queue, second)
    retried = run.json("dlq", "retry", "--all")
    assert sorted(job["id"] for job in retried) == sorted([first, second])
    assert all(job["state"] == "pending" and job["attempts"] == 0 for job in retried)
    assert run("dlq", "retry", "--all").exit_code == 0  # an empty DLQ is not an error
    assert run("dlq", "retry").exit_code == 2
    assert run("dlq", "retry", "--all", first).exit_code == 2


# -- config ----------------------------------------------------------------------------------


def test_config_shows_a_hook_s_control_characters_as_escapes_to_a_person(run, monkeypatch):
    """`config set` echoed a hook's escape sequences to the terminal, which obeyed them (its
    title set). They are shown as escapes, as `show` does; a script reading `config get` from
    a pipe gets the value as stored."""
    import queuectl.cli.config as config_module

    hook = "notify \x1b]2;HOOK\x07 \x1b[1mdone\x1b[0m"
    assert run.ok("config", "set", "on-dead", hook) == (
        "on-dead = notify \\x1b]2;HOOK\\x07 \\x1b[1mdone\\x1b[0m\n"
    )
    assert run.ok("config", "get", "on-dead") == hook + "\n"  # a pipe: as stored, colours too
    monkeypatch.setattr(config_module, "_terminal", lambda: True)
    assert run.ok("config", "get", "on-dead") == (
        "notify \\x1b]2;HOOK\\x07 \\x1b[1mdone\\x1b[0m\n"
    )


def test_config_prints_a_number_as_it_is_stored(run):
    """`%g` printed backoff-base 1.23456789 as 1.23457 and retention 1234567.5 as 1.23457e+06,
    which no duration parses: what `config get` prints now reads back as the same value."""
    assert run.ok("config", "set", "backoff-base", "1.23456789") == "backoff-base = 1.23456789\n"
    assert run.ok("config", "get", "backoff-base") == "1.23456789\n"
    run.ok("config", "set", "retention", "1234567.5")
    shown = run.ok("config", "get", "retention").strip()
    assert shown == "1234567.5"
    run.ok("config", "set", "retention", shown)  # reads back
    assert run.json("config", "list")["retention"] == 1234567.5
    # A huge whole number was printed as 309 digits, and given to --json as an integer.
    assert run.ok("config", "set", "backoff-base", "1e308") == "backoff-base = 1e+308\n"
    assert '"backoff-base":1e+308' in run.ok("config", "list", "--json").replace(" ", "")
    assert run.ok("config", "set", "backoff-base", "1e+308") == "backoff-base = 1e+308\n"
    assert run.ok("config", "set", "backoff-base", "1e15") == "backoff-base = 1000000000000000\n"
    assert run.ok("config", "set", "backoff-base", "1e16") == "backoff-base = 1e+16\n"


def test_config_defaults_set_get_list(run):
    assert run.json("config", "list").items() >= {
        "max-retries": 3, "backoff-base": 2, "job-timeout": 300, "retention": 0
    }.items()
    assert run.ok("config", "set", "max-retries", "1") == "max-retries = 1\n"
    assert run.ok("config", "set", "backoff-base", "1.5") == "backoff-base = 1.5\n"
    assert run.ok("config", "get", "max-retries") == "1\n"
    assert run.ok("config", "get", "backoff-base") == "1.5\n"
    assert run.json("config", "list").items() >= {
        "max-retries": 1, "backoff-base": 1.5, "job-timeout": 300, "retention": 0
    }.items()
    assert "max-retries" in run.ok("config", "list")


@pytest.mark.parametrize(
    "args, message",
    [
        (["set", "retries", "3"], "unknown config key 'retries'"),
        (["get", "retries"], "unknown config key 'retries'"),
        (["set", "max-retries", "-1"], "invalid value for max-retries"),
        (["set", "max-retries", "1.5"], "invalid value for max-retries"),
        (["set", "backoff-base", "0.5"], "invalid value for backoff-base"),
        (["set", "backoff-base", "inf"], "invalid value for backoff-base"),
        (["set", "job-timeout", "0"], "invalid value for job-timeout"),
    ],
)
def test_config_bad_key_or_value_exit_2_nothing_changed(run, args, message):
    assert message in one_error_line(run("config", *args), 2)
    assert run.json("config", "list").items() >= {
        "max-retries": 3, "backoff-base": 2, "job-timeout": 300, "retention": 0
    }.items()


# -- databases and the root ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "garbage", "foreign", "no-file-url", "scheme"])
def test_a_bad_database_is_one_error_line_exit_1(tmp_path, kind):
    from click.testing import CliRunner

    from queuectl.cli import cli

    target = {
        "directory": str(tmp_path),
        "garbage": str(tmp_path / "garbage.db"),
        "foreign": str(tmp_path / "foreign.db"),
        "no-file-url": "sqlite://",
        "scheme": "mysql://x/y",
    }[kind]
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    import sqlite3

    with sqlite3.connect(tmp_path / "foreign.db") as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    for args in (["status"], ["enqueue", "true"], ["list", "--json"], ["config", "list"]):
        result = CliRunner().invoke(cli, ["--db", target, *args])
        one_error_line(result, 1)


def test_db_from_the_environment(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from queuectl.cli import cli

    target = tmp_path / "env.db"
    monkeypatch.setenv("QUEUECTL_DB", str(target))
    result = CliRunner().invoke(cli, ["enqueue", "true"])
    assert result.exit_code == 0, result.output
    assert target.exists()


def test_bare_queuectl_without_a_terminal_prints_the_help(run):
    result = run()
    assert result.exit_code == 0
    assert "Usage: queuectl" in result.stdout and "enqueue" in result.stdout


def test_tui_command_opens_the_app_with_target_and_workers(run, monkeypatch):
    import sys
    import types

    calls = []
    app = types.ModuleType("queuectl.tui.app")
    app.run_app = lambda target, workers: calls.append((target, workers))
    monkeypatch.setitem(sys.modules, "queuectl.tui.app", app)
    monkeypatch.setattr("queuectl.cli.tui.has_terminal", lambda: True)
    run.ok("tui", "--workers", "0")
    run.ok("tui")
    assert calls == [(run.db, 0), (run.db, 2)]
    assert run("tui", "--workers", "-1").exit_code == 2


def test_tui_with_a_bad_database_fails_before_the_screen_changes(tmp_path, monkeypatch):
    import sys
    import types

    from click.testing import CliRunner

    from queuectl.cli import cli

    app = types.ModuleType("queuectl.tui.app")
    app.run_app = lambda target, workers: pytest.fail("the app must not start")
    monkeypatch.setitem(sys.modules, "queuectl.tui.app", app)
    one_error_line(CliRunner().invoke(cli, ["--db", str(tmp_path), "tui"]), 1)


def test_tui_without_a_terminal_says_so_and_does_not_start(run, monkeypatch):
    """`queuectl tui > file` (or under cron) wrote the app's escape codes into the file and
    ran until killed."""
    import sys
    import types

    app = types.ModuleType("queuectl.tui.app")
    app.run_app = lambda target, workers: pytest.fail("the app must not start")
    monkeypatch.setitem(sys.modules, "queuectl.tui.app", app)
    result = run("tui")
    one_error_line(result, 1)
    assert "needs a terminal" in result.stderr


def test_bare_queuectl_at_a_terminal_opens_the_tui(run, monkeypatch):
    import sys
    import types

    import queuectl.cli

    calls = []
    app = types.ModuleType("queuectl.tui.app")
    app.run_app = lambda target, workers: calls.append((target, workers))
    monkeypatch.setitem(sys.modules, "queuectl.tui.app", app)
    monkeypatch.setattr(queuectl.cli, "_interactive", lambda: True)
    assert run.ok() == ""
    assert calls == [(run.db, 2)]


# -- numbers as typed, worker options, dependencies in `show` --------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "--priority", "\u0663", "x"],  # ARABIC-INDIC DIGIT THREE: int() took it as 3
        ["enqueue", "--max-retries", "\u0663", "x"],
        ["enqueue", "--timeout", "\u0663", "x"],
        ["enqueue", "--delay", "\u0661.5", "x"],
        ["enqueue", "--priority", "1_0", "x"],  # int() took it as 10
        ["schedule", "add", "s", "@daily", "x", "--timeout", "\u0663"],
        ["schedule", "add", "s", "@daily", "x", "--priority", "\uff13"],  # FULLWIDTH DIGIT THREE
        ["list", "--limit", "\u0663"],
        ["worker", "start", "--burst", "--count", "\u0662"],
        ["worker", "stop", "--timeout", "\u0663"],
        ["dlq", "list", "--limit", "\u0663"],
        ["logs", "--tail", "\u0663", "x"],
        ["config", "set", "max-retries", "\u0663"],
        ["config", "set", "backoff-base", "\u0661.5"],
        ["queue", "limit", "q", "\u0663"],
    ],
)
def test_numbers_must_be_typed_in_ascii_digits(run, queue, args):
    one_error_line(run(*args), 2)
    assert queue.counts()["pending"] == 0 and run.json("schedule", "list") == []
    assert queue.config()["max-retries"] == 3 and queue.config()["backoff-base"] == 2
    assert run.json("queue", "list") == []


def test_a_whole_number_of_seconds_is_a_json_integer(run):
    """`enqueue --timeout 5 --json` said "timeout": 5.0."""
    assert run.json("enqueue", "--timeout", "5", "x")["timeout"] == 5
    assert isinstance(run.json("enqueue", "--timeout", "5", "y")["timeout"], int)
    assert run.json("enqueue", "--timeout", "2.5", "z")["timeout"] == 2.5


def test_edit_refuses_a_number_in_other_digits(run, queue):
    job_id = run.ok("enqueue", "--priority", "1", "x").strip()
    one_error_line(run("edit", job_id, "--priority", "\u0663"), 2)
    assert queue.get(job_id).priority == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
@pytest.mark.parametrize("option", [["stop", "--timeout"], ["start", "--burst", "--stop-timeout"]])
def test_worker_time_options_refuse_nan_and_infinity(run, queue, option, value):
    """`worker stop --timeout nan` was taken (exit 0), as was `--stop-timeout nan`."""
    job_id = run.ok("enqueue", "true").strip()
    assert "must be a finite number" in one_error_line(run("worker", *option, value), 2)
    assert queue.get(job_id).state == "pending"  # no worker ran


def test_worker_start_help_names_every_second_signal_s_exit_code(run):
    text = " ".join(run.ok("worker", "start", "--help").split())
    assert "SIGHUP" in text.split("Twice:")[0]
    assert "exit 130, 143 for SIGTERM, or 129 for SIGHUP" in text


def test_show_says_a_dead_dependency_blocks_the_job_once(run, queue):
    """It read `after: blocked: bad (dead: blocked)`."""
    run.ok("enqueue", "--id", "bad", "--max-retries", "1", "--priority", "9", "exit 3")
    run.ok("enqueue", "--id", "fine", "true")
    job_id = run.ok("enqueue", "--after", "bad", "--after", "fine", "x").strip()
    kill_job(queue, "bad")
    [after] = [line for line in run.ok("show", job_id).splitlines() if line.startswith("after:")]
    assert after == (
        "after:       bad (dead: this job is blocked until it is retried), fine (pending)"
    )
    run.ok("cancel", job_id)  # no longer waiting: the dead job blocks nothing
    [after] = [line for line in run.ok("show", job_id).splitlines() if line.startswith("after:")]
    assert after.endswith(" bad (dead), fine (pending)")


@pytest.mark.parametrize("args", [("enqueue", "true"), ("enqueue", "--file", "-"), ("status",),
                                  ("--version",), ("--help",)])
def test_output_that_cannot_be_written_is_one_error_line_saying_what_was_done(env, tmp_path,
                                                                              args):
    """QA: `enqueue --file F > ids.txt` on a full disk printed a traceback and exited 1 with
    every job enqueued: a script that took it for a failure enqueued them all again."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([*QUEUECTL, *args], env=env, cwd=tmp_path, input="true\ntrue\n",
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "Error: cannot write to standard output (No space left on device); what the command "
        "changed in the queue, if anything, is done"
    ]
    status = json.loads(subprocess.run([*QUEUECTL, "status", "--json"], env=env, cwd=tmp_path,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert status["pending"] == {"enqueue": 2 if "--file" in args else 1}.get(args[0], 0)


@pytest.mark.parametrize("args", [("logs", "big"), ("logs", "--raw", "big"),
                                  ("show", "big", "--json"), ("show", "big"), ("list", "--json")])
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly_with_1(env, tmp_path,
                                                                             queue, args):
    """README: "A reader that closes the pipe (`| head`) ends the command quietly (exit 1)".
    QA: `logs` and `show --json` of a job's 1 MiB of output exited 0, the output cut: a large
    write to the closed pipe wrote a part and returned as if done."""
    engine = queue.open()
    try:
        engine.enqueue(JobSpec(command="seq 1 400000", id="big"))
        Job = engine.models.Job
        output = "".join(f"{n}\n" for n in range(150_000))  # ~1 MiB, past any pipe's buffer
        Job.update(state="completed", output=output).where(Job.id == "big").execute()
    finally:
        engine.close()
    reader = subprocess.Popen([*QUEUECTL, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert reader.stdout.read(10)  # then `head` goes away
        reader.stdout.close()
        assert reader.wait(60) == 1
        assert reader.stderr.read() == b""
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
        reader.stderr.close()


def test_a_listing_row_cut_by_a_disk_that_fills_is_an_error(tiny_disk, tmp_path):
    """As below, for a table's row: to a file its last column (a command) is whole, and one of
    300,000 characters, with 8 KiB left on the disk, was cut with exit 0."""
    from support import fill

    db = str(tmp_path / "q.db")
    env = {**os.environ, "QUEUECTL_DB": db, "HOME": str(tmp_path)}
    # (plain words, each an argument of its own: as one argument of /bin/sh it is refused)
    subprocess.run([*QUEUECTL, "enqueue", "--file", "-"], env=env, input="cat" + " x" * 150_000,
                   text=True, capture_output=True, check=True, timeout=60)  # fmt: skip
    filler = fill(tiny_disk)
    os.truncate(filler, filler.stat().st_size - 8192)  # 8 KiB left
    with open(tiny_disk / "list.txt", "w") as out:
        done = subprocess.run([*QUEUECTL, "list"], env=env, stdout=out, stderr=subprocess.PIPE,
                              text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: cannot write to standard output (No space left")


def test_output_cut_by_a_disk_that_fills_is_an_error_not_a_whole_file(tiny_disk, tmp_path):
    """QA: `metrics > textfile.prom` with 8 KiB left on the disk exited 0, the file cut at
    8,192 of its 10,987 bytes: a write larger than the buffer was short and said nothing."""
    from support import fill

    db = str(tmp_path / "q.db")
    env = {**os.environ, "QUEUECTL_DB": db, "HOME": str(tmp_path)}
    lines = "".join(f'{{"command": "true", "queue": "q-{n}"}}\n' for n in range(100))
    subprocess.run([*QUEUECTL, "enqueue", "--file", "-"], env=env, input=lines, text=True,
                   capture_output=True, check=True, timeout=60)  # fmt: skip
    filler = fill(tiny_disk)
    os.truncate(filler, filler.stat().st_size - 8192)  # 8 KiB left
    with open(tiny_disk / "metrics.prom", "w") as out:
        done = subprocess.run([*QUEUECTL, "metrics"], env=env, stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: cannot write to standard output (No space left")


@pytest.mark.parametrize("closed, args", [(0, ("enqueue", "--file", "-")), (1, ("list",)),
                                          (1, ("queue", "list")), (0, ("status",))])
def test_a_standard_stream_its_caller_closed_is_no_traceback(env, tmp_path, closed, args):
    """QA: `enqueue --file - <&-` and `list >&-` ended in a traceback (click met Python's None
    for the closed stream). The stream reads or writes as /dev/null would."""
    subprocess.run([*QUEUECTL, "enqueue", "true"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)  # something to list
    done = subprocess.run([*QUEUECTL, *args], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                          preexec_fn=lambda: os.close(closed))  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_a_database_to_upgrade_on_a_disk_too_full_for_it_says_the_disk_is_full(tiny_disk, tmp_path):
    """QA: a file that needs a migration, opened with some room left on its disk but less than
    the migration needs, said it "is not a usable database (database or disk is full)": users
    took the file for damaged. It says the disk is full, changes nothing, and is upgraded once
    there is room."""
    import filecmp
    import shutil

    from queuectl import Queue
    from support import fill

    made = str(tmp_path / "made.db")
    queue = Queue(made)
    queue.enqueue(JobSpec(command="true", id="first"))
    for _ in range(300):  # the upgrade fills in each edge's dependency id: many pages to write
        queue.enqueue(JobSpec(command="true", after=("first",)))
    queue.db.execute_sql('ALTER TABLE "job_dep" DROP COLUMN "dep_id"')  # as schema 16 had it
    queue.db.execute_sql("UPDATE queuectl_schema SET value = '16' WHERE key = 'version'")
    queue.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    queue.close()
    db = tiny_disk / "q.db"
    env = {**os.environ, "QUEUECTL_DB": str(db), "HOME": str(tmp_path)}
    said = []
    for room in range(24, 68, 4):  # KiB left: from too little to open it to enough to upgrade
        for path in tiny_disk.iterdir():
            path.unlink()
        shutil.copy(made, db)
        filler = fill(tiny_disk)
        os.truncate(filler, filler.stat().st_size - room * 1024)
        done = subprocess.run([*QUEUECTL, "status"], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        if done.returncode == 0:
            break
        assert done.returncode == 1 and done.stdout == "", done
        assert done.stderr.startswith(f"Error: cannot open {db}: the disk is full ("), done.stderr
        said.append(done.stderr)
        version = "SELECT value FROM queuectl_schema WHERE key = 'version'"
        as_it_is = f"file:{db}?immutable=1"  # (a connection that reads the WAL needs room)
        with contextlib.closing(sqlite3.connect(as_it_is, uri=True)) as unchanged:
            assert unchanged.execute(version).fetchone() == ("16",)
        assert filecmp.cmp(made, db, shallow=False)
    assert any("(database or disk is full)" in line for line in said), said  # room, not enough
    filler.unlink()
    done = subprocess.run([*QUEUECTL, "status", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["pending"] == 301, done


def test_a_write_lock_held_past_the_busy_timeout_is_said_in_words(db_path, monkeypatch):
    """QA: `enqueue`, `config set` and `cancel` behind another process's write lock held for
    over a minute printed "Error: database error: database is locked" (SPEC 2: no user sees
    that). They say who holds what, and nothing is enqueued."""
    from queuectl import db as database

    from .conftest import Cli

    run = Cli(db_path)
    run.ok("enqueue", "--id", "first", "true")
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.3)  # (60 s: the same, sooner)
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        for args in (("enqueue", "true"), ("config", "set", "max-retries", "5"),
                     ("cancel", "first")):  # fmt: skip
            assert one_error_line(run(*args), 1) == (
                "Error: another process holds the database's write lock (for over a minute): "
                "try again once it lets go"
            )
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert [job["id"] for job in run.json("list")] == ["first"]
    assert run.json("show", "first")["state"] == "pending"


def test_list_lines_up_its_columns_in_terminal_cells(run):
    """QA: an id of wide characters (emoji, CJK) was padded by characters, not by the cells a
    terminal gives them, and the columns after it stood out of line."""
    from queuectl.text import cells, fit

    for job_id in ("😀" * 10, "日本語のジョブ", "plain", "e\u0301te\u0301"):  # (combining accents)
        run.ok("enqueue", "--id", job_id, "true")
    lines = run.ok("list").splitlines()
    starts = {cells(line[: line.index("pending")]) for line in lines[1:]}
    assert len(lines) == 5 and len(starts) == 1, lines
    assert cells(lines[0][: lines[0].index("STATE")]) in starts
    assert fit("日本語のジョブ", 6) == "日本…" and cells(fit("😀" * 10, 7)) <= 7
