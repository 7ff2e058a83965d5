"""Starting a job's shell cheaply: glibc's ``posix_spawn``, through ctypes.

:func:`subprocess.Popen` cost a worker thread about 150 us of CPU a job, mostly Python around
its fork; ``posix_spawn`` does the same in C, for about half. :func:`os.posix_spawn` cannot
change the child's directory, and every job has one, so this calls glibc (2.34 or later) itself,
with ``posix_spawn_file_actions_addchdir_np`` and ``addclosefrom_np``. Where those are missing
(another libc, another OS), :func:`available` is False and the executor uses Popen.

What the child gets is what Popen gave it: stdin from /dev/null, stdout and stderr into one pipe,
no other descriptor, a session of its own (a timeout kills its group), the signals Python
ignores (SIGPIPE, SIGXFSZ) back to their defaults, no blocked signal, and the directory. A signal
ignored by whatever started the worker (`nohup`) stays ignored, as exec leaves it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any

# glibc's flag values (bits/spawn.h); other C libraries are not used (see _load).
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# The opaque structs are allocated here; glibc's are 80 (actions), 336 (attributes) and 128
# (sigset) bytes on 64-bit Linux: these sizes leave room to spare.
_STRUCT_SIZE = 1024
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class Environment(Mapping[str, str]):
    """A job environment, encoded once for every spawn that uses it (a worker's jobs all share
    one: encoding ~40 variables cost more per job than the spawn's own C code)."""

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

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


class _Libc:
    """The functions, typed. Cheap ones keep the GIL (``PyDLL``): releasing it for a microsecond
    of work costs more, with several worker threads, than the work. ``posix_spawn`` itself waits
    while the child execs, so it releases the GIL (``CDLL``)."""

    def __init__(self) -> None:
        quick = ctypes.PyDLL(None)
        slow = ctypes.CDLL(None)
        pointer, text, number = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int

        def typed(library: ctypes.CDLL, name: str, *args: object) -> ctypes._CFuncPtr:
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
        self.add_closefrom = typed(quick, "posix_spawn_file_actions_addclosefrom_np", pointer, number)
        self.add_chdir = typed(quick, "posix_spawn_file_actions_addchdir_np", pointer, text)
        self.attr_init = typed(quick, "posix_spawnattr_init", pointer)
        self.set_flags = typed(quick, "posix_spawnattr_setflags", pointer, ctypes.c_short)
        self.set_sigdefault = typed(quick, "posix_spawnattr_setsigdefault", pointer, pointer)
        self.set_sigmask = typed(quick, "posix_spawnattr_setsigmask", pointer, pointer)
        self.sigemptyset = typed(quick, "sigemptyset", pointer)
        self.sigaddset = typed(quick, "sigaddset", pointer, number)


@functools.cache
def _load() -> tuple[_Libc, ctypes.Array[ctypes.c_char]] | None:
    """glibc's functions and the spawn attributes every job shares, or None where unusable."""
    try:
        if not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):  # a libc that is not glibc
        return None
    try:
        libc = _Libc()
    except (OSError, AttributeError, ValueError):  # not glibc 2.34+
        return None
    attributes = ctypes.create_string_buffer(_STRUCT_SIZE)
    defaults = ctypes.create_string_buffer(_STRUCT_SIZE)
    empty = ctypes.create_string_buffer(_STRUCT_SIZE)
    steps = [
        libc.attr_init(attributes),
        libc.sigemptyset(defaults),
        *(libc.sigaddset(defaults, signum) for signum in _RESET_SIGNALS),
        libc.sigemptyset(empty),
        libc.set_sigmask(attributes, empty),
        libc.set_flags(attributes, _SETSID | _SETSIGDEF | _SETSIGMASK),
    ]
    # glibc's spawn sets its own two signals (32 and 33, below SIGRTMIN) to "ignore" in the
    # child when this process handles them, and that outlives the exec; sigaddset refuses them,
    # so their bits (a sigset is an array of unsigned longs) are set here: default, as the rest.
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = (ctypes.c_ulong * (_STRUCT_SIZE * 8 // bits)).from_buffer(defaults)
    for signum in range(32, signal.SIGRTMIN):
        words[(signum - 1) // bits] |= 1 << ((signum - 1) % bits)
    steps.append(libc.set_sigdefault(attributes, defaults))
    if any(steps):
        return None
    return libc, attributes


def available() -> bool:
    """Whether :func:`spawn` works here (Linux, glibc 2.34 or later)."""
    return _load() is not None


def spawn(argv: list[str], cwd: str | None, env: Environment, output: int) -> int:
    """Start ``argv`` in ``cwd`` (None: this process's) with ``env``, its stdout and stderr on
    descriptor ``output`` (3 or more); returns its pid. Raises OSError as Popen would
    (ValueError for a NUL in an argument)."""
    loaded = _load()
    if loaded is None:
        raise RuntimeError("posix_spawn with chdir is not available here")
    libc, attributes = loaded
    args = [os.fsencode(arg) for arg in argv]
    directory = None if cwd is None else os.fsencode(cwd)
    if any(b"\0" in arg for arg in args) or (directory is not None and b"\0" in directory):
        raise ValueError("embedded null byte")
    vector = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    actions = ctypes.create_string_buffer(_STRUCT_SIZE)
    error = libc.actions_init(actions)  # these return an error number, 0 on success
    if error:
        raise OSError(error, os.strerror(error))
    try:
        failed = (
            libc.add_open(actions, 0, b"/dev/null", os.O_RDONLY, 0)
            or libc.add_dup2(actions, output, 1)
            or libc.add_dup2(actions, output, 2)
            or libc.add_closefrom(actions, 3)
            or (directory is not None and libc.add_chdir(actions, directory))
        )
        if failed:
            raise OSError(failed, os.strerror(failed))
        pid = ctypes.c_int()
        error = libc.spawn(ctypes.byref(pid), args[0], actions, attributes, vector, env.block)
    finally:
        libc.actions_destroy(actions)
    if error:
        # Which step failed is not told; a missing directory is the likely one, and Popen names it.
        where = cwd if cwd is not None and not os.path.isdir(cwd) else argv[0]
        raise OSError(error, os.strerror(error), where)
    return pid.value
