"""Issue #5 targets 2 and 3, and issue #17's start-up targets: whole processes, as a shell
script runs them, from real installs of this checkout.

2. `queuectl enqueue true`, `queuectl --help` and `queuectl config get max-retries`, each beside
   the bare imports that command cannot do without (see BARE_CLICK), in two venvs built from this
   checkout as a user builds them: `pip install .` (no extras) and `pip install '.[postgres]'`.
   The baselines run in the venv without psycopg (where importing peewee does not load it).
3. `queuectl enqueue --file` of 10,000 lines (an absolute limit, and beside Huey enqueueing 10,000
   tasks in a loop, also as a whole process).
Each database exists (created empty) before the timed run: creating the schema happens once in a
queue's life, not on every enqueue. Measured and baseline runs alternate (with hyperfine where it
is installed: in rounds, each round timing every command).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .harness import (
    CACHE_DIR,
    Figure,
    pg_schema,
    Report,
    Settings,
    Target,
    child_env,
    fresh_sqlite,
    queuectl_command,
    run_timed,
)
from .throughput import huey_app, huey_available

ROOT = Path(__file__).resolve().parents[2]
# What goes into the wheel: a change to any of it builds the venvs again.
SOURCES = ("pyproject.toml", "README.md", "queuectl", "tui")
KEEP_BUILDS = 3
VENVS = {"plain": "", "postgres": "[postgres]"}  # venv name -> extras installed

# The baseline of each command: the imports it cannot do without, in a fresh interpreter of the
# venv without psycopg (where importing peewee does not load psycopg). `--help` needs click and
# nothing else (the help texts are queuectl's own strings, and formatting them is the command's
# work). `config get` reads a value from the database, and `enqueue` writes one: click, sqlite3
# and peewee, the engine's database layer (opening the file, checking its schema and the query
# are the command's own work).
BARE_CLICK = "import click"
BARE_DATABASE = "import click, peewee, sqlite3"
HUEY_LOOP = (
    "import benchhuey\n"
    "for _ in range({n}):\n"
    "    benchhuey.run('true')\n"
)


# -- the venvs -------------------------------------------------------------------------------


def sources_key() -> str:
    """A hash of everything the wheel is built from (content, not mtimes: a checkout or a
    rebase touches files it does not change)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(argv: list[str], **kwargs: object) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr[-1500:]}")


def install_venvs() -> dict[str, Path]:
    """The two venvs (name -> folder), built from one wheel of this checkout and kept under the
    harness's cache until the sources change. Dependencies come from the package index, as for
    a user (pip's own cache makes a rebuild quick)."""
    cache = Path(CACHE_DIR) / "startup-venvs"
    home = cache / sources_key()
    venvs = {name: home / name for name in VENVS}
    if (home / "ready").exists():
        return venvs
    if home.exists():
        shutil.rmtree(home)  # a build that did not finish
    with tempfile.TemporaryDirectory(prefix="queuectl-wheel-") as scratch:
        # A copy of the sources: building in the checkout would leave build/ and egg-info there.
        tree = Path(scratch) / "src"
        for name in SOURCES:
            source = ROOT / name
            if source.is_file():
                tree.mkdir(exist_ok=True)
                shutil.copy2(source, tree / name)
            else:
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(source, tree / name, ignore=ignore)
        wheels = Path(scratch) / "wheels"
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(tree)])
        (wheel,) = wheels.glob("queuectl-*.whl")
        for name, extras in VENVS.items():
            _run([sys.executable, "-m", "venv", str(venvs[name])])
            _run([str(venvs[name] / "bin" / "python"), "-m", "pip", "install", "-q",
                  f"queuectl{extras} @ {wheel.as_uri()}"])  # fmt: skip
    (home / "ready").write_text("")
    # Keep the few newest builds (other checkouts may be measuring theirs), not every one.
    builds = sorted(cache.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)
    return venvs


# -- timing ----------------------------------------------------------------------------------


