"""Fuzzed input to the engine's entry points: whatever a user types is either accepted or refused
with QueueError/InvalidInput (exit 1/2 in the CLI) — never another exception — and a refusal
changes nothing. Whatever bytes a job prints are stored as text that round-trips.
"""

from __future__ import annotations

import json
import os
import string

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

from queuectl import InvalidInput, JobSpec, Queue, QueueError, parse_job
from queuectl import config as config_keys
from queuectl.executor import Execution, RunResult
from queuectl.models import STATES, Job
from queuectl.queue import check_state

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any text, lone surrogates and NUL included (what a terminal, a file or a script can hand us).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
KEYS = ["command", "id", "max_retries", "priority", "timeout", "delay", "run_at", "cwd"]
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, 1e-308, -0.0, 5e-324, 1.7976931348623157e308]),
    ANY_TEXT,
    st.sampled_from(["true", "", " ", "2026-01-01", "9999-12-31T23:59:59", "0001-01-01", "x"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)
JSON_OBJECTS = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), ANY_TEXT), JSON_VALUES, max_size=5
).map(lambda d: {"command": "true", **d} if "command" not in d and len(d) % 2 else d)


EDGE_INTS = st.one_of(
    st.integers(-3, 10),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, -(2**63) - 1, 10**30]),
    st.integers(),
)
EDGE_SECONDS = st.one_of(
    st.floats(0, 100),
    st.sampled_from([0, 1, 0.001, 2**31, 1e10, 3e11, 1e38, 1e39, 1e308, 5e-324, 10**30, -1]),
    st.sampled_from([10**400, -(10**400)]),
    st.floats(),
)
EDGE_TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from([
        "9999-12-31T23:59:59", "9999-12-31T23:59:59-14:00", "0001-01-01", "0001-01-01T00:00+14:00",
        "1970-01-01T00:00:00Z", "2026-11-28 21:00", "not a time", "",
    ]),
)
# Mostly valid objects, with values at the edges of what the database and the clock can hold.
VALIDISH = st.fixed_dictionaries(
    {"command": st.sampled_from(["true", "echo hi", "  x  ", "{ echo a; }"])},
    optional={
        "id": st.text(st.characters(codec="utf-8"), min_size=1, max_size=70),
        "max_retries": EDGE_INTS,
        "priority": EDGE_INTS,
        "timeout": EDGE_SECONDS,
        "delay": EDGE_SECONDS,
        "run_at": EDGE_TIMES,
        "cwd": st.sampled_from(["/tmp", "~", "relative/dir", "/nonexistent/x"]),
    },
)


def job_text() -> st.SearchStrategy[str]:
    """What `queuectl enqueue ARG` may get: JSON objects (valid or not) or any text."""
    return st.one_of(
        VALIDISH.map(json.dumps),
        VALIDISH.map(json.dumps),
        ANY_TEXT,
        JSON_OBJECTS.map(lambda d: json.dumps(d, ensure_ascii=False, allow_nan=True)),
        JSON_OBJECTS.map(lambda d: json.dumps(d)),
        st.builds(lambda d, cut: json.dumps(d)[:cut], JSON_OBJECTS, st.integers(0, 60)),
        st.integers(1, 5000).map(lambda n: '{"a":' * n),
        st.integers(1, 3000).map(lambda n: '{"command": ' + "[" * n + "]" * n + "}"),
        # Python refuses to read integers of more than 4300 digits (a ValueError of its own).
        st.sampled_from(["priority", "delay", "id"]).map(
            lambda key: '{"command": "x", "%s": %s}' % (key, "9" * 4400)
        ),
    )


def snapshot(queue) -> list[tuple]:
    Job = queue.models.Job
    return [tuple(row) for row in Job.select().order_by(Job.seq).tuples()]


@FUZZ
@given(text=job_text())
def test_enqueue_any_text(queue, text):
    check_enqueue(queue, text)


@settings(FUZZ, max_examples=300)
@given(data=VALIDISH)
def test_enqueue_values_at_the_edges(queue, data):
    check_enqueue(queue, json.dumps(data))


def check_enqueue(queue, text):
    queue.models.Job.delete().execute()  # examples are independent (a duplicate id would hide a failure)
    before = snapshot(queue)
    try:
        spec = parse_job(text)
        job = queue.enqueue(spec)
    except QueueError:
        assert snapshot(queue) == before, "a refused job changed the queue"
        return
    stored = queue.get(job.id)
    assert stored.command == spec.command
    assert stored.state == "pending"
    assert len(snapshot(queue)) == len(before) + 1
    json.dumps(stored.to_dict())  # what `show --json` prints: every time is displayable


