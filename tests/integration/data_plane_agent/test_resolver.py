"""In-cluster tag resolution: the real agent answers `ResolveInCluster` on its own subject, asking the
local docker-registry itself (with the sealed pull secret, or anonymously), and never sends back
a credential."""

from __future__ import annotations

import socket

import pytest

from libs.contracts.ids import new_id
from libs.contracts.messages import ResolvedImage, ResolveInCluster
from libs.contracts.subjects import Subjects
from libs.devstack.servers import DockerRegistry
from libs.oci.dockerconfig import build_docker_config_json
from libs.oci.registry.egress import EgressPolicy
from libs.runtime import bus as busmod
from libs.runtime.bus import BusUnavailable, RpcFailed
from libs.runtime.natsauth import agent_inbox_prefix, agent_permissions
from libs.runtime.settings import ServiceSettings
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.entrypoints.resolver import serve_resolution
from services.data_plane_agent.usecases.resolve import InClusterResolver
from tests.conftest import REGISTRY_USERS
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import Harness, seal
from tests.nats_auth import SecuredNats, secured_fixture

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))


async def ask(h: Harness, request: ResolveInCluster) -> ResolvedImage:
    # The agent bounds each lookup to a few seconds; this deadline only keeps a broken test short.
    return await h.bus.request(h.subjects.resolve(h.dp), request, ResolvedImage, timeout=15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_tag_is_resolved_from_inside_the_cluster(
    open_harness: OpenHarness, anonymous_registry: DockerRegistry, unique: str
) -> None:
    digest = anonymous_registry.push_image(f"acme/{unique}", "1.0")
    async with open_harness(resolve_timeout_seconds=3.0) as h:
        image = f"{anonymous_registry.host}/acme/{unique}"
        found = await ask(h, ResolveInCluster(dataplane_id=h.dp, image=f"{image}:1.0"))
        assert (found.status, found.digest) == ("resolved", digest)

        missing = await ask(h, ResolveInCluster(dataplane_id=h.dp, image=f"{image}:2.0"))
        assert (missing.status, missing.digest) == ("not_found", None)


async def test_a_private_registry_is_asked_with_the_sealed_pull_secret(
    open_harness: OpenHarness, docker_registry: DockerRegistry, unique: str
) -> None:
    digest = docker_registry.push_image(f"acme/{unique}", "1.0", username=USER, password=PASSWORD)
    async with open_harness(resolve_timeout_seconds=3.0) as h:
        image = f"{docker_registry.host}/acme/{unique}:1.0"
        config = build_docker_config_json(docker_registry.host, USER, PASSWORD).encode()
        sealed = seal(config, h.identity.public_key)
        found = await ask(h, ResolveInCluster(dataplane_id=h.dp, image=image, pull_secret=sealed))
        assert (found.status, found.digest) == ("resolved", digest)
        assert PASSWORD not in found.model_dump_json()

        anonymous = await ask(h, ResolveInCluster(dataplane_id=h.dp, image=image))
        assert anonymous.status == "unauthorized"
        assert PASSWORD not in anonymous.model_dump_json()


async def test_a_port_nothing_listens_on_is_unreachable(open_harness: OpenHarness) -> None:
    async with open_harness(resolve_timeout_seconds=2.0) as h:
        image = f"127.0.0.1:{free_port()}/acme/api:1.0"
        answer = await ask(h, ResolveInCluster(dataplane_id=h.dp, image=image))
        assert answer.status == "unreachable"
        assert answer.digest is None
        assert "127.0.0.1" in answer.detail


async def test_a_request_for_another_data_plane_is_refused(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        # Sent on this agent's subject, but naming another data plane: no lookup, a typed refusal.
        with pytest.raises(RpcFailed) as refused:
            await ask(h, ResolveInCluster(dataplane_id="dp_someoneelse", image="127.0.0.1:1/a/b:1"))
        assert refused.value.error.code == "invalid"
    assert "dp_someoneelse" in refused.value.error.message


async def test_an_agent_can_be_told_not_to_resolve(open_harness: OpenHarness) -> None:
    async with open_harness(resolve_in_cluster=False) as h:
        with pytest.raises(BusUnavailable):
            await h.bus.request(
                h.subjects.resolve(h.dp),
                ResolveInCluster(dataplane_id=h.dp, image="127.0.0.1:1/a/b:1"),
                ResolvedImage,
                timeout=2,
            )


secured = secured_fixture()


async def test_an_agent_with_its_own_nats_user_answers_its_resolve_subject(
    secured: SecuredNats, anonymous_registry: DockerRegistry, bus_prefix: str, unique: str
) -> None:
    """nats-server lets the agent's least-privilege user take its own resolve requests and answer them."""
    digest = anonymous_registry.push_image(f"acme/{unique}", "1.0")
    subjects = Subjects(bus_prefix)
    identity = Identity.generate(new_id("dp"))
    dp = identity.dataplane_id
    user = secured.auth.mint(
        f"agent-{dp}", agent_permissions(subjects, dp), inbox_prefix=agent_inbox_prefix(dp)
    )
    agent_nc = await busmod.connect(
        ServiceSettings(nats_url=secured.url, bus_prefix=bus_prefix), name="agent", wait_seconds=5, user=user
    )
    service_nc = await busmod.connect(
        secured.service_settings(bus_prefix), name="orchestrator", wait_seconds=5
    )
    resolver = InClusterResolver(
        identity=identity, insecure=["127.0.0.1"], policy=EgressPolicy.parse(["127.0.0.1"]), timeout_seconds=3
    )
    await resolver.start()
    try:
        await serve_resolution(busmod.Bus(agent_nc, subjects), resolver)
        await agent_nc.flush()
        service = busmod.Bus(service_nc, subjects)
        image = f"{anonymous_registry.host}/acme/{unique}:1.0"
        found = await service.request(
            subjects.resolve(dp), ResolveInCluster(dataplane_id=dp, image=image), ResolvedImage, timeout=10
        )
        assert (found.status, found.digest) == ("resolved", digest)
    finally:
        await resolver.stop()
        await agent_nc.close()
        await service_nc.close()
