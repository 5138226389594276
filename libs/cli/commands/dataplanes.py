"""`landfall dataplanes list|create|delete`: the org's data planes (clusters), whose agents connect out.

`create` answers with a one-time enrollment token, shown once: the agent starts with it
(`LANDFALL_ENROLLMENT_TOKEN`) and trades it for its own credentials. `delete` (by name or id) is
refused while an environment uses the plane (exit 6); its agent's NATS identity is revoked at once.
"""

from __future__ import annotations

import click

from libs.cli.context import Group, Run, given, list_command, runs


@click.group(cls=Group, help="Data planes (clusters) of the org.")
def dataplanes() -> None:
    pass


dataplanes_list = list_command(
    dataplanes,
    "The org's data planes and whether their agents are connected.",
    "/v1/orgs/{org}/dataplanes",
    "id name enrolled connected=agent.connected last_seen=when(agent.last_seen) version=agent.version",
    empty="no data planes yet: `landfall dataplanes create NAME`",
)


@dataplanes.command("create")
@click.argument("name")
@click.option("--ingress-class", metavar="CLASS")
@runs
def dataplanes_create(run: Run, name: str, ingress_class: str | None) -> None:
    """Register a data plane; its one-time enrollment token is shown once."""
    run.no_ci_token("dataplanes create")
    body = {"name": name, **given(ingress_class=ingress_class)}
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/dataplanes", body=body)
    run.output.answer(
        answer,
        "id name enrollment_token expires=when(enrollment_expires_at)",
        notes=[
            "start the agent with LANDFALL_ENROLLMENT_TOKEN set to this token (deploy/kubernetes/agent.yaml)"
        ],
    )


@dataplanes.command("delete")
@click.argument("dataplane", metavar="NAME|ID")
@runs
def dataplanes_delete(run: Run, dataplane: str) -> None:
    """Delete a data plane no environment uses; its agent is disconnected at once."""
    run.no_ci_token("dataplanes delete")
    planes = run.api.call("GET", f"/v1/orgs/{run.org}/dataplanes").get("items", [])
    match = [p for p in planes if dataplane in (p.get("id"), p.get("name"))]
    plane_id = match[0]["id"] if match else dataplane  # an unknown one: the API answers 404
    run.api.call_new_endpoint("dataplanes delete", "DELETE", f"/v1/orgs/{run.org}/dataplanes/{plane_id}")
    if run.output.json:
        run.output.document({"id": plane_id, "deleted": True})
    else:
        run.output.line(f"deleted data plane {match[0].get('name') if match else dataplane} ({plane_id})")
