"""What goes to a data plane's agent, built in one place each: deploy or run, and remove.

A run (an execution of a manual task) carries the deployment's image, seq and
environment, its own execution id and arguments, and none of the settings that
only a long-running workload has (port, schedule, time zone, ingress class).

Per-environment config travels whole in `config` (None while the environment was never
configured: the agent then does exactly what it did before config existed), and its `env` is also
merged over the component's into the plain `env`, so an agent that ignores `config` still runs
with the environment's variables. Secrets are only sealed (`secrets`) and named (`secret_names`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from libs.contracts.config import WorkloadConfig
from libs.contracts.messages import DeployCommand, RemoveCommand, SealedSecret, SealedValues
from libs.contracts.naming import namespace_for
from services.orchestrator.domain.records import Component, DataPlane, Deployment, Execution, Teardown


def deploy_command(
    *,
    deployment: Deployment,
    component: Component,
    plane: DataPlane,
    image: str,
    pull_secret: SealedSecret | None,
    dispatched_at: datetime,
    execution: Execution | None = None,
    config: WorkloadConfig | None = None,
    config_version: int | None = None,
    secrets: SealedValues | None = None,
    secret_names: list[str] | None = None,
) -> DeployCommand:
    """The command that deploys `deployment` (or, with `execution`, runs the task once) on `plane`."""
    workload = execution is None
    return DeployCommand(
        kind="deploy" if workload else "run",
        deployment_id=deployment.id,
        execution_id=execution.id if execution is not None else None,
        dataplane_id=plane.id,
        org=component.org,
        project=component.project,
        component=component.name,
        environment=deployment.environment,
        namespace=namespace_for(component.org, component.project, deployment.environment),
        component_type=component.type,
        image=image,
        seq=deployment.seq,
        port=component.port if workload else None,
        schedule=component.schedule if workload else None,
        timezone=component.timezone if workload else None,
        env={**component.env, **(config.env if config is not None else {})},
        args=execution.args if execution is not None else [],
        ingress_class=plane.ingress_class if workload else None,
        pull_secret=pull_secret,
        config=config,
        config_version=config_version,
        secrets=secrets,
        secret_names=sorted(secret_names or []),
        dispatched_at=dispatched_at,
    )


def command_msg_id(deployment: Deployment, execution: Execution | None = None) -> str:
    """JetStream de-duplicates a command sent twice within its window by this id."""
    return deployment.id if execution is None else f"{deployment.id}:run:{execution.id}"


def remove_command(teardown: Teardown, *, sent_at: datetime) -> RemoveCommand:
    """The teardown's fields, its id as `teardown_id`."""
    fields = dataclasses.asdict(teardown)
    return RemoveCommand(teardown_id=fields.pop("id"), **fields, sent_at=sent_at)
