"""Run one shell command: its own process group, a timeout, output captured in bounded memory."""

from __future__ import annotations

import codecs
import collections
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

from . import direct
from .procs import group_alive, signal_group

OUTPUT_LIMIT = 1024 * 1024  # bytes of output stored per run; the tail is kept
KILL_GRACE_S = 1.0  # between SIGTERM and SIGKILL on a timeout
READ_CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_S = 0.2  # how long to keep reading after the shell exits (daemons keep pipes open)
POLL_S = 0.1  # the longest wait between looks at the clock (timeouts, the drain)
NO_PIDFD_POLL_S = 0.001  # without a pidfd, how often an exit is looked for once output ended
# A run's first round waits on its output alone at most this long: past it, its exit is watched
# through a pidfd too (a shell that exits leaving a background process on its pipe is seen then).
FIRST_ROUND_S = 0.01
# While a job runs, its output so far (the capped tail, as the run's result stores it: SPEC 6)
# is handed on at most this often. A tail of 64 KiB instead (as once) showed a running job's
# output cut where the finished job's was not, and made `logs -f` skip what a job printed past
# 64 KiB a second; the whole tail costs a worker ~3.5 MiB more RSS under a job printing 1 GB.
# Under a second, with room for the store and for the reader's wake-up: SPEC 6 gives a line
# printed 1 s to be seen by every process (at 1.0 s, QA saw 1.04-1.06 s).
OUTPUT_EVERY_S = 0.75
CANCELLED = "cancelled"  # the error of a run a user cancelled (SPEC 6)

# Called with the run's output so far (the capped tail, as stored) and how many bytes it printed.
OutputCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None
    error: str | None  # None when the run succeeded
    output: str
    output_bytes: int = 0  # bytes printed in all (``output`` is their capped tail)

    @property
    def ok(self) -> bool:
        return self.error is None


class TailBuffer:
    """The last ``limit`` bytes written to it, and how many came before them.

    The bytes are kept as the blocks they were written in (small writes gathered into blocks of
    up to BLOCK bytes), and a block is let go once the newer ones hold the limit: a job printing
    gigabytes costs a write no copy (a pipe's reads are whole blocks), and the buffer holds the
    limit and a block. A bytearray trimmed once it had doubled held twice the limit, and was
    copied into a new one as it grew past its room again: three times the limit at once."""

    BLOCK = 64 * 1024
    SPARE = 8  # bytes kept before the tail: the start of a character cut there (see text)

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._blocks: collections.deque[bytes] = collections.deque()  # oldest first
        self._in_blocks = 0  # their bytes
        self._last = bytearray()  # the newest bytes, gathered until they make a block
        self._block = max(1, min(self.BLOCK, limit))

    @property
    def held(self) -> int:
        """How many of the last bytes written it holds (at least the limit's worth, if written)."""
        return self._in_blocks + len(self._last)

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if not self._last and len(chunk) >= self._block:
            self._keep(bytes(chunk))
            return
        self._last += chunk
        if len(self._last) >= self._block:
            block, self._last = bytes(self._last), bytearray()
            self._keep(block)

    def _keep(self, block: bytes) -> None:
        self._blocks.append(block)
        self._in_blocks += len(block)
        blocks, enough = self._blocks, self.limit + self.SPARE
        while len(blocks) > 1 and self.held - len(blocks[0]) >= enough:
            self._in_blocks -= len(blocks.popleft())

    def _tail(self, size: int, hold: int = 0) -> bytes:
        """The ``size`` bytes held before the last ``hold`` (fewer if it holds fewer), in one
        copy."""
        pieces: list[bytes | bytearray | memoryview] = []  # newest first
        have = 0
        for piece in (self._last, *reversed(self._blocks)):
            if have >= size + hold:
                break
            if piece:
                pieces.append(piece)
                have += len(piece)
        while hold and pieces:  # the last ``hold`` bytes are left out
            newest = pieces[0]
            cut = min(hold, len(newest))
            pieces[0] = memoryview(newest)[: len(newest) - cut]
            hold -= cut
            have -= cut
            if not pieces[0]:
                del pieces[0]
        if have > size:  # the oldest piece is cut
            pieces[-1] = memoryview(pieces[-1])[have - size :]
        pieces.reverse()
        return b"".join(pieces)

    def drop(self) -> None:
        """Let go of the bytes held (``total`` stays): the run's result has its text."""
        self._blocks.clear()
        self._in_blocks = 0
        self._last = bytearray()

    def text(self, limit: int | None = None, hold: int = 0) -> str:
        """The longest tail that is at most ``limit`` (default and most: the buffer's) UTF-8
        bytes as text (escapes included), starting at a character, after a line saying how many
        bytes were dropped before it; without the last ``hold`` bytes written."""
        if self.total <= hold:
            return ""  # most jobs print nothing
        limit = self.limit if limit is None else min(limit, self.limit)
        # Only the tail that can be kept is copied, with the few bytes before it that tell
        # whether a character was cut there.
        data = self._tail(limit + 4, hold)
        lost = self.total - hold - len(data)  # bytes let go of before ``data``

        def start(at: int) -> int:
            """``at``, or past the rest of a character cut there."""
            if at == 0 and not lost:
                return 0
            return at + _cut_character(data, at, known_before=at > 0)

        first = start(max(len(data) - limit, 0)) if limit else len(data)
        # Called once a second while a job prints (its live output): no copy more than needed.
        if not (data.isascii() and b"\x00" not in data) and _text_size(data[first:]) > limit:
            # Escapes (\xNN for one byte) made it longer: find the earliest start that fits.
            low, high = first, len(data)
            while low < high:
                middle = (low + high) // 2
                if _text_size(data[start(middle) :]) <= limit:
                    high = middle
                else:
                    low = middle + 1
            first = start(low)
        with memoryview(data) as view:
            text = _readable(view[first:])
        data = b""  # let go of before the line goes in front: the tail is held twice, not thrice
        dropped = lost + first
        if dropped:
            text = f"[queuectl: output truncated, {dropped} earlier bytes dropped]\n" + text
        return text

    def unfinished(self) -> int:
        """How many of the last bytes written begin a UTF-8 character that the next ones may
        finish (0 to 3): held back from the output stored while a job runs, so that its text
        only grows (shown as escapes, then rewritten as the character, they reached `logs -f`
        as escapes, its reader's place lost). The codec's own incremental decoder keeps them."""
        decoder = codecs.getincrementaldecoder("utf-8")("ignore")
        decoder.decode(self._tail(3), False)
        return len(decoder.getstate()[0])


