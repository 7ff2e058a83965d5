"""`history`, `stats`, `metrics` and the hook keys of `config` (SPEC 8)."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl.cli.observe import parse_listen
from queuectl.errors import InvalidInput
from support import wait_until


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def burst(run) -> None:
    assert run("worker", "start", "--burst").exit_code == 0


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a metrics page, by name and sorted labels (parsed by the client's own
    parser: the page is valid Prometheus text)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_history_oldest_first_with_attempts(run):
    job_id = run.ok("enqueue", '{"command": "exit 3", "max_retries": 2}').strip()
    run.ok("config", "set", "backoff-base", "1")
    burst(run)
    events = run.json("history", job_id[:5])
    assert [(e["event"], e["attempt"], e["exit_code"], e["error"]) for e in events] == [
        ("enqueued", 0, None, None),
        ("started", 1, None, None),
        ("failed", 1, 3, "exit code 3"),
        ("started", 2, None, None),
        ("dead", 2, 3, "exit code 3"),
    ]
    assert set(events[0]) == {"at", "event", "attempt", "worker", "exit_code", "error"}
    assert events[1]["worker"] and events[1]["at"].endswith("+00:00")
    table = run.ok("history", job_id).splitlines()
    assert table[0].split() == ["AT", "EVENT", "ATTEMPT", "WORKER", "EXIT", "ERROR"]
    assert [line.split()[1] for line in table[1:]] == [e["event"] for e in events]


def test_history_of_an_unknown_job_is_exit_1(run):
    assert "no job" in one_error_line(run("history", "nope"), 1)


def test_stats_json_and_table(run):
    run.ok("enqueue", "true")
    run.ok("enqueue", '{"command": "exit 1", "max_retries": 1}')
    burst(run)
    report = run.json("stats", "--since", "15m")
    assert report["seconds"] == 900
    default = report["queues"]["default"]
    assert default["runs"] == {"completed": 1, "failed": 0, "dead": 1, "cancelled": 0}
    assert default["finished"] == 2
    assert default["finished_per_minute"] == pytest.approx(2 / 15)
    assert set(default["run_time"]) == {"p50", "p95", "max"}
    assert set(default["wait"]) == {"p50", "p95"}
    assert default["oldest_waiting_age"] is None
    assert run.json("stats", "--queue", "none")["queues"]["none"]["finished"] == 0
    # -q, as `list`, `status` and `purge` take it (QA)
    assert run.json("stats", "-q", "default")["queues"]["default"]["finished"] == 2
    table = run.ok("stats")
    assert "QUEUE" in table and "default" in table


@pytest.mark.parametrize("since, said", [("90s", "90s"), ("100m", "100m"), ("36h", "36h"),
                                         ("7200", "2h"), ("7d", "7d")])  # fmt: skip
def test_stats_says_the_window_it_was_given(run, since, said):
    """It said "last 1m" for 90s, "last 1d" for 36h: each cut down to one whole unit."""
    assert run.ok("stats", "--since", since).startswith(f"last {said}, ")


@pytest.mark.parametrize("since", ["1w", "-1", "soon", ""])
def test_stats_bad_since_is_exit_2(run, since):
    result = run("stats", "--since", since)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "90s, 15m" in result.stderr


def test_metrics_parse_and_counters_never_go_down(run):
    run.ok("enqueue", "true")
    run.ok("enqueue", "true")
    run.ok("enqueue", '{"command": "exit 1", "max_retries": 1}')
    burst(run)
    run.ok("enqueue", '{"command": "true", "delay": 3600}')
    before = samples(run.ok("metrics"))
    default = (("queue", "default"),)
    assert before[("queuectl_jobs", (("queue", "default"), ("state", "completed")))] == 2
    assert before[("queuectl_jobs", (("queue", "default"), ("state", "pending")))] == 1
    assert before[("queuectl_runs_total", (("outcome", "completed"), *default))] == 2
    assert before[("queuectl_runs_total", (("outcome", "dead"), *default))] == 1
    assert before[("queuectl_run_duration_seconds_count", default)] == 3
    assert before[("queuectl_run_duration_seconds_bucket", (("le", "+Inf"), *default))] == 3
    assert before[("queuectl_worker_threads", ())] == 0
    assert all("id" not in dict(labels) for _, labels in before)
    # Finished jobs purged, with their history: the counters stay.
    run.ok("purge", "--state", "completed", "--state", "dead")
    after = samples(run.ok("metrics"))
    assert after[("queuectl_jobs", (("queue", "default"), ("state", "completed")))] == 0
    for key, value in before.items():
        if key[0].startswith(("queuectl_runs_total", "queuectl_run_duration_seconds")):
            assert after[key] >= value, key


def test_metrics_leave_out_a_queue_whose_jobs_were_all_purged_before_any_ran(run):
    """QA: its job counts stayed, at zero, in every scrape for ever (`queue list` leaves it
    out). A queue whose jobs ran keeps its series: its counters never go down."""
    run.ok("enqueue", "--queue", "ran", "true")
    burst(run)
    run.ok("cancel", run.ok("enqueue", "--queue", "gone", "--delay", "3600", "true").strip())
    assert ("queuectl_jobs", (("queue", "gone"), ("state", "cancelled"))) in samples(
        run.ok("metrics"))
    run.ok("purge")
    queues = {dict(labels).get("queue") for _, labels in samples(run.ok("metrics"))}
    assert "gone" not in queues and "ran" in queues


@pytest.mark.parametrize(
    "listen, host, port",
    [("9464", "127.0.0.1", 9464), ("0.0.0.0:80", "0.0.0.0", 80), ("[::1]:9464", "::1", 9464),
     ("localhost:1", "localhost", 1)],
)  # fmt: skip
def test_listen_addresses(listen, host, port):
    assert parse_listen(listen) == (host, port)


@pytest.mark.parametrize("listen", ["0", "65536", "x", "host:", "-1", "1.5", "fe80::1", "::1",
                                    "::1:9464"])
def test_metrics_bad_port_is_exit_2(run, listen):
    result = run("metrics", "--serve", listen)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    with pytest.raises(InvalidInput):
        parse_listen(listen)


def test_metrics_bad_host_is_one_error_line_exit_2(run):
    result = run("metrics", "--serve", "no.such.host.invalid:9464")
    assert "cannot listen" in one_error_line(result, 2)


def test_metrics_an_ipv6_address_it_cannot_listen_on_is_said_in_brackets(run):
    """QA: "cannot listen on fe80::1:19471" (the port read as the address's last group)."""
    line = one_error_line(run("metrics", "--serve", "[fe80::1]:19471"), 1)
    assert line.startswith("Error: cannot listen on [fe80::1]:19471: ")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_metrics_server_survives_garbage_and_stalled_clients(qc, spawn, tmp_path):
    assert qc("enqueue", "true").returncode == 0
    port = _free_port()
    server = spawn("metrics", "--serve", str(port))
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    page = wait_until(scrape, 30, f"the metrics server ({server.log()})")
    assert ("queuectl_jobs", (("queue", "default"), ("state", "pending"))) in samples(page)
    stalled = socket.create_connection(("127.0.0.1", port))  # says nothing, stays open
    stalled.sendall(b"GET /met")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as garbage:
            garbage.sendall(b"\x00\xff\x16\x03 nonsense\r\n\r\n")
            garbage.recv(1024)
        assert samples(scrape() or "")  # still answers, with the stalled client connected
    finally:
        stalled.close()
    server.signal(2)  # SIGINT
    assert server.wait(30) == 0


def test_hook_keys_in_config(run):
    assert run.json("config", "list")["on-completed"] == ""
    command = 'curl -s -d "job $QUEUECTL_JOB_ID" https://chat.example/hook'
    assert run.ok("config", "set", "on-completed", command) == f"on-completed = {command}\n"
    assert run.ok("config", "get", "on-completed") == command + "\n"
    assert run.json("config", "list")["on-completed"] == command
    assert run.ok("config", "set", "on-completed", "") == "on-completed = \n"
    assert run.json("config", "list")["on-completed"] == ""
    assert json.loads(run.ok("config", "list", "--json"))["max-retries"] == 3


def test_a_failed_hook_is_one_line_in_the_worker_log(qc):
    assert qc("config", "set", "on-completed", "echo nope >&2; exit 4").returncode == 0
    job_id = qc("enqueue", "true").stdout.strip()
    done = qc("worker", "start", "--burst")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "hook on-" in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"hook on-completed for job {job_id} failed: exit code 4 (nope)"
    ), done.stderr


