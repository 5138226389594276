"""Test harness for the data-plane agent: real NATS, the in-process sandbox cluster, the real app.

The test plays the orchestrator (another Landfall service): it publishes
`DeployCommand`s on the data plane's deploy subject and reads `RolloutReport`s
from the STATUS stream, exactly what the orchestrator would see. It signs them
with `SIGNER`, whose public key the agent is given (`LANDFALL_COMMAND_PUBLIC_KEYS`);
`send(..., signed=False)` sends one as it is, to test what the agent refuses. Tests get a
harness from the `open_harness` fixture (conftest.py); `harness` here is what
it calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from nacl.public import PublicKey, SealedBox
from nacl.signing import SigningKey

from libs.contracts import signing
from libs.contracts.ids import new_id
from libs.contracts.messages import DeployCommand, RemoveCommand, RolloutReport, SealedSecret, utcnow
from libs.contracts.naming import namespace_for
from libs.contracts.subjects import Subjects
from libs.devstack.sandbox import SandboxCluster, write_kubeconfig
from libs.runtime import bus as busmod
from libs.runtime.settings import ServiceSettings
from services.data_plane_agent.app import create_app
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.settings import Settings

ORG, PROJECT, ENV = "acme", "shop", "development"
TERMINAL = frozenset({"succeeded", "failed", "superseded"})
NAMESPACE = namespace_for(ORG, PROJECT, ENV)
SIGNER = SigningKey.generate()  # plays the orchestrator's command signing key
SIGNER_PUBLIC = signing.public_key_b64(SIGNER)


def seal(dockerconfig: bytes, public_key: bytes) -> SealedSecret:
    """What the credentials service does: a sealed box to the data plane's public key."""
    return SealedSecret(
        recipient_key_id=hashlib.sha256(public_key).hexdigest()[:16],
        ciphertext=base64.b64encode(SealedBox(PublicKey(public_key)).encrypt(dockerconfig)).decode(),
        registry_id=new_id("reg"),
    )


def deploy_command(dataplane_id: str, component: str, **overrides: Any) -> DeployCommand:
    """A deploy command as the orchestrator dispatches it (a service on port 8080, seq 1)."""
    values: dict[str, Any] = {
        "deployment_id": new_id("dep"),
        "dataplane_id": dataplane_id,
        "org": ORG,
        "project": PROJECT,
        "component": component,
        "environment": ENV,
        "namespace": NAMESPACE,
        "component_type": "service",
        "image": f"registry.example.com/acme/{component}:1.0",
        "seq": 1,
        "port": 8080,
        "dispatched_at": utcnow(),
    }
    values.update(overrides)
    return DeployCommand(**values)


