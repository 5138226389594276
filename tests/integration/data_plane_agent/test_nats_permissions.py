"""nats-server itself confines an agent to its own data plane (operator mode, least-privilege JWTs).

Two data planes A and B share one NATS account. A's agent connects with the JWT the
orchestrator mints for it: it can take its own deploy commands through its durable consumer and
report its own status and heartbeats; everything that would let it read B's commands or speak
for B is refused by the server, and nothing is delivered. Services are full users.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from aiohttp.test_utils import TestServer
from nats.aio.client import RawCredentials

from libs.contracts import signing
from libs.contracts.ids import new_id
from libs.contracts.messages import AgentHeartbeat, DeployCommand, RolloutReport, utcnow
from libs.contracts.subjects import Subjects
from libs.devstack.sandbox import SandboxCluster, write_kubeconfig
from libs.runtime import bus as busmod
from libs.runtime.natsauth import NatsUser, NKey, agent_inbox_prefix, agent_permissions, user_jwt
from libs.runtime.settings import ServiceSettings
from services.data_plane_agent.app import create_app as create_agent_app
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.settings import Settings as AgentSettings
from services.data_plane_agent.store.state import save_state
from tests.integration.data_plane_agent.helpers import SIGNER, SIGNER_PUBLIC, deploy_command
from tests.nats_auth import Client, SecuredNats, connect_as, secured_fixture

secured = secured_fixture()


@dataclass
class Planes:
    service: busmod.Bus
    a: str
    b: str
    a_user: NatsUser

    @property
    def subjects(self) -> Subjects:
        return self.service.subjects

    @property
    def stream(self) -> str:
        return self.subjects.dataplane_stream.name

    def durable(self, dp: str) -> str:
        return self.subjects.agent_durable(dp)

    async def pending(self, dp: str) -> tuple[int, int]:
        """(messages not yet delivered, delivered but not acked) on a data plane's consumer."""
        info = await self.service.js.consumer_info(self.stream, self.durable(dp))
        return info.num_pending or 0, info.num_ack_pending or 0


def command(dp: str) -> DeployCommand:
    return signing.sign(deploy_command(dp, "api"), SIGNER)


@pytest.fixture
async def planes(secured: SecuredNats, bus_prefix: str) -> AsyncIterator[Planes]:
    """Streams, consumers (made by a service, as the orchestrator does) and one command per plane."""
    settings = secured.service_settings(bus_prefix)
    nc = await busmod.connect(settings, name="test-orchestrator", wait_seconds=5)
    service = busmod.Bus(nc, Subjects(bus_prefix), timeout=2)
    try:
        await busmod.ensure_streams(service.js, service.subjects.streams)
        a, b = new_id("dp"), new_id("dp")
        for dp in (a, b):
            await service.ensure_agent_consumer(dp)
            await service.publish_durable(service.subjects.deploy(dp), command(dp), msg_id=f"{dp}:1")
        user = secured.auth.mint(
            f"agent-{a}", agent_permissions(service.subjects, a), inbox_prefix=agent_inbox_prefix(a)
        )
        yield Planes(service, a, b, user)
    finally:
        await nc.close()


@pytest.fixture
async def agent_a(secured: SecuredNats, planes: Planes) -> AsyncIterator[Client]:
    client = await connect_as(secured.url, planes.a_user)
    try:
        yield client
    finally:
        await client.nc.close()


async def test_an_agent_takes_its_own_commands_and_reports_its_own_status(
    secured: SecuredNats, planes: Planes, bus_prefix: str
) -> None:
    s, a = planes.subjects, planes.a
    beats = await planes.service.nc.subscribe(s.heartbeat(a))
    # The production path: libs.runtime.bus.connect with the agent's own NATS user.
    nc = await busmod.connect(
        ServiceSettings(nats_url=secured.url, bus_prefix=bus_prefix),
        name="agent-a",
        wait_seconds=5,
        user=planes.a_user,
    )
    try:
        agent = busmod.Bus(nc, Subjects(bus_prefix), timeout=2)
        sub = await agent.js.pull_subscribe_bind(durable=planes.durable(a), stream=planes.stream)
        (msg,) = await sub.fetch(1, timeout=5)
        assert DeployCommand.model_validate_json(msg.data).dataplane_id == a
        # ack_sync waits for the server's confirmation: a plain ack is processed by the consumer
        # asynchronously, after the flush returns (CI once saw (0, 1) right after it).
        await msg.ack_sync(timeout=5)
        assert await planes.pending(a) == (0, 0)  # the ack reached the consumer

        report = RolloutReport(
            deployment_id=new_id("dep"), dataplane_id=a, status="succeeded", reported_at=utcnow()
        )
        seq = await agent.publish_durable(s.status(a), report, msg_id="r1")
        stored = await planes.service.js.get_msg(s.status_stream.name, seq)
        assert stored.subject == s.status(a)
        assert RolloutReport.model_validate_json(stored.data or b"") == report

        await agent.publish(s.heartbeat(a), AgentHeartbeat(dataplane_id=a, version="t", sent_at=utcnow()))
        beat = await beats.next_msg(timeout=3)
        assert AgentHeartbeat.model_validate_json(beat.data).dataplane_id == a
    finally:
        await nc.close()
        await beats.unsubscribe()


