"""Organizations that cannot see each other: every operation, by every kind of caller, on both orgs.

The matrix is generated (chaos/matrix.py) from every operation of every service's
`/openapi.json` and its `x-landfall-auth`, so a route added tomorrow is in it; chaos/tenancy.py
builds two orgs through the public API and sends it (`make chaos` counts the same breaches).
The expired key is made with `expires_in_days: 1` (the API's least) and its expiry then moved
into the past in the orchestrator's database.
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from chaos import matrix, tenancy
from libs.devstack.stack import Stack

DOCUMENT = {
    "paths": {
        "/healthz": {"get": {"x-landfall-auth": "none"}},
        "/v1/webhooks/deploy": {"post": {"x-landfall-auth": "ci", "requestBody": {}}},
        "/v1/orgs": {"post": {"x-landfall-auth": "platform", "requestBody": {}}},
        "/v1/orgs/{org}/registries/{id}": {
            "get": {"x-landfall-auth": "viewer"},
            "delete": {"x-landfall-auth": "owner"},
        },
        "/v1/orgs/{org}/projects": {"post": {"x-landfall-auth": "developer", "requestBody": {}}},
        "/v1/deployments/{id}": {"get": {"x-landfall-auth": "viewer"}},
    }
}


def test_the_rules_of_the_matrix() -> None:
    """API.md's order: 401, then 404 across orgs, then 403 (platform only, role too low)."""
    cells = {(c.operation.key, c.caller, c.target): c.expected for c in matrix.cells({"x": DOCUMENT})}
    assert {key for key, _, _ in cells} == {
        "POST /v1/orgs",
        "GET /v1/orgs/{org}/registries/{id}",
        "DELETE /v1/orgs/{org}/registries/{id}",
        "POST /v1/orgs/{org}/projects",
        "GET /v1/deployments/{id}",
    }  # `none` and `ci` routes have tests of their own
    delete = "DELETE /v1/orgs/{org}/registries/{id}"
    assert cells[(delete, "platform", "a")] is None  # the comparison point
    assert cells[(delete, "owner", "a")] is None  # the same answer as the platform's
    assert cells[(delete, "developer", "a")] == (403,)
    assert cells[(delete, "viewer", "b")] == (404,)  # another org's: as if unknown, whatever the role
    assert cells[(delete, "owner-b", "a")] == (404,)
    assert cells[(delete, "owner-b", "mixed")] == (404,)  # B's path, A's id
    assert cells[(delete, "platform", "mixed")] == (404,)
    for caller in ("none", "revoked", "expired"):
        assert cells[(delete, caller, "a")] == (401,)
    assert cells[(delete, "ci-token", "a")] == (403,)
    assert cells[("POST /v1/orgs", "owner", "any")] == (403,)
    assert cells[("POST /v1/orgs", "platform", "any")] is None
    assert cells[("POST /v1/orgs/{org}/projects", "developer", "a")] is None
    assert cells[("POST /v1/orgs/{org}/projects", "viewer", "a")] == (403,)
    assert cells[("GET /v1/deployments/{id}", "viewer", "a")] is None
    assert cells[("GET /v1/deployments/{id}", "owner-b", "a")] == (404,)


@pytest.mark.timeout(180)
async def test_no_caller_reaches_what_it_may_not(stack: Stack) -> None:
    result, _ = await tenancy.run_on(stack, host=stack.registry.host, auth={"type": "anonymous"})
    print(
        f"tenancy matrix: {len(result.cases)} cells = {result.operations} operations by "
        f"{len(matrix.CALLERS)} kinds of caller on A's, B's and mixed objects; by caller {result.variants}"
    )
    assert result.breaches == [], [vars(c) for c in result.breaches[:20]]
    assert result.integrity == []
    assert result.broken_controls == [], [vars(c) for c in result.broken_controls[:20]]
    assert result.operations >= 35  # every management operation of the three HTTP APIs
    assert set(matrix.CALLERS) <= set(result.variants), result.variants
    # Only the callers without a valid credential are refused before the rules: every CI-token,
    # role and cross-org cell reached authorization, so its refusal is the rule's, not a 401's.
    trivial = result.trivially_refused
    assert set(trivial) == {"none", "revoked", "expired"}, trivial
    assert all(trivial[c] == result.variants[c] for c in trivial), (trivial, result.variants)
    refused = result.refused_by_rule
    assert refused["ci-token"] == result.variants["ci-token"]
    assert refused["owner-b"] >= result.variants["owner-b"] // 2  # A's objects, by path or by id
    # The owner's own changes were made (2xx, as the platform's), not just not refused.
    owner_writes = [c for c in result.cases if c.caller == "owner" and c.target == "a" and c.method != "GET"]
    assert owner_writes
    assert sum(200 <= c.status < 300 for c in owner_writes) >= len(owner_writes) // 2, [
        (c.method, c.path, c.status) for c in owner_writes if not 200 <= c.status < 300
    ]


@pytest.mark.timeout(120)
async def test_the_matrix_catches_an_endpoint_that_ignores_who_is_calling(stack: Stack) -> None:
    """A planted leak: a proxy before the credentials service that sends every request with a key
    as the platform (a service that forgot its tenancy checks). The matrix must report it."""
    target = stack.url("credentials")
    platform = stack.admin_token

    async def leak(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        if "Authorization" in headers:
            headers["Authorization"] = f"Bearer {platform}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, target + request.path_qs, data=await request.read(), headers=headers
            ) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", leak)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        result, _ = await tenancy.run_on(
            stack,
            host=stack.registry.host,
            auth={"type": "anonymous"},
            services=("credentials",),
            urls={"credentials": f"http://127.0.0.1:{port}"},
        )
    finally:
        await runner.cleanup()
    breaches = {(c.caller, c.target) for c in result.breaches}
    assert ("owner-b", "a") in breaches, breaches  # B's owner reads and changes A's registries
    assert ("viewer", "a") in breaches, breaches  # a viewer changes what only an owner may
    assert all(c.service == "credentials" for c in result.breaches)
    assert result.tenancy_breaches > 0
