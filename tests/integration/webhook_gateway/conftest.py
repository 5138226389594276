"""Fixtures of the webhook-gateway integration tests: the settings and one running gateway (`env`).

A module that needs other settings overrides `settings` (pytest picks the
nearest definition); a test that needs several replicas or other settings per
test uses `helpers.running`, `gateway_client` and `fake_orchestrator` itself.
"""

from __future__ import annotations

from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import running
from tests.support import service_fixtures

settings, env = service_fixtures(Settings, running, name="env")
