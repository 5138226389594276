"""`make chaos`, part 2, short: schemathesis against every service's /openapi.json.

At least 500 requests per service (counted by the service's own request metric),
every operation, positive and negative data, stateful sequences; no 5xx, and
every response conforms to the document (status code, content type, headers,
body schema). `make chaos` does the same with 10,000 requests per service.

The last test points the same harness at a deliberately broken service, to show
that what is checked here can fail.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, SecretStr

from chaos import hostile
from chaos.stack import ChaosStack
from libs.runtime.http import create_base_app, json_response

MIN_REQUESTS = 500


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", hostile.SERVICES)
async def test_no_5xx_and_every_answer_matches_the_document(
    chaos_stack: ChaosStack, service: str, tmp_path: Path
) -> None:
    tenant = await hostile.prepare(chaos_stack.stack, f"hostile-{secrets.token_hex(4)}")
    result = await asyncio.to_thread(
        hostile.fuzz_service,
        chaos_stack.stack.url(service),
        service,
        tenant,
        tmp_path,
        min_requests=MIN_REQUESTS,
        max_examples=10,
        budget_seconds=150,
        deadline_seconds=200,  # inside the test's timeout: a missed floor fails with its counts
    )
    output = (tmp_path / "st-output.txt").read_text()[-4000:]
    assert result.requests >= MIN_REQUESTS, (result.statuses, result.errors)
    assert result.server_errors == 0, (result.statuses, output)
    assert result.failures == [], output
    assert result.errors == [], output
    assert result.ok, result.summary()  # tool errors (schemathesis' own) within their bound too
    if service != "data_plane_agent":
        # The fuzzer got past authentication and validation to real answers, and was refused too.
        assert any(200 <= s < 300 for s in result.statuses), result.statuses
        assert {401, 404} <= set(result.statuses), result.statuses


class Thing(BaseModel):
    id: str
    size: int


@pytest.fixture
async def broken_service() -> AsyncIterator[str]:
    """A service with three bugs: a 500 on some input, an undocumented status, a body off its schema."""
    app, api = create_base_app(service="broken", version="0", admin_token=SecretStr("broken-admin"))

    async def get_thing(request: web.Request) -> web.Response:
        thing_id = request.match_info["id"]
        if "0" in thing_id:
            raise RuntimeError("a bug")  # 500
        if len(thing_id) > 3:
            return json_response({"oops": True}, status=418)  # undocumented
        return json_response({"id": thing_id, "size": "large"})  # size must be an integer

    api.route("GET", "/v1/things/{id}", get_thing, summary="a thing", responses={200: Thing})
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.mark.timeout(120)
async def test_the_harness_catches_a_broken_service(broken_service: str, tmp_path: Path) -> None:
    tenant = hostile.Tenant(org="x", admin_token="broken-admin", ci_token="none", ids=["0", "abc"])
    result = await asyncio.to_thread(
        hostile.fuzz_service,
        broken_service,
        "broken",
        tenant,
        tmp_path,
        min_requests=50,
        max_examples=20,
        budget_seconds=60,
    )
    codes = {f["code"] for f in result.failures}
    assert result.server_errors > 0
    # A server error, an undocumented status code, a body its schema rejects.
    assert {"ST101", "ST103", "ST108"} <= codes, result.failures
    assert not result.ok
