"""`landfall dataplanes list|create`: the org's data planes (clusters), whose agents connect out.

`create` answers with a one-time enrollment token, shown once: the agent starts with it
(`LANDFALL_ENROLLMENT_TOKEN`) and trades it for its own credentials.
"""

from __future__ import annotations

import click

from libs.cli.context import Group, Run, given, runs
from libs.cli.output import when


@click.group(cls=Group, help="Data planes (clusters) of the org.")
def dataplanes() -> None:
    pass


@dataplanes.command("list")
@runs
def dataplanes_list(run: Run) -> None:
    """The org's data planes and whether their agents are connected."""
    run.output.listing(
        run.api.call("GET", f"/v1/orgs/{run.org}/dataplanes"),
        ("ID", "NAME", "ENROLLED", "CONNECTED", "LAST SEEN", "VERSION"),
        lambda d: (
            d.get("id"),
            d.get("name"),
            d.get("enrolled"),
            (d.get("agent") or {}).get("connected"),
            when((d.get("agent") or {}).get("last_seen")),
            (d.get("agent") or {}).get("version"),
        ),
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
        [
            ("id", answer.get("id")),
            ("name", answer.get("name")),
            ("enrollment token", answer.get("enrollment_token")),
            ("expires", when(answer.get("enrollment_expires_at"))),
        ],
        notes=[
            "start the agent with LANDFALL_ENROLLMENT_TOKEN set to this token (deploy/kubernetes/agent.yaml)"
        ],
    )
