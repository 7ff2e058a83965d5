"""A worker's lookups of programs on PATH are remembered (queuectl/direct.py): a change to PATH's
directories after a lookup (a program installed, removed, a directory created or pointed
elsewhere) is seen by the very next job, as the shell would see it. Each test runs with the
kernel's notices (inotify) and with the `stat` of every directory searched that replaces them
where inotify is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from queuectl import direct, spawn
from queuectl.executor import Execution

from .helpers import wait_until

pytestmark = pytest.mark.skipif(
    not direct._shell_is_dash(), reason="commands go direct only where /bin/sh is dash"
)


@pytest.fixture(params=["inotify", "stat"])
def lookups(request, monkeypatch):
    """Which way changes are seen; the remembered lookups start empty either way."""
    if request.param == "inotify":
        if direct._PathChanges.open() is None:
            pytest.skip("no inotify here")
    else:
        monkeypatch.setattr(direct, "_path_changes", lambda: None)
    monkeypatch.setattr(direct, "_path_cache", {})
    return request.param


def install(folder: Path, name: str, says: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {says}\n")
    path.chmod(0o755)
    return path


def environment(*folders: Path) -> spawn.Environment:
    variables = {k: v for k, v in os.environ.items() if k not in direct.SHELL_RESETS}
    variables["PATH"] = ":".join([*map(str, folders), os.environ["PATH"]])
    return spawn.Environment(variables)


def run(command: str, env: spawn.Environment) -> tuple[int | None, str, bool]:
    execution = Execution(command, env=env, timeout=30)
    result = execution.run()
    return result.exit_code, result.output, bool(getattr(execution._process, "direct", False))


def test_a_program_installed_after_a_lookup_is_found(tmp_path, lookups):
    folder = tmp_path / "bin"
    folder.mkdir()
    env = environment(folder)
    assert run("queuectl-new-tool", env) == (
        127, "/bin/sh: 1: queuectl-new-tool: not found\n", False
    )
    install(folder, "queuectl-new-tool", "installed")
    assert run("queuectl-new-tool", env) == (0, "installed\n", True)


def test_a_program_removed_after_a_lookup_is_the_shells_not_found(tmp_path, lookups):
    folder = tmp_path / "bin"
    folder.mkdir()
    env = environment(folder)
    program = install(folder, "queuectl-old-tool", "here")
    for _ in range(2):  # remembered
        assert run("queuectl-old-tool", env) == (0, "here\n", True)
    program.unlink()
    assert run("queuectl-old-tool", env) == (
        127, "/bin/sh: 1: queuectl-old-tool: not found\n", False
    )


def test_a_program_shadowed_earlier_on_path_is_the_one_run(tmp_path, lookups):
    early, late = tmp_path / "early", tmp_path / "late"
    late.mkdir()
    env = environment(early, late)  # `early` does not exist yet
    install(late, "queuectl-tool", "late")
    assert run("queuectl-tool", env) == (0, "late\n", True)
    early.mkdir()
    install(early, "queuectl-tool", "early")
    assert run("queuectl-tool", env) == (0, "early\n", True)
    os.rename(early / "queuectl-tool", tmp_path / "moved")
    assert run("queuectl-tool", env) == (0, "late\n", True)


def test_a_path_directory_through_a_symlink_pointed_elsewhere(tmp_path, lookups):
    """`current` leads PATH, pointing at a version without the program (found later on PATH),
    then at one with it: that one is run, as the shell runs it."""
    first, second, late = tmp_path / "v1", tmp_path / "v2", tmp_path / "late"
    for folder in (first, second, late):
        folder.mkdir()
    install(second, "queuectl-tool", "two")
    install(late, "queuectl-tool", "late")
    current = tmp_path / "current"
    current.symlink_to(first)
    env = environment(current, late)
    assert run("queuectl-tool", env) == (0, "late\n", True)
    (tmp_path / "next").symlink_to(second)
    os.replace(tmp_path / "next", current)  # as `ln -sfn` does it, atomically
    assert run("queuectl-tool", env) == (0, "two\n", True)


def test_a_path_directory_replaced(tmp_path, lookups):
    folder, staged, late = tmp_path / "bin", tmp_path / "staged", tmp_path / "late"
    for made in (folder, staged, late):
        made.mkdir()
    install(late, "queuectl-tool", "late")
    install(staged, "queuectl-tool", "new")
    env = environment(folder, late)
    assert run("queuectl-tool", env) == (0, "late\n", True)
    os.rename(folder, tmp_path / "retired")
    os.rename(staged, folder)
    assert run("queuectl-tool", env) == (0, "new\n", True)
    (folder / "queuectl-tool").unlink()  # the new directory is watched in turn
    assert run("queuectl-tool", env) == (0, "late\n", True)


def test_a_pool_finds_a_program_installed_after_it_started(target, tmp_path, monkeypatch):
    """A worker pool (its environment taken as it starts) runs a program installed on its PATH
    after its first lookup of that name, and the shell's not-found before."""
    from queuectl import JobSpec, Queue, WorkerPool
    from queuectl.states import State

    monkeypatch.setattr(direct, "_path_cache", {})
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    for name in direct.SHELL_RESETS:
        monkeypatch.delenv(name, raising=False)
    queue = Queue(target)
    pool = WorkerPool(queue, 1).start()
    try:
        before = queue.enqueue(JobSpec(command="queuectl-late-tool", max_retries=0))
        wait_until(lambda: queue.get(before.id).state == State.DEAD, 30, message="a dead job")
        install(folder, "queuectl-late-tool", "found")
        after = queue.enqueue(JobSpec(command="queuectl-late-tool", max_retries=0))
        wait_until(lambda: queue.get(after.id).state == State.COMPLETED, 30,
                   message="the job to complete")  # fmt: skip
        assert (queue.get(before.id).exit_code, queue.get(before.id).output) == (
            127, "/bin/sh: 1: queuectl-late-tool: not found\n"
        )
        assert queue.get(after.id).output == "found\n"
    finally:
        pool.stop()
        pool.join(30)
        queue.close()
