"""`history` and `stats` take what they print from queuectl.outcomes, which imports no peewee:
they may import it before opening the queue (on a SQLite file, the queue is opened without
psycopg: tests/cli/test_cli_observe.py checks that for both commands)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_printed_names_load_no_peewee():
    code = (
        "import json, sys\nfrom queuectl.outcomes import OUTCOMES, event_dict\n"
        "print(json.dumps([m for m in ('peewee', 'psycopg', 'queuectl.models') "
        "if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_engine_prints_the_same_names():
    from queuectl import history, outcomes

    assert history.OUTCOMES is outcomes.OUTCOMES and history.event_dict is outcomes.event_dict
