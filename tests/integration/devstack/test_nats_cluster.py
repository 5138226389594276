"""A three-node JetStream cluster (operator mode, as `make up` runs it): the streams the services make
are replicated, and losing one server loses neither a stored message nor a consumer's position.
And NATS over TLS with the local stack's own CA: trusted with the CA file, refused without it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from libs.contracts.messages import ImagePushed
from libs.contracts.subjects import Subjects
from libs.devstack.local_ca import LocalCA
from libs.devstack.servers import NatsServer
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.runtime import bus as busmod
from libs.runtime.natsauth import NatsAuthConfig, generate_nats_auth
from libs.runtime.settings import ServiceSettings
from tests.support import drop_streams, eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> NatsAuthConfig:
    return generate_nats_auth(tmp_path_factory.mktemp("cluster-auth"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, auth: NatsAuthConfig) -> Iterator[NatsCluster]:
    nodes = NatsCluster(Path(tmp_path_factory.mktemp("cluster")), nodes=3, config_extra=auth.server_config)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


def settings(url: str, auth: NatsAuthConfig, prefix: str) -> ServiceSettings:
    return ServiceSettings(nats_url=url, nats_creds_file=auth.creds_file("test-service"), bus_prefix=prefix)


@pytest.fixture
async def bus(cluster: NatsCluster, auth: NatsAuthConfig, bus_prefix: str) -> AsyncIterator[busmod.Bus]:
    """A service's bus on the cluster, its streams made as `nats_ctx` makes them."""
    config = settings(cluster.url, auth, bus_prefix)
    nc = await busmod.connect(config, name="test-cluster", wait_seconds=10)
    b = busmod.Bus(nc, Subjects(bus_prefix), timeout=10)
    await busmod.ensure_streams(b.js, b.subjects.streams, replicas=busmod.stream_replicas(nc, config))
    try:
        yield b
    finally:
        await drop_streams(b)
        await nc.close()


def pushed(n: int) -> ImagePushed:
    return ImagePushed.model_validate(
        {
            "deployment_id": f"dep_{n:024d}",
            "org": "acme",
            "project": "web",
            "component": "api",
            "image": f"registry.example.com/acme/api:{n}",
            "token_prefix": "lfci_test",
            "idempotency_key": f"key-{n}",
            "accepted_at": "2026-01-01T00:00:00+00:00",
        }
    )


def test_a_comma_separated_nats_url_is_every_server() -> None:
    config = ServiceSettings(nats_url="nats://10.0.0.1:4222, nats://10.0.0.2:4222,")
    assert config.nats_servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
    with pytest.raises(ValueError, match="at least one NATS URL"):
        ServiceSettings(nats_url=" , ")


