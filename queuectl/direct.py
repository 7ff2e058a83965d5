"""Simple commands without the shell: `touch out/x` is started as the program the shell would
find on PATH, not as `/bin/sh -c 'touch out/x'` (one exec and one fork fewer a job), the way
GNU make runs recipe lines that hold no shell syntax.

A command goes direct only where the shell could do nothing but look its first word up on
PATH and run it with the words as they are. Everything else goes through ``/bin/sh -c`` as
before; when in doubt, the shell. A command is simple when:

- it is plain words separated by spaces, made only of ASCII letters, digits and ``-_./,:+%@=``
  (so no quoting, ``$``, backquotes, ``; & | < >``, globbing ``* ? [``, ``~``, ``#``, braces,
  backslashes, ``! ( ) ^``, tabs or newlines), with no ``=`` in the first word (an assignment);
- its first word is no shell builtin, reserved word, or command whose external version may
  differ from the builtin (``echo``, ``printf``, ``test``, ``[``, ``pwd``, ``kill``...;
  ``true`` and ``false`` go direct without arguments only: ``/bin/true --help`` prints), nor
  `setsid`, which behaves differently as a process-group leader (see below);
- the first word is an absolute path, or has no ``/`` and is found on the job's ``PATH`` (all
  absolute directories up to the match, no ``%`` in them) as the first regular file of that
  name, as dash finds it; that file is executable and starts with ``\\x7fELF`` or ``#!`` (a
  script without ``#!`` is run by sh as a shell script: execve would refuse it). Relative
  paths with a ``/`` stay on the shell.
- the job's environment has ``PATH``, only names the shell keeps (``A-B=1`` is dropped by
  dash), and none of the variables dash resets (``IFS``, ``OPTIND``, ``PPID``).

What the program gets is what it got from the shell: the same argv (``argv[0]`` as typed, the
path dash built as the file executed), directory, stdin, output pipe, signals and session, and
the environment dash passes on: the job's, with ``PWD`` set as dash sets it (the inherited one
when it names the job's directory, else the physical path). If the program cannot be started
after all (a ``#!`` interpreter missing, a file changed since), the executor starts the shell
instead, which reports it in its own words.

The run is reported as the shell's was (the executor sees to it): dash 0.5.12 forks for the
command rather than exec'ing it, so a program killed by a signal made sh exit with 128+n and,
for signals other than SIGINT and SIGPIPE, print the signal's name (`Segmentation fault`); and
the SIGTERM that a timeout or a cancel sends the group killed sh, whatever the program did with
it. Measured differences that remain: the program is the leader of the job's process group and
session, where sh was, and its parent is the worker, not sh; a signal sent to the whole group by
something other than queuectl (which killed sh too) is reported as one the program alone got;
the environment's entries come in the job's order, not dash's. Only dash as ``/bin/sh`` was
measured: with another shell, every command goes through it as before.

Set ``QUEUECTL_DIRECT=0`` in a worker's environment to send every command through the shell.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any, NamedTuple

ENABLED = os.environ.get("QUEUECTL_DIRECT", "1") != "0"

_WORD_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./,:+%@="
)
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_REST = _NAME_START | frozenset("0123456789")

# dash's builtins (its builtins.def: found before PATH, and their externals may differ), reserved
# words, and the rest of GNU make's list of words only a shell runs (sh_cmds in its job.c).
SHELL_ONLY = frozenset({
    ".", ":", "[", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo", "eval",
    "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local",
    "printf", "pwd", "read", "readonly", "return", "set", "shift", "test", "times", "trap",
    "true", "type", "ulimit", "umask", "unalias", "unset", "wait",
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "function", "select", "login", "logout", "newgrp", "source", "switch",
    # A process-group leader's `setsid` forks and returns at once; under sh it did not.
    "setsid",
})
# Builtins whose external versions behave the same (no output, the same exit code) when given no
# argument: `/bin/true --help` prints its help where the builtin prints nothing.
SAME_WITHOUT_ARGUMENTS = frozenset({"true", "false"})
SHELL_RESETS = ("IFS", "OPTIND", "PPID")  # dash sets these to its own values when exported
SHELL = "/bin/sh"
_CACHE_SIZE = 64


_spawn: ModuleType | None = None


def spawn_module() -> ModuleType:
    """:mod:`queuectl.spawn`, imported at its first use, not with this module: it loads ctypes,
    which scripted commands must not pay for. The executor and this module take it from here,
    once a job (an import statement a job cost more than the work it served)."""
    global _spawn
    if _spawn is None:
        from . import spawn  # noqa: PLC0415

        _spawn = spawn
    return _spawn


class Program(NamedTuple):
    path: str  # the file to execute, as dash builds it
    argv: list[str]  # the words; argv[0] as typed
    env: Mapping[str, str]  # the job's environment as dash passes it on


def argv_for(command: str, env: Mapping[str, str] | None) -> list[str] | None:
    """The words of ``command`` if it can start without the shell (see the module's docstring)
    with ``env`` (None: this process's environment), else None."""
    found = _resolve(command, os.environ if env is None else env)
    return None if found is None else found[1]


def program_for(command: str, cwd: str | None, env: Mapping[str, str] | None) -> Program | None:
    """What to start in place of ``/bin/sh -c command`` in ``cwd``, or None for the shell."""
    if not ENABLED or not _shell_is_dash():
        return None
    variables = os.environ if env is None else env
    found = _resolve(command, variables)
    if found is None:
        return None
    pwd = _pwd(variables.get("PWD"), cwd)
    if pwd is None:
        return None
    return Program(found[0], found[1], _with_pwd(variables, pwd))


def shell_report(signum: int, core_dumped: bool) -> tuple[int, bytes]:
    """How sh reported a command that a signal killed: its exit status and what it printed."""
    if signum in (signal.SIGINT, signal.SIGPIPE):  # quietly
        return 128 + signum, b""
    try:
        name = signal.strsignal(signum) or f"Unknown signal {signum}"
    except ValueError:
        name = f"Unknown signal {signum}"
    return 128 + signum, (name + (" (core dumped)" if core_dumped else "") + "\n").encode()


# -- the decision --------------------------------------------------------------------------------


def _resolve(command: str, env: Mapping[str, str]) -> tuple[str, list[str]] | None:
    words = direct_words(command)
    if words is None or not _environment_kept(env):
        return None
    name = words[0]
    if name.startswith("/"):
        path: str | None = name if _runnable(name, _stat(name)) else None
    else:
        path = _on_path(name, env["PATH"])
    return None if path is None else (path, words)


def direct_words(command: str) -> list[str] | None:
    """The words of a command that starts directly if its program is found (on PATH, or an
    absolute path) and the environment allows (see :func:`_resolve`); None for one that only
    `/bin/sh` runs."""
    words = _words(command)
    if words is None:
        return None
    name = words[0]
    if name in SHELL_ONLY and not (name in SAME_WITHOUT_ARGUMENTS and len(words) == 1):
        return None
    if "/" in name and not name.startswith("/"):
        return None  # relative to the job's directory: left to the shell
    return words


def _words(command: str) -> list[str] | None:
    words = [word for word in command.split(" ") if word]
    if not words or "=" in words[0] or not _WORD_CHARACTERS.issuperset(command.replace(" ", "")):
        return None
    return words


def _on_path(name: str, path_variable: str) -> str | None:
    """The file dash would run for ``name`` (see :func:`_search`), if it runs as it is."""
    key = (path_variable, name)
    with _path_lock:
        changes = _path_changes()
        if changes is not None and changes.seen():
            _path_cache.clear()
        known = _path_cache.get(key)
        if known is None or (known[1] is not _NOTIFIED and not _unchanged(known[1])):
            known = _search(name, path_variable, changes)
            if known[1] is not None:  # else it may change unseen: looked up again next time
                if len(_path_cache) >= _CACHE_SIZE:
                    _path_cache.clear()
                _path_cache[key] = known
    return known[0]


# (PATH, name) -> (the file dash runs, if it runs as it is; what to look at to know that dash
# would find it again, or _NOTIFIED: the kernel tells of any change, see _PathChanges)
_path_cache: dict[tuple[str, str], tuple[str | None, tuple | None]] = {}
_path_lock = threading.Lock()  # the worker's threads share the cache and the watch
_SETTLED_NS = 2_000_000_000  # a directory changed this recently may change again in the same tick
_NOTIFIED: tuple = ()


class _PathChanges:
    """Linux: inotify watches on the directories PATH lookups looked at, so that a job's lookup
    costs one ``poll`` instead of a ``stat`` per directory. Any event there (a file created,
    removed, renamed or chmod-ed, the directory itself replaced, the queue overflowing) drops
    every remembered lookup. A watch is added before the directory is searched: a change after
    it is always seen. Watching follows symlinks, so the directories that hold a symlink on the
    way are watched too (a symlink pointed elsewhere)."""

    _MASK = 0

    def __init__(self, events: Any) -> None:
        self.events = events
        self.poller = select.poll()
        self.poller.register(events.fileno(), select.POLLIN)
        self.watched: set[str] = set()

    @classmethod
    def open(cls) -> _PathChanges | None:
        try:
            from inotify_simple import INotify, flags
        except (ImportError, OSError):  # not Linux
            return None
        cls._MASK = (
            flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO | flags.ATTRIB
            | flags.DELETE_SELF | flags.MOVE_SELF
        )
        try:
            return cls(INotify(nonblocking=True))
        except OSError:  # the limit of inotify instances reached
            return None

    def seen(self) -> bool:
        """Whether anything changed since the last call (the events are read)."""
        if not self.poller.poll(0):
            return False
        try:
            self.events.read(timeout=0)
        except OSError:
            pass
        self.watched.clear()  # a watch may be gone with its directory: added again as needed
        return True

    def watch(self, directory: str) -> bool:
        """Watch ``directory`` (its nearest existing parent if it is missing) and the directories
        holding a symlink on the way to it; False where that can't be done (a watch limit)."""
        holders = _symlink_holders(directory)
        if holders is None:
            return False
        path = directory
        while not self._add(path):
            if path == "/" or os.path.lexists(path):
                return False  # there, but not watchable (no permission, the watch limit)
            path = os.path.dirname(path.rstrip("/")) or "/"
        return all(self._add(holder) for holder in holders)

    def _add(self, path: str) -> bool:
        if path in self.watched:
            return True
        try:
            self.events.add_watch(path, self._MASK)
        except OSError:
            return False
        self.watched.add(path)
        return True


def _symlink_holders(path: str) -> set[str] | None:
    """The directories holding the symlinks that resolving ``path`` goes through (None after
    too many: a loop)."""
    holders: set[str] = set()
    pending = [part for part in path.split("/") if part]
    current = "/"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            target = os.readlink(candidate)
        except (OSError, ValueError):  # not a symlink, or missing
            current = candidate
            continue
        hops += 1
        if hops > 40:
            return None
        holders.add(current)
        if target.startswith("/"):
            current = "/"
        pending[:0] = [part for part in target.split("/") if part]
    return holders


_changes: _PathChanges | None = None
_changes_opened = False


def _path_changes() -> _PathChanges | None:
    """This process's watch (opened at the first lookup), or None: ``stat`` each time."""
    global _changes, _changes_opened
    if not _changes_opened:
        _changes_opened = True
        _changes = _PathChanges.open()
    return _changes


def _search(
    name: str, path_variable: str, changes: _PathChanges | None = None
) -> tuple[str | None, tuple | None]:
    """dash's search: the first regular file ``directory/name`` along PATH (missing or unreadable
    entries skipped), if execve runs it as it is (else None: the shell). None too where a
    directory before it is relative (the job's directory decides) or holds dash's ``%`` options.

    With it, what tells that dash would find the same file: _NOTIFIED where ``changes`` watches
    every directory searched, else the identity and times of every directory searched (or of its
    nearest existing parent, for one that is missing): as long as none of them changes, dash
    finds the same file. The file itself may change in place: if it can no longer be run as it
    is, its start fails, and the executor gives the command to the shell. None instead when
    the answer could change unseen: something not a regular file by the name (a symlink's target
    may change), a directory changed just now (and not watched)."""
    watched: dict[str, tuple[int, int, int] | None] = {}
    settled = recent = True  # recent: False once a directory changed too recently to rely on
    notified = changes is not None
    for directory in path_variable.split(":"):
        if not directory.startswith("/") or "%" in directory:
            return None, None
        if directory not in watched:
            watched[directory] = None
            notified = notified and changes.watch(directory)  # type: ignore[union-attr]
            recent = _watch(directory, watched) and recent
        candidate = directory + "/" + name  # as dash builds it (a trailing / stays doubled)
        info = _stat(candidate)
        if info is not None and stat.S_ISREG(info.st_mode):
            found = candidate if _runnable(candidate, info) else None
            break
        if info is not None or os.path.lexists(candidate):
            settled = False
    else:
        found = None
    if not settled:
        return found, None
    if notified:
        return found, _NOTIFIED
    watched = {path: times for path, times in watched.items() if times is not None}
    return found, (tuple(watched.items()) if recent else None)


def _watch(directory: str, watched: dict) -> bool:
    """Adds what tells a change in ``directory`` (or its nearest existing parent) to ``watched``;
    False if it changed too recently to rely on."""
    import time

    path = directory
    while True:
        info = _stat(path)
        if info is not None or path == "/":
            break
        path = os.path.dirname(path.rstrip("/")) or "/"
    if info is None:
        return False
    watched[path] = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
    return max(info.st_mtime_ns, info.st_ctime_ns) < time.time_ns() - _SETTLED_NS


def _unchanged(watched: tuple) -> bool:
    for path, times in watched:
        info = _stat(path)
        if info is None or (info.st_ino, info.st_mtime_ns, info.st_ctime_ns) != times:
            return False
    return True


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


_runnable_cache: dict[tuple, bool] = {}


def _runnable(path: str, info: os.stat_result | None) -> bool:
    """Whether ``path`` is an executable regular file that execve runs as it is (an ELF binary or
    a ``#!`` script), cached for as long as the file is unchanged (a write, chmod or chown
    moves its ctime)."""
    if info is None or not stat.S_ISREG(info.st_mode):
        return False
    key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    known = _runnable_cache.get(key)
    if known is None:
        known = os.access(path, os.X_OK) and _starts_runnable(path)
        if len(_runnable_cache) >= _CACHE_SIZE:
            _runnable_cache.clear()
        _runnable_cache[key] = known
    return known


def _starts_runnable(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head.startswith(b"#!")


_kept_cache: dict[int, tuple[Mapping[str, str], bool]] = {}


def _environment_kept(env: Mapping[str, str]) -> bool:
    """Whether dash passes ``env`` on as it is (but for PWD): PATH set, every name one dash keeps,
    none it resets. Remembered for spawn Environments (which never change)."""
    Environment = spawn_module().Environment
    if isinstance(env, Environment):
        known = _kept_cache.get(id(env))
        if known is not None and known[0] is env:
            return known[1]
    kept = (
        "PATH" in env
        and not any(name in env for name in SHELL_RESETS)
        and all(_is_name(name) for name in env)
    )
    if isinstance(env, Environment):
        if len(_kept_cache) >= _CACHE_SIZE:
            _kept_cache.clear()
        _kept_cache[id(env)] = (env, kept)  # holding env: its id is not reused while cached
    return kept


def _is_name(name: str) -> bool:
    return bool(name) and name[0] in _NAME_START and _NAME_REST.issuperset(name)


def _pwd(inherited: str | None, cwd: str | None) -> str | None:
    """The PWD dash exports in ``cwd``: the inherited one if it is absolute and names that
    directory, else the physical path (what getcwd says there). None when ``cwd`` can't be
    looked at (the start fails, and the shell's start reports it) or is under /proc (where
    /proc/self is the worker here, the job there)."""
    here = os.getcwd() if cwd is None else cwd
    if here.startswith("/proc"):
        return None
    if inherited == here and here.startswith("/"):
        # The usual case, and no stat a job: PWD names the directory as given. One that can't
        # be entered (missing, no permission) fails the program's start as it failed the
        # shell's, and the executor then starts the shell, which reports it as before.
        return inherited
    directory = _stat(here)
    if directory is None:
        return None
    if inherited and inherited.startswith("/"):
        named = _stat(inherited)
        if named is not None and (named.st_dev, named.st_ino) == (
            directory.st_dev, directory.st_ino
        ):
            return inherited
    return os.path.realpath(here)


_with_pwd_cache: dict[tuple[int, str], tuple[Mapping[str, str], Mapping[str, str]]] = {}


def _with_pwd(env: Mapping[str, str], pwd: str) -> Mapping[str, str]:
    """``env`` with PWD set; for a spawn Environment, one encoded once per directory."""
    Environment = spawn_module().Environment
    if env.get("PWD") == pwd and isinstance(env, Environment):
        return env
    if not isinstance(env, Environment):
        return {**env, "PWD": pwd}
    key = (id(env), pwd)
    known = _with_pwd_cache.get(key)
    if known is not None and known[0] is env:
        return known[1]
    made = Environment({**env, "PWD": pwd})
    if len(_with_pwd_cache) >= _CACHE_SIZE:
        _with_pwd_cache.clear()
    _with_pwd_cache[key] = (env, made)
    return made


_dash: bool | None = None


def _shell_is_dash() -> bool:
    """Whether /bin/sh is dash and forks for a job's command, whose ways this module and the
    executor follow (looked at once a process: its name, then how it reports a command killed
    by a signal: exit status 143 for SIGTERM, where a shell that execs dies of it)."""
    global _dash
    if _dash is None:
        _dash = False
        if os.path.basename(os.path.realpath(SHELL)) == "dash":
            import subprocess

            try:
                probe = subprocess.run(
                    [SHELL, "-c", f"{SHELL} -c 'kill -TERM $$'"], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
                )
            except (OSError, subprocess.SubprocessError):
                return False
            _dash = probe.returncode == 128 + signal.SIGTERM
    return _dash
