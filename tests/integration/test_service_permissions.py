"""Each service's NATS user may do only what it needs, and nats-server itself refuses the rest.

A real nats-server in operator mode (`tests.nats_auth`), users minted with
`service_permissions` exactly as the local stack mints them. What must work is done through the
production code (`libs.runtime.bus`); what must not is tried with a raw connection, and the
server's "Permissions Violation" is what the test waits for (plus: nothing arrived).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest
from nats.js.api import DiscardPolicy

from libs.contracts import subjects as subjects_module
from libs.contracts.messages import (
    ComponentChanged,
    DataPlaneKey,
    DataPlaneKeyGet,
    PullSecretReply,
    PullSecretRequest,
)
from libs.contracts.subjects import Subjects
from libs.runtime import bus as busmod
from libs.runtime.natsauth import NatsUser, generate_nats_auth, service_permissions
from libs.runtime.settings import ServiceSettings
from services.orchestrator.entrypoints import consumers
from tests.nats_auth import Client, SecuredNats, connect_as, secured_fixture

secured = secured_fixture()


@dataclass
class Users:
    secured: SecuredNats
    subjects: Subjects

    def user(self, service: str) -> NatsUser:
        return self.secured.auth.mint(service, service_permissions(self.subjects, service))

    async def bus(self, service: str) -> busmod.Bus:
        settings = ServiceSettings(nats_url=self.secured.url, bus_prefix=self.subjects.prefix)
        nc = await busmod.connect(settings, name=service, wait_seconds=5, user=self.user(service))
        return busmod.Bus(nc, self.subjects, timeout=2)

    async def raw(self, service: str) -> Client:
        return await connect_as(self.secured.url, self.user(service))


@pytest.fixture
async def users(secured: SecuredNats, bus_prefix: str) -> Users:
    users = Users(secured, Subjects(bus_prefix))
    orchestrator = await users.bus("orchestrator")  # the streams exist before anybody else starts
    try:
        await busmod.ensure_streams(orchestrator.js, users.subjects.streams)
    finally:
        await orchestrator.nc.close()
    return users


async def _stored(bus: busmod.Bus, stream: str) -> int:
    return int((await bus.js.stream_info(stream)).state.messages)


async def test_each_service_can_do_what_its_code_does(users: Users) -> None:
    s = users.subjects
    orch = await users.bus("orchestrator")
    gw = await users.bus("webhook-gateway")
    cred = await users.bus("credentials")
    try:
        for name, bus in zip(
            ("orchestrator", "webhook-gateway", "credentials"), (orch, gw, cred), strict=True
        ):
            await busmod.ensure_streams(bus.js, s.streams)  # each one's start: nothing to update
            await bus.publish_durable(
                s.audit("acme"), DataPlaneKeyGet(org="acme", dataplane_id="x"), msg_id=name
            )
        assert await _stored(orch, s.audit_stream.name) == 3

        # orchestrator answers the data-plane key (only credentials asks), credentials the pull secret
        async def plane_key(req: DataPlaneKeyGet) -> DataPlaneKey:
            return DataPlaneKey(public_key=f"key-of-{req.dataplane_id}")

        async def pull_secret(req: PullSecretRequest) -> PullSecretReply:
            key = await cred.request(
                s.rpc_dataplane_key, DataPlaneKeyGet(org=req.org, dataplane_id=req.dataplane_id), DataPlaneKey
            )
            assert key.public_key == f"key-of-{req.dataplane_id}"
            return PullSecretReply(sealed=None, reason="anonymous")

        await orch.serve(s.rpc_dataplane_key, DataPlaneKeyGet, plane_key, queue="orchestrator")
        await cred.serve(s.rpc_pull_secret, PullSecretRequest, pull_secret, queue="credentials")
        await orch.nc.flush()
        await cred.nc.flush()
        asked = PullSecretRequest(org="acme", registry_id="reg_1", dataplane_id="dp_1")
        assert (await orch.request(s.rpc_pull_secret, asked, PullSecretReply)).reason == "anonymous"

        # the gateway stores image events and hears deployment changes and its own broadcasts
        changed = await gw.nc.subscribe(s.deployment_changed("dep_1"))
        broadcast = await gw.nc.subscribe(s.components_changed)
        await gw.nc.flush()
        await orch.publish(
            s.deployment_changed("dep_1"), ComponentChanged(org="a", project="p", component="c")
        )
        await gw.publish(s.components_changed, ComponentChanged(org="a", project="p", component="c"))
        await changed.next_msg(timeout=3)
        await broadcast.next_msg(timeout=3)
        await gw.publish_durable(
            s.image_pushed, ComponentChanged(org="a", project="p", component="c"), msg_id="i1"
        )

        # the orchestrator reads intake through its durable (bind or create, fetch, ack) ...
        sub = await orch.js.pull_subscribe(
            s.image_pushed, durable=subjects_module.ORCHESTRATOR_INTAKE_DURABLE, stream=s.intake_stream.name
        )
        (msg,) = await sub.fetch(1, timeout=3)
        await msg.ack()
        # ... makes an agent's consumer at enrollment and publishes its deploy commands
        await orch.ensure_agent_consumer("dp_1")
        await orch.publish_durable(s.deploy("dp_1"), asked, msg_id="d1")
        assert await _stored(orch, s.dataplane_stream.name) == 1
    finally:
        for bus in (orch, gw, cred):
            await bus.nc.close()


REFUSED_PUBLISH = [
    ("webhook-gateway", "deploy"),  # a deploy command
    ("webhook-gateway", "pull-secret"),  # asking for a registry's password
    ("webhook-gateway", "dataplane-key"),
    ("webhook-gateway", "stream-update"),  # shrinking or re-routing a stream
    ("webhook-gateway", "inbox"),  # another client's inbox (a forged answer)
    ("credentials", "deploy"),
    ("credentials", "stream-update"),
    ("credentials", "image-pushed"),
]


def _subject(s: Subjects, what: str) -> str:
    return {
        "deploy": s.deploy("dp_1"),
        "pull-secret": s.rpc_pull_secret,
        "dataplane-key": s.rpc_dataplane_key,
        "stream-update": f"$JS.API.STREAM.UPDATE.{s.dataplane_stream.name}",
        "inbox": "_INBOX.someone.else",
        "image-pushed": s.image_pushed,
    }[what]


@pytest.mark.parametrize(("service", "what"), REFUSED_PUBLISH)
async def test_what_a_service_must_not_publish_is_refused_by_nats_server(
    users: Users, service: str, what: str
) -> None:
    subject = _subject(users.subjects, what)
    client = await users.raw(service)
    try:
        await client.nc.publish(subject, b"{}")
        await client.refusal(subject)
    finally:
        await client.nc.close()


async def test_nobody_but_the_orchestrator_stores_a_deploy_command(users: Users) -> None:
    s = users.subjects
    for service in ("webhook-gateway", "credentials"):
        bus = await users.bus(service)
        try:
            with pytest.raises(busmod.BusUnavailable):  # nats-server dropped it: no ack ever comes
                await bus.publish_durable(
                    s.deploy("dp_1"), DataPlaneKeyGet(org="a", dataplane_id="b"), msg_id=service
                )
        finally:
            await bus.nc.close()
    orch = await users.bus("orchestrator")
    try:
        assert await _stored(orch, s.dataplane_stream.name) == 0
    finally:
        await orch.nc.close()


REFUSED_SUBSCRIBE = [
    ("webhook-gateway", "pull-secret"),  # answering as the credentials service
    ("webhook-gateway", "dataplane-key"),  # answering as the orchestrator
    ("credentials", "dataplane-key"),
    ("credentials", "deploy"),
    ("webhook-gateway", "deploy"),
]


@pytest.mark.parametrize(("service", "what"), REFUSED_SUBSCRIBE)
async def test_what_a_service_must_not_hear_is_refused(users: Users, service: str, what: str) -> None:
    subject = _subject(users.subjects, what)
    client = await users.raw(service)
    try:
        await client.nc.subscribe(subject)
        await client.refusal(subject)
    finally:
        await client.nc.close()


async def test_the_gateway_cannot_ask_for_a_pull_secret_even_with_a_responder(users: Users) -> None:
    s = users.subjects
    cred = await users.bus("credentials")
    gw = await users.bus("webhook-gateway")
    asked: list[PullSecretRequest] = []

    async def pull_secret(req: PullSecretRequest) -> PullSecretReply:
        asked.append(req)
        return PullSecretReply(sealed=None, reason="anonymous")

    try:
        await cred.serve(s.rpc_pull_secret, PullSecretRequest, pull_secret, queue="credentials")
        await cred.nc.flush()
        request = PullSecretRequest(org="acme", registry_id="reg_1", dataplane_id="dp_1")
        with pytest.raises(busmod.BusUnavailable):
            await gw.request(s.rpc_pull_secret, request, PullSecretReply, timeout=1)
        assert asked == []
    finally:
        await gw.nc.close()
        await cred.nc.close()


async def test_every_stream_has_size_limits(users: Users) -> None:
    s = users.subjects
    orch = await users.bus("orchestrator")
    try:
        for spec in s.streams:
            config = (await orch.js.stream_info(spec.name)).config
            assert (config.max_bytes, config.max_msg_size) == (spec.max_bytes, spec.max_msg_size)
            assert 0 < (config.max_msg_size or 0) <= 1024 * 1024
            assert 0 < (config.max_bytes or 0) <= 1024**3
            assert config.discard == DiscardPolicy.NEW  # full: refuse (the publisher retries), never drop
        assert s.intake_stream.max_msg_size == 256 * 1024  # the webhook body is at most 64 KiB
        with pytest.raises(nats.errors.Error):  # the server refuses a bigger message
            await orch.js.publish(s.image_pushed, b"x" * (s.intake_stream.max_msg_size + 1), timeout=2)
    finally:
        await orch.nc.close()


async def test_a_service_that_may_not_update_a_stream_starts_with_it_as_it_is(
    users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    s = users.subjects
    orch = await users.bus("orchestrator")
    gw = await users.bus("webhook-gateway")
    try:
        changed = s.audit_stream.model_copy(update={"max_msg_size": 4096})  # as after an upgrade
        await busmod.ensure_streams(orch.js, [changed])
        with caplog.at_level(logging.WARNING, logger="libs.runtime.bus"):
            await busmod.ensure_streams(gw.js, s.streams)
        assert "could not update a stream's settings" in caplog.text
        assert (await gw.js.stream_info(s.audit_stream.name)).config.max_msg_size == 4096
        await busmod.ensure_streams(orch.js, s.streams)  # the orchestrator brings it up to date
        assert (
            await gw.js.stream_info(s.audit_stream.name)
        ).config.max_msg_size == s.audit_stream.max_msg_size
    finally:
        await gw.nc.close()
        await orch.nc.close()


def test_the_orchestrator_s_durables_are_the_ones_its_user_may_read() -> None:
    assert consumers.INTAKE_DURABLE == subjects_module.ORCHESTRATOR_INTAKE_DURABLE
    assert consumers.STATUS_DURABLE == subjects_module.ORCHESTRATOR_STATUS_DURABLE
    assert consumers.AUDIT_DURABLE == subjects_module.ORCHESTRATOR_AUDIT_DURABLE


def test_a_creds_file_is_minted_again_when_its_permissions_change(tmp_path: Path) -> None:
    auth = generate_nats_auth(tmp_path / "auth")
    s = Subjects("t.")
    first = auth.creds_file("webhook-gateway", service_permissions(s, "webhook-gateway")).read_text()
    same = auth.creds_file("webhook-gateway", service_permissions(s, "webhook-gateway")).read_text()
    other = auth.creds_file("webhook-gateway", service_permissions(s, "credentials")).read_text()
    assert first == same
    assert other != first


def test_unknown_service_has_no_permissions() -> None:
    with pytest.raises(ValueError, match="no NATS permissions"):
        service_permissions(Subjects(), "data-plane-agent")