async def test_streams_have_three_replicas_even_when_given_one_url(
    cluster: NatsCluster, auth: NatsAuthConfig, bus_prefix: str
) -> None:
    config = settings(cluster.nodes[1].url, auth, bus_prefix)  # the rest announced by the cluster
    nc = await busmod.connect(config, name="test-one-url", wait_seconds=10)
    try:
        assert busmod.stream_replicas(nc, config) == 3
        bus = busmod.Bus(nc, Subjects(bus_prefix), timeout=10)
        await busmod.ensure_streams(bus.js, bus.subjects.streams, replicas=busmod.stream_replicas(nc, config))
        for spec in bus.subjects.streams:
            info = await bus.js.stream_info(spec.name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            assert len(info.cluster.replicas or []) == 2
            await bus.js.delete_stream(spec.name)
    finally:
        await nc.close()


async def test_losing_the_stream_leader_loses_no_message_and_no_consumer_position(
    cluster: NatsCluster, bus: busmod.Bus
) -> None:
    stream = bus.subjects.intake_stream.name
    durable = "test-intake"
    await bus.js.add_consumer(
        stream,
        config=ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=bus.subjects.image_pushed
        ),
    )
    sub = await bus.js.pull_subscribe_bind(durable, stream=stream)
    await bus.publish_durable(bus.subjects.image_pushed, pushed(1), msg_id="m1")
    (first,) = await sub.fetch(1, timeout=10)
    await first.ack_sync()

    info = await bus.js.stream_info(stream)
    assert info.cluster is not None
    assert info.cluster.leader is not None
    leader = cluster.node(int(info.cluster.leader.removeprefix("n")) - 1)
    leader.kill()
    try:

        async def stored() -> int | None:
            try:
                return await bus.publish_durable(bus.subjects.image_pushed, pushed(2), msg_id="m2")
            except busmod.BusUnavailable:  # the new leader is being elected
                return None

        await eventually(stored, timeout=30, interval=0.2, what="a publish accepted by the two servers left")

        async def next_message() -> ImagePushed | None:
            try:
                (msg,) = await sub.fetch(1, timeout=2)
            except Exception:  # no leader for the consumer yet, or nothing delivered within 2 s
                return None
            await msg.ack_sync()
            return ImagePushed.model_validate_json(msg.data)

        # The consumer kept its position: the acked first message does not come again.
        second = await eventually(next_message, timeout=30, interval=0.2, what="the message after the kill")
        assert second.deployment_id == pushed(2).deployment_id
        assert (await bus.js.stream_info(stream)).state.messages == 2
    finally:
        leader.start()
    cluster.wait_healthy()

    async def caught_up() -> bool:
        info = await bus.js.stream_info(stream)
        peers = info.cluster.replicas if info.cluster else None
        return bool(peers) and len(peers or []) == 2 and all(p.current for p in peers or [])

    await eventually(caught_up, timeout=30, interval=0.2, what="the restarted server to catch up")
    await bus.publish_durable(bus.subjects.image_pushed, pushed(3), msg_id="m3")
    (third,) = await sub.fetch(1, timeout=10)
    assert ImagePushed.model_validate_json(third.data).deployment_id == pushed(3).deployment_id
    await third.ack_sync()


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, LocalCA]]:
    ca = LocalCA(tmp_path_factory.mktemp("nats-ca"))
    server = NatsServer(tmp_path_factory.mktemp("tls-nats"), tls=ca.server("nats"))
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


async def test_tls_with_the_local_ca_carries_durable_messages(
    tls_nats: tuple[NatsServer, LocalCA], bus_prefix: str
) -> None:
    server, ca = tls_nats
    assert server.url.startswith("tls://127.0.0.1:")
    config = ServiceSettings(nats_url=server.url, nats_ca_file=ca.ca_file, bus_prefix=bus_prefix)
    nc = await busmod.connect(config, name="test-tls", wait_seconds=10)
    try:
        bus = busmod.Bus(nc, Subjects(bus_prefix))
        assert busmod.stream_replicas(nc, config) == 1  # one server: R1, as before clusters
        await busmod.ensure_streams(bus.js, bus.subjects.streams, replicas=busmod.stream_replicas(nc, config))
        assert await bus.publish_durable(bus.subjects.image_pushed, pushed(1), msg_id="tls-1") == 1
        for spec in bus.subjects.streams:
            await bus.js.delete_stream(spec.name)
    finally:
        await nc.close()


async def test_a_nats_server_the_ca_did_not_sign_or_a_plain_url_is_refused(
    tls_nats: tuple[NatsServer, LocalCA], tmp_path: Path
) -> None:
    server, _ = tls_nats
    stranger = LocalCA(tmp_path / "other-ca")  # a CA that never signed this server
    for config in (
        ServiceSettings(nats_url=server.url, nats_ca_file=stranger.ca_file),
        ServiceSettings(nats_url=server.url),  # the system's CAs do not know ours either
        ServiceSettings(nats_url=server.url.replace("tls://", "nats://")),
    ):
        with pytest.raises(busmod.BusUnavailable):
            await busmod.connect(config, name="test-untrusted", wait_seconds=0.5)


def test_the_nats_urls_of_a_cluster_are_all_tls_or_none() -> None:
    with pytest.raises(ValueError, match="mix nats:// and tls://"):
        ServiceSettings(nats_url="tls://10.0.0.1:4222,nats://10.0.0.2:4222")
    with pytest.raises(ValueError, match="nats:// or tls://"):
        ServiceSettings(nats_url="ws://10.0.0.1:4222")
