"""`landfall login`: save --url, the token, --org and --project in a profile and make it current.

Subtle: login reads the global flags as given (not resolved through the environment or an
existing profile): what is saved is exactly what was typed, and the token is read from standard
input with `--token-stdin` so that it never sits in the shell's history.
"""

from __future__ import annotations

import click

from libs.cli import config as cfg
from libs.cli.context import Run, read_stdin_secret, runs
from libs.cli.errors import usage


@click.command()
@click.option("--profile-name", hidden=True, help="same as the global --profile")
@runs
def login(run: Run, profile_name: str | None) -> None:
    """Save --url, --token (or --token-stdin), --org and --project in a profile (0600 file)."""
    flags = dict(run.flags)
    if flags.pop("token_stdin", False):
        flags["token"] = read_stdin_secret("--token-stdin")
    name = profile_name or flags.get("profile") or cfg.DEFAULT_PROFILE
    if not flags.get("url"):
        raise usage("error: login needs --url URL (Landfall's one address)")
    if not flags.get("token"):
        raise usage("error: login needs --token TOKEN or --token-stdin")
    path = cfg.config_path()
    cfg.save_profile(path, name, {k: flags.get(k) for k in cfg.FIELDS}, make_current=True)
    if run.output.json:
        run.output.document({"profile": name, "path": str(path), "url": flags["url"]})
    else:
        run.output.line(f"saved profile {name} ({flags['url']}) in {path}")
