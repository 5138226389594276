"""Fixtures of the credentials integration tests: the service's settings and the running service.

A module that needs other settings overrides `settings` (pytest picks the
nearest definition); a test that needs another environment (a private OpenBao)
or no fake orchestrator calls `helpers.running` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.credentials.settings import Settings
from tests.integration.credentials.helpers import Harness, running
from tests.support import settings_from


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(Settings, base_env)


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Harness]:
    async with running(settings) as harness:
        yield harness
