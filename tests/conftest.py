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
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import pytest

from libs.devstack.servers import DockerRegistry, NatsServer, OpenBaoServer, PostgresServer, ServerProcess

REGISTRY_USERS = {"ci-bot": "s3cret-registry-pass-7f1c"}


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


CONTAINERS = os.environ.get("LANDFALL_TEST_CONTAINERS") == "1"


S = TypeVar("S", bound=ServerProcess)


def _local_or_container(container: str, make: Callable[[], S]) -> S:
    """`make()`, or with LANDFALL_TEST_CONTAINERS=1 the class `container` of tests/containers.py."""
    if CONTAINERS:
        from tests import containers

        return cast(S, getattr(containers, container)())
    return make()


def _running(server: S) -> Iterator[S]:
    """A session fixture's body: start `server`, hand it to the tests, stop it after them."""
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(session_dir: Path) -> Iterator[NatsServer]:
    yield from _running(_local_or_container("NatsContainer", lambda: NatsServer(session_dir / "nats")))


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[PostgresServer]:
    yield from _running(_local_or_container("PostgresContainer", lambda: PostgresServer(session_dir / "pg")))


@pytest.fixture(scope="session")
def openbao(session_dir: Path) -> Iterator[OpenBaoServer]:
    token = "root-" + uuid.uuid4().hex
    yield from _running(
        _local_or_container("OpenBaoContainer", lambda: OpenBaoServer(session_dir / "bao", root_token=token))
    )


@pytest.fixture(scope="session")
def docker_registry(session_dir: Path) -> Iterator[DockerRegistry]:
    yield from _running(DockerRegistry(session_dir / "registry", users=REGISTRY_USERS))


@pytest.fixture(scope="session")
def anonymous_registry(session_dir: Path) -> Iterator[DockerRegistry]:
    yield from _running(DockerRegistry(session_dir / "registry-anon"))


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