@dataclass
class Harness:
    cluster: SandboxCluster
    bus: busmod.Bus
    identity: Identity
    settings: Settings
    reports: list[RolloutReport] = field(default_factory=list)
    server: TestServer | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def dp(self) -> str:
        return self.identity.dataplane_id

    @property
    def subjects(self) -> Subjects:
        return self.bus.subjects

    # --- the agent ------------------------------------------------------------------------
    async def start_agent(self) -> TestServer:
        assert self.server is None
        self.server = TestServer(create_app(self.settings))
        await self.server.start_server()
        return self.server

    async def stop_agent(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def get(self, path: str) -> tuple[int, Any]:
        assert self.server is not None
        async with aiohttp.ClientSession() as http, http.get(self.server.make_url(path)) as resp:
            return resp.status, await resp.json(content_type=None)

    # --- playing the orchestrator ---------------------------------------------------------
    def command(self, component: str, **overrides: Any) -> DeployCommand:
        return deploy_command(overrides.pop("dataplane_id", self.dp), component, **overrides)

    def removal(self, component: str, *, seq: int, **overrides: Any) -> RemoveCommand:
        """The teardown the orchestrator sends when `component` is deleted (in the test's namespace)."""
        values: dict[str, Any] = {
            "teardown_id": "td_" + new_id("dep")[4:],
            "dataplane_id": self.dp,
            "org": ORG,
            "project": PROJECT,
            "component": component,
            "environment": ENV,
            "namespace": NAMESPACE,
            "seq": seq,
            "sent_at": utcnow(),
        }
        return RemoveCommand(**(values | overrides))

    async def send_removal(self, removal: RemoveCommand, *, signed: bool = True) -> None:
        removal = signing.sign(removal, SIGNER) if signed else removal
        await self.bus.publish_durable(self.subjects.deploy(self.dp), removal, msg_id=removal.teardown_id)

    async def send(self, cmd: DeployCommand, *, msg_id: str | None = None, signed: bool = True) -> None:
        """Publish `cmd`, signed by `SIGNER` as the orchestrator would (unless `signed=False`)."""
        await self.bus.publish_durable(
            self.subjects.deploy(self.dp),
            signing.sign(cmd, SIGNER) if signed else cmd,
            msg_id=msg_id or f"{cmd.deployment_id}:{cmd.execution_id}",
        )

    async def deploy(self, component: str, **overrides: Any) -> DeployCommand:
        """`command` and `send` in one: the command the orchestrator dispatched, for the test to follow."""
        cmd = self.command(component, **overrides)
        await self.send(cmd)
        return cmd

    async def deployed(self, component: str, **overrides: Any) -> DeployCommand:
        """`deploy`, then wait for its final report, which must be `succeeded`."""
        cmd = await self.deploy(component, **overrides)
        final = await self.wait_report(cmd.deployment_id)
        assert final.status == "succeeded", final
        return cmd

    async def _on_report(self, msg: Any) -> None:
        self.reports.append(RolloutReport.model_validate_json(msg.data))
        self._changed.set()

    def reports_for(self, deployment_id: str, execution_id: str | None = None) -> list[RolloutReport]:
        return [
            r
            for r in self.reports
            if r.deployment_id == deployment_id and (execution_id is None or r.execution_id == execution_id)
        ]

    async def wait_report(
        self,
        deployment_id: str,
        statuses: str | frozenset[str] | set[str] = TERMINAL,
        *,
        execution_id: str | None = None,
        timeout: float = 15.0,
    ) -> RolloutReport:
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        async with asyncio.timeout(timeout):
            while True:
                for report in self.reports_for(deployment_id, execution_id):
                    if report.status in wanted:
                        return report
                self._changed.clear()
                await self._changed.wait()

    # --- reading the cluster --------------------------------------------------------------
    def obj(self, api_version: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(api_version, plural, NAMESPACE, name)

    def image_of(self, deployment: str) -> str:
        """The image the Deployment's (only) container runs now; the Deployment must exist."""
        dep = self.obj("apps/v1", "deployments", deployment)
        assert dep is not None
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


@contextlib.asynccontextmanager
async def harness(
    nats_url: str,
    bus_prefix: str,
    tmp_path: Path,
    *,
    controller: bool = True,
    start: bool = True,
    **settings: Any,
) -> AsyncIterator[Harness]:
    async with SandboxCluster(controller=controller) as cluster:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
        identity = Identity.generate(new_id("dp"))
        key_file = tmp_path / "agent.key"
        key_file.write_text(base64.b64encode(bytes(identity.private_key)).decode())
        key_file.chmod(0o600)
        agent_settings = Settings(
            nats_url=nats_url,
            bus_prefix=bus_prefix,
            http_host="127.0.0.1",
            dataplane_id=identity.dataplane_id,
            private_key_file=key_file,
            kubeconfig=kubeconfig,
            state_dir=tmp_path / "state",
            heartbeat_interval_seconds=0.2,
            rollout_poll_seconds=0.5,
            shutdown_timeout_seconds=2.0,
            **({"command_public_keys": SIGNER_PUBLIC} | settings),
        )
        nc = await busmod.connect(ServiceSettings(nats_url=nats_url), name="test-orchestrator")
        try:
            bus = busmod.Bus(nc, Subjects(bus_prefix))
            await busmod.ensure_streams(bus.js, bus.subjects.streams)
            h = Harness(cluster=cluster, bus=bus, identity=identity, settings=agent_settings)
            sub = await bus.js.subscribe(
                bus.subjects.status(identity.dataplane_id),
                stream=bus.subjects.status_stream.name,
                cb=h._on_report,
                ordered_consumer=True,
            )
            try:
                if start:
                    await h.start_agent()
                yield h
            finally:
                await h.stop_agent()
                await sub.unsubscribe()
        finally:
            await nc.close()