def time_commands(
    commands: dict[str, list[str]],
    reps: int,
    rounds: int = 10,
    cpu: dict[str, list[float]] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, list[float]]:
    """Wall times of whole processes (each must succeed), ``reps`` of each command, in rounds
    that each time every command, so that a change in the machine's load reaches all of them.
    hyperfine where installed (it subtracts nothing, -N: no shell in between); else our own
    timer, the commands alternating. ``cpu``, with hyperfine: filled with each round's mean user
    + system CPU time, which a busy machine moves less than wall time."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    hyperfine = shutil.which("hyperfine")
    rounds = max(1, min(rounds, reps))
    for index in range(rounds):
        runs = reps // rounds + (1 if index < reps % rounds else 0)
        names = list(commands) if index % 2 == 0 else list(reversed(commands))
        if hyperfine is None:
            if index == 0:
                for name in names:
                    run_timed(commands[name], env=env)  # warm the page cache and .pyc files
            for _ in range(runs):
                for name in names:
                    times[name].append(run_timed(commands[name], env=env))
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as export:
            argv = [hyperfine, "-N", "--style", "none", "--warmup", "1", "--runs", str(max(runs, 2)),
                    "--export-json", export.name, *(shlex.join(commands[n]) for n in names)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, env=env or child_env(),
                                  timeout=900)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"hyperfine exited {done.returncode}: {done.stderr[-1500:]}")
            results = json.load(open(export.name))["results"]
        for name, result in zip(names, results):
            times[name].extend(result["times"])
            if cpu is not None:
                cpu.setdefault(name, []).append(result["user"] + result["system"])  # a mean
    return times


def timer_name() -> str:
    return "hyperfine" if shutil.which("hyperfine") else "median of runs"


def empty_queue(settings: Settings, name: str, queuectl: list[str] | None = None) -> str:
    """A new queue file, its schema created (by ``queuectl``'s own install when given)."""
    path = fresh_sqlite(settings, name)
    if queuectl is None:
        from queuectl import Queue

        Queue(path).close()
    else:
        _run([*queuectl, "--db", path, "status"], env=child_env())
    return path


def run_start_up(settings: Settings, report: Report) -> None:
    """Issue #17 (4): the commands, in both installs, each beside its baseline."""
    try:
        venvs = install_venvs()
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        report.note(f"start-up: could not build the venvs ({exc}); measured in this interpreter")
        run_enqueue_one(settings, report)
        return
    reps = settings.reps(30, 10)
    # A home of its own: `enqueue true` without --db opens the default queue, as a user's does.
    home = os.path.join(settings.workdir, "home")
    os.makedirs(home)
    env = child_env({"HOME": home})
    for name in ("XDG_DATA_HOME", "QUEUECTL_DB"):
        env.pop(name, None)
    python = str(venvs["plain"] / "bin" / "python")
    commands = {BARE_CLICK: [python, "-c", BARE_CLICK], BARE_DATABASE: [python, "-c", BARE_DATABASE]}
    figures = []  # (install, command, baseline, target)
    for name, venv in venvs.items():
        queuectl = [str(venv / "bin" / "queuectl")]
        target = empty_queue(settings, f"start-{name}", queuectl)
        _run([*queuectl, "status"], env=env)  # the default queue, created once
        for command, argv, baseline, limit in [
            ("enqueue true", ["enqueue", "true"], BARE_DATABASE, 1.15),
            ("--db FILE enqueue true", ["--db", target, "enqueue", "true"], BARE_DATABASE, 1.15),
            ("--help", ["--help"], BARE_CLICK, 1.2),
            ("config get max-retries", ["config", "get", "max-retries"], BARE_DATABASE, 1.2),
        ]:
            commands[f"{name}: {command}"] = [*queuectl, *argv]
            figures.append((name, command, baseline, limit))
    cpu: dict[str, list[float]] = {}
    times = time_commands(commands, reps, env=env, cpu=cpu)
    report.note(f"start-up: {timer_name()}, {reps} runs of each command, interleaved in rounds; "
                "the baselines run in the venv without psycopg; without --db a command opens the "
                "default queue (in a fresh HOME)")  # fmt: skip
    for baseline in (BARE_CLICK, BARE_DATABASE):
        report.add(Figure(f"bare python -c '{baseline}' (no psycopg)", "s", times[baseline]))
    for name, command, baseline, limit in figures:
        install = "pip install ." if not VENVS[name] else f"pip install '.{VENVS[name]}'"
        report.add(Figure(f"queuectl {command} ({install})", "s", times[f"{name}: {command}"],
                          baseline, times[baseline], [Target(f"<= {limit}x", at_most=limit)]))  # fmt: skip
    if cpu:  # wall time is the target; CPU time says what a busy machine's wall time hides
        ratios = [
            f"{name} {command}: {statistics.median(cpu[f'{name}: {command}']) * 1000:.0f} ms, "
            f"{statistics.median(cpu[f'{name}: {command}']) / statistics.median(cpu[baseline]):.2f}x"
            for name, command, baseline, _ in figures
        ]
        report.note("start-up CPU time (user + system, median of the rounds' means): "
                    f"import click {statistics.median(cpu[BARE_CLICK]) * 1000:.0f} ms, "
                    f"import click, peewee, sqlite3 {statistics.median(cpu[BARE_DATABASE]) * 1000:.0f}"
                    f" ms; " + "; ".join(ratios))  # fmt: skip


# As where no PostgreSQL driver is installed (a plain `pip install .`): the fallback measures in
# this interpreter, which may have psycopg (peewee probes for it when imported).
BARE_IMPORT = [
    sys.executable, "-c",
    "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None; " + BARE_DATABASE,
]  # fmt: skip


def run_enqueue_one(settings: Settings, report: Report) -> None:
    """In this interpreter (its queuectl may be an editable install): the fallback."""
    reps = settings.reps(15, 5)
    target = empty_queue(settings, "one")
    command = [*queuectl_command(), "--db", target, "enqueue", "true"]
    run_timed(command)  # warm the page cache and .pyc files for both sides
    run_timed(BARE_IMPORT)
    ours, bare = [], []
    for _ in range(reps):
        bare.append(run_timed(BARE_IMPORT))
        ours.append(run_timed(command))
    report.add(Figure("bare python -c 'import click, peewee, sqlite3' (no psycopg)", "s", bare))
    report.add(Figure("2. queuectl enqueue true (whole process)", "s", ours,
                      "bare import", bare, [Target("<= 1.15x", at_most=1.15)]))  # fmt: skip


def run_bulk(settings: Settings, report: Report) -> None:
    n = 10_000
    reps = settings.reps(5, 2)
    lines = os.path.join(settings.workdir, "jobs-10k.txt")
    with open(lines, "w") as out:
        out.writelines("true\n" for _ in range(n))
    ours, huey = [], []
    for _ in range(reps):
        target = empty_queue(settings, "bulk")
        ours.append(run_timed([*queuectl_command(), "--db", target, "enqueue", "--file", lines]))
        if huey_available():
            folder, env = huey_app(settings.workdir)
            huey.append(run_timed([sys.executable, "-c", HUEY_LOOP.format(n=n)], env=env,
                                  cwd=folder, timeout=600))  # fmt: skip
    if huey:
        report.add(Figure("huey: 10,000 tasks enqueued in a loop (whole process)", "s", huey))
    else:
        report.note("Huey not installed: the bulk comparison is skipped")
    name = "3. queuectl enqueue --file, 10,000 lines (whole process)"
    report.add(Figure(name, "s", ours, targets=[Target("<= 0.5 s", at_most=0.5, ratio=False)]))
    _bulk_after(settings, report, ours)
    _bulk_memory(settings, report)
    if settings.pg_url:
        _bulk_postgres(settings, report)
    if huey:
        # "5x faster" is a time ratio: ours / huey <= 0.2.
        report.add(Figure("3. enqueue --file vs Huey's loop (time ratio)", "s", ours, "huey",
                          huey, [Target("<= 0.2x (5x faster)", at_most=0.2)]))  # fmt: skip


def _bulk_after(settings: Settings, report: Report, plain: list[float]) -> None:
    """`enqueue --file` of 10,000 lines that each run after the same job (a fan-out), beside
    the plain file: each line's reference was looked up on its own (3.4 s for 10,000 lines,
    20 s for 50,000, in-process, 2026-12-06)."""
    from queuectl import Queue

    n = 10_000
    path = os.path.join(settings.workdir, "after-10k.jsonl")
    samples = []
    for _ in range(settings.reps(5, 2)):
        target = empty_queue(settings, "bulk-after")
        queue = Queue(target)
        first = queue.enqueue("true").id
        queue.close()
        with open(path, "w") as out:
            line = json.dumps({"command": "true", "after": [first]}) + "\n"
            out.writelines(line for _ in range(n))
        samples.append(run_timed([*queuectl_command(), "--db", target, "enqueue", "--file", path]))
    report.add(Figure("3. enqueue --file, 10,000 lines each after one job (whole process)", "s",
                      samples, "the plain lines", plain))  # fmt: skip


def peak_rss(argv: Sequence[str]) -> int:
    """Peak resident memory (bytes) of one whole process; it must succeed."""
    process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=child_env())  # fmt: skip
    try:
        stderr = process.stderr.read() if process.stderr else b""
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        process.returncode = process.returncode if process.returncode is not None else -1
        if process.stderr:
            process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {stderr.decode(errors='replace')[-500:]}")
    return usage.ru_maxrss * 1024  # (kilobytes on Linux)


