"""The hostile shapes schemathesis misses (`chaos.strategies`), sent to every orchestrator operation.

Deep JSON, integers past Python's conversion limit and past a bigint in bodies (`order`, `port`,
`expires_in_days`) and in `?limit=`, non-ASCII digits (`?limit=²`), broken UTF-8, NUL, lone
surrogates, huge strings and wrong types at every position: no answer is a 5xx.
"""

from __future__ import annotations

import asyncio

import pytest

from chaos.shapes import Credentials, fuzz_shapes
from tests.integration.orchestrator.helpers import Harness

EXAMPLES = 100


@pytest.mark.timeout(400)
async def test_no_hostile_shape_gets_a_5xx(orch: Harness) -> None:
    world = await orch.provision()
    key = (await orch.api_key(world.org))["key"]
    status, deployment, _ = await orch.call("POST", f"{world.component_path}/deployments", {"tag": "1.0"})
    assert status in (201, 202), deployment
    creds = Credentials(
        admin_token=orch.admin_token,
        api_key=key,
        values={
            "org": [world.org],
            "project": [world.project],
            "component": [world.component],
            "environment": list(world.environments),
            "id": [world.dataplane_id, deployment["id"]],
        },
    )
    url = str(orch.client.make_url("")).rstrip("/")
    result = await asyncio.to_thread(fuzz_shapes, url, creds, examples=EXAMPLES)
    assert result.requests >= EXAMPLES * 20, result.statuses
    assert result.server_errors == [], result.server_errors[:8]
    assert {200, 404, 422} <= result.statuses.keys(), result.statuses
