"""A config change is never lost on its way to the data plane (issue 14): not by a crash between
storing the version and recording its rollout, and not by a webhook recorded while the change
reads what runs.

Real NATS and PostgreSQL; the faults and the interleaving are forced through our own code (the
`Deployments` repository and the dispatcher), never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from services.orchestrator.domain.records import Deployment
from services.orchestrator.store.deployments import Deployments
from services.orchestrator.usecases.dispatch import Dispatcher
from tests.integration.orchestrator.helpers import (
    IMAGE_1_1,
    PINNED_1_1,
    Harness,
    now,
)
from tests.integration.orchestrator.test_configs import config_path, running
from tests.support import eventually


class InjectedCrash(RuntimeError):
    """The orchestrator dying at this point: nothing after it runs."""


def crash_once(
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    method: str,
    *,
    key: Callable[[Any], str],
    when: Callable[[Any], bool] = lambda _: True,
) -> list[str]:
    """Make `owner.method(self, arg)` die the first time `when(arg)` holds; returns `[key(arg)]` then."""
    original = getattr(owner, method)
    crashed: list[str] = []

    async def dies_once(self: Any, arg: Any) -> Any:
        if when(arg) and not crashed:
            crashed.append(key(arg))
            raise InjectedCrash(f"the orchestrator died in {owner.__name__}.{method}")
        return await original(self, arg)

    monkeypatch.setattr(owner, method, dies_once)
    return crashed


async def config_deployments(orch: Harness, component_path: str) -> list[dict[str, Any]]:
    history = await orch.ok("GET", f"{component_path}/deployments")
    return [d for d in history["items"] if d["source"] == "config"]


async def test_a_crash_before_the_rollout_is_recorded_stores_no_version_and_the_retry_rolls_it_out(
    orch: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await orch.provision()
    await running(orch, world)
    # the orchestrator dies after storing the version, before recording its rollout
    crashed = crash_once(
        monkeypatch, Deployments, "record", key=lambda new: new.id, when=lambda new: new.source == "config"
    )
    status, _, _ = await orch.call("PUT", config_path(world), {"replicas": 2})
    assert status == 500
    assert crashed
    # The client retries the same PUT: it must roll the change out, not answer "unchanged".
    retry = await orch.ok("PUT", config_path(world), {"replicas": 2})
    assert retry["version"] == 1
    assert retry.get("deployment_id"), retry
    command = await orch.command_for(retry["deployment_id"])
    assert command.config is not None
    assert command.config.replicas == 2
    assert command.config_version == 1
    assert [d["id"] for d in await config_deployments(orch, world.component_path)] == [retry["deployment_id"]]


async def test_a_crash_after_the_commit_leaves_the_rollout_to_the_sweeper(
    orch: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await orch.provision()
    await running(orch, world)
    # the orchestrator dies after the commit, before dispatching
    crashed = crash_once(monkeypatch, Dispatcher, "dispatch_soon", key=str)
    status, _, _ = await orch.call("PUT", config_path(world), {"replicas": 3})
    assert status == 500
    assert crashed
    # Nothing else is asked: the pending rollout is the sweeper's, and the retry is a no-op.
    command = await orch.command_for(crashed[0])
    assert command.config is not None
    assert command.config.replicas == 3
    retry = await orch.ok("PUT", config_path(world), {"replicas": 3})
    assert retry["version"] == 1
    assert [d["id"] for d in await config_deployments(orch, world.component_path)] == crashed


async def test_a_webhook_recorded_while_a_config_put_reads_what_runs_is_not_lost(
    orch: Harness, base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await orch.provision()
    await running(orch, world)  # 1.0 runs
    accepted = now()  # CI pushed 1.1 before the PUT; its event reaches the orchestrator during it
    read, go = asyncio.Event(), asyncio.Event()
    live = Deployments.live

    async def live_then_wait(self: Deployments, component_id: str, environment: str) -> Deployment | None:
        found = await live(self, component_id, environment)
        if not read.is_set():
            read.set()
            await go.wait()
        return found

    monkeypatch.setattr(Deployments, "live", live_then_wait)
    put = asyncio.create_task(orch.ok("PUT", config_path(world), {"replicas": 2}))
    try:
        await asyncio.wait_for(read.wait(), timeout=10)
        pushed = await orch.push(world, IMAGE_1_1, accepted_at=accepted)
        conn = await asyncpg.connect(base_env["LANDFALL_DATABASE_URL"])
        try:

            async def recorded_or_waiting() -> str | None:
                status, _, _ = await orch.call("GET", f"/v1/deployments/{pushed}")
                if status == 200:
                    return "recorded"
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%record_deployment(%'"
                )
                return "waiting" if waiting else None

            await eventually(recorded_or_waiting, what="the webhook recorded, or waiting for the PUT")
        finally:
            await conn.close()
    finally:
        go.set()
        answer = await put
    assert answer["version"] == 1
    webhook = await orch.wait_status(pushed, "dispatched", "superseded")
    assert webhook["status"] == "dispatched", webhook  # not superseded by a rollout of 1.0
    assert webhook["config_version"] == 1
    command = await orch.command_for(pushed)
    assert command.image == PINNED_1_1
    assert command.config is not None
    assert command.config.replicas == 2
    history = await orch.ok("GET", f"{world.component_path}/deployments")
    assert history["items"][0]["id"] == pushed
    rollout = answer.get("deployment_id")
    if rollout is not None:  # it re-rolled 1.0 and the newer webhook superseded it
        assert (await orch.deployment(rollout))["status"] == "superseded"
