"""The benchmarks are not tests: `pytest` never collects anything here (run `python -m tests.bench`)."""

collect_ignore_glob = ["*"]
