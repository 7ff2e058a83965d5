"""The executor (SPEC 3): exit codes and errors, timeouts that kill the whole process group,
daemons, signals, commands that cannot start, bytes that are not UTF-8, bounded output."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from queuectl import executor, spawn
from queuectl.executor import Execution, TailBuffer

from .helpers import group_members, kill_group, wait_until

HERE = Path(__file__).parent
MARKER = "[queuectl: output truncated"


@pytest.fixture
def pgid_file(tmp_path):
    """A file a command writes its shell's pid (= its process group) to; the group is killed
    afterwards whatever the test did."""
    path = tmp_path / "pgid"
    yield path
    if path.exists() and path.read_text().strip():
        kill_group(int(path.read_text()))


def read_pgid(path: Path) -> int:
    return int(path.read_text())


@pytest.fixture(autouse=True, params=["posix_spawn", "popen", "no pidfd"])
def starter(request, monkeypatch):
    """Every test here runs both ways a job's shell is started: glibc's posix_spawn (the fast
    way) and Popen (where that is missing), and once more where a shell's exit cannot be
    polled for (Linux before 5.3: no pidfd). The child must not tell them apart."""
    if request.param != "popen" and not spawn.available():
        pytest.skip("posix_spawn with chdir needs glibc 2.34 or later")
    if request.param == "popen":
        monkeypatch.setattr(spawn, "available", lambda: False)
    if request.param == "no pidfd":
        monkeypatch.setattr(executor, "_pidfd", lambda pid: None)
    return request.param


def test_success():
    result = executor.run("echo hello")
    assert (result.exit_code, result.error, result.ok, result.output) == (0, None, True, "hello\n")


@pytest.mark.parametrize("code", [1, 2, 3, 42, 127, 255])
def test_exit_codes(code):
    result = executor.run(f"echo before; exit {code}")
    assert (result.exit_code, result.error, result.ok) == (code, f"exit code {code}", False)
    assert result.output == "before\n"


@pytest.mark.parametrize("command, outcome", [
    ("true", (0, None)), ("printf 12345", (0, None)), ("printf 12345; exit 3", (3, "exit code 3")),
    ("printf 12345; kill -KILL $$", (None, "killed by signal SIGKILL")),
])
def test_the_bytes_printed_are_counted_whatever_the_outcome(command, outcome):
    result = Execution(command, timeout=30).run()
    assert (result.exit_code, result.error) == outcome
    assert result.output_bytes == (0 if command == "true" else 5)


def test_the_bytes_printed_past_the_limit_are_counted_too():
    result = Execution("head -c 10000 /dev/zero | tr '\\0' x", output_limit=100).run()
    assert result.output_bytes == 10000 and result.output.endswith("x" * 100)


def test_a_run_that_exits_as_its_output_ends_is_read_to_the_end():
    """Output and exit reported by one poll: every byte read before the run ends."""
    for _ in range(20):
        result = Execution("head -c 200000 /dev/zero", timeout=30).run()
        assert result.ok and result.output_bytes == 200000


def test_command_not_found_is_a_failed_run():
    result = executor.run("no-such-command-queuectl-test")
    assert result.exit_code == 127 and not result.ok
    assert "not found" in result.output


def test_stdout_and_stderr_interleaved_in_order():
    result = executor.run("echo one; echo two >&2; echo three; echo four >&2")
    assert result.output == "one\ntwo\nthree\nfour\n"


def test_runs_in_cwd_through_sh_with_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUECTL_TEST_VAR", "from the worker")
    result = executor.run('pwd; echo "$QUEUECTL_TEST_VAR"; echo $0', cwd=str(tmp_path))
    assert result.output.splitlines() == [str(tmp_path), "from the worker", "/bin/sh"]


def test_a_spawn_environment_is_the_jobs_environment(tmp_path):
    env = spawn.Environment({"PATH": os.environ["PATH"], "ONLY": "this é"})
    result = executor.run("env | sort", cwd=str(tmp_path), env=env)
    assert [line for line in result.output.splitlines() if not line.startswith("PWD=")] == [
        "ONLY=this é", f"PATH={os.environ['PATH']}"
    ]


# The signal mask is read by the shell itself (a builtin, before it runs anything): dash blocks
# every signal for a moment each time it waits for a child, so a `grep` of its status can see that.
READ_MASK = (
    "while read -r key value; do case $key in SigBlk:|SigIgn:) echo $key $value;; esac; "
    "done < /proc/$$/status"
)
NO_SIGNALS = ["SigBlk: 0000000000000000", "SigIgn: 0000000000000000"]


def test_the_child_gets_stdio_a_session_and_default_signals_only(tmp_path):
    """Nothing of the worker leaks into a job: no descriptor besides 0-2 (not even one marked
    inheritable), stdin is /dev/null, its own session, no signal ignored or blocked (Python
    ignores SIGPIPE, which would make `yes | head` complain)."""
    leak = os.open(tmp_path / "leak", os.O_CREAT | os.O_WRONLY)
    os.set_inheritable(leak, True)
    try:
        result = executor.run(
            f"{READ_MASK}; ls /proc/$$/fd; readlink /proc/$$/fd/0; "
            "echo session $(cut -d' ' -f6 /proc/$$/stat) $$; yes | head -n 1",
            timeout=10,
        )
    finally:
        os.close(leak)
    lines = result.output.splitlines()
    assert lines[:2] == NO_SIGNALS, result.output
    assert lines[2:6] == ["0", "1", "2", "/dev/null"], result.output
    session, pid = lines[6].split()[1:]
    assert session == pid
    assert lines[7:] == ["y"] and result.ok


def test_a_signal_ignored_by_whatever_started_the_worker_stays_ignored():
    """`nohup queuectl worker start &`: exec keeps an ignored signal ignored, and so do the
    jobs, as `nohup make` hands SIGHUP's immunity on to what make runs. Only what Python itself
    ignores (SIGPIPE, SIGXFSZ) goes back to its default."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        result = executor.run(READ_MASK, timeout=10)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.output.splitlines() == [NO_SIGNALS[0], "SigIgn: 0000000000000001"]


