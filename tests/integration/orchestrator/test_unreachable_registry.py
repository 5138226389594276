"""No deployment stays pending because a registry does not answer (API.md, "Images the control
plane cannot reach"): the orchestrator asks the data plane's agent to resolve the tag inside its
cluster, and without an answer fails the deployment `registry_unreachable` within the bound. An
image sent by tag (a vendor registry) keeps the digest the cluster pulled, as the agent reports it.

The credentials service is `FakeCredentials` (it says the registry is unreachable, as the real
one does when its egress policy refuses a host); the agent is a stand-in responder on the data
plane's resolve subject, a fake of our own agent: what is under test is the orchestrator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from libs.contracts.messages import ResolvedImage, ResolveInCluster, RolloutReport
from libs.runtime.bus import Bus
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    DIGEST_1_1,
    IMAGE_1_0,
    PINNED_1_1,
    REGISTRY_HOST,
    REPOSITORY,
    SEALED_CIPHERTEXT,
    Harness,
    World,
    now,
    running_orchestrator,
)

BOUND = 3.0  # registry_unreachable_seconds: the agent is asked after a third of it
HIDDEN = f"{REGISTRY_HOST}/{REPOSITORY}:9.9"  # the control plane cannot reach its registry
UNREACHABLE = ResolvedImage(status="unreachable", detail="unreachable: cannot connect to the registry")


@pytest.fixture
async def orch(base_env: dict[str, str]) -> AsyncIterator[Harness]:
    async with running_orchestrator(base_env, registry_unreachable_seconds=BOUND) as harness:
        harness.credentials.add_tag("1.0", DIGEST_1_0)
        harness.credentials.tags[(REPOSITORY, "9.9")] = UNREACHABLE
        yield harness


Answer = Callable[[ResolveInCluster], Awaitable[ResolvedImage]]


async def stand_in_agent(orch: Harness, world: World, answer: Answer) -> list[ResolveInCluster]:
    """Answer the data plane's in-cluster resolution requests as its agent would."""
    asked: list[ResolveInCluster] = []

    async def on_request(request: ResolveInCluster) -> ResolvedImage:
        asked.append(request)
        return await answer(request)

    bus: Bus = orch.bus
    await bus.serve(bus.subjects.resolve(world.dataplane_id), ResolveInCluster, on_request, queue="agent")
    await bus.nc.flush()
    return asked


async def test_a_registry_that_nobody_reaches_fails_the_deployment_saying_what_was_tried(
    orch: Harness,
) -> None:
    world = await orch.provision()
    deployment_id = await orch.push(world, HIDDEN)

    view = await orch.wait_status(deployment_id, "failed", timeout=BOUND + 10)

    assert view["reason"] == "registry_unreachable"
    detail = view["detail"]
    assert "control plane: " in detail, detail
    assert "the last one: unreachable: cannot connect to the registry" in detail, detail
    assert f"data plane {world.dataplane_id}: its agent gave no answer" in detail, detail
    assert not [c for _, c in orch.commands if c.deployment_id == deployment_id]
    # what a gateway's long poll hears
    told = [c.deployment for c in orch.changes if c.deployment.id == deployment_id]
    assert (told[-1].status, told[-1].reason) == ("failed", "registry_unreachable")


async def test_the_data_planes_agent_resolves_a_tag_the_control_plane_cannot_reach(orch: Harness) -> None:
    world = await orch.provision()

    async def resolved(_: ResolveInCluster) -> ResolvedImage:
        return ResolvedImage(status="resolved", digest=DIGEST_1_1)

    asked = await stand_in_agent(orch, world, resolved)
    deployment_id = await orch.push(world, HIDDEN)

    command = await orch.command_for(deployment_id, timeout=BOUND + 10)
    assert command.image == PINNED_1_1
    view = await orch.wait_status(deployment_id, "dispatched")
    assert view["digest"] == DIGEST_1_1
    assert "resolved inside the data plane" in view["notes"]
    request = asked[-1]
    assert (request.dataplane_id, request.image) == (world.dataplane_id, HIDDEN)
    # the registry's pull secret, sealed to that data plane (as the deploy command carries it)
    assert request.pull_secret is not None
    assert request.pull_secret.ciphertext == SEALED_CIPHERTEXT
    assert orch.credentials.pull_requests[-1].dataplane_id == world.dataplane_id


