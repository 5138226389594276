"""`landfall tokens create|list|revoke`: a component's CI tokens (the webhook gateway).

A CI token (`lfci_…`) may only deploy its component and read its deployments; the secret is in
the answer to `create` alone (the list holds prefixes), so `create` says to store it at once.
"""

from __future__ import annotations

import click

from libs.cli.context import Group, Run, given, runs


@click.group(cls=Group, help="CI tokens of a component (webhook only).")
def tokens() -> None:
    pass


@tokens.command("create")
@click.argument("component")
@click.option("--name", metavar="NAME", help="what it is for, e.g. github")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), metavar="DAYS")
@runs
def tokens_create(run: Run, component: str, name: str | None, expires_in_days: int | None) -> None:
    """A new CI token for the component: shown once, store it in your CI's secret store."""
    run.no_ci_token("tokens create")
    body = given(name=name, expires_in_days=expires_in_days)
    answer = run.api.call("POST", run.component_path(component) + "/tokens", body=body)
    run.output.answer(
        answer,
        "id name token expires=when(expires_at)",
        notes=["the token is shown only now: store it as LANDFALL_TOKEN in your CI's secret store"],
    )


@tokens.command("list")
@click.argument("component")
@runs
def tokens_list(run: Run, component: str) -> None:
    """The component's CI tokens (prefixes only)."""
    run.output.listing(
        run.api.call("GET", run.component_path(component) + "/tokens"),
        "id name prefix=token_prefix created=when(created_at) expires=when(expires_at)"
        " revoked=when(revoked_at) last_used=when(last_used_at)",
        empty=f"no CI tokens for {component}: `landfall tokens create {component}`",
    )


@tokens.command("revoke")
@click.argument("component")
@click.argument("token_id", metavar="TOKEN_ID")
@runs
def tokens_revoke(run: Run, component: str, token_id: str) -> None:
    """Revoke a CI token: it stops working at once."""
    run.no_ci_token("tokens revoke")
    run.api.call("DELETE", f"{run.component_path(component)}/tokens/{token_id}")
    if run.output.json:
        run.output.document({"id": token_id, "revoked": True})
    else:
        run.output.line(f"revoked {token_id}")
