"""Helpers for the webhook-gateway integration tests (the fixtures are in conftest.py).

`Env` is one running gateway with a fake orchestrator and a CI token for the
component `api`, plus the requests the tests send. `FakeOrchestrator` stands in
for the orchestrator (another Landfall service) on the real NATS: it answers
`rpc_component_get` / `rpc_deployment_get` like the orchestrator would, records
every `ImagePushed` it sees, and publishes `DeploymentChanged` when a test
moves a deployment on. Its `keys` answer the org API-key look-up (and revoke
keys as the orchestrator does), and its `audit` collects every audit event the
gateway publishes (`tests/integration/credentials/identity.py`, shared with the
credentials tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from nats.aio.msg import Msg

from libs.contracts.messages import (
    ComponentChanged,
    ComponentGet,
    ComponentInfo,
    DeploymentChanged,
    DeploymentGet,
    DeploymentView,
    ImagePushed,
)
from libs.contracts.subjects import Subjects
from libs.devstack.servers import NatsServer
from libs.runtime.bus import Bus, RpcHandlerError, connect
from libs.runtime.settings import ServiceSettings
from services.webhook_gateway.app import create_app
from services.webhook_gateway.settings import Settings
from tests.integration.credentials.identity import AuditTap, FakeKeys
from tests.support import bearer, settings_from
from tests.support import component_info as component_info  # the gateway tests import it from here

ORG, PROJECT = "acme", "shop"
COMPONENT_PATH = f"/v1/orgs/{ORG}/projects/{PROJECT}/components"


def fuzzing_settings(base_env: dict[str, str], **overrides: Any) -> Settings:
    """The gateway's settings for a fuzzer: its thousands of requests from one address (many of
    them with bad credentials) must reach the code, not the rate limits."""
    return settings_from(
        Settings,
        base_env,
        rate_limit_per_second=1e6,
        rate_limit_burst=1_000_000,
        preauth_refusal_burst=1_000_000,
        **overrides,
    )


def now() -> datetime:
    return datetime.now(UTC)


class FakeOrchestrator:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.components: dict[tuple[str, str, str], ComponentInfo] = {}
        self.deployments: dict[str, DeploymentView] = {}
        self.pushed: list[ImagePushed] = []
        self.pushed_event = asyncio.Event()
        # What to do with each ImagePushed: None = only record; else the final status after a short delay.
        self.auto_finish: str | None = None
        self.keys = FakeKeys(bus)
        self.audit = AuditTap(bus)
        self._tasks: set[asyncio.Task[None]] = set()
        # How often a gateway asked for each deployment. The gateway subscribes to a deployment's
        # changes *before* it asks (one connection, processed in order by nats-server), so an ask
        # proves the long-poll's subscription exists: the marker tests wait on instead of sleeping.
        self.asked: Counter[str] = Counter()
        self._asked_changed = asyncio.Condition()

    async def wait_asked(self, deployment_id: str, times: int = 1, timeout: float = 10) -> None:
        """Until a gateway has asked for `deployment_id` `times` times (so a long-poll is listening)."""
        async with self._asked_changed:
            await asyncio.wait_for(
                self._asked_changed.wait_for(lambda: self.asked[deployment_id] >= times), timeout
            )

    def add(self, info: ComponentInfo) -> ComponentInfo:
        self.components[(info.org, info.project, info.component)] = info
        return info

    async def start(self) -> None:
        async def component_get(req: ComponentGet) -> ComponentInfo:
            info = self.components.get((req.org, req.project, req.component))
            if info is None:
                raise RpcHandlerError("not_found", "no such component")
            return info

        async def deployment_get(req: DeploymentGet) -> DeploymentView:
            async with self._asked_changed:
                self.asked[req.deployment_id] += 1
                self._asked_changed.notify_all()
            view = self.deployments.get(req.deployment_id)
            if view is None:
                raise RpcHandlerError("not_found", "no such deployment")
            return view

        async def on_pushed(msg: Msg) -> None:
            event = ImagePushed.model_validate_json(msg.data)
            self.pushed.append(event)
            self.pushed_event.set()
            if self.auto_finish is not None:
                self.record(event, status="progressing")
                task = asyncio.create_task(self._finish_later(event.deployment_id, self.auto_finish))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        await self.bus.serve(
            self.bus.subjects.rpc_component_get, ComponentGet, component_get, queue="orchestrator"
        )
        await self.bus.serve(
            self.bus.subjects.rpc_deployment_get, DeploymentGet, deployment_get, queue="orchestrator"
        )
        await self.bus.nc.subscribe(self.bus.subjects.image_pushed, cb=on_pushed)
        await self.keys.start()
        await self.audit.start()

    async def _finish_later(self, deployment_id: str, status: str) -> None:
        # The rollout ends once CI is listening (it asked), so the change is pushed, not found late.
        with contextlib.suppress(TimeoutError):
            await self.wait_asked(deployment_id, timeout=30)
        await self.change(
            deployment_id, status=status, reason="rollout failed" if status == "failed" else None
        )

    def record(self, event: ImagePushed, *, status: str = "pending") -> DeploymentView:
        view = DeploymentView(
            id=event.deployment_id,
            org=event.org,
            project=event.project,
            component=event.component,
            environment="development",
            image=event.image,
            status=status,
            source="webhook",
            created_at=event.accepted_at,
            updated_at=now(),
        )
        self.deployments[view.id] = view
        return view

    def admin_deployment(
        self, deployment_id: str, component: str, *, status: str = "progressing"
    ) -> DeploymentView:
        view = DeploymentView(
            id=deployment_id,
            org=ORG,
            project=PROJECT,
            component=component,
            environment="development",
            image=f"ghcr.io/acme/{component}:admin",
            status=status,
            source="admin",
            created_at=now(),
            updated_at=now(),
        )
        self.deployments[view.id] = view
        return view

    async def change(
        self, deployment_id: str, *, status: str, reason: str | None = None, only_notify: bool = False
    ) -> DeploymentView:
        """Move a deployment on and publish DeploymentChanged.

        `only_notify` leaves `rpc_deployment_get` answering the old view, so a test can tell an
        answer that came from the change message from one that came from asking again.
        """
        view = self.deployments[deployment_id].model_copy(
            update={"status": status, "reason": reason, "updated_at": now()}
        )
        if not only_notify:
            self.deployments[deployment_id] = view
        await self.bus.publish(
            self.bus.subjects.deployment_changed(deployment_id), DeploymentChanged(deployment=view)
        )
        await self.bus.nc.flush()
        return view

    async def component_changed(self, info: ComponentInfo) -> None:
        await self.bus.publish(
            self.bus.subjects.components_changed,
            ComponentChanged(org=info.org, project=info.project, component=info.component),
        )
        await self.bus.nc.flush()

    async def wait_pushed(self, count: int) -> list[ImagePushed]:
        while len(self.pushed) < count:
            self.pushed_event.clear()
            await asyncio.wait_for(self.pushed_event.wait(), 10)
        return self.pushed

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.nc.close()


@contextlib.asynccontextmanager
async def fake_orchestrator(settings: Settings) -> AsyncIterator[FakeOrchestrator]:
    nc = await connect(ServiceSettings(nats_url=settings.nats_url), name="fake-orchestrator", wait_seconds=10)
    fake = FakeOrchestrator(Bus(nc, Subjects(settings.bus_prefix)))
    try:
        await fake.start()
        yield fake
    finally:
        await fake.close()


@contextlib.asynccontextmanager
async def private_nats(data_dir: Path) -> AsyncIterator[NatsServer]:
    """A NATS server of the test's own, which it may stop and start (stopped at the end in any case)."""
    server = NatsServer(data_dir)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}