async def test_subscribing_to_another_data_plane_s_subjects_is_refused(
    planes: Planes, agent_a: Client
) -> None:
    s, b = planes.subjects, planes.b
    sub_b = await agent_a.nc.subscribe(s.deploy(b))
    sub_all = await agent_a.nc.subscribe(s.deploy("*"))
    sub_status = await agent_a.nc.subscribe(s.all_status)
    sub_inbox = await agent_a.nc.subscribe(f"{agent_inbox_prefix(b)}.>")
    sub_inboxes = await agent_a.nc.subscribe("_INBOX.>")
    for subject in (s.deploy(b), s.deploy("*"), s.all_status, f"{agent_inbox_prefix(b)}.>", "_INBOX.>"):
        assert "subscription" in await agent_a.refusal(subject)

    await planes.service.publish_durable(s.deploy(b), command(b), msg_id=f"{b}:2")
    report = RolloutReport(
        deployment_id=new_id("dep"), dataplane_id=b, status="progressing", reported_at=utcnow()
    )
    await planes.service.publish_durable(s.status(b), report, msg_id=f"{b}:r")
    for sub in (sub_b, sub_all, sub_status, sub_inbox, sub_inboxes):
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.3)


async def test_binding_to_another_data_plane_s_consumer_is_refused(planes: Planes, agent_a: Client) -> None:
    js = agent_a.nc.jetstream(timeout=1)
    b_durable = planes.durable(planes.b)

    with pytest.raises(nats.errors.TimeoutError):  # the server drops the request: nobody answers
        await js.pull_subscribe(planes.subjects.deploy(planes.b), durable=b_durable, stream=planes.stream)
    await agent_a.refusal(f"$JS.API.CONSUMER.INFO.{planes.stream}.{b_durable}")

    sub = await js.pull_subscribe_bind(durable=b_durable, stream=planes.stream)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=1)
    await agent_a.refusal(f"$JS.API.CONSUMER.MSG.NEXT.{planes.stream}.{b_durable}")
    assert await planes.pending(planes.b) == (1, 0)  # B's command was not handed to anyone

    # Nor may it make consumers, not even its own durable again: a push consumer could deliver
    # A's commands to any subject, e.g. B's status. The orchestrator made A's consumer.
    s, a, durable = planes.subjects, planes.a, planes.durable(planes.a)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(
            planes.stream,
            name=durable,
            durable_name=durable,
            filter_subject=s.deploy(a),
            deliver_subject=s.status(planes.b),
        )
    await agent_a.refusal(f"$JS.API.CONSUMER.CREATE.{planes.stream}.{durable}.{s.deploy(a)}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(planes.stream, durable_name="snoop", filter_subject=s.deploy(planes.b))
    await agent_a.refusal(f"$JS.API.CONSUMER.DURABLE.CREATE.{planes.stream}.snoop")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_stream(name=f"{planes.stream}_COPY", subjects=[s.deploy(planes.b) + ".x"])
    await agent_a.refusal(f"$JS.API.STREAM.CREATE.{planes.stream}_COPY")
    info = await planes.service.js.consumer_info(planes.stream, durable)
    assert info.config.deliver_subject is None
    assert await planes.pending(planes.a) == (1, 0)


async def test_publishing_for_another_data_plane_is_refused(planes: Planes, agent_a: Client) -> None:
    s, a, b = planes.subjects, planes.a, planes.b
    beats = await planes.service.nc.subscribe(s.heartbeat(b))
    try:
        forged = RolloutReport(
            deployment_id=new_id("dep"), dataplane_id=b, status="succeeded", reported_at=utcnow()
        )
        with pytest.raises(nats.errors.TimeoutError):
            await agent_a.nc.jetstream(timeout=1).publish(s.status(b), forged.model_dump_json().encode())
        await agent_a.refusal(s.status(b))

        await agent_a.nc.publish(s.heartbeat(b), b"{}")
        await agent_a.refusal(s.heartbeat(b))
        with pytest.raises(nats.errors.TimeoutError):
            await beats.next_msg(timeout=0.3)

        await agent_a.nc.publish(s.deploy(a), command(a).model_dump_json().encode())  # not even its own
        await agent_a.refusal(s.deploy(a))

        with pytest.raises(nats.js.errors.NotFoundError):
            await planes.service.js.get_last_msg(s.status_stream.name, s.status(b))
        assert await planes.pending(a) == (1, 0)
    finally:
        await beats.unsubscribe()


async def test_a_service_user_has_full_permissions(secured: SecuredNats, planes: Planes) -> None:
    s = planes.subjects
    service = planes.service
    seen = await service.nc.subscribe(f"{s.prefix}landfall.v1.>")
    sub = await service.js.pull_subscribe_bind(durable=planes.durable(planes.b), stream=planes.stream)
    (msg,) = await sub.fetch(1, timeout=5)
    assert DeployCommand.model_validate_json(msg.data).dataplane_id == planes.b
    await msg.ack()
    await service.nc.publish(s.heartbeat(planes.a), b"{}")
    assert (await seen.next_msg(timeout=3)).subject == s.heartbeat(planes.a)
    await seen.unsubscribe()


async def refused_connection(url: str, user: NatsUser | None) -> str:
    """Connect once; return what the server said (the error raised and those reported)."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    creds = RawCredentials(user.creds()) if user else None
    with pytest.raises(nats.errors.Error) as refused:
        await nats.connect(
            url, user_credentials=creds, allow_reconnect=False, connect_timeout=2, error_cb=on_error
        )
    return " ".join(str(e) for e in (refused.value, *errors)).lower()


async def test_unknown_or_forged_users_cannot_connect(secured: SecuredNats, planes: Planes) -> None:
    assert "authorization violation" in await refused_connection(secured.url, None)

    # A JWT for the right account, signed by a key the account does not list.
    key, rogue = NKey.generate("user"), NKey.generate("account")
    token = user_jwt(key.public_key, signer=rogue, account=secured.auth.account, name="rogue")
    assert "authorization violation" in await refused_connection(secured.url, NatsUser(token, key.seed))

    # A JWT copied from an agent is useless without that agent's seed.
    stolen = NatsUser(planes.a_user.jwt, NKey.generate("user").seed)
    assert "authorization violation" in await refused_connection(secured.url, stolen)


async def test_the_real_agent_works_with_only_its_own_permissions(
    secured: SecuredNats, planes: Planes, bus_prefix: str, tmp_path: Path
) -> None:
    """The agent app, as enrolled (its NATS user in agent.json): binds, applies, reports."""
    s, a = planes.subjects, planes.a
    identity = dataclasses.replace(Identity.generate(a), nats=planes.a_user, command_keys=(SIGNER_PUBLIC,))
    save_state(tmp_path / "state", identity)
    status = await planes.service.js.subscribe(
        s.status(a), stream=s.status_stream.name, ordered_consumer=True
    )
    async with SandboxCluster(controller=True) as cluster:
        settings = AgentSettings(
            nats_url=secured.url,
            bus_prefix=bus_prefix,
            http_host="127.0.0.1",
            state_dir=tmp_path / "state",
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", cluster.url),
            heartbeat_interval_seconds=0.2,
            rollout_poll_seconds=0.5,
            shutdown_timeout_seconds=2.0,
        )
        server = TestServer(create_agent_app(settings))
        await server.start_server()
        try:
            statuses: list[str] = []
            async with asyncio.timeout(20):
                while "succeeded" not in statuses:
                    msg = await status.next_msg(timeout=20)
                    report = RolloutReport.model_validate_json(msg.data)
                    assert report.dataplane_id == a
                    statuses.append(report.status)
            assert statuses == ["progressing", "succeeded"]
            assert await planes.pending(a) == (0, 0)
            assert await planes.pending(planes.b) == (1, 0)
        finally:
            await server.close()
            await status.unsubscribe()
