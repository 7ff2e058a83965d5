"""Simple commands started without the shell (queuectl/direct.py): which commands go direct,
and that a job cannot tell: every command of the corpus is run both ways through the real
Execution (through the shell, then as it goes by default) and must give the same result."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from queuectl import direct, executor, spawn
from queuectl.executor import Execution

from .helpers import group_members, wait_until

pytestmark = pytest.mark.skipif(
    not direct._shell_is_dash(), reason="commands go direct only where /bin/sh is dash"
)

SH = "/bin/sh"


def write_program(path: Path, text: str, mode: int = 0o755) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def bin_dir(tmp_path):
    """A directory of programs, put first on PATH: `hello` (a #! script printing its $0 and
    arguments), `noshebang` (an executable script without #!), `readonly-file` (not executable)
    and `bad-interpreter` (#! to a missing interpreter)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    write_program(folder / "hello", '#!/bin/sh\necho "hello $0 $*"\n')
    write_program(folder / "noshebang", 'echo "no shebang, run by sh: $0"\n')
    write_program(folder / "readonly-file", "#!/bin/sh\necho should not run\n", 0o644)
    write_program(folder / "bad-interpreter", "#!/nonexistent/interpreter\necho never\n")
    write_program(folder / "suicide", "#!/bin/sh\nkill -$1 $$\necho survived\n")
    write_program(folder / "probe", f"#!{sys.executable}\n" + PROBE)
    return folder


PROBE = """
import os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("argv", sys.argv[1:])
print("SigBlk", status["SigBlk"].strip(), "SigIgn", status["SigIgn"].strip())
print("fds", sorted(os.listdir("/proc/self/fd")))
print("stdin", os.readlink("/proc/self/fd/0"))
print("its session is its group", os.getsid(0) == os.getpgid(0))
print("cwd", os.getcwd())
print("PWD", os.environ.get("PWD"))
print("env", sorted(k for k in os.environ if k != "PWD"))
"""


@pytest.fixture
def env(bin_dir):
    """The job environment a worker gives: this process's, PATH led by ``bin_dir``."""
    variables = dict(os.environ)
    for name in direct.SHELL_RESETS:
        variables.pop(name, None)
    variables["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    return spawn.Environment(variables)


def run(command: str, how: str, **kwargs) -> tuple[executor.RunResult, bool]:
    """``command`` run through the shell ("shell") or as it goes by default ("auto"); also
    whether it went direct."""
    old = direct.ENABLED
    direct.ENABLED = how == "auto"
    try:
        execution = Execution(command, **{"timeout": 30, **kwargs})
        result = execution.run()
    finally:
        direct.ENABLED = old
    return result, bool(getattr(execution._process, "direct", False))


def both_ways(command: str, **kwargs) -> tuple[executor.RunResult, bool]:
    """The result through the shell, asserted equal to the default way's; and whether the
    default way went direct."""
    shell, went_direct = run(command, "shell", **kwargs)
    auto, went_direct = run(command, "auto", **kwargs)
    assert (auto.exit_code, auto.error, auto.output) == (
        shell.exit_code, shell.error, shell.output
    ), command
    return shell, went_direct


@pytest.fixture(params=["posix_spawn", "popen"])
def starter(request, monkeypatch):
    if request.param == "posix_spawn" and not spawn.available():
        pytest.skip("posix_spawn with chdir needs glibc 2.34 or later")
    if request.param == "popen":
        monkeypatch.setattr(spawn, "available", lambda: False)
    return request.param


# -- which commands go direct ------------------------------------------------------------------


SIMPLE = [
    "true", "false", "touch x", "ls -la", "sleep 0.1", "env", "hello a b", "hello  a=b  c,d:e%f@g+",
    "/bin/ls", "date +%s",
]
SYNTAX = [
    "ls 'x'", 'ls "x"', "ls $HOME", "ls `pwd`", "ls; ls", "ls & ls", "ls && ls", "ls | cat",
    "ls < x", "ls > x", "ls >> x", "ls *", "ls ?", "ls [a]", "ls ~", "ls ~/x", "ls #comment",
    "ls {a,b}", "{ ls; }", "ls \\x", "ls\nls", "ls\tx", "! ls", "(ls)", "ls ^x", "A=1 ls",
    "=x", "ls x\0", "ls é", "", "   ",
]
SHELL_WORDS = [
    "cd /", "exit 3", "export A=1", ". x", "source x", "set -e", "unset A", "ulimit -n",
    "umask 022", "exec ls", "eval ls", "trap x", "wait", "alias", "read x", "shift", "return",
    "break", "continue", "readonly", "local", "times", "type ls", "command ls", "hash",
    "getopts x", "jobs", "fg", "bg", "kill 1", "test 1", "[ 1 ]", "echo hi", "printf hi", "pwd",
    ":", "if", "while", "for", "case", "true --help", "false --version", "setsid ls",
]


@pytest.mark.parametrize("command", SIMPLE)
def test_simple_commands_go_direct(command, env):
    words = [word for word in command.split(" ") if word]
    assert direct.argv_for(command, env) == words


@pytest.mark.parametrize("command", SYNTAX + SHELL_WORDS)
def test_anything_a_shell_may_read_otherwise_stays_on_it(command, env):
    assert direct.argv_for(command, env) is None


@pytest.mark.parametrize("command", [
    "no-such-program-queuectl", "/no/such/program", "bin/hello", "./hello", "noshebang",
    "readonly-file", "/etc/passwd", "/tmp",
])
def test_programs_execve_would_not_run_as_sh_does_stay_on_it(command, env):
    assert direct.argv_for(command, env) is None


def test_path_is_searched_as_dash_searches_it(tmp_path, bin_dir):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "hello").mkdir()  # not a regular file: skipped
    assert direct.program_for("hello", None, {"PATH": f"{shadow}:{bin_dir}"}).path == (
        f"{bin_dir}/hello"
    )
    assert direct.program_for("hello", None, {"PATH": f"{bin_dir}/"}).path == f"{bin_dir}//hello"
    # A relative directory before it (the job's directory decides), dash's %options: the shell
    assert direct.argv_for("hello", {"PATH": f"bin:{bin_dir}"}) is None
    assert direct.argv_for("hello", {"PATH": f":{bin_dir}"}) is None
    assert direct.argv_for("hello", {"PATH": f"{shadow}%func:{bin_dir}"}) is None
    assert direct.argv_for("hello", {"PATH": f"{bin_dir}:relative"}) == ["hello"]
    assert direct.argv_for("hello", {}) is None  # dash's default PATH: the shell


def test_a_program_appearing_earlier_on_path_is_found_at_once(tmp_path, bin_dir):
    """The lookup is cached while PATH's directories are unchanged; a new program in one of
    them is the one run next."""
    early = tmp_path / "early"
    early.mkdir()
    path = {"PATH": f"{early}:{bin_dir}"}
    assert direct.program_for("hello", None, path).path == f"{bin_dir}/hello"
    write_program(early / "hello", "#!/bin/sh\necho early\n")
    assert direct.program_for("hello", None, path).path == f"{early}/hello"
    (early / "hello").unlink()
    assert direct.program_for("hello", None, path).path == f"{bin_dir}/hello"


@pytest.mark.parametrize("variables", [{"IFS": ":"}, {"OPTIND": "3"}, {"PPID": "1"},
                                       {"NOT-A-NAME": "x"}, {"1X": "y"}])
def test_an_environment_dash_would_change_stays_on_the_shell(env, variables):
    assert direct.argv_for("ls", spawn.Environment({**env, **variables})) is None
    shell, went_direct = both_ways("env", env=spawn.Environment({**env, **variables}))
    assert not went_direct


def test_the_escape_hatch(env, monkeypatch):
    monkeypatch.setattr(direct, "ENABLED", False)
    assert direct.program_for("ls", None, env) is None


# -- both ways, the same ----------------------------------------------------------------------


@pytest.mark.parametrize("command,goes_direct", [
    ("true", True), ("false", True), ("sleep 0.1", True), ("ls -la DIR", True),
    ("hello one two", True), ("hello  spaced   out", True), ("no-such-program-queuectl", False),
    ("/no/such/program", False), ("noshebang", False), ("readonly-file", False),
    ("bad-interpreter", True), ("DIR/../bin/hello", True), ("BIN/hello x", True),
    ("ls -la DIR/missing", True), ("cat DIR/f", True), ("echo a b", False),
    ("true --help", False), ("ls *", False), ("X=1 env", False),
])
def test_same_result_both_ways(command, goes_direct, tmp_path, bin_dir, env, starter):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "f").write_text("content\n")
    command = command.replace("DIR", str(folder)).replace("BIN", str(bin_dir))
    result, went_direct = both_ways(command, env=env, cwd=str(tmp_path))
    assert direct.argv_for(command, env) is not None or not went_direct
    # bad-interpreter: chosen, but its start fails and the shell takes it
    assert went_direct == (goes_direct and command != "bad-interpreter"), result


def test_not_found_is_the_shells_message(env):
    result, went_direct = both_ways("no-such-program-queuectl --flag", env=env)
    assert (result.exit_code, result.output) == (
        127, "/bin/sh: 1: no-such-program-queuectl: not found\n"
    )
    assert not went_direct


def test_a_file_is_created_both_ways(tmp_path, env):
    for how in ("shell", "auto"):
        result, went_direct = run(f"touch {tmp_path}/{how}", how, env=env)
        assert result.ok and (tmp_path / how).exists() and went_direct == (how == "auto")


def test_the_program_sees_what_it_saw_under_the_shell(tmp_path, env, starter):
    """argv, signals, descriptors, stdin, session, directory and environment (as a set: the
    order of its entries is the only thing that differs)."""
    result, went_direct = both_ways("probe x=1 --y", env=env, cwd=str(tmp_path))
    assert went_direct and result.ok
    assert "argv ['x=1', '--y']" in result.output
    assert f"cwd {tmp_path}" in result.output


@pytest.mark.parametrize("how_pwd", ["inherited, naming the directory", "inherited, another",
                                     "missing"])
def test_pwd_is_set_as_dash_sets_it(tmp_path, env, how_pwd):
    """Through a symlink: the inherited PWD is kept when it names the job's directory (the
    logical path), else the physical path is set."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    variables = dict(env)
    variables.pop("PWD", None)
    if how_pwd == "inherited, naming the directory":
        variables["PWD"] = str(link)
    elif how_pwd == "inherited, another":
        variables["PWD"] = str(tmp_path)
    jobs_env = spawn.Environment(variables)
    shell, _ = run("env", "shell", env=jobs_env, cwd=str(link))
    auto, went_direct = run("env", "auto", env=jobs_env, cwd=str(link))
    assert went_direct
    pwd = [line for line in shell.output.splitlines() if line.startswith("PWD=")]
    expected = link if how_pwd == "inherited, naming the directory" else real
    assert pwd == [f"PWD={expected}"]
    # env's lines come in the job's order, not dash's: compared as sets
    assert sorted(shell.output.splitlines()) == sorted(auto.output.splitlines())


def test_pwd_in_this_process_environment(tmp_path):
    """No environment given (scripted use): this process's, as for the shell."""
    shell, _ = run("env", "shell", cwd=str(tmp_path))
    auto, went_direct = run("env", "auto", cwd=str(tmp_path))
    assert went_direct == direct._environment_kept(os.environ)
    assert sorted(shell.output.splitlines()) == sorted(auto.output.splitlines())


@pytest.mark.parametrize("signal_name,code,said", [
    ("SEGV", 139, "Segmentation fault\n"), ("TERM", 143, "Terminated\n"), ("KILL", 137, "Killed\n"),
    ("PIPE", 141, ""), ("INT", 130, ""), ("USR1", 138, "User defined signal 1\n"),
])
def test_a_program_killed_by_a_signal_is_reported_as_the_shell_did(env, signal_name, code, said,
                                                                    starter):
    """sh said `Segmentation fault` (not for SIGINT or SIGPIPE) and exited with 128+n."""
    result, went_direct = both_ways(f"suicide {signal_name}", env=env)
    assert went_direct
    assert (result.exit_code, result.output) == (code, said)


def test_a_timeout_kills_a_direct_programs_group(tmp_path, bin_dir, env):
    write_program(bin_dir / "forks", f"#!/bin/sh\ncut -d' ' -f5 /proc/$$/stat > {tmp_path}/pgid\n"
                  "sleep 100 &\nsleep 100\n")
    for how in ("shell", "auto"):
        (tmp_path / "pgid").unlink(missing_ok=True)  # not the first round's, read in the second
        started = time.monotonic()
        # Long enough for `cut` to have written the group on a loaded machine.
        result, went_direct = run("forks", how, env=env, timeout=2)
        assert went_direct == (how == "auto")
        assert result.error == "timed out after 2s" and result.exit_code is None
        assert time.monotonic() - started < 2 + executor.KILL_GRACE_S + 10
        pgid = int((tmp_path / "pgid").read_text())
        wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_hard_stop_kills_a_direct_programs_group(tmp_path, bin_dir, env):
    write_program(bin_dir / "forks", f"#!/bin/sh\necho $$ > {tmp_path}/pgid\nsleep 100 &\n"
                  "echo started\nsleep 100\n")
    old = direct.ENABLED
    direct.ENABLED = True
    try:
        execution = Execution("forks", env=env, timeout=60)
        results = []
        thread = threading.Thread(target=lambda: results.append(execution.run()))
        thread.start()
        wait_until(lambda: execution.output.total > 0, 30, message="the job to start")
        assert execution._process.direct
        execution.kill()
        thread.join(30)
    finally:
        direct.ENABLED = old
    assert not thread.is_alive()
    assert results[0].error == "killed (hard stop)" and results[0].output == "started\n"
    pgid = int((tmp_path / "pgid").read_text())
    assert pgid == execution._process.pid  # the program leads the group: no shell above it
    wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_missing_directory_still_cannot_start(tmp_path, env):
    result, went_direct = both_ways("true", env=env, cwd=str(tmp_path / "gone"))
    assert result.error.startswith("cannot start") and "gone" in result.error


def test_a_missing_directory_that_pwd_names_still_cannot_start(tmp_path, env):
    gone = str(tmp_path / "gone")
    result, _ = both_ways("true", env=spawn.Environment({**env, "PWD": gone}), cwd=gone)
    assert result.error.startswith("cannot start") and "gone" in result.error


def test_a_relative_pwd_naming_the_relative_directory_is_not_kept(tmp_path, env, monkeypatch):
    """PWD equal to the job's directory as given is kept only when absolute (as dash does):
    a relative one is replaced by the physical path."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    jobs_env = spawn.Environment({**env, "PWD": "link"})
    shell, _ = run("env", "shell", env=jobs_env, cwd="link")
    auto, went_direct = run("env", "auto", env=jobs_env, cwd="link")
    assert went_direct
    assert f"PWD={tmp_path / 'real'}" in shell.output.splitlines()
    assert sorted(shell.output.splitlines()) == sorted(auto.output.splitlines())


def test_a_program_replaced_by_a_script_without_shebang_runs_as_sh_ran_it(bin_dir, env):
    """The file's kind is remembered per version of the file: a rewrite is seen."""
    assert run("hello", "auto", env=env)[1]
    write_program(bin_dir / "hello", "echo rewritten $0\n")
    result, went_direct = both_ways("hello", env=env)
    assert result.output == f"rewritten {bin_dir}/hello\n" and not went_direct


def test_runnable_files(tmp_path):
    elf = Path(os.path.realpath("/bin/ls"))
    assert direct._runnable(str(elf), os.stat(elf))
    script = write_program(tmp_path / "s", "#!/bin/sh\n")
    assert direct._runnable(str(script), os.stat(script))
    script.chmod(stat.S_IRUSR)  # no x bit at all: not even root may run it
    assert not direct._runnable(str(script), os.stat(script))
    assert not direct._runnable(str(tmp_path), os.stat(tmp_path))


def test_a_worker_stores_the_same_results_either_way(target, tmp_path, bin_dir, monkeypatch):
    """Through a worker pool, on each backend: the job's state, exit code and output are the
    ones the shell gave (the pool takes its environment, PATH included, as it starts)."""
    from queuectl import JobSpec, Queue, WorkerPool
    from queuectl.states import State

    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for name in direct.SHELL_RESETS:
        monkeypatch.delenv(name, raising=False)
    commands = {
        f"touch {tmp_path}/made": (State.COMPLETED, 0, ""),
        "hello a b": (State.COMPLETED, 0, f"hello {bin_dir}/hello a b\n"),
        "suicide SEGV": (State.DEAD, 139, "Segmentation fault\n"),
        "no-such-program-queuectl": (State.DEAD, 127,
                                     "/bin/sh: 1: no-such-program-queuectl: not found\n"),
    }
    queue = Queue(target)
    pool = WorkerPool(queue, 2).start()
    try:
        jobs = {command: queue.enqueue(JobSpec(command=command, max_retries=1))
                for command in commands}
        wait_until(lambda: queue.counts()["completed"] + queue.counts()["dead"] == len(jobs), 30,
                   message="every job to finish")
    finally:
        pool.stop()
        pool.join(30)
    try:
        for command, expected in commands.items():
            job = queue.get(jobs[command].id)
            assert (job.state, job.exit_code, job.output) == expected, command
        assert (tmp_path / "made").exists()
    finally:
        queue.close()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_stopped_program_that_handles_sigterm_ends_as_the_shell_did(bin_dir, env, how):
    """The group's SIGTERM killed sh, whatever its child did with it: a program that exits 3 on
    SIGTERM is reported killed by SIGTERM, as before."""
    write_program(bin_dir / "trapper", "#!/bin/sh\ntrap 'echo caught; exit 3' TERM\n"
                  "echo started\nwhile :; do sleep 0.05; done\n")
    results = {}
    for mode in ("shell", "auto"):
        old = direct.ENABLED
        direct.ENABLED = mode == "auto"
        try:
            # A timeout long enough for it to start and print first, on a loaded machine too.
            execution = Execution("trapper", env=env, timeout=60 if how == "cancel" else 3)
            thread = threading.Thread(target=lambda: results.__setitem__(mode, execution.run()))
            thread.start()
            wait_until(lambda: execution.output.total > 0, 30, message="the job to start")
            assert bool(getattr(execution._process, "direct", False)) == (mode == "auto")
            if how == "cancel":
                execution.cancel()
            thread.join(30)
        finally:
            direct.ENABLED = old
        assert not thread.is_alive()
    shell, auto = results["shell"], results["auto"]
    assert (auto.exit_code, auto.error) == (shell.exit_code, shell.error)
    assert shell.error == ("cancelled (killed by signal SIGTERM)" if how == "cancel"
                           else "timed out after 3s")


def test_only_a_dash_that_forks_for_the_command(monkeypatch):
    """What the executor reports for a program killed by a signal is what a forking dash
    reported: with a shell that execs the command (or is not dash), nothing goes direct."""
    monkeypatch.setattr(direct, "_dash", None)
    assert direct._shell_is_dash()  # this machine's (the module is skipped elsewhere)
    monkeypatch.setattr(direct, "_dash", None)
    monkeypatch.setattr(direct, "SHELL", "/bin/bash" if os.path.exists("/bin/bash") else "/x")
    assert not direct._shell_is_dash()
    assert direct.program_for("ls", None, None) is None
