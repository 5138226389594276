"""What the web console adds to a page: its p95 against the same API calls made directly.

An org of its own (`console-bench`, made with the platform token as `make up` makes `default`)
holds 200 components in one project (20 with `--quick`), a data plane and three environments.
Two pages, each sampled one request at a time, alternating with the API calls that page makes
(concurrently, as the console makes them) sent straight to the front door with the same key, in
the same run, over one keep-alive connection each:

* the components list (`GET /components`: the org's projects, then each project's components);
* a component page (`GET /projects/p/components/c`: the component, the environments and the
  deployment history).

So the difference is the console itself: its session look-up, its client and the template.
The issue's target: a page under 100 ms at p95 with 200 components.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.stack import REPOSITORY, BenchError, Run
from bench.stats import summary

ORG, PROJECT = "console-bench", "p"
TARGET_P95_MS = 100.0
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _ok(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> object:
    async with session.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
        body = await resp.read()
        if resp.status >= 400:
            raise BenchError(f"{method} {url} answered {resp.status}: {body[:300]!r}")
        return await resp.json() if resp.content_type == "application/json" else None


async def _provision(api: aiohttp.ClientSession, front: str, count: int, host: str) -> None:
    org = f"{front}/v1/orgs/{ORG}"
    await _ok(api, "POST", f"{org}/projects", json={"name": PROJECT})
    registry = await _ok(
        api,
        "POST",
        f"{org}/registries",
        json={"display_name": "bench", "auth": {"type": "anonymous", "host": host}},
    )
    assert isinstance(registry, dict)
    plane = await _ok(api, "POST", f"{org}/dataplanes", json={"name": "bench"})
    assert isinstance(plane, dict)
    for order, env in enumerate(("development", "staging", "production")):
        await _ok(
            api,
            "POST",
            f"{org}/environments",
            json={"name": env, "dataplane_id": plane["id"], "order": order},
        )
    for index in range(count):
        spec = {
            "name": f"c{index:03d}",
            "type": "service",
            "registry_id": registry["id"],
            "image": f"{host}/{REPOSITORY}:1.0",
        }
        await _ok(api, "POST", f"{org}/projects/{PROJECT}/components", json=spec)


async def _sign_in(browser: aiohttp.ClientSession, console: str, key: str) -> None:
    async with browser.get(f"{console}/sign-in") as resp:
        found = CSRF.search(await resp.text())
    if not found:
        raise BenchError("the console's sign-in page has no CSRF token")
    form = {"csrf": found.group(1), "api_key": key, "org": ORG, "next": "/components"}
    async with browser.post(f"{console}/sign-in", data=form, allow_redirects=False) as resp:
        if resp.status != 303:
            raise BenchError(f"signing in to the console answered {resp.status}")


async def _part(run: Run) -> None:
    stack = run.stack
    count = 20 if run.plan.quick else 200
    samples_each = 20 if run.plan.quick else 300
    key = stack.new_org(ORG, key_name="bench-console")["key"]
    front, console = stack.front_url, stack.url("console")
    bearer = {"Authorization": f"Bearer {key}"}
    org = f"{front}/v1/orgs/{ORG}"
    component = f"{org}/projects/{PROJECT}/components/c000"
    async with aiohttp.ClientSession(headers=bearer) as setup:
        await _provision(setup, front, count, stack.registry.host)

    direct = aiohttp.ClientSession(headers=bearer, connector=aiohttp.TCPConnector(limit=8))
    browser = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(limit=1)
    )
    try:
        await _sign_in(browser, console, key)

        async def page(path: str) -> None:
            async with browser.get(console + path, allow_redirects=False) as resp:
                await resp.read()
                if resp.status != 200:
                    raise BenchError(f"the console's {path} answered {resp.status}")

        async def list_direct() -> None:
            projects = await _ok(direct, "GET", f"{org}/projects")
            assert isinstance(projects, dict)
            await asyncio.gather(
                *(_ok(direct, "GET", f"{org}/projects/{p['name']}/components") for p in projects["items"])
            )

        async def component_direct() -> None:
            await asyncio.gather(
                _ok(direct, "GET", component),
                _ok(direct, "GET", f"{org}/environments"),
                _ok(direct, "GET", f"{component}/deployments", params={"limit": "50"}),
            )

        Call = Callable[[], Awaitable[None]]

        async def console_list() -> None:
            await page("/components")

        async def console_component() -> None:
            await page(f"/projects/{PROJECT}/components/c000")

        pairs: dict[str, tuple[Call, Call]] = {
            "components_list": (console_list, list_direct),
            "component_page": (console_component, component_direct),
        }
        results: dict[str, object] = {}
        for name, (through_console, straight) in pairs.items():
            for _ in range(5):  # warm both: connections, the key cache, the templates
                await through_console()
                await straight()
            series: dict[str, list[float]] = {"console": [], "direct": []}
            for index in range(samples_each):
                order = ("console", "direct") if index % 2 == 0 else ("direct", "console")
                for which in order:
                    call = through_console if which == "console" else straight
                    series[which].append(await _timed(call))
            c, d = summary(series["console"]), summary(series["direct"])
            results[name] = {"console_ms": c, "direct_ms": d, "added_p95_ms": round(c["p95"] - d["p95"], 2)}
            run.clock.say(
                f"console {name}: p95 {c['p95']} ms through the console, {d['p95']} ms for its API calls "
                f"(target < {TARGET_P95_MS} ms with {count} components)"
            )
    finally:
        await direct.close()
        await browser.close()
    run.result["console"] = {
        "what": "console pages vs the same API calls made directly (concurrently, as the console does), "
        "one request at a time, alternating",
        "components": count,
        "requests_each": samples_each,
        "target_p95_ms": TARGET_P95_MS,
        **results,
    }


def part(run: Run) -> None:
    asyncio.run(_part(run))
