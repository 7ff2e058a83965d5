"""Hostile input to the commands of SPEC 6-8 (click's CliRunner, in process), as
test_cli_fuzz.py does for round one's: whatever a user types, `queuectl` exits 0, or exits 2
(invalid input) or 1 (a failed operation) with exactly one `Error:` line and no traceback, and a
command that fails changes nothing in any table (jobs, dependencies, queue settings, schedules,
history, hook deliveries, config).
"""

from __future__ import annotations

import json
import re
import uuid

import hypothesis.strategies as st
import pytest
from hypothesis import given

from queuectl import JobSpec
from queuectl.executor import RunResult
from queuectl.spec import QUEUE_NAME

from .test_cli_fuzz import ARG, FUZZ, Invoker
from .test_fuzz import JSON_VALUES

FEATURES = FUZZ.__class__(parent=FUZZ, max_examples=40)
EDGES = ["0", "-1", "1e400", "nan", "-nan", "inf", "-inf", "2147483647", "2147483648",
         "-2147483649", "9" * 5000, "1.5", "", " ", "\u0663", "1_000", "0x10", "\udcff",
         "\x1b[2J", "$(touch PWNED)", "`touch PWNED`", "'\"", "a\nb"]  # fmt: skip
VALUE = st.one_of(ARG, st.sampled_from(EDGES))


class FeatureInvoker(Invoker):
    """Snapshots every table, not only the jobs: a failed command must change none of them."""

    def snapshot(self) -> list[tuple]:
        db = self.queue.db
        rows: list[tuple] = []
        for table in sorted(db.get_tables()):
            if table == "worker":
                continue
            found = db.execute_sql(f'SELECT * FROM "{table}"').fetchall()
            rows.append((table, tuple(sorted(map(repr, found)))))
        return rows


@pytest.fixture
def invoke(db_path):
    """A queue with jobs in each state a command cares about: `abc-1` and `abc-2` pending (so
    `abc` is ambiguous), `done-1` completed, `dead-1` dead, `run-1` processing; queue `q1`
    limited to 1; schedule `nightly`."""
    invoker = FeatureInvoker(db_path)
    queue = invoker.queue
    queue.enqueue_many([JobSpec(command="true", id=i, max_retries=0)
                        for i in ("done-1", "dead-1", "run-1")])  # fmt: skip
    worker = queue.register_worker(1)
    queue.finish(queue.claim(worker), RunResult(0, None, "ok\n"), worker)
    queue.finish(queue.claim(worker), RunResult(1, "exit code 1", ""), worker)
    queue.claim(worker)  # run-1 stays processing
    queue.enqueue_many([JobSpec(command="true", id=i) for i in ("abc-1", "abc-2")])
    queue.set_queue_limit("q1", 1)
    queue.add_schedule("nightly", "0 3 * * *", JobSpec(command="true"))
    yield invoker
    invoker.queue.close()


def state_of(invoke: FeatureInvoker, job_id: str) -> str:
    return str(invoke.queue.get(job_id).state)


# -- edit --------------------------------------------------------------------------------------

EDIT_OPTIONS = ["--command", "--priority", "--max-retries", "--timeout", "--delay", "--run-at",
                "--queue"]  # fmt: skip
IDS = st.one_of(st.sampled_from(["abc-1", "abc", "done-1", "dead-1", "run-1", "zzz", "a", "%"]),
                ARG)  # fmt: skip


@FEATURES
@given(job_id=IDS, options=st.lists(st.tuples(st.sampled_from(EDIT_OPTIONS), VALUE), max_size=3),
       as_json=st.booleans())
def test_edit_any_options(invoke, job_id, options, as_json):
    args = [part for pair in options for part in pair]
    result = invoke("edit", *(["--json"] if as_json else []), *args, "--", job_id)
    if result.exit_code == 0:
        assert options, "edit without an option succeeded"
        edited = json.loads(result.stdout)["id"] if as_json else result.stdout.strip()
        assert state_of(invoke, edited) in ("pending", "failed")


