"""The dispatch steps one at a time: each says Waiting or Stalling by itself, and one builder makes
every command (deploy or run). The credentials service is a fake of our own client's port."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from libs.contracts import reasons
from libs.contracts.messages import DeployCommand, ResolvedImage
from libs.runtime.errors import Stalling, Waiting
from services.orchestrator.domain.commands import command_msg_id, deploy_command
from services.orchestrator.domain.records import DataPlane, Execution
from services.orchestrator.usecases.dispatch import Dispatcher, Job, _run_stage
from tests.records import COMPONENT, DEPLOYMENT, EXECUTION, PLANE, T0

DIGEST = "sha256:" + "b" * 64


class FakeCredentials:
    def __init__(self, resolved: ResolvedImage | None = None) -> None:
        self.resolved = resolved
        self.asked: list[str] = []

    async def resolve(self, **_: Any) -> ResolvedImage | None:
        self.asked.append("resolve")
        return self.resolved

    async def auth_type(self, **_: Any) -> str:
        return "anonymous"


def dispatcher(credentials: FakeCredentials) -> Dispatcher:
    return Dispatcher(
        store=cast(Any, None),
        credentials=cast(Any, credentials),
        agents=cast(Any, None),
        gateways=cast(Any, None),
        retry_seconds=2.0,
        max_retry_seconds=60.0,
    )


def test_a_run_carries_the_execution_and_none_of_the_workload_settings() -> None:
    def command(execution: Execution | None) -> DeployCommand:
        return deploy_command(
            deployment=DEPLOYMENT,
            component=COMPONENT,
            plane=PLANE,
            image="img",
            pull_secret=None,
            dispatched_at=T0,
            execution=execution,
        )

    deploy, run = command(None), command(EXECUTION)
    assert (deploy.kind, deploy.port, deploy.ingress_class, deploy.execution_id) == (
        "deploy",
        8080,
        "nginx",
        None,
    )
    assert (run.kind, run.port, run.ingress_class, run.execution_id, run.args) == (
        "run",
        None,
        None,
        "exe_x",
        ["--once"],
    )
    assert run.seq == deploy.seq == 7
    assert run.env == deploy.env == {"A": "1"}
    assert command_msg_id(DEPLOYMENT) == "dep_x"
    assert command_msg_id(DEPLOYMENT, EXECUTION) == "dep_x:run:exe_x"


async def test_a_run_takes_its_deployments_image_without_asking_the_registry() -> None:
    credentials = FakeCredentials()
    job = Job(deployment=DEPLOYMENT, component=COMPONENT, plane=PLANE, execution=EXECUTION)
    await dispatcher(credentials).resolve_image(job)
    assert job.image == DEPLOYMENT.pinned_image
    assert credentials.asked == []


@pytest.mark.parametrize(
    ("resolved", "outcome", "reason"),
    [
        (ResolvedImage(status="not_found"), Stalling, reasons.IMAGE_NOT_FOUND),
        (ResolvedImage(status="unauthorized"), Stalling, reasons.REGISTRY_UNAUTHORIZED),
        (None, Stalling, reasons.REGISTRY_NOT_FOUND),
        (ResolvedImage(status="unreachable"), Waiting, reasons.REGISTRY_UNREACHABLE),
        (ResolvedImage(status="resolved", digest="not-a-digest"), Waiting, reasons.REGISTRY_UNREACHABLE),
    ],
)
async def test_resolving_the_image_says_what_happens_next(
    resolved: ResolvedImage | None, outcome: type[Exception], reason: str
) -> None:
    # just recorded: an unreachable registry is retried (the bound is usecases/resolution's)
    fresh = dataclasses.replace(DEPLOYMENT, recorded_at=datetime.now(UTC))
    job = Job(deployment=fresh, component=COMPONENT, plane=PLANE)
    with pytest.raises(outcome) as raised:
        await dispatcher(FakeCredentials(resolved)).resolve_image(job)
    assert cast(Waiting | Stalling, raised.value).reason == reason


async def test_a_data_plane_without_a_key_is_waited_for_at_most_30_seconds() -> None:
    job = Job(
        deployment=DEPLOYMENT,
        component=COMPONENT,
        plane=DataPlane("dp_x", "acme", "eu", None, None, None, None, None, T0),
    )
    slow = dispatcher(FakeCredentials())
    slow.retry_seconds, slow.max_retry_seconds = 50.0, 600.0
    with pytest.raises(Waiting) as waiting:
        await slow.seal_pull_secret(job)
    assert (waiting.value.reason, waiting.value.delay) == (reasons.DATAPLANE_NOT_ENROLLED, 30.0)


async def test_in_a_stage_of_steps_run_at_once_the_earlier_steps_error_wins() -> None:
    async def pin(job: Job) -> None:
        await asyncio.sleep(0.01)  # fails last, but comes first
        raise Stalling(reasons.IMAGE_NOT_FOUND, "no such tag")

    async def seal(job: Job) -> None:
        raise Waiting(reasons.CREDENTIALS_UNAVAILABLE, 2.0)

    with pytest.raises(Stalling):
        await _run_stage((pin, seal), Job(deployment=DEPLOYMENT, component=COMPONENT, plane=PLANE))
