"""Input at the edges of what the CLI takes (QA's fuzzing, issue #17's fifteenth pass): each is
refused with one `Error:` line and the right exit code, and changes nothing, or taken and kept
exactly, on both backends."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from queuectl import Queue
from queuectl.cli import jobs as jobs_cli
from queuectl.spec import JobSpec

from .conftest import QUEUECTL
from .test_cli_commands import one_error_line


def real(env, cwd, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QUEUECTL, *args], env={**env, **extra}, cwd=cwd, capture_output=True,
                          timeout=60)  # fmt: skip


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    return [x for x in done.stderr.decode(errors="replace").splitlines() if x.startswith("Error:")]


def test_a_directory_named_in_bytes_not_utf8_is_no_jobs_cwd(env, tmp_path, target):
    """The database holds text: `enqueue` run there was a traceback, and a schedule added there
    was stored, then failed at every due time (and took the worker's service thread with it)."""
    there = os.path.join(os.fsencode(tmp_path), b"bad\xffdir")
    os.mkdir(there)
    for args, stdin in ((["enqueue", "pwd"], None), (["enqueue", "--file", "-"], b"pwd\n"),
                        (["schedule", "add", "s", "* * * * *", "pwd"], None)):  # fmt: skip
        done = subprocess.run([*QUEUECTL, *args], env=env, cwd=there, input=stdin,
                              capture_output=True, timeout=60)  # fmt: skip
        assert done.returncode == 1, done.stderr
        (line,) = error_lines(done)
        assert "not valid UTF-8" in line and "bad\\xffdir" in line and "give 'cwd'" in line
    # A cwd given is taken there, and a relative one is refused as the directory is.
    given = json.dumps({"command": "pwd", "cwd": str(tmp_path)})
    assert real(env, there, "enqueue", given).returncode == 0
    done = real(env, there, "enqueue", json.dumps({"command": "pwd", "cwd": "sub"}))
    assert done.returncode == 1 and "not valid UTF-8" in error_lines(done)[0]
    queue = Queue(target)
    try:
        assert [job.cwd for job in queue.list_jobs()] == [str(tmp_path)]
        assert queue.schedules() == []
    finally:
        queue.close()


def test_a_relative_cwd_from_a_directory_removed_says_so(env, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    # The shell's directory removed under it: what a user in a deleted build folder has.
    job = "'" + json.dumps({"command": "x", "cwd": "rel"}) + "'"
    script = f"cd {gone} && rmdir {gone} && exec {' '.join(QUEUECTL)} enqueue {job}"
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    (line,) = error_lines(done)
    assert "the current directory no longer exists" in line  # not "cannot write to stdout"


@pytest.mark.parametrize("timeout", ["0.001", "0.1", "2.5", "3600", "86400.5"])
def test_a_timeout_reads_back_as_given(run, timeout):
    job = run.json("enqueue", "--timeout", timeout, "true")
    assert job["timeout"] == float(timeout)
    edited = run.json("edit", job["id"], "--timeout", timeout)
    assert edited["timeout"] == float(timeout)


@pytest.mark.parametrize("args", [["--timeout", "1e-300", "x"], ['{"command": "x", "timeout": 1e-9}']])
def test_a_timeout_under_a_millisecond_is_refused_on_both_backends(run, any_queue, args):
    """PostgreSQL refused 1e-300 as a database error (exit 1, "value out of range: underflow")
    where SQLite took it: both refuse it now, as invalid input, naming the least."""
    assert ">= 0.001" in one_error_line(run("enqueue", *args), 2)
    assert any_queue.counts()["pending"] == 0


def test_a_cron_expression_longer_than_255_characters_is_refused(run):
    minutes = ",".join(map(str, range(60)))
    hours = ",".join(map(str, range(24)))
    days = ",".join(map(str, range(1, 32)))
    cron = f"{minutes} {hours} {days} * *"
    assert len(cron) > 255
    error = one_error_line(run("schedule", "add", "long", cron, "true"), 2)
    assert "at most 255" in error
    assert run.json("schedule", "list") == []


@pytest.mark.parametrize(
    "arg",
    ['{ "command": "make", "priority": 5,}', "{'command': 'ls'}", '{  "command" : 1',
     '{command: "echo x"}'],
)
def test_json_mistyped_with_a_space_or_single_quotes_is_refused(run, any_queue, arg):
    """`{"command": "make",}` was refused, `{ "command": "make",}` enqueued as a shell command;
    so was a key without quotes (QA), which no shell runs either."""
    assert "invalid JSON" in one_error_line(run("enqueue", arg), 2)
    assert "line 1: invalid JSON" in one_error_line(run("enqueue", "--file", "-", input=arg), 2)
    assert any_queue.counts()["pending"] == 0


@pytest.mark.parametrize("after, said", [
    ("[1]", "each id in 'after' must be a string, got int"),
    ("[null]", "each id in 'after' must be a string, got null"),
    ('"A"', "'after' must be a list of job ids, got str"),
])  # fmt: skip
def test_a_mistyped_after_says_which_part_is_wrong(run, any_queue, after, said):
    """QA: `"after": [1]` said "'after' must be a string", and `"after": "A"` that it must be
    a list."""
    line = one_error_line(run("enqueue", '{"command": "x", "after": %s}' % after), 2)
    assert line == f"Error: {said}"
    assert any_queue.counts()["pending"] == 0


def test_jobs_given_as_a_json_array_are_refused_and_told_of_enqueue_file(run, any_queue):
    """QA: `enqueue '[{"command": "echo x"}]'` was taken as a shell command (`[` given an
    object), which could only fail, three times, into the DLQ."""
    arg = '[{"command": "echo x"}, {"command": "echo y"}]'
    line = one_error_line(run("enqueue", arg), 2)
    assert line == ("Error: a JSON array: enqueue takes one job (a JSON object); "
                    "`enqueue --file` takes one job a line")
    assert "line 1: a JSON array" in one_error_line(run("enqueue", "--file", "-", input=arg), 2)
    assert any_queue.counts()["pending"] == 0


@pytest.mark.parametrize("command", ['{ "$HOME/bin/run"; }', "{ echo a; }", '{ "a b" x; }',
                                     "{ x: ; }", "[ -e /tmp ] && echo y", "[{ x", "true"])
def test_a_shell_group_with_a_quoted_word_is_still_a_command(run, any_queue, command):
    job_id = run.ok("enqueue", command).strip()
    assert any_queue.get(job_id).command == command


@pytest.mark.parametrize("group", ["worker", "config", "queue", "schedule", "dlq"])
def test_a_group_without_its_command_is_one_error_line(run, group):
    result = run(group)
    assert result.exit_code == 2
    assert [x for x in result.stderr.splitlines() if x.startswith("Error:")] == [
        "Error: Missing command."
    ]


@pytest.mark.parametrize("job_id", ["-abc", "--help", "-"])
def test_an_id_that_reads_as_an_option_is_refused(run, any_queue, job_id):
    """`show -abc` then failed "No such option '-a'"."""
    for args in ([f"--id={job_id}", "x"], [json.dumps({"id": job_id, "command": "x"})]):
        assert "cannot start with '-'" in one_error_line(run("enqueue", *args), 2)
    assert any_queue.counts()["pending"] == 0
    assert run.ok("enqueue", "--id", "a-b", "x").strip() == "a-b"  # inside, a dash is fine


def test_show_prints_whole_numbers_whole(run):
    job = run.json("enqueue", "--timeout", "1234567", "--max-retries", "1234567", "x")
    shown = run.ok("show", job["id"])
    assert "timeout:     1234567s" in shown and "max_retries: 1234567\n" in shown
    run.ok("config", "set", "max-retries", "7654321")
    other = run.json("enqueue", "y")
    assert "max_retries: 7654321 (config max-retries)" in run.ok("show", other["id"])


def test_show_prints_a_year_before_1000_with_its_four_digits(run):
    """QA: `--run-at 0999-06-01` was shown `run_at: 999-06-01T00:00:00Z` (strftime's %Y), not
    ISO 8601; `--json` had it right."""
    job = run.json("enqueue", "--run-at", "0999-06-01T00:00:05Z", "x")
    assert job["run_at"].startswith("0999-06-01T00:00:05")
    shown = run.ok("show", job["id"])
    assert "run_at:      0999-06-01T00:00:05Z (" in shown
    first = run.json("enqueue", "--run-at", "0001-01-01T00:00:00Z", "y")
    assert "run_at:      0001-01-01T00:00:00Z (" in run.ok("show", first["id"])


def test_an_enqueue_file_line_past_the_limit_is_refused(run, any_queue, monkeypatch):
    """`--file /dev/zero` read one line for ever (a MemoryError traceback under a limit)."""
    monkeypatch.setattr(jobs_cli, "MAX_LINE", 100)
    fits = "echo " + "x" * 94 + "\n"  # 100 bytes with its newline
    assert len(run.ok("enqueue", "--file", "-", input=fits).split()) == 1
    error = one_error_line(run("enqueue", "--file", "-", input="true\n" + "\0" * 500), 2)
    assert error == "Error: line 2: longer than 100 bytes"
    one_more = "echo " + "x" * 95 + "\n"  # 101 bytes, 100 of them before its newline
    error = one_error_line(run("enqueue", "--file", "-", input=one_more), 2)
    assert error == "Error: line 1: longer than 100 bytes"  # its newline counts
    assert any_queue.counts()["pending"] == 1


def test_output_in_an_encoding_without_the_jobs_characters_escapes_them(env, tmp_path):
    """PYTHONIOENCODING=latin-1: `enqueue --id 日本` enqueued, then failed printing the id (a
    script retrying it met "duplicate id"), and `show`/`list` were tracebacks."""
    done = real(env, tmp_path, "enqueue", "--id", "日本", "echo é", PYTHONIOENCODING="latin-1")
    assert done.returncode == 0 and done.stdout == b"\\u65e5\\u672c\n"
    for args in (["show", "日本"], ["list"], ["list", "--json"]):
        done = real(env, tmp_path, *args, PYTHONIOENCODING="latin-1")
        assert done.returncode == 0, done.stderr
        assert b"\\u65e5\\u672c" in done.stdout and b"Traceback" not in done.stderr
    done = real(env, tmp_path, "show", "日本", PYTHONIOENCODING="latin-1")
    assert "echo é".encode("latin-1") in done.stdout  # what it can hold, as itself


def test_output_in_an_ascii_locale_escapes_what_ascii_cannot_hold(env, tmp_path):
    """LC_ALL=C with PYTHONUTF8=0: standard output is ASCII with "surrogateescape", which held
    no `ü`: `list` and `show` were tracebacks (QA)."""
    queue = Queue(env["QUEUECTL_DB"])
    try:
        queue.enqueue(JobSpec(command="echo ü 日本", id="umlaut"))
    finally:
        queue.close()
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    shown = {}
    for args in (["list"], ["show", "umlaut"], ["list", "--json"]):
        done = real(env, tmp_path, *args, **ascii_locale)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
        shown[args[0] if len(args) == 1 else args[1]] = done.stdout
    assert b"echo \\xfc \\u65e5\\u672c" in shown["list"]
    assert "command:     echo ü 日本\n".encode() in shown["umlaut"]  # (as stored, as `logs`)
    assert json.loads(shown["--json"])[0]["command"] == "echo ü 日本"


def test_a_postgresql_url_with_a_bracket_left_open_is_one_line(env, tmp_path):
    for url in ("postgresql://u:secret@[::1:5432/db", "postgresql://u:secret@::1]:5432/db",
                "postgresql://u:se@cret@[::1/db"):  # fmt: skip
        done = real(env, tmp_path, "--db", url, "status")
        assert done.returncode == 1
        (line,) = error_lines(done)
        assert "is not a valid URL" in line and "secret" not in line and "cret" not in line


@pytest.mark.parametrize("url", [
    "postgresql://u:ab/cd@127.0.0.1/db",  # (read as the port "ab")
    "postgresql://u:ab#cd@127.0.0.1/db",
    "postgresql://u:ab?cd@127.0.0.1/db",
    "postgresql://u@127.0.0.1:1/db?password=abcd",
])  # fmt: skip
def test_no_part_of_a_password_is_printed(env, tmp_path, url):
    """QA: a password holding an unencoded `/`, `#` or `?`, or given as `?password=`, was
    printed whole in the error."""
    done = real(env, tmp_path, "--db", url, "status")
    assert done.returncode == 1
    (line,) = error_lines(done)
    assert "ab" not in line.replace("able", "") and "cd" not in line, line


def test_a_stop_timeout_of_0_says_nothing_of_the_database_at_a_stop(env, tmp_path):
    """QA: `--stop-timeout 0` logged "database unreachable (no answer) ... reachable again" at
    every stop: the service thread was given no time to end its round."""
    for _ in range(3):
        done = real(env, tmp_path, "worker", "start", "--burst", "--stop-timeout", "0")
        assert done.returncode == 0 and b"unreachable" not in done.stderr, done.stderr


def test_a_stop_timeout_past_what_a_thread_can_wait_means_for_ever(env, tmp_path, target):
    """`--stop-timeout 1e10` was a traceback on the way out, and the worker left registered."""
    done = real(env, tmp_path, "worker", "start", "--burst", "--stop-timeout", "1e10")
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    queue = Queue(target)
    try:
        assert queue.live_workers() == []
        assert queue.models.WorkerProcess.select().count() == 0  # unregistered
    finally:
        queue.close()


def test_a_command_no_run_could_start_is_refused_at_enqueue(env, tmp_path, target):
    """QA: a command of over 128 KiB run by /bin/sh (Linux's bound on one argument) was taken,
    then failed every run, "Argument list too long", into the DLQ. A long command of plain
    words still runs: started directly, each word is an argument of its own."""
    lines = tmp_path / "jobs.jsonl"
    refused = [
        "true " + "a" * 140_000,  # one word too long
        "echo x; " + "echo aaaa;" * 14_000,  # shell syntax: one argument of /bin/sh
        "echo " + "aaaa " * 30_000,  # plain words, but a builtin: run by /bin/sh
    ]
    for command in refused:
        lines.write_text(json.dumps({"command": command}) + "\n")
        done = real(env, tmp_path, "enqueue", "--file", str(lines))
        assert done.returncode == 2, done.stderr
        (line,) = error_lines(done)
        assert "bytes: /bin/sh takes at most 131,071" in line and "script" in line, line
    # Plain words, each short, but more than a program's arguments may hold (ARG_MAX) (QA).
    lines.write_text(json.dumps({"command": "/bin/echo" + " wordy" * 600_000}) + "\n")
    done = real(env, tmp_path, "enqueue", "--file", str(lines))
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done)
    assert "600,001 words" in line and "ARG_MAX" in line and "script" in line, line
    # ... and one just under the bound is taken (QA: one byte a word too many was counted).
    environment = sum(len(k) + len(v) + 10 for k, v in env.items())
    words = int((os.sysconf("SC_ARG_MAX") - environment) * 0.95) // 10
    lines.write_text(json.dumps({"command": "/bin/echo" + " w" * words}) + "\n")
    taken = real(env, tmp_path, "enqueue", "--file", str(lines))
    assert taken.returncode == 0, taken.stderr
    queue = Queue(target)
    try:
        assert queue.counts()["pending"] == 1, "only the last was enqueued"
        queue.cancel([queue.list_jobs("pending")[0].id])  # (not run below: it is long)
    finally:
        queue.close()
    lines.write_text(json.dumps({"command": "cat" + " /dev/null" * 20_000}) + "\n")
    taken = real(env, tmp_path, "enqueue", "--file", str(lines))
    assert taken.returncode == 0, taken.stderr
    done = real(env, tmp_path, "worker", "start", "--burst")
    assert done.returncode == 0, done.stderr
    queue = Queue(target)
    try:
        assert queue.counts()["completed"] == 1
    finally:
        queue.close()
