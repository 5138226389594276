"""The agent's link and health: heartbeats, readiness, the durable consumer, many agents in one process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from pathlib import Path

import aiohttp
import pytest

from bench.fleet import run_agents
from libs.contracts import signing
from libs.contracts.ids import new_id
from libs.contracts.messages import AgentHeartbeat, RolloutReport
from libs.devstack.sandbox import write_kubeconfig
from libs.devstack.servers import NatsServer, free_port
from libs.runtime.bus import AGENT_MAX_ACK_PENDING
from services.data_plane_agent.domain.identity import Identity
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import SIGNER, SIGNER_PUBLIC
from tests.support import eventually


async def test_heartbeats_arrive_and_the_agent_is_ready(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        beats: asyncio.Queue[AgentHeartbeat] = asyncio.Queue()

        async def on_beat(msg: object) -> None:
            await beats.put(AgentHeartbeat.model_validate_json(msg.data))  # type: ignore[attr-defined]

        sub = await h.bus.nc.subscribe(h.subjects.heartbeat(h.dp), cb=on_beat)
        try:
            async with asyncio.timeout(5):
                first, second = await beats.get(), await beats.get()
        finally:
            await sub.unsubscribe()
        assert first.dataplane_id == second.dataplane_id == h.dp
        assert first.version == h.settings.version
        assert second.sent_at > first.sent_at

        status, body = await h.get("/readyz")
        assert status == 200, body
        assert body["checks"] == {"nats": "ok", "kubernetes": "ok"}
        status, doc = await h.get("/openapi.json")
        assert status == 200
        assert set(doc["paths"]) == {"/healthz", "/readyz", "/metrics", "/openapi.json"}

        info = await h.bus.js.consumer_info(h.subjects.dataplane_stream.name, h.subjects.agent_durable(h.dp))
        assert info.config.durable_name == h.subjects.agent_durable(h.dp)
        assert info.config.filter_subject == h.subjects.deploy(h.dp)
        assert info.config.ack_policy == "explicit"
        assert info.config.max_ack_pending == AGENT_MAX_ACK_PENDING  # per-component order: the agent keeps it


async def test_the_agent_is_not_ready_while_kubernetes_is_unreachable(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "dead-kubeconfig", f"http://127.0.0.1:{dead_port}")
    async with open_harness(start=False) as h:
        h.settings = h.settings.model_copy(update={"kubeconfig": kubeconfig, "kube_timeout_seconds": 1.0})
        await h.start_agent()
        status, body = await h.get("/readyz")
        assert status == 503
        assert body["checks"]["nats"] == "ok"
        assert body["checks"]["kubernetes"].startswith("unavailable")


@pytest.mark.parametrize("shared", [True, False], ids=["shared-connections", "connection-each"])
async def test_many_agents_share_one_process_each_with_its_own_consumer(
    open_harness: OpenHarness, shared: bool
) -> None:
    async with open_harness(start=False) as h:
        identities = [
            dataclasses.replace(Identity.generate(new_id("dp")), command_keys=(SIGNER_PUBLIC,))
            for _ in range(3)
        ]
        settings = h.settings.model_copy(update={"dataplane_id": None, "private_key_file": None})
        async with run_agents(settings, identities, shared=shared) as agents:
            assert [a.dataplane_id for a in agents] == [i.dataplane_id for i in identities]
            commands = []
            for n, identity in enumerate(identities):
                cmd = h.command(f"api{n}", dataplane_id=identity.dataplane_id)
                await h.bus.publish_durable(
                    h.subjects.deploy(identity.dataplane_id),
                    signing.sign(cmd, SIGNER),
                    msg_id=cmd.deployment_id,
                )
                commands.append(cmd)
            reports: dict[str, RolloutReport] = {}
            sub = await h.bus.js.subscribe(
                h.subjects.all_status, stream=h.subjects.status_stream.name, ordered_consumer=True
            )
            try:
                async with asyncio.timeout(15):
                    while len(reports) < len(commands):
                        msg = await sub.next_msg(timeout=15)
                        report = RolloutReport.model_validate_json(msg.data)
                        if report.status == "succeeded":
                            reports[report.deployment_id] = report
            finally:
                await sub.unsubscribe()
            assert {r.dataplane_id for r in reports.values()} == {i.dataplane_id for i in identities}
            for n in range(3):
                assert h.obj("apps/v1", "deployments", f"api{n}") is not None


async def test_a_report_made_while_nats_is_down_is_stored_when_it_returns(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    nats = NatsServer(tmp_path / "own-nats", port=free_port(), monitor_port=free_port())
    await asyncio.to_thread(nats.start)
    try:
        async with open_harness(nats_url=nats.url) as h:
            h.cluster.pause_controller()
            cmd = await h.deploy("api")
            await h.wait_report(cmd.deployment_id, "progressing")

            await asyncio.to_thread(nats.stop)
            h.cluster.resume_controller()  # the rollout finishes while the agent cannot report it

            async def concluded() -> bool:
                """The agent saw the rollout end (it watches nothing now): its report waits in the queue."""
                assert h.server is not None
                async with aiohttp.ClientSession() as http, http.get(h.server.make_url("/metrics")) as resp:
                    text = await resp.text()
                return "\nlandfall_agent_rollouts_watched 0.0" in text

            await eventually(concluded, what="the agent to have seen the rollout end")
            await asyncio.to_thread(nats.start)

            stream, subject = h.subjects.status_stream.name, h.subjects.status(h.dp)

            async def stored() -> RolloutReport | None:
                """The last report on the status stream once it says succeeded (NATS may be starting)."""
                with contextlib.suppress(Exception):
                    last = await h.bus.js.get_last_msg(stream, subject)
                    report = RolloutReport.model_validate_json(last.data or b"")
                    return report if report.status == "succeeded" else None
                return None

            report = await eventually(stored, timeout=60, interval=0.2, what="the succeeded report stored")
            assert report.deployment_id == cmd.deployment_id
    finally:
        await asyncio.to_thread(nats.stop)
