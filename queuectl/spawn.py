"""Starting a job's shell cheaply: glibc's ``posix_spawn``, through ctypes.

Why not :class:`subprocess.Popen`: its fork and exec are driven from Python, and a worker thread
pays for that in CPU on every job; ``posix_spawn`` does the same work in C. Why not
:func:`os.posix_spawn`: it can neither change the child's directory (every job has one) nor, before
Python 3.13, close the descriptors a job must not inherit. Wrapping it in a shell that changes
directory first (``cd -- "$1" && exec /bin/sh -c "$2"``) would start a second shell for every job,
which costs the machine more than Popen does, and would make a missing directory a shell error
instead of a job that cannot start. So this calls glibc (2.34 or later) itself, with
``posix_spawn_file_actions_addchdir_np`` and ``addclosefrom_np``.

What the child gets is what Popen gave it: stdin from /dev/null, stdout and stderr into one pipe,
no other descriptor, a session of its own (a timeout kills its group), the signals Python
ignores (SIGPIPE, SIGXFSZ) back to their defaults, no blocked signal, and the directory. A signal
ignored by whatever started the worker (`nohup`) stays ignored, as exec leaves it, but for the
worker's own stop signals (SIGINT, SIGTERM), which the worker handles, so exec resets them.

Nothing about glibc's data layout is taken on trust. What this relies on is checked once, when a
job is first started, and where any of it can't be confirmed (another OS or C library, glibc
before 2.34, a function missing, a size or a signal set that does not read back as meant),
:func:`available` is False and the executor uses Popen, which gives the child the same:

- the opaque structs are allocated at the size glibc's own ``*_init`` function clears, measured
  on a buffer filled with a marker; ``sigset_t`` at the size ``posix_spawnattr_getsigdefault``
  copies out of a cleared attribute object;
- the signal sets are made by ``sigemptyset`` and ``sigaddset``, then read back signal by signal
  with ``sigismember``. The signals glibc keeps for itself, which sigaddset refuses, are the one
  thing written here, in glibc's layout, and that read-back is what confirms it;
- the flag values are the ones of glibc's ``spawn.h``, one header for every architecture, and
  ``posix_spawnattr_setflags`` refuses a bit it does not know.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

# glibc's flag values (spawn.h, the same on every architecture).
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
_MIN_GLIBC = (2, 34)  # addclosefrom_np; addchdir_np is older
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # ignored by Python, not by whoever started it
# A struct's size is measured in a buffer this big, and must take at most half of it (one that
# seems to fill it may be bigger still). That the buffer is big enough to measure in at all is
# the one thing assumed: a page, for structs that programs allocate themselves, so that glibc
# cannot grow them without breaking every program built against it.
_MEASURE_ROOM = 4096
_MARKER = 0xA5


class Environment(Mapping[str, str]):
    """A job environment, encoded once for every spawn that uses it (a worker's jobs all share
    one: encoding it again for every job would cost more than the spawn's own C code)."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._variables = dict(variables)

    @functools.cached_property
    def block(self) -> Any:
        """The ``envp`` array of ``NAME=value`` strings posix_spawn takes."""
        entries = []
        for name, value in self._variables.items():
            entry = os.fsencode(name) + b"=" + os.fsencode(value)
            if b"\0" in entry or b"=" in os.fsencode(name):
                raise ValueError(f"illegal environment variable {name!r}")
            entries.append(entry)
        return (ctypes.c_char_p * (len(entries) + 1))(*entries, None)

    def __getitem__(self, name: str) -> str:
        return self._variables[name]

    def get(self, name: str, default: Any = None) -> Any:  # (Mapping's: two calls a job more)
        return self._variables.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


class _Libc:
    """The functions, typed. Cheap ones keep the GIL (``PyDLL``): releasing it around so little
    work costs more, with several worker threads, than the work. ``posix_spawn`` itself waits
    while the child execs, so it releases the GIL (``CDLL``)."""

    def __init__(self, quick: Any, slow: Any) -> None:
        pointer, text, number = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int

        def typed(library: Any, name: str, *args: object) -> Any:
            function = getattr(library, name)  # AttributeError when this libc has none
            function.argtypes = args
            function.restype = number
            return function

        self.spawn = typed(slow, "posix_spawn", pointer, text, pointer, pointer, pointer, pointer)
        self.actions_init = typed(quick, "posix_spawn_file_actions_init", pointer)
        self.actions_destroy = typed(quick, "posix_spawn_file_actions_destroy", pointer)
        self.add_open = typed(
            quick, "posix_spawn_file_actions_addopen", pointer, number, text, number, number
        )
        self.add_dup2 = typed(quick, "posix_spawn_file_actions_adddup2", pointer, number, number)
        self.add_closefrom = typed(
            quick, "posix_spawn_file_actions_addclosefrom_np", pointer, number
        )
        self.add_chdir = typed(quick, "posix_spawn_file_actions_addchdir_np", pointer, text)
        self.attr_init = typed(quick, "posix_spawnattr_init", pointer)
        self.set_flags = typed(quick, "posix_spawnattr_setflags", pointer, ctypes.c_short)
        self.set_sigdefault = typed(quick, "posix_spawnattr_setsigdefault", pointer, pointer)
        self.get_sigdefault = typed(quick, "posix_spawnattr_getsigdefault", pointer, pointer)
        self.set_sigmask = typed(quick, "posix_spawnattr_setsigmask", pointer, pointer)
        self.sigemptyset = typed(quick, "sigemptyset", pointer)
        self.sigaddset = typed(quick, "sigaddset", pointer, number)
        self.sigismember = typed(quick, "sigismember", pointer, number)


def _libraries() -> tuple[Any, Any]:
    """This process's C library, as (keeps the GIL, releases it)."""
    return ctypes.PyDLL(None), ctypes.CDLL(None)


def _glibc_version() -> tuple[int, int] | None:
    """glibc's version (major, minor), or None where the C library is another one."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # a libc that does not answer this is not glibc
        return None
    name, _, version = text.partition(" ")
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    return (major, minor) if name == "glibc" else None


def _cleared_size(clear: Callable[[Any], int]) -> int | None:
    """The size of the struct that ``clear`` (a glibc function that zeroes a whole one) zeroes:
    how many bytes it zeroed at the start of a buffer filled with a marker. None unless it
    succeeded, left every other byte alone, and took at most half the buffer."""
    buffer = ctypes.create_string_buffer(bytes([_MARKER]) * _MEASURE_ROOM, _MEASURE_ROOM)
    if clear(buffer) != 0:
        return None
    raw = buffer.raw
    size = _MEASURE_ROOM - len(raw.lstrip(b"\0"))
    untouched = raw[size:] == bytes([_MARKER]) * (_MEASURE_ROOM - size)
    if not (untouched and 0 < size <= _MEASURE_ROOM // 2):
        return None
    return size


def _signal_set(libc: _Libc, size: int, members: set[int]) -> ctypes.Array[ctypes.c_char] | None:
    """A ``sigset_t`` of ``size`` bytes holding exactly ``members``, as ``sigismember`` reads it;
    None where it can't be made so."""
    sigset = ctypes.create_string_buffer(size)
    if libc.sigemptyset(sigset) != 0:
        return None
    words = (ctypes.c_ulong * (size // ctypes.sizeof(ctypes.c_ulong))).from_buffer(sigset)
    for signum in sorted(members):
        if libc.sigaddset(sigset, signum) != 0:
            # One glibc keeps for itself: set in glibc's layout (an array of unsigned long, bit
            # n-1 for signal n), which the read-back below confirms or refuses.
            word, bit = divmod(signum - 1, ctypes.sizeof(ctypes.c_ulong) * 8)
            if word >= len(words):
                return None
            words[word] |= 1 << bit
    for signum in range(1, signal.NSIG):
        if libc.sigismember(sigset, signum) != (signum in members):
            return None
    return sigset


class _Loaded(NamedTuple):
    libc: _Libc
    attributes: ctypes.Array[ctypes.c_char]  # the spawn attributes every job shares
    actions_size: int  # sizeof(posix_spawn_file_actions_t)


@functools.cache
def _load() -> _Loaded | None:
    """glibc's functions, the attributes every job shares and the size of a job's file actions;
    None wherever one of them can't be confirmed (see the module's docstring)."""
    version = _glibc_version()
    if version is None or version < _MIN_GLIBC:
        return None
    try:
        libc = _Libc(*_libraries())
    except (OSError, AttributeError, ValueError):  # a function missing
        return None
    actions_size = _cleared_size(libc.actions_init)
    attributes_size = _cleared_size(libc.attr_init)
    if actions_size is None or attributes_size is None:
        return None
    attributes = ctypes.create_string_buffer(attributes_size)
    if libc.attr_init(attributes) != 0:
        return None
    sigset_size = _cleared_size(lambda buffer: libc.get_sigdefault(attributes, buffer))
    if sigset_size is None:
        return None
    # glibc's spawn sets the signals it keeps for itself (those sigaddset refuses, below
    # SIGRTMIN) to "ignore" in the child, and that outlives the exec: they are reset to the
    # default with the rest.
    probe = ctypes.create_string_buffer(sigset_size)
    libc.sigemptyset(probe)
    reserved = {signum for signum in range(1, signal.NSIG) if libc.sigaddset(probe, signum) != 0}
    defaults = _signal_set(libc, sigset_size, {*_RESET_SIGNALS, *reserved})
    empty = _signal_set(libc, sigset_size, set())
    if defaults is None or empty is None:
        return None
    steps = (
        libc.set_sigmask(attributes, empty),
        libc.set_sigdefault(attributes, defaults),
        libc.set_flags(attributes, _SETSID | _SETSIGDEF | _SETSIGMASK),
    )
    if any(steps):
        return None
    return _Loaded(libc, attributes, actions_size)


def available() -> bool:
    """Whether :func:`spawn` works here: Linux, glibc 2.34 or later, and all that the module's
    docstring lists confirmed."""
    return _load() is not None


class _FileActions(dict):
    """A thread's file actions, by (output descriptor, directory): made once and used again
    (posix_spawn only reads them), since making them cost a tenth of a job's start. Per thread,
    so that none is destroyed while another thread spawns with it; destroyed with the thread."""

    MAX = 8  # a worker thread's pipes take the same few descriptors again and again

    def __init__(self, libc: _Libc) -> None:
        super().__init__()
        self.libc = libc

    def clear(self) -> None:
        for actions in self.values():
            self.libc.actions_destroy(actions)
        super().clear()

    def __del__(self) -> None:
        try:
            self.clear()
        except Exception:  # at interpreter exit
            pass


_threads_actions = threading.local()


def _file_actions(loaded: _Loaded, output: int, directory: bytes | None) -> Any:
    """The file actions of a job's start: stdin from /dev/null, stdout and stderr on
    ``output``, no other descriptor, and the directory."""
    made = getattr(_threads_actions, "made", None)
    if made is None or made.libc is not loaded.libc:  # (checked again: _load's cache cleared)
        made = _threads_actions.made = _FileActions(loaded.libc)
    actions = made.get((output, directory))
    if actions is not None:
        return actions
    libc = loaded.libc
    actions = ctypes.create_string_buffer(loaded.actions_size)
    error = libc.actions_init(actions)  # these return an error number, 0 on success
    if error:
        raise OSError(error, os.strerror(error))
    failed = (
        libc.add_open(actions, 0, b"/dev/null", os.O_RDONLY, 0)
        or libc.add_dup2(actions, output, 1)
        or libc.add_dup2(actions, output, 2)
        or libc.add_closefrom(actions, 3)
        or (directory is not None and libc.add_chdir(actions, directory))
    )
    if failed:
        libc.actions_destroy(actions)
        raise OSError(failed, os.strerror(failed))
    if len(made) >= made.MAX:
        made.clear()
    made[(output, directory)] = actions
    return actions


# (path, cwd, *argv) -> what spawn hands posix_spawn for them: the same few commands and
# directories come again and again, and encoding them cost as much as the rest of a start.
# Only read once made (posix_spawn copies them into the child), so the threads share them.
_encoded: dict[tuple, tuple[bytes, bytes | None, Any]] = {}
_ENCODED_MAX = 256


def _encoded_start(
    argv: list[str], cwd: str | None, path: str | None
) -> tuple[bytes, bytes | None, Any]:
    """The file, the directory and the NULL-terminated argument vector, encoded as Popen
    encodes them; ValueError for a NUL in any of them."""
    args = [os.fsencode(arg) for arg in argv]
    file = args[0] if path is None else os.fsencode(path)
    directory = None if cwd is None else os.fsencode(cwd)
    if any(b"\0" in arg for arg in args) or (directory is not None and b"\0" in directory):
        raise ValueError("embedded null byte")
    return file, directory, (ctypes.c_char_p * (len(args) + 1))(*args, None)


def spawn(
    argv: list[str], cwd: str | None, env: Environment, output: int, path: str | None = None
) -> int:
    """Start ``argv`` (the file ``path``, else ``argv[0]``) in ``cwd`` (None: this process's)
    with ``env``, its stdout and stderr on descriptor ``output`` (3 or more); returns its pid.
    Raises OSError as Popen would (ValueError for a NUL in an argument)."""
    loaded = _load()
    if loaded is None:
        raise RuntimeError("posix_spawn with chdir is not available here")
    libc, attributes, _ = loaded
    key = (path, cwd, *argv)
    encoded = _encoded.get(key)
    if encoded is None:
        encoded = _encoded_start(argv, cwd, path)
        if len(_encoded) >= _ENCODED_MAX:
            _encoded.clear()
        _encoded[key] = encoded
    file, directory, vector = encoded
    actions = _file_actions(loaded, output, directory)
    pid = ctypes.c_int()  # pid_t: an int in glibc on every architecture
    error = libc.spawn(ctypes.byref(pid), file, actions, attributes, vector, env.block)
    if error:
        # Which step failed is not told; a missing directory is the likely one, and Popen names it.
        where = cwd if cwd is not None and not os.path.isdir(cwd) else argv[0]
        raise OSError(error, os.strerror(error), where)
    return pid.value