def test_a_worker_with_signals_blocked_starts_jobs_with_none_blocked():
    """Whatever started the worker may have blocked signals (some supervisors and CI runners do):
    a job must not inherit that, or `kill -TERM` and a timeout would not stop it."""
    everything = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, everything)
    try:
        result = executor.run(f"{READ_MASK}; kill -TERM $$; echo survived", timeout=10)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) >= everything  # put back
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert result.output.splitlines() == NO_SIGNALS
    assert result.error == "killed by signal SIGTERM"


def test_a_nul_in_the_command_cannot_start():
    result = executor.run("echo a\0b")
    assert result.error == "cannot start: embedded null byte"


def test_stdin_is_empty():
    result = executor.run("cat; echo done", timeout=10)
    assert result.ok and result.output == "done\n"


def test_cannot_start_missing_cwd(tmp_path):
    result = executor.run("echo hi", cwd=str(tmp_path / "gone"))
    assert result.exit_code is None and not result.ok
    assert result.error.startswith("cannot start")
    assert "gone" in result.error


def test_killed_by_signal():
    result = executor.run("echo dying; kill -KILL $$")
    assert (result.exit_code, result.error) == (None, "killed by signal SIGKILL")
    assert result.output == "dying\n"
    result = executor.run("kill -TERM $$")
    assert result.error == "killed by signal SIGTERM"


def test_timeout_kills_the_whole_group(pgid_file):
    started = time.monotonic()
    result = executor.run(f"echo $$ > {pgid_file}; sleep 100 & sleep 100", timeout=1.5)
    elapsed = time.monotonic() - started
    assert (result.exit_code, result.ok) == (None, False)
    assert "timed out" in result.error and "1.5" in result.error
    assert 1.5 <= elapsed < 1.5 + executor.KILL_GRACE_S + 10
    pgid = read_pgid(pgid_file)
    wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_job_ignoring_sigterm_is_sigkilled_after_the_grace(pgid_file):
    started = time.monotonic()
    result = executor.run(
        f"trap '' TERM; echo $$ > {pgid_file}; echo started; sleep 100; echo survived",
        timeout=1,
    )
    elapsed = time.monotonic() - started
    assert "timed out" in result.error
    assert "survived" not in result.output and "started" in result.output
    assert 1 + executor.KILL_GRACE_S * 0.9 <= elapsed < 1 + executor.KILL_GRACE_S + 10
    pgid = read_pgid(pgid_file)
    wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_grandchild_ignoring_sigterm_and_holding_stdout_is_sigkilled(pgid_file):
    """The shell dies on SIGTERM, but a grandchild that ignores it keeps the pipe open."""
    started = time.monotonic()
    result = executor.run(
        f"echo $$ > {pgid_file}; (trap '' TERM; sleep 100) & sleep 100", timeout=1
    )
    elapsed = time.monotonic() - started
    assert "timed out" in result.error
    assert elapsed < 1 + executor.KILL_GRACE_S + 10
    pgid = read_pgid(pgid_file)
    wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_daemon_holding_stdout_does_not_hold_the_job(pgid_file):
    started = time.monotonic()
    result = executor.run(f"echo $$ > {pgid_file}; sleep 100 & echo started", timeout=60)
    elapsed = time.monotonic() - started
    assert result.ok and result.output == "started\n"
    assert elapsed < 20, f"took {elapsed:.2f}s"  # not the 60 s timeout


