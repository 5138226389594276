"""Organizations that cannot see each other: every operation, by every kind of caller, on both orgs.

The matrix is generated (chaos/matrix.py) from every operation of every service's
`/openapi.json` and its `x-landfall-auth`, so a route added tomorrow is in it; chaos/tenancy.py
builds two orgs through the public API and sends it (`make chaos` counts the same breaches).
The expired key is made with `expires_in_days: 1` (the API's least) and its expiry then moved
into the past in the orchestrator's database.
"""

from __future__ import annotations

import time

import pytest

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
    started = time.monotonic()
    result, _ = await tenancy.run_on(stack, host=stack.registry.host, auth={"type": "anonymous"})
    seconds = time.monotonic() - started
    print(
        f"tenancy matrix: {len(result.cases)} cells = {result.operations} operations by "
        f"{len(matrix.CALLERS)} kinds of caller on A's, B's and mixed objects, in {seconds:.1f} s; "
        f"by caller {result.variants}"
    )
    assert result.breaches == [], [vars(c) for c in result.breaches[:20]]
    assert result.integrity == []
    assert result.broken_controls == [], [vars(c) for c in result.broken_controls[:20]]
    assert result.operations >= 35  # every management operation of the three HTTP APIs
    assert set(matrix.CALLERS) <= set(result.variants), result.variants
    assert seconds < 60
