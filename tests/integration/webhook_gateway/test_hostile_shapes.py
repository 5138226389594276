"""The hostile shapes schemathesis misses (`chaos.strategies`), sent to every gateway operation.

Deep JSON, integers past Python's conversion limit, non-ASCII digits in `?wait=`, broken UTF-8,
NUL, lone surrogates, huge strings and wrong types at every position of every body: no answer
is a 5xx. Before `?wait=` went through `query_int`, this found `wait=99…9` (5,000 digits): it
passed `str.isdigit()` and `int()` raised, a 500.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chaos.shapes import Credentials, fuzz_shapes
from tests.integration.webhook_gateway.helpers import ORG, PROJECT, Env, fuzzing_settings, running

EXAMPLES = 100


@pytest.mark.timeout(300)
async def test_no_hostile_shape_gets_a_5xx(base_env: dict[str, str]) -> None:
    settings = fuzzing_settings(base_env, long_poll_max_seconds=1)
    env: Env
    async with running(settings) as env:
        deployment = await env.deploy()
        creds = Credentials(
            admin_token=settings.admin_token.get_secret_value(),
            ci_token=env.token,
            values={"org": [ORG], "project": [PROJECT], "component": ["api"], "id": [deployment]},
        )
        result = await asyncio.to_thread(fuzz_shapes, env.url, creds, examples=EXAMPLES)
    assert result.requests >= EXAMPLES * 8, result.statuses
    assert result.server_errors == [], result.server_errors[:8]
    # The shapes got past authentication to validation, and to real answers.
    assert {200, 422} <= result.statuses.keys(), result.statuses


async def test_a_credential_that_is_not_ascii_is_401(env: Env) -> None:
    """Latin-1 header bytes reach the guard as surrogates; comparing them with the admin token
    (`str.encode()`) raised, a 500 (found by the shapes above)."""
    url = f"{env.url}/v1/orgs/{ORG}/projects/{PROJECT}/components/api/tokens"

    def send(token: bytes) -> int:
        with httpx.Client(timeout=10) as client:
            return client.get(url, headers=[(b"Authorization", b"Bearer " + token)]).status_code

    for token in (b"lfk_\xa0\xff", b"\xe9t\xe9", b"lfci_\xff"):
        assert await asyncio.to_thread(send, token) == 401, token
