"""Fuzzed command lines (click's CliRunner, in process): whatever a user types, `queuectl` exits
0, or exits 1/2 with exactly one `Error:` line on stderr (for usage errors click's `Usage:` and
`Try` lines may come with it), never a traceback; and a failed command writes nothing.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from queuectl import JobSpec, Queue
from queuectl.cli import cli
from queuectl.models import STATES

from .test_fuzz import VALIDISH, job_text

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What argv can hold: any text but NUL (undecodable bytes arrive as lone surrogates).
ARG = st.text(st.characters(codec=None, exclude_characters="\x00"), max_size=30)


class Invoker:
    def __init__(self, db: str) -> None:
        self.db = db
        self.runner = CliRunner()
        self.queue = Queue(db)

    def snapshot(self) -> list[tuple]:
        Job = self.queue.models.Job
        rows = [tuple(r) for r in Job.select().order_by(Job.seq).tuples()]
        return rows + [("config", tuple(sorted(self.queue.config().items())))]

    def __call__(self, *args: str, input: bytes | None = None):
        before = self.snapshot()
        result = self.runner.invoke(cli, ["--db", self.db, *args], input=input)
        check_contract(result, args)
        if result.exit_code != 0:
            assert self.snapshot() == before, f"{args!r} failed but changed the queue"
        return result


def check_contract(result, args) -> None:
    where = f"queuectl {' '.join(map(repr, args))}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{where} raised {result.exception!r}") from result.exception
    assert result.exit_code in (0, 1, 2), f"{where}: exit {result.exit_code}"
    assert "Traceback" not in result.output, f"{where}: a traceback\n{result.output}"
    if result.exit_code == 0:
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith(("Usage:", "Try "))]
    assert len(errors) == 1 and errors[0].startswith("Error:"), (
        f"{where}: exit {result.exit_code}, stderr {result.stderr!r}"
    )
    if len(lines) > 1:  # click's usage hint: only for usage errors
        assert result.exit_code == 2, f"{where}: {result.stderr!r}"


@pytest.fixture
def invoke(db_path):
    invoker = Invoker(db_path)
    yield invoker
    invoker.queue.close()


@FUZZ
@given(text=job_text())
def test_enqueue_any_argument(invoke, text):
    before = len(invoke.snapshot())
    result = invoke("enqueue", "--", text)
    if result.exit_code == 0:
        job_id = result.stdout.strip()
        assert "\n" not in job_id
        assert len(invoke.snapshot()) == before + 1


@FUZZ
@given(data=VALIDISH, as_json=st.booleans())
def test_enqueue_edge_values(invoke, data, as_json):
    result = invoke("enqueue", *(["--json"] if as_json else []), json.dumps(data))
    if result.exit_code == 0 and as_json:
        job = json.loads(result.stdout)
        assert job["command"] == data["command"]


OPTIONS = ["--max-retries", "--priority", "--timeout", "--delay", "--run-at", "--id"]


@FUZZ
@given(options=st.lists(st.tuples(st.sampled_from(OPTIONS), st.one_of(
    ARG, st.sampled_from(["0", "-1", "1e400", "nan", "2147483648", "9" * 5000, "1.5", "inf"])
)), max_size=3), command=st.one_of(st.just("true"), ARG))
def test_enqueue_any_options(invoke, options, command):
    args = [part for pair in options for part in pair]
    invoke("enqueue", *args, "--", command)


LINES = st.one_of(
    st.sampled_from(["", "   ", "# a comment", "  # indented comment", "true", "echo a b",
                     '{"command": "x"}', '{"command": ""}', "{", '{"id": "same", "command": "x"}',
                     '{"command": "x", "priority": 99999999999}', "{}", '{"nope": 1}']),
    VALIDISH.map(json.dumps),
    ARG.filter(lambda s: "\n" not in s and "\r" not in s),
)


@FUZZ
@given(lines=st.lists(LINES, max_size=8), junk=st.sampled_from([b"", b"\xff\xfe", b"\r"]),
       where=st.integers(0, 8))
def test_enqueue_file_any_lines(invoke, tmp_path, lines, junk, where):
    """All the file's jobs, or (exit 2, naming a line) none of them."""
    encoded = [line.encode("utf-8", "surrogateescape") for line in lines]
    if junk and encoded:
        index = where % len(encoded)
        encoded[index] += junk
    path = tmp_path / "jobs.txt"
    path.write_bytes(b"\n".join(encoded))
    before = len(invoke.snapshot())
    result = invoke("enqueue", "--file", str(path))
    if result.exit_code == 0:
        ids = result.stdout.split()
        assert len(invoke.snapshot()) == before + len(ids)
    else:
        assert result.exit_code == 2, result.stderr
        assert "line " in result.stderr, result.stderr


@FUZZ
@given(key=st.one_of(st.sampled_from(["max-retries", "backoff-base", "job-timeout"]), ARG),
       value=st.one_of(ARG, st.sampled_from(["0", "1", "-1", "1e400", "nan", "9" * 5000, "2.5"])))
def test_config_set_any(invoke, key, value):
    result = invoke("config", "set", "--", key, value)
    if result.exit_code == 0:
        assert invoke("config", "get", key).exit_code == 0


@FUZZ
@given(state=st.one_of(st.sampled_from([*STATES, "PENDING", " Dead ", "all", ""]), ARG),
       as_json=st.booleans())
def test_list_any_state(invoke, state, as_json):
    result = invoke("list", "--state", state, *(["--json"] if as_json else []))
    if result.exit_code == 0 and as_json:
        assert isinstance(json.loads(result.stdout), list)
    elif result.exit_code != 0:
        assert result.exit_code == 2


@FUZZ
@given(ids=st.lists(st.one_of(st.sampled_from(["job-1", "job-", "j", "JOB-1", "%", "_", "*",
                                               "\udcff", "job-\udc80", "job\x7f"]),
                              ARG), min_size=1, max_size=3),
       command=st.sampled_from([("show",), ("show", "--json"), ("dlq", "retry")]))
def test_ids_to_show_and_dlq_retry(invoke, ids, command):
    if not invoke.queue.list_jobs():
        queue = invoke.queue
        worker = queue.register_worker(1)
        queue.enqueue_many([JobSpec(command="x", id=i, max_retries=0)
                            for i in ("job-1", "job-2", "other")])
        from queuectl.executor import RunResult

        dead = queue.claim(worker)
        queue.finish(dead, RunResult(1, "exit code 1", ""), worker)  # job-1 is dead
    if command[0] == "show":
        ids = ids[:1]
    result = invoke(*command, "--", *ids)
    if result.exit_code != 0:
        assert result.exit_code in (1, 2)


HUGE = "9" * 30


@pytest.mark.parametrize("args", [
    ("list", "--limit", HUGE),
    ("list", "--limit", HUGE, "--json"),
    ("dlq", "list", "--limit", HUGE),
    ("list", "--limit", "0"),
])
def test_numeric_options_at_their_extremes(invoke, args):
    invoke.queue.enqueue("true")
    result = invoke(*args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", [
    ("worker", "start", "--burst", "--count", HUGE),
    ("tui", "--workers", HUGE),
])
def test_thread_counts_beyond_any_machine_are_usage_errors(invoke, args):
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "is not in the range" in result.stderr
    assert invoke.queue.live_workers() == []