def _bulk_memory(settings: Settings, report: Report) -> None:
    """What a line of `enqueue --file` holds until the file is in (all in one transaction): the
    peak RSS of 100,000 lines less that of 10,000, a line. ~1.9 KB before the jobs' ids alone
    were kept (2026-12-05)."""
    small, big = 10_000, 100_000
    files = {}
    for n in (small, big):
        files[n] = os.path.join(settings.workdir, f"echo-{n}.txt")
        with open(files[n], "w") as out:
            out.writelines(f"echo job {index}\n" for index in range(n))
    samples = []
    for _ in range(settings.reps(3, 1)):
        peaks = {n: peak_rss([*queuectl_command(), "--db", empty_queue(settings, "bulk-rss"),
                              "enqueue", "--file", path]) for n, path in files.items()}  # fmt: skip
        samples.append((peaks[big] - peaks[small]) / (big - small))
    report.add(Figure("3. enqueue --file: memory a line holds (peak RSS, 100k less 10k lines)",
                      "B", samples))  # fmt: skip


def _bulk_postgres(settings: Settings, report: Report) -> None:
    """`enqueue --file` on PostgreSQL, 40,000 lines beside 10,000: its time a line should not
    grow with the file (it did: 7.6 times as long for 4 times the lines, when each row was a
    statement of its own and each statement updated the same counter row)."""
    assert settings.pg_url is not None
    small, big = 10_000, 40_000
    files = {}
    for n in (small, big):
        files[n] = os.path.join(settings.workdir, f"true-{n}.txt")
        with open(files[n], "w") as out:
            out.writelines("true\n" for _ in range(n))
    per_line: dict[int, list[float]] = {small: [], big: []}
    for _ in range(settings.reps(3, 1)):
        for n, path in files.items():
            with pg_schema(settings.pg_url) as target:
                _run([*queuectl_command(), "--db", target, "status"], env=child_env())
                seconds = run_timed([*queuectl_command(), "--db", target, "enqueue", "--file",
                                     path], timeout=600)  # fmt: skip
            per_line[n].append(seconds / n * 1e6)
    report.add(Figure("3. enqueue --file on PostgreSQL: time a line, 40,000 lines beside 10,000",
                      "µs", per_line[big], "10,000 lines", per_line[small],
                      [Target("<= 1.5x", at_most=1.5)]))  # fmt: skip
