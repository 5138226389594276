"""`landfall config show|set`: a component's configuration in one environment (API.md's
"Per-environment configuration", issue 14).

Subtle:
- `PUT …/config` replaces every field but `secrets`, so `set` reads the configuration first and
  sends it back with the changes: a field not named on the command line stays as it is.
- Secret values go out once and never come back: the answers hold `secret_names` only.
  `--secret-stdin NAME` reads one value from standard input, so it never sits in shell history
  (`--secret NAME=VALUE`, CLI.md's form, does).
- A server from before issue 14 answers its own 404/405 for the route: exit 4 with
  "does not have the per-environment configuration endpoint yet".
"""

from __future__ import annotations

from typing import Any

import click

from libs.cli.context import Group, Run, parse_pairs, read_stdin_secret, runs
from libs.cli.errors import usage

CONFIG_FIELDS = ("replicas", "resources", "env", "autoscaling", "probes", "ingress", "auto_rollback")
ENDPOINT = "per-environment configuration"


@click.group(cls=Group, help="Per-environment configuration of a component.")
def config() -> None:
    pass


def _config_path(run: Run, component: str, environment: str) -> str:
    return f"{run.component_path(component)}/environments/{environment}/config"


@config.command("show")
@click.argument("component")
@click.option("--environment", metavar="ENV", required=True)
@runs
def config_show(run: Run, component: str, environment: str) -> None:
    """A component's configuration in one environment (secret names only, never values)."""
    answer = run.api.call_new_endpoint(ENDPOINT, "GET", _config_path(run, component, environment))
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields([(key, answer.get(key)) for key in ("version", *CONFIG_FIELDS, "secret_names")])


@config.command("set")
@click.argument("component")
@click.option("--environment", metavar="ENV", required=True)
@click.option("--replicas", type=click.IntRange(0, 100), metavar="N")
@click.option("--env", metavar="NAME=VALUE", multiple=True)
@click.option("--secret", metavar="NAME=VALUE", multiple=True)
@click.option(
    "--secret-stdin",
    metavar="NAME",
    help="set the secret NAME to what standard input holds (kept out of the shell's history)",
)
@runs
def config_set(
    run: Run,
    component: str,
    environment: str,
    replicas: int | None,
    env: tuple[str, ...],
    secret: tuple[str, ...],
    secret_stdin: str | None,
) -> None:
    """Change some fields of the configuration; the others stay as they are."""
    run.no_ci_token("config set")
    env_pairs = parse_pairs(env, "--env")
    secret_pairs = parse_pairs(secret, "--secret")
    if secret_stdin is not None:
        if not secret_stdin or "=" in secret_stdin:
            raise usage("error: --secret-stdin takes the secret's NAME; its value comes from standard input")
        secret_pairs[secret_stdin] = read_stdin_secret("--secret-stdin")
    path = _config_path(run, component, environment)
    current = run.api.call_new_endpoint(ENDPOINT, "GET", path) or {}
    body: dict[str, Any] = {key: current[key] for key in CONFIG_FIELDS if current.get(key) is not None}
    if replicas is not None:
        body["replicas"] = replicas
    if env_pairs:
        body["env"] = {**(body.get("env") or {}), **env_pairs}
    if secret_pairs:
        body["secrets"] = secret_pairs
    answer = run.api.call_new_endpoint(ENDPOINT, "PUT", path, body=body)
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields(
        [(key, answer.get(key)) for key in ("version", *CONFIG_FIELDS, "secret_names", "deployment_id")]
    )
