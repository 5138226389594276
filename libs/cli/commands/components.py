"""`landfall components list|create|show|delete`: the project's components (the orchestrator).

Subtle: `create` takes the registry by name or id (`registries.resolve_registry`) and sends its
id; `show` adds, after the component's own fields, what runs in each environment.
"""

from __future__ import annotations

from typing import Any

import click

from libs.cli.commands.registries import resolve_registry
from libs.cli.context import Group, Run, parse_pairs, runs
from libs.cli.output import image_with_digest, pick

COMPONENT_TYPES = ("service", "web-application", "scheduled-task", "manual-task")


@click.group(cls=Group, help="Components of the project.")
def components() -> None:
    pass


def _running(component: dict[str, Any]) -> str:
    envs = component.get("environments") or {}
    return ", ".join(
        f"{env}={image_with_digest(running)} ({running.get('status')})" for env, running in envs.items()
    )


def _component_fields(run: Run, comp: dict[str, Any]) -> None:
    run.output.fields(
        pick(comp, "name type image registry=registry_id port schedule timezone env created=when(created_at)")
    )


@components.command("list")
@runs
def components_list(run: Run) -> None:
    """The project's components and what runs where."""
    run.output.listing(
        run.api.call("GET", f"/v1/orgs/{run.org}/projects/{run.project}/components"),
        ("NAME", "TYPE", "IMAGE", "RUNNING"),
        lambda c: (c.get("name"), c.get("type"), c.get("image"), _running(c) or "-"),
        empty="no components yet: `landfall components create NAME …`",
    )


@components.command("create")
@click.argument("name")
@click.option("--type", "kind", type=click.Choice(COMPONENT_TYPES), required=True)
@click.option("--registry", metavar="NAME|ID", required=True)
@click.option("--image", metavar="REF", required=True, help="full reference on the registry's host")
@click.option("--port", type=int, metavar="N")
@click.option("--schedule", metavar="CRON")
@click.option("--timezone", metavar="TZ")
@click.option("--env", metavar="NAME=VALUE", multiple=True)
@runs
def components_create(
    run: Run,
    name: str,
    kind: str,
    registry: str,
    image: str,
    port: int | None,
    schedule: str | None,
    timezone: str | None,
    env: tuple[str, ...],
) -> None:
    """Create a component on a registry."""
    run.no_ci_token("components create")
    reg = resolve_registry(run, registry)
    body: dict[str, Any] = {"name": name, "type": kind, "registry_id": reg["id"], "image": image}
    for key, value in (("port", port), ("schedule", schedule), ("timezone", timezone)):
        if value is not None:
            body[key] = value
    if env:
        body["env"] = parse_pairs(env, "--env")
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/projects/{run.project}/components", body=body)
    if run.output.json:
        run.output.document(answer)
    else:
        _component_fields(run, answer)


@components.command("show")
@click.argument("name")
@runs
def components_show(run: Run, name: str) -> None:
    """A component, with the image running in each environment."""
    comp = run.api.call("GET", run.component_path(name))
    if run.output.json:
        run.output.document(comp)
        return
    _component_fields(run, comp)
    envs = comp.get("environments") or {}
    if envs:
        run.output.line("")
        run.output.table(
            ("ENVIRONMENT", "IMAGE", "STATUS", "DEPLOYMENT"),
            [(env, image_with_digest(r), r.get("status"), r.get("deployment_id")) for env, r in envs.items()],
        )


@components.command("delete")
@click.argument("name")
@runs
def components_delete(run: Run, name: str) -> None:
    """Delete a component: what it runs is removed from every environment."""
    run.no_ci_token("components delete")
    run.api.call("DELETE", run.component_path(name))
    if run.output.json:
        run.output.document({"name": name, "deleted": True})
    else:
        run.output.line(f"deleted component {name}")
