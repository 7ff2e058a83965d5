"""A thread starts its jobs with file actions made once per output descriptor and directory
(queuectl/spawn.py): each job still gets its own directory, its own output and nothing else."""

from __future__ import annotations

import threading

import pytest

from queuectl import executor, spawn

pytestmark = pytest.mark.skipif(
    not spawn.available(), reason="posix_spawn with chdir needs glibc 2.34 or later"
)


def test_jobs_in_many_directories_each_run_in_their_own(tmp_path):
    folders = [tmp_path / f"d{index}" for index in range(spawn._FileActions.MAX + 3)]
    for folder in folders:
        folder.mkdir()
    for _ in range(2):  # the second time round, from remembered actions (and after a clear)
        for folder in folders:
            result = executor.run("pwd; ls /proc/self/fd", cwd=str(folder), timeout=10)
            lines = result.output.splitlines()
            assert result.ok and lines[0] == str(folder), result
            assert sorted(lines[1:]) == ["0", "1", "2", "3"]  # 3: the one ls reads


def test_threads_starting_at_once_get_their_own_output(tmp_path):
    results: dict[int, list[str]] = {}

    def starts(number: int) -> None:
        results[number] = [
            executor.run(f"echo {number}-{round}", cwd=str(tmp_path), timeout=10).output
            for round in range(20)
        ]

    threads = [threading.Thread(target=starts, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: [f"{n}-{r}\n" for r in range(20)] for n in range(4)}


def test_remembered_commands_run_with_their_own_arguments_and_directory(tmp_path):
    """A start's encoded arguments and directory are remembered (up to a bound, then made
    again): every command still gets its own words in its own directory."""
    folders = [tmp_path / f"d{index}" for index in range(3)]
    for folder in folders:
        folder.mkdir()
    count = spawn._ENCODED_MAX + 5
    for _ in range(2):  # the second time round, from remembered ones (and after a clear)
        for index in range(count):
            folder = folders[index % len(folders)]
            result = executor.run(f"echo {index} $(pwd)", cwd=str(folder), timeout=10)
            assert result.ok and result.output == f"{index} {folder}\n", result


def test_an_argument_with_a_nul_is_refused_every_time(tmp_path):
    read, write = spawn.os.pipe()
    try:
        for _ in range(2):
            with pytest.raises(ValueError):
                spawn.spawn(["/bin/echo", "a\0b"], str(tmp_path), spawn.Environment({}), write)
            with pytest.raises(ValueError):
                spawn.spawn(["/bin/echo"], f"{tmp_path}\0x", spawn.Environment({}), write)
    finally:
        spawn.os.close(read)
        spawn.os.close(write)
