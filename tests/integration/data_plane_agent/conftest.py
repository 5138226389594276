"""Fixtures of the data-plane agent's integration tests.

`open_harness(...)` opens a sandbox cluster, a test orchestrator's NATS
connection and (unless `start=False`) the agent app, bound to this test's NATS
server, bus prefix and temporary directory; keyword arguments are agent
settings, `nats_url=` another NATS server (a test that stops its own).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from libs.devstack.servers import NatsServer
from tests.integration.data_plane_agent.helpers import Harness, harness

OpenHarness = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def open_harness(nats_server: NatsServer, bus_prefix: str, tmp_path: Path) -> OpenHarness:
    def open_(*, nats_url: str | None = None, **options: Any) -> AbstractAsyncContextManager[Harness]:
        return harness(nats_url or nats_server.url, bus_prefix, tmp_path, **options)

    return open_
