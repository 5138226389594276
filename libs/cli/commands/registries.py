"""`landfall registries list|add|test|delete`: the org's image registries (the credentials service).

Subtle:
- A registry is named by id or by display name; a name must be unique in the org, else the
  command asks for the id (exit 6) rather than guessing.
- Secrets never come from the command line: `--password-stdin` (basic), `--config-file FILE|-`
  (docker-config). Standard input holds one secret, so `--token-stdin` cannot share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from libs.cli.context import Group, Run, list_command, read_stdin_secret, runs
from libs.cli.errors import FAILED, INVALID, NOT_FOUND, CliError, usage

REGISTRY_TYPES = ("anonymous", "basic", "docker-config", "vendor")
VENDORS = ("azure", "gcp", "aws")


@click.group(cls=Group, help="Image registries of the org.")
def registries() -> None:
    pass


def resolve_registry(run: Run, name_or_id: str) -> dict[str, Any]:
    """A registry by id, or by display name (exactly one must have it)."""
    answer = run.api.call("GET", f"/v1/orgs/{run.org}/registries")
    items: list[dict[str, Any]] = list(answer.get("items") or [])
    by_id = [r for r in items if r.get("id") == name_or_id]
    if by_id:
        return by_id[0]
    named = [r for r in items if r.get("display_name") == name_or_id]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(str(r["id"]) for r in named)
        raise CliError(
            INVALID, f"error: {len(named)} registries are named {name_or_id!r} ({ids}); give the id"
        )
    raise CliError(
        NOT_FOUND,
        f"error: no registry {name_or_id!r} in org {run.org}\n  next: `landfall registries list`",
    )


registries_list = list_command(
    registries,
    "The org's registries.",
    "/v1/orgs/{org}/registries",
    "id name=display_name type=auth_type host username warnings",
    empty="no registries yet: `landfall registries add NAME --type …`",
)


@registries.command("add")
@click.argument("name", help="display name")
@click.option(
    "--type",
    "kind",
    type=click.Choice(REGISTRY_TYPES),
    required=True,
    help="how Landfall and the cluster authenticate",
)
@click.option("--host", metavar="HOST", help="e.g. ghcr.io (not for docker-config)")
@click.option("--username", metavar="USER", help="basic only")
@click.option("--password-stdin", is_flag=True, help="basic: read the password from standard input")
@click.option(
    "--config-file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="docker-config: a Docker config JSON file ('-': standard input)",
)
@click.option("--vendor", type=click.Choice(VENDORS), help="vendor only")
@runs
def registries_add(
    run: Run,
    name: str,
    kind: str,
    host: str | None,
    username: str | None,
    password_stdin: bool,
    config_file: Path | None,
    vendor: str | None,
) -> None:
    """Register a registry. Secrets come from standard input or a file, never from the command line."""
    run.no_ci_token("registries add")
    if run.flags.get("token_stdin") and (password_stdin or str(config_file) == "-"):
        raise usage("error: standard input can hold the token or the registry secret, not both")
    auth: dict[str, Any] = {"type": kind}
    if kind == "docker-config":
        if config_file is None:
            raise usage("error: --type docker-config needs --config-file FILE (or - for standard input)")
        if str(config_file) == "-":
            auth["config"] = read_stdin_secret("--config-file -")
        else:
            try:
                auth["config"] = config_file.read_text()
            except OSError as exc:
                raise usage(f"error: cannot read --config-file {config_file}: {exc.strerror}") from None
    else:
        if not host:
            raise usage(f"error: --type {kind} needs --host HOST")
        auth["host"] = host
    if kind == "basic":
        if not username:
            raise usage("error: --type basic needs --username USER")
        if not password_stdin:
            raise usage(
                "error: --type basic needs --password-stdin (the password is read from standard input)"
            )
        auth["username"] = username
        auth["password"] = read_stdin_secret("--password-stdin")
    elif username or password_stdin:
        raise usage(f"error: --username and --password-stdin are for --type basic, not {kind}")
    if kind == "vendor":
        if not vendor:
            raise usage("error: --type vendor needs --vendor azure|gcp|aws")
        auth["vendor"] = vendor
    elif vendor:
        raise usage("error: --vendor is for --type vendor")
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/registries", body={"display_name": name, "auth": auth})
    run.output.answer(
        answer,
        "id name=display_name type=auth_type host username vendor created=when(created_at)",
        notes=[f"warning: {warning}" for warning in answer.get("warnings") or []],
    )


@registries.command("test")
@click.argument("registry", metavar="NAME|ID")
@click.option("--repository", metavar="REPO", help="e.g. library/nginx")
@runs
def registries_test(run: Run, registry: str, repository: str | None) -> None:
    """Make a real call to the registry with its stored credentials (exit 1 when it says no)."""
    reg = resolve_registry(run, registry)
    body = {"repository": repository} if repository else {}
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/registries/{reg['id']}/test", body=body)
    if run.output.json:
        run.output.document(answer)
    else:
        verdict = "ok" if answer.get("ok") else "FAILED"
        run.output.line(
            f"{verdict}: {reg.get('display_name')} ({reg.get('host')}): {answer.get('detail', '')}"
        )
    if not answer.get("ok"):
        raise click.exceptions.Exit(FAILED)


@registries.command("delete")
@click.argument("registry", metavar="NAME|ID")
@runs
def registries_delete(run: Run, registry: str) -> None:
    """Delete a registry (refused while a component uses it)."""
    reg = resolve_registry(run, registry)
    run.api.call("DELETE", f"/v1/orgs/{run.org}/registries/{reg['id']}")
    if run.output.json:
        run.output.document({"id": reg["id"], "deleted": True})
    else:
        run.output.line(f"deleted registry {reg.get('display_name')} ({reg['id']})")
