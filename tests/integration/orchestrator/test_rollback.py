"""Auto-rollback (API.md, "Per-environment configuration"): with `auto_rollback` in an
environment's config, a rollout that fails deploys the environment's last succeeded image and
config version again (`source: "rollback"`), and the failed deployment names it in
`rolled_back_by`; a rollback that fails is not rolled back, and a failed report that arrives twice
(JetStream redelivers; two replicas may both see it) rolls back once.

The data plane's reports are published by the test as the agent would (`Harness.report`), on the
real NATS, into the orchestrator running against the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from libs.contracts.messages import RolloutReport
from services.orchestrator.entrypoints import USECASES
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    REGISTRY_HOST,
    REPOSITORY,
    Harness,
    World,
    now,
)
from tests.support import eventually

IMAGE_1_0 = f"{REGISTRY_HOST}/{REPOSITORY}:1.0"
IMAGE_1_1 = f"{REGISTRY_HOST}/{REPOSITORY}:1.1"
ENV = "development"


async def configure(orch: Harness, world: World, body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = await orch.ok("PUT", f"{world.component_path}/environments/{ENV}/config", body)
    return config


async def succeed(orch: Harness, world: World, image: str) -> dict[str, Any]:
    deployment_id = await orch.roll_out(world, image)
    await orch.report(world, deployment_id, "succeeded")
    return await orch.wait_status(deployment_id, "succeeded")


async def fail(orch: Harness, world: World, deployment_id: str, reason: str = "ImagePullBackOff") -> None:
    await orch.wait_status(deployment_id, "dispatched", "progressing")
    await orch.report(world, deployment_id, "failed", reason=reason)
    await orch.wait_status(deployment_id, "failed")


def failed_report(world: World, deployment_id: str) -> RolloutReport:
    return RolloutReport(
        kind="deploy",
        deployment_id=deployment_id,
        dataplane_id=world.dataplane_id,
        status="failed",
        reason="ImagePullBackOff",
        reported_at=now(),
    )


async def rolled_back(orch: Harness, deployment_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        view = await orch.deployment(deployment_id)
        return view if view.get("rolled_back_by") else None

    return await eventually(probe, what=f"{deployment_id} rolled back")


async def history(orch: Harness, world: World) -> list[dict[str, Any]]:
    page = await orch.ok("GET", f"{world.component_path}/deployments?environment={ENV}")
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_a_failed_rollout_brings_back_the_last_succeeded_image_and_the_failure_stays_failed(
    orch: Harness,
) -> None:
    world = await orch.provision()
    assert (await configure(orch, world, {"auto_rollback": True}))["version"] == 1
    good = await succeed(orch, world, IMAGE_1_0)
    bad = await orch.push(world, IMAGE_1_1)
    await fail(orch, world, bad)

    failed = await rolled_back(orch, bad)
    assert (failed["status"], failed["reason"]) == ("failed", "ImagePullBackOff")  # what CI hears
    rollback = await orch.deployment(failed["rolled_back_by"])
    assert rollback["source"] == "rollback"
    assert rollback["digest"] == DIGEST_1_0
    assert rollback["config_version"] == good["config_version"] == 1
    assert any(bad in note for note in rollback["notes"]), rollback["notes"]
    command = await orch.command_for(rollback["id"])
    assert command.image == f"{REGISTRY_HOST}/{REPOSITORY}@{DIGEST_1_0}"


async def test_a_config_change_that_fails_rolls_back_to_the_config_version_that_ran(orch: Harness) -> None:
    world = await orch.provision()
    await configure(orch, world, {"auto_rollback": True, "env": {"MODE": "calm"}})
    await succeed(orch, world, IMAGE_1_0)
    change = await configure(orch, world, {"auto_rollback": True, "env": {"MODE": "broken"}})
    assert change["version"] == 2
    await fail(orch, world, change["deployment_id"], reason="CrashLoopBackOff")

    failed = await rolled_back(orch, change["deployment_id"])
    rollback = await orch.deployment(failed["rolled_back_by"])
    assert (rollback["source"], rollback["config_version"], rollback["digest"]) == ("rollback", 1, DIGEST_1_0)
    command = await orch.command_for(rollback["id"])
    assert command.config_version == 1


async def test_a_rollback_that_fails_is_not_rolled_back_again(orch: Harness) -> None:
    world = await orch.provision()
    await configure(orch, world, {"auto_rollback": True})
    await succeed(orch, world, IMAGE_1_0)
    bad = await orch.push(world, IMAGE_1_1)
    await fail(orch, world, bad)
    rollback_id = (await rolled_back(orch, bad))["rolled_back_by"]

    await fail(orch, world, rollback_id)

    async def noted() -> dict[str, Any] | None:
        view = await orch.deployment(rollback_id)
        return view if "not rolled back: it was a rollback itself" in view["notes"] else None

    rollback = await eventually(noted, what="the note that the failed rollback is left alone")
    assert rollback["status"] == "failed"
    assert rollback.get("rolled_back_by") is None
    assert len(await history(orch, world)) == 3  # good, bad, its rollback: no loop


async def test_without_auto_rollback_a_failed_rollout_stays_as_it_is(orch: Harness) -> None:
    world = await orch.provision()
    await succeed(orch, world, IMAGE_1_0)
    bad = await orch.push(world, IMAGE_1_1)
    await fail(orch, world, bad)
    # the same report handled to its end here (as a redelivery would be): it rolls nothing back
    await orch.client.app[USECASES].reports.apply(failed_report(world, bad))

    view = await orch.deployment(bad)
    assert view.get("rolled_back_by") is None
    assert [d["source"] for d in await history(orch, world)] == ["webhook", "webhook"]


async def test_with_nothing_that_succeeded_before_a_note_says_why_there_is_no_rollback(orch: Harness) -> None:
    world = await orch.provision()
    await configure(orch, world, {"auto_rollback": True})
    bad = await orch.push(world, IMAGE_1_1)
    await fail(orch, world, bad)

    async def noted() -> dict[str, Any] | None:
        view = await orch.deployment(bad)
        return view if view["notes"] else None

    view = await eventually(noted, what="a note on the failed deployment")
    assert view["notes"] == [f"not rolled back: nothing succeeded in {ENV} before it"]
    assert view.get("rolled_back_by") is None


async def test_a_failed_report_delivered_again_and_handled_twice_at_once_rolls_back_once(
    orch: Harness,
) -> None:
    world = await orch.provision()
    await configure(orch, world, {"auto_rollback": True})
    await succeed(orch, world, IMAGE_1_0)
    bad = await orch.push(world, IMAGE_1_1)
    await orch.wait_status(bad, "dispatched")
    report = failed_report(world, bad)
    status_subject = orch.subjects.status(world.dataplane_id)
    for copy in range(3):  # a redelivery is the same report again, after the first was handled
        msg_id = f"{bad}:failed:{copy}:{time.monotonic_ns()}"
        await orch.bus.publish_durable(status_subject, report, msg_id=msg_id)
    reports = orch.client.app[USECASES].reports
    await asyncio.gather(reports.apply(report), reports.apply(report))  # two replicas at once

    rollback_id = (await rolled_back(orch, bad))["rolled_back_by"]
    await orch.command_for(rollback_id)
    await reports.apply(report)  # and once more, after everything settled
    rollbacks = [d for d in await history(orch, world) if d["source"] == "rollback"]
    assert [d["id"] for d in rollbacks] == [rollback_id]
    assert (await orch.deployment(bad))["rolled_back_by"] == rollback_id