def test_a_cancel_by_a_command_is_in_the_history_and_its_hook_recorded(run, queue):
    run.ok("config", "set", "on-cancelled", "echo cancelled")
    job_id = run.ok("enqueue", '{"command": "true", "delay": 600}').strip()
    run.ok("cancel", job_id)
    assert [e["event"] for e in run.json("history", job_id)] == ["enqueued", "cancelled"]
    run.ok("retry", job_id)
    assert run.json("history", job_id)[-1]["event"] == "retried"
    [delivery] = queue.deliveries()
    assert (delivery.job_id, delivery.state, delivery.hook) == (job_id, "cancelled", "echo cancelled")


@pytest.mark.parametrize("args", [
    ["stats", "--since", "1h"], ["history", "--json", "first"], ["metrics"],
    ["worker", "start", "--burst"], ["schedule", "add", "s", "@daily", "true"],
])  # fmt: skip
def test_commands_on_sqlite_load_no_server_driver(tmp_path, args):
    """On a SQLite file the engine is imported without psycopg (Settings.engine): a command that
    imported queuectl.history before opening the queue paid for loading it, and so did
    `metrics`, `worker start` and `schedule add` (QA: +200 ms)."""
    import subprocess
    import sys

    from queuectl import JobSpec, Queue

    db = str(tmp_path / "q.db")
    queue = Queue(db)
    queue.enqueue(JobSpec(command="true", id="first"))
    queue.close()
    code = (
        "import json, sys\nfrom queuectl.cli import cli\ntry:\n"
        f"    cli.main({['--db', db, *args]!r}, prog_name='queuectl', standalone_mode=False)\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"  # (worker start's)
        "print(json.dumps([m for m in ('psycopg', 'psycopg2') if sys.modules.get(m)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_stats_over_a_long_window_prints_plain_decimals(run):
    """One job in 100 days was `DONE/MIN 6.94e-06`."""
    run.ok("enqueue", "true")
    burst(run)
    header, row = run.ok("stats", "--since", "100d").splitlines()[1:3]
    done_per_minute = row.split()[header.split().index("DONE/MIN")]
    assert done_per_minute == "0.00"
    rate = run.ok("stats", "--since", "1m").splitlines()[2].split()[5]
    assert rate == "1.00"


def test_metrics_port_in_other_digits_is_exit_2(qc):
    """`--serve ٩٤٦٤` served on port 9464 (int() takes any Unicode digit)."""
    import subprocess

    try:
        done = qc("metrics", "--serve", "\u0669\u0664\u0666\u0664", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the port was taken: it served /metrics")
    assert done.returncode == 2, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: Invalid value for '--serve': expected [HOST:]PORT, got '\u0669\u0664\u0666\u0664'"
    ]
    assert "Traceback" not in done.stderr
