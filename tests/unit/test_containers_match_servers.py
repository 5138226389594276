"""The Docker path offers what the default path offers, so fixtures can swap one for the other."""

from __future__ import annotations

from libs.devstack.servers import NatsServer, OpenBaoServer, PostgresServer
from tests.containers import NatsContainer, OpenBaoContainer, PostgresContainer


def test_container_servers_expose_the_fixture_interface() -> None:
    pairs = [
        (NatsServer, NatsContainer, ["url"]),
        (PostgresServer, PostgresContainer, ["dsn"]),
        (OpenBaoServer, OpenBaoContainer, ["addr"]),
    ]
    for real, container, props in pairs:
        for name in ["start", "stop", "kill", *props]:
            assert hasattr(real, name), (real, name)
            assert hasattr(container, name), (container, name)