def _readable(data: bytes | memoryview) -> str:
    # Bytes that are not UTF-8 are kept readable as \xNN escapes; NUL too (PostgreSQL text
    # cannot hold it).
    return str(data, "utf-8", "backslashreplace").replace("\x00", "\\x00")


def _text_size(data: bytes) -> int:
    """``len(_readable(data).encode())``, fast: 'ignore' drops exactly the bytes that
    'backslashreplace' escapes (4 bytes each), and each NUL becomes 4 bytes too."""
    valid = len(data.decode("utf-8", "ignore").encode("utf-8"))
    return valid + 4 * (len(data) - valid) + 3 * data.count(b"\x00")


def _valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _cut_character(data: bytes, at: int, known_before: bool) -> int:
    """How many bytes from ``at`` on finish a UTF-8 character that starts before ``at`` (0 if
    none does). Unless the bytes before are ``known_before``, continuation bytes are taken to
    be such a rest (up to 3)."""
    count = 0
    while count < 3 and at + count < len(data) and 0x80 <= data[at + count] <= 0xBF:
        count += 1
    if not count or not known_before:
        return count
    for lead in range(at - 1, max(at - 4, -1), -1):  # the nearest byte that is not continuation
        byte = data[lead]
        if 0x80 <= byte <= 0xBF:
            continue
        length = (
            2 if 0xC2 <= byte <= 0xDF else 3 if 0xE0 <= byte <= 0xEF else 4 if byte >= 0xF0 else 0
        )
        if length and lead + length > at and _valid(data[lead : lead + length]):
            return lead + length - at
        return 0
    return 0


