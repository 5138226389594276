"""Helpers for the orchestrator integration tests (the fixtures are in conftest.py).

The orchestrator runs in-process against the session's real NATS and PostgreSQL.
The other Landfall services it talks to are played by the test on the same NATS,
with the same `Bus` class:

* `FakeCredentials` answers the credentials service's RPCs (registry lookup, tag
  resolution, sealed pull secrets) and can be stopped and started again to
  simulate an outage (no responders).
* `Harness.commands` collects every `DeployCommand` sent to any data plane (and
  `Harness.wire` the bytes of every command, to check signatures on), and
  `Harness.report` / `Harness.push` publish what an agent and a gateway would.
* Commands are signed with `COMMAND_SEED` unless a test gives another seed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from nats.aio.msg import Msg
from pydantic import SecretStr

from libs.contracts.ids import new_id
from libs.contracts.messages import (
    ComponentChanged,
    DeployCommand,
    DeploymentChanged,
    ImagePushed,
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    RemoveCommand,
    ResolvedImage,
    ResolveImage,
    RolloutReport,
    SealedSecret,
    command_kind,
)
from libs.contracts.signing import new_seed
from libs.contracts.subjects import Subjects
from libs.runtime.bus import Bus, RpcHandlerError, connect
from libs.runtime.settings import ServiceSettings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from tests.support import bearer, eventually, settings_from

REGISTRY_HOST = "registry.example.test:5000"
REPOSITORY = "team/api"
DIGEST_1_0 = "sha256:" + "1" * 64
DIGEST_1_1 = "sha256:" + "2" * 64
IMAGE_1_0 = f"{REGISTRY_HOST}/{REPOSITORY}:1.0"  # the tag as pushed ...
IMAGE_1_1 = f"{REGISTRY_HOST}/{REPOSITORY}:1.1"
PINNED_1_0 = f"{REGISTRY_HOST}/{REPOSITORY}@{DIGEST_1_0}"  # ... and as a command pins it
PINNED_1_1 = f"{REGISTRY_HOST}/{REPOSITORY}@{DIGEST_1_1}"
SEALED_CIPHERTEXT = base64.b64encode(b"sealed-for-the-data-plane").decode()
COMMAND_SEED = new_seed()  # what signs the commands of every orchestrator these tests run


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeCredentials:
    """The credentials service as the orchestrator sees it over NATS."""

    settings: ServiceSettings
    registries: dict[str, RegistryInfo] = field(default_factory=dict)
    tags: dict[tuple[str, str], ResolvedImage] = field(default_factory=dict)
    pull_requests: list[PullSecretRequest] = field(default_factory=list)
    resolve_requests: list[ResolveImage] = field(default_factory=list)
    bus: Bus | None = None

    def add_registry(self, org: str, *, host: str = REGISTRY_HOST, auth_type: str = "basic") -> str:
        registry_id = new_id("reg")
        self.registries[registry_id] = RegistryInfo(
            id=registry_id,
            org=org,
            host=host,
            auth_type=auth_type,
            vendor="azure" if auth_type == "vendor" else None,
        )
        return registry_id

    def add_tag(self, tag: str, digest: str, *, repository: str = REPOSITORY) -> None:
        self.tags[(repository, tag)] = ResolvedImage(status="resolved", digest=digest)

    async def start(self) -> None:
        nc = await connect(self.settings, name="fake-credentials", wait_seconds=5)
        bus = Bus(nc, Subjects(self.settings.bus_prefix))
        await bus.serve(bus.subjects.rpc_registry_get, RegistryGet, self._registry, queue="credentials")
        await bus.serve(bus.subjects.rpc_resolve_image, ResolveImage, self._resolve, queue="credentials")
        await bus.serve(
            bus.subjects.rpc_pull_secret, PullSecretRequest, self._pull_secret, queue="credentials"
        )
        await nc.flush()
        self.bus = bus

    async def stop(self) -> None:
        if self.bus is not None:
            await self.bus.nc.close()
            self.bus = None

    async def _registry(self, req: RegistryGet) -> RegistryInfo:
        info = self.registries.get(req.registry_id)
        if info is None or info.org != req.org:
            raise RpcHandlerError("not_found", "no such registry")
        return info

    async def _resolve(self, req: ResolveImage) -> ResolvedImage:
        self.resolve_requests.append(req)
        info = self.registries.get(req.registry_id)
        if info is None or info.org != req.org:
            raise RpcHandlerError("not_found", "no such registry")
        if info.auth_type == "vendor":
            return ResolvedImage(status="skipped", detail="vendor registry: resolved in the data plane")
        return self.tags.get(
            (req.repository, req.reference), ResolvedImage(status="not_found", detail="manifest unknown")
        )

    async def _pull_secret(self, req: PullSecretRequest) -> PullSecretReply:
        self.pull_requests.append(req)
        key_id = hashlib.sha256(base64.b64decode(req.recipient_public_key)).hexdigest()[:16]
        return PullSecretReply(
            sealed=SealedSecret(
                recipient_key_id=key_id, ciphertext=SEALED_CIPHERTEXT, registry_id=req.registry_id
            ),
            reason="sealed",
        )


@dataclass
class World:
    org: str
    project: str
    component: str
    dataplane_id: str
    public_key: str
    registry_id: str
    environments: tuple[str, ...]
    enrollment_token: str

    @property
    def component_path(self) -> str:
        return f"/v1/orgs/{self.org}/projects/{self.project}/components/{self.component}"


@dataclass
class Harness:
    client: TestClient[Any, Any]
    bus: Bus
    credentials: FakeCredentials
    admin_token: str
    commands: list[tuple[str, DeployCommand]] = field(default_factory=list)
    removals: list[tuple[str, RemoveCommand]] = field(default_factory=list)
    changes: list[DeploymentChanged] = field(default_factory=list)
    component_changes: list[ComponentChanged] = field(default_factory=list)
    wire: list[bytes] = field(default_factory=list)  # every command as published

    @property
    def subjects(self) -> Subjects:
        return self.bus.subjects

    async def call(
        self, method: str, path: str, body: Any = None, *, expect: int | None = None, token: str | None = ""
    ) -> tuple[int, Any, dict[str, str]]:
        auth = self.admin_token if token == "" else token
        headers = bearer(auth) if auth is not None else {}
        resp = await self.client.request(method, path, json=body, headers=headers)
        payload = await resp.json() if resp.content_type.endswith("json") else await resp.text()
        if expect is not None:
            assert resp.status == expect, (method, path, resp.status, payload)
        return resp.status, payload, dict(resp.headers)

    async def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return (await self.call(method, path, body, expect=expect))[1]

    async def api_key(self, org: str, role: str = "owner", *, name: str | None = None) -> dict[str, Any]:
        """A new API key of `org` (made with the admin token): the 201 answer, `key` included."""
        body = {"name": name or f"{role}-{time.monotonic_ns()}", "role": role}
        created: dict[str, Any] = await self.ok("POST", f"/v1/orgs/{org}/api-keys", body, 201)
        return created

    async def audit(self, org: str, query: str = "", *, token: str | None = "") -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/v1/orgs/{org}/audit{query}", token=token)
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def audited(self, org: str, what: str, **match: Any) -> dict[str, Any]:
        """Wait for the audit item of `org` whose fields include `match` (the trail is asynchronous)."""

        async def probe() -> dict[str, Any] | None:
            items = (await self.audit(org, "?limit=200"))["items"]
            found = [i for i in items if all(i.get(k) == v for k, v in match.items())]
            return found[0] if found else None

        return await eventually(probe, what=f"the audit item of {what}")

    async def provision(
        self,
        *,
        org: str = "acme",
        project: str = "shop",
        component: str = "api",
        component_type: str = "service",
        environments: tuple[str, ...] = ("development", "staging", "production"),
        enroll: bool = True,
        auth_type: str = "basic",
        extra: dict[str, Any] | None = None,
    ) -> World:
        """Org, one data plane (enrolled), environments in that order, a project and a component."""
        await self.ok("POST", "/v1/orgs", {"name": org}, 201)
        plane = await self.ok("POST", f"/v1/orgs/{org}/dataplanes", {"name": "main"}, 201)
        for order, env in enumerate(environments):
            await self.ok(
                "POST",
                f"/v1/orgs/{org}/environments",
                {"name": env, "dataplane_id": plane["id"], "order": order * 10},
                201,
            )
        await self.ok("POST", f"/v1/orgs/{org}/projects", {"name": project}, 201)
        registry_id = self.credentials.add_registry(org, auth_type=auth_type)
        body: dict[str, Any] = {
            "name": component,
            "type": component_type,
            "registry_id": registry_id,
            "image": IMAGE_1_0,
            **(extra or {}),
        }
        await self.ok("POST", f"/v1/orgs/{org}/projects/{project}/components", body, 201)
        public_key = base64.b64encode(os.urandom(32)).decode()
        if enroll:
            await self.ok(
                "POST",
                "/v1/dataplanes/enroll",
                {"enrollment_token": plane["enrollment_token"], "public_key": public_key, "version": "test"},
            )
        return World(
            org,
            project,
            component,
            plane["id"],
            public_key,
            registry_id,
            environments,
            plane["enrollment_token"],
        )

    async def push(
        self,
        world: World,
        image: str,
        *,
        deployment_id: str | None = None,
        msg_id: str = "",
        accepted_at: datetime | None = None,
    ) -> str:
        """What the webhook gateway publishes when CI sends an image."""
        event = ImagePushed(
            deployment_id=deployment_id or new_id("dep"),
            org=world.org,
            project=world.project,
            component=world.component,
            image=image,
            accepted_at=accepted_at or now(),
            token_prefix="lfci_test",
        )
        await self.bus.publish_durable(
            self.subjects.image_pushed, event, msg_id=msg_id or event.deployment_id
        )
        return event.deployment_id

    async def report(
        self,
        world: World,
        deployment_id: str,
        status: str,
        *,
        kind: str = "deploy",
        execution_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """What the data plane's agent publishes about a rollout or a run."""
        report = RolloutReport(
            kind=kind,
            deployment_id=deployment_id,
            execution_id=execution_id,
            dataplane_id=world.dataplane_id,
            status=status,
            reason=reason,
            applied_at=now(),
            reported_at=now(),
        )
        await self.bus.publish_durable(
            self.subjects.status(world.dataplane_id),
            report,
            msg_id=f"{deployment_id}:{execution_id}:{status}:{time.monotonic_ns()}",
        )

    async def roll_out(self, world: World, image: str) -> str:
        """Push `image` and, once it is dispatched, report it progressing; its deployment id."""
        deployment_id = await self.push(world, image)
        await self.wait_status(deployment_id, "dispatched")
        await self.report(world, deployment_id, "progressing")
        await self.wait_status(deployment_id, "progressing")
        return deployment_id

    async def deployment(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("GET", f"/v1/deployments/{deployment_id}")
        return result

    async def wait_status(self, deployment_id: str, *statuses: str, timeout: float = 10.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status, body, _ = await self.call("GET", f"/v1/deployments/{deployment_id}")
            return body if status == 200 and body["status"] in statuses else None

        return await eventually(probe, timeout=timeout, what=f"{deployment_id} in {statuses}")

    async def command_for(
        self, deployment_id: str, *, kind: str = "deploy", timeout: float = 10.0
    ) -> DeployCommand:
        async def probe() -> DeployCommand | None:
            found = [c for _, c in self.commands if c.deployment_id == deployment_id and c.kind == kind]
            return found[-1] if found else None

        return await eventually(probe, timeout=timeout, what=f"a {kind} command for {deployment_id}")


@contextlib.asynccontextmanager
async def running_orchestrator(env: dict[str, str], **overrides: Any) -> AsyncIterator[Harness]:
    """The orchestrator app on a test server, a fake credentials service, and the test's own bus."""
    overrides.setdefault("command_signing_seed", SecretStr(COMMAND_SEED))
    settings = settings_from(Settings, env, sweep_interval_seconds=0.3, **overrides)
    credentials = FakeCredentials(settings)
    await credentials.start()
    nc = await connect(settings, name="orchestrator-test", wait_seconds=5)
    bus = Bus(nc, Subjects(settings.bus_prefix))
    client = TestClient(TestServer(create_app(settings)))
    harness = Harness(
        client=client, bus=bus, credentials=credentials, admin_token=settings.admin_token.get_secret_value()
    )

    async def on_command(msg: Msg) -> None:
        harness.wire.append(msg.data)
        if command_kind(msg.data) == "remove":
            harness.removals.append((msg.subject, RemoveCommand.model_validate_json(msg.data)))
        else:
            harness.commands.append((msg.subject, DeployCommand.model_validate_json(msg.data)))

    async def on_change(msg: Msg) -> None:
        harness.changes.append(DeploymentChanged.model_validate_json(msg.data))

    async def on_component(msg: Msg) -> None:
        harness.component_changes.append(ComponentChanged.model_validate_json(msg.data))

    await nc.subscribe(bus.subjects.deploy("*"), cb=on_command)
    await nc.subscribe(bus.subjects.deployment_changed("*"), cb=on_change)
    await nc.subscribe(bus.subjects.components_changed, cb=on_component)
    await nc.flush()
    try:
        await client.start_server()
        yield harness
    finally:
        await client.close()
        await credentials.stop()
        await nc.close()
