"""Session-wide real servers on free ports, and per-test isolation.

Like nats.py's own suite, every test session starts real `nats-server`
(JetStream), PostgreSQL 18 and OpenBao from pip wheels (and Debian's
docker-registry) on port 0-style free ports in temporary directories. Each
test gets its own bus prefix (subjects and streams), its own database schema
names and its own Vault path prefix, so tests never see each other's data.

On a machine with Docker, `LANDFALL_TEST_CONTAINERS=1` swaps the servers for
testcontainers (see tests/containers.py); the default path needs no Docker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.devstack.servers import DockerRegistry, NatsServer, OpenBaoServer, PostgresServer

REGISTRY_USERS = {"ci-bot": "s3cret-registry-pass-7f1c"}


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


CONTAINERS = os.environ.get("LANDFALL_TEST_CONTAINERS") == "1"


@pytest.fixture(scope="session")
def nats_server(session_dir: Path) -> Iterator[NatsServer]:
    if CONTAINERS:
        from tests.containers import NatsContainer

        server: Any = NatsContainer()
    else:
        server = NatsServer(session_dir / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[PostgresServer]:
    if CONTAINERS:
        from tests.containers import PostgresContainer

        server: Any = PostgresContainer()
    else:
        server = PostgresServer(session_dir / "pg")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openbao(session_dir: Path) -> Iterator[OpenBaoServer]:
    if CONTAINERS:
        from tests.containers import OpenBaoContainer

        server: Any = OpenBaoContainer()
    else:
        server = OpenBaoServer(session_dir / "bao", root_token="root-" + uuid.uuid4().hex)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_registry(session_dir: Path) -> Iterator[DockerRegistry]:
    server = DockerRegistry(session_dir / "registry", users=REGISTRY_USERS)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def anonymous_registry(session_dir: Path) -> Iterator[DockerRegistry]:
    server = DockerRegistry(session_dir / "registry-anon")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique token for names, prefixes and schemas of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def bus_prefix(unique: str) -> str:
    return f"t{unique}."


@pytest.fixture
def base_env(
    nats_server: NatsServer,
    postgres_server: PostgresServer,
    openbao: OpenBaoServer,
    bus_prefix: str,
    unique: str,
) -> dict[str, str]:
    """Environment for one test's services: shared servers, private prefixes."""
    return {
        "LANDFALL_NATS_URL": nats_server.url,
        "LANDFALL_DATABASE_URL": postgres_server.dsn,
        "LANDFALL_BUS_PREFIX": bus_prefix,
        "LANDFALL_VAULT_ADDR": openbao.addr,
        "LANDFALL_VAULT_TOKEN": openbao.token,
        "LANDFALL_VAULT_PREFIX": f"landfall-{unique}",
        "LANDFALL_ADMIN_TOKEN": f"admin-{unique}-{uuid.uuid4().hex}",
        "LANDFALL_LOG_FORMAT": "json",
        "LANDFALL_SCHEMA_SUFFIX": f"_{unique}",
    }


@pytest.fixture(autouse=True)
async def _no_task_outlives_its_test() -> AsyncIterator[None]:
    """kopf's check: every asyncio task a test starts must be finished when it ends."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leftovers = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    leftovers = [t for t in leftovers if not t.get_name().startswith(("pytest", "kmock"))]
    for task in leftovers:
        task.cancel()
    assert not leftovers, f"tasks outlived the test: {[t.get_name() for t in leftovers]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("LANDFALL_SKIP_E2E") == "1":
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="LANDFALL_SKIP_E2E=1"))
