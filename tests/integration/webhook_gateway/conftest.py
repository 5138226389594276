"""Fixtures of the webhook-gateway integration tests: the settings and one running gateway (`env`).

A module that needs other settings overrides `settings` (pytest picks the
nearest definition); a test that needs several replicas or other settings per
test uses `helpers.running`, `gateway_client` and `fake_orchestrator` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import Env, running
from tests.support import settings_from


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(Settings, base_env)


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    async with running(settings) as harness:
        yield harness
