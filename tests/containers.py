"""Container-based servers for machines that have Docker (`LANDFALL_TEST_CONTAINERS=1`).

The default test path starts real servers from pip wheels (libs/devstack/servers/)
because CI and the developers' machines have no Docker engine. Where Docker exists,
these testcontainers-backed classes offer the same properties (`url`, `dsn`,
`addr`, `token`, `start()`, `stop()`), with the same images as docker-compose.yml,
so the suite can run against exactly what production runs.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from typing import Any

from testcontainers.core.container import DockerContainer

NATS_IMAGE = "nats:2.10-alpine"
POSTGRES_IMAGE = "postgres:18"
OPENBAO_IMAGE = "openbao/openbao:2.2.0"


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become ready in {timeout} s")


class _Container:
    container: DockerContainer

    def stop(self) -> None:
        self.container.stop()

    def kill(self) -> None:
        self.container.stop(force=True)

    def _host_port(self, port: int) -> tuple[str, int]:
        return self.container.get_container_host_ip(), int(self.container.get_exposed_port(port))

    def _url(self, scheme: str, port: int) -> str:
        host, host_port = self._host_port(port)
        return f"{scheme}://{host}:{host_port}"

    def _start_until_ok(self, url: str, what: str) -> None:
        """Start the container and wait until GET `url` answers 200."""
        self.container.start()
        _wait(lambda: urllib.request.urlopen(url, timeout=2).status == 200, what)


class NatsContainer(_Container):
    def __init__(self) -> None:
        self.container = (
            DockerContainer(NATS_IMAGE).with_command("-js -m 8222").with_exposed_ports(4222, 8222)
        )

    def start(self) -> None:
        self._start_until_ok(f"{self._url('http', 8222)}/healthz", "nats")

    @property
    def url(self) -> str:
        return self._url("nats", 4222)


class PostgresContainer(_Container):
    def __init__(self) -> None:
        self.container = (
            DockerContainer(POSTGRES_IMAGE)
            .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_exposed_ports(5432)
        )

    def start(self) -> None:
        import socket

        self.container.start()
        host, port = self._host_port(5432)

        def accepting() -> bool:
            socket.create_connection((host, port), timeout=2).close()
            return True

        _wait(accepting, "postgres")
        time.sleep(1)  # the image restarts the server once after initdb

    @property
    def dsn(self) -> str:
        host, port = self._host_port(5432)
        return f"postgresql://postgres@{host}:{port}/postgres"


class OpenBaoContainer(_Container):
    def __init__(self) -> None:
        self.token = "root-" + uuid.uuid4().hex
        self.container = (
            DockerContainer(OPENBAO_IMAGE)
            .with_command("server -dev -dev-listen-address=0.0.0.0:8200")
            .with_env("BAO_DEV_ROOT_TOKEN_ID", self.token)
            .with_exposed_ports(8200)
        )

    def start(self) -> None:
        self._start_until_ok(f"{self.addr}/v1/sys/health", "openbao")

    @property
    def addr(self) -> str:
        return self._url("http", 8200)
