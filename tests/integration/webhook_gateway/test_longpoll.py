"""GET /v1/webhooks/deployments/{id}?wait=N: pushed by DeploymentChanged, scoped to the token's component."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from libs.contracts.ids import new_id
from tests.integration.webhook_gateway.helpers import Env, component_info, create_token


@pytest.fixture
def env(env: Env) -> Env:
    env.orch.add(component_info("web"))
    return env


async def _once_listening(env: Env, deployment_id: str, action: Awaitable[Any]) -> None:
    """`action` once the long-poll for `deployment_id` has subscribed (it asked the orchestrator)."""
    await env.orch.wait_asked(deployment_id)
    await action


async def _recorded(env: Env, status: str) -> str:
    """Deploy through the webhook; the orchestrator records the deployment as `status`. Its id."""
    deployment_id = await env.deploy()
    (event,) = await env.orch.wait_pushed(1)
    env.orch.record(event, status=status)
    return deployment_id


async def test_long_poll_returns_when_the_rollout_succeeds(env: Env) -> None:
    deployment_id = await _recorded(env, "dispatched")

    async def rollout() -> None:
        await env.orch.wait_asked(deployment_id)
        await env.orch.change(deployment_id, status="progressing", only_notify=True)
        await env.orch.change(deployment_id, status="succeeded", only_notify=True)

    (status, body), _ = await asyncio.gather(env.status(deployment_id, wait=60), rollout())
    assert status == 200, body
    # Only the change message said "succeeded" (asking the orchestrator still says "dispatched"),
    # so this answer was pushed, not found by asking again at the deadline.
    assert body["status"] == "succeeded"
    assert body["id"] == deployment_id
    assert body["environment"] == "development"
    assert body["image"] == "ghcr.io/acme/api:1.0"


async def test_long_poll_reports_a_failed_rollout(env: Env) -> None:
    deployment_id = await _recorded(env, "progressing")
    (status, body), _ = await asyncio.gather(
        env.status(deployment_id, wait=60),
        _once_listening(
            env,
            deployment_id,
            env.orch.change(deployment_id, status="failed", reason="ImagePullBackOff", only_notify=True),
        ),
    )
    assert status == 200
    assert body["status"] == "failed"
    assert body["reason"] == "ImagePullBackOff"


async def test_a_final_deployment_is_answered_without_waiting_for_news(env: Env) -> None:
    deployment_id = await _recorded(env, "superseded")
    status, body = await env.status(deployment_id, wait=60)
    assert status == 200
    assert body["status"] == "superseded"


async def test_deadline_answers_the_latest_status(env: Env) -> None:
    deployment_id = await _recorded(env, "progressing")
    status, body = await env.status(deployment_id, wait=1)
    assert status == 200
    assert body["status"] == "progressing"


async def test_pending_from_the_gateways_record_until_the_orchestrator_knows_it(env: Env) -> None:
    deployment_id = await env.deploy("4.2")
    status, body = await env.status(deployment_id)
    assert status == 200
    assert body["status"] == "pending"
    assert body["image"] == "ghcr.io/acme/api:4.2"
    assert body["environment"] is None

    (event,) = await env.orch.wait_pushed(1)
    asked_before = env.orch.asked[deployment_id]

    async def orchestrator_catches_up() -> None:
        await env.orch.wait_asked(deployment_id, asked_before + 1)
        env.orch.record(event, status="dispatched")
        await env.orch.change(deployment_id, status="succeeded", only_notify=True)

    (status, body), _ = await asyncio.gather(env.status(deployment_id, wait=60), orchestrator_catches_up())
    assert status == 200
    assert body["status"] == "succeeded"


async def test_other_components_deployments_are_404_and_admin_ones_are_visible(env: Env) -> None:
    theirs = env.orch.admin_deployment(new_id("dep"), "web", status="succeeded")
    status, _ = await env.status(theirs.id)
    assert status == 404
    status, _ = await env.status(theirs.id, wait=5)
    assert status == 404

    ours = env.orch.admin_deployment(new_id("dep"), "api", status="progressing")
    (status, body), _ = await asyncio.gather(
        env.status(ours.id, wait=60),
        _once_listening(env, ours.id, env.orch.change(ours.id, status="succeeded", only_notify=True)),
    )
    assert status == 200
    assert body["status"] == "succeeded"
    assert body["source"] == "admin"

    # A deployment accepted for api is invisible to web's token, even before the orchestrator knows it.
    web_token = (await create_token(env.client, env.settings, "web"))["token"]
    deployment_id = await env.deploy()
    status, _ = await env.status(deployment_id, token=web_token)
    assert status == 404


# Beyond int()'s 4,300 digits and digits that str.isdigit() accepts but int() does not: once 500s.
@pytest.mark.parametrize(
    "wait", ["61", "-1", "abc", "1.5", "9999999999999999999", "9" * 5000, "%C2%B2", "%D9%A1", "1_0", " 1"]
)
async def test_wait_out_of_range_is_422(env: Env, wait: str) -> None:
    deployment_id = await env.deploy()
    status, body = await env.status(deployment_id, wait=wait)
    assert status == 422
    assert body["errors"][0]["field"] == "wait"


async def test_unknown_or_malformed_ids_are_404(env: Env) -> None:
    assert (await env.status(new_id("dep")))[0] == 404
    assert (await env.status("dep_nope"))[0] == 404
    assert (await env.status("../../tokens"))[0] == 404