@FUZZ
@given(key=st.one_of(st.sampled_from(list(config_keys.KEYS)), ANY_TEXT), value=st.one_of(
    ANY_TEXT,
    JSON_SCALARS,
    st.sampled_from(["9" * 5000, "1e400", "-0", "0x10", "1_000", " 3 ", "٣", "1e308", "2.0"]),
    st.sampled_from(["1" + "0" * 400, 10**20, 2**31 - 1, 2**31, 2**63]),
))
def test_config_set_any_value(queue, key, value):
    before = queue.config()
    try:
        parsed = config_keys.validate(key, value)
    except InvalidInput:
        with pytest.raises(InvalidInput):
            queue.config_set(key, value)
        assert queue.config() == before, "a refused value changed the config"
        return
    assert queue.config_set(key, value) == parsed
    assert queue.config()[key] == parsed, "the stored value does not read back"
    if key == "job-timeout":  # the worker uses it as it is: it must be a usable timeout
        assert Execution("true", timeout=queue.timeout_for(Job(timeout=None))).run().ok


@FUZZ
@given(state=ANY_TEXT)
def test_check_state_any_text(state):
    try:
        normal = check_state(state)
    except InvalidInput as exc:
        assert "valid:" in str(exc)
        return
    assert normal in STATES


# LIKE and GLOB wildcards, both cases, and the code points at the edges of UTF-8's order.
ID_ALPHABET = string.ascii_letters[:6] + "ABC" + string.digits[:3] + "%_*?[]\\^-.'\"/"
ID_ALPHABET += "é\uffff\U0010ffff\U0001f600"
IDS = st.text(st.sampled_from(ID_ALPHABET), min_size=1, max_size=6)
# What argv can carry that no id holds: undecodable bytes (lone surrogates), NUL.
UNSTORABLE = st.sampled_from(["\udcff", "a\udc80", "\x00", "a\x00", "\ud800"])


@pytest.fixture
def any_backend_queue(target):
    """A queue on SQLite, and on PostgreSQL (skipped without a server, see conftest)."""
    queue = Queue(target)
    yield queue
    queue.close()


@FUZZ
@given(
    ids=st.lists(IDS, min_size=1, max_size=6, unique=True),
    prefix=st.one_of(IDS, ANY_TEXT, UNSTORABLE),
)
@example(ids=["a\U0010ffffb", "b"], prefix="a")  # past "a" + U+10FFFF in byte order
@example(ids=["Build-1", "build-2", "50%_off", "50xyoff"], prefix="50%")
def test_get_any_prefix(any_backend_queue, ids, prefix):
    """A prefix is literal and case-sensitive (no LIKE/GLOB wildcards): it finds the one job whose
    id is it or starts with it, or fails with QueueError; nothing else, and nothing changes."""
    queue = any_backend_queue
    queue.models.Job.delete().execute()
    queue.enqueue_many([JobSpec(command="true", id=i) for i in ids])
    before = snapshot(queue)
    exact = [i for i in ids if i == prefix]
    starting = [i for i in ids if i.startswith(prefix)]
    expected = exact[0] if exact else (starting[0] if len(starting) == 1 else None)
    if prefix == "":
        expected = None  # an empty id names no job (it is not a prefix of all of them)
    try:
        job = queue.get(prefix)
    except QueueError:
        assert expected is None, f"{prefix!r} should find {expected!r}"
    else:
        assert job.id == expected, f"{prefix!r} found {job.id!r}, expected {expected!r}"
    assert snapshot(queue) == before


@settings(FUZZ, max_examples=60)
@given(data=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [b"\x00" * 10, b"\xff\xfe\xfd", b"\xe2\x82", b"\x1b[2J\x1b]0;pwn\x07", b"\r\n\t"]
    ),
), limit=st.sampled_from([1_000_000, 64, 7, 1]))
def test_any_bytes_a_job_prints_are_stored_as_text(queue, tmp_path, data, limit):
    path = tmp_path / "out.bin"
    path.write_bytes(data)
    result = Execution(f"cat {path}", timeout=10, output_limit=limit).run()
    assert result.ok, result
    assert isinstance(result.output, str)
    result.output.encode("utf-8")  # storable anywhere: no lone surrogate
    assert "\x00" not in result.output
    if len(data) <= limit and b"\x00" not in data:
        try:
            assert result.output == data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    worker = queue.register_worker(1)
    queue.enqueue(JobSpec(command="true", id=f"b{os.urandom(6).hex()}"))
    job = queue.claim(worker)
    queue.finish(job, RunResult(0, None, result.output), worker)
    assert queue.get(job.id).output == result.output
