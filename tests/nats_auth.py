"""A real nats-server in operator mode (JWT users), for the tests of who may do what on the bus.

The session-wide test NATS (tests/conftest.py) has no auth; these tests start their own
server with the same configuration `make up` uses (`generate_nats_auth`), and connect as
full service users or as agents with least-privilege JWTs, exactly as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.client import RawCredentials

from libs.devstack.servers import NatsServer
from libs.runtime.natsauth import NatsAuthConfig, NatsUser, generate_nats_auth
from libs.runtime.settings import ServiceSettings


@dataclass
class SecuredNats:
    server: NatsServer
    auth: NatsAuthConfig

    @property
    def url(self) -> str:
        return self.server.url

    def service_settings(self, bus_prefix: str) -> ServiceSettings:
        return ServiceSettings(
            nats_url=self.url, nats_creds_file=self.auth.creds_file("test-service"), bus_prefix=bus_prefix
        )


@contextmanager
def secured_nats(directory: Path) -> Iterator[SecuredNats]:
    auth = generate_nats_auth(directory / "auth")
    server = NatsServer(directory / "nats", config_extra=auth.server_config)
    server.start()
    try:
        yield SecuredNats(server, auth)
    finally:
        server.stop()


def secured_fixture() -> Any:
    """The module-scoped `secured` fixture, one secured nats-server for a test module:
    `secured = secured_fixture()` at the module's top."""

    @pytest.fixture(scope="module", name="secured")
    def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
        with secured_nats(tmp_path_factory.mktemp("secured-nats")) as s:
            yield s

    return secured


@dataclass
class Client:
    """A raw nats-py connection that records what the server refused (it arrives via error_cb)."""

    nc: NATS
    errors: list[Exception] = field(default_factory=list)

    async def refusal(self, subject: str, *, timeout: float = 3.0) -> str:
        """The server's 'Permissions Violation' for `subject` (nats-py lowercases the message)."""
        wanted = subject.lower()
        async with asyncio.timeout(timeout):
            while True:
                for error in self.errors:
                    text = str(error)
                    if "permissions violation" in text and f'"{wanted}"' in text:
                        return text
                await asyncio.sleep(0.02)


async def connect_as(url: str, user: NatsUser) -> Client:
    client = Client(nc=NATS())

    async def on_error(exc: Exception) -> None:
        client.errors.append(exc)

    client.nc = await nats.connect(
        url,
        user_credentials=RawCredentials(user.creds()),
        inbox_prefix=user.inbox_prefix or "_INBOX",
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    return client