@pytest.mark.parametrize(("args", "code"), [
    (("abc-1",), 2),  # nothing to change
    (("abc-1", "--priority", "nan"), 2),
    (("abc-1", "--priority", "2147483648"), 2),
    (("abc-1", "--max-retries", "-1"), 2),
    (("abc-1", "--timeout", "0"), 2),
    (("abc-1", "--timeout", "inf"), 2),
    (("abc-1", "--delay", "-1"), 2),
    (("abc-1", "--delay", "1e400"), 2),
    (("abc-1", "--run-at", "not a time"), 2),
    (("abc-1", "--run-at", "9999-12-31T23:59:59-05:00"), 2),
    (("abc-1", "--delay", "1", "--run-at", "2030-01-01"), 2),
    (("abc-1", "--command", ""), 2),
    (("abc-1", "--command", "   "), 2),
    (("abc-1", "--command", "echo \udcff"), 2),
    (("abc-1", "--queue", "bad name"), 2),
    (("abc-1", "--queue", "q" * 65), 2),
    (("abc-1", "--queue", "$(touch PWNED)"), 2),
    (("done-1", "--priority", "nan"), 2),  # invalid input is invalid whatever the job
    (("done-1", "--priority", "1"), 1),
    (("dead-1", "--priority", "1"), 1),
    (("run-1", "--priority", "1"), 1),
    (("abc", "--priority", "1"), 1),  # ambiguous
    (("zzz", "--priority", "1"), 1),
    (("\udcff", "--priority", "1"), 1),
])  # fmt: skip
def test_edit_refusals(invoke, args, code):
    job_id, *options = args
    result = invoke("edit", *options, "--", job_id)
    assert result.exit_code == code, result.stderr


def test_edit_accepts_unicode_and_control_characters_literally(invoke):
    command = "printf '%s' 'h\u00e9llo \u202e \x1b[31m \u4e2d'\ttab"
    result = invoke("edit", "--json", "abc-1", "--command", command, "--queue", "q.1_-x")
    assert result.exit_code == 0, result.stderr
    job = invoke.queue.get("abc-1")
    assert (job.command, job.queue) == (command, "q.1_-x")


# -- dependencies (--after, JSON after) ---------------------------------------------------------

REFS = st.one_of(
    st.sampled_from(["abc-1", "abc", "done-1", "dead-1", "zzz", "a", "%", "_", "*", "abc-1 "]),
    ARG,
)


@FEATURES
@given(refs=st.lists(REFS, min_size=1, max_size=3), as_json=st.booleans())
def test_enqueue_after_any_ids(invoke, refs, as_json):
    before = len(invoke.queue.list_jobs())
    if as_json:
        arg = json.dumps({"command": "true", "after": refs})
        result = invoke("enqueue", "--json", arg)
    else:
        result = invoke("enqueue", "--json", *(p for ref in refs for p in ("--after", ref)),
                        "--", "true")  # fmt: skip
    if result.exit_code == 0:
        job = json.loads(result.stdout)
        assert len(job["after"]) >= 1
        assert len(invoke.queue.list_jobs()) == before + 1
    else:
        assert result.exit_code == 2, result.stderr  # unknown or ambiguous: invalid input


@FEATURES
@given(after=JSON_VALUES)
def test_json_after_of_any_type(invoke, after):
    result = invoke("enqueue", json.dumps({"command": "true", "after": after}))
    if not isinstance(after, list) or not after:
        assert result.exit_code in (0, 2)
        if not isinstance(after, list):
            assert result.exit_code == 2, result.stderr


@pytest.mark.parametrize(("after", "message"), [
    (["zzz"], "zzz"),
    (["abc"], "ambiguous"),
    (["abc-1", "zzz"], "zzz"),
    ("abc-1", "must be a list"),
    ([1], "must be a string"),
    ([None], "must be a string"),
    ([["abc-1"]], "must be a string"),
    ([""], "empty"),
    (["abc-1"] * 1001, "more than"),
])  # fmt: skip
def test_json_after_refusals_name_the_problem(invoke, after, message):
    result = invoke("enqueue", json.dumps({"command": "true", "after": after}))
    assert result.exit_code == 2
    assert message in result.stderr


def test_enqueue_file_with_a_bad_after_enqueues_nothing(invoke, tmp_path):
    path = tmp_path / "jobs.txt"
    path.write_text(
        '{"id": "f-1", "command": "true"}\n{"command": "true", "after": ["f-1"]}\n'
        '{"command": "true", "after": ["f-"]}\n{"command": "true", "after": ["nope"]}\n'
    )
    result = invoke("enqueue", "--file", str(path))
    assert result.exit_code == 2
    assert "line 4" in result.stderr and "nope" in result.stderr


# -- queue names --------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["default", "q1", "a" * 64, "a" * 65, "a.b_c-d", "-", ".", "..", "a b", "a/b",
                     "\u00e9", "\u0663", "$(touch PWNED)", "`x`", "a\n", "\x1b", "%", "*", ""]),
    ARG,
)  # fmt: skip


def valid_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name, flags=re.ASCII) is not None


@FEATURES
@given(name=NAMES, how=st.sampled_from(["limit", "pause", "resume", "enqueue", "json", "list",
                                        "status", "purge", "stats", "edit"]))  # fmt: skip