def test_a_daemon_printing_on_after_the_shell_exits_does_not_hold_the_job(pgid_file):
    """Its output never ends, so the shell's exit is seen by looking, not by the end of it."""
    started = time.monotonic()
    result = executor.run(
        f"echo $$ > {pgid_file}; (while :; do echo tick; sleep 0.005; done) & echo started",
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.ok and "started" in result.output.splitlines()
    assert elapsed < 20, f"took {elapsed:.2f}s"  # not the 60 s timeout


def test_output_after_exit_is_not_lost():
    """Plenty of output still in the pipe when the shell exits is read to the end."""
    result = executor.run("head -c 300000 /dev/zero | tr '\\0' a; echo END", output_limit=1 << 20)
    assert result.ok
    assert result.output == "a" * 300000 + "END\n"


def test_non_utf8_and_nul_bytes_are_kept_readable():
    result = executor.run(r"printf 'caf\303\251 \377\376 a\000b \342\202\254\n'")
    assert result.ok
    assert result.output == "café \\xff\\xfe a\\x00b €\n"
    assert "\x00" not in result.output
    result.output.encode("utf-8")  # storable as UTF-8 text


def test_output_is_capped_tail_kept_truncation_marked():
    result = executor.run("seq 1 200000", output_limit=1000)
    assert result.ok
    total = len("".join(f"{n}\n" for n in range(1, 200001)).encode())
    first, rest = result.output.split("\n", 1)
    assert first == f"[queuectl: output truncated, {total - 1000} earlier bytes dropped]"
    assert len(rest.encode()) == 1000
    assert rest.endswith("199999\n200000\n")


def stored_size(output: str) -> int:
    """Bytes of output as stored, not counting the truncation line."""
    if output.startswith(MARKER):
        output = output.split("\n", 1)[1]
    return len(output.encode("utf-8"))


@pytest.mark.parametrize(
    "command",
    [
        "head -c 50000 /dev/zero",  # NUL bytes, escaped as \x00
        "head -c 50000 /dev/zero | tr '\\0' '\\377'",  # bytes that are not UTF-8
        "head -c 50000 /dev/urandom",
    ],
)
def test_the_cap_holds_for_binary_output(command):
    limit = 4096
    result = executor.run(command, output_limit=limit)
    assert result.ok
    assert result.output.startswith(MARKER)
    # As much of the tail as fits (an escape or a character is at most 4 bytes), no more
    assert limit - 3 <= stored_size(result.output) <= limit


def test_a_cut_never_splits_a_character():
    result = executor.run("i=0; while [ $i -lt 2000 ]; do printf 'é€'; i=$((i+1)); done",
                          output_limit=1001)
    body = result.output.split("\n", 1)[1]
    assert "\\x" not in body, body[:40]
    assert body.endswith("é€")
    assert stored_size(result.output) <= 1001


def test_tail_buffer():
    buffer = TailBuffer(10)
    assert buffer.text() == ""
    buffer.write(b"0123456")
    assert buffer.text() == "0123456"
    for _ in range(100):
        buffer.write(b"abcdefg")
        assert buffer.held <= 10 + TailBuffer.SPARE + 2 * 10  # the limit, and a block or two
    assert buffer.total == 707
    assert buffer.text() == f"[queuectl: output truncated, 697 earlier bytes dropped]\n" + (
        "abcdefg" * 2
    )[-10:]


def test_kill_from_another_thread():
    execution = Execution("echo started; sleep 100", timeout=60)
    results = []
    thread = threading.Thread(target=lambda: results.append(execution.run()))
    thread.start()
    wait_until(lambda: execution.output.total > 0, 30, message="the job to start")
    execution.kill()
    thread.join(30)
    assert not thread.is_alive()
    assert execution.killed_by_stop
    assert results[0].error == "killed (hard stop)"
    assert results[0].output == "started\n"


def test_kill_before_run():
    execution = Execution("echo never")
    execution.kill()
    result = execution.run()
    assert result.error == "killed before it started" and result.output == ""


def rss_probe(command: str) -> dict:
    run = subprocess.run(
        [sys.executable, str(HERE / "rss_probe.py"), command, str(1 << 20)],
        capture_output=True, text=True, timeout=120, cwd=HERE,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.slow  # 2-5 s alone, over 10 s on a loaded 2-core machine
def test_one_gigabyte_of_output_in_flat_memory():
    baseline = rss_probe("echo tiny")
    big = rss_probe("head -c 1000000000 /dev/zero | tr '\\0' x")
    assert big["error"] is None
    assert big["head"].startswith(f"{MARKER}, {1_000_000_000 - (1 << 20)} earlier bytes dropped]")
    assert big["tail"] == "x" * 20
    grown_mib = (big["peak_kib"] - baseline["peak_kib"]) / 1024
    print(f"peak RSS: tiny {baseline['peak_kib']} KiB, 1 GB {big['peak_kib']} KiB "
          f"(+{grown_mib:.1f} MiB) in {big['seconds']:.1f}s")
    assert grown_mib < 20


def test_tail_buffer_cap_over_random_bytes():
    """Whatever the bytes and the chunking: at most ``limit`` bytes of text, which is exactly
    the readable form of the input's last bytes, and the count of dropped bytes is right."""
    import random

    rng = random.Random(1234)
    alphabet = [
        b"a", b"\n", b"\x00", b"\xff", "é".encode(), "€".encode(), "😀".encode(), b"\x80",
        b"\xe2\x82", b"\xbf",
    ]
    for _ in range(2000):
        limit = rng.randint(1, 64)
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        buffer = TailBuffer(limit)
        position = 0
        while position < len(data):
            step = rng.randint(1, 30)
            buffer.write(data[position : position + step])
            position += step
        text = buffer.text()
        if text.startswith(MARKER):
            header, body = text.split("\n", 1)
            dropped = int(header.split(", ")[1].split()[0])
        else:
            body, dropped = text, 0
        assert len(body.encode()) <= limit
        assert executor._readable(data[dropped:]) == body
        assert dropped == 0 or len(data) - dropped <= limit
        if dropped:  # the longest tail that fits: one more character or escape would not
            assert len(body.encode()) >= limit - 3
            kept_from = len(data) - buffer.held  # what the buffer still holds
            for back in range(1, 4):  # and no character that the buffer holds is cut in two
                for length in range(back + 1, 5):
                    begin, end = dropped - back, dropped - back + length
                    if begin < kept_from or end > len(data):
                        continue
                    try:
                        assert len(data[begin:end].decode()) != 1, (data, limit, dropped)
                    except UnicodeDecodeError:
                        pass


def test_a_job_that_closes_its_output_still_times_out(pgid_file):
    """`exec >log 2>&1` closes the pipe at once: end of output is not the end of the job."""
    started = time.monotonic()
    result = executor.run(f"echo $$ > {pgid_file}; exec >/dev/null 2>&1; sleep 100", timeout=1)
    assert "timed out" in result.error
    assert time.monotonic() - started < 1 + executor.KILL_GRACE_S + 10
    pgid = read_pgid(pgid_file)
    wait_until(lambda: not group_members(pgid), 30, message=f"group {pgid} to be gone")


def test_a_job_that_closes_its_output_is_waited_for():
    started = time.monotonic()
    result = executor.run("echo early; exec >&- 2>&-; sleep 0.3; exit 4", timeout=30)
    assert (result.exit_code, result.error, result.output) == (4, "exit code 4", "early\n")
    assert 0.3 <= time.monotonic() - started < 10  # not the 30 s timeout


def test_kill_a_job_that_closed_its_output():
    execution = Execution("echo started; exec >/dev/null 2>&1; sleep 100", timeout=60)
    results = []
    thread = threading.Thread(target=lambda: results.append(execution.run()))
    thread.start()
    wait_until(lambda: execution.output.total > 0, 30, message="the job to start")
    time.sleep(0.05)  # past the close of its output
    execution.kill()
    thread.join(30)
    assert not thread.is_alive()
    assert results[0].error == "killed (hard stop)"


def test_a_job_flooding_output_still_times_out():
    started = time.monotonic()
    result = executor.run("yes queuectl", timeout=1, output_limit=1000)
    assert "timed out" in result.error
    assert time.monotonic() - started < 1 + executor.KILL_GRACE_S + 10
    assert result.output.startswith(MARKER) and "queuectl\nqueuectl\n" in result.output


def test_kill_after_the_job_ended_leaves_its_result():
    """A hard stop that comes as a job ends (the pool still holds it) must not turn a finished
    run into a killed one: the pool would put the job back and run it again."""
    execution = Execution("echo done")
    result = execution.run()
    execution.kill()
    assert result.ok and not execution.killed_by_stop


class FakeLibc:
    """This process's C library with some functions missing (None) or replaced."""

    def __init__(self, library, **replaced) -> None:
        self._library = library
        self._replaced = replaced

    def __getattr__(self, name):
        if name not in self._replaced:
            return getattr(self._library, name)
        if self._replaced[name] is None:
            raise AttributeError(name)
        return self._replaced[name]


def with_libc(monkeypatch, **replaced) -> None:
    real = spawn._libraries
    monkeypatch.setattr(
        spawn, "_libraries", lambda: tuple(FakeLibc(library, **replaced) for library in real())
    )


class TestTheFastPathOnlyWhereConfirmed:
    """posix_spawn is used only where what it relies on is confirmed (see queuectl/spawn.py);
    anywhere else jobs start through Popen, and run the same."""

    @pytest.fixture
    def starter(self, monkeypatch):
        """Once each (not once per way of starting): spawn's checks run again with what the test
        changed, and once more, with nothing changed, after it. Gives a function that runs a job
        and says whether it started through Popen."""
        if not spawn.available():
            pytest.skip("posix_spawn with chdir needs glibc 2.34 or later")
        spawn._load.cache_clear()
        popen = subprocess.Popen
        started = []

        def counting_popen(*args, **kwargs):
            started.append(args)
            return popen(*args, **kwargs)

        def through_popen(tmp_path) -> bool:
            monkeypatch.setattr(subprocess, "Popen", counting_popen)
            result = executor.run("pwd", cwd=str(tmp_path), timeout=10)
            assert result.ok and result.output == f"{tmp_path}\n", result
            return bool(started)

        yield through_popen
        spawn._load.cache_clear()

    def test_taken_where_everything_is_confirmed(self, starter, tmp_path):
        assert spawn.available()
        assert not starter(tmp_path)

    @pytest.mark.parametrize("missing", [
        "posix_spawn_file_actions_addclosefrom_np", "posix_spawn_file_actions_addchdir_np",
        "posix_spawnattr_getsigdefault", "sigismember",
    ])
    def test_not_where_a_function_is_missing(self, starter, monkeypatch, tmp_path, missing):
        with_libc(monkeypatch, **{missing: None})
        assert not spawn.available()
        assert starter(tmp_path)

    @pytest.mark.parametrize("answer", ["glibc 2.33", "glibc 2", "musl 1.2.4", "", ValueError])
    def test_not_with_another_libc_or_an_older_glibc(self, starter, monkeypatch, tmp_path, answer):
        def confstr(name):
            if answer is ValueError:
                raise ValueError("unrecognized configuration name")
            return answer

        monkeypatch.setattr(os, "confstr", confstr)
        assert not spawn.available()
        assert starter(tmp_path)

    def test_not_where_a_signal_set_does_not_read_back(self, starter, monkeypatch, tmp_path):
        """The signals glibc keeps for itself are written in its layout: sigismember must agree."""
        real = spawn._libraries()[0].sigismember
        with_libc(monkeypatch, sigismember=lambda sigset, signum: 0 if signum >= 32 else real(
            sigset, signum))
        assert not spawn.available()
        assert starter(tmp_path)

    def test_not_where_a_struct_may_be_bigger_than_its_room(self, starter, monkeypatch,
                                                            tmp_path):
        """A struct measured at more than half the buffer it was measured in may not fit it."""

        def init(buffer):  # a struct bigger than half the room (within it: no overflow here)
            ctypes.memset(buffer, 0, spawn._MEASURE_ROOM // 2 + 8)
            return 0

        with_libc(monkeypatch, posix_spawnattr_init=init)
        assert not spawn.available()
        assert starter(tmp_path)

    def test_not_where_an_init_does_more_than_clear(self, starter, monkeypatch, tmp_path):
        """A struct is measured by what its init zeroes: an init that sets anything else can't
        be measured so."""
        real = spawn._libraries()[0].posix_spawn_file_actions_init

        def init(buffer):
            code = real(buffer)
            ctypes.memset(ctypes.addressof(buffer) + 8, 1, 1)
            return code

        with_libc(monkeypatch, posix_spawn_file_actions_init=init)
        assert not spawn.available()
        assert starter(tmp_path)


def test_a_run_whose_output_ends_just_before_its_exit_gets_its_exit_code():
    """The output's end is mostly the exit, but not quite: the exit status is waited for."""
    for _ in range(20):
        result = executor.run("exec >&- 2>&-; exit 3", timeout=30)
        assert (result.exit_code, result.error, result.output) == (3, "exit code 3", "")


def test_the_output_stored_while_a_job_runs_never_cuts_a_character(tmp_path, monkeypatch):
    """A character printed in two writes, a read between them: its first bytes were stored as
    escapes, then rewritten as the character, and `logs -f` (which can only add to what it
    printed) printed the escapes to a pipe, not the bytes. The unfinished character is now held
    back from the output stored while the job runs; what is stored only grows."""
    from queuectl import executor
    from queuectl.text import output_size

    monkeypatch.setattr(executor, "OUTPUT_EVERY_S", 0.05)
    gate = tmp_path / "gate"
    reads: list[tuple[str, int]] = []
    command = (f"printf 'p\\342\\202'; while [ ! -e {gate} ]; do sleep 0.01; done; "
               "printf '\\254 x\\n'")  # fmt: skip

    def stored(text: str, printed: int) -> None:
        reads.append((text, printed))
        gate.touch()  # the first read has seen the character's first bytes

    result = Execution(command, timeout=30, on_output=stored).run()
    assert result.ok and result.output == "p€ x\n"
    assert reads and reads[0] == ("p", 1)
    for text, printed in reads:
        assert "\\x" not in text and output_size(text) == printed
        assert ("p€ x\n").startswith(text)


def test_output_is_handed_on_when_due_not_at_the_next_look(tmp_path, monkeypatch):
    """A line printed just after the output was handed on waited for the due time, then for
    the run's next look at the clock (up to POLL_S later): past SPEC 6's 1 s. With a long
    POLL_S, the line is still handed on at its due time."""
    from queuectl import executor

    monkeypatch.setattr(executor, "OUTPUT_EVERY_S", 0.3)
    monkeypatch.setattr(executor, "POLL_S", 30.0)
    gate = tmp_path / "gate"
    command = f"echo one; while [ ! -e {gate} ]; do sleep 0.01; done"
    handed_on: list[float] = []

    def stored(text: str, printed: int) -> None:
        handed_on.append(time.monotonic())
        gate.touch()

    started = time.monotonic()
    result = Execution(command, timeout=60, on_output=stored).run()
    assert result.ok and result.output == "one\n"
    assert handed_on and handed_on[0] - started < 10, "handed on at the next look, not when due"


@pytest.mark.parametrize("limit", [1, 7, 1000, 1 << 20])
def test_the_tail_kept_is_the_whole_limit_however_the_output_comes(limit):
    """A job's output comes in reads of any size (a pipe gives whatever was written, up to
    64 KiB): the tail kept is the limit's worth, never less, and the buffer holds about that."""
    import random

    rng = random.Random(limit)
    buffer = TailBuffer(limit)
    for _ in range(400):
        buffer.write(b"x" * rng.choice([1, 100, 1664, 4096, 30_000, 65_536, 81_920]))
        text = buffer.text()
        if buffer.total <= limit:
            assert text == "x" * buffer.total
            continue
        header, body = text.split("\n", 1)
        assert header.startswith(MARKER) and len(body) == limit, (len(body), buffer.held)
        assert buffer.held <= limit + TailBuffer.SPARE + 2 * max(TailBuffer.BLOCK, 81_920)


def test_a_timeout_is_named_as_given():
    """QA: `--timeout 1.23456789` read "timed out after 1.23457s" (and 1234567 would have read
    1.23457e+06s)."""
    result = Execution("sleep 10", timeout=0.123456789).run()
    assert result.error == "timed out after 0.123456789s"
