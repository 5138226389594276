"""Limits before authentication (refused credentials per client address) and long-polls per token."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from libs.contracts.ids import new_id
from services.webhook_gateway.domain.tokens import generate_token
from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import COMPONENT_PATH, Env
from tests.support import bearer, eventually, settings_from


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(
        Settings,
        base_env,
        preauth_refusal_burst=3,
        preauth_refusals_per_second=0.01,
        trusted_proxy_hops=1,
        long_polls_per_token=2,
    )


async def _status(env: Env, token: str, forwarded: str = "203.0.113.7") -> tuple[int, dict[str, str]]:
    resp = await env.client.get(
        f"/v1/webhooks/deployments/{new_id('dep')}", headers={**bearer(token), "X-Forwarded-For": forwarded}
    )
    return resp.status, dict(resp.headers)


async def test_refused_ci_tokens_per_address_are_429_before_any_lookup(env: Env) -> None:
    for _ in range(3):
        assert (await _status(env, generate_token()))[0] == 401
    status, headers = await _status(env, generate_token())
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert (await _status(env, env.token))[0] == 429  # this address's good token waits too
    # Another address (the trusted proxy's entry; what the client wrote left of it is not believed).
    assert (await _status(env, env.token, "198.51.100.1, 203.0.113.8"))[0] == 404
    assert (await _status(env, generate_token(), "203.0.113.7, 203.0.113.8"))[0] == 401


async def test_xff_is_ignored_without_a_trusted_proxy(base_env: dict[str, str]) -> None:
    from tests.integration.webhook_gateway.helpers import running

    settings = settings_from(Settings, base_env, preauth_refusal_burst=2, preauth_refusals_per_second=0.01)
    async with running(settings) as env:
        assert (await _status(env, generate_token(), "192.0.2.1"))[0] == 401
        assert (await _status(env, generate_token(), "192.0.2.2"))[0] == 401
        assert (await _status(env, generate_token(), "192.0.2.3"))[0] == 429


async def test_refused_api_keys_per_address_are_429(env: Env) -> None:
    path = f"{COMPONENT_PATH}/api/tokens"
    headers = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(3):
        resp = await env.client.get(path, headers={**bearer("lfk_" + "a" * 40), **headers})
        assert resp.status == 401
    resp = await env.client.get(path, headers={**bearer("lfk_" + "a" * 40), **headers})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1


async def test_long_polls_per_token_are_capped_and_a_hang_up_frees_a_slot(env: Env) -> None:
    ours = env.orch.admin_deployment(new_id("dep"), "api", status="progressing")
    url = f"/v1/webhooks/deployments/{ours.id}?wait=30"

    async def poll() -> int:
        async with env.client.get(url, headers=bearer(env.token)) as resp:
            return resp.status

    first, second = asyncio.ensure_future(poll()), asyncio.ensure_future(poll())
    await env.orch.wait_asked(ours.id, 2)  # both hold a slot: each asked once it had one
    resp = await env.client.get(url, headers=bearer(env.token))
    assert resp.status == 429, await resp.text()
    assert resp.headers["Retry-After"] == "1"
    assert (await env.status(ours.id))[0] == 200  # a plain GET needs no slot

    first.cancel()  # the client hangs up: its slot is given back within a moment
    with contextlib.suppress(asyncio.CancelledError):
        await first

    async def a_slot_is_free() -> bool:
        status, _ = await env.status(ours.id, wait=1)
        return status == 200

    await eventually(a_slot_is_free, what="the hung-up poll's slot given back")
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second