def test_queue_names(invoke, name, how):
    args = {
        "limit": ("queue", "limit", "--", name, "2"),
        "pause": ("queue", "pause", "--", name),
        "resume": ("queue", "resume", "--", name),
        "enqueue": ("enqueue", "--queue", name, "--", "true"),
        "json": ("enqueue", json.dumps({"command": "true", "queue": name})),
        "list": ("list", "--queue", name),
        "status": ("status", "--queue", name),
        "purge": ("purge", "--queue", name),
        "stats": ("stats", "--queue", name),
        "edit": ("edit", "abc-2", "--queue", name),
    }[how]
    result = invoke(*args)
    assert result.exit_code == (0 if valid_name(name) else 2), (args, result.stderr)
    assert bool(QUEUE_NAME.fullmatch(name)) == valid_name(name)


@pytest.mark.parametrize("limit", ["-1", "2147483648", "1.5", "1e3", "abc", "", "nan", "None "])
def test_queue_limit_refuses_what_is_not_a_count(invoke, limit):
    result = invoke("queue", "limit", "q2", "--", limit)
    assert result.exit_code == (0 if limit.strip().lower() == "none" else 2), result.stderr


# -- schedules: cron expressions, zones, names ------------------------------------------------

FIELD = st.sampled_from(["*", "*/5", "0", "59", "60", "-1", "1-5", "5-1", "L", "?", "*/0", "MON",
                         "JAN", "a", "99999999999999999999", "1,2", ",", "#", "30", "31", "2",
                         "\udcff"])  # fmt: skip
CRONS = st.one_of(
    st.lists(FIELD, min_size=0, max_size=7).map(" ".join),
    st.sampled_from(["@hourly", "@DAILY", "@weekly", "@monthly", "@yearly", "@reboot", "@",
                     "0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *", "*/10 * * * * *",
                     "  0   3 * * *  ", "* * * * * * *"]),
    ARG,
)  # fmt: skip
ZONES = st.one_of(
    st.none(),
    st.sampled_from(["UTC", "utc", "Europe/Paris", "Etc/GMT+14", "America/Argentina/Buenos_Aires",
                     "", " ", "../../etc/passwd", "/etc/localtime", "Europe/", "Europe/Paris\x01",
                     "a" * 5000, "Mars/Olympus", "\udcff"]),
    ARG,
)  # fmt: skip


@FEATURES
@given(cron=CRONS, zone=ZONES, arg=st.sampled_from(
    ["true", '{"command": "true"}', '{"command": "true", "id": "x"}', '{"command": "true", '
     '"after": ["abc-1"]}', '{"command": "true", "delay": 5}', '{"command": ""}', "  "]))
def test_schedule_add_any_cron_and_zone(invoke, cron, zone, arg):
    name = f"s-{uuid.uuid4().hex[:8]}"
    zone_args = [] if zone is None else ["--tz", zone]
    result = invoke("schedule", "add", "--json", *zone_args, "--", name, cron, arg)
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 0:
        info = json.loads(result.stdout)
        assert info["next_due"] and info["name"] == name
        assert invoke("schedule", "remove", name).exit_code == 0


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 30 2 *"])
def test_a_cron_that_is_never_due_is_refused(invoke, cron):
    """Fields each valid, but no such date: refused (exit 2), not a traceback."""
    result = invoke("schedule", "add", "never", cron, "true")
    assert result.exit_code == 2, result.stderr
    assert invoke.queue.schedules()[0].name == "nightly" and len(invoke.queue.schedules()) == 1


@pytest.mark.parametrize("name", ["nightly-x", "%", "", "\udcff", "a" * 65, "$(touch PWNED)"])
@pytest.mark.parametrize("command", ["remove", "pause", "resume", "run"])
def test_an_unknown_schedule_is_exit_1(invoke, command, name):
    result = invoke("schedule", command, "--", name)
    assert result.exit_code == 1, result.stderr


def test_a_schedule_name_that_exists_is_exit_2(invoke):
    assert invoke("schedule", "add", "nightly", "@daily", "true").exit_code == 2


# -- durations -----------------------------------------------------------------------------------

DURATIONS = st.one_of(
    st.sampled_from(["0", "90", "90s", "15m", "2h", "7d", "1.5h", "7D", " 2h ", ".5m", "36500d",
                     "36501d", "99999999999d", "-1", "-1s", "1w", "1y", "1e3", "nan", "inf", "h",
                     "1.5.2", "\u0663", "1 d", "1_0", "0x10", "", " ", "\udcff"]),
    ARG,
)  # fmt: skip


