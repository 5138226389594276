"""`landfall keys create`: org API keys (`lfk_…`), API.md's contract of issue 12.

Subtle: a server from before issue 12 has no such route; its own 404/405 (not a problem naming
an object) becomes "this Landfall does not have the org API keys endpoint yet", exit 4.
"""

from __future__ import annotations

import click

from libs.cli.context import Group, Run, given, runs

ROLES = ("owner", "developer", "viewer")


@click.group(cls=Group, help="Org API keys.")
def keys() -> None:
    pass


@keys.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--expires-in-days", type=click.IntRange(min=1), metavar="DAYS")
@runs
def keys_create(run: Run, name: str, role: str, expires_in_days: int | None) -> None:
    """A new org API key (lfk_…): shown once."""
    run.no_ci_token("keys create")
    body = {"name": name, "role": role, **given(expires_in_days=expires_in_days)}
    answer = run.api.call_new_endpoint("org API keys", "POST", f"/v1/orgs/{run.org}/api-keys", body=body)
    run.output.answer(
        answer,
        "id name role key expires=when(expires_at)",
        notes=["the key is shown only now: `landfall login --url URL --token-stdin` keeps it in a profile"],
    )
