"""The chaos run (tests/chaos.py), small, on both backends: opt-in (QUEUECTL_CHAOS=1), never in
CI's run: it takes minutes. `python -m tests.chaos --help` runs a bigger one by hand."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import pg_server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.environ.get("QUEUECTL_CHAOS") != "1", reason="the chaos run is opt-in: QUEUECTL_CHAOS=1"
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_invariant_holds_through_kills_stops_cancels_retries_and_outages(backend):
    env = dict(os.environ)
    if backend == "postgresql":
        env["QUEUECTL_TEST_PG_URL"] = pg_server()
    jobs = os.environ.get("QUEUECTL_CHAOS_JOBS", "300")
    out = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--backend", backend, "--jobs", jobs],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^duplicates +0$", out.stdout, re.M), out.stdout
