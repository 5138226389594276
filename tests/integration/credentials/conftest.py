"""Fixtures of the credentials integration tests: the service's settings and the running service.

A module that needs other settings overrides `settings` (pytest picks the
nearest definition); a test that needs another environment (a private OpenBao)
or no fake orchestrator calls `helpers.running` itself.
"""

from __future__ import annotations

from services.credentials.settings import Settings
from tests.integration.credentials.helpers import running
from tests.support import service_fixtures

settings, svc = service_fixtures(Settings, running, name="svc")
