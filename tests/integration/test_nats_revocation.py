"""Revoking a NATS user through the account JWT (issue 13), on real nats-servers as `make up` runs them.

The orchestrator's `AccountPublisher` re-signs the application account with its revocations and
pushes it as a system user. On a three-node cluster, a push through one node reaches every node
(each has its own resolver directory) within 1 s; on one server, the pushed JWT survives a restart
of nats-server (its resolver directory keeps it: the preloaded one is older), and users that were
not revoked still connect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import nats.errors
import pytest

from libs.devstack.servers import NatsServer
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.runtime.natsauth import (
    FULL_PERMISSIONS,
    NatsAuthConfig,
    NatsUser,
    NKey,
    decode_jwt,
    generate_nats_auth,
)
from libs.runtime.settings import ServiceSettings
from services.orchestrator.clients.nats_accounts import AccountPublisher
from tests.nats_auth import Client, connect_as
from tests.support import eventually

pytestmark = pytest.mark.timeout(180)


def publisher(auth: NatsAuthConfig, url: str) -> AccountPublisher:
    return AccountPublisher(
        settings=ServiceSettings(nats_url=url, nats_creds_file=auth.system_creds_file()),
        operator_signer=NKey.from_seed(auth.operator_signing_seed, kind="operator"),
        account=auth.account,
        account_signing_keys=(NKey.from_seed(auth.account_signing_seed, kind="account").public_key,),
    )


def revocation(user: NatsUser) -> dict[str, int]:
    return {str(decode_jwt(user.jwt)["sub"]): int(time.time())}


async def refused(url: str, user: NatsUser) -> bool:
    try:
        client = await connect_as(url, user)
    except nats.errors.Error as exc:
        return "authorization violation" in str(exc).lower()
    await client.nc.close()
    return False


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> NatsAuthConfig:
    return generate_nats_auth(tmp_path_factory.mktemp("revocation-auth"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, auth: NatsAuthConfig) -> Iterator[NatsCluster]:
    nodes = NatsCluster(
        Path(tmp_path_factory.mktemp("revocation-cluster")), nodes=3, config_extra=auth.server_config
    )
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


async def test_a_revocation_pushed_to_one_node_is_enforced_by_every_node(
    cluster: NatsCluster, auth: NatsAuthConfig
) -> None:
    revoked, kept = auth.mint("revoked", FULL_PERMISSIONS), auth.mint("kept", FULL_PERMISSIONS)
    live = await connect_as(cluster.urls[2], revoked)  # connected to another node than the push
    accounts = publisher(auth, cluster.urls[0])
    try:
        await accounts.push(revocation(revoked))
        for url in cluster.urls:
            await eventually(partial(refused, url, revoked), timeout=1.0, what=f"{url} to refuse it")
        await eventually(lambda: _closed(live), timeout=1.0, what="the live connection on node 3 dropped")
        for url in cluster.urls:
            assert not await refused(url, kept)
    finally:
        await live.nc.close()
        await accounts.close()


async def _closed(client: Client) -> bool:
    return bool(client.nc.is_closed)


async def test_a_pushed_revocation_survives_a_restart_of_nats_server_and_of_the_stack(tmp_path: Path) -> None:
    auth = generate_nats_auth(tmp_path / "auth")
    server = NatsServer(tmp_path / "nats", config_extra=auth.server_config)
    server.start()
    try:
        revoked, kept = auth.mint("revoked", FULL_PERMISSIONS), auth.mint("kept", FULL_PERMISSIONS)
        accounts = publisher(auth, server.url)
        try:
            await accounts.push(revocation(revoked))
        finally:
            await accounts.close()
        assert await refused(server.url, revoked)
        server.restart()  # nats-server alone
        assert await refused(server.url, revoked)
        assert not await refused(server.url, kept)
    finally:
        server.stop()
    # `make up` again: the auth config is generated anew (same keys, the account preloaded again)
    again = generate_nats_auth(tmp_path / "auth")
    server = NatsServer(tmp_path / "nats", config_extra=again.server_config)
    server.start()
    try:
        assert await refused(server.url, revoked)
        assert not await refused(server.url, kept)
    finally:
        server.stop()
