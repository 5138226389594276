"""The stack the chaos runs break: `libs.devstack.stack.Stack`, with state that survives a crash.

Differences from the e2e stack, and why:
- OpenBao runs with persistent (raft) storage: the driver SIGKILLs it, and a
  dev-mode server would come back empty, which is a test artefact, not a crash.
- The gateway's per-token rate limit is lifted (`CHAOS_ENV`).
- The sandbox Kubernetes API keeps its objects and write log on disk (`--state`), as a real
  API server keeps them in etcd: the driver SIGKILLs it, and the log is the run's evidence.
- A second docker-registry with basic auth, so that some components pull from a
  private registry: their deploys need Vault (pull secrets), which makes the
  OpenBao kills matter, and their passwords are secrets the scan looks for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from libs.devstack.servers import DockerRegistry
from libs.devstack.stack import Stack, random_ports

PRIVATE_REGISTRY_USER = "chaos-ci"
# The per-token rate limit is a policy against runaway CI loops; with it, the fuzzer's one CI token
# would mostly measure the limiter (its 429 has tests of its own).
CHAOS_ENV = {"LANDFALL_RATE_LIMIT_PER_SECOND": "100000", "LANDFALL_RATE_LIMIT_BURST": "100000"}


@dataclass
class ChaosStack:
    stack: Stack
    private_registry: DockerRegistry
    private_password: str = field(repr=False)

    def stop(self) -> None:
        try:
            self.stack.stop()
        finally:
            self.private_registry.stop()


def start(
    root: Path,
    *,
    private_password: str,
    extra_env: dict[str, str] | None = None,
    replicas: int = 1,
    nats_nodes: int = 1,
) -> ChaosStack:
    """Start everything (servers, sandbox data plane, the four services) and provision `default`;
    `replicas` processes of each HTTP service and `nats_nodes` clustered nats-servers (chaos/cluster.py)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**CHAOS_ENV, **(extra_env or {})}
    stack = Stack(
        root,
        ports=random_ports(),
        persistent_vault=True,
        extra_env=env,
        replicas=replicas,
        nats_nodes=nats_nodes,
        # The driver kills the sandbox too: durable, it keeps what it answered and its write log.
        persist_sandbox=True,
    )
    private = DockerRegistry(root / "registry-private", users={PRIVATE_REGISTRY_USER: private_password})
    chaos = ChaosStack(stack, private, private_password)
    try:
        stack.start_infra()
        private.start()
        stack.start_sandbox()
        stack.start_services()
        stack.provision()
        stack.start_service("data_plane_agent")
    except BaseException:
        chaos.stop()
        raise
    return chaos


@contextlib.contextmanager
def running(
    root: Path, *, private_password: str, extra_env: dict[str, str] | None = None
) -> Iterator[ChaosStack]:
    chaos = start(root, private_password=private_password, extra_env=extra_env)
    try:
        yield chaos
    finally:
        chaos.stop()
