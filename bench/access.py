"""What checking an org API key costs a management request, once the key is cached.

The same read (`GET /v1/orgs/default/projects/default/components/<c>` on the orchestrator),
sent with the org key (`LANDFALL_ORG_KEY`) and with the platform admin token, one request at a
time, alternating, over one keep-alive connection each, in the same run: the two series share
the machine's state minute by minute, so their difference is the key check (a digest, a look-up
in the replica's cache, the broadcast sync) and not the noise of another moment. Both series
are warmed first (the key's first use fills the cache; later ones are what users meet).

Measured on the orchestrator, which owns the keys; on the credentials service and the gateway
a cached key costs the same (the same `KeyDirectory`), an uncached one a NATS round trip more.
The target is a difference under 1 ms at p50.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.client import Admin
from bench.stack import REPOSITORY, BenchError, Run
from bench.stats import summary

COMPONENT = "keycheck"
WARMUP = 50
TARGET_DIFFERENCE_MS = 1.0


async def _one(session: aiohttp.ClientSession, url: str, token: str) -> float:
    started = time.perf_counter()
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        if resp.status != 200:
            raise BenchError(f"GET {url} answered {resp.status}")
    return (time.perf_counter() - started) * 1000


async def _part(run: Run) -> None:
    stack = run.stack
    key = stack.org_key
    if not key:
        raise BenchError("the stack has no org key (LANDFALL_ORG_KEY)")
    async with aiohttp.ClientSession() as setup:
        admin = Admin.for_stack(setup, stack)
        registry = await admin.call(
            "credentials",
            "POST",
            "/v1/orgs/default/registries",
            {"display_name": "key check", "auth": {"type": "anonymous", "host": stack.registry.host}},
        )
        spec = {
            "name": COMPONENT,
            "type": "service",
            "registry_id": registry["id"],
            "image": f"{stack.registry.host}/{REPOSITORY}:1.0",
            "port": 8080,
        }
        await admin.call("orchestrator", "POST", "/v1/orgs/default/projects/default/components", spec)
    url = f"{stack.url('orchestrator')}/v1/orgs/default/projects/default/components/{COMPONENT}"
    samples: dict[str, list[float]] = {"platform": [], "api_key": []}
    tokens = {"platform": stack.admin_token, "api_key": key}
    # One connection per series (limit=1), so neither pays for the other's connection set-up.
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for name in tokens}
    try:
        for _ in range(WARMUP):
            for name, token in tokens.items():
                await _one(sessions[name], url, token)
        for index in range(run.plan.access_requests):
            order = ("platform", "api_key") if index % 2 == 0 else ("api_key", "platform")
            for name in order:
                samples[name].append(await _one(sessions[name], url, tokens[name]))
    finally:
        for session in sessions.values():
            await session.close()
    platform, api_key = summary(samples["platform"]), summary(samples["api_key"])
    difference = round(api_key["p50"] - platform["p50"], 3)
    run.result["access"] = {
        "what": f"GET .../components/{COMPONENT} on the orchestrator, one at a time, alternating",
        "requests_each": run.plan.access_requests,
        "platform_ms": platform,
        "api_key_ms": api_key,
        "difference_p50_ms": difference,
        "target_difference_ms": TARGET_DIFFERENCE_MS,
    }
    run.clock.say(
        f"access: p50 {api_key['p50']} ms with the org key, {platform['p50']} ms with the platform token "
        f"(difference {difference} ms)"
    )


def part(run: Run) -> None:
    asyncio.run(_part(run))