class Execution:
    """One run of one command. :meth:`run` blocks; :meth:`kill` may be called from any thread."""

    def __init__(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        output_limit: int = OUTPUT_LIMIT,
        env: Mapping[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> None:
        """``on_output``: called from :meth:`run`'s thread while the command runs, at most once
        every OUTPUT_EVERY_S and only when it printed something new (never for a run that
        ends within the first OUTPUT_EVERY_S)."""
        # None: this process's environment. A spawn.Environment is encoded once for all its jobs.
        self.env = env
        self.command = command
        self.cwd = cwd
        self.timeout = timeout
        self.output = TailBuffer(output_limit)
        self._process: _Process | None = None
        self._killed = False  # set under _lock
        self._cancelled = False  # set by cancel(); _pump then stops the group as on a timeout
        self._lock = threading.Lock()
        self.on_output = on_output

    def run(self) -> RunResult:
        try:
            with self._lock:
                if self._killed:
                    return RunResult(None, "killed before it started", "")
                self._process = _start_job(self.command, self.cwd, self.env)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return RunResult(None, f"cannot start: {exc}", "")
        timed_out = self._pump(self._process)
        returncode = self._process.wait()
        if timed_out:
            self._finish_off(self._process.pid)
        return self._result(returncode, timed_out)

    def _finish_off(self, pgid: int) -> None:
        """After a timeout, whatever is left of the group gets the grace, then SIGKILL."""
        deadline = time.monotonic() + KILL_GRACE_S
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        signal_group(pgid, signal.SIGKILL)

    @property
    def killed_by_stop(self) -> bool:
        """Whether :meth:`kill` ended (or prevented) this run."""
        return self._killed

    def kill(self) -> None:
        """Kill the whole process group now (a hard stop)."""
        with self._lock:
            if self._process is not None and self._process.returncode is not None:
                return  # it has exited already: its result stands (a hard stop must not rerun it)
            self._killed = True
            if self._process is not None:
                signal_group(self._process.pid, signal.SIGKILL)

    def cancel(self) -> None:
        """A user cancelled the job (any thread): its process group gets SIGTERM, then SIGKILL
        after the grace, as on a timeout; the run's exit code and output are kept. No effect
        once the command has exited."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _pump(self, process: _Process) -> bool:
        """Read output until the shell has exited; enforce the timeout. True if it timed out.

        One ``poll`` waits on both the output pipe and the shell's exit (a pidfd): a job like
        `true` costs two wake-ups, where polling the exit cost a sleep longer than the job.
        The pipe stays blocking: it is read once each time ``poll`` finds it ready.

        The first round waits on the pipe alone: most jobs end their output by exiting, and
        one ``waitpid`` then finds the exit, without a pidfd opened, polled and closed. A run
        that goes on to a second round (it printed, its output is still open after
        FIRST_ROUND_S, or it had not quite exited) watches its exit through a pidfd from then
        on."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        monotonic = time.monotonic
        started = monotonic()
        deadline = started + self.timeout if self.timeout else None
        term_sent_at: float | None = None
        exited_at: float | None = None
        eof = False
        output = self.output
        on_output = self.on_output
        handed_on = 0  # output.total when on_output was last called
        next_output = started + OUTPUT_EVERY_S
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        pidfd: int | None = None
        first = True  # the first round: the exit is looked for once the output ends
        poll = poller.poll
        # With a pidfd, the exit is looked for once it says so; without, at every round.
        exit_due = False
        try:
            while True:
                if not first and pidfd is None and not exit_due:
                    pidfd = _pidfd(process.pid)
                    if pidfd is None:
                        exit_due = True
                    else:
                        poller.register(pidfd, select.POLLIN)
                now = monotonic()
                if exit_due and exited_at is None and process.poll() is not None:
                    exited_at = now
                    if pidfd is not None:
                        poller.unregister(pidfd)
                if exited_at is not None and (eof or now - exited_at >= DRAIN_AFTER_EXIT_S):
                    break  # all read, or a daemon it left behind still holds the pipe
                if self._cancelled and (deadline is None or deadline > now):
                    deadline = now  # stopped as a timeout is, from here on
                if on_output is not None and now >= next_output:
                    next_output = now + OUTPUT_EVERY_S
                    if output.total != handed_on and exited_at is None:
                        handed_on = output.total
                        unfinished = output.unfinished()
                        on_output(output.text(hold=unfinished), handed_on - unfinished)
                if deadline is not None and now >= deadline and exited_at is None:
                    if term_sent_at is None:
                        term_sent_at = now
                        signal_group(process.pid, signal.SIGTERM)
                    elif now - term_sent_at >= KILL_GRACE_S:
                        signal_group(process.pid, signal.SIGKILL)
                wait = POLL_S
                if pidfd is None and eof and exited_at is None:
                    wait = NO_PIDFD_POLL_S  # its output ended; nothing will wake us at the exit
                if first:
                    wait = min(wait, FIRST_ROUND_S)
                if deadline is not None and term_sent_at is None:
                    wait = min(wait, max(deadline - now, 0))
                if on_output is not None and output.total != handed_on:
                    wait = min(wait, max(next_output - now, 0))  # handed on when due, not later
                for ready, _ in poll(wait * 1000):
                    if ready != fd:
                        exit_due = True
                        continue
                    chunk = os.read(fd, READ_CHUNK)  # one read: poll found it ready
                    if chunk:
                        output.write(chunk)
                    else:
                        # It closed its output (`exec >log`) but may run on: the timeout
                        # still counts.
                        eof = True
                        poller.unregister(fd)
                if eof and (exit_due or first) and process.poll() is not None:
                    break  # all read, and it has exited: what the next round would find first
                first = False
        finally:
            if pidfd is not None:
                os.close(pidfd)
        process.stdout.close()
        return term_sent_at is not None

    def _result(self, returncode: int, timed_out: bool) -> RunResult:
        if getattr(self._process, "direct", False):
            returncode = _as_the_shell_saw_it(
                self._process, returncode, timed_out, self._killed, self.output
            )
        text = self.output.text()
        self.output.drop()  # not held while the result is stored: that can wait out an outage
        return self._outcome(returncode, timed_out, text, self.output.total)

    def _outcome(self, returncode: int, timed_out: bool, output: str, size: int) -> RunResult:
        if self._cancelled and (timed_out or returncode < 0):
            code = None if returncode < 0 else returncode
            how = f" (killed by signal {_signal_name(-returncode)})" if returncode < 0 else ""
            return RunResult(code, CANCELLED + how, output, size)
        if timed_out:
            from .text import shown_number  # (1.23456789 s, not %g's 1.23457)

            return RunResult(None, f"timed out after {shown_number(self.timeout)}s", output,
                             size)  # fmt: skip
        if self._killed:
            return RunResult(None, "killed (hard stop)", output, size)
        if returncode < 0:
            return RunResult(None, f"killed by signal {_signal_name(-returncode)}", output, size)
        if returncode != 0:
            return RunResult(returncode, f"exit code {returncode}", output, size)
        return RunResult(0, None, output, size)


class _Pipe:
    """The read end of a job's output pipe: what Execution uses of Popen's ``stdout`` (a
    FileIO would cost an fstat a job)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _Spawned:
    """A child started by :func:`queuectl.spawn.spawn`: what Execution uses of a Popen."""

    def __init__(self, pid: int, stdout: _Pipe) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen does
                self.returncode = 0
            else:
                if pid:
                    self.status = status
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            pidfd = _pidfd(self.pid)
            if pidfd is None:
                time.sleep(NO_PIDFD_POLL_S)
                continue
            try:
                select.select([pidfd], [], [])
            finally:
                os.close(pidfd)
        return self.returncode  # type: ignore[return-value]


_Process = Union[subprocess.Popen[bytes], _Spawned]


def _start(
    argv: list[str], cwd: str | None, env: Mapping[str, str] | None, path: str | None = None
) -> _Process:
    """Start ``argv`` with stdin from /dev/null and stdout and stderr into one pipe, in a
    session of its own (a timeout kills its group), with no other descriptor of ours."""
    spawn = direct.spawn_module()
    if spawn.available():
        read, write = os.pipe()
        if read >= 3 and write >= 3:  # else stdio is closed here: Popen handles that case
            try:
                environment = env if isinstance(env, spawn.Environment) else spawn.Environment(
                    os.environ if env is None else env
                )
                pid = spawn.spawn(argv, cwd, environment, write, path)
            except BaseException:
                os.close(read)
                raise
            finally:
                os.close(write)
            return _Spawned(pid, _Pipe(read))
        os.close(read)
        os.close(write)
    # Popen gives the child this thread's signal mask (posix_spawn above gives it none). A worker
    # started with signals blocked must not hand that on: a job blocking SIGTERM outlives its
    # timeout. So the mask is emptied for the start and put back after.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    if blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        return subprocess.Popen(
            argv,
            executable=path,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _start_job(command: str, cwd: str | None, env: Mapping[str, str] | None) -> _Process:
    """``/bin/sh -c command``, or the program itself where that is all the shell would have
    run (queuectl/direct.py). What stops the program starting, the shell meets too and reports
    in its own words, as before."""
    program = direct.program_for(command, cwd, env)
    if program is not None:
        try:
            process = _start(program.argv, cwd, program.env, program.path)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        else:
            process.direct = True  # type: ignore[union-attr]
            return process
    return _start(["/bin/sh", "-c", command], cwd, env)


def _as_the_shell_saw_it(
    process: _Process, returncode: int, stopped: bool, killed: bool, out: TailBuffer
) -> int:
    """The status sh gave where the program ran without it (queuectl/direct.py): sh died of the
    SIGTERM a timeout or a cancel sends the group (``stopped``), whatever the program did with
    it; when the program alone died of a signal, sh exited with 128+n and said which
    (`Segmentation fault`)."""
    if killed:
        return returncode  # SIGKILL: sh died of it too
    if stopped:
        return -signal.SIGTERM
    if returncode >= 0:
        return returncode
    status = getattr(process, "status", None)  # Popen keeps no core-dump flag: none assumed
    core = status is not None and os.WIFSIGNALED(status) and os.WCOREDUMP(status)
    returncode, said = direct.shell_report(-returncode, core)
    if said:
        out.write(said)
    return returncode


def _pidfd(pid: int) -> int | None:
    """A descriptor that polls readable once ``pid`` exits (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already reaped
        return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def run(command: str, **kwargs: object) -> RunResult:
    """Run ``command`` to the end (see :class:`Execution` for the keyword arguments)."""
    return Execution(command, **kwargs).run()  # type: ignore[arg-type]