async def create_token(
    client: TestClient[Any, Any], settings: Settings, component: str = "api", **body: Any
) -> dict[str, Any]:
    resp = await client.post(f"{COMPONENT_PATH}/{component}/tokens", json=body, headers=admin(settings))
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


@dataclass
class Env:
    settings: Settings
    orch: FakeOrchestrator
    client: TestClient[Any, Any]
    token: str

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def send(self, body: Any, **headers: str) -> tuple[int, Any]:
        """POST `body` as JSON to the webhook with this env's token."""
        resp = await self.client.post(
            "/v1/webhooks/deploy", json=body, headers={**bearer(self.token), **headers}
        )
        return resp.status, await resp.json()

    async def send_raw(
        self, body: bytes, headers: dict[str, str], client: TestClient[Any, Any] | None = None
    ) -> tuple[int, Any]:
        """POST these exact bytes (what a signature covers), to another replica with `client`."""
        resp = await (client or self.client).post(
            "/v1/webhooks/deploy",
            data=body,
            headers={"Content-Type": "application/json", **headers, **bearer(self.token)},
        )
        return resp.status, await resp.json()

    async def deploy(self, tag: str = "1.0") -> str:
        resp = await self.client.post("/v1/webhooks/deploy", json={"tag": tag}, headers=bearer(self.token))
        assert resp.status == 202
        deployment_id: str = (await resp.json())["deployment_id"]
        return deployment_id

    async def status(
        self, deployment_id: str, wait: int | str | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        query = f"?wait={wait}" if wait is not None else ""
        resp = await self.client.get(
            f"/v1/webhooks/deployments/{deployment_id}{query}", headers=bearer(token or self.token)
        )
        return resp.status, await resp.json()

    async def new_secret(self, component: str = "api") -> str:
        resp = await self.client.post(
            f"{COMPONENT_PATH}/{component}/signing-secret", headers=admin(self.settings)
        )
        assert resp.status == 201, await resp.text()
        secret: str = (await resp.json())["secret"]
        return secret


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Env]:
    """A gateway and a fake orchestrator that knows the component `api`, and a CI token for it."""
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        token = (await create_token(client, settings))["token"]
        yield Env(settings, orch, client, token)
