"""Job text never reaches a hook's shell text or a metric's label (SPEC 8): hooks get it only in
their environment, and `queuectl metrics` labels are queue names, states and outcomes only."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from .test_cli_fuzz_features import FeatureInvoker
from .test_security import drain

INJECTED = [
    # (id, command): each command runs harmlessly itself (its shell syntax is quoted or in a
    # comment); only a shell that got it as code would create a pwned-* file.
    ("$(touch${IFS}pwned-1)", "true # $(touch pwned-2) `touch pwned-3`"),
    ("`touch${IFS}pwned-4`", ": '$(touch pwned-5)'\n: '\"`touch pwned-6`\"' ; exit 0"),
    ("q'\"x;touch${IFS}pwned-7", "exit 3 # '; touch pwned-8; echo \""),
    ("nl$(touch${IFS}pwned-9)", ": 'a\nb $(touch pwned-10)'"),
]
HOOK = ('printf "%s\\0%s\\0%s\\0" "$QUEUECTL_JOB_ID" "$QUEUECTL_JOB_STATE" '
        '"$QUEUECTL_JOB_COMMAND" > "hook-$$.rec"; echo $QUEUECTL_JOB_COMMAND $QUEUECTL_JOB_ID')


def test_job_text_reaches_hooks_only_as_data_and_never_a_metric(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workers', the jobs' and the hooks' directory
    invoke = FeatureInvoker(str(tmp_path / "queue.db"))
    try:
        for key in ("on-completed", "on-failed", "on-dead", "on-cancelled"):
            assert invoke("config", "set", key, HOOK).exit_code == 0
        assert invoke("config", "set", "max-retries", "1").exit_code == 0
        for job_id, command in INJECTED:
            result = invoke("enqueue", json.dumps({"id": job_id, "command": command,
                                                   "cwd": str(tmp_path)}))  # fmt: skip
            assert result.exit_code == 0, result.stderr
        # A queue name cannot carry shell text at all.
        refused = invoke("enqueue", json.dumps({"command": "true", "queue": "$(touch pwned-q)"}))
        assert refused.exit_code == 2
        cancelled = invoke("enqueue", "--id", "c$(touch${IFS}pwned-11)", "--delay", "3600",
                           "--", ": '$(touch pwned-12)'")  # fmt: skip
        assert cancelled.exit_code == 0
        assert invoke("cancel", "c$(touch${IFS}pwned-11)").exit_code == 0
        drain(invoke.db)

        records = []
        for path in tmp_path.glob("hook-*.rec"):
            fields = path.read_text().split("\0")
            records.append(tuple(fields[:3]))
        expected = {(job_id, "dead" if command.startswith("exit 3") else "completed", command)
                    for job_id, command in INJECTED}  # fmt: skip
        expected.add(("c$(touch${IFS}pwned-11)", "cancelled", ": '$(touch pwned-12)'"))
        assert set(records) == expected
        assert sorted(p.name for p in tmp_path.rglob("*pwned*")) == []

        metrics = invoke("metrics")
        assert metrics.exit_code == 0
        for job_id, command in [*INJECTED, ("c$(touch${IFS}pwned-11)", "")]:
            assert job_id not in metrics.stdout
            assert "pwned" not in metrics.stdout and "touch" not in metrics.stdout
        for family in text_string_to_metric_families(metrics.stdout):
            for sample in family.samples:
                assert set(sample.labels) <= {"queue", "state", "outcome", "le"}, sample
                assert sample.labels.get("queue", "default") == "default", sample
    finally:
        invoke.queue.close()
