"""SPEC 7 from the command line: `enqueue --after/--queue`, blocked jobs in `list` and `show`,
`queue ...`, `schedule ...`, `status --queue`, and a dead dependency retried with `dlq retry`
by real worker processes."""

from __future__ import annotations

import json

import pytest


def one_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_enqueue_after_and_queue(run, queue):
    build = run.ok("enqueue", "--id", "build", "make").strip()
    job = run.json("enqueue", "--after", "bui", "--queue", "deploy", "./deploy.sh")
    assert (job["after"], job["queue"], job["schedule"]) == ([build], "deploy", None)
    data = json.loads(run.ok("enqueue", '{"command": "x", "after": ["build"], "queue": "q1"}',
                             "--json"))  # fmt: skip
    assert (data["after"], data["queue"]) == (["build"], "q1")
    listing = run.ok("list", "--queue", "deploy")
    assert "after build" in listing and "make" not in listing
    assert [j["id"] for j in run.json("list", "--queue", "deploy")] == [job["id"]]
    assert run.json("status", "--queue", "deploy")["pending"] == 1


def test_edit_and_retry_give_the_job_s_dependencies_in_json(run, queue):
    """`edit --json` and `retry --json` printed `"after": []` for a job that waits for
    another: a script re-creating a pipeline from them lost its order."""
    run.ok("enqueue", "--id", "build", "--delay", "300", "make")
    run.ok("enqueue", "--id", "deploy", "--after", "build", "./deploy.sh")
    assert run.json("edit", "deploy", "--priority", "5")["after"] == ["build"]
    run.ok("cancel", "deploy")
    assert [job["after"] for job in run.json("retry", "deploy")] == [["build"]]
    assert run.json("show", "deploy")["after"] == ["build"]


def test_show_gives_each_dependency_its_state(run, queue):
    """`show`'s after line names each dependency's state: a cancelled one was "(waiting)"."""
    run.ok("enqueue", "--id", "build", "make")
    run.ok("enqueue", "--id", "lint", "lint")
    job_id = run.ok("enqueue", "--after", "build", "--after", "lint", "./deploy.sh").strip()

    def after() -> str:
        [line] = [line for line in run.ok("show", job_id).splitlines() if line.startswith("after")]
        return line

    assert after().endswith("build (pending), lint (pending)")
    run.ok("cancel", "build")
    assert queue.get(job_id).state == "cancelled"
    assert after().endswith("build (cancelled), lint (pending)")


