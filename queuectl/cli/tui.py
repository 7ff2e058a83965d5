"""``queuectl tui``: the full-screen app. Textual is imported inside the command only, so that
no scripted command pays for it."""

from __future__ import annotations

import sys

import click

from ..limits import MAX_THREADS
from .common import Settings, WholeNumber, pass_settings, queues_option


def open_tui(
    settings: Settings, workers: int, queues: tuple[str, ...] = (), checked: bool = False
) -> None:
    """``checked``: the caller knows stdin and stdout are a terminal (bare `queuectl`)."""
    # Open the queue first: a bad database is one clear error line, before the screen changes.
    settings.queue
    settings.close()
    # In a pipe or under cron it wrote escape codes until killed.
    if not checked and not has_terminal():
        raise click.ClickException(
            "the TUI needs a terminal: stdin or stdout is not one (scripts use the commands)"
        )
    try:
        from queuectl.tui.app import run_app
    except ImportError as exc:
        raise click.ClickException(f"the TUI is not available ({exc})") from None
    if queues:
        code = run_app(settings.target, workers, queues=queues)
    else:
        code = run_app(settings.target, workers)
    if code:
        sys.exit(code)


def has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@click.command()
@click.option(
    "--workers", "-w", type=WholeNumber(0, MAX_THREADS), default=2, show_default=True,
    help="Worker threads the app runs (0: watch only).",
)
@queues_option("Claim only jobs of this queue (repeatable; default: every queue).")
@pass_settings
def tui(settings: Settings, workers: int, queues: tuple[str, ...]) -> None:
    """Open the terminal UI.

    Live panes of pending, processing, completed and dead jobs, with its own worker pool.
    """
    open_tui(settings, workers, queues)
