"""Security: private files, job text that never reaches a shell except as the job's own command,
and terminal escape sequences that can't reach the user's terminal through human output (while
--json keeps every byte of the text).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue, QueueError, WorkerPool, parse_job
from queuectl.cli import cli


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_database_files_are_0600_and_created_folders_0700(tmp_path, umask):
    target = tmp_path / "new" / "deeper" / "queue.db"
    old = os.umask(umask)  # the modes must not depend on the user's umask
    try:
        queue = Queue(str(target))
        queue.enqueue("true")  # a write: the -wal and -shm files exist now
    finally:
        os.umask(old)
    for folder in (target.parent, target.parent.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    for suffix in ("", "-wal", "-shm"):
        file = Path(str(target) + suffix)
        assert file.stat().st_mode & 0o777 == 0o600, file
    queue.close()


def test_a_deleted_database_file_is_never_made_again_by_a_later_connection(tmp_path):
    """Each thread opens a connection of its own: one opened after the file was deleted made
    it again (the TUI's reads did, every second), 0644 under the usual umask, where the jobs'
    commands and output would then be readable by everyone (QA). It fails instead."""
    import threading

    import peewee

    target = tmp_path / "queue.db"
    queue = Queue(str(target))
    queue.enqueue("true")
    queue.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    failed: list[Exception] = []

    def read() -> None:  # a new thread: a new connection
        try:
            queue.counts()
        except peewee.OperationalError as exc:
            failed.append(exc)
        finally:
            queue.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(30)
    assert [str(exc) for exc in failed] == ["unable to open database file"]
    assert not target.exists()


def test_a_path_that_begins_with_two_slashes_is_a_file(tmp_path):
    """QA: `--db //tmp/q.db` (POSIX keeps the two slashes: `"$DIR/q.db"` with DIR=/) was read
    as a URI with an authority, "invalid uri authority: tmp"."""
    target = "/" + str(tmp_path / "queue.db")
    queue = Queue(target)
    try:
        queue.enqueue("true")
        assert queue.counts()["pending"] == 1
    finally:
        queue.close()
    assert (tmp_path / "queue.db").stat().st_mode & 0o777 == 0o600


def test_a_link_to_a_file_not_made_yet_makes_that_file(tmp_path):
    """QA: `--db link.db`, a link to a file not there yet, was "not a usable SQLite database
    (unable to open database file)" once connections stopped making files; the file is made
    where the link points, 0600, as SQLite made it before."""
    target, link = tmp_path / "target.db", tmp_path / "link.db"
    link.symlink_to(target)
    queue = Queue(str(link))
    try:
        queue.enqueue("true")
        assert queue.counts()["pending"] == 1
    finally:
        queue.close()
    assert target.stat().st_mode & 0o777 == 0o600 and link.is_symlink()


def test_a_loop_of_links_is_named_not_called_an_unusable_database(tmp_path):
    """QA: "… is not a usable SQLite database (unable to open database file)"."""
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    first.symlink_to(second)
    second.symlink_to(first)
    with pytest.raises(QueueError) as raised:
        Queue(str(first))
    assert str(raised.value) == f"cannot open {first}: Too many levels of symbolic links"
    with pytest.raises(QueueError) as raised:  # a folder of the path (QA: "File exists")
        Queue(str(first / "sub" / "queue.db"))
    assert str(raised.value) == f"cannot create {first / 'sub'}: Too many levels of symbolic links"


def test_a_link_into_a_folder_not_made_yet_makes_the_folder_as_a_path_would(tmp_path):
    """QA: a path into folders not there yet has them made (0700); a link into such folders
    was "cannot create LINK: No such file or directory", naming the link."""
    target, link = tmp_path / "new" / "sub" / "target.db", tmp_path / "link.db"
    link.symlink_to(target)
    queue = Queue(str(link))
    try:
        queue.enqueue("true")
    finally:
        queue.close()
    assert target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new" / "sub").stat().st_mode & 0o777 == 0o700


def run_cli(db: str, *args: str):
    result = CliRunner().invoke(cli, ["--db", db, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def drain(db: str) -> None:
    """Run every job to its end (a burst pool), with a deadline."""
    queue = Queue(db)
    pool = WorkerPool(queue, 2, burst=True).start()
    try:
        deadline = time.monotonic() + 60
        while not pool.stopping and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.stopping, "jobs left over after 60s"
    finally:
        pool.stop()
        assert pool.join(30)


INJECTIONS = ["$(touch PWNED)", "`touch PWNED`", "x;touch${IFS}PWNED", "$(touch${IFS}PWNED)",
              "'$(touch PWNED)'", '"; touch PWNED; "', "|touch PWNED", "&& touch PWNED"]


def test_job_text_reaches_a_shell_only_as_the_command(tmp_path, monkeypatch):
    """Shell syntax in an id, a cwd, an option or a database path is stored literally and never
    run; only a job's own command is (the control: it does run)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    db = str(tmp_path / "$(touch PWNED).db")
    assert run_cli(db, "config", "set", "max-retries", "0").exit_code == 0  # no backoff waits
    queued = []
    for n, text in enumerate(INJECTIONS):
        name = text.replace("PWNED", f"pwned-{n}")
        no_space = name.replace(" ", "${IFS}")
        for arg in (
            json.dumps({"command": "true", "id": f"{no_space}-id"}),
            json.dumps({"command": "true", "cwd": name}),
        ):
            result = run_cli(db, "enqueue", arg)
            assert result.exit_code in (0, 2), result.output
            if result.exit_code == 0:
                queued.append(result.stdout.strip())
        result = run_cli(db, "enqueue", "--id", f"{no_space}-opt", "--max-retries", "0", "true")
        assert result.exit_code in (0, 2), result.output
    run_cli(db, "enqueue", "touch control-ran")  # the command itself is run, as it should be
    drain(db)
    for job_id in queued:
        assert run_cli(db, "show", job_id).exit_code == 0
        run_cli(db, "dlq", "retry", job_id)
    for listing in (["list"], ["list", "--json"], ["dlq", "list"], ["status"]):
        assert run_cli(db, *listing).exit_code == 0
    drain(db)
    touched = sorted(p.name for p in tmp_path.rglob("*pwned*"))
    assert touched == [], f"job text was run by a shell: {touched}"
    assert (work / "control-ran").exists(), "the job's own command did not run"
    assert Path(db).exists(), "the database path was not taken literally"
    # The JSON keys are data: an id is stored exactly as given.
    spec = parse_job(json.dumps({"command": "true", "id": "$(touch${IFS}x)"}))
    assert spec.id == "$(touch${IFS}x)"


# Sequences a terminal would act on: clear screen, set the window title, a C1 CSI, a bell,
# cursor moves, a right-to-left override that makes text read backwards.
NASTY = "\x1b[2J\x1b]0;owned\x07\x9b31m\x1b[1A\r\u202egnp.exe\x08"


def escape_free(text: str) -> bool:
    return not any(ch in text for ch in "\x1b\x07\x9b\x08\u202e") and "\r" not in text


def test_escape_sequences_are_neutralised_in_human_output_and_intact_in_json(tmp_path):
    db = str(tmp_path / "queue.db")
    queue = Queue(db)
    payload = tmp_path / "payload.bin"
    payload.write_text(NASTY + "\n", encoding="utf-8")
    command = f"cat {payload}; echo '{NASTY}' >&2; exit 3"
    job = queue.enqueue(JobSpec(command=command, id=f"id{NASTY[:4]}x", max_retries=0))
    drain(db)
    stored = queue.get(job.id)
    assert stored.state == "dead" and NASTY in stored.output
    human = [
        ["list"], ["list", "--state", "dead"], ["show", job.id], ["dlq", "list"], ["status"],
        ["config", "list"], ["show", f"nope{NASTY}"],
    ]
    for args in human:
        result = run_cli(db, *args)
        assert escape_free(result.stdout) and escape_free(result.stderr), (args, result.output)
    shown = run_cli(db, "show", job.id).stdout
    assert "\\x1b[2J" in shown, "escapes are shown as text, not dropped"
    as_json = json.loads(run_cli(db, "show", "--json", job.id).stdout)
    assert as_json["id"] == job.id and as_json["command"] == command
    assert NASTY in as_json["output"] and as_json["output"] == stored.output
    [listed] = json.loads(run_cli(db, "list", "--json").stdout)
    assert listed["command"] == command
    [dead] = json.loads(run_cli(db, "dlq", "list", "--json").stdout)
    assert dead["id"] == job.id
    # The worker's log (stderr) names the job and its command: neutralised too.
    queue.enqueue(JobSpec(command=command, id=f"second{NASTY[:4]}", max_retries=0))
    result = run_cli(db, "worker", "start", "--burst", "--count", "1")
    assert result.exit_code == 0, result.output
    assert "second" in result.stderr
    assert escape_free(result.stderr) and escape_free(result.stdout), result.stderr