@pytest.mark.parametrize(
    "args, says",
    [(["--after", "nope", "x"], "'nope'"), (["--queue", "no good", "x"], "queue"),
     (['{"command": "x", "after": "build"}'], "'after'"),
     (['{"command": "x", "queue": ""}'], "'queue'")],
)  # fmt: skip
def test_bad_dependencies_and_queues_exit_2_enqueueing_nothing(run, queue, args, says):
    result = run("enqueue", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert queue.counts()["pending"] == 0


def test_a_file_names_earlier_lines_and_a_bad_reference_names_its_line(run, queue, tmp_path):
    good = tmp_path / "pipeline.jsonl"
    good.write_text('{"id": "fetch", "command": "a"}\n# then\n{"command": "b", "after": ["fetch"]}\n')
    ids = run.ok("enqueue", "--file", str(good)).split()
    assert run.json("show", ids[1])["after"] == ["fetch"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "one", "command": "a"}\n\n{"command": "b", "after": ["two"]}\n')
    error = one_error(run("enqueue", "--file", str(bad)), 2)
    assert "line 3" in error and "'two'" in error
    assert queue.counts()["pending"] == 2


def test_queue_commands(run, queue):
    run.ok("enqueue", "--queue", "reports", "x")
    limited = run.json("queue", "limit", "reports", "2")
    assert (limited["name"], limited["limit"], limited["pending"]) == ("reports", 2, 1)
    assert run.json("queue", "pause", "idle")["paused"] is True
    listed = {q["name"]: q for q in run.json("queue", "list")}
    assert set(listed) == {"reports", "idle"}
    assert set(listed["reports"]) == {"name", "pending", "processing", "completed", "failed",
                                      "dead", "cancelled", "limit", "paused"}  # fmt: skip
    assert "reports" in run.ok("queue", "list")
    run.ok("queue", "resume", "idle")
    run.ok("queue", "limit", "reports", "none")
    assert [q["name"] for q in run.json("queue", "list")] == ["reports"]
    # A range error, not click's "No such option '-1'".
    assert "the limit must be from 0 to" in one_error(run("queue", "limit", "reports", "-1"), 2)
    assert run.json("queue", "list")[0]["limit"] is None  # nothing changed
    one_error(run("queue", "limit", "a b", "1"), 2)


def test_list_says_a_waiting_job_s_queue_is_paused(run):
    """A due job of a paused queue read "due now", though no worker claims it."""
    job_id = run.ok("enqueue", "--queue", "hold", "echo a").strip()
    run.ok("queue", "pause", "hold")
    row = next(line for line in run.ok("list").splitlines() if line.startswith(job_id))
    assert "queue paused" in row and "due now" not in row
    run.ok("queue", "resume", "hold")
    row = next(line for line in run.ok("list").splitlines() if line.startswith(job_id))
    assert "due now" in row
    # A limit of 0 holds it as a pause does (QA: it read "due now").
    run.ok("queue", "limit", "hold", "0")
    row = next(line for line in run.ok("list").splitlines() if line.startswith(job_id))
    assert "queue limit 0" in row and "due now" not in row
    run.ok("queue", "limit", "hold", "1")
    row = next(line for line in run.ok("list").splitlines() if line.startswith(job_id))
    assert "due now" in row


def test_schedule_commands(run, queue, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    added = run.json("schedule", "add", "nightly", "0 3 * * *", "./backup.sh", "--tz",
                     "Europe/Paris", "--no-overlap", "--priority", "4", "--queue", "ops")  # fmt: skip
    assert (added["zone"], added["no_overlap"], added["priority"], added["queue"], added["cwd"]) \
        == ("Europe/Paris", True, 4, "ops", str(tmp_path))  # fmt: skip
    assert added["next_due"].endswith(("02:00:00+00:00", "01:00:00+00:00"))
    [listed] = run.json("schedule", "list")
    assert {"name", "cron", "zone", "next_due", "last_job_id", "paused"} <= set(listed)
    job = run.json("schedule", "run", "nightly")
    assert (job["schedule"], job["queue"]) == ("nightly", "ops")
    assert run.json("schedule", "list")[0]["last_job_id"] == job["id"]
    assert run.json("schedule", "pause", "nightly")["paused"] is True
    assert run.json("schedule", "resume", "nightly")["paused"] is False
    one_error(run("schedule", "add", "nightly", "@daily", "x"), 2)
    one_error(run("schedule", "add", "x", "* * *", "x"), 2)
    one_error(run("schedule", "add", "x", "@daily", "x", "--tz", "Nowhere/Land"), 2)
    # `localtime` is a file of the zone database: whichever zone this host has, not a zone.
    assert "not an IANA zone" in one_error(
        run("schedule", "add", "x", "@daily", "x", "--tz", "localtime"), 2)
    assert "64 ASCII letters" in one_error(run("enqueue", "--queue", "ünï", "x"), 2)
    one_error(run("schedule", "add", "bad name", "@daily", "x"), 2)
    one_error(run("schedule", "add", "x", "@daily", '{"command": "x", "delay": 5}'), 2)
    # Refused by name, before the value is looked at (QA: "each id in 'after' must be a string")
    for bad in ('"after": [1]', '"after": ["x"]', '"delay": "soon"', '"id": 7'):
        line = one_error(run("schedule", "add", "x", "@daily", '{"command": "x", %s}' % bad), 2)
        assert "a schedule's job cannot have" in line, line
    one_error(run("schedule", "run", "other"), 1)
    assert "no schedule '\\xffx'" in one_error(run("schedule", "run", "\udcffx"), 1)
    run.ok("schedule", "remove", "nightly")
    one_error(run("schedule", "remove", "nightly"), 1)
    assert run.json("schedule", "list") == []


def test_a_schedule_lists_only_the_keys_it_takes_and_names_its_queue(run):
    """Its unknown-key message listed id, delay, run_at and after, which a schedule refuses;
    with no queue given, `list --json` said null where its jobs go to "default"."""
    error = one_error(run("schedule", "add", "j4", "@hourly", '{"command": "x", "bogus": 1}'), 2)
    assert error.endswith(
        "unknown key 'bogus' (valid: command, max_retries, priority, timeout, queue, cwd)"
    )
    assert run.json("schedule", "add", "j4", "@hourly", "x")["queue"] == "default"
    [listed] = run.json("schedule", "list")
    assert listed["queue"] == "default" == run.json("schedule", "run", "j4")["queue"]


def test_a_dead_dependency_blocks_until_dlq_retry(qc, run, queue, tmp_path):
    """Real `worker start --burst` processes: the dependent of a dead job is blocked (and does
    not keep `--burst` waiting); retried once it can succeed, both complete."""
    marker = tmp_path / "ready"
    run.ok("config", "set", "max-retries", "1")
    dep = run.ok("enqueue", "--id", "dep", f"test -e {marker}").strip()
    after = run.ok("enqueue", "--after", dep, "echo after").strip()
    done = qc("worker", "start", "--burst", "--count", "2", timeout=30)
    assert done.returncode == 0, done.stderr
    assert run.json("show", dep)["state"] == "dead"
    shown = run.ok("show", after)
    assert "blocked" in shown and "dep" in shown
    assert "blocked: dep" in run.ok("list")
    marker.write_text("")
    run.ok("dlq", "retry", dep)
    done = qc("worker", "start", "--burst", "--count", "2", timeout=30)
    assert done.returncode == 0, done.stderr
    job = run.json("show", after)
    assert (job["state"], job["after"], job["output"]) == ("completed", ["dep"], "after\n")


def test_a_schedule_s_json_shows_the_priority_and_timeout_its_jobs_get(run):
    """`"priority": null` where its jobs get 0 (as `--help` says), and `"timeout": 5.0`."""
    added = run.json("schedule", "add", "plain", "@daily", "x")
    assert (added["priority"], added["timeout"]) == (0, None)
    whole = run.json("schedule", "add", "whole", "@daily", "x", "--timeout", "5", "--priority", "3")
    assert (whole["priority"], whole["timeout"]) == (3, 5) and type(whole["timeout"]) is int
    part = run.json("schedule", "add", "part", "@daily", '{"command": "x", "timeout": 2.5}')
    assert part["timeout"] == 2.5
    listed = {info["name"]: info for info in run.json("schedule", "list")}
    assert [(listed[n]["priority"], listed[n]["timeout"]) for n in ("plain", "whole", "part")] \
        == [(0, None), (3, 5), (0, 2.5)]  # fmt: skip
    assert "5.0" not in run.ok("schedule", "list", "--json")
    assert run.json("schedule", "run", "plain")["priority"] == 0


def test_show_still_names_a_dependency_purged_after_it_completed(run, queue):
    run.ok("enqueue", "--id", "fetch", "true")
    run.ok("enqueue", "--id", "report", "--after", "fetch", "--queue", "later", "true")
    run.ok("worker", "start", "--burst", "--queue", "default")
    assert run.json("purge", "--state", "completed")["deleted"] == 1
    shown = run.json("show", "report")
    assert (shown["state"], shown["after"]) == ("pending", ["fetch"])
    assert "after fetch" not in run.ok("list", "--queue", "later"), "waits for nothing"


def test_show_says_a_dead_dependency_was_purged_not_completed(run, queue):
    """Once a dead dependency is purged, its dependent is cancelled naming it; `show` said it
    ran after it "(completed)"."""
    run.ok("enqueue", "--id", "fetch", '{"command": "exit 3", "max_retries": 0}')
    run.ok("enqueue", "--id", "report", "--after", "fetch", "true")
    run.ok("worker", "start", "--burst")
    assert run.json("show", "report")["state"] == "pending"  # blocked by the dead fetch
    assert run.json("purge", "--state", "dead")["deleted"] == 1
    shown = run.ok("show", "report")
    assert "fetch (purged)" in shown and "(completed)" not in shown, shown
    assert run.json("show", "report")["state"] == "cancelled"
    # QA: `retry report` then ran it, though fetch never completed.
    result = run("retry", "report")
    assert (result.exit_code, result.output) == (1, "Error: job report runs after fetch, which "
        "was purged before it completed: it can never run after it (enqueue it anew without "
        "fetch)\n")  # fmt: skip
    assert run.json("show", "report")["state"] == "cancelled"
