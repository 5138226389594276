"""Fixtures of the orchestrator integration tests: the orchestrator running in-process.

`orch` knows tags 1.0 and 1.1 of the test repository; a test that needs other
settings (a secured NATS, a short token TTL) calls `helpers.running_orchestrator`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.orchestrator.helpers import DIGEST_1_0, DIGEST_1_1, Harness, running_orchestrator


@pytest.fixture
async def orch(base_env: dict[str, str]) -> AsyncIterator[Harness]:
    async with running_orchestrator(base_env) as harness:
        harness.credentials.add_tag("1.0", DIGEST_1_0)
        harness.credentials.add_tag("1.1", DIGEST_1_1)
        yield harness
