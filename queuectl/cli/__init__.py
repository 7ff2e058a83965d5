"""The click CLI (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("queuectl: the CLI is not built yet")
