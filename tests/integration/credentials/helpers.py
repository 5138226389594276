"""What the credentials integration tests share besides fixtures: names, the harness, the fake orchestrator.

The service runs in-process against the session's real NATS, PostgreSQL and
OpenBao. The orchestrator (another Landfall service) is the only thing faked:
`FakeOrchestrator` answers `rpc_registry_usage` and `rpc_dataplane_key` on the
real NATS from dicts the test fills in, and `FakeKeys` (`identity.py`) answers the API-key look-up.
`Harness.audit` holds every audit event the service published.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import hvac
from aiohttp.test_utils import TestClient, TestServer

from libs.contracts.messages import DataPlaneKey, DataPlaneKeyGet, RegistryUsage, RegistryUsageReply
from libs.contracts.subjects import Subjects
from libs.runtime.bus import Bus, connect
from libs.runtime.errors import NotFound
from services.credentials.app import create_app
from services.credentials.settings import Settings
from tests.integration.credentials.identity import AuditTap, FakeKeys
from tests.support import bearer

# The session's registries listen on loopback, which the egress policy refuses unless listed.
LOCAL_REGISTRIES = ["127.0.0.1"]
ORG = "acme"
OTHER_ORG = "globex"
REGISTRIES = f"/v1/orgs/{ORG}/registries"


@dataclass
class FakeOrchestrator:
    """Answers "which components use this registry?" like the orchestrator would."""

    usage: dict[str, list[str]] = field(default_factory=dict)
    asked: list[RegistryUsage] = field(default_factory=list)

    async def registry_usage(self, req: RegistryUsage) -> RegistryUsageReply:
        self.asked.append(req)
        return RegistryUsageReply(components=self.usage.get(req.registry_id, []))

    plane_keys: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """(org, data plane id) -> the enrolled key (None: created, not enrolled; absent: no such plane)."""

    async def dataplane_key(self, req: DataPlaneKeyGet) -> DataPlaneKey:
        if (req.org, req.dataplane_id) not in self.plane_keys:
            raise NotFound("data plane")
        return DataPlaneKey(public_key=self.plane_keys[(req.org, req.dataplane_id)])


@dataclass
class Harness:
    settings: Settings
    client: TestClient[Any, Any]
    bus: Bus
    orchestrator: FakeOrchestrator
    keys: FakeKeys
    audit: AuditTap

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.settings.admin_token.get_secret_value())

    async def create(self, body: dict[str, Any], org: str = ORG, expect: int = 201) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/orgs/{org}/registries", json=body, headers=self.headers)
        data: dict[str, Any] = await resp.json()
        assert resp.status == expect, data
        return data

    def vault(self) -> hvac.Client:
        return hvac.Client(url=self.settings.vault_addr, token=self.settings.vault_token.get_secret_value())

    def vault_path(self, registry_id: str, org: str = ORG) -> str:
        return f"{self.settings.vault_prefix}/orgs/{org}/registries/{registry_id}"

    @property
    def schema(self) -> str:
        return "credentials" + self.settings.schema_suffix


@contextlib.asynccontextmanager
async def running(settings: Settings, *, orchestrator: bool = True) -> AsyncIterator[Harness]:
    """The service on a test server, a bus for the test, and (unless told not to) a fake orchestrator."""
    fake = FakeOrchestrator()
    nc = await connect(settings, name="credentials-test", wait_seconds=10)
    try:
        bus = Bus(nc, Subjects(settings.bus_prefix))
        keys, audit = FakeKeys(bus), AuditTap(bus)
        await audit.start()
        if orchestrator:
            await bus.serve(
                bus.subjects.rpc_registry_usage, RegistryUsage, fake.registry_usage, queue="orchestrator"
            )
            await bus.serve(
                bus.subjects.rpc_dataplane_key, DataPlaneKeyGet, fake.dataplane_key, queue="orchestrator"
            )
            await keys.start()
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            yield Harness(
                settings=settings, client=client, bus=bus, orchestrator=fake, keys=keys, audit=audit
            )
        finally:
            await client.close()
    finally:
        await nc.close()