async def test_a_tag_the_agent_does_not_find_fails_as_image_not_found(orch: Harness) -> None:
    world = await orch.provision()

    async def not_found(_: ResolveInCluster) -> ResolvedImage:
        return ResolvedImage(status="not_found", detail="manifest unknown")

    await stand_in_agent(orch, world, not_found)
    deployment_id = await orch.push(world, HIDDEN)

    view = await orch.wait_status(deployment_id, "failed", timeout=BOUND + 10)
    assert view["reason"] == "image_not_found"
    assert view["detail"] == f"data plane {world.dataplane_id}: manifest unknown"


async def test_an_agent_that_cannot_reach_it_either_ends_in_registry_unreachable(orch: Harness) -> None:
    world = await orch.provision()

    async def unreachable(_: ResolveInCluster) -> ResolvedImage:
        return ResolvedImage(status="unreachable", detail="dial tcp: i/o timeout")

    asked = await stand_in_agent(orch, world, unreachable)
    deployment_id = await orch.push(world, HIDDEN)

    view = await orch.wait_status(deployment_id, "failed", timeout=BOUND + 10)
    assert view["reason"] == "registry_unreachable"
    assert f"data plane {world.dataplane_id}: dial tcp: i/o timeout" in view["detail"]
    assert asked, "the agent was asked"


async def test_a_registry_the_control_plane_reaches_is_never_asked_of_the_agent(orch: Harness) -> None:
    world = await orch.provision()

    async def never(_: ResolveInCluster) -> ResolvedImage:
        raise AssertionError("the agent was asked")

    asked = await stand_in_agent(orch, world, never)
    deployment_id = await orch.push(world, IMAGE_1_0)
    view = await orch.wait_status(deployment_id, "dispatched")
    assert view["digest"] == DIGEST_1_0
    assert asked == []


async def test_a_vendor_image_sent_by_tag_keeps_the_digest_the_cluster_pulled(orch: Harness) -> None:
    world = await orch.provision(auth_type="vendor")
    deployment_id = await orch.push(world, IMAGE_1_0)
    assert (await orch.command_for(deployment_id)).image.endswith(":1.0")  # by tag
    await orch.wait_status(deployment_id, "dispatched")

    await report(orch, world, deployment_id, "progressing", digest=DIGEST_1_1)
    await report(orch, world, deployment_id, "succeeded", digest=DIGEST_1_0)  # a first one stays

    view = await orch.wait_status(deployment_id, "succeeded")
    assert view["digest"] == DIGEST_1_1
    assert "digest as pulled by the data plane" in view["notes"]
    promoted = await orch.ok(
        "POST", f"{world.component_path}/promotions", {"from": "development", "to": "staging"}, 202
    )
    command = await orch.command_for(promoted["id"])
    assert command.image == PINNED_1_1


async def test_a_pinned_digest_is_never_replaced_by_a_reported_one(orch: Harness) -> None:
    world = await orch.provision()
    deployment_id = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(deployment_id, "dispatched")
    await report(orch, world, deployment_id, "succeeded", digest=DIGEST_1_1)
    view = await orch.wait_status(deployment_id, "succeeded")
    assert view["digest"] == DIGEST_1_0
    assert view["notes"] == []


async def report(orch: Harness, world: World, deployment_id: str, status: str, *, digest: str) -> None:
    """A rollout report with the digest the cluster pulled (a Pod's imageID), as the agent sends it."""
    sent = RolloutReport(
        kind="deploy",
        deployment_id=deployment_id,
        dataplane_id=world.dataplane_id,
        status=status,
        digest=digest,
        reported_at=now(),
    )
    await orch.bus.publish_durable(
        orch.subjects.status(world.dataplane_id), sent, msg_id=f"{deployment_id}:{status}:{digest}"
    )