def duration_seconds(text: str) -> float | None:
    """SPEC 5's durations, independently: None where the text is not one."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdSMHD]?)\s*", text)
    if match is None:
        return None
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[
        match.group(2).lower()
    ]
    return seconds if seconds <= 100 * 365 * 86400 else None


@FEATURES
@given(text=DURATIONS, how=st.sampled_from(["purge", "stats", "retention"]))
def test_durations(invoke, text, how):
    args = {
        "purge": ("purge", "--older-than", text),
        "stats": ("stats", "--since", text),
        "retention": ("config", "set", "retention", "--", text),
    }[how]
    result = invoke(*args)
    assert result.exit_code == (0 if duration_seconds(text) is not None else 2), result.stderr
    if how == "retention" and result.exit_code == 0:
        assert invoke.queue.config()["retention"] == pytest.approx(duration_seconds(text))


def test_purge_never_touches_waiting_or_running_jobs(invoke):
    result = invoke("purge", "--state", "dead", "--state", "completed", "--state", "cancelled")
    assert result.exit_code == 0
    assert {job.id for job in invoke.queue.list_jobs()} == {"abc-1", "abc-2", "run-1"}
    for state in ("pending", "processing", "failed", "all", ""):
        assert invoke("purge", "--state", state).exit_code == 2


# -- logs -n ----------------------------------------------------------------------------------


@FEATURES
@given(lines=VALUE, job_id=IDS)
def test_logs_tail_any_count(invoke, lines, job_id):
    result = invoke("logs", "-n", lines, "--", job_id)
    try:
        count = int(lines)
    except ValueError:
        count = None
    if count is None or count < 0:
        assert result.exit_code == 2, result.stderr
    elif result.exit_code == 0:
        assert len(result.stdout.splitlines()) <= count


# -- cancel / retry: all or nothing -----------------------------------------------------------


@FEATURES
@given(ids=st.lists(st.one_of(st.sampled_from(["abc-1", "abc-2", "done-1", "dead-1", "zzz",
                                               "abc", "a", "%"]), ARG),
                    min_size=1, max_size=4),
       command=st.sampled_from(["cancel", "retry"]))  # fmt: skip
def test_cancel_and_retry_mixed_ids(invoke, ids, command):
    """A processing job is left out (cancel would wait for a worker); the Invoker checks that a
    refusal changed nothing, for any of the ids."""
    result = invoke(command, "--json", "--", *ids)
    assert result.exit_code in (0, 1), result.stderr
    if result.exit_code == 0:
        done = json.loads(result.stdout)
        assert {job["state"] for job in done} <= {"cancelled", "pending"}


@pytest.mark.parametrize(("command", "ids"), [
    ("cancel", ["abc-1", "zzz"]),
    ("cancel", ["abc-1", "done-1"]),  # completed: cannot be cancelled
    ("cancel", ["abc-1", "abc"]),  # ambiguous
    ("cancel", ["abc-1", "\udcff"]),
    ("retry", ["done-1", "abc-1"]),  # pending: cannot be retried
    ("retry", ["dead-1", "run-1"]),  # processing
    ("retry", ["done-1", "zzz"]),
    ("retry", ["dead-1", "abc"]),
])  # fmt: skip
def test_one_bad_id_changes_nothing_for_any(invoke, command, ids):
    result = invoke(command, "--", *ids)
    assert result.exit_code == 1, result.stderr
    assert state_of(invoke, "abc-1") == "pending" and state_of(invoke, "dead-1") == "dead"


# -- hooks ---------------------------------------------------------------------------------------

HOOK_VALUES = st.one_of(
    st.sampled_from(["", "   ", "true", "echo \"$QUEUECTL_JOB_ID\" >> log", "\udcff", "x\ny",
                     "exit 1", "$(touch PWNED)", "\x1b[2J", "a" * 10000]),
    ARG,
)  # fmt: skip


@FEATURES
@given(key=st.sampled_from(["on-completed", "on-failed", "on-dead", "on-cancelled"]),
       value=HOOK_VALUES)
def test_config_set_any_hook(invoke, key, value):
    result = invoke("config", "set", "--", key, value)
    valid = "\x00" not in value and not re.search(r"[\ud800-\udfff]", value)
    assert result.exit_code == (0 if valid else 2), result.stderr
    if valid:
        assert invoke.queue.config()[key] == value.strip()
        got = invoke("config", "get", key)
        assert got.exit_code == 0


def test_config_set_a_hook_with_undecodable_bytes_is_refused(invoke):
    """Argv bytes that are not UTF-8 arrive as lone surrogates: a hook the database cannot store
    is invalid input (exit 2), not a traceback."""
    result = invoke("config", "set", "on-dead", "notify \udcff")
    assert result.exit_code == 2, result.stderr
    assert invoke.queue.config()["on-dead"] == ""
