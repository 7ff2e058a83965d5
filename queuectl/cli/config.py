"""Configuration stored in the queue's database: ``config get``, ``set`` and ``list``."""

from __future__ import annotations

import sys

import click

from ..config import KEYS, shown
from .common import Settings, clean, json_option, pass_settings, print_json, print_table


def _complete_keys(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [key for key in KEYS if key.startswith(incomplete)]


def _keys_help() -> str:
    return "\n".join(
        f"  {key.name:<14}{key.help} (default {shown(key.default) or 'none'})"
        for key in KEYS.values()
    )


@click.group(
    no_args_is_help=False,  # no command: "Error: Missing command." (SPEC 4)
    help="Read and change settings. They live in the queue's database, so every worker, TUI "
    "and command on this queue sees them at once.\n\n\b\nKeys:\n" + _keys_help()
)
def config() -> None:
    pass


@config.command()
@click.argument("key", shell_complete=_complete_keys)
@pass_settings
def get(settings: Settings, key: str) -> None:
    """Print the value of KEY (to a terminal, with control characters shown as escapes)."""
    value = shown(settings.core.config_get(key))
    if _terminal():
        click.echo(clean(value, one_line=True))
    else:  # as stored (click.echo would strip its ANSI codes for a pipe)
        click.echo(value, color=True)


def _terminal() -> bool:
    return sys.stdout.isatty()


@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key", shell_complete=_complete_keys)
@click.argument("value")
@pass_settings
def set_(settings: Settings, key: str, value: str) -> None:
    """Set KEY to VALUE (validated; an invalid one changes nothing).

    \b
    Examples:
      queuectl config set max-retries 5
      queuectl config set backoff-base 1.5
      queuectl config set on-dead 'notify-send "job $QUEUECTL_JOB_ID is dead"'
      queuectl config set on-dead ''        (no hook)
    """
    stored = settings.core.config_set(key, value)
    click.echo(f"{key} = {clean(shown(stored), one_line=True)}")  # read by a person


@config.command("list")
@json_option
@pass_settings
def list_config(settings: Settings, as_json: bool) -> None:
    """Every key with its value (--json: an object keyed by the key names)."""
    values = settings.core.config()
    if as_json:
        print_json(values)
        return
    rows = []
    for name, value in values.items():
        key = KEYS[name]
        mark = "" if value == key.default else f" (default {shown(key.default) or 'none'})"
        rows.append([name, clean(shown(value), one_line=True), f"{key.help}{mark}"])
    print_table(["KEY", "VALUE", "MEANING"], rows)
